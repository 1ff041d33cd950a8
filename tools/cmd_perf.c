/* cmd_perf.c — `kiln perf`: load generator for a kiln (or any KServe v2) server. */
#include "cmd.h"

#include <stdio.h>

int kiln_cmd_perf(int argc, char **argv) {
    (void)argc;
    (void)argv;
    fprintf(stderr, "kiln perf: not implemented yet\n");
    return 1;
}
