/* cmd_compile.c — `kiln compile MODEL.onnx -o MODEL.kiln`: runs the pass
 * pipeline with a report, and writes the compiled plan. */
#include "cmd.h"
#include "kiln.h"
#include "passes/passes.h"
#include "runtime/model.h"

#include <stdio.h>
#include <stdlib.h>
#include <string.h>

static void usage(void) {
    fprintf(stderr,
            "usage: kiln compile MODEL.onnx -o OUT.kiln [--batch 1,8,32] [--precision fp32]\n"
            "                    [--report] [--dump-ir after=PASS|all]\n");
}

static int parse_batches(const char *s, int32_t *out, int max) {
    int n = 0;
    while (*s && n < max) {
        char *end;
        long v = strtol(s, &end, 10);
        if (end == s || v < 1 || v > 1 << 20) return -1;
        out[n++] = (int32_t)v;
        s = *end == ',' ? end + 1 : end;
        if (*end && *end != ',') return -1;
    }
    return n;
}

int kiln_cmd_compile(int argc, char **argv) {
    const char *in = NULL, *out = NULL, *dump = NULL, *precision = "fp32";
    int report = 0;
    int32_t batches[16];
    int n_batches = 0;
    for (int i = 1; i < argc; i++) {
        if (!strcmp(argv[i], "-o") && i + 1 < argc) out = argv[++i];
        else if (!strcmp(argv[i], "--report")) report = 1;
        else if (!strcmp(argv[i], "--dump-ir") && i + 1 < argc) dump = argv[++i];
        else if (!strcmp(argv[i], "--precision") && i + 1 < argc) precision = argv[++i];
        else if (!strcmp(argv[i], "--batch") && i + 1 < argc) {
            n_batches = parse_batches(argv[++i], batches, 16);
            if (n_batches < 0) {
                fprintf(stderr, "kiln compile: bad --batch list '%s'\n", argv[i]);
                return 2;
            }
        } else if (argv[i][0] == '-') {
            usage();
            return 2;
        } else in = argv[i];
    }
    if (!in || (!out && !dump && !report)) {
        usage();
        return 2;
    }
    if (strcmp(precision, "fp32")) {
        fprintf(stderr, "kiln compile: --precision %s is not implemented yet (fp32 only)\n", precision);
        return 2;
    }
    const char *after = dump && !strncmp(dump, "after=", 6) ? dump + 6 : dump;
    kiln_load_options lo = kiln_load_options_default();
    lo.no_optimize = 1;
    kiln_error err;
    kiln_model *m;
    if (kiln_model_load(in, &lo, &m, &err)) {
        fprintf(stderr, "kiln compile: %s\n", err.msg);
        return 1;
    }
    struct kiln_graph *g = m->onnx.graph;
    if (after && !strcmp(after, "import")) kiln_graph_dump(g, stdout);
    if (report) printf("%-18s %8s %8s %9s\n", "pass", "before", "after", "rewrites");
    for (const struct kiln_pass *p = kiln_default_passes; p->name; p++) {
        struct kiln_pass_stats st = {.nodes_before = g->n_nodes};
        if (p->run(g, &st, &err)) {
            fprintf(stderr, "kiln compile: pass %s: %s\n", p->name, err.msg);
            kiln_model_free(m);
            return 1;
        }
        if (report) printf("%-18s %8d %8d %9d\n", p->name, st.nodes_before, g->n_nodes, st.rewrites);
        if (after && (!strcmp(after, p->name) || !strcmp(after, "all")))
            kiln_graph_dump(g, stdout);
    }
    if (report) {
        kiln_model_stats ms;
        kiln_model_stats_get(m, &ms);
        printf("weights: %lld values, %lld bytes\n", (long long)ms.n_params, (long long)ms.param_bytes);
    }
    int rc = 0;
    if (out) {
        if (kiln_model_save_plan(m, out, n_batches ? batches : NULL, n_batches, &err)) {
            fprintf(stderr, "kiln compile: %s\n", err.msg);
            rc = 1;
        } else {
            fprintf(stderr, "kiln compile: wrote %s\n", out);
        }
    }
    kiln_model_free(m);
    return rc;
}
