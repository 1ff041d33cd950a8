/*
 * test_layout.c — activations kept in the planner's layouts (blocked nChw8c,
 * channels-last) through the ops between convolutions, against the plain
 * reference kernels: Concat along channels (aligned and unaligned channel
 * offsets, a constant zero block as blazeface pads channels), pools, a
 * squeeze-excitation block (GlobalAveragePool -> Conv -> HardSigmoid ->
 * broadcast Mul), per-channel constant Add/Sub/Div, same-shape elementwise
 * ops (HardSwish, Sigmoid, Gelu, Add, Clip, Div by a scalar), and plain-only
 * readers (Pad, Transpose, Reshape, graph outputs) fed from laid-out values.
 * Channel counts that are not multiples of 8 exercise the padded last block.
 *
 * Besides the numbers, the plan is checked through kiln_session_profile:
 * in the blocked layout only the convolution writing a graph output reorders,
 * and Concat, Pad and the broadcast ops run on the laid-out values
 * ("kiln:layout").
 */
#include "kiln.h"
#include "support/kt.h"
#include "support/onnxgen.h"

#include <math.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

static uint32_t rng = 2024;
static float frand(void) {
    rng = rng * 1664525u + 1013904223u;
    return (float)((rng >> 8) & 0xffff) / 65536.0f - 0.5f;
}

static void init_rand(og_graph *g, const char *name, int rank, const int64_t *dims, float scale) {
    int64_t n = 1;
    for (int i = 0; i < rank; i++) n *= dims[i];
    float *w = malloc((size_t)n * sizeof *w);
    for (int64_t i = 0; i < n; i++) w[i] = scale * frand();
    og_init_f32(g, name, rank, dims, w);
    free(w);
}

/* Conv ci -> co with a k x k kernel (pad k/2) and a bias. */
static void conv(og_graph *g, const char *in, const char *out, int64_t ci, int64_t co, int64_t k) {
    char w[64], b[64], ins[200];
    snprintf(w, sizeof w, "%s_w", out);
    snprintf(b, sizeof b, "%s_b", out);
    int64_t wd[4] = {co, ci, k, k}, bd[1] = {co};
    init_rand(g, w, 4, wd, 2.0f / sqrtf((float)(ci * k * k)));
    init_rand(g, b, 1, bd, 0.2f);
    snprintf(ins, sizeof ins, "%s,%s,%s", in, w, b);
    og_node *n = og_node_add(g, "Conv", ins, out);
    int64_t ks[2] = {k, k}, pads[4] = {k / 2, k / 2, k / 2, k / 2};
    og_attr_ints(n, "kernel_shape", ks, 2);
    og_attr_ints(n, "pads", pads, 4);
}

#define NOUT 4

struct net {
    int64_t C1, C2, Cz, H, N;   /* conv widths, the zero block, spatial size, batch */
};

/* The network; outputs: y (plain NCHW), t (NHWC via Transpose), r (Reshape),
 * z (conv of t transposed back). */
static og_model *build(const struct net *c) {
    og_model *om = og_model_new(20);   /* Gelu */
    og_graph *g = og_model_graph(om);
    const int64_t H = c->H, h = H / 2;
    const int64_t N = c->N;
    int64_t xd[4] = {N, 3, H, H};
    og_input(g, "x", OG_FLOAT, 4, xd);
    conv(g, "x", "a", 3, c->C1, 3);
    og_node_add(g, "Relu", "a", "ar");
    og_node *mp = og_node_add(g, "MaxPool", "ar", "p");
    int64_t k2[2] = {2, 2};
    og_attr_ints(mp, "kernel_shape", k2, 2);
    og_attr_ints(mp, "strides", k2, 2);
    conv(g, "p", "b", c->C1, c->C2, 1);
    /* channels: C1 + C2, then the constant zero block */
    og_attr_int(og_node_add(g, "Concat", "p,b", "cc"), "axis", 1);
    int64_t zd[4] = {N, c->Cz, h, h};
    float *zeros = calloc((size_t)(N * c->Cz * h * h), sizeof *zeros);
    og_init_f32(g, "zeros", 4, zd, zeros);
    free(zeros);
    og_attr_int(og_node_add(g, "Concat", "cc,zeros", "cz"), "axis", -3);
    const int64_t C3 = c->C1 + c->C2 + c->Cz;
    conv(g, "cz", "d", C3, C3, 3);
    /* squeeze-excitation */
    og_node_add(g, "GlobalAveragePool", "d", "gp");
    conv(g, "gp", "s1", C3, 8, 1);
    og_node_add(g, "Relu", "s1", "s1r");
    conv(g, "s1r", "s2", 8, C3, 1);
    og_node *hs = og_node_add(g, "HardSigmoid", "s2", "s3");
    og_attr_float(hs, "alpha", 0.2f);
    og_attr_float(hs, "beta", 0.5f);
    og_node_add(g, "Mul", "d,s3", "e");
    /* same-shape elementwise ops and scalars */
    og_node_add(g, "HardSwish", "e", "f");
    og_node_add(g, "Sigmoid", "f", "f2");
    og_node_add(g, "Add", "f2,e", "f3");
    int64_t one[1] = {1};
    float lo = -0.25f, hi = 0.75f, six = 6.0f;
    og_init_f32(g, "lo", 0, one, &lo);
    og_init_f32(g, "hi", 0, one, &hi);
    og_init_f32(g, "six", 1, one, &six);
    og_node_add(g, "Clip", "f3,lo,hi", "f4");
    og_node_add(g, "Div", "f4,six", "f5");
    og_node_add(g, "Gelu", "f5", "f6");
    /* per-channel constants: [C,1,1] scale, [1,C,1,1] bias subtracted from, divisor */
    int64_t cd3[3] = {C3, 1, 1}, cd4[4] = {1, C3, 1, 1};
    init_rand(g, "scale", 3, cd3, 2.0f);
    init_rand(g, "bias", 4, cd4, 1.0f);
    float *dv = malloc((size_t)C3 * sizeof *dv);
    for (int64_t i = 0; i < C3; i++) dv[i] = 0.5f + (float)i / 8.0f;
    og_init_f32(g, "divisor", 4, cd4, dv);
    free(dv);
    og_node_add(g, "Mul", "scale,f6", "g1");
    og_node_add(g, "Sub", "bias,g1", "g2");
    og_node_add(g, "Div", "g2,divisor", "g3");
    og_node *ap = og_node_add(g, "AveragePool", "g3", "g4");
    int64_t k3[2] = {3, 3}, p1[4] = {1, 1, 1, 1};
    og_attr_ints(ap, "kernel_shape", k3, 2);
    og_attr_ints(ap, "pads", p1, 4);
    /* a plain-only reader in the middle: Pad, then back into a conv */
    int64_t padv[8] = {0, 0, 1, 1, 0, 0, 1, 1};
    int64_t pd[1] = {8};
    og_init_i64(g, "pads", 1, pd, padv);
    og_node_add(g, "Pad", "g4,pads", "g5");
    conv(g, "g5", "y", C3, 12, 3);
    /* plain outputs taken from laid-out values */
    og_node *tr = og_node_add(g, "Transpose", "g4", "t");
    int64_t perm[4] = {0, 2, 3, 1};
    og_attr_ints(tr, "perm", perm, 4);
    int64_t shp[2] = {N, -1}, sd[1] = {2};
    og_init_i64(g, "shp", 1, sd, shp);
    og_node_add(g, "Reshape", "cz,shp", "r");
    /* and back from NHWC into a convolution (a TensorFlow model's input); the
     * Relu between keeps simplify-transpose from cancelling the two Transposes */
    og_node_add(g, "Relu", "t", "tn");
    og_node *tb = og_node_add(g, "Transpose", "tn", "u");
    int64_t perm2[4] = {0, 3, 1, 2};
    og_attr_ints(tb, "perm", perm2, 4);
    conv(g, "u", "z", C3, 8, 3);
    int64_t yd[4] = {N, 12, h + 2, h + 2}, td[4] = {N, h, h, C3}, rd[2] = {N, C3 * h * h};
    og_output(g, "y", OG_FLOAT, 4, yd);
    og_output(g, "t", OG_FLOAT, 4, td);
    og_output(g, "r", OG_FLOAT, 2, rd);
    int64_t zd2[4] = {N, 8, h, h};
    og_output(g, "z", OG_FLOAT, 4, zd2);
    return om;
}

/* Runs once; returns malloc'ed copies of the NOUT outputs (NULL on failure). */
static int run(kiln_model *m, int reference, int layout, const float *x, int64_t N, int64_t H, float **outs,
               size_t *counts, int *conv_reorders, int *layout_steps) {
    kiln_session_options so = kiln_session_options_default();
    so.reference_kernels = reference;
    so.activation_layout = layout;
    so.n_threads = 2;
    kiln_session *s = NULL;
    kiln_error err;
    if (!EXPECT_OK("session", kiln_session_create(m, &so, &s, &err), &err)) return 0;
    kiln_tensor in = {.name = "x", .dtype = KILN_DTYPE_FLOAT, .rank = 4, .dims = {N, 3, H, H},
                      .data = (void *)x, .nbytes = (size_t)(N * 3 * H * H) * sizeof(float)};
    kiln_tensor out[NOUT];
    int ok = EXPECT_OK("run", kiln_session_run(s, &in, 1, out, NOUT, &err), &err);
    for (int i = 0; ok && i < NOUT; i++) {
        outs[i] = malloc(out[i].nbytes);
        memcpy(outs[i], out[i].data, out[i].nbytes);
        counts[i] = out[i].nbytes / sizeof(float);
    }
    int32_t ns = kiln_session_profile(s, NULL, 0);
    kiln_profile_entry *e = calloc((size_t)ns + 1, sizeof *e);
    kiln_session_profile(s, e, ns);
    *conv_reorders = *layout_steps = 0;
    for (int32_t i = 0; i < ns; i++) {
        if (!strcmp(e[i].op_type, "Conv") && strstr(e[i].impl, "reorders")) ++*conv_reorders;
        if (!strcmp(e[i].impl, "kiln:layout")) ++*layout_steps;
    }
    free(e);
    kiln_session_free(s);
    return ok;
}

static void check_case(const struct net *c) {
    og_model *om = build(c);
    size_t len;
    uint8_t *buf = og_model_pack(om, &len);
    og_model_free(om);
    kiln_model *m = NULL;
    kiln_error err;
    kiln_status st = kiln_model_load_buffer(buf, len, "layout", NULL, &m, &err);
    free(buf);
    if (!EXPECT_OK("load", st, &err)) return;
    const int64_t H = c->H, N = c->N;
    float *x = malloc((size_t)(N * 3 * H * H) * sizeof *x);
    for (int64_t i = 0; i < N * 3 * H * H; i++) x[i] = 2.0f * frand();
    float *want[NOUT] = {0}, *got[NOUT] = {0};
    size_t nw[NOUT], ng[NOUT];
    int cr, ls;
    if (run(m, 1, 1, x, N, H, want, nw, &cr, &ls)) {
        static const char *const lname[] = {"", "plain", "nhwc", "blocked"};
        for (int layout = 1; layout <= 3; layout++) {
            if (!run(m, 0, layout, x, N, H, got, ng, &cr, &ls)) continue;
            for (int o = 0; o < NOUT; o++) {
                CHECK(ng[o] == nw[o], "C1=%lld C2=%lld %s: output %d has %zu values, want %zu",
                      (long long)c->C1, (long long)c->C2, lname[layout], o, ng[o], nw[o]);
                size_t bad = 0, first = 0;
                for (size_t i = 0; ng[o] == nw[o] && i < nw[o]; i++)
                    if (!(fabsf(got[o][i] - want[o][i]) <= 1e-4f * (1.0f + fabsf(want[o][i]))) && !bad++)
                        first = i;
                CHECK(bad == 0, "C1=%lld C2=%lld %s: output %d: %zu of %zu values differ from "
                      "the reference (first at %zu: %g vs %g)", (long long)c->C1,
                      (long long)c->C2, lname[layout], o, bad, nw[o], first,
                      bad ? got[o][first] : 0.0, bad ? want[o][first] : 0.0);
                free(got[o]);
                got[o] = NULL;
            }
            if (layout == 3) {
                /* the convolutions read and write blocked values directly, but for
                 * the two writing plain graph outputs; Concat (2), the SE Mul, the 3
                 * per-channel ops, Pad and both Transposes stay laid out */
                CHECK(cr == 2, "C1=%lld C2=%lld blocked: %d convolutions reorder, want 2",
                      (long long)c->C1, (long long)c->C2, cr);
                CHECK(ls == 9, "C1=%lld C2=%lld blocked: %d steps run on laid-out values, want 9",
                      (long long)c->C1, (long long)c->C2, ls);
            }
        }
    }
    for (int o = 0; o < NOUT; o++) free(want[o]);
    free(x);
    kiln_model_free(m);
}

int main(void) {
    /* C1 + C2 + Cz: whole blocks; unaligned concat offset; padded tails */
    static const struct net cases[] = {
        {16, 8, 8, 12, 1},   /* 32 channels, every offset a block boundary */
        {16, 4, 4, 10, 1},   /* 20 + 4: second concat at offset 20 */
        {12, 8, 4, 10, 1},   /* 12 (padded) + 8, offset 12 */
        {24, 12, 6, 9, 1},   /* 42 channels as in blazeface; odd spatial size */
        {12, 4, 4, 8, 2},    /* batch 2: the SE scale is [2, C, 1, 1] */
    };
    for (size_t i = 0; i < sizeof cases / sizeof cases[0]; i++) check_case(&cases[i]);
    return kt_finish("test_layout");
}
