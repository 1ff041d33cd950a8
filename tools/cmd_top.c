/* cmd_top.c — `kiln top`: live view of a server's /metrics. */
#include "cmd.h"

#include <stdio.h>

int kiln_cmd_top(int argc, char **argv) {
    (void)argc;
    (void)argv;
    fprintf(stderr, "kiln top: not implemented yet\n");
    return 1;
}
