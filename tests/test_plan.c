/*
 * test_plan.c — the static planner and executor through the public API, on
 * generated models: arena reuse by liveness, in-place elementwise ops, views
 * that take no bytes, plan-time folding of constant sub-graphs, the plan
 * cache across input shapes, and sessions sharing one model across threads.
 *
 * Memory claims are checked against kiln_session_arena_bytes(); every case
 * also checks the numbers it computes against values worked out here, so a
 * plan that saves memory by overwriting live data fails.
 * Uses Add (src/ops/elementwise.c) and Reshape (src/ops/shape.c).
 */
#include "kiln.h"
#include "support/kt.h"
#include "support/onnxgen.h"

#include <math.h>
#include <pthread.h>
#include <stdlib.h>
#include <string.h>

#define W 1024                       /* floats per activation */
#define B ((uint64_t)W * sizeof(float)) /* bytes per activation (a multiple of 64) */

static kiln_model *load(og_model *om, const char *label) {
    size_t len;
    uint8_t *buf = og_model_pack(om, &len);
    kiln_error err;
    kiln_model *m = NULL;
    kiln_status s = kiln_model_load_buffer(buf, len, label, NULL, &m, &err);
    free(buf);
    og_model_free(om);
    if (!EXPECT_OK(label, s, &err)) return NULL;
    return m;
}

static kiln_session *session(kiln_model *m, const char *label) {
    if (!m) return NULL;
    kiln_error err;
    kiln_session *s = NULL;
    kiln_session_options so = kiln_session_options_default();
    so.n_threads = 2;
    if (!EXPECT_OK(label, kiln_session_create(m, &so, &s, &err), &err)) return NULL;
    return s;
}

static void fill(float *x, int n, float scale) {
    for (int i = 0; i < n; i++) x[i] = scale * (float)((i * 37) % 101 - 50) / 16.0f;
}

/* Counts elements where got differs from want by more than a float ulp or so. */
static int mismatches(const float *got, const float *want, int n) {
    int bad = 0;
    for (int i = 0; i < n; i++)
        if (!(fabsf(got[i] - want[i]) <= 1e-5f * (1.0f + fabsf(want[i])))) bad++;
    return bad;
}

static int run1(kiln_session *s, const char *what, float *x, int64_t d0, int64_t d1,
                kiln_tensor *out) {
    kiln_error err;
    kiln_tensor in = {.name = "x", .dtype = KILN_DTYPE_FLOAT, .rank = 2, .dims = {d0, d1},
                      .data = x, .nbytes = (size_t)(d0 * d1) * sizeof(float)};
    return EXPECT_OK(what, kiln_session_run(s, &in, 1, out, 1, &err), &err);
}

/* x -> Add(.,c) -> Add(.,c) ... N times -> y. The first Add cannot write over
 * the caller's input; every later one can write over its dying input, so the
 * whole chain needs one buffer. */
static void test_inplace_chain(void) {
    enum { N = 16 };
    og_model *om = og_model_new(17);
    og_graph *g = og_model_graph(om);
    int64_t d[2] = {1, W}, cd[1] = {W};
    float c[W];
    fill(c, W, 0.5f);
    og_input(g, "x", OG_FLOAT, 2, d);
    og_init_f32(g, "c", 1, cd, c);
    char prev[16] = "x", cur[16];
    for (int k = 1; k <= N; k++) {
        snprintf(cur, sizeof cur, k == N ? "y" : "a%d", k);
        char ins[40];
        snprintf(ins, sizeof ins, "%s,c", prev);
        og_node_add(g, "Add", ins, cur);
        memcpy(prev, cur, sizeof prev);
    }
    og_output(g, "y", OG_FLOAT, 2, d);
    kiln_model *m = load(om, "inplace-chain");
    kiln_session *s = session(m, "inplace-chain session");
    if (s) {
        float x[W], x0[W], want[W];
        fill(x, W, 1.0f);
        memcpy(x0, x, sizeof x);
        for (int i = 0; i < W; i++) {
            float v = x[i];
            for (int k = 0; k < N; k++) v += c[i];
            want[i] = v;
        }
        kiln_tensor out[1];
        if (run1(s, "inplace-chain run", x, 1, W, out)) {
            CHECK(out[0].rank == 2 && out[0].dims[1] == W && out[0].nbytes == B,
                  "output shape wrong");
            CHECK(mismatches(out[0].data, want, W) == 0, "chain of %d Adds computed wrong values",
                  N);
            CHECK(!memcmp(x, x0, sizeof x), "the caller's input was overwritten");
            uint64_t arena = kiln_session_arena_bytes(s);
            CHECK(arena <= B, "a chain of %d in-place Adds uses %llu arena bytes; one %llu-byte "
                  "buffer is enough", N, (unsigned long long)arena, (unsigned long long)B);
        }
    }
    kiln_session_free(s);
    kiln_model_free(m);
}

/* a_k = Add(a_{k-1}, a_{k-1}): both inputs are the same value, so no Add may
 * run in place; liveness alone must let the chain ping-pong between two
 * buffers instead of holding N. */
static void test_liveness_reuse(void) {
    enum { N = 12 };
    og_model *om = og_model_new(17);
    og_graph *g = og_model_graph(om);
    int64_t d[2] = {1, W};
    og_input(g, "x", OG_FLOAT, 2, d);
    char prev[16] = "x", cur[16];
    for (int k = 1; k <= N; k++) {
        snprintf(cur, sizeof cur, k == N ? "y" : "a%d", k);
        char ins[40];
        snprintf(ins, sizeof ins, "%s,%s", prev, prev);
        og_node_add(g, "Add", ins, cur);
        memcpy(prev, cur, sizeof prev);
    }
    og_output(g, "y", OG_FLOAT, 2, d);
    kiln_model *m = load(om, "reuse-chain");
    kiln_session *s = session(m, "reuse-chain session");
    if (s) {
        float x[W], want[W];
        fill(x, W, 1.0f / 4096.0f);
        for (int i = 0; i < W; i++) want[i] = x[i] * (float)(1 << N);
        kiln_tensor out[1];
        if (run1(s, "reuse-chain run", x, 1, W, out)) {
            CHECK(mismatches(out[0].data, want, W) == 0, "x doubled %d times computed wrong", N);
            uint64_t arena = kiln_session_arena_bytes(s);
            CHECK(arena >= B, "arena of %llu bytes cannot hold the output",
                  (unsigned long long)arena);
            CHECK(arena <= 2 * B, "a chain of %d Adds holds %llu arena bytes; two buffers (%llu) "
                  "are enough, %d would be %llu", N, (unsigned long long)arena,
                  (unsigned long long)(2 * B), N, (unsigned long long)(N * B));
        }
    }
    kiln_session_free(s);
    kiln_model_free(m);
}

/* a1 = x + c; a2 = a1 + c; y = a1 + a2: a2 must not be written over a1,
 * which y still needs. */
static void test_no_inplace_over_live(void) {
    og_model *om = og_model_new(17);
    og_graph *g = og_model_graph(om);
    int64_t d[2] = {1, W}, cd[1] = {W};
    float c[W];
    fill(c, W, 0.25f);
    og_input(g, "x", OG_FLOAT, 2, d);
    og_init_f32(g, "c", 1, cd, c);
    og_node_add(g, "Add", "x,c", "a1");
    og_node_add(g, "Add", "a1,c", "a2");
    og_node_add(g, "Add", "a1,a2", "y");
    og_output(g, "y", OG_FLOAT, 2, d);
    kiln_model *m = load(om, "live");
    kiln_session *s = session(m, "live session");
    if (s) {
        float x[W], want[W];
        fill(x, W, 1.0f);
        for (int i = 0; i < W; i++) want[i] = (x[i] + c[i]) + ((x[i] + c[i]) + c[i]);
        kiln_tensor out[1];
        if (run1(s, "live run", x, 1, W, out))
            CHECK(mismatches(out[0].data, want, W) == 0,
                  "a value still needed later was overwritten in place");
    }
    kiln_session_free(s);
    kiln_model_free(m);
}

/* Reshape is a view: y = Reshape(x + c, [W]) + c2 holds one buffer, and a
 * graph output that is a view of an intermediate has the new shape. Also two
 * outputs: the view and the value it views. */
static void test_views(void) {
    og_model *om = og_model_new(17);
    og_graph *g = og_model_graph(om);
    int64_t d[2] = {4, W / 4}, cd[1] = {W / 4}, fd[1] = {W}, sd[1] = {1}, sh[1] = {W};
    int64_t sh2[2] = {2, W / 2}, sd2[1] = {2};
    float c[W / 4], c2[W];
    fill(c, W / 4, 0.5f);
    fill(c2, W, -0.75f);
    og_input(g, "x", OG_FLOAT, 2, d);
    og_init_f32(g, "c", 1, cd, c);
    og_init_f32(g, "c2", 1, fd, c2);
    og_init_i64(g, "flat", 1, sd, sh);
    og_init_i64(g, "half", 1, sd2, sh2);
    og_node_add(g, "Add", "x,c", "a");
    og_node_add(g, "Reshape", "a,flat", "r");
    og_node_add(g, "Add", "r,c2", "y");
    og_node_add(g, "Reshape", "y,half", "v");
    og_output(g, "y", OG_FLOAT, 1, fd);
    og_output(g, "v", OG_FLOAT, 2, sh2);
    kiln_model *m = load(om, "views");
    kiln_session *s = session(m, "views session");
    if (s) {
        float x[W], want[W];
        fill(x, W, 1.0f);
        for (int i = 0; i < W; i++) want[i] = x[i] + c[i % (W / 4)] + c2[i];
        kiln_error err;
        kiln_tensor in = {.name = "x", .dtype = KILN_DTYPE_FLOAT, .rank = 2, .dims = {4, W / 4},
                          .data = x, .nbytes = sizeof x};
        kiln_tensor out[2];
        if (EXPECT_OK("views run", kiln_session_run(s, &in, 1, out, 2, &err), &err)) {
            CHECK(out[0].rank == 1 && out[0].dims[0] == W, "y is not [%d]", W);
            CHECK(out[1].rank == 2 && out[1].dims[0] == 2 && out[1].dims[1] == W / 2,
                  "v is not [2,%d]", W / 2);
            CHECK(mismatches(out[0].data, want, W) == 0, "y computed wrong through a view");
            CHECK(out[1].nbytes == B && mismatches(out[1].data, want, W) == 0,
                  "the view output v does not hold y's values");
            uint64_t arena = kiln_session_arena_bytes(s);
            CHECK(arena <= B, "Add, Reshape, Add, Reshape hold %llu arena bytes; views take none "
                  "and the second Add can run in place (%llu)", (unsigned long long)arena,
                  (unsigned long long)B);
        }
    }
    kiln_session_free(s);
    kiln_model_free(m);

    /* a view of the graph input is the output */
    om = og_model_new(17);
    g = og_model_graph(om);
    og_input(g, "x", OG_FLOAT, 2, d);
    og_init_i64(g, "flat", 1, sd, sh);
    og_node_add(g, "Reshape", "x,flat", "y");
    og_output(g, "y", OG_FLOAT, 1, fd);
    m = load(om, "input-view");
    s = session(m, "input-view session");
    if (s) {
        float x[W];
        fill(x, W, 1.0f);
        kiln_tensor out[1];
        if (run1(s, "input-view run", x, 4, W / 4, out)) {
            CHECK(out[0].rank == 1 && out[0].dims[0] == W && out[0].nbytes == B &&
                      !memcmp(out[0].data, x, sizeof x),
                  "Reshape of the input does not reproduce it");
            CHECK(kiln_session_arena_bytes(s) == 0, "a lone view holds %llu arena bytes",
                  (unsigned long long)kiln_session_arena_bytes(s));
        }
    }
    kiln_session_free(s);
    kiln_model_free(m);
}

/* k = c1 + c2 depends only on constants: folded at plan time, never in the arena. */
static void test_folding(void) {
    og_model *om = og_model_new(17);
    og_graph *g = og_model_graph(om);
    int64_t d[2] = {1, W}, cd[1] = {W};
    float c1[W], c2[W];
    fill(c1, W, 1.0f);
    fill(c2, W, -3.0f);
    og_input(g, "x", OG_FLOAT, 2, d);
    og_init_f32(g, "c1", 1, cd, c1);
    og_init_f32(g, "c2", 1, cd, c2);
    og_node_add(g, "Add", "c1,c2", "k1");
    og_node_add(g, "Add", "k1,c1", "k2");
    og_node_add(g, "Add", "x,k2", "y");
    og_output(g, "y", OG_FLOAT, 2, d);
    kiln_model *m = load(om, "fold");
    kiln_session *s = session(m, "fold session");
    if (s) {
        float x[W], want[W];
        fill(x, W, 0.5f);
        for (int i = 0; i < W; i++) want[i] = x[i] + ((c1[i] + c2[i]) + c1[i]);
        kiln_tensor out[1];
        if (run1(s, "fold run", x, 1, W, out)) {
            CHECK(mismatches(out[0].data, want, W) == 0, "folded constants computed wrong");
            CHECK(kiln_session_arena_bytes(s) <= B,
                  "constant sub-graph was not folded: %llu arena bytes for one live activation",
                  (unsigned long long)kiln_session_arena_bytes(s));
        }
    }
    kiln_session_free(s);
    kiln_model_free(m);
}

/* One plan per input shape, cached: switching shapes back and forth reuses
 * the arena (which never shrinks) and gives right answers each time. */
static og_model *batch_model(void) {
    og_model *om = og_model_new(17);
    og_graph *g = og_model_graph(om);
    int64_t d[2] = {-1, 64}, cd[1] = {64};
    const char *sym[2] = {"batch", NULL};
    float c[64];
    fill(c, 64, 1.0f);
    og_input_sym(g, "x", OG_FLOAT, 2, d, sym);
    og_init_f32(g, "c", 1, cd, c);
    og_node_add(g, "Add", "x,c", "a");
    og_node_add(g, "Add", "a,a", "y");
    og_output(g, "y", OG_FLOAT, 2, d);
    return om;
}

static void test_plan_cache(void) {
    kiln_model *m = load(batch_model(), "cache");
    kiln_session *s = session(m, "cache session");
    if (!s) {
        kiln_model_free(m);
        return;
    }
    float c[64];
    fill(c, 64, 1.0f);
    float *x = malloc(16 * 64 * sizeof(float)), *want = malloc(16 * 64 * sizeof(float));
    void *seen_ptr[17] = {0};
    uint64_t seen_arena[17] = {0};
    uint64_t arena_max = 0;
    static const int64_t batches[] = {2, 8, 2, 16, 1, 8, 2, 16, 1, 8, 2};
    for (size_t r = 0; r < sizeof batches / sizeof batches[0]; r++) {
        int64_t bsz = batches[r];
        int n = (int)bsz * 64;
        fill(x, n, (float)(r + 1));
        for (int i = 0; i < n; i++) want[i] = 2 * (x[i] + c[i % 64]);
        kiln_tensor out[1];
        char what[64];
        snprintf(what, sizeof what, "run %zu (batch %lld)", r, (long long)bsz);
        if (!run1(s, what, x, bsz, 64, out)) continue;
        CHECK(out[0].dims[0] == bsz && out[0].nbytes == (size_t)n * sizeof(float),
              "%s: output shape wrong", what);
        CHECK(mismatches(out[0].data, want, n) == 0, "%s: wrong values after a shape change",
              what);
        uint64_t arena = kiln_session_arena_bytes(s);
        CHECK(arena >= arena_max, "%s: the arena shrank from %llu to %llu", what,
              (unsigned long long)arena_max, (unsigned long long)arena);
        if (arena > arena_max) arena_max = arena;
        /* the same shape in an arena that has not grown since lands at the same
         * place: the cached plan, not a new layout */
        if (seen_ptr[bsz] && seen_arena[bsz] == arena)
            CHECK(out[0].data == seen_ptr[bsz], "%s: output moved on a cache hit", what);
        seen_ptr[bsz] = out[0].data;
        seen_arena[bsz] = arena;
    }
    CHECK(arena_max >= 16 * 64 * sizeof(float), "arena (%llu) is smaller than one batch-16 output",
          (unsigned long long)arena_max);
    /* more distinct shapes than any cache holds still run right */
    for (int64_t bsz = 1; bsz <= 16; bsz++) {
        int n = (int)bsz * 64;
        fill(x, n, (float)bsz);
        for (int i = 0; i < n; i++) want[i] = 2 * (x[i] + c[i % 64]);
        kiln_tensor out[1];
        char what[64];
        snprintf(what, sizeof what, "sweep batch %lld", (long long)bsz);
        if (run1(s, what, x, bsz, 64, out))
            CHECK(mismatches(out[0].data, want, n) == 0, "%s: wrong values", what);
    }
    /* flops estimate uses the same shape inference and needs no data */
    kiln_tensor shape_only = {.name = "x", .dtype = KILN_DTYPE_FLOAT, .rank = 2, .dims = {4, 64}};
    double flops = -1;
    kiln_error err;
    EXPECT_OK("estimate_flops without data",
              kiln_model_estimate_flops(m, &shape_only, 1, &flops, &err), &err);
    CHECK(flops >= 0, "flops estimate %g", flops);
    free(x);
    free(want);
    kiln_session_free(s);
    kiln_model_free(m);
}

/* Sessions on one model from several threads at once. */
struct worker {
    const kiln_model *m;
    int id, bad;
};

static void *worker_main(void *p) {
    struct worker *w = p;
    kiln_session *s = NULL;
    kiln_session_options so = kiln_session_options_default();
    so.n_threads = 1;
    if (kiln_session_create(w->m, &so, &s, NULL) != KILN_OK) {
        w->bad = -1;
        return NULL;
    }
    float c[64], x[4 * 64], want[4 * 64];
    fill(c, 64, 1.0f);
    for (int it = 0; it < 50; it++) {
        int64_t bsz = 1 + (w->id + it) % 4;
        int n = (int)bsz * 64;
        fill(x, n, (float)(w->id * 100 + it));
        for (int i = 0; i < n; i++) want[i] = 2 * (x[i] + c[i % 64]);
        kiln_tensor in = {.name = "x", .dtype = KILN_DTYPE_FLOAT, .rank = 2, .dims = {bsz, 64},
                          .data = x, .nbytes = (size_t)n * sizeof(float)};
        kiln_tensor out[1];
        if (kiln_session_run(s, &in, 1, out, 1, NULL) != KILN_OK ||
            mismatches(out[0].data, want, n))
            w->bad++;
    }
    kiln_session_free(s);
    return NULL;
}

static void test_threads(void) {
    kiln_model *m = load(batch_model(), "threads");
    if (!m) return;
    enum { T = 4 };
    pthread_t th[T];
    struct worker w[T];
    for (int i = 0; i < T; i++) {
        w[i] = (struct worker){m, i, 0};
        pthread_create(&th[i], NULL, worker_main, &w[i]);
    }
    for (int i = 0; i < T; i++) {
        pthread_join(th[i], NULL);
        CHECK(w[i].bad == 0, "thread %d: %d bad runs (-1: no session)", i, w[i].bad);
    }
    kiln_model_free(m);
}

int main(void) {
    test_inplace_chain();
    test_liveness_reuse();
    test_no_inplace_over_live();
    test_views();
    test_folding();
    test_plan_cache();
    test_threads();
    return kt_finish("test_plan");
}
