/*
 * test_attention.c — the fuse-attention and simplify-transpose passes
 * (docs/passes.md) and the ops they write (kiln.Attention, src/ops/attention.c;
 * kiln.MatMul with transA/transB, src/ops/matmul.c).
 *
 * Each case builds a small model with onnxgen, loads it with no_optimize = 1
 * and with the default pipeline, checks what was rewritten (op counts,
 * attributes) and that the outputs agree on random inputs, fast kernels
 * against fast kernels and reference against reference. Near misses check
 * that the pattern is left alone. Attention shapes cover batch > 1, odd
 * sequence lengths, one query row, more rows than one kernel block (48) and
 * head sizes that are not multiples of the kernel's 16-wide tiles.
 */
#include "kiln.h"
#include "ops/op.h"
#include "ops/attention.h"
#include "passes/passes.h"
#include "runtime/model.h"
#include "support/kt.h"
#include "support/ktmodel.h"
#include "support/onnxgen.h"

#include <math.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

/* ---- helpers ---------------------------------------------------------- */

static uint32_t rng = 4242;
static float frand(void) {   /* uniform in [-1, 1) */
    rng = rng * 1664525u + 1013904223u;
    return (float)((rng >> 8) & 0xffff) / 32768.0f - 1.0f;
}
static void fill_rand(float *p, int64_t n, float amp) {
    for (int64_t i = 0; i < n; i++) p[i] = amp * frand();
}
static int64_t numel(int rank, const int64_t *d) {
    int64_t n = 1;
    for (int i = 0; i < rank; i++) n *= d[i];
    return n;
}
static void init_rand(og_graph *g, const char *name, int rank, const int64_t *dims, float amp) {
    int64_t n = numel(rank, dims);
    float *p = malloc((size_t)n * sizeof *p);
    fill_rand(p, n, amp);
    og_init_f32(g, name, rank, dims, p);
    free(p);
}
static void init_scalar(og_graph *g, const char *name, float v) {
    og_init_f32(g, name, 0, NULL, &v);
}


#define MAXO 5

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

/* Optimized outputs within tol (relative above magnitude 1) of the
 * unoptimized model's, fast against fast and reference against reference. */
static void check_same(const struct kt_pair *p, const kiln_tensor *in, int n_in, int n_out,
                       float tol, const char *what) {
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
                    if (!(fabsf(got[i][k] - want[i][k]) <= tol * (1.0f + fabsf(want[i][k])))) {
                        if (first < 0) first = k;
                        bad++;
                    }
                CHECK(bad == 0,
                      "%s (%s kernels): output %d: %lld of %lld values differ, first at %lld: %g vs %g",
                      what, ref ? "reference" : "fast", i, (long long)bad, (long long)nw[i],
                      (long long)first, first >= 0 ? got[i][first] : 0.0,
                      first >= 0 ? want[i][first] : 0.0);
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

static void transpose(og_graph *g, const char *in, const char *out, const int64_t *perm, int n) {
    og_attr_ints(og_node_add(g, "Transpose", in, out), "perm", perm, n);
}

/* ---- the inner kernels, portable and AVX2 ------------------------------------ */

/* The 6x16 tile and the row softmax against plain double loops, in both
 * builds (the AVX2 one only where the CPU has it). */
static void test_kernels(void) {
    enum { K = 37, LDA = 41, LDB = 19, LDC = 23, N = 29 };
    float A[KILN_ATT_MR * LDA], B[K * LDB], C[KILN_ATT_MR * LDC];
    fill_rand(A, KILN_ATT_MR * LDA, 1.0f);
    fill_rand(B, K * LDB, 1.0f);
    for (int isa = 0; isa <= (int)kiln_att_has_avx2(); isa++) {
        for (int i = 0; i < KILN_ATT_MR * LDC; i++) C[i] = 1e30f;
        kiln_att_tile(isa, A, LDA, B, LDB, C, LDC, K);
        double worst = 0;
        for (int r = 0; r < KILN_ATT_MR; r++)
            for (int c = 0; c < KILN_ATT_NR; c++) {
                double want = 0;
                for (int k = 0; k < K; k++) want += (double)A[r * LDA + k] * B[k * LDB + c];
                double e = fabs(C[r * LDC + c] - want);
                worst = e > worst ? e : worst;
            }
        CHECK(worst < 1e-4, "tile (%s): worst error %g", isa ? "avx2" : "portable", worst);
        for (int masked = 0; masked <= 1; masked++) {
            float s[N], x[N], m[2 * N];
            fill_rand(x, N, 8.0f);
            fill_rand(m, 2 * N, 4.0f);
            memcpy(s, x, sizeof s);
            float inv = kiln_att_softmax(isa, s, N, 0.7f, masked ? m : NULL, 2);
            double mx = -INFINITY, sum = 0, w[N];
            for (int j = 0; j < N; j++) {
                w[j] = x[j] * 0.7 + (masked ? m[2 * j] : 0.0);
                mx = w[j] > mx ? w[j] : mx;
            }
            for (int j = 0; j < N; j++) sum += w[j] = exp(w[j] - mx);
            double err = 0;
            for (int j = 0; j < N; j++) err = fmax(err, fabs(s[j] * inv - w[j] / sum));
            CHECK(err < 1e-6, "softmax (%s, mask %d): worst error %g", isa ? "avx2" : "portable",
                  masked, err);
        }
    }
}

/* ---- fuse-attention: the BERT form ----------------------------------------- */

enum scale_kind { SCALE_DIV, SCALE_MUL, SCALE_MUL_FIRST, SCALE_ON_Q };
enum mask_kind { MASK_NONE, MASK_PAD, MASK_CAUSAL };

struct bert_case {
    int64_t B, S, H, D;
    enum scale_kind scale;
    enum mask_kind mask;
    int mask_first;   /* Add(mask, scores) */
};

/* x [B,S,E] -> q,k,v projections -> Reshape [B,S,H,D] -> Transpose to
 * [B,H,S,D] (K to [B,H,D,S]) -> scores -> scale -> mask -> Softmax -> ·V ->
 * Transpose [B,S,H,D] -> Reshape [B,S,E], as PyTorch exports BERT. The pad
 * mask is an input [B,1,1,S] with -10000 at padded keys; the causal one a
 * constant [S,S]. */
static og_model *bert_model(const struct bert_case *c) {
    og_model *om = og_model_new(13);
    og_graph *g = og_model_graph(om);
    int64_t E = c->H * c->D;
    int64_t dx[3] = {c->B, c->S, E}, dw[2] = {E, E};
    og_input(g, "x", OG_FLOAT, 3, dx);
    float wamp = 1.0f / sqrtf((float)E);
    init_rand(g, "wq", 2, dw, 2.0f * wamp);
    init_rand(g, "wk", 2, dw, 2.0f * wamp);
    init_rand(g, "wv", 2, dw, wamp);
    int64_t shp4[4] = {0, 0, c->H, c->D}, shp3[3] = {0, 0, E}, four = 4, three = 3;
    og_init_i64(g, "shape4", 1, &four, shp4);
    og_init_i64(g, "shape3", 1, &three, shp3);
    og_node_add(g, "MatMul", "x,wq", "q0");
    og_node_add(g, "MatMul", "x,wk", "k0");
    og_node_add(g, "MatMul", "x,wv", "v0");
    og_node_add(g, "Reshape", "q0,shape4", "q1");
    og_node_add(g, "Reshape", "k0,shape4", "k1");
    og_node_add(g, "Reshape", "v0,shape4", "v1");
    int64_t p0213[4] = {0, 2, 1, 3}, p0231[4] = {0, 2, 3, 1};
    float sc = sqrtf((float)c->D);
    if (c->scale == SCALE_ON_Q) {
        init_scalar(g, "qs", 1.0f / sc);
        og_node_add(g, "Mul", "q1,qs", "q1s");
        transpose(g, "q1s", "q", p0213, 4);
    } else {
        transpose(g, "q1", "q", p0213, 4);
    }
    transpose(g, "k1", "kt", p0231, 4);
    transpose(g, "v1", "v", p0213, 4);
    og_node_add(g, "MatMul", "q,kt", "s0");
    const char *sm_in = "s1";
    switch (c->scale) {
    case SCALE_DIV:
        init_scalar(g, "c", sc);
        og_node_add(g, "Div", "s0,c", "s1");
        break;
    case SCALE_MUL:
        init_scalar(g, "c", 1.0f / sc);
        og_node_add(g, "Mul", "s0,c", "s1");
        break;
    case SCALE_MUL_FIRST:
        init_scalar(g, "c", 1.0f / sc);
        og_node_add(g, "Mul", "c,s0", "s1");
        break;
    case SCALE_ON_Q:
        sm_in = "s0";
        break;
    }
    if (c->mask == MASK_PAD) {
        int64_t dm[4] = {c->B, 1, 1, c->S};
        og_input(g, "mask", OG_FLOAT, 4, dm);
        og_node_add(g, "Add", c->mask_first ? (sm_in[1] == '0' ? "mask,s0" : "mask,s1")
                                            : (sm_in[1] == '0' ? "s0,mask" : "s1,mask"), "s2");
        sm_in = "s2";
    } else if (c->mask == MASK_CAUSAL) {
        int64_t dm[2] = {c->S, c->S};
        float *m = malloc((size_t)(c->S * c->S) * sizeof *m);
        for (int64_t i = 0; i < c->S; i++)
            for (int64_t j = 0; j < c->S; j++) m[i * c->S + j] = j > i ? -1e9f : 0.0f;
        og_init_f32(g, "cmask", 2, dm, m);
        free(m);
        og_node_add(g, "Add", c->mask_first ? (sm_in[1] == '0' ? "cmask,s0" : "cmask,s1")
                                            : (sm_in[1] == '0' ? "s0,cmask" : "s1,cmask"), "s2");
        sm_in = "s2";
    }
    og_attr_int(og_node_add(g, "Softmax", sm_in, "p"), "axis", -1);
    og_node_add(g, "MatMul", "p,v", "o0");
    transpose(g, "o0", "o1", p0213, 4);
    og_node_add(g, "Reshape", "o1,shape3", "y");
    og_output(g, "y", OG_FLOAT, 3, dx);
    return om;
}

static void run_bert_case(const struct bert_case *c, const char *label) {
    struct kt_pair p = kt_load_pair(bert_model(c), label);
    CHECK(kt_count_op(p.opt, "Attention") == 1, "%s: %d kiln.Attention, want 1", label,
          kt_count_op(p.opt, "Attention"));
    CHECK(kt_count_op(p.opt, "Softmax") == 0 && kt_count_op(p.opt, "Transpose") == 0 &&
              kt_count_op(p.opt, "Div") == 0 && kt_count_op(p.opt, "Add") == 0 &&
              kt_count_op(p.opt, "Mul") == 0,
          "%s: left Softmax %d, Transpose %d, Div %d, Add %d, Mul %d", label,
          kt_count_op(p.opt, "Softmax"), kt_count_op(p.opt, "Transpose"), kt_count_op(p.opt, "Div"),
          kt_count_op(p.opt, "Add"), kt_count_op(p.opt, "Mul"));
    CHECK(kt_count_op(p.opt, "MatMul") == 3, "%s: %d MatMul, want the 3 projections",
          label, kt_count_op(p.opt, "MatMul"));
    const struct kiln_node *a = kt_find_op(p.opt, "Attention");
    if (a) {
        CHECK(!strcmp(a->domain, "kiln"), "%s: domain '%s'", label, a->domain);
        CHECK(fabsf(kiln_attr_float(a, "scale", 0) - 1.0f / sqrtf((float)c->D)) < 1e-6f,
              "%s: scale %g", label, kiln_attr_float(a, "scale", 0));
        int64_t n;
        const int64_t *kp = kiln_attr_ints(a, "kt_perm", &n);
        CHECK(kp && n == 4 && kp[0] == 0 && kp[1] == 2 && kp[2] == 3 && kp[3] == 1,
              "%s: kt_perm", label);
        CHECK(kiln_attr_ints(a, "out_perm", &n) && n == 4, "%s: output Transpose not absorbed",
              label);
        CHECK(a->n_inputs == (c->mask ? 4 : 3), "%s: %d inputs", label, a->n_inputs);
    }
    int64_t E = c->H * c->D, dx[3] = {c->B, c->S, E}, dm[4] = {c->B, 1, 1, c->S};
    float *x = malloc((size_t)numel(3, dx) * sizeof *x), *m = malloc((size_t)(c->B * c->S) * 4);
    fill_rand(x, numel(3, dx), 1.0f);
    for (int64_t b = 0; b < c->B; b++)   /* batch b pads its last b keys */
        for (int64_t j = 0; j < c->S; j++) m[b * c->S + j] = j >= c->S - b && j > 0 ? -10000.0f : 0.0f;
    kiln_tensor in[2] = {ftensor("x", 3, dx, x), ftensor("mask", 4, dm, m)};
    check_same(&p, in, c->mask == MASK_PAD ? 2 : 1, 1, 1e-4f, label);
    free(x);
    free(m);
    kt_pair_free(&p);
}

static void test_bert_shapes(void) {
    const struct bert_case cases[] = {
        {1, 7, 2, 8, SCALE_DIV, MASK_NONE, 0},      {3, 13, 4, 16, SCALE_DIV, MASK_PAD, 0},
        {2, 1, 1, 5, SCALE_MUL, MASK_PAD, 1},       {2, 53, 2, 24, SCALE_MUL_FIRST, MASK_CAUSAL, 0},
        {2, 100, 3, 17, SCALE_DIV, MASK_CAUSAL, 1}, {4, 9, 2, 32, SCALE_ON_Q, MASK_PAD, 0},
        {1, 128, 4, 64, SCALE_DIV, MASK_NONE, 0},
    };
    for (size_t i = 0; i < sizeof cases / sizeof cases[0]; i++) {
        char label[96];
        const struct bert_case *c = &cases[i];
        snprintf(label, sizeof label, "bert B=%lld S=%lld H=%lld D=%lld scale=%d mask=%d",
                 (long long)c->B, (long long)c->S, (long long)c->H, (long long)c->D, c->scale,
                 c->mask);
        run_bert_case(c, label);
    }
}

/* ---- fuse-attention: 3-D operands, no Transposes ----------------------------- */

/* q [N,Sq,D], kt [N,D,Skv], v [N,Skv,Dv] graph inputs; Mul scale; a [Sq,Skv]
 * mask input broadcast over N. Only Q·Kt, scale, mask, Softmax, ·V. */
static void three_d(int64_t Skv) {
    int64_t N = 3, Sq = 5, D = 7, Dv = 9;
    og_model *om = og_model_new(17);
    og_graph *g = og_model_graph(om);
    int64_t dq[3] = {N, Sq, D}, dk[3] = {N, D, Skv}, dv[3] = {N, Skv, Dv}, dm[2] = {Sq, Skv},
            dy[3] = {N, Sq, Dv};
    og_input(g, "q", OG_FLOAT, 3, dq);
    og_input(g, "kt", OG_FLOAT, 3, dk);
    og_input(g, "v", OG_FLOAT, 3, dv);
    og_input(g, "m", OG_FLOAT, 2, dm);
    init_scalar(g, "c", 0.3f);
    og_node_add(g, "MatMul", "q,kt", "s0");
    og_node_add(g, "Mul", "s0,c", "s1");
    og_node_add(g, "Add", "s1,m", "s2");
    og_node_add(g, "Softmax", "s2", "p");   /* opset 17: axis defaults to -1 */
    og_node_add(g, "MatMul", "p,v", "y");
    og_output(g, "y", OG_FLOAT, 3, dy);
    char label[32];
    snprintf(label, sizeof label, "3-d Skv=%lld", (long long)Skv);
    struct kt_pair p = kt_load_pair(om, label);
    CHECK(kt_count_op(p.opt, "Attention") == 1 && kt_count_op(p.opt, "MatMul") == 0,
          "%s: %d Attention, %d MatMul", label, kt_count_op(p.opt, "Attention"),
          kt_count_op(p.opt, "MatMul"));
    const struct kiln_node *a = kt_find_op(p.opt, "Attention");
    int64_t n;
    CHECK(a && !kiln_attr_ints(a, "q_perm", &n) && !kiln_attr_ints(a, "kt_perm", &n) &&
              !kiln_attr_ints(a, "out_perm", &n),
          "%s: identity perms should be omitted", label);
    float q[105], k[399], v[513], m[95];
    fill_rand(q, numel(3, dq), 2.0f);
    fill_rand(k, numel(3, dk), 2.0f);
    fill_rand(v, numel(3, dv), 1.0f);
    fill_rand(m, numel(2, dm), 3.0f);
    kiln_tensor in[4] = {ftensor("q", 3, dq, q), ftensor("kt", 3, dk, k), ftensor("v", 3, dv, v),
                         ftensor("m", 2, dm, m)};
    check_same(&p, in, 4, 1, 1e-4f, label);
    kt_pair_free(&p);
}

/* 19 keys, and none (softmax over an empty axis, P·V of zeros) */
static void test_three_d(void) {
    three_d(19);
    three_d(0);
}

/* ---- fuse-attention: operands split from one packed qkv ------------------- */

/* qkv [B,S,3*H*D] -> Reshape [0,0,3,H,D] -> Transpose [2,0,3,1,4] ->
 * [3,B,H,S,D]; q and k = Squeeze(Slice(., i:i+1)) (opset 13: starts and axes
 * as inputs) and v = Gather(., 2); the scale is
 * a Mul on q, K^T a Transpose swapping the last two dims. The ranks come
 * from the Transpose through Slice/Squeeze/Gather. */
static void test_packed_qkv(void) {
    int64_t B = 2, S = 11, H = 3, D = 8, E = H * D;
    og_model *om = og_model_new(13);
    og_graph *g = og_model_graph(om);
    int64_t dx[3] = {B, S, 3 * E}, dy[3] = {B, S, E};
    og_input(g, "qkv", OG_FLOAT, 3, dx);
    int64_t five = 5, one = 1, three = 3, shp[5] = {0, 0, 3, H, D}, shp3[3] = {0, 0, E};
    int64_t z = 0, o1 = 1, t2 = 2;
    og_init_i64(g, "shape5", 1, &five, shp);
    og_init_i64(g, "shape3", 1, &three, shp3);
    og_init_i64(g, "s0", 1, &one, &z);
    og_init_i64(g, "s1", 1, &one, &o1);
    og_init_i64(g, "s2", 1, &one, &t2);
    og_init_i64(g, "idx2", 0, NULL, &t2);
    og_init_i64(g, "ax0", 1, &one, &z);
    og_node_add(g, "Reshape", "qkv,shape5", "r");
    int64_t p5[5] = {2, 0, 3, 1, 4}, p0132[4] = {0, 1, 3, 2}, p0213[4] = {0, 2, 1, 3};
    transpose(g, "r", "t", p5, 5);
    og_node_add(g, "Slice", "t,s0,s1,ax0", "qs");
    og_node_add(g, "Squeeze", "qs,ax0", "q");
    og_node_add(g, "Slice", "t,s1,s2,ax0", "ks");
    og_node_add(g, "Squeeze", "ks,ax0", "k");
    og_node_add(g, "Gather", "t,idx2", "v");
    init_scalar(g, "c", 1.0f / sqrtf((float)D));
    og_node_add(g, "Mul", "q,c", "qc");
    transpose(g, "k", "kt", p0132, 4);
    og_node_add(g, "MatMul", "qc,kt", "sc");
    og_attr_int(og_node_add(g, "Softmax", "sc", "p"), "axis", 3);
    og_node_add(g, "MatMul", "p,v", "o");
    transpose(g, "o", "ot", p0213, 4);
    og_node_add(g, "Reshape", "ot,shape3", "y");
    og_output(g, "y", OG_FLOAT, 3, dy);
    struct kt_pair p = kt_load_pair(om, "packed qkv");
    CHECK(kt_count_op(p.opt, "Attention") == 1 && kt_count_op(p.opt, "Softmax") == 0 &&
              kt_count_op(p.opt, "Transpose") == 1,
          "packed qkv: %d Attention, %d Softmax, %d Transpose (want 1, 0, 1)",
          kt_count_op(p.opt, "Attention"), kt_count_op(p.opt, "Softmax"), kt_count_op(p.opt, "Transpose"));
    float *x = malloc((size_t)numel(3, dx) * sizeof *x);
    fill_rand(x, numel(3, dx), 2.0f);
    kiln_tensor in = ftensor("qkv", 3, dx, x);
    check_same(&p, &in, 1, 1, 1e-4f, "packed qkv");
    free(x);
    kt_pair_free(&p);
}

/* ---- fuse-attention: near misses ------------------------------------------- */

/* q [2,3,6,8], kt [2,3,8,6], v [2,3,6,4] inputs; scores -> Div -> Softmax -> ·V,
 * with one thing wrong per variant:
 *   0: Softmax over axis 2 (not the last)
 *   1: the scores are also a graph output (a second consumer)
 *   2: the scaled scores feed a ReduceSum too
 *   3: the scale is a per-key vector, not a scalar
 *   4: no scale at all (nothing proves float32) */
static void test_near_misses(void) {
    int64_t dq[4] = {2, 3, 6, 8}, dk[4] = {2, 3, 8, 6}, dv[4] = {2, 3, 6, 4}, ds[4] = {2, 3, 6, 6},
            dy[4] = {2, 3, 6, 4};
    for (int variant = 0; variant < 5; variant++) {
        og_model *om = og_model_new(13);
        og_graph *g = og_model_graph(om);
        og_input(g, "q", OG_FLOAT, 4, dq);
        og_input(g, "kt", OG_FLOAT, 4, dk);
        og_input(g, "v", OG_FLOAT, 4, dv);
        og_node_add(g, "MatMul", "q,kt", "s0");
        if (variant == 3) {
            int64_t six = 6;
            init_rand(g, "c", 1, &six, 1.0f);
        } else {
            init_scalar(g, "c", 2.0f);
        }
        og_node_add(g, "Div", variant == 4 ? "q,c" : "s0,c", "s1");   /* 4: Div elsewhere */
        og_node *sm = og_node_add(g, "Softmax", variant == 4 ? "s0" : "s1", "p");
        og_attr_int(sm, "axis", variant == 0 ? 2 : -1);
        og_node_add(g, "MatMul", "p,v", "y");
        og_output(g, "y", OG_FLOAT, 4, dy);
        if (variant == 1) og_output(g, "s0", OG_FLOAT, 4, ds);
        if (variant == 2) {
            og_node_add(g, "ReduceSum", "s1", "r");
            og_output(g, "r", OG_FLOAT, -1, NULL);
        }
        if (variant == 4) og_output(g, "s1", OG_FLOAT, 4, dq);
        char label[32];
        snprintf(label, sizeof label, "near miss %d", variant);
        struct kt_pair p = kt_load_pair(om, label);
        CHECK(kt_count_op(p.opt, "Attention") == 0 && kt_count_op(p.opt, "Softmax") == 1,
              "%s: fused (%d Attention)", label, kt_count_op(p.opt, "Attention"));
        float q[288], k[288], v[144];
        fill_rand(q, 288, 1.0f);
        fill_rand(k, 288, 1.0f);
        fill_rand(v, 144, 1.0f);
        kiln_tensor in[3] = {ftensor("q", 4, dq, q), ftensor("kt", 4, dk, k),
                             ftensor("v", 4, dv, v)};
        check_same(&p, in, 3, variant == 0 || variant == 3 ? 1 : 2, 1e-5f, label);
        kt_pair_free(&p);
    }
}

/* ---- simplify-transpose ----------------------------------------------------- */

/* Transpose∘Transpose composes; when the composition is the identity, both
 * go; an identity Transpose writing a graph output stays. */
static void test_transpose_chains(void) {
    og_model *om = og_model_new(13);
    og_graph *g = og_model_graph(om);
    int64_t d[3] = {2, 3, 4}, d1[3] = {4, 2, 3};
    og_input(g, "x", OG_FLOAT, 3, d);
    int64_t p021[3] = {0, 2, 1}, p102[3] = {1, 0, 2}, p012[3] = {0, 1, 2};
    transpose(g, "x", "t1", p021, 3);       /* [2,4,3] */
    transpose(g, "t1", "t2", p102, 3);      /* [4,2,3] = x perm [2,0,1] */
    og_node_add(g, "Relu", "t2", "y1");
    transpose(g, "x", "u1", p021, 3);
    transpose(g, "u1", "u2", p021, 3);      /* identity */
    og_node_add(g, "Neg", "u2", "y2");
    transpose(g, "x", "y3", p012, 3);       /* identity, but a graph output */
    og_output(g, "y1", OG_FLOAT, 3, d1);
    og_output(g, "y2", OG_FLOAT, 3, d);
    og_output(g, "y3", OG_FLOAT, 3, d);
    struct kt_pair p = kt_load_pair(om, "transpose chains");
    CHECK(kt_count_op(p.raw, "Transpose") == 5, "raw: %d", kt_count_op(p.raw, "Transpose"));
    CHECK(kt_count_op(p.opt, "Transpose") == 2, "%d Transposes left, want 2 (composed + output)",
          kt_count_op(p.opt, "Transpose"));
    if (p.opt) {
        const struct kiln_graph *gg = p.opt->onnx.graph;
        int composed = 0;
        for (int32_t i = 0; i < gg->n_nodes; i++) {
            const struct kiln_node *n = &gg->nodes[i];
            int64_t c;
            const int64_t *pp = kiln_attr_ints(n, "perm", &c);
            if (!strcmp(n->op_type, "Transpose") && pp && c == 3 && pp[0] == 2 && pp[1] == 0 &&
                pp[2] == 1 && !strcmp(gg->values[n->inputs[0]].name, "x"))
                composed++;
        }
        CHECK(composed == 1, "no Transpose(x, [2,0,1])");
    }
    float x[24];
    fill_rand(x, 24, 1.0f);
    kiln_tensor in = ftensor("x", 3, d, x);
    check_same(&p, &in, 1, 3, 0.0f, "transpose chains");
    kt_pair_free(&p);
}

/* Reshape∘Reshape collapses; a Reshape to the input's declared shape goes; a
 * shape with a 0 (copy the inner result's dim) is left. */
static void test_reshape_chains(void) {
    og_model *om = og_model_new(13);
    og_graph *g = og_model_graph(om);
    int64_t d[3] = {2, 3, 4}, two = 2, three = 3, d64[2] = {6, 4}, d46[2] = {4, 6};
    og_input(g, "x", OG_FLOAT, 3, d);
    int64_t s64[2] = {6, 4}, s46[2] = {4, -1}, sid[3] = {2, -1, 4}, sz[2] = {0, -1};
    og_init_i64(g, "s64", 1, &two, s64);
    og_init_i64(g, "s46", 1, &two, s46);
    og_init_i64(g, "sid", 1, &three, sid);
    og_init_i64(g, "sz", 1, &two, sz);
    og_node_add(g, "Reshape", "x,s64", "r1");
    og_node_add(g, "Reshape", "r1,s46", "r2");   /* -> Reshape(x, [4,-1]) */
    og_node_add(g, "Relu", "r2", "y1");
    og_node_add(g, "Reshape", "x,sid", "i1");    /* identity: x is [2,3,4] */
    og_node_add(g, "Neg", "i1", "y2");
    og_node_add(g, "Reshape", "x,s64", "z1");
    og_node_add(g, "Reshape", "z1,sz", "z2");    /* 0 copies z1's dim 0: kept */
    og_node_add(g, "Sigmoid", "z2", "y3");
    og_output(g, "y1", OG_FLOAT, 2, d46);
    og_output(g, "y2", OG_FLOAT, 3, d);
    og_output(g, "y3", OG_FLOAT, 2, d64);
    struct kt_pair p = kt_load_pair(om, "reshape chains");
    CHECK(kt_count_op(p.raw, "Reshape") == 5, "raw: %d", kt_count_op(p.raw, "Reshape"));
    /* y1's chain -> 1, identity -> 0, y3's chain with a 0 -> 2 (CSE merges the two [6,4] reshapes) */
    CHECK(kt_count_op(p.opt, "Reshape") == 3, "%d Reshapes left, want 3", kt_count_op(p.opt, "Reshape"));
    float x[24];
    fill_rand(x, 24, 1.0f);
    kiln_tensor in = ftensor("x", 3, d, x);
    check_same(&p, &in, 1, 3, 0.0f, "reshape chains");
    kt_pair_free(&p);
}

/* MatMul(Transpose(a, swap), b), MatMul(a, Transpose(b)), both, and one
 * Transpose read by two MatMuls become kiln.MatMul with transA/transB; a
 * Transpose that a Relu also reads stays. */
static void test_transpose_into_matmul(void) {
    og_model *om = og_model_new(13);
    og_graph *g = og_model_graph(om);
    int64_t da[3] = {2, 5, 3}, db[3] = {2, 5, 4}, dc[2] = {4, 5}, y1d[3] = {2, 3, 4},
            y2d[3] = {2, 5, 5}, y3d[3] = {2, 3, 5};
    og_input(g, "a", OG_FLOAT, 3, da);   /* [2,5,3] -> aT [2,3,5] */
    og_input(g, "b", OG_FLOAT, 3, db);   /* [2,5,4] */
    og_input(g, "c", OG_FLOAT, 2, dc);   /* [4,5] -> cT [5,4] */
    int64_t p021[3] = {0, 2, 1}, p10[2] = {1, 0};
    transpose(g, "a", "aT", p021, 3);
    og_node_add(g, "MatMul", "aT,b", "y1");          /* transA: [2,3,5]x[2,5,4] */
    transpose(g, "c", "cT", p10, 2);
    og_node_add(g, "MatMul", "b,c", "bc");           /* [2,5,4]x[4,5] -> [2,5,5] */
    og_node_add(g, "MatMul", "aT,bc", "y3");         /* aT read by two MatMuls */
    og_node_add(g, "MatMul", "bc,bc", "y2pre");
    transpose(g, "b", "bT", p021, 3);                /* [2,4,5] */
    og_node_add(g, "MatMul", "y1,bT", "y4");         /* transB: [2,3,4]x[2,4,5] */
    og_node_add(g, "Relu", "bT", "rb");              /* ...and a Relu reads bT: it stays */
    og_node_add(g, "MatMul", "y2pre,cT", "y5");      /* [2,5,5]x[5,4] */
    og_output(g, "y1", OG_FLOAT, 3, y1d);
    og_output(g, "y3", OG_FLOAT, 3, y3d);
    og_output(g, "y4", OG_FLOAT, 3, y3d);
    og_output(g, "rb", OG_FLOAT, 3, (int64_t[3]){2, 4, 5});
    og_output(g, "y5", OG_FLOAT, 3, (int64_t[3]){2, 5, 4});
    (void)y2d;
    struct kt_pair p = kt_load_pair(om, "transpose into matmul");
    CHECK(kt_count_op(p.opt, "Transpose") == 1, "%d Transposes left, want 1 (bT)",
          kt_count_op(p.opt, "Transpose"));
    int ta = 0, tb = 0;
    if (p.opt) {
        const struct kiln_graph *gg = p.opt->onnx.graph;
        for (int32_t i = 0; i < gg->n_nodes; i++) {
            const struct kiln_node *n = &gg->nodes[i];
            if (strcmp(n->op_type, "MatMul")) continue;
            bool k = !strcmp(n->domain, "kiln");
            ta += k && kiln_attr_int(n, "transA", 0);
            tb += k && kiln_attr_int(n, "transB", 0);
        }
    }
    CHECK(ta == 2 && tb == 1, "transA on %d MatMuls (want 2), transB on %d (want 1)", ta, tb);
    float a[30], b[40], c[20];
    fill_rand(a, 30, 1.0f);
    fill_rand(b, 40, 1.0f);
    fill_rand(c, 20, 1.0f);
    kiln_tensor in[3] = {ftensor("a", 3, da, a), ftensor("b", 3, db, b), ftensor("c", 2, dc, c)};
    check_same(&p, in, 3, 5, 1e-5f, "transpose into matmul");
    kt_pair_free(&p);
}

int main(void) {
    test_kernels();
    test_bert_shapes();
    test_three_d();
    test_packed_qkv();
    test_near_misses();
    test_transpose_chains();
    test_reshape_chains();
    test_transpose_into_matmul();
    return kt_finish("test_attention");
}
