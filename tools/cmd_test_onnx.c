/* cmd_test_onnx.c — `kiln bench`. */
#include "cmd.h"

#include <stdio.h>

int kiln_cmd_test_onnx(int argc, char **argv) {
    (void)argc;
    (void)argv;
    fprintf(stderr, "kiln test-onnx: not implemented yet\n");
    return 1;
}
