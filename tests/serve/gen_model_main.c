/* gen_model_main.c — `kiln_gen_model`: writes the test models of gen_model.h
 * to a file, so the server's shell scripts (the bench/serve scripts and the
 * overload test) need neither shared files nor Python.
 *
 *   kiln_gen_model OUT.onnx affine            y = x*2+1, x float [batch,4]
 *   kiln_gen_model OUT.onnx identity          y = x, x float [batch,4]
 *   kiln_gen_model OUT.onnx mlp ROWS WIDTH LAYERS
 *                      MatMul/Relu chain, x float [batch,ROWS,WIDTH] (ROWS 0: [batch,WIDTH])
 */
#include "gen_model.h"

#include <stdio.h>
#include <stdlib.h>
#include <string.h>

int main(int argc, char **argv) {
    int rc = 2;
    if (argc == 3 && !strcmp(argv[2], "affine")) rc = gen_model(argv[1], GEN_AFFINE, 1);
    else if (argc == 3 && !strcmp(argv[2], "identity")) rc = gen_model(argv[1], GEN_IDENTITY, 1);
    else if (argc == 6 && !strcmp(argv[2], "mlp"))
        rc = gen_mlp(argv[1], atoi(argv[3]), atoi(argv[4]), atoi(argv[5]));
    if (rc == 2) {
        fprintf(stderr, "usage: kiln_gen_model OUT.onnx affine|identity|mlp ROWS WIDTH LAYERS\n");
        return 2;
    }
    if (rc) fprintf(stderr, "kiln_gen_model: cannot write %s\n", argv[1]);
    return rc ? 1 : 0;
}
