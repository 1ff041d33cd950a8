/* cmd_inspect.c — `kiln inspect`. */
#include "cmd.h"

#include <stdio.h>

int kiln_cmd_inspect(int argc, char **argv) {
    (void)argc;
    (void)argv;
    fprintf(stderr, "kiln inspect: not implemented yet\n");
    return 1;
}
