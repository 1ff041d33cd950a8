/* cmd_inspect.c — `kiln inspect MODEL [--dim NAME=V]...`: what a model
 * declares (inputs, outputs, opsets), what it holds (ops, parameters), what
 * one inference costs (FLOPs), and which nodes kiln cannot run yet.
 * Unsupported ops are information, not failure: exit 0 once the model loads. */
#include "cmd.h"
#include "kiln.h"
#include "runtime/model.h"   /* ir_version, producer, opset imports: no public accessor */
#include "tensor_file.h"

#include <stdio.h>
#include <stdlib.h>
#include <string.h>

static const char USAGE[] =
    "usage: kiln inspect MODEL [--dim NAME=VALUE]...\n"
    "  --dim NAME=VALUE   value of a symbolic input dim for the FLOPs estimate (default 1);\n"
    "                     NAME is the dim's name or INPUT:INDEX\n";

struct op_row {
    const char *domain, *op;
    int64_t count;
    int supported;
};

struct op_list {
    struct op_row *rows;
    int n, cap;
    int oom;
};

static void collect_op(const char *domain, const char *op, int64_t count, int supported, void *user) {
    struct op_list *l = user;
    if (l->n == l->cap) {
        int nc = l->cap ? l->cap * 2 : 32;
        struct op_row *nr = realloc(l->rows, (size_t)nc * sizeof *nr);
        if (!nr) {
            l->oom = 1;
            return;
        }
        l->rows = nr;
        l->cap = nc;
    }
    l->rows[l->n++] = (struct op_row){domain, op, count, supported};
}

static int cmp_row(const void *a, const void *b) {
    const struct op_row *x = a, *y = b;
    if (x->count != y->count) return x->count < y->count ? 1 : -1;
    return strcmp(x->op, y->op);
}

static void print_unsupported(const char *node, const char *domain, const char *op, int64_t opset,
                              void *user) {
    (void)user;
    printf("  %-40s %s%s%s (opset %lld)\n", node, domain && *domain ? domain : "", domain && *domain ? "::" : "",
           op, (long long)opset);
}

static void print_info(const kiln_tensor_info *ti) {
    char shape[512];
    tf_shape_str(ti->rank, ti->dims, ti->dim_names, shape, sizeof shape);
    printf("  %-28s %-8s %s\n", ti->name, kiln_dtype_name(ti->dtype), shape);
}

int kiln_cmd_inspect(int argc, char **argv) {
    const char *path = NULL;
    struct tf_dims dims = {0};
    for (int i = 1; i < argc; i++) {
        const char *a = argv[i];
        if (!strcmp(a, "-h") || !strcmp(a, "--help")) {
            fputs(USAGE, stdout);
            return 0;
        } else if (!strcmp(a, "--dim") && i + 1 < argc) {
            if (tf_dims_add(&dims, argv[++i], "kiln inspect")) return 2;
        } else if (!strncmp(a, "--dim=", 6)) {
            if (tf_dims_add(&dims, a + 6, "kiln inspect")) return 2;
        } else if (a[0] == '-' && a[1]) {
            fprintf(stderr, "kiln inspect: unknown option '%s'\n%s", a, USAGE);
            return 2;
        } else if (!path) {
            path = a;
        } else {
            fprintf(stderr, "kiln inspect: more than one model given ('%s', '%s')\n", path, a);
            return 2;
        }
    }
    if (!path) {
        fprintf(stderr, "kiln inspect: no model given\n%s", USAGE);
        return 2;
    }

    kiln_error err;
    kiln_model *m = NULL;
    if (kiln_model_load(path, NULL, &m, &err)) {
        fprintf(stderr, "kiln inspect: cannot load model: %s\n", err.msg);
        return 1;
    }

    const struct kiln_onnx_model *om = &m->onnx;
    printf("model       %s\n", path);
    printf("format      ONNX, ir_version %lld, producer %s\n", (long long)om->ir_version,
           om->producer && *om->producer ? om->producer : "-");
    printf("opsets     ");
    for (int32_t i = 0; i < om->n_opsets; i++)
        printf(" %s %lld%s", om->opsets[i].domain && *om->opsets[i].domain ? om->opsets[i].domain : "ai.onnx",
               (long long)om->opsets[i].version, i + 1 < om->n_opsets ? "," : "");
    printf("%s\n", om->n_opsets ? "" : " (none)");

    int32_t n_in = kiln_model_n_inputs(m), n_out = kiln_model_n_outputs(m);
    printf("inputs (%d)\n", n_in);
    for (int32_t i = 0; i < n_in; i++) {
        kiln_tensor_info ti;
        kiln_model_input(m, i, &ti);
        print_info(&ti);
    }
    printf("outputs (%d)\n", n_out);
    for (int32_t i = 0; i < n_out; i++) {
        kiln_tensor_info ti;
        kiln_model_output(m, i, &ti);
        print_info(&ti);
        /* what shape inference derives from the inputs' symbols, next to what the file declares */
        char sym[512];
        kiln_error serr;
        if (kiln_model_output_shape_symbolic(m, i, sym, sizeof sym, &serr) == KILN_OK)
            printf("      inferred shape %s\n", sym);
    }

    kiln_model_stats st;
    kiln_model_stats_get(m, &st);
    char hp[32], hb[32];
    tf_human((double)st.n_params, "", hp, sizeof hp);
    tf_human((double)st.param_bytes, "B", hb, sizeof hb);
    printf("parameters  %lld (%s), %lld bytes (%s)\n", (long long)st.n_params, hp,
           (long long)st.param_bytes, hb);

    /* FLOPs at concrete shapes: symbolic dims from --dim, else 1 */
    kiln_tensor *ins = calloc((size_t)(n_in ? n_in : 1), sizeof *ins);
    struct tf_resolve res = {.dims = &dims};
    char shapes[1024] = "";
    size_t off = 0;
    int any_default = 0;
    for (int32_t i = 0; ins && i < n_in; i++) {
        kiln_tensor_info ti;
        kiln_model_input(m, i, &ti);
        int defaulted = 0;
        ins[i].name = ti.name;
        ins[i].dtype = ti.dtype;
        ins[i].rank = ti.rank < 0 ? 0 : ti.rank;
        tf_resolve_shape(&ti, i, &res, ins[i].dims, &defaulted);
        any_default |= defaulted;
        for (int32_t d = 0; d < ti.rank; d++)
            if (ti.dims[d] < 0) tf_resolve_bind(&res, ti.dim_names[d], ins[i].dims[d]);
        char s[256];
        tf_shape_str(ins[i].rank, ins[i].dims, NULL, s, sizeof s);
        if (off < sizeof shapes)
            off += (size_t)snprintf(shapes + off, sizeof shapes - off, "%s%s %s", i ? ", " : "", ti.name, s);
    }
    double flops = 0;
    if (!ins) printf("FLOPs       unavailable: out of memory\n");
    else if (kiln_model_estimate_flops(m, ins, n_in, &flops, &err))
        printf("FLOPs       unavailable: %s\n", err.msg);
    else {
        char hf[32];
        tf_human(flops, "FLOP", hf, sizeof hf);
        printf("FLOPs       %s per inference (%.4g), at %s\n", hf, flops, shapes);
    }
    if (any_default) printf("            (open dims set to 1; choose them with --dim NAME=VALUE)\n");
    free(ins);

    struct op_list ops = {0};
    kiln_model_op_histogram(m, collect_op, &ops);
    if (ops.oom) fprintf(stderr, "kiln inspect: out of memory listing ops; the list is partial\n");
    if (ops.n) qsort(ops.rows, (size_t)ops.n, sizeof *ops.rows, cmp_row);
    int n_unsup_types = 0;
    for (int i = 0; i < ops.n; i++) n_unsup_types += !ops.rows[i].supported;
    printf("ops         %lld nodes, %d op types", (long long)st.n_nodes, ops.n);
    if (n_unsup_types) printf(", %d not supported by kiln", n_unsup_types);
    /* the graph is the one kiln runs: Constant nodes, BatchNormalization and
     * activations may already be folded away at load, so counts can be below the file's */
    printf("  (after load-time passes)\n");
    for (int i = 0; i < ops.n; i++) {
        const struct op_row *r = &ops.rows[i];
        char name[128];
        snprintf(name, sizeof name, "%s%s%s", r->domain && *r->domain ? r->domain : "",
                 r->domain && *r->domain ? "::" : "", r->op);
        printf("  %-28s %6lld%s\n", name, (long long)r->count, r->supported ? "" : "   UNSUPPORTED");
    }
    free(ops.rows);

    if (st.n_unsupported) {
        printf("unsupported nodes (%lld): kiln cannot run this model until these ops exist\n",
               (long long)st.n_unsupported);
        kiln_model_unsupported(m, print_unsupported, NULL);
    } else {
        printf("unsupported nodes: none\n");
    }
    kiln_model_free(m);
    return 0;
}
