/*
 * test_fuse_patterns.c — the fuse-patterns and fuse-matmul-bias passes
 * (src/passes/fuse_patterns.c, docs/passes.md) and the GELU / Swish fused
 * activations they lead to, on small generated models: each case loads a
 * model unoptimized and optimized, checks what the pipeline made of the
 * pattern (node count, op types, fused activation and bias), and that the
 * outputs match the unoptimized model's, with fast kernels and with reference
 * kernels. Near misses (a wrong constant, an intermediate read twice, a bias
 * that would broadcast the result) must stay as they are. One fused model
 * also goes through a .kiln plan and back.
 */
#include "kiln.h"
#include "ops/op.h"
#include "passes/passes.h"
#include "passes/quantize.h"
#include "runtime/model.h"
#include "support/kt.h"
#include "support/ktmodel.h"
#include "support/onnxgen.h"

#include <math.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

static uint32_t rng = 4242;
static float frand(void) {   /* uniform in [-1, 1) */
    rng = rng * 1664525u + 1013904223u;
    return (float)((rng >> 8) & 0xffff) / 32768.0f - 1.0f;
}
static int64_t numel(int rank, const int64_t *d) {
    int64_t n = 1;
    for (int i = 0; i < rank; i++) n *= d[i];
    return n;
}
static void init_rand(og_graph *g, const char *name, int rank, const int64_t *dims, float scale) {
    int64_t n = numel(rank, dims);
    float *p = malloc((size_t)n * sizeof *p);
    for (int64_t i = 0; i < n; i++) p[i] = scale * frand();
    og_init_f32(g, name, rank, dims, p);
    free(p);
}
static void init_scalar(og_graph *g, const char *name, float v) { og_init_f32(g, name, 0, NULL, &v); }


/* Runs m on x; returns the malloc'ed float output 0 and its count. */
static float *run(const kiln_model *m, int reference, const kiln_tensor *in, int64_t *count,
                  const char *what) {
    kiln_error err;
    kiln_session *s = NULL;
    kiln_session_options so = kiln_session_options_default();
    so.n_threads = 2;
    so.reference_kernels = reference;
    if (!EXPECT_OK(what, kiln_session_create(m, &so, &s, &err), &err)) return NULL;
    kiln_tensor o;
    memset(&o, 0, sizeof o);
    float *r = NULL;
    if (EXPECT_OK(what, kiln_session_run(s, in, 1, &o, 1, &err), &err)) {
        CHECK(o.dtype == KILN_DTYPE_FLOAT, "%s: output dtype %d", what, o.dtype);
        *count = (int64_t)(o.nbytes / sizeof(float));
        r = malloc(o.nbytes ? o.nbytes : 1);
        memcpy(r, o.data, o.nbytes);
    }
    kiln_session_free(s);
    return r;
}

/* b's output matches a's within tol (relative above 1), fast kernels against
 * fast kernels and reference against reference. */
static void check_close(const kiln_model *a, const kiln_model *b, const kiln_tensor *in,
                        float tol, const char *what) {
    if (!a || !b) return;
    for (int ref = 0; ref <= 1; ref++) {
        int64_t na = 0, nb = 0;
        float *wa = run(a, ref, in, &na, what), *wb = run(b, ref, in, &nb, what);
        if (wa && wb) {
            CHECK(na == nb, "%s: %lld values, want %lld", what, (long long)nb, (long long)na);
            int64_t bad = 0, first = -1;
            for (int64_t k = 0; k < na && na == nb; k++)
                if (!(fabsf(wb[k] - wa[k]) <= tol * (1.0f + fabsf(wa[k])))) {
                    if (first < 0) first = k;
                    bad++;
                }
            CHECK(bad == 0, "%s (%s kernels): %lld values differ, first at %lld: %g vs %g", what,
                  ref ? "reference" : "fast", (long long)bad, (long long)first,
                  first >= 0 ? wb[first] : 0.0, first >= 0 ? wa[first] : 0.0);
        }
        free(wa);
        free(wb);
    }
}

static kiln_tensor ftensor(const char *name, int rank, const int64_t *dims, float *data) {
    kiln_tensor t = {.name = name, .dtype = KILN_DTYPE_FLOAT, .rank = rank, .data = data};
    for (int i = 0; i < rank; i++) t.dims[i] = dims[i];
    t.nbytes = (size_t)numel(rank, dims) * sizeof(float);
    return t;
}

/* Runs the pair on x [2, 3, 8] with values in [-4, 4) (GELU's and HardSwish's
 * interesting range). */
static void check_pair(const struct kt_pair *p, float tol, const char *what) {
    int64_t d[3] = {2, 3, 8};
    float x[48];
    for (int i = 0; i < 48; i++) x[i] = 4.0f * frand();
    kiln_tensor in = ftensor("x", 3, d, x);
    check_close(p->raw, p->opt, &in, tol, what);
}

/* ---- model builders ------------------------------------------------------ */

/* x [2, 3, 8] -> (optionally MatMul(x, W [8, 8]) + bias [8]) -> "h" */
static og_graph *start(og_model *om, int with_matmul) {
    og_graph *g = og_model_graph(om);
    int64_t d[3] = {2, 3, 8}, dw[2] = {8, 8}, db[1] = {8};
    og_input(g, "x", OG_FLOAT, 3, d);
    og_output(g, "y", OG_FLOAT, 3, d);
    if (!with_matmul) {
        og_node_add(g, "Identity", "x", "h");
        return g;
    }
    init_rand(g, "W", 2, dw, 0.6f);
    init_rand(g, "bias", 1, db, 0.5f);
    og_node_add(g, "MatMul", "x,W", "mm");
    og_node_add(g, "Add", "bias,mm", "h");   /* bias first, as PyTorch writes it */
    return g;
}

/* GELU, erf form, on h -> y. variant 0: Div(h, sqrt2), Mul(h, a) * 0.5 (PyTorch);
 * 1: Mul(h, 1/sqrt2), Mul(0.5, h) * a (TF); 2: Div, h * (a * 0.5), Add(1, e);
 * 3: like 0 with 0.7071 / 1.4142 written to 4 digits and Div by 2. */
static void gelu_erf(og_graph *g, int variant, float sqrt2) {
    init_scalar(g, "s2", variant == 1 ? 1.0f / sqrt2 : sqrt2);
    init_scalar(g, "one", 1.0f);
    init_scalar(g, "half", variant == 3 ? 2.0f : 0.5f);
    og_node_add(g, variant == 1 ? "Mul" : "Div", "h,s2", "t");
    og_node_add(g, "Erf", "t", "e");
    og_node_add(g, "Add", variant == 2 ? "one,e" : "e,one", "a");
    if (variant == 1) {
        og_node_add(g, "Mul", "half,h", "hh");
        og_node_add(g, "Mul", "hh,a", "y");
    } else if (variant == 2) {
        og_node_add(g, "Mul", "a,half", "ah");
        og_node_add(g, "Mul", "h,ah", "y");
    } else {
        og_node_add(g, "Mul", "h,a", "p");
        og_node_add(g, variant == 3 ? "Div" : "Mul", "p,half", "y");
    }
}

/* GELU, tanh form; cube 0: Pow(h, 3), 1: h * (h * h), 2: (h * h) * h */
static void gelu_tanh(og_graph *g, int cube, float k) {
    init_scalar(g, "three", 3.0f);
    init_scalar(g, "c", 0.044715f);
    init_scalar(g, "k", k);
    init_scalar(g, "one", 1.0f);
    init_scalar(g, "half", 0.5f);
    if (cube == 0) {
        og_node_add(g, "Pow", "h,three", "h3");
    } else {
        og_node_add(g, "Mul", "h,h", "h2");
        og_node_add(g, "Mul", cube == 1 ? "h,h2" : "h2,h", "h3");
    }
    og_node_add(g, "Mul", "c,h3", "ch3");
    og_node_add(g, "Add", "h,ch3", "v");
    og_node_add(g, "Mul", "v,k", "u");
    og_node_add(g, "Tanh", "u", "th");
    og_node_add(g, "Add", "th,one", "a");
    og_node_add(g, "Mul", "half,h", "hh");
    og_node_add(g, "Mul", "hh,a", "y");
}

/* HardSwish; variant 0: Clip(h + 3, 0, 6) * h / 6 (Paddle); 1: h * Clip * 0.16666;
 * 2: h * (Clip / 6); 3: Clip in its opset 6..10 attribute form; 4: h * HardSigmoid(h,
 * 1/6, 0.5). hi: the Clip's upper bound. */
static void hard_swish(og_graph *g, int variant, float hi) {
    init_scalar(g, "three", 3.0f);
    init_scalar(g, "zero", 0.0f);
    init_scalar(g, "six", hi);
    init_scalar(g, "sixth", 0.16666f);
    if (variant == 4) {
        og_node *n = og_node_add(g, "HardSigmoid", "h", "hs");
        og_attr_float(n, "alpha", 1.0f / 6.0f);
        og_attr_float(n, "beta", 0.5f);
        og_node_add(g, "Mul", "h,hs", "y");
        return;
    }
    og_node_add(g, "Add", "h,three", "h3");
    if (variant == 3) {
        og_node *n = og_node_add(g, "Clip", "h3", "c");
        og_attr_float(n, "min", 0.0f);
        og_attr_float(n, "max", hi);
    } else {
        og_node_add(g, "Clip", "h3,zero,six", "c");
    }
    if (variant == 1) {
        og_node_add(g, "Mul", "h,c", "p");
        og_node_add(g, "Mul", "p,sixth", "y");
    } else if (variant == 2) {
        og_node_add(g, "Div", "c,six", "cs");
        og_node_add(g, "Mul", "h,cs", "y");
    } else {
        og_node_add(g, "Mul", "c,h", "p");
        og_node_add(g, "Div", "p,six", "y");
    }
}

/* SiLU x * Sigmoid(x); with_beta: Swish x * Sigmoid(x * 1.5) (Paddle's swish) */
static void silu(og_graph *g, int with_beta) {
    if (with_beta) {
        init_scalar(g, "beta", 1.5f);
        og_node_add(g, "Mul", "h,beta", "hb");
        og_node_add(g, "Sigmoid", "hb", "s");
    } else {
        og_node_add(g, "Sigmoid", "h", "s");
    }
    og_node_add(g, "Mul", "s,h", "y");
}

/* The optimized model is one MatMul with the bias fused and activation `act`,
 * or (no MatMul) an Identity and one `op` node. */
static void check_fused(const struct kt_pair *p, int with_matmul, enum kiln_act_kind act,
                        const char *op, const char *what) {
    if (!p->opt) return;
    if (with_matmul) {
        const struct kiln_node *mm = kt_find_op(p->opt, "MatMul");
        CHECK(kt_n_nodes(p->opt) == 1 && mm, "%s: %d nodes after fusion, want one MatMul", what,
              kt_n_nodes(p->opt));
        CHECK(mm && mm->sum_input == 2 && mm->n_inputs == 3, "%s: bias not fused into MatMul", what);
        CHECK(mm && mm->act.kind == act, "%s: MatMul act %d, want %d", what,
              mm ? (int)mm->act.kind : -1, (int)act);
    } else {
        const struct kiln_node *n = kt_find_op(p->opt, op);
        CHECK(kt_count_op(p->opt, op) == 1 && kt_n_nodes(p->opt) == 1 + kt_count_op(p->opt, "Identity") &&
                  n && n->op && n->inputs[0] >= 0,
              "%s: %d nodes, want one %s (after the Identity)", what, kt_n_nodes(p->opt), op);
    }
}

/* ---- cases --------------------------------------------------------------- */

static void test_gelu_erf(void) {
    for (int mm = 0; mm <= 1; mm++)
        for (int v = 0; v < 4; v++) {
            char label[48];
            snprintf(label, sizeof label, "gelu-erf-%d%s", v, mm ? "-matmul" : "");
            og_model *om = og_model_new(13);
            gelu_erf(start(om, mm), v, v == 3 ? 1.4142f : 1.41421356f);
            struct kt_pair p = kt_load_pair(om, label);
            CHECK(kt_count_op(p.raw, "Erf") == 1, "%s: unoptimized graph", label);
            check_fused(&p, mm, KILN_ACT_GELU_ERF, "Gelu", label);
            const struct kiln_node *gn = kt_find_op(p.opt, "Gelu");
            CHECK(mm || (gn && gn->opset >= 20 && !kiln_attr_find(gn, "approximate")),
                  "%s: not an exact (erf) Gelu", label);
            /* 1.4142 is 1e-5 off sqrt 2 */
            check_pair(&p, v == 3 ? 1e-4f : 1e-5f, label);
            kt_pair_free(&p);
        }
}

static void test_gelu_tanh(void) {
    for (int mm = 0; mm <= 1; mm++)
        for (int cube = 0; cube < 3; cube++) {
            char label[48];
            snprintf(label, sizeof label, "gelu-tanh-%d%s", cube, mm ? "-matmul" : "");
            og_model *om = og_model_new(13);
            gelu_tanh(start(om, mm), cube, 0.7978845608f);
            struct kt_pair p = kt_load_pair(om, label);
            check_fused(&p, mm, KILN_ACT_GELU_TANH, "Gelu", label);
            const struct kiln_node *gn = kt_find_op(p.opt, "Gelu");
            CHECK(mm || (gn && !strcmp(kiln_attr_string(gn, "approximate", ""), "tanh")),
                  "%s: not a tanh Gelu", label);
            check_pair(&p, 1e-5f, label);
            kt_pair_free(&p);
        }
}

static void test_hard_swish(void) {
    for (int mm = 0; mm <= 1; mm++)
        for (int v = 0; v < 5; v++) {
            char label[48];
            snprintf(label, sizeof label, "hardswish-%d%s", v, mm ? "-matmul" : "");
            og_model *om = og_model_new(v == 3 ? 7 : 14);   /* 7: Clip with attributes */
            hard_swish(start(om, mm && v != 3), v, 6.0f);
            struct kt_pair p = kt_load_pair(om, label);
            check_fused(&p, mm && v != 3, KILN_ACT_HARD_SWISH, "HardSwish", label);
            /* 0.16666 is 4e-5 relative off 1/6 */
            check_pair(&p, v == 1 ? 1e-4f : 1e-5f, label);
            kt_pair_free(&p);
        }
}

static void test_silu(void) {
    for (int mm = 0; mm <= 1; mm++)
        for (int beta = 0; beta <= 1; beta++) {
            char label[48];
            snprintf(label, sizeof label, "%s%s", beta ? "swish-1.5" : "silu", mm ? "-matmul" : "");
            og_model *om = og_model_new(13);
            silu(start(om, mm), beta);
            struct kt_pair p = kt_load_pair(om, label);
            check_fused(&p, mm, KILN_ACT_SILU, "Swish", label);
            float want = beta ? 1.5f : 1.0f;
            const struct kiln_node *n = kt_find_op(p.opt, mm ? "MatMul" : "Swish");
            CHECK(n && (mm ? n->act.alpha : kiln_attr_float(n, "alpha", 1.0f)) == want,
                  "%s: alpha is not %g", label, want);
            check_pair(&p, 1e-5f, label);
            kt_pair_free(&p);
        }
}

/* A Conv -> decomposed HardSwish (ppocr's blocks) ends as one Conv with act. */
static void test_conv_hard_swish(void) {
    og_model *om = og_model_new(13);
    og_graph *g = og_model_graph(om);
    int64_t dx[4] = {1, 4, 6, 6}, dw[4] = {8, 4, 3, 3}, db[1] = {8}, dy[4] = {1, 8, 6, 6};
    og_input(g, "x", OG_FLOAT, 4, dx);
    og_output(g, "y", OG_FLOAT, 4, dy);
    init_rand(g, "W", 4, dw, 0.5f);
    init_rand(g, "B", 1, db, 0.5f);
    int64_t pads[4] = {1, 1, 1, 1};
    og_attr_ints(og_node_add(g, "Conv", "x,W,B", "h"), "pads", pads, 4);
    hard_swish(g, 0, 6.0f);
    struct kt_pair p = kt_load_pair(om, "conv-hardswish");
    const struct kiln_node *c = kt_find_op(p.opt, "Conv");
    CHECK(kt_n_nodes(p.opt) == 1 && c && c->act.kind == KILN_ACT_HARD_SWISH,
          "conv-hardswish: %d nodes, act %d", kt_n_nodes(p.opt), c ? (int)c->act.kind : -1);
    float x[144];
    for (int i = 0; i < 144; i++) x[i] = 2.0f * frand();
    kiln_tensor in = ftensor("x", 4, dx, x);
    check_close(p.raw, p.opt, &in, 1e-5f, "conv-hardswish");
    kt_pair_free(&p);
}

/* Near misses: each must keep its pattern's nodes. */
static void test_near_misses(void) {
    struct {
        const char *label, *keep;
        int keep_count;
    } cases[] = {
        {"gelu-wrong-sqrt2", "Erf", 1},   {"gelu-erf-read-twice", "Erf", 1},
        {"gelu-tanh-wrong-k", "Tanh", 1}, {"hardswish-clip-5", "Clip", 1},
        {"hardsigmoid-default", "HardSigmoid", 1}, {"silu-other-x", "Sigmoid", 1},
        {"bias-2d", "Add", 1},            {"bias-rank-growth", "Add", 1},
    };
    for (size_t c = 0; c < sizeof cases / sizeof cases[0]; c++) {
        og_model *om = og_model_new(13);
        og_graph *g = NULL;
        int64_t d[3] = {2, 3, 8};
        switch (c) {
        case 0: gelu_erf(g = start(om, 0), 0, 1.5f); break;
        case 1: {   /* the Erf output is also a graph output */
            gelu_erf(g = start(om, 0), 0, 1.41421356f);
            og_output(g, "e", OG_FLOAT, 3, d);
            break;
        }
        case 2: gelu_tanh(g = start(om, 0), 0, 0.75f); break;
        case 3: hard_swish(g = start(om, 0), 0, 5.0f); break;
        case 4: {   /* HardSigmoid with the default alpha 0.2: not x * relu6(x + 3) / 6 */
            g = start(om, 0);
            og_node_add(g, "HardSigmoid", "h", "hs");
            og_node_add(g, "Mul", "h,hs", "y");
            break;
        }
        case 5: {   /* Sigmoid of one value times another */
            g = start(om, 0);
            og_node_add(g, "Neg", "h", "nh");
            og_node_add(g, "Sigmoid", "nh", "s");
            og_node_add(g, "Mul", "s,h", "y");
            break;
        }
        case 6: {   /* a [3, 8] bias is not one row */
            g = og_model_graph(om);
            int64_t dw[2] = {8, 8}, db[2] = {3, 8};
            og_input(g, "x", OG_FLOAT, 3, d);
            og_output(g, "y", OG_FLOAT, 3, d);
            init_rand(g, "W", 2, dw, 0.5f);
            init_rand(g, "bias", 2, db, 0.5f);
            og_node_add(g, "MatMul", "x,W", "mm");
            og_node_add(g, "Add", "mm,bias", "y");
            break;
        }
        case 7: {   /* x of unknown rank: a [1, 1, 1, 8] bias could add dims */
            g = og_model_graph(om);
            int64_t dw[2] = {8, 8}, db[4] = {1, 1, 1, 8};
            og_input(g, "x", OG_FLOAT, -1, NULL);
            og_output(g, "y", OG_FLOAT, -1, NULL);
            init_rand(g, "W", 2, dw, 0.5f);
            init_rand(g, "bias", 4, db, 0.5f);
            og_node_add(g, "MatMul", "x,W", "mm");
            og_node_add(g, "Add", "mm,bias", "y");
            break;
        }
        }
        (void)g;
        struct kt_pair p = kt_load_pair(om, cases[c].label);
        CHECK(kt_count_op(p.opt, cases[c].keep) == cases[c].keep_count, "%s: %d %s left, want %d",
              cases[c].label, kt_count_op(p.opt, cases[c].keep), cases[c].keep, cases[c].keep_count);
        CHECK(kt_count_op(p.opt, "Gelu") + kt_count_op(p.opt, "HardSwish") + kt_count_op(p.opt, "Swish") == 0,
              "%s: fused anyway", cases[c].label);
        const struct kiln_node *mm = kt_find_op(p.opt, "MatMul");
        CHECK(!mm || (mm->sum_input == 0 && mm->n_inputs == 2), "%s: bias fused anyway",
              cases[c].label);
        if (c != 1) check_pair(&p, 1e-5f, cases[c].label);
        kt_pair_free(&p);
    }
}

/* A MatMul with a fused bias and GELU survives a .kiln plan: same outputs. */
static void test_plan_roundtrip(void) {
    og_model *om = og_model_new(13);
    gelu_erf(start(om, 1), 0, 1.41421356f);
    size_t len;
    uint8_t *buf = og_model_pack(om, &len);
    og_model_free(om);
    kiln_model *opt = kt_load(buf, len, 0, "plan-gelu");
    free(buf);
    char *dir = kt_mkdtemp("fuse_patterns");
    char path[512];
    snprintf(path, sizeof path, "%s/gelu.kiln", dir ? dir : ".");
    kiln_error err;
    kiln_model *plan = NULL;
    if (opt && EXPECT_OK("save plan", kiln_model_save_plan(opt, path, NULL, 0, &err), &err) &&
        EXPECT_OK("load plan", kiln_model_load(path, NULL, &plan, &err), &err)) {
        const struct kiln_node *mm = kt_find_op(plan, "MatMul");
        CHECK(mm && mm->sum_input == 2 && mm->act.kind == KILN_ACT_GELU_ERF,
              "plan: MatMul lost its bias or activation");
        int64_t d[3] = {2, 3, 8};
        float x[48];
        for (int i = 0; i < 48; i++) x[i] = 3.0f * frand();
        kiln_tensor in = ftensor("x", 3, d, x);
        check_close(opt, plan, &in, 1e-6f, "plan-gelu");
    }
    kiln_model_free(plan);
    kiln_model_free(opt);
    if (dir) kt_rm_rf(dir);
    free(dir);
}

/* HardSwish's fast kernel (what the fused op runs) against its reference
 * kernel, at the clamp's edges and on special values. */
static void test_hard_swish_fast(void) {
    og_model *om = og_model_new(14);
    og_graph *g = og_model_graph(om);
    int64_t d[1] = {40};
    og_input(g, "x", OG_FLOAT, 1, d);
    og_output(g, "y", OG_FLOAT, 1, d);
    og_node_add(g, "HardSwish", "x", "y");
    size_t len;
    uint8_t *buf = og_model_pack(om, &len);
    og_model_free(om);
    kiln_model *m = kt_load(buf, len, 0, "hardswish-fast");
    free(buf);
    float x[40] = {-INFINITY, INFINITY, NAN, -NAN, -0.0f, 0.0f, -3.0f, 3.0f, -3.0000002f,
                   2.9999998f, 1e30f, -1e30f, 1e-40f, -1e-40f, 6.0f, -6.0f};
    for (int i = 16; i < 40; i++) x[i] = 5.0f * frand();
    kiln_tensor in = ftensor("x", 1, d, x);
    int64_t nf = 0, nr = 0;
    float *f = m ? run(m, 0, &in, &nf, "hardswish-fast") : NULL;
    float *r = m ? run(m, 1, &in, &nr, "hardswish-ref") : NULL;
    for (int i = 0; f && r && nf == 40 && nr == 40 && i < 40; i++)
        CHECK((isnan(f[i]) && isnan(r[i])) || f[i] == r[i] ||
                  fabsf(f[i] - r[i]) <= 1e-6f * (1.0f + fabsf(r[i])),
              "HardSwish(%g): fast %g, reference %g", x[i], f[i], r[i]);
    free(f);
    free(r);
    kiln_model_free(m);
}

/* The bf16 compiler turns a MatMul with a fused bias into a Bf16MatMul whose
 * bias is that input (sum_input cleared), keeping the fused GELU. */
static void test_bias_bf16(void) {
    og_model *om = og_model_new(13);
    gelu_erf(start(om, 1), 0, 1.41421356f);
    size_t len;
    uint8_t *buf = og_model_pack(om, &len);
    og_model_free(om);
    kiln_model *fp = kt_load(buf, len, 0, "bf16-fp"), *b = kt_load(buf, len, 0, "bf16");
    free(buf);
    kiln_error err;
    struct kiln_quant_stats qs;
    if (b && EXPECT_OK("bf16", kiln_convert_bf16(b->onnx.graph, &qs, &err), &err)) {
        const struct kiln_node *n = kt_find_op(b, "Bf16MatMul");
        CHECK(qs.matmuls == 1 && n && n->n_inputs == 3 && n->inputs[2] >= 0 && !n->sum_input &&
                  n->act.kind == KILN_ACT_GELU_ERF,
              "bf16: MatMul with fused bias not rewritten to Bf16MatMul with bias and GELU");
        int64_t d[3] = {2, 3, 8};
        float x[48];
        for (int i = 0; i < 48; i++) x[i] = 2.0f * frand();
        kiln_tensor in = ftensor("x", 3, d, x);
        check_close(fp, b, &in, 2e-2f, "bf16");   /* bf16 weights: 8 mantissa bits */
    }
    kiln_model_free(fp);
    kiln_model_free(b);
}

int main(void) {
    test_bias_bf16();
    test_hard_swish_fast();
    test_gelu_erf();
    test_gelu_tanh();
    test_hard_swish();
    test_silu();
    test_conv_hard_swish();
    test_near_misses();
    test_plan_roundtrip();
    return kt_finish("test_fuse_patterns");
}
