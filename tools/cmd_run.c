/* cmd_run.c — `kiln run`. */
#include "cmd.h"

#include <stdio.h>

int kiln_cmd_run(int argc, char **argv) {
    (void)argc;
    (void)argv;
    fprintf(stderr, "kiln run: not implemented yet\n");
    return 1;
}
