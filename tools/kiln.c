/* kiln.c — the one `kiln` executable: dispatches to subcommands. */
#include "cmd.h"
#include "kiln.h"

#include <stdio.h>
#include <string.h>

static const struct {
    const char *name;
    int (*fn)(int, char **);
    const char *help;
} commands[] = {
    {"inspect", kiln_cmd_inspect, "MODEL                      inputs, outputs, ops, params, FLOPs"},
    {"run", kiln_cmd_run, "MODEL --input NAME=FILE ... run once, print/save outputs"},
    {"bench", kiln_cmd_bench, "MODEL [--batch 1,2,4]     offline latency and throughput"},
    {"test-onnx", kiln_cmd_test_onnx, "DIR...                   ONNX backend-test conformance"},
    {"compile", kiln_cmd_compile, "MODEL.onnx -o OUT.kiln    optimize and write a compiled plan"},
    {"compare", kiln_cmd_compare, "A B --inputs DIR          how far B's outputs are from A's"},
    {"serve", kiln_cmd_serve, "--model-repository DIR   KServe v2 HTTP inference server"},
    {"perf", kiln_cmd_perf, "--url URL --model M       load generator: throughput, p50-p99"},
    {"top", kiln_cmd_top, "--url URL                 live view of a server's metrics"},
};

static void usage(FILE *f) {
    fprintf(f, "kiln %s — ONNX compiler and inference runtime\nusage: kiln COMMAND [ARGS]\n",
            kiln_version());
    for (size_t i = 0; i < sizeof commands / sizeof commands[0]; i++)
        fprintf(f, "  kiln %-10s %s\n", commands[i].name, commands[i].help);
}

int main(int argc, char **argv) {
    if (argc < 2 || !strcmp(argv[1], "-h") || !strcmp(argv[1], "--help")) {
        usage(argc < 2 ? stderr : stdout);
        return argc < 2 ? 2 : 0;
    }
    if (!strcmp(argv[1], "--version")) {
        printf("kiln %s\n", kiln_version());
        return 0;
    }
    for (size_t i = 0; i < sizeof commands / sizeof commands[0]; i++)
        if (!strcmp(argv[1], commands[i].name)) return commands[i].fn(argc - 1, argv + 1);
    fprintf(stderr, "kiln: unknown command '%s'\n", argv[1]);
    usage(stderr);
    return 2;
}
