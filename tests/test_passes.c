/*
 * test_passes.c — the load-time graph passes (src/passes/, docs/passes.md)
 * on small generated models: each case loads one model twice, with
 * no_optimize = 1 and with the default pipeline, checks what the pipeline
 * rewrote (op counts in the internal graph, the text dump) and that
 * outputs stay within 1e-5 of the unoptimized model on random inputs, with
 * the fast kernels and with the reference kernels. Negative cases check that
 * what a pass must not touch stays.
 */
#include "kiln.h"
#include "ops/op.h"
#include "passes/passes.h"
#include "plan/plan.h"
#include "runtime/model.h"
#include "support/kt.h"
#include "support/ktmodel.h"
#include "support/onnxgen.h"

#include <math.h>
#include <stdlib.h>
#include <string.h>

/* ---- helpers ---------------------------------------------------------- */

static uint32_t rng = 12345;
static float frand(void) {   /* uniform in [-1, 1) */
    rng = rng * 1664525u + 1013904223u;
    return (float)((rng >> 8) & 0xffff) / 32768.0f - 1.0f;
}
static void fill_rand(float *p, int64_t n) {
    for (int64_t i = 0; i < n; i++) p[i] = frand();
}
static int64_t numel(int rank, const int64_t *d) {
    int64_t n = 1;
    for (int i = 0; i < rank; i++) n *= d[i];
    return n;
}
static void init_rand(og_graph *g, const char *name, int rank, const int64_t *dims) {
    int64_t n = numel(rank, dims);
    float *p = malloc((size_t)n * sizeof *p);
    fill_rand(p, n);
    og_init_f32(g, name, rank, dims, p);
    free(p);
}
/* Conv weights scaled by 1/sqrt(fan-in), so activations stay near 1 through
 * a stack of convolutions and 1e-5 stays a rounding-level tolerance. */
static void init_conv_w(og_graph *g, const char *name, const int64_t *dims) {
    int64_t n = numel(4, dims);
    float *p = malloc((size_t)n * sizeof *p);
    fill_rand(p, n);
    float s = 1.0f / sqrtf((float)(dims[1] * dims[2] * dims[3]));
    for (int64_t i = 0; i < n; i++) p[i] *= s;
    og_init_f32(g, name, 4, dims, p);
    free(p);
}
static void init_scalar(og_graph *g, const char *name, float v) {
    og_init_f32(g, name, 0, NULL, &v);
}


/* The IR dump as a malloc'ed string. */
static char *dump(const kiln_model *m) {
    char *s = NULL;
    size_t n = 0;
    FILE *f = open_memstream(&s, &n);
    if (!f) return NULL;
    kiln_graph_dump(m->onnx.graph, f);
    fclose(f);
    return s;
}

#define MAXO 8

/* Runs m once; copies each float output into want/got buffers (malloc'ed). */
static int run(const kiln_model *m, int reference, const kiln_tensor *in, int n_in, float **outs,
               int64_t *counts, int n_out, const char *what) {
    kiln_error err;
    kiln_session *s = NULL;
    kiln_session_options so = kiln_session_options_default();
    so.n_threads = 2;
    so.reference_kernels = reference;
    if (!EXPECT_OK(what, kiln_session_create(m, &so, &s, &err), &err)) return 0;
    kiln_tensor o[MAXO];
    memset(o, 0, sizeof o);
    int ok = EXPECT_OK(what, kiln_session_run(s, in, n_in, o, n_out, &err), &err);
    for (int i = 0; ok && i < n_out; i++) {
        CHECK(o[i].dtype == KILN_DTYPE_FLOAT, "%s: output %d dtype %d", what, i, o[i].dtype);
        counts[i] = (int64_t)(o[i].nbytes / sizeof(float));
        outs[i] = malloc(o[i].nbytes ? o[i].nbytes : 1);
        memcpy(outs[i], o[i].data, o[i].nbytes);
    }
    kiln_session_free(s);
    return ok;
}

/* Outputs of the optimized model match the unoptimized model's within 1e-5
 * (relative to magnitude above 1), fast kernels against fast kernels and
 * reference against reference (the two kernel sets round differently). */
static void check_same(const struct kt_pair *p, const kiln_tensor *in, int n_in, int n_out,
                       const char *what) {
    if (!p->raw || !p->opt) return;
    float *want[MAXO] = {0}, *got[MAXO] = {0};
    int64_t nw[MAXO] = {0}, ng[MAXO] = {0};
    for (int ref = 0; ref <= 1; ref++) {
        if (!run(p->raw, ref, in, n_in, want, nw, n_out, what)) return;
        if (run(p->opt, ref, in, n_in, got, ng, n_out, what)) {
            for (int i = 0; i < n_out; i++) {
                CHECK(nw[i] == ng[i], "%s: output %d has %lld values, want %lld", what, i,
                      (long long)ng[i], (long long)nw[i]);
                int64_t bad = 0, first = -1;
                for (int64_t k = 0; k < nw[i] && nw[i] == ng[i]; k++)
                    if (!(got[i][k] == want[i][k] || (isnan(got[i][k]) && isnan(want[i][k])) ||
                          fabsf(got[i][k] - want[i][k]) <= 1e-5f * (1.0f + fabsf(want[i][k])))) {
                        if (first < 0) first = k;
                        bad++;
                    }
                CHECK(bad == 0, "%s (%s kernels): output %d: %lld values differ, first at %lld: %g vs %g",
                      what, ref ? "reference" : "fast", i, (long long)bad, (long long)first,
                      first >= 0 ? got[i][first] : 0.0, first >= 0 ? want[i][first] : 0.0);
            }
        }
        for (int i = 0; i < n_out; i++) {
            free(got[i]);
            free(want[i]);
            got[i] = want[i] = NULL;
        }
    }
}

static kiln_tensor ftensor(const char *name, int rank, const int64_t *dims, float *data) {
    kiln_tensor t = {.name = name, .dtype = KILN_DTYPE_FLOAT, .rank = rank, .data = data};
    for (int i = 0; i < rank; i++) t.dims[i] = dims[i];
    t.nbytes = (size_t)numel(rank, dims) * sizeof(float);
    return t;
}

/* ---- CSE ----------------------------------------------------------------- */

/* Two Relu(x), two Mul(x, c) with equal constants under different names and
 * two Transposes that differ only in perm: one Relu, one Mul, two Transposes. */
static void test_cse(void) {
    og_model *om = og_model_new(17);
    og_graph *g = og_model_graph(om);
    int64_t d[3] = {2, 3, 4};
    og_input(g, "x", OG_FLOAT, 3, d);
    init_scalar(g, "c1", 1.5f);
    init_scalar(g, "c2", 1.5f);
    og_node_add(g, "Relu", "x", "r1");
    og_node_add(g, "Relu", "x", "r2");
    og_node_add(g, "Mul", "x,c1", "m1");
    og_node_add(g, "Mul", "x,c2", "m2");
    og_node_add(g, "Add", "r1,r2", "a1");
    og_node_add(g, "Add", "m1,m2", "a2");
    og_node_add(g, "Add", "a1,a2", "s");
    int64_t p1[3] = {0, 2, 1}, p2[3] = {0, 2, 1}, p3[3] = {2, 1, 0};
    og_attr_ints(og_node_add(g, "Transpose", "s", "t1"), "perm", p1, 3);
    og_attr_ints(og_node_add(g, "Transpose", "s", "t2"), "perm", p2, 3);
    og_attr_ints(og_node_add(g, "Transpose", "s", "t3"), "perm", p3, 3);
    og_node_add(g, "Add", "t1,t2", "u");
    og_node_add(g, "ReduceSum", "t3", "v");
    /* two identical nodes writing graph outputs: both names must stay */
    og_node_add(g, "Neg", "x", "y2");
    og_node_add(g, "Neg", "x", "y3");
    int64_t du[3] = {2, 4, 3};
    og_output(g, "u", OG_FLOAT, 3, du);
    og_output(g, "v", OG_FLOAT, -1, NULL);
    og_output(g, "y2", OG_FLOAT, 3, d);
    og_output(g, "y3", OG_FLOAT, 3, d);
    struct kt_pair p = kt_load_pair(om, "cse");
    CHECK(kt_count_op(p.raw, "Relu") == 2 && kt_count_op(p.raw, "Transpose") == 3, "unoptimized graph");
    CHECK(kt_count_op(p.opt, "Relu") == 1, "Relu: %d after cse, want 1", kt_count_op(p.opt, "Relu"));
    CHECK(kt_count_op(p.opt, "Mul") == 1, "Mul with equal constants: %d, want 1", kt_count_op(p.opt, "Mul"));
    CHECK(kt_count_op(p.opt, "Transpose") == 2, "Transpose: %d, want 2 (perms differ)",
          kt_count_op(p.opt, "Transpose"));
    CHECK(kt_count_op(p.opt, "Neg") == 2, "Neg writing graph outputs: %d, want 2", kt_count_op(p.opt, "Neg"));
    float x[24];
    fill_rand(x, 24);
    kiln_tensor in = ftensor("x", 3, d, x);
    check_same(&p, &in, 1, 4, "cse");
    kt_pair_free(&p);
}

/* Tied weights: two 64x64 initializers with equal bytes are stored once and
 * the two MatMuls reading them become one; a third that differs in one
 * element in the middle (outside the sampled hash) stays apart. */
static void test_cse_large_constants(void) {
    og_model *om = og_model_new(17);
    og_graph *g = og_model_graph(om);
    int64_t dx[2] = {3, 64}, dw[2] = {64, 64};
    og_input(g, "x", OG_FLOAT, 2, dx);
    static float w[64 * 64], w3[64 * 64];
    fill_rand(w, 64 * 64);
    memcpy(w3, w, sizeof w);
    w3[64 * 32 + 7] += 0.5f;
    og_init_f32(g, "w1", 2, dw, w);
    og_init_f32(g, "w2", 2, dw, w);
    og_init_f32(g, "w3", 2, dw, w3);
    og_node_add(g, "MatMul", "x,w1", "a");
    og_node_add(g, "MatMul", "x,w2", "b");
    og_node_add(g, "MatMul", "x,w3", "c");
    og_node_add(g, "Add", "a,b", "ab");
    og_node_add(g, "Add", "ab,c", "y");
    og_output(g, "y", OG_FLOAT, 2, dx);
    struct kt_pair p = kt_load_pair(om, "cse-large");
    CHECK(kt_count_op(p.raw, "MatMul") == 3, "unoptimized graph");
    CHECK(kt_count_op(p.opt, "MatMul") == 2, "MatMul over tied weights: %d after cse, want 2",
          kt_count_op(p.opt, "MatMul"));
    kiln_model_stats sr, so;
    kiln_model_stats_get(p.raw, &sr);
    kiln_model_stats_get(p.opt, &so);
    CHECK(so.param_bytes == 2 * 64 * 64 * 4, "weights after cse: %lld bytes, want %d (w1 once, w3)",
          (long long)so.param_bytes, 2 * 64 * 64 * 4);
    float x[3 * 64];
    fill_rand(x, 3 * 64);
    kiln_tensor in = ftensor("x", 2, dx, x);
    check_same(&p, &in, 1, 1, "cse-large");
    kt_pair_free(&p);
}

/* Two If nodes with identical branches (reading x from the outer scope) are
 * never merged: subgraph attributes are not compared. */
static void test_cse_skips_subgraphs(void) {
    og_model *om = og_model_new(17);
    og_graph *g = og_model_graph(om);
    int64_t d[1] = {5};
    og_input(g, "x", OG_FLOAT, 1, d);
    og_input(g, "c", OG_BOOL, 0, NULL);
    og_graph *th = og_graph_new("then");
    og_node_add(th, "Relu", "x", "o");
    og_output(th, "o", OG_FLOAT, 1, d);
    og_graph *el = og_graph_new("else");
    og_node_add(el, "Neg", "x", "o");
    og_output(el, "o", OG_FLOAT, 1, d);
    for (int k = 0; k < 2; k++) {
        og_node *n = og_node_add(g, "If", "c", k ? "b" : "a");
        og_attr_graph(n, "then_branch", th);
        og_attr_graph(n, "else_branch", el);
    }
    og_graph_free(th);
    og_graph_free(el);
    og_node_add(g, "Add", "a,b", "y");
    og_output(g, "y", OG_FLOAT, 1, d);
    struct kt_pair p = kt_load_pair(om, "cse-if");
    CHECK(kt_count_op(p.opt, "If") == 2, "If nodes: %d after passes, want 2", kt_count_op(p.opt, "If"));
    float x[5];
    fill_rand(x, 5);
    for (int c = 0; c <= 1; c++) {
        uint8_t cond = (uint8_t)c;
        kiln_tensor in[2] = {ftensor("x", 1, d, x),
                             {.name = "c", .dtype = KILN_DTYPE_BOOL, .rank = 0, .data = &cond,
                              .nbytes = 1}};
        check_same(&p, in, 2, 1, c ? "cse-if then" : "cse-if else");
    }
    kt_pair_free(&p);
}

/* ---- constant folding ------------------------------------------------------ */

/* MatMul(x, Mul(Transpose(W), 2)): the constant chain folds at load into one
 * constant; an Expand of a scalar to over 64 MB stays a node. */
static void test_fold_constants(void) {
    og_model *om = og_model_new(17);
    og_graph *g = og_model_graph(om);
    int64_t dx[2] = {3, 8}, dw[2] = {6, 8}, dy[2] = {3, 6};
    og_input(g, "x", OG_FLOAT, 2, dx);
    init_rand(g, "W", 2, dw);
    init_scalar(g, "two", 2.0f);
    int64_t perm[2] = {1, 0};
    og_attr_ints(og_node_add(g, "Transpose", "W", "wt"), "perm", perm, 2);
    og_node_add(g, "Mul", "wt,two", "w2");
    og_node_add(g, "MatMul", "x,w2", "y");
    og_output(g, "y", OG_FLOAT, 2, dy);
    /* big: Expand(0.5, [16777217]) is 64 MB + 4 bytes; only its sum is an output */
    int64_t shp = (1 << 24) + 1, one = 1;
    og_init_i64(g, "shape", 1, &one, &shp);
    init_scalar(g, "half", 0.5f);
    og_node_add(g, "Expand", "half,shape", "big");
    og_node_add(g, "ReduceSum", "big", "bs");
    og_output(g, "bs", OG_FLOAT, -1, NULL);
    struct kt_pair p = kt_load_pair(om, "fold");
    CHECK(kt_n_nodes(p.raw) == 5, "unoptimized: %d nodes", kt_n_nodes(p.raw));
    CHECK(kt_count_op(p.opt, "Transpose") == 0 && kt_count_op(p.opt, "Mul") == 0,
          "constant chain not folded: %d Transpose, %d Mul", kt_count_op(p.opt, "Transpose"),
          kt_count_op(p.opt, "Mul"));
    CHECK(kt_count_op(p.opt, "MatMul") == 1, "MatMul: %d", kt_count_op(p.opt, "MatMul"));
    CHECK(kt_count_op(p.opt, "Expand") == 1, "over-64MB Expand folded: %d left", kt_count_op(p.opt, "Expand"));
    if (p.opt) {
        const struct kiln_node *mm = kt_find_op(p.opt, "MatMul");
        CHECK(mm && p.opt->onnx.graph->values[mm->inputs[1]].is_const,
              "MatMul's weight is not a constant after folding");
    }
    float x[24];
    fill_rand(x, 24);
    kiln_tensor in = ftensor("x", 2, dx, x);
    check_same(&p, &in, 1, 2, "fold");
    kt_pair_free(&p);
}

/* ---- residual fusion --------------------------------------------------------- */

static void conv_node(og_graph *g, const char *ins, const char *out, int pad) {
    og_node *n = og_node_add(g, "Conv", ins, out);
    int64_t k[2] = {3, 3}, p[4] = {1, 1, 1, 1}, z[4] = {0, 0, 0, 0};
    og_attr_ints(n, "kernel_shape", k, 2);
    og_attr_ints(n, "pads", pad ? p : z, 4);
}

/* The plan for the fused model: every fused Conv runs a oneDNN kernel on its
 * own layouts (a sum post-op, no plain copies), and the residuals between convs
 * (r0 and r2) are channels-last like the outputs they are summed into; the
 * graph-input residual x and the graph outputs are plain. */
static void check_residual_plan(const kiln_model *m, const int64_t *d) {
    const struct kiln_graph *g = m->onnx.graph;
    struct kiln_value xin = {.dtype = KILN_DTYPE_FLOAT, .rank = 4};
    memcpy(xin.dims, d, 4 * sizeof *d);
    struct kiln_plan_options o = {.prepare = 1, .max_arena_bytes = 1u << 30,
                                  .max_tensor_bytes = 1u << 30, .label = "residual plan"};
    struct kiln_exec_ctx ctx = {.n_threads = 1};
    struct kiln_plan *pl = NULL;
    kiln_error err;
    memset(&err, 0, sizeof err);   /* the planner sets err only on failure */
    if (!EXPECT_OK("plan", kiln_plan_build(g, &xin, &o, &ctx, &pl, &err), &err)) return;
    int fused = 0, cl_res = 0;
    for (int32_t si = 0; si < pl->n_steps; si++) {
        const struct kiln_step *st = &pl->steps[si];
        const struct kiln_node *n = &g->nodes[st->node];
        if (!n->sum_input) continue;
        fused++;
        CHECK(st->kernel.run && !st->convert && !st->kernel_plain,
              "step %s: kernel %s, convert %d", n->name, st->kernel.impl ? st->kernel.impl : "ref",
              st->convert);
        const struct kiln_value *r = &pl->vals[n->inputs[n->sum_input]];
        const struct kiln_value *y = &pl->vals[n->outputs[0]];
        CHECK(r->layout == y->layout, "step %s: residual layout %d, output %d", n->name, r->layout,
              y->layout);
        cl_res += r->layout != KILN_LAYOUT_PLAIN; /* channels-last or blocked, by CPU */
        CHECK(st->kernel.fused_activation || !n->act.kind, "step %s: act not a post-op", n->name);
    }
    CHECK(fused == 3 && cl_res == 2, "fused steps %d, channels-last residuals %d (want 3, 2)", fused,
          cl_res);
    kiln_plan_free(pl);
}

/* Two ResNet basic blocks between convolutions, so the planner keeps the
 * residuals channels-last like the conv outputs they are summed into:
 *   r0 = Relu(Conv(x)); r2 = Relu(Add(Conv(Relu(Conv(r0))), r0))  (no bias)
 *   s2 = Add(r2, Conv(r2)) (residual first); y = Conv(s2)
 * Each block's last Conv absorbs the Add (and the Relu); and a residual that
 * is a graph input (plain layout) is fused too: z = Add(Conv(x), x). */
static void test_fuse_residual(void) {
    og_model *om = og_model_new(13);
    og_graph *g = og_model_graph(om);
    int64_t d[4] = {2, 8, 7, 7}, dw[4] = {8, 8, 3, 3}, db[1] = {8};
    og_input(g, "x", OG_FLOAT, 4, d);
    const char *w[] = {"W0", "W1", "W2", "W3", "W4", "W5"};
    for (int k = 0; k < 6; k++) init_conv_w(g, w[k], dw);
    init_rand(g, "B", 1, db);
    conv_node(g, "x,W0,B", "c0", 1);
    og_node_add(g, "Relu", "c0", "r0");
    conv_node(g, "r0,W1,B", "c1", 1);
    og_node_add(g, "Relu", "c1", "r1");
    conv_node(g, "r1,W2", "c2", 1);            /* no bias */
    og_node_add(g, "Add", "c2,r0", "s");
    og_node_add(g, "Relu", "s", "r2");
    conv_node(g, "r2,W3,B", "c3", 1);
    og_node_add(g, "Add", "r2,c3", "s2");     /* residual first */
    conv_node(g, "s2,W4,B", "y", 1);
    conv_node(g, "x,W5,B", "c5", 1);
    og_node_add(g, "Add", "c5,x", "z");
    og_output(g, "y", OG_FLOAT, 4, d);
    og_output(g, "z", OG_FLOAT, 4, d);
    struct kt_pair p = kt_load_pair(om, "<memory>");
    CHECK(kt_count_op(p.raw, "Add") == 3, "unoptimized Adds: %d", kt_count_op(p.raw, "Add"));
    CHECK(kt_count_op(p.opt, "Add") == 0, "Adds left: %d, want 0", kt_count_op(p.opt, "Add"));
    CHECK(kt_count_op(p.opt, "Relu") == 0, "Relus left: %d, want 0", kt_count_op(p.opt, "Relu"));
    CHECK(kt_n_nodes(p.opt) == 6, "nodes: %d, want 6 Convs", kt_n_nodes(p.opt));
    if (p.opt) {
        char *s = dump(p.opt);
        CHECK(s && strstr(s, "{sum=%") && strstr(s, "{act=Relu}"), "dump shows no fused sum: %s",
              s ? s : "");
        int fused = 0;
        const struct kiln_graph *gg = p.opt->onnx.graph;
        for (int32_t i = 0; i < gg->n_nodes; i++)
            if (gg->nodes[i].sum_input == 3 && gg->nodes[i].n_inputs == 4) fused++;
        CHECK(fused == 3, "Convs with a fused residual: %d, want 3", fused);
        free(s);
    }
    float x[2 * 8 * 49];
    fill_rand(x, 2 * 8 * 49);
    kiln_tensor in = ftensor("x", 4, d, x);
    check_same(&p, &in, 1, 2, "residual");
    if (p.opt) check_residual_plan(p.opt, d);

    /* the fused model survives a compiled plan (format v2 carries sum_input) */
    if (p.opt) {
        char *dir = kt_mkdtemp("passes");
        char path[1024];
        snprintf(path, sizeof path, "%s/res.kiln", dir);
        kiln_error err;
        if (EXPECT_OK("save plan", kiln_model_save_plan(p.opt, path, NULL, 0, &err), &err)) {
            kiln_model *pm = NULL;
            if (EXPECT_OK("load plan", kiln_model_load(path, NULL, &pm, &err), &err)) {
                CHECK(kt_count_op(pm, "Add") == 0 && kt_n_nodes(pm) == 6, "plan graph: %d nodes",
                      kt_n_nodes(pm));
                struct kt_pair q = {p.raw, pm};
                check_same(&q, &in, 1, 2, "residual from plan");
                kiln_model_free(pm);
            }
        }
        kt_rm_rf(dir);
        free(dir);
    }
    kt_pair_free(&p);
}

/* Residuals whose shape differs from the conv output keep Add's broadcasting:
 * r [1,8,1,1] (narrower), and a conv output [1,8,1,1] widened by r [1,8,5,5].
 * A conv output read twice is not fused. */
static void test_fuse_residual_shapes(void) {
    og_model *om = og_model_new(13);
    og_graph *g = og_model_graph(om);
    int64_t d[4] = {1, 8, 5, 5}, dr[4] = {1, 8, 1, 1}, dw[4] = {8, 8, 3, 3}, dw5[4] = {8, 8, 5, 5};
    og_input(g, "x", OG_FLOAT, 4, d);
    og_input(g, "r", OG_FLOAT, 4, dr);
    init_rand(g, "W", 4, dw);
    init_rand(g, "W5", 4, dw5);
    conv_node(g, "x,W", "c1", 1);
    og_node_add(g, "Add", "c1,r", "y1");                 /* narrow residual */
    og_node_add(g, "Relu", "y1", "y1r");
    og_node *n = og_node_add(g, "Conv", "x,W5", "c2");   /* valid 5x5: [1,8,1,1] */
    int64_t k5[2] = {5, 5};
    og_attr_ints(n, "kernel_shape", k5, 2);
    og_node_add(g, "Add", "c2,x", "y2");                 /* widened to [1,8,5,5] */
    init_rand(g, "Wb", 4, dw);   /* not W: CSE would merge c3 into c1 */
    conv_node(g, "x,Wb", "c3", 1);
    og_node_add(g, "Add", "c3,r", "y3");
    og_node_add(g, "Neg", "c3", "y4");                   /* c3 has a second reader */
    og_output(g, "y1r", OG_FLOAT, 4, d);
    og_output(g, "y2", OG_FLOAT, 4, d);
    og_output(g, "y3", OG_FLOAT, 4, d);
    og_output(g, "y4", OG_FLOAT, 4, d);
    struct kt_pair p = kt_load_pair(om, "residual-shapes");
    CHECK(kt_count_op(p.opt, "Add") == 1, "Adds left: %d, want 1 (the one after a shared conv)",
          kt_count_op(p.opt, "Add"));
    if (p.opt && kt_count_op(p.opt, "Add") != 1) {
        char *s = dump(p.opt);
        fprintf(stderr, "%s", s ? s : "");
        free(s);
    }
    float x[200], r[8];
    fill_rand(x, 200);
    fill_rand(r, 8);
    kiln_tensor in[2] = {ftensor("x", 4, d, x), ftensor("r", 4, dr, r)};
    check_same(&p, in, 2, 4, "residual-shapes");
    kt_pair_free(&p);
}

/* ---- LayerNormalization fusion -------------------------------------------------- */

/* The decomposed LayerNorm as exporters write it; variant 0: Pow + beta at
 * opset 13, 1: Mul(d, d), no beta, opset 18 (axes as an input), 2: axes = [1]
 * (not the last axis): must not fuse. */
static void build_ln(og_graph *g, int variant, const int64_t *d) {
    int64_t dg[1] = {d[2]};
    og_input(g, "x", OG_FLOAT, 3, d);
    init_rand(g, "gamma", 1, dg);
    init_rand(g, "beta", 1, dg);
    init_scalar(g, "two", 2.0f);
    init_scalar(g, "eps", 1e-5f);
    int64_t axes[1] = {variant == 2 ? 1 : -1}, one = 1;
    if (variant == 1) {
        og_init_i64(g, "axes", 1, &one, axes);
        og_node_add(g, "ReduceMean", "x,axes", "m");
    } else {
        og_attr_ints(og_node_add(g, "ReduceMean", "x", "m"), "axes", axes, 1);
    }
    og_node_add(g, "Sub", "x,m", "dd");
    if (variant == 1) og_node_add(g, "Mul", "dd,dd", "sq");
    else og_node_add(g, "Pow", "dd,two", "sq");
    if (variant == 1) og_node_add(g, "ReduceMean", "sq,axes", "v");
    else og_attr_ints(og_node_add(g, "ReduceMean", "sq", "v"), "axes", axes, 1);
    og_node_add(g, "Add", "eps,v", "ve");
    og_node_add(g, "Sqrt", "ve", "sd");
    og_node_add(g, "Div", "dd,sd", "nn");
    if (variant == 1) {
        og_node_add(g, "Mul", "gamma,nn", "y");
    } else {
        og_node_add(g, "Mul", "nn,gamma", "ng");
        og_node_add(g, "Add", "ng,beta", "y");
    }
    og_output(g, "y", OG_FLOAT, 3, d);
}

static void test_fuse_layernorm(void) {
    int64_t d[3] = {2, 5, 16};
    for (int variant = 0; variant < 3; variant++) {
        og_model *om = og_model_new(variant == 1 ? 18 : 13);
        build_ln(og_model_graph(om), variant, d);
        char label[32];
        snprintf(label, sizeof label, "layernorm-%d", variant);
        struct kt_pair p = kt_load_pair(om, label);
        if (variant < 2) {
            CHECK(kt_n_nodes(p.opt) == 1 && kt_count_op(p.opt, "LayerNormalization") == 1,
                  "%s: %d nodes, %d LayerNormalization", label, kt_n_nodes(p.opt),
                  kt_count_op(p.opt, "LayerNormalization"));
            const struct kiln_node *ln = p.opt ? kt_find_op(p.opt, "LayerNormalization") : NULL;
            CHECK(ln && ln->op && ln->opset >= 17 && ln->n_inputs == (variant == 0 ? 3 : 2),
                  "%s: fused node not bound to LayerNormalization", label);
        } else {
            CHECK(kt_count_op(p.opt, "LayerNormalization") == 0 && kt_count_op(p.opt, "ReduceMean") == 2,
                  "%s: a mean over axis 1 was fused", label);
        }
        float x[160];
        fill_rand(x, 160);
        for (int k = 0; k < 160; k++) x[k] = 3.0f * x[k] + 0.5f;
        kiln_tensor in = ftensor("x", 3, d, x);
        check_same(&p, &in, 1, 1, label);
        kt_pair_free(&p);
    }
}

/* An intermediate of the pattern read elsewhere (the mean is also an output)
 * keeps the pattern unfused. */
static void test_layernorm_shared_intermediate(void) {
    int64_t d[3] = {1, 3, 8}, dm[3] = {1, 3, 1};
    og_model *om = og_model_new(13);
    og_graph *g = og_model_graph(om);
    build_ln(g, 0, d);
    og_output(g, "m", OG_FLOAT, 3, dm);
    struct kt_pair p = kt_load_pair(om, "layernorm-shared");
    CHECK(kt_count_op(p.opt, "LayerNormalization") == 0, "fused although the mean is an output");
    float x[24];
    fill_rand(x, 24);
    kiln_tensor in = ftensor("x", 3, d, x);
    check_same(&p, &in, 1, 2, "layernorm-shared");
    kt_pair_free(&p);
}

/* ---- conv affine folding -------------------------------------------------- */

/* Conv -> Mul([C,1,1]) -> Add([1,C,1,1]) -> Relu is one Conv (with act);
 * Conv -> Div(scalar) -> Sub(scalar) folds too (no bias to start from).
 * Left alone: c - Conv (Sub with the Conv second), a spatial [1,1,H,W]
 * scale, a Conv output with two readers, and a division by zero. */
static void test_fold_conv_affine(void) {
    og_model *om = og_model_new(13);
    og_graph *g = og_model_graph(om);
    int64_t d[4] = {1, 8, 5, 5}, dw[4] = {8, 8, 3, 3}, db[1] = {8};
    int64_t dc3[3] = {8, 1, 1}, dc4[4] = {1, 8, 1, 1}, dsp[4] = {1, 1, 5, 5}, one[1] = {1};
    og_input(g, "x", OG_FLOAT, 4, d);
    const char *w[] = {"W0", "W1", "W2", "W3", "W4", "W5"};
    for (int k = 0; k < 6; k++) init_conv_w(g, w[k], dw);
    init_rand(g, "B", 1, db);
    init_rand(g, "s3", 3, dc3);
    init_rand(g, "t4", 4, dc4);
    init_rand(g, "sp", 4, dsp);
    init_scalar(g, "k", 1.7f);
    float zero = 0.0f;
    og_init_f32(g, "zero", 1, one, &zero);
    conv_node(g, "x,W0,B", "c0", 1);
    og_node_add(g, "Mul", "s3,c0", "m0");          /* constant first */
    og_node_add(g, "Add", "m0,t4", "a0");
    og_node_add(g, "Relu", "a0", "y0");
    conv_node(g, "y0,W1", "c1", 1);                /* no bias */
    og_node_add(g, "Div", "c1,k", "d1");
    og_node_add(g, "Sub", "d1,k", "y1");
    conv_node(g, "x,W2,B", "c2", 1);
    og_node_add(g, "Sub", "k,c2", "y2");           /* k - conv: not an affine of the conv's form */
    conv_node(g, "x,W3,B", "c3", 1);
    og_node_add(g, "Mul", "c3,sp", "y3");          /* spatial scale */
    conv_node(g, "x,W4,B", "c4", 1);
    og_node_add(g, "Mul", "c4,k", "m4");           /* c4 read twice */
    og_node_add(g, "Add", "m4,c4", "y4");
    conv_node(g, "x,W5,B", "c5", 1);
    og_node_add(g, "Div", "c5,zero", "y5");        /* x / 0 stays as the model says */
    const char *outs[] = {"y1", "y2", "y3", "y4", "y5"};
    for (int k = 0; k < 5; k++) og_output(g, outs[k], OG_FLOAT, 4, d);
    struct kt_pair p = kt_load_pair(om, "conv-affine");
    CHECK(kt_count_op(p.raw, "Mul") == 3 && kt_count_op(p.raw, "Div") == 2, "unoptimized graph");
    /* folded: Mul s3, Add t4, Div k, Sub k (and Relu fused); left: Sub k-c2, Mul sp, Mul k + Add, Div 0 */
    CHECK(kt_count_op(p.opt, "Mul") == 2, "Mul left: %d, want 2 (spatial, twice-read)", kt_count_op(p.opt, "Mul"));
    CHECK(kt_count_op(p.opt, "Add") == 1, "Add left: %d, want 1", kt_count_op(p.opt, "Add"));
    CHECK(kt_count_op(p.opt, "Sub") == 1, "Sub left: %d, want 1 (k - conv)", kt_count_op(p.opt, "Sub"));
    CHECK(kt_count_op(p.opt, "Div") == 1, "Div left: %d, want 1 (by zero)", kt_count_op(p.opt, "Div"));
    CHECK(kt_count_op(p.opt, "Relu") == 0, "Relu left: %d", kt_count_op(p.opt, "Relu"));
    float x[200];
    fill_rand(x, 200);
    kiln_tensor in = ftensor("x", 4, d, x);
    check_same(&p, &in, 1, 5, "conv-affine");
    kt_pair_free(&p);
}

/* The pipeline lists every pass, each once, dce last. */
static void test_pipeline(void) {
    const char *want[] = {"fold-constants", "cse", "fold-batchnorm", "fold-conv-affine", "fuse-layernorm",
                          "fuse-patterns", "fuse-matmul-bias", "fuse-attention", "simplify-transpose",
                          "fuse-residual", "fuse-activation", "dce"};
    int n = 0;
    for (const struct kiln_pass *p = kiln_default_passes; p->name; p++, n++)
        CHECK(n < 12 && !strcmp(p->name, want[n]), "pass %d is %s", n, p->name);
    CHECK(n == 12, "%d passes", n);
}

int main(void) {
    test_pipeline();
    test_cse();
    test_cse_skips_subgraphs();
    test_cse_large_constants();
    test_fold_conv_affine();
    test_fold_constants();
    test_fuse_residual();
    test_fuse_residual_shapes();
    test_fuse_layernorm();
    test_layernorm_shared_intermediate();
    return kt_finish("test_passes");
}
