/*
 * test_plan_file.c — loading a damaged or hostile compiled plan (.kiln) gives
 * a clean error, never a crash.
 *
 * Three small generated models (an MLP with attributes, a conv chain, an If
 * with subgraph constants) are compiled to .kiln with kiln_model_save_plan.
 * Then:
 *   - hand-crafted files: bad magic, wrong version and endianness, header
 *     extents out of range, misaligned or out-of-range weights, value ids out
 *     of range, huge counts and string lengths, broken graph structure (a
 *     node writing a constant or a graph input, a value defined twice, a read
 *     before its definition): each must fail with KILN_ERR_BAD_MODEL or
 *     KILN_ERR_UNSUPPORTED and a message that names the file;
 *   - every truncation of the header and graph section, and a sample in the
 *     weights;
 *   - a bit flip and a 0xFF byte at every offset of the header and graph
 *     section: loading may fail (cleanly) or succeed; a plan that loads is
 *     described and run with fast and reference kernels
 *     (tests/support/exercise.c), which must not crash either.
 * Under -DKILN_SANITIZE=ON the same run checks memory safety.
 *
 *   test_plan_file --write-seeds DIR    writes the good plans (fuzz_plan's corpus)
 */
#include "plan/artifact.h"
#include "support/exercise.h"
#include "support/kt.h"
#include "support/onnxgen.h"

#include <stdlib.h>
#include <string.h>
#include <sys/stat.h>
#include <unistd.h>

/* ---- models --------------------------------------------------------------- */

static og_model *mlp_model(void) {
    og_model *om = og_model_new(17);
    og_graph *g = og_model_graph(om);
    int64_t xd[2] = {1, 16}, w1d[2] = {32, 16}, b1d[1] = {32}, w2d[2] = {32, 8}, yd[2] = {1, 8};
    float w1[32 * 16], b1[32], w2[32 * 8];
    for (int i = 0; i < 32 * 16; i++) w1[i] = (float)((i * 37) % 19 - 9) / 16.0f;
    for (int i = 0; i < 32; i++) b1[i] = (float)(i % 5) / 8.0f;
    for (int i = 0; i < 32 * 8; i++) w2[i] = (float)((i * 11) % 13 - 6) / 8.0f;
    og_input(g, "x", OG_FLOAT, 2, xd);
    og_init_f32(g, "w1", 2, w1d, w1);
    og_init_f32(g, "b1", 1, b1d, b1);
    og_init_f32(g, "w2", 2, w2d, w2);
    og_node *n = og_node_add(g, "Gemm", "x,w1,b1", "h");
    og_attr_int(n, "transB", 1);
    og_attr_float(n, "alpha", 0.5f);
    og_node_add(g, "Relu", "h", "r");
    og_node_add(g, "MatMul", "r,w2", "m");
    n = og_node_add(g, "Softmax", "m", "y");
    og_attr_int(n, "axis", -1);
    og_output(g, "y", OG_FLOAT, 2, yd);
    return om;
}

static og_model *conv_model(void) {
    og_model *om = og_model_new(17);
    og_graph *g = og_model_graph(om);
    int64_t xd[4] = {1, 3, 8, 8}, wd[4] = {4, 3, 3, 3}, bd[1] = {4}, yd[2] = {1, 64};
    float w[4 * 27], b[4];
    for (int i = 0; i < 4 * 27; i++) w[i] = (float)((i * 7) % 11 - 5) / 10.0f;
    for (int i = 0; i < 4; i++) b[i] = (float)i / 4.0f;
    og_input(g, "x", OG_FLOAT, 4, xd);
    og_init_f32(g, "w", 4, wd, w);
    og_init_f32(g, "b", 1, bd, b);
    og_node *n = og_node_add(g, "Conv", "x,w,b", "c");
    int64_t pads[4] = {1, 1, 1, 1}, k[2] = {2, 2};
    og_attr_ints(n, "pads", pads, 4);
    og_node_add(g, "Relu", "c", "r");
    n = og_node_add(g, "MaxPool", "r", "p");
    og_attr_ints(n, "kernel_shape", k, 2);
    og_attr_ints(n, "strides", k, 2);
    og_node_add(g, "Flatten", "p", "y");
    og_output(g, "y", OG_FLOAT, 2, yd);
    return om;
}

static og_model *if_model(void) {
    int64_t d[1] = {3};
    float one[3] = {1, 2, 3}, two[3] = {2, 2, 2};
    og_graph *then_g = og_graph_new("then");
    og_init_f32(then_g, "k", 1, d, one);
    og_node_add(then_g, "Add", "x,k", "t");
    og_output(then_g, "t", OG_FLOAT, 1, d);
    og_graph *else_g = og_graph_new("else");
    og_node_add(else_g, "Mul", "x,c2", "e");
    og_output(else_g, "e", OG_FLOAT, 1, d);
    og_model *om = og_model_new(16);
    og_graph *g = og_model_graph(om);
    og_input(g, "c", OG_BOOL, 0, NULL);
    og_input(g, "x", OG_FLOAT, 1, d);
    og_init_f32(g, "c2", 1, d, two);
    og_node *n = og_node_add(g, "If", "c", "y");
    og_attr_graph(n, "then_branch", then_g);
    og_attr_graph(n, "else_branch", else_g);
    og_output(g, "y", OG_FLOAT, 1, d);
    og_graph_free(then_g);
    og_graph_free(else_g);
    return om;
}

/* A symbolic batch dim: the Shape -> Gather -> Unsqueeze -> Concat chain that
 * feeds Reshape folds at plan time, so the stored plan carries folded data. */
static og_model *reshape_model(void) {
    og_model *om = og_model_new(17);
    og_graph *g = og_model_graph(om);
    int64_t xd[4] = {-1, 4, 2, 2}, yd[2] = {-1, 16}, one[1] = {1}, zero1[1] = {0}, m1[1] = {-1}, i0 = 0;
    const char *sym[4] = {"N", NULL, NULL, NULL};
    og_input_sym(g, "x", OG_FLOAT, 4, xd, sym);
    og_init_i64(g, "i0", 0, NULL, &i0);
    og_init_i64(g, "u0", 1, one, zero1);
    og_init_i64(g, "m1", 1, one, m1);
    og_node_add(g, "Relu", "x", "r");
    og_node_add(g, "Shape", "r", "sh");
    og_node_add(g, "Gather", "sh,i0", "n0");
    og_node_add(g, "Unsqueeze", "n0,u0", "n1");
    og_node *n = og_node_add(g, "Concat", "n1,m1", "shape");
    og_attr_int(n, "axis", 0);
    og_node_add(g, "Reshape", "r,shape", "f");
    og_node_add(g, "Sigmoid", "f", "y");
    og_output(g, "y", OG_FLOAT, 2, yd);
    return om;
}

static const struct {
    const char *name;
    og_model *(*make)(void);
} MODELS[] = {{"mlp", mlp_model}, {"conv", conv_model}, {"if", if_model}, {"reshape", reshape_model}};
#define N_MODELS (sizeof MODELS / sizeof *MODELS)

/* Compiles model k to dir/NAME.kiln; returns the file's bytes (malloc'ed). */
static uint8_t *make_plan(size_t k, const char *dir, size_t *len) {
    og_model *om = MODELS[k].make();
    char path[4096], onnx[4096];
    snprintf(path, sizeof path, "%s/%s.onnx", dir, MODELS[k].name);
    int w = og_model_save(om, path);
    og_model_free(om);
    CHECK(w == 0, "cannot write %s", path);
    kiln_error err;
    kiln_model *m = NULL;
    kiln_status s = kiln_model_load(path, NULL, &m, &err);
    if (!EXPECT_OK(path, s, &err)) return NULL;
    snprintf(path, sizeof path, "%s/%s.kiln", dir, MODELS[k].name);
    s = kiln_model_save_plan(m, path, NULL, 0, &err);
    kiln_model_free(m);
    snprintf(onnx, sizeof onnx, "%s/%s.onnx", dir, MODELS[k].name);
    unlink(onnx);   /* only plans in the folder: it doubles as fuzz_plan's corpus */
    if (!EXPECT_OK(path, s, &err)) return NULL;
    return kt_read_file(path, len);
}

/* ---- where things are in a plan ------------------------------------------ */

#define MAXV 64
/* Offsets (in the file) of fields of the top-level graph, found by walking
 * the format (docs/kiln-format.md) the way the loader does. */
struct layout {
    size_t n_values_at, n_inputs_at, inputs_at, n_outputs_at, outputs_at, n_nodes_at;
    int32_t n_values, n_nodes;
    size_t flags_at[MAXV], rank_at[MAXV], woff_at[MAXV], wlen_at[MAXV];   /* woff/wlen: constants only */
    bool is_const[MAXV], is_input[MAXV];
    size_t node_name_at[MAXV], node_nin_at[MAXV], node_in_at[MAXV], node_nout_at[MAXV], node_out_at[MAXV],
        node_nattr_at[MAXV], node_act_at[MAXV], node_sum_at[MAXV];
    int32_t node_out0[MAXV], node_in0[MAXV];
};

struct walk {
    const uint8_t *p;
    size_t off, end;
    bool bad;
};
static uint32_t w_u32(struct walk *w) {
    uint32_t v = 0;
    if (w->off + 4 > w->end) w->bad = true;
    else memcpy(&v, w->p + w->off, 4);
    w->off += 4;
    return v;
}
static int64_t w_i64(struct walk *w) {
    int64_t v = 0;
    if (w->off + 8 > w->end) w->bad = true;
    else memcpy(&v, w->p + w->off, 8);
    w->off += 8;
    return v;
}
static void w_skip(struct walk *w, size_t n) { w->off += n; }
static void w_str(struct walk *w) { w_skip(w, w_u32(w)); }

static void walk_graph(struct walk *w, struct layout *L) {
    w_str(w);
    if (L) L->n_values_at = w->off;
    uint32_t nv = w_u32(w);
    if (L) L->n_values = (int32_t)nv;
    for (uint32_t i = 0; i < nv && !w->bad; i++) {
        w_str(w);
        if (L && i < MAXV) L->flags_at[i] = w->off;
        uint32_t flags = w_u32(w);
        w_skip(w, 4);
        if (L && i < MAXV) L->rank_at[i] = w->off;
        uint32_t rank = w_u32(w);
        for (uint32_t r = 0; r < rank && !w->bad; r++) {
            w_skip(w, 8);
            w_str(w);
        }
        w_skip(w, 4);
        if (L && i < MAXV) {
            L->is_const[i] = flags & 1u;
            L->is_input[i] = flags & 2u;
        }
        if (flags & 1u) {
            if (L && i < MAXV) L->woff_at[i] = w->off, L->wlen_at[i] = w->off + 8;
            w_skip(w, 16);
        }
    }
    if (L) L->n_inputs_at = w->off;
    uint32_t n = w_u32(w);
    if (L) L->inputs_at = w->off;
    w_skip(w, (size_t)n * 4);
    if (L) L->n_outputs_at = w->off;
    n = w_u32(w);
    if (L) L->outputs_at = w->off;
    w_skip(w, (size_t)n * 4);
    if (L) L->n_nodes_at = w->off;
    uint32_t nn = w_u32(w);
    if (L) L->n_nodes = (int32_t)nn;
    for (uint32_t i = 0; i < nn && !w->bad; i++) {
        if (L && i < MAXV) L->node_name_at[i] = w->off;
        w_str(w), w_str(w), w_str(w);
        w_skip(w, 8);
        if (L && i < MAXV) L->node_nin_at[i] = w->off;
        uint32_t ni = w_u32(w);
        if (L && i < MAXV) L->node_in_at[i] = w->off;
        if (L && i < MAXV && ni) {
            uint32_t v;
            memcpy(&v, w->p + w->off, 4);
            L->node_in0[i] = (int32_t)v;
        }
        w_skip(w, (size_t)ni * 4);
        if (L && i < MAXV) L->node_nout_at[i] = w->off;
        uint32_t no = w_u32(w);
        if (L && i < MAXV) L->node_out_at[i] = w->off;
        if (L && i < MAXV && no) {
            uint32_t v;
            memcpy(&v, w->p + w->off, 4);
            L->node_out0[i] = (int32_t)v;
        }
        w_skip(w, (size_t)no * 4);
        if (L && i < MAXV) L->node_act_at[i] = w->off;
        w_skip(w, 12);                                   /* fused activation: kind, alpha, beta */
        if (L && i < MAXV) L->node_sum_at[i] = w->off;
        w_skip(w, 4);                                    /* sum_input (format version 2) */
        if (L && i < MAXV) L->node_nattr_at[i] = w->off;
        uint32_t na = w_u32(w);
        for (uint32_t a = 0; a < na && !w->bad; a++) {
            w_str(w);
            int32_t type = (int32_t)w_u32(w);
            int64_t c;
            switch (type) {
            case 1: w_skip(w, 4); break;             /* FLOAT */
            case 2: w_skip(w, 8); break;             /* INT */
            case 3: w_str(w); break;                 /* STRING */
            case 4: {                                /* TENSOR */
                w_skip(w, 4);
                uint32_t r = w_u32(w);
                w_skip(w, (size_t)r * 8);
                w_skip(w, (size_t)w_i64(w));
                break;
            }
            case 5: walk_graph(w, NULL); break;      /* GRAPH */
            case 6: c = w_i64(w); w_skip(w, (size_t)c * 4); break;   /* FLOATS */
            case 7: c = w_i64(w); w_skip(w, (size_t)c * 8); break;   /* INTS */
            case 8: c = w_i64(w); for (int64_t k = 0; k < c; k++) w_str(w); break;
            default: break;
            }
        }
    }
}

static int layout_of(const uint8_t *p, size_t len, struct layout *L) {
    struct kiln_artifact_header h;
    memset(L, 0, sizeof *L);
    if (len < sizeof h) return -1;
    memcpy(&h, p, sizeof h);
    struct walk w = {.p = p, .off = (size_t)h.meta_off, .end = (size_t)(h.meta_off + h.meta_len)};
    walk_graph(&w, L);
    return w.bad || w.off != w.end ? -1 : 0;
}

/* Offsets of fields of the first stored plan (docs/kiln-format.md, "Stored plans"). */
#define PKIND_ARENA 4   /* enum kiln_value_kind (plan/plan.h) */
#define PKIND_ALIAS 5
struct plan_layout {
    bool present;
    size_t batch_at, layout_req_at, arena_at, flops_at, n_values_at, n_steps_at, steps_at, end;
    int32_t n_values, n_steps;
    size_t kind_at[MAXV], dims_at[MAXV], alias_at[MAXV], offset_at[MAXV];
    uint8_t kind[MAXV];
    int32_t rank[MAXV];
};

static int plan_layout_of(const uint8_t *p, size_t len, struct plan_layout *P) {
    struct kiln_artifact_header h;
    memset(P, 0, sizeof *P);
    memcpy(&h, p, sizeof h);
    if (!h.n_plans) return 0;
    if (h.plans_off + h.plans_len > len) return -1;
    struct walk w = {.p = p, .off = (size_t)h.plans_off, .end = (size_t)(h.plans_off + h.plans_len)};
    P->present = true;
    P->batch_at = w.off;
    P->layout_req_at = w.off + 4;
    P->arena_at = w.off + 8;
    P->flops_at = w.off + 16;
    w_skip(&w, 24);
    P->n_values_at = w.off;
    uint32_t nv = w_u32(&w);
    P->n_values = (int32_t)nv;
    for (uint32_t v = 0; v < nv && !w.bad; v++) {
        uint8_t kind = w.off < w.end ? p[w.off] : 0;
        if (v < MAXV) P->kind_at[v] = w.off, P->kind[v] = kind;
        w_skip(&w, 8);
        uint32_t rank = w_u32(&w);
        if (v < MAXV) P->dims_at[v] = w.off, P->rank[v] = (int32_t)rank;
        w_skip(&w, (size_t)rank * 8);
        if (v < MAXV) P->alias_at[v] = w.off;
        w_skip(&w, 4);
        if (v < MAXV) P->offset_at[v] = w.off;
        w_skip(&w, 8);
        if (kind == 2) {   /* FOLDED: byte count, zeros to a 64-byte boundary, data */
            size_t n = (size_t)w_i64(&w);
            w_skip(&w, (64 - (w.off - (size_t)h.plans_off) % 64) % 64 + n);
        }
    }
    P->n_steps_at = w.off;
    P->n_steps = (int32_t)w_u32(&w);
    P->steps_at = w.off;
    w_skip(&w, (size_t)P->n_steps * 4);
    P->end = w.off;
    return w.bad || (h.n_plans == 1 && w.off != w.end) ? -1 : 0;
}

/* ---- checks ---------------------------------------------------------------- */

static struct kt_exercise_stats g_stats;
static long g_clean_errors, g_loaded;

static kiln_model *load_file(const char *path, kiln_error *err, kiln_status *s) {
    kiln_load_options lo = kiln_load_options_default();
    lo.max_tensor_bytes = KT_EXERCISE_MAX_TENSOR;
    lo.max_arena_bytes = KT_EXERCISE_MAX_ARENA;
    kiln_model *m = NULL;
    *s = kiln_model_load(path, &lo, &m, err);
    return m;
}

/* A bad file: the load must fail with BAD_MODEL or UNSUPPORTED, naming the file. */
static void expect_rejected(const char *what, const char *path, const uint8_t *data, size_t len) {
    if (kt_write_file(path, data, len)) {
        CHECK(0, "%s: cannot write %s", what, path);
        return;
    }
    kiln_error err;
    kiln_status s;
    kiln_model *m = load_file(path, &err, &s);
    CHECK(s == KILN_ERR_BAD_MODEL || s == KILN_ERR_UNSUPPORTED, "%s: status %s (%s)", what,
          kiln_status_str(s), s ? err.msg : "loaded");
    CHECK(s == KILN_OK || (err.code == s && strstr(err.msg, path)), "%s: message does not name the file: %s",
          what, err.msg);
    CHECK(s != KILN_OK || m, "%s: OK without a model", what);
    if (m) kiln_model_free(m);
    if (s) g_clean_errors++;
}

/* A possibly bad file: a clean error, or a model that survives being run. */
static void expect_no_crash(const char *what, const char *path, const uint8_t *data, size_t len) {
    if (kt_write_file(path, data, len)) {
        CHECK(0, "%s: cannot write %s", what, path);
        return;
    }
    kiln_error err;
    kiln_status s;
    kiln_model *m = load_file(path, &err, &s);
    if (s) {
        /* LIMIT: a flipped input dim asks for more than max_tensor_bytes */
        CHECK(s == KILN_ERR_BAD_MODEL || s == KILN_ERR_UNSUPPORTED || s == KILN_ERR_LIMIT, "%s: status %s (%s)",
              what, kiln_status_str(s), err.msg);
        CHECK(err.code == s && strstr(err.msg, path), "%s: message does not name the file: %s", what, err.msg);
        CHECK(!m, "%s: failed load set a model", what);
        g_clean_errors++;
        return;
    }
    g_loaded++;
    CHECK(kt_exercise_loaded(m, 1, &g_stats) == 0, "%s: API contract broken when run (see above)", what);
    kiln_model_free(m);
}

static void put_u32(uint8_t *p, size_t at, uint32_t v) { memcpy(p + at, &v, 4); }
static uint64_t kt_u64_at(const uint8_t *p, size_t at) {
    uint64_t v;
    memcpy(&v, p + at, 8);
    return v;
}
static void put_u64(uint8_t *p, size_t at, uint64_t v) { memcpy(p + at, &v, 8); }

#define HDR_AT(field) offsetof(struct kiln_artifact_header, field)

/* Edits a copy of the good plan (b) and expects the loader to refuse it. */
#define CASE(desc, edit)                                                   \
    do {                                                                   \
        memcpy(b, good, len);                                              \
        size_t blen = len;                                                 \
        edit;                                                              \
        snprintf(what, sizeof what, "%s: %s", name, desc);                 \
        expect_rejected(what, path, b, blen);                              \
    } while (0)

/* The stored-plans section: every field the loader checks. */
static void stored_plan_cases(const char *name, const uint8_t *good, size_t len, const char *path,
                              uint8_t *b, const struct layout *L) {
    static struct plan_layout pl;
    struct kiln_artifact_header h;
    memcpy(&h, good, sizeof h);
    if (!h.n_plans) return;
    const struct plan_layout *P = &pl;
    int ok = plan_layout_of(good, len, &pl) == 0;
    CHECK(ok, "%s: the test's walker does not understand the stored plan (see plan_layout_of)", name);
    if (!ok) return;
    char what[256];
    int32_t arena = -1, arena2 = -1, alias = -1, inp = -1, cst = -1;
    for (int32_t v = 0; v < P->n_values && v < MAXV; v++) {
        if (P->kind[v] == PKIND_ARENA && P->rank[v] > 0) {
            if (arena < 0) arena = v;
            else if (arena2 < 0) arena2 = v;
        }
        if (P->kind[v] == PKIND_ALIAS && alias < 0) alias = v;
        if (L->is_input[v] && inp < 0) inp = v;
        if (L->is_const[v] && cst < 0) cst = v;
    }
    CASE("stored plan: n_values one less", put_u32(b, P->n_values_at, (uint32_t)P->n_values - 1));
    CASE("stored plan: n_values 2^32-1", put_u32(b, P->n_values_at, 0xffffffffu));
    CASE("stored plan: activation_layout 9", put_u32(b, P->layout_req_at, 9));
    CASE("stored plan: flops NaN", put_u64(b, P->flops_at, 0x7ff8000000000001ull));
    CASE("stored plan: arena_bytes 0", put_u64(b, P->arena_at, 0));
    CASE("stored plan: n_steps one more", put_u32(b, P->n_steps_at, (uint32_t)P->n_steps + 1));
    CASE("stored plan: n_steps 2^32-1", put_u32(b, P->n_steps_at, 0xffffffffu));
    if (P->n_steps >= 1) {
        CASE("stored plan: step names node -1", put_u32(b, P->steps_at, (uint32_t)-1));
        CASE("stored plan: step names a node out of range", put_u32(b, P->steps_at, (uint32_t)L->n_nodes));
        CASE("stored plan: a step dropped", put_u32(b, P->n_steps_at, (uint32_t)P->n_steps - 1);
             memmove(b + P->steps_at + (size_t)(P->n_steps - 1) * 4, b + P->steps_at + (size_t)P->n_steps * 4,
                     len - P->steps_at - (size_t)P->n_steps * 4);
             blen = len - 4; put_u64(b, HDR_AT(plans_len), h.plans_len - 4); put_u64(b, HDR_AT(file_size), blen));
    }
    if (P->n_steps >= 2) {
        uint32_t s0, s1;
        memcpy(&s0, good + P->steps_at, 4);
        memcpy(&s1, good + P->steps_at + 4, 4);
        CASE("stored plan: steps out of order", put_u32(b, P->steps_at, s1); put_u32(b, P->steps_at + 4, s0));
    }
    CASE("stored plan: value kind 6", b[P->kind_at[0]] = 6);
    CASE("stored plan: value padding byte set", b[P->kind_at[0] + 3] = 1);
    CASE("stored plan: value rank 9", put_u32(b, P->dims_at[0] - 4, 9));
    if (inp >= 0) {
        CASE("stored plan: graph input kind arena", b[P->kind_at[inp]] = PKIND_ARENA);
        CASE("stored plan: graph input channels-last", b[P->kind_at[inp] + 1] = 1);
        if (P->rank[inp] > 1)
            CASE("stored plan: graph input dim 1 changed", put_u64(b, P->dims_at[inp] + 8, 5));
    }
    if (cst >= 0 && P->rank[cst] > 0) CASE("stored plan: constant dim changed", put_u64(b, P->dims_at[cst], 3));
    if (cst >= 0) CASE("stored plan: constant kind arena", b[P->kind_at[cst]] = PKIND_ARENA);
    if (arena >= 0) {
        uint64_t arena_bytes, off;
        memcpy(&arena_bytes, good + P->arena_at, 8);
        memcpy(&off, good + P->offset_at[arena], 8);
        CASE("stored plan: arena value kind folded", b[P->kind_at[arena]] = 2);
        CASE("stored plan: arena value kind none", b[P->kind_at[arena]] = 0);
        CASE("stored plan: arena value offset past the arena", put_u64(b, P->offset_at[arena], arena_bytes));
        CASE("stored plan: arena value offset 2^64-64", put_u64(b, P->offset_at[arena], UINT64_MAX - 63));
        CASE("stored plan: arena value offset misaligned", put_u64(b, P->offset_at[arena], off + 4));
        CASE("stored plan: arena value layout 7", b[P->kind_at[arena] + 1] = 7);
        CASE("stored plan: arena value shape disagrees with inference",
             put_u64(b, P->dims_at[arena] + (size_t)(P->rank[arena] - 1) * 8, 1));
        CASE("stored plan: arena value with an alias", put_u32(b, P->alias_at[arena], 0));
        /* every buffer at offset 0: buffers live at once overlap */
        if (arena2 >= 0)
            CASE("stored plan: live buffers overlap", for (int32_t v = 0; v < P->n_values && v < MAXV; v++)
             if (P->kind[v] == PKIND_ARENA) put_u64(b, P->offset_at[v], 0));
    }
    int32_t folded = -1;
    for (int32_t v = 0; v < P->n_values && v < MAXV; v++)
        if (P->kind[v] == 2 && folded < 0) folded = v;
    if (folded >= 0) {
        CASE("stored plan: folded value kind arena", b[P->kind_at[folded]] = PKIND_ARENA);
        CASE("stored plan: folded data length 2^64-1", put_u64(b, P->offset_at[folded] + 8, UINT64_MAX));
        CASE("stored plan: folded data length + 8", put_u64(b, P->offset_at[folded] + 8,
                                                            kt_u64_at(good, P->offset_at[folded] + 8) + 8));
        if (P->rank[folded] > 0)
            CASE("stored plan: folded value dim changed", put_u64(b, P->dims_at[folded], 7));
    }
    if (alias >= 0) {
        CASE("stored plan: alias -1", put_u32(b, P->alias_at[alias], (uint32_t)-1));
        CASE("stored plan: alias out of range", put_u32(b, P->alias_at[alias], (uint32_t)P->n_values));
        CASE("stored plan: alias to itself", put_u32(b, P->alias_at[alias], (uint32_t)alias));
        if (inp >= 0) CASE("stored plan: alias to a graph input", put_u32(b, P->alias_at[alias], (uint32_t)inp));
        CASE("stored plan: alias with an offset", put_u64(b, P->offset_at[alias], 64));
    }
}

static void crafted(const char *name, const uint8_t *good, size_t len, const char *path) {
    const struct layout *L;
    static struct layout lay;
    int lay_ok = layout_of(good, len, &lay) == 0;
    CHECK(lay_ok, "%s: the test's walker does not understand the plan (format changed? see walk_graph)", name);
    L = &lay;
    uint8_t *b = malloc(len + 8192);
    if (!b) return;
    struct kiln_artifact_header h;
    memcpy(&h, good, sizeof h);
    char what[256];

    /* the good plan itself loads and runs */
    expect_no_crash(name, path, good, len);
    CHECK(g_loaded > 0, "%s: the good plan does not load", name);

    /* header */
    CASE("7-byte file", blen = 7);
    CASE("header only, cut", blen = sizeof h - 1);
    CASE("bad magic", b[7] = 'X');
    CASE("format version + 1", put_u32(b, HDR_AT(format_version), KILN_ARTIFACT_VERSION + 1));
    CASE("format version - 1", put_u32(b, HDR_AT(format_version), KILN_ARTIFACT_VERSION - 1));
    CASE("format version 0", put_u32(b, HDR_AT(format_version), 0));
    CASE("other endianness", put_u32(b, HDR_AT(endian_check), 0x04030201u));
    CASE("header_size", put_u64(b, HDR_AT(header_size), sizeof h + 8));
    CASE("file_size too small", put_u64(b, HDR_AT(file_size), len - 1));
    CASE("file_size too large", put_u64(b, HDR_AT(file_size), len + 4096));
    CASE("file_size 2^64-1", put_u64(b, HDR_AT(file_size), UINT64_MAX));
    CASE("meta_off 0", put_u64(b, HDR_AT(meta_off), 0));
    CASE("meta_len 2^64-1", put_u64(b, HDR_AT(meta_len), UINT64_MAX));
    CASE("meta_len past the weights", put_u64(b, HDR_AT(meta_len), h.weights_off - h.meta_off + 1));
    CASE("meta_len short by one", put_u64(b, HDR_AT(meta_len), h.meta_len - 1));
    /* the graph parses, then a stray (padding) byte follows it: refused, nothing leaked */
    if (h.meta_off + h.meta_len < h.weights_off)
        CASE("stray byte after the graph", put_u64(b, HDR_AT(meta_len), h.meta_len + 1));
    CASE("weights_off not page aligned", put_u64(b, HDR_AT(weights_off), h.weights_off + 64));
    CASE("weights_off past the end", put_u64(b, HDR_AT(weights_off), h.weights_off + 1024 * 4096));
    CASE("weights_off 2^64-4096", put_u64(b, HDR_AT(weights_off), UINT64_MAX - 4095));
    CASE("weights_len 2^64-1", put_u64(b, HDR_AT(weights_len), UINT64_MAX));
    /* with a packed-weights section after it, a longer weight section only
     * reaches into the padding before that section: still valid */
    if (!h.n_packed && !h.n_plans) CASE("weights_len past the end", put_u64(b, HDR_AT(weights_len), h.weights_len + 1));
    if (h.n_packed) {
        CASE("packed_off not page aligned", put_u64(b, HDR_AT(packed_off), h.packed_off + 64));
        CASE("packed_off past the end", put_u64(b, HDR_AT(packed_off), h.packed_off + 4096));
        CASE("packed_off inside the weights", put_u64(b, HDR_AT(packed_off), h.weights_off));
        if (!h.n_plans) CASE("packed_len past the end", put_u64(b, HDR_AT(packed_len), h.packed_len + 1));
        else CASE("packed_len into the stored plans", put_u64(b, HDR_AT(packed_len), h.plans_off - h.packed_off + 1));
        CASE("n_packed huge", put_u32(b, HDR_AT(n_packed), 0xffffffffu));
        CASE("n_packed beyond the index", put_u32(b, HDR_AT(n_packed), h.n_packed + 1000));
    }
    if (h.n_plans) {
        CASE("plans_off not 64-byte aligned", put_u64(b, HDR_AT(plans_off), h.plans_off + 8));
        CASE("plans_off past the end", put_u64(b, HDR_AT(plans_off), len + 64));
        CASE("plans_off inside the weights", put_u64(b, HDR_AT(plans_off), h.weights_off));
        CASE("plans_off 2^64-64", put_u64(b, HDR_AT(plans_off), UINT64_MAX - 63));
        CASE("plans_len past the end", put_u64(b, HDR_AT(plans_len), h.plans_len + 1));
        CASE("plans_len short by one", put_u64(b, HDR_AT(plans_len), h.plans_len - 1);
             put_u64(b, HDR_AT(file_size), len - 1); blen = len - 1);
        CASE("n_plans huge", put_u32(b, HDR_AT(n_plans), 0xffffffffu));
        CASE("n_plans one more", put_u32(b, HDR_AT(n_plans), h.n_plans + 1));
        CASE("n_plans 0 with a section", put_u32(b, HDR_AT(n_plans), 0));
    }
    CASE("n_batch_sizes huge", put_u32(b, HDR_AT(n_batch_sizes), 0xFFFFFFFFu));
    /* a plan cut short, with file_size agreeing: the graph section is short */
    CASE("cut with consistent file_size", blen = (size_t)(h.meta_off + h.meta_len / 2);
         put_u64(b, HDR_AT(file_size), blen); put_u64(b, HDR_AT(weights_off), 0);
         put_u64(b, HDR_AT(weights_len), 0));

    if (!lay_ok) {   /* the offsets below would be wrong */
        free(b);
        return;
    }

    /* graph section: counts, strings, ids */
    CASE("graph name length 2^32-1", put_u32(b, (size_t)h.meta_off, 0xFFFFFFFFu));
    CASE("n_values 2^32-1", put_u32(b, L->n_values_at, 0xFFFFFFFFu));
    CASE("n_values 2^24 (more than the bytes)", put_u32(b, L->n_values_at, 1u << 24));
    CASE("n_values one more", put_u32(b, L->n_values_at, (uint32_t)L->n_values + 1));
    CASE("n_inputs 2^32-1", put_u32(b, L->n_inputs_at, 0xFFFFFFFFu));
    CASE("graph input id out of range", put_u32(b, L->inputs_at, (uint32_t)L->n_values));
    CASE("graph input id -2", put_u32(b, L->inputs_at, (uint32_t)-2));
    CASE("n_outputs 2^32-1", put_u32(b, L->n_outputs_at, 0xFFFFFFFFu));
    CASE("graph output id out of range", put_u32(b, L->outputs_at, 0x7FFFFFFFu));
    CASE("graph output id -1", put_u32(b, L->outputs_at, (uint32_t)-1));
    CASE("n_nodes 2^32-1", put_u32(b, L->n_nodes_at, 0xFFFFFFFFu));
    CASE("node name length 2^20+1", put_u32(b, L->node_name_at[0], (1u << 20) + 1));
    CASE("node n_inputs 2^32-1", put_u32(b, L->node_nin_at[0], 0xFFFFFFFFu));
    CASE("node input id out of range", put_u32(b, L->node_in_at[0], (uint32_t)L->n_values + 100));
    CASE("node input id INT32_MIN", put_u32(b, L->node_in_at[0], 0x80000000u));
    CASE("node n_outputs 4097", put_u32(b, L->node_nout_at[0], 4097));
    CASE("node output id out of range", put_u32(b, L->node_out_at[0], (uint32_t)L->n_values));
    CASE("node activation kind 99", put_u32(b, L->node_act_at[0], 99));
    CASE("sum_input on a node that is no Conv", put_u32(b, L->node_sum_at[0], 3));
    CASE("sum_input -1", put_u32(b, L->node_sum_at[0], (uint32_t)-1));
    CASE("node n_attrs 2^32-1", put_u32(b, L->node_nattr_at[0], 0xFFFFFFFFu));
    CASE("value rank 9", put_u32(b, L->rank_at[0], 9));
    CASE("value rank -1", put_u32(b, L->rank_at[0], (uint32_t)-1));

    /* weights: alignment, extent, length */
    int32_t c = -1, inp = -1;
    for (int32_t v = 0; v < L->n_values && v < MAXV; v++) {
        if (L->is_const[v] && c < 0) c = v;
        if (L->is_input[v] && inp < 0) inp = v;
    }
    CHECK(c >= 0 && inp >= 0, "%s: no constant or no input to corrupt", name);
    if (c >= 0) {
        uint64_t woff, wlen;
        memcpy(&woff, good + L->woff_at[c], 8);
        memcpy(&wlen, good + L->wlen_at[c], 8);
        CASE("weight offset misaligned", put_u64(b, L->woff_at[c], woff + 4));
        CASE("weight offset past the section", put_u64(b, L->woff_at[c], h.weights_len + 64));
        CASE("weight offset 2^64-64", put_u64(b, L->woff_at[c], UINT64_MAX - 63));
        CASE("weight ends past the section", put_u64(b, L->woff_at[c], ((h.weights_len - wlen) / 64 + 1) * 64));
        CASE("weight length disagrees with the shape", put_u64(b, L->wlen_at[c], wlen + 4));
        CASE("weight length 2^64-1", put_u64(b, L->wlen_at[c], UINT64_MAX));
        CASE("weights section too short for the constants", put_u64(b, HDR_AT(weights_len), 0);
             blen = (size_t)h.weights_off; put_u64(b, HDR_AT(file_size), blen));
    }
    /* graph structure: what the ONNX importer guarantees must hold for plans too */
    if (c >= 0) CASE("node writes a constant", put_u32(b, L->node_out_at[0], (uint32_t)c));
    if (inp >= 0) CASE("node writes a graph input", put_u32(b, L->node_out_at[0], (uint32_t)inp));
    if (L->n_nodes >= 2) {
        CASE("value defined by two nodes", put_u32(b, L->node_out_at[1], (uint32_t)L->node_out0[0]));
        CASE("node reads a value before it is defined",
             put_u32(b, L->node_in_at[0], (uint32_t)L->node_out0[L->n_nodes - 1]));
    }
    CASE("node reads its own output", put_u32(b, L->node_in_at[0], (uint32_t)L->node_out0[0]));
    if (c >= 0) CASE("graph input list names a constant", put_u32(b, L->inputs_at, (uint32_t)c));
    if (inp >= 0) {
        uint32_t fl;
        memcpy(&fl, good + L->flags_at[inp], 4);
        CASE("graph input not flagged as one", put_u32(b, L->flags_at[inp], fl & ~2u));
    }
    {
        int32_t out0 = L->node_out0[0];
        uint32_t fl;
        memcpy(&fl, good + L->flags_at[out0], 4);
        CASE("node output flagged as a graph input", put_u32(b, L->flags_at[out0], fl | 2u));
    }
    if (inp >= 0 && L->n_nodes >= 1) {
        /* two entries of the input list naming the same value */
        uint32_t nin;
        memcpy(&nin, good + L->n_inputs_at, 4);
        if (nin >= 2) CASE("graph input listed twice", put_u32(b, L->inputs_at + 4, (uint32_t)inp));
    }
    stored_plan_cases(name, good, len, path, b, L);
    free(b);
}

#undef CASE

/* every truncation of the header and graph section; a sample of the weights */
static void truncations(const char *name, const uint8_t *good, size_t len, const char *path) {
    struct kiln_artifact_header h;
    memcpy(&h, good, sizeof h);
    char what[256];
    size_t meta_end = (size_t)(h.meta_off + h.meta_len), plans_at = h.n_plans ? (size_t)h.plans_off : len;
    /* every byte of the header, graph and stored plans; a sample in between */
    for (size_t cut = 0; cut < len; cut += cut < meta_end || cut >= plans_at ? 1 : (plans_at - meta_end) / 7 + 1) {
        snprintf(what, sizeof what, "%s cut to %zu of %zu bytes", name, cut, len);
        expect_rejected(what, path, good, cut);
    }
}

/* one bit flip, and 0xFF, at every byte of the header, graph and stored-plans sections */
static void flips(const char *name, const uint8_t *good, size_t len, const char *path) {
    struct kiln_artifact_header h;
    memcpy(&h, good, sizeof h);
    size_t meta_end = (size_t)(h.meta_off + h.meta_len);
    uint8_t *b = malloc(len);
    if (!b) return;
    char what[256];
    size_t plans_at = h.n_plans ? (size_t)h.plans_off : len;
    for (size_t i = 8; i < len; i = i + 1 == meta_end ? plans_at : i + 1) {   /* the magic: bad-magic case above */
        for (int kind = 0; kind < 2; kind++) {
            memcpy(b, good, len);
            uint8_t was = b[i];
            b[i] = kind ? 0xFF : (uint8_t)(b[i] ^ (1u << (i * 5 % 8)));
            if (b[i] == was) continue;
            snprintf(what, sizeof what, "%s byte %zu %02x -> %02x", name, i, was, b[i]);
            expect_no_crash(what, path, b, len);
        }
    }
    free(b);
}

int main(int argc, char **argv) {
    if (argc == 3 && !strcmp(argv[1], "--write-seeds")) {
        mkdir(argv[2], 0755);
        for (size_t k = 0; k < N_MODELS; k++) {
            size_t len;
            uint8_t *p = make_plan(k, argv[2], &len);
            CHECK(p, "%s: no plan", MODELS[k].name);
            free(p);
        }
        return kt_finish("test_plan_file --write-seeds");
    }
    char *dir = kt_mkdtemp("planfile");
    for (size_t k = 0; k < N_MODELS; k++) {
        size_t len;
        uint8_t *good = make_plan(k, dir, &len);
        if (!good) continue;
        char path[4096];
        snprintf(path, sizeof path, "%s/%s-bad.kiln", dir, MODELS[k].name);
        crafted(MODELS[k].name, good, len, path);
        truncations(MODELS[k].name, good, len, path);
        flips(MODELS[k].name, good, len, path);
        free(good);
    }
    printf("test_plan_file: %ld clean errors, %ld corrupted plans loaded (%ld sessions, %ld runs ok)\n",
           g_clean_errors, g_loaded, g_stats.sessions, g_stats.runs_ok);
    CHECK(g_stats.contract_violations == 0, "%ld API contract violations", g_stats.contract_violations);
    kt_rm_rf(dir);
    free(dir);
    return kt_finish("test_plan_file");
}
