/* norm.c — normalization ops: BatchNormalization, InstanceNormalization,
 * LayerNormalization, GroupNormalization, RMSNormalization, LRN,
 * MeanVarianceNormalization, LpNormalization.
 *
 * Kernels compute in float32 with double accumulators for statistics.
 * Inputs of other float dtypes are converted to float32 buffers first and
 * outputs converted back, so each op has one loop nest. */
#include "ops/op.h"
#include "backend/dnnl_norm.h"

#include <math.h>
#include <stdlib.h>
#include <string.h>

#define PAR_MIN (1 << 15)   /* element count above which loops use OpenMP */

static kiln_status no_memory(kiln_error *err, const struct kiln_node *n) {
    return kiln_op_fail(err, KILN_ERR_NO_MEMORY, n, "out of memory for a temporary buffer");
}

static int64_t prod_dims(const int64_t *dims, int32_t from, int32_t to) {
    int64_t p = 1;
    for (int32_t i = from; i < to; i++) p *= dims[i];
    return p;
}

/* ---- float32 views of tensors of any float dtype ---- */

struct fbuf {
    float *p;
    bool owned;
};

/* Read-only float32 view of v (converted copy unless v is float32). */
static bool fb_in(const struct kiln_value *v, struct fbuf *b) {
    b->owned = false;
    b->p = NULL;
    if (!v) return true;
    if (v->dtype == KILN_DTYPE_FLOAT) {
        b->p = v->data;
        return true;
    }
    int64_t n = kiln_value_numel(v);
    b->p = malloc((size_t)(n ? n : 1) * sizeof(float));
    if (!b->p) return false;
    b->owned = true;
    for (int64_t i = 0; i < n; i++) b->p[i] = (float)kiln_value_get_f64(v, i);
    return true;
}

/* Writable float32 buffer for output v; fb_out_done converts it back. */
static bool fb_out(struct kiln_value *v, struct fbuf *b) {
    b->owned = false;
    b->p = NULL;
    if (!v) return true;
    if (v->dtype == KILN_DTYPE_FLOAT) {
        b->p = v->data;
        return true;
    }
    int64_t n = kiln_value_numel(v);
    b->p = malloc((size_t)(n ? n : 1) * sizeof(float));
    if (!b->p) return false;
    b->owned = true;
    return true;
}

static void fb_out_done(struct kiln_value *v, struct fbuf *b) {
    if (v && b->owned) {
        int64_t n = kiln_value_numel(v);
        for (int64_t i = 0; i < n; i++) kiln_value_set_f64(v, i, b->p[i]);
    }
}

static void fb_free(struct fbuf *b) {
    if (b->owned) free(b->p);
    b->p = NULL;
    b->owned = false;
}

static kiln_status need_float(const struct kiln_node *n, const struct kiln_value *v,
                              const char *what, kiln_error *err) {
    if (v && !kiln_dtype_is_float(v->dtype))
        return kiln_op_fail(err, KILN_ERR_UNSUPPORTED, n, "expected a float %s, got %s", what,
                            kiln_dtype_name(v->dtype));
    return KILN_OK;
}

/* Checks that v is 1-D with c elements. */
static kiln_status need_vec(const struct kiln_node *n, const struct kiln_value *v,
                            const char *what, int64_t c, kiln_error *err) {
    kiln_status st = need_float(n, v, what, err);
    if (st) return st;
    if (v->rank != 1 || v->dims[0] != c) {
        char s[128];
        kiln_shape_str(v, s, sizeof s);
        return kiln_op_fail(err, KILN_ERR_SHAPE, n, "expected %s of shape [%lld], got %s", what,
                            (long long)c, s);
    }
    return KILN_OK;
}

/* Mean and 1/sqrt(var + eps) of one row (two passes for accuracy). With
 * rms, the mean is taken as 0 and var is the mean square. */
static void row_stats(const float *p, int64_t R, bool rms, double eps, float *mean, float *inv) {
    double m = 0, v = 0;
    if (!rms) {
#pragma omp simd reduction(+ : m)
        for (int64_t r = 0; r < R; r++) m += p[r];
        m = R ? m / (double)R : 0;
    }
#pragma omp simd reduction(+ : v)
    for (int64_t r = 0; r < R; r++) {
        double d = p[r] - m;
        v += d * d;
    }
    v = R ? v / (double)R : 0;
    *mean = (float)m;
    *inv = (float)(1.0 / sqrt(v + eps));
}

/* y = (x - mean) * inv * s + b for a run of n elements sharing s and b. */
static void apply_scalar(const float *x, float *y, int64_t n, float mean, float inv, float s,
                         float b) {
    float a = inv * s;
#pragma omp simd
    for (int64_t i = 0; i < n; i++) y[i] = (x[i] - mean) * a + b;
}

/* ======================================================================
 * BatchNormalization
 * ====================================================================== */

static kiln_status bn_infer(const struct kiln_node *n, const struct kiln_value *const *in,
                            int n_in, struct kiln_value *const *out, int n_out,
                            kiln_error *err) {
    kiln_status st = kiln_op_check_arity(n, n_in, 5, 5, err);
    if (st) return st;
    const struct kiln_value *x = in[0];
    if ((st = need_float(n, x, "input X", err))) return st;
    if (x->rank < 2)
        return kiln_op_fail(err, KILN_ERR_SHAPE, n, "expected X of rank >= 2, got rank %d",
                            x->rank);
    if (kiln_attr_int(n, "spatial", 1) == 0)
        return kiln_op_fail(err, KILN_ERR_UNSUPPORTED, n, "spatial=0 is not supported");
    static const char *names[] = {"", "scale", "B", "input_mean", "input_var"};
    for (int i = 1; i < 5; i++)
        if ((st = need_vec(n, in[i], names[i], x->dims[1], err))) return st;
    bool training = n->opset >= 14 && kiln_attr_int(n, "training_mode", 0) != 0;
    bool extra = false;
    for (int i = 1; i < n_out; i++) extra |= out[i] != NULL;
    if (extra && !training)
        return kiln_op_fail(err, KILN_ERR_UNSUPPORTED, n,
                            "training outputs (mean/var) are supported only with "
                            "training_mode=1 (opset 14+)");
    if (n_out > 3)
        return kiln_op_fail(err, KILN_ERR_BAD_MODEL, n, "expected at most 3 outputs, got %d",
                            n_out);
    kiln_value_set_shape(out[0], x->dtype, x->rank, x->dims);
    for (int i = 1; i < n_out; i++)
        if (out[i]) kiln_value_set_shape(out[i], in[2 + i]->dtype, 1, &x->dims[1]);
    return KILN_OK;
}

/* Batch statistics over N and the spatial axes (training mode). */
static void bn_batch_stats(const float *x, int64_t N, int64_t C, int64_t S, double *mean,
                           double *var) {
    for (int64_t c = 0; c < C; c++) {
        double m = 0, v = 0;
        for (int64_t b = 0; b < N; b++) {
            const float *p = x + (b * C + c) * S;
            for (int64_t s = 0; s < S; s++) m += p[s];
        }
        m = N * S != 0 ? m / (double)(N * S) : 0;
        for (int64_t b = 0; b < N; b++) {
            const float *p = x + (b * C + c) * S;
            for (int64_t s = 0; s < S; s++) v += (p[s] - m) * (p[s] - m);
        }
        mean[c] = m;
        var[c] = N * S != 0 ? v / (double)(N * S) : 0;
    }
}

static kiln_status bn_exec(const struct kiln_node *n, struct kiln_exec_ctx *ctx,
                           const struct kiln_value *const *in, int n_in,
                           struct kiln_value *const *out, int n_out, kiln_error *err) {
    const struct kiln_value *x = in[0];
    int64_t N = x->dims[0], C = x->dims[1], S = prod_dims(x->dims, 2, x->rank);
    double eps = kiln_attr_float(n, "epsilon", 1e-5f);
    double mom = kiln_attr_float(n, "momentum", 0.9f);
    bool training = n->opset >= 14 && kiln_attr_int(n, "training_mode", 0) != 0;
    /* per channel: y = x * a[c] + b[c] */
    double *a = malloc((size_t)(C ? C : 1) * 4 * sizeof *a);
    if (!a) return no_memory(err, n);
    double *b = a + C, *mean = b + C, *var = mean + C;
    struct fbuf xb, yb;
    if (!fb_in(x, &xb) || !fb_out(out[0], &yb)) {
        fb_free(&xb);
        free(a);
        return no_memory(err, n);
    }
    if (training) bn_batch_stats(xb.p, N, C, S, mean, var);
    else
        for (int64_t c = 0; c < C; c++) {
            mean[c] = kiln_value_get_f64(in[3], c);
            var[c] = kiln_value_get_f64(in[4], c);
        }
    for (int64_t c = 0; c < C; c++) {
        a[c] = kiln_value_get_f64(in[1], c) / sqrt(var[c] + eps);
        b[c] = kiln_value_get_f64(in[2], c) - mean[c] * a[c];
    }
#pragma omp parallel for if (N * C * S > PAR_MIN) schedule(static)
    for (int64_t nc = 0; nc < N * C; nc++) {
        int64_t c = nc % C;
        float fa = (float)a[c], fb = (float)b[c];
        const float *p = xb.p + nc * S;
        float *q = yb.p + nc * S;
#pragma omp simd
        for (int64_t s = 0; s < S; s++) q[s] = p[s] * fa + fb;
    }
    fb_out_done(out[0], &yb);
    fb_free(&xb);
    fb_free(&yb);
    /* running statistics: input * momentum + batch * (1 - momentum) */
    for (int i = 1; i < n_out && i < 3; i++)
        if (out[i])
            for (int64_t c = 0; c < C; c++) {
                double run = kiln_value_get_f64(in[2 + i], c), bat = i == 1 ? mean[c] : var[c];
                kiln_value_set_f64(out[i], c, run * mom + bat * (1 - mom));
            }
    free(a);
    return KILN_OK;
}

/* ---- oneDNN fast path (inference form) ----------------------------------- */

static kiln_status bn_fast_run(const struct kiln_node *n, struct kiln_exec_ctx *ctx, void *state,
                               const struct kiln_value *const *in, int n_in,
                               struct kiln_value *const *out, int n_out, kiln_error *err) {
    kiln_status st = kiln_dnnl_norm_run(state, in[0]->data, out[0]->data, in[1]->data,
                                        in[2]->data, in[3]->data, in[4]->data, err);
    if (st) return kiln_op_fail(err, st, n, "%s", err ? err->msg : "oneDNN failed");
    return KILN_OK;
}

/* Every operand float32 in the plain layout, the running statistics as
 * given (no training mode, no extra outputs). Scale, B, mean and var are
 * bound at each run, so they need not be constants. X is described as
 * [N, C, S, 1] (spatial dims flattened): oneDNN 2.6 has a fast kernel for
 * nchw but only its reference one for ncw. */
static kiln_status bn_prepare(const struct kiln_node *n, struct kiln_exec_ctx *ctx,
                              const struct kiln_value *const *in, int n_in,
                              struct kiln_value *const *out, int n_out, struct kiln_kernel *k,
                              kiln_error *err) {
    const struct kiln_value *x = in[0];
    if (n_in != 5 || !out[0] || x->layout != KILN_LAYOUT_PLAIN ||
        out[0]->layout != KILN_LAYOUT_PLAIN || x->rank < 2 || kiln_value_numel(x) == 0 ||
        (n->opset >= 14 && kiln_attr_int(n, "training_mode", 0) != 0))
        return KILN_OK;
    for (int i = 0; i < 5; i++)
        if (!in[i] || in[i]->dtype != KILN_DTYPE_FLOAT || in[i]->layout != KILN_LAYOUT_PLAIN)
            return KILN_OK;
    for (int i = 1; i < n_out; i++)
        if (out[i]) return KILN_OK;
    struct kiln_dnnl_norm_desc d = {.kind = KILN_DNNL_BNORM,
                                    .eps = kiln_attr_float(n, "epsilon", 1e-5f)};
    d.rank = 4;
    d.dims[0] = x->dims[0];
    d.dims[1] = x->dims[1];
    d.dims[2] = prod_dims(x->dims, 2, x->rank);
    d.dims[3] = 1;
    struct kiln_dnnl_norm *f = NULL;
    kiln_status st = kiln_dnnl_norm_create(&d, &f, err);
    if (st) return kiln_op_fail(err, st, n, "%s", err ? err->msg : "oneDNN failed");
    if (!f) return KILN_OK;
    k->run = bn_fast_run;
    k->state = f;
    k->release = kiln_dnnl_norm_free;
    k->impl = kiln_dnnl_norm_impl(f);
    return KILN_OK;
}

/* ======================================================================
 * InstanceNormalization, GroupNormalization
 * ====================================================================== */

static kiln_status in_infer(const struct kiln_node *n, const struct kiln_value *const *in,
                            int n_in, struct kiln_value *const *out, int n_out,
                            kiln_error *err) {
    kiln_status st = kiln_op_check_arity(n, n_in, 3, 3, err);
    if (st) return st;
    const struct kiln_value *x = in[0];
    if ((st = need_float(n, x, "input", err))) return st;
    if (x->rank < 2)
        return kiln_op_fail(err, KILN_ERR_SHAPE, n, "expected input of rank >= 2, got rank %d",
                            x->rank);
    if ((st = need_vec(n, in[1], "scale", x->dims[1], err))) return st;
    if ((st = need_vec(n, in[2], "B", x->dims[1], err))) return st;
    kiln_value_set_shape(out[0], x->dtype, x->rank, x->dims);
    return KILN_OK;
}

/* GroupNormalization-18 has one scale/bias per group; 21 has one per channel. */
static kiln_status gn_infer(const struct kiln_node *n, const struct kiln_value *const *in,
                            int n_in, struct kiln_value *const *out, int n_out,
                            kiln_error *err) {
    kiln_status st = kiln_op_check_arity(n, n_in, 3, 3, err);
    if (st) return st;
    const struct kiln_value *x = in[0];
    if ((st = need_float(n, x, "input", err))) return st;
    if (x->rank < 2)
        return kiln_op_fail(err, KILN_ERR_SHAPE, n, "expected input of rank >= 2, got rank %d",
                            x->rank);
    const struct kiln_attr *ga = kiln_attr_find(n, "num_groups");
    if (!ga) return kiln_op_fail(err, KILN_ERR_BAD_MODEL, n, "missing attribute num_groups");
    int64_t G = ga->i, C = x->dims[1];
    if (G <= 0 || C % G != 0)
        return kiln_op_fail(err, KILN_ERR_BAD_MODEL, n,
                            "expected num_groups > 0 dividing %lld channels, got %lld",
                            (long long)C, (long long)G);
    int64_t ps = n->opset >= 21 ? C : G;
    if ((st = need_vec(n, in[1], "scale", ps, err))) return st;
    if ((st = need_vec(n, in[2], "bias", ps, err))) return st;
    kiln_value_set_shape(out[0], x->dtype, x->rank, x->dims);
    return KILN_OK;
}

/* Normalizes rows of G*Cg*S... : x is [N, G, Cg, S]; statistics per (n, g)
 * over Cg*S elements; scale/bias per channel (per_channel) or per group. */
static void group_norm_f32(const float *x, float *y, const float *sc, const float *bi,
                           int64_t N, int64_t G, int64_t Cg, int64_t S, bool per_channel,
                           double eps) {
#pragma omp parallel for if (N * G * Cg * S > PAR_MIN) schedule(static)
    for (int64_t ng = 0; ng < N * G; ng++) {
        int64_t g = ng % G, R = Cg * S;
        const float *p = x + ng * R;
        float *q = y + ng * R;
        float mean, inv;
        row_stats(p, R, false, eps, &mean, &inv);
        for (int64_t c = 0; c < Cg; c++) {
            int64_t k = per_channel ? g * Cg + c : g;
            apply_scalar(p + c * S, q + c * S, S, mean, inv, sc[k], bi[k]);
        }
    }
}

static kiln_status group_norm_run(const struct kiln_node *n, const struct kiln_value *const *in,
                                  struct kiln_value *y, int64_t G, bool per_channel,
                                  double eps, kiln_error *err) {
    const struct kiln_value *x = in[0];
    int64_t N = x->dims[0], C = x->dims[1], S = prod_dims(x->dims, 2, x->rank);
    if (kiln_value_numel(x) == 0) return KILN_OK;
    struct fbuf xb, sb, bb, yb;
    bool ok = fb_in(x, &xb) & fb_in(in[1], &sb) & fb_in(in[2], &bb) & fb_out(y, &yb);
    if (ok) {
        group_norm_f32(xb.p, yb.p, sb.p, bb.p, N, G, C / G, S, per_channel, eps);
        fb_out_done(y, &yb);
    }
    fb_free(&xb);
    fb_free(&sb);
    fb_free(&bb);
    fb_free(&yb);
    return ok ? KILN_OK : no_memory(err, n);
}

static kiln_status in_exec(const struct kiln_node *n, struct kiln_exec_ctx *ctx,
                           const struct kiln_value *const *in, int n_in,
                           struct kiln_value *const *out, int n_out, kiln_error *err) {
    /* instance norm is group norm with one channel per group */
    return group_norm_run(n, in, out[0], in[0]->dims[1], true,
                          kiln_attr_float(n, "epsilon", 1e-5f), err);
}

static kiln_status gn_exec(const struct kiln_node *n, struct kiln_exec_ctx *ctx,
                           const struct kiln_value *const *in, int n_in,
                           struct kiln_value *const *out, int n_out, kiln_error *err) {
    return group_norm_run(n, in, out[0], kiln_attr_int(n, "num_groups", 1), n->opset >= 21,
                          kiln_attr_float(n, "epsilon", 1e-5f), err);
}

/* ======================================================================
 * LayerNormalization, RMSNormalization
 * ====================================================================== */

/* v must broadcast to the normalized shape dims[axis:]. */
static kiln_status need_bcast_tail(const struct kiln_node *n, const struct kiln_value *x,
                                   int32_t axis, const struct kiln_value *v, const char *what,
                                   kiln_error *err) {
    kiln_status st = need_float(n, v, what, err);
    if (st) return st;
    int32_t tail = x->rank - axis;
    bool ok = v->rank <= tail;
    for (int32_t i = 0; ok && i < v->rank; i++) {
        int64_t dv = v->dims[v->rank - 1 - i], dx = x->dims[x->rank - 1 - i];
        ok = dv == dx || dv == 1;
    }
    if (!ok) {
        char sv[128], sx[128];
        kiln_shape_str(v, sv, sizeof sv);
        kiln_shape_str(x, sx, sizeof sx);
        return kiln_op_fail(err, KILN_ERR_SHAPE, n,
                            "%s of shape %s does not broadcast to the normalized part "
                            "(axis %d) of %s", what, sv, axis, sx);
    }
    return KILN_OK;
}

static kiln_status ln_infer(const struct kiln_node *n, const struct kiln_value *const *in,
                            int n_in, struct kiln_value *const *out, int n_out,
                            kiln_error *err) {
    bool rms = strcmp(n->op_type, "RMSNormalization") == 0;
    kiln_status st = kiln_op_check_arity(n, n_in, 2, rms ? 2 : 3, err);
    if (st) return st;
    const struct kiln_value *x = in[0];
    if ((st = need_float(n, x, "input X", err))) return st;
    if (x->rank == 0)
        return kiln_op_fail(err, KILN_ERR_SHAPE, n, "expected X of rank >= 1");
    int32_t axis;
    if ((st = kiln_norm_axis(n, kiln_attr_int(n, "axis", -1), x->rank, &axis, err))) return st;
    if ((st = need_bcast_tail(n, x, axis, in[1], "Scale", err))) return st;
    if (n_in > 2 && in[2] && (st = need_bcast_tail(n, x, axis, in[2], "B", err))) return st;
    if (n_out > (rms ? 1 : 3))
        return kiln_op_fail(err, KILN_ERR_BAD_MODEL, n, "expected at most %d outputs, got %d",
                            rms ? 1 : 3, n_out);
    kiln_value_set_shape(out[0], x->dtype, x->rank, x->dims);
    /* Mean / InvStdDev: [dims[:axis], 1, ...], in the stash type */
    int64_t sdims[KILN_MAX_RANK];
    for (int32_t d = 0; d < x->rank; d++) sdims[d] = d < axis ? x->dims[d] : 1;
    int64_t stash = kiln_attr_int(n, "stash_type", 1);
    kiln_dtype sdt = (kiln_dtype)stash;
    if (!kiln_dtype_is_float(sdt))
        return kiln_op_fail(err, KILN_ERR_UNSUPPORTED, n, "stash_type %lld is not supported",
                            (long long)stash);
    for (int i = 1; i < n_out; i++)
        if (out[i]) kiln_value_set_shape(out[i], sdt, x->rank, sdims);
    return KILN_OK;
}

/* Expands v (broadcastable to dims[axis:]) into a float array of R entries. */
static bool expand_tail(const struct kiln_value *x, int32_t axis, const struct kiln_value *v,
                        int64_t R, struct fbuf *b) {
    if (kiln_value_numel(v) == R) return fb_in(v, b);
    b->p = malloc((size_t)(R ? R : 1) * sizeof(float));
    if (!b->p) return false;
    b->owned = true;
    int32_t tail = x->rank - axis;
    int64_t vst[KILN_MAX_RANK] = {0}, s = 1;
    for (int32_t i = 0; i < v->rank; i++) {   /* stride of v along each tail axis */
        int32_t vd = v->rank - 1 - i, td = tail - 1 - i;
        vst[td] = v->dims[vd] == 1 ? 0 : s;
        s *= v->dims[vd];
    }
    int64_t idx[KILN_MAX_RANK] = {0}, off = 0;
    for (int64_t r = 0; r < R; r++) {
        b->p[r] = (float)kiln_value_get_f64(v, off);
        for (int32_t d = tail - 1; d >= 0; d--) {
            off += vst[d];
            if (++idx[d] < x->dims[axis + d]) break;
            off -= vst[d] * x->dims[axis + d];
            idx[d] = 0;
        }
    }
    return true;
}

static void ln_rows_f32(const float *x, float *y, const float *sc, const float *bi, int64_t O,
                        int64_t R, bool rms, double eps, float *mean_out, float *inv_out) {
#pragma omp parallel for if (O * R > PAR_MIN) schedule(static)
    for (int64_t o = 0; o < O; o++) {
        const float *p = x + o * R;
        float *q = y + o * R;
        float mean, inv;
        row_stats(p, R, rms, eps, &mean, &inv);
        if (mean_out) mean_out[o] = mean;
        if (inv_out) inv_out[o] = inv;
        if (bi) {
#pragma omp simd
            for (int64_t r = 0; r < R; r++) q[r] = (p[r] - mean) * inv * sc[r] + bi[r];
        } else {
#pragma omp simd
            for (int64_t r = 0; r < R; r++) q[r] = (p[r] - mean) * inv * sc[r];
        }
    }
}

static kiln_status ln_exec(const struct kiln_node *n, struct kiln_exec_ctx *ctx,
                           const struct kiln_value *const *in, int n_in,
                           struct kiln_value *const *out, int n_out, kiln_error *err) {
    bool rms = strcmp(n->op_type, "RMSNormalization") == 0;
    const struct kiln_value *x = in[0];
    int32_t axis;
    kiln_status st = kiln_norm_axis(n, kiln_attr_int(n, "axis", -1), x->rank, &axis, err);
    if (st) return st;
    int64_t O = prod_dims(x->dims, 0, axis), R = prod_dims(x->dims, axis, x->rank);
    if (O * R == 0) return KILN_OK;
    const struct kiln_value *bv = n_in > 2 ? in[2] : NULL;
    struct kiln_value *mv = n_out > 1 ? out[1] : NULL, *iv = n_out > 2 ? out[2] : NULL;
    struct fbuf xb = {0}, sb = {0}, bb = {0}, yb = {0}, mb = {0}, ib = {0};
    bool ok = fb_in(x, &xb) && expand_tail(x, axis, in[1], R, &sb) &&
              (!bv || expand_tail(x, axis, bv, R, &bb)) && fb_out(out[0], &yb) &&
              fb_out(mv, &mb) && fb_out(iv, &ib);
    if (ok) {
        ln_rows_f32(xb.p, yb.p, sb.p, bb.p, O, R, rms, kiln_attr_float(n, "epsilon", 1e-5f),
                    mb.p, ib.p);
        fb_out_done(out[0], &yb);
        fb_out_done(mv, &mb);
        fb_out_done(iv, &ib);
    }
    fb_free(&xb);
    fb_free(&sb);
    fb_free(&bb);
    fb_free(&yb);
    fb_free(&mb);
    fb_free(&ib);
    return ok ? KILN_OK : no_memory(err, n);
}

/* ---- oneDNN fast path for LayerNormalization ----------------------------- */

static kiln_status ln_fast_run(const struct kiln_node *n, struct kiln_exec_ctx *ctx, void *state,
                               const struct kiln_value *const *in, int n_in,
                               struct kiln_value *const *out, int n_out, kiln_error *err) {
    const struct kiln_value *bv = n_in > 2 ? in[2] : NULL;
    kiln_status st = kiln_dnnl_norm_run(state, in[0]->data, out[0]->data, in[1]->data,
                                        bv ? bv->data : NULL, NULL, NULL, err);
    if (st) return kiln_op_fail(err, st, n, "%s", err ? err->msg : "oneDNN failed");
    return KILN_OK;
}

/* oneDNN normalizes over the last dim: x is described as [O, R] with
 * R = prod(dims[axis:]), which is ONNX's LayerNormalization (epsilon inside
 * the square root). Scale / B of exactly R elements are bound at each run;
 * smaller ones that broadcast are expanded once here, which needs them
 * constant. Mean / InvStdDev outputs are left to the reference kernel. */
static kiln_status ln_prepare(const struct kiln_node *n, struct kiln_exec_ctx *ctx,
                              const struct kiln_value *const *in, int n_in,
                              struct kiln_value *const *out, int n_out, struct kiln_kernel *k,
                              kiln_error *err) {
    const struct kiln_value *x = in[0], *bv = n_in > 2 ? in[2] : NULL;
    if (strcmp(n->op_type, "LayerNormalization") != 0 || !out[0] ||
        x->dtype != KILN_DTYPE_FLOAT || x->layout != KILN_LAYOUT_PLAIN ||
        out[0]->layout != KILN_LAYOUT_PLAIN || x->rank == 0 || kiln_value_numel(x) == 0)
        return KILN_OK;
    for (int i = 1; i < n_out; i++)
        if (out[i]) return KILN_OK;
    const struct kiln_value *params[2] = {in[1], bv};
    for (int i = 0; i < 2; i++)
        if (params[i] && (params[i]->dtype != KILN_DTYPE_FLOAT ||
                          params[i]->layout != KILN_LAYOUT_PLAIN))
            return KILN_OK;
    int32_t axis;
    kiln_status st = kiln_norm_axis(n, kiln_attr_int(n, "axis", -1), x->rank, &axis, err);
    if (st) return st;
    int64_t O = prod_dims(x->dims, 0, axis), R = prod_dims(x->dims, axis, x->rank);
    struct fbuf bc[2] = {{0}, {0}};   /* broadcast copies */
    for (int i = 0; i < 2; i++) {
        if (!params[i] || kiln_value_numel(params[i]) == R) continue;
        if (!params[i]->data) return KILN_OK;   /* broadcast at run time: not here */
        if (!expand_tail(x, axis, params[i], R, &bc[i])) {
            fb_free(&bc[0]);
            return no_memory(err, n);
        }
    }
    struct kiln_dnnl_norm_desc d = {.kind = KILN_DNNL_LNORM,
                                    .rank = 2,
                                    .dims = {O, R},
                                    .eps = kiln_attr_float(n, "epsilon", 1e-5f),
                                    .has_shift = bv != NULL,
                                    .scale_const = bc[0].p,
                                    .shift_const = bc[1].p};
    struct kiln_dnnl_norm *f = NULL;
    st = kiln_dnnl_norm_create(&d, &f, err);
    fb_free(&bc[0]);
    fb_free(&bc[1]);
    if (st) return kiln_op_fail(err, st, n, "%s", err ? err->msg : "oneDNN failed");
    if (!f) return KILN_OK;
    k->run = ln_fast_run;
    k->state = f;
    k->release = kiln_dnnl_norm_free;
    k->impl = kiln_dnnl_norm_impl(f);
    return KILN_OK;
}

/* ======================================================================
 * LRN
 * ====================================================================== */

static kiln_status lrn_infer(const struct kiln_node *n, const struct kiln_value *const *in,
                             int n_in, struct kiln_value *const *out, int n_out,
                             kiln_error *err) {
    kiln_status st = kiln_op_check_arity(n, n_in, 1, 1, err);
    if (st) return st;
    if ((st = need_float(n, in[0], "input", err))) return st;
    if (in[0]->rank < 2)
        return kiln_op_fail(err, KILN_ERR_SHAPE, n, "expected input of rank >= 2, got rank %d",
                            in[0]->rank);
    const struct kiln_attr *sz = kiln_attr_find(n, "size");
    if (!sz || sz->i <= 0)
        return kiln_op_fail(err, KILN_ERR_BAD_MODEL, n, "expected attribute size > 0");
    kiln_value_set_shape(out[0], in[0]->dtype, in[0]->rank, in[0]->dims);
    return KILN_OK;
}

static void lrn_f32(const float *x, float *y, int64_t N, int64_t C, int64_t S, int64_t size,
                    double alpha, double beta, double bias) {
    int64_t lo = (size - 1) / 2, hi = size - 1 - lo;   /* floor / ceil of (size-1)/2 */
#pragma omp parallel for if (N * C * S > PAR_MIN) schedule(static)
    for (int64_t nc = 0; nc < N * C; nc++) {
        int64_t b = nc / C, c = nc % C;
        int64_t c0 = c - lo < 0 ? 0 : c - lo, c1 = c + hi > C - 1 ? C - 1 : c + hi;
        for (int64_t s = 0; s < S; s++) {
            double sq = 0;
            for (int64_t k = c0; k <= c1; k++) {
                double v = x[(b * C + k) * S + s];
                sq += v * v;
            }
            y[nc * S + s] = (float)(x[nc * S + s] / pow(bias + alpha / (double)size * sq, beta));
        }
    }
}

static kiln_status lrn_exec(const struct kiln_node *n, struct kiln_exec_ctx *ctx,
                            const struct kiln_value *const *in, int n_in,
                            struct kiln_value *const *out, int n_out, kiln_error *err) {
    const struct kiln_value *x = in[0];
    if (kiln_value_numel(x) == 0) return KILN_OK;
    struct fbuf xb, yb;
    bool ok = fb_in(x, &xb) & fb_out(out[0], &yb);
    if (ok) {
        lrn_f32(xb.p, yb.p, x->dims[0], x->dims[1], prod_dims(x->dims, 2, x->rank),
                kiln_attr_int(n, "size", 1), kiln_attr_float(n, "alpha", 1e-4f),
                kiln_attr_float(n, "beta", 0.75f), kiln_attr_float(n, "bias", 1.0f));
        fb_out_done(out[0], &yb);
    }
    fb_free(&xb);
    fb_free(&yb);
    return ok ? KILN_OK : no_memory(err, n);
}

/* ======================================================================
 * MeanVarianceNormalization
 * ====================================================================== */

static kiln_status mvn_axes(const struct kiln_node *n, const struct kiln_value *x, bool *mask,
                            kiln_error *err) {
    int64_t cnt;
    const int64_t *ax = kiln_attr_ints(n, "axes", &cnt);
    static const int64_t def_axes[] = {0, 2, 3};
    if (!ax) {
        ax = def_axes;
        cnt = 3;
    }
    for (int32_t d = 0; d < x->rank; d++) mask[d] = false;
    for (int64_t i = 0; i < cnt; i++) {
        int32_t a;
        kiln_status st = kiln_norm_axis(n, ax[i], x->rank, &a, err);
        if (st) return st;
        mask[a] = true;
    }
    return KILN_OK;
}

static kiln_status mvn_infer(const struct kiln_node *n, const struct kiln_value *const *in,
                             int n_in, struct kiln_value *const *out, int n_out,
                             kiln_error *err) {
    kiln_status st = kiln_op_check_arity(n, n_in, 1, 1, err);
    if (st) return st;
    if ((st = need_float(n, in[0], "input", err))) return st;
    bool mask[KILN_MAX_RANK];
    if ((st = mvn_axes(n, in[0], mask, err))) return st;
    kiln_value_set_shape(out[0], in[0]->dtype, in[0]->rank, in[0]->dims);
    return KILN_OK;
}

/* Walks x in order; *off follows the group index (strides 0 on reduced axes). */
static inline void odo_next(int32_t rank, const int64_t *dims, const int64_t *st, int64_t *idx,
                            int64_t *off) {
    for (int32_t d = rank - 1; d >= 0; d--) {
        *off += st[d];
        if (++idx[d] < dims[d]) return;
        *off -= st[d] * dims[d];
        idx[d] = 0;
    }
}

/* As the ONNX function: (x - E[x]) / (sqrt(E[x^2] - E[x]^2) + 1e-9). */
static kiln_status mvn_exec(const struct kiln_node *n, struct kiln_exec_ctx *ctx,
                            const struct kiln_value *const *in, int n_in,
                            struct kiln_value *const *out, int n_out, kiln_error *err) {
    const struct kiln_value *x = in[0];
    int32_t rank = x->rank;
    int64_t numel = kiln_value_numel(x);
    if (numel == 0) return KILN_OK;
    bool mask[KILN_MAX_RANK];
    kiln_status st = mvn_axes(n, x, mask, err);
    if (st) return st;
    int64_t gst[KILN_MAX_RANK], G = 1, R = 1;
    for (int32_t d = rank - 1; d >= 0; d--) {
        gst[d] = mask[d] ? 0 : G;
        if (mask[d]) R *= x->dims[d];
        else G *= x->dims[d];
    }
    double *acc = calloc((size_t)G * 2, sizeof *acc);
    struct fbuf xb, yb;
    bool ok = acc && (fb_in(x, &xb) & fb_out(out[0], &yb));
    if (ok) {
        int64_t idx[KILN_MAX_RANK] = {0}, off = 0;
        for (int64_t i = 0; i < numel; i++) {
            acc[2 * off] += xb.p[i];
            acc[2 * off + 1] += (double)xb.p[i] * xb.p[i];
            odo_next(rank, x->dims, gst, idx, &off);
        }
        for (int64_t g = 0; g < G; g++) {
            double m = acc[2 * g] / (double)R, v = acc[2 * g + 1] / (double)R - m * m;
            acc[2 * g] = m;
            acc[2 * g + 1] = 1.0 / (sqrt(v > 0 ? v : 0) + 1e-9);
        }
        off = 0;
        for (int32_t d = 0; d < rank; d++) idx[d] = 0;
        for (int64_t i = 0; i < numel; i++) {
            yb.p[i] = (float)((xb.p[i] - acc[2 * off]) * acc[2 * off + 1]);
            odo_next(rank, x->dims, gst, idx, &off);
        }
        fb_out_done(out[0], &yb);
    }
    if (acc) {
        fb_free(&xb);
        fb_free(&yb);
    }
    free(acc);
    return ok ? KILN_OK : no_memory(err, n);
}

/* ======================================================================
 * LpNormalization
 * ====================================================================== */

static kiln_status lp_infer(const struct kiln_node *n, const struct kiln_value *const *in,
                            int n_in, struct kiln_value *const *out, int n_out,
                            kiln_error *err) {
    kiln_status st = kiln_op_check_arity(n, n_in, 1, 1, err);
    if (st) return st;
    if ((st = need_float(n, in[0], "input", err))) return st;
    int32_t axis;
    if (in[0]->rank == 0)
        return kiln_op_fail(err, KILN_ERR_SHAPE, n, "expected input of rank >= 1");
    if ((st = kiln_norm_axis(n, kiln_attr_int(n, "axis", -1), in[0]->rank, &axis, err)))
        return st;
    int64_t p = kiln_attr_int(n, "p", 2);
    if (p != 1 && p != 2)
        return kiln_op_fail(err, KILN_ERR_BAD_MODEL, n, "expected p = 1 or 2, got %lld",
                            (long long)p);
    kiln_value_set_shape(out[0], in[0]->dtype, in[0]->rank, in[0]->dims);
    return KILN_OK;
}

static void lp_f32(const float *x, float *y, int64_t O, int64_t R, int64_t I, bool l1) {
#pragma omp parallel for if (O * R * I > PAR_MIN) schedule(static)
    for (int64_t oi = 0; oi < O * I; oi++) {
        int64_t o = oi / I, i = oi % I;
        const float *p = x + o * R * I + i;
        float *q = y + o * R * I + i;
        double s = 0;
        for (int64_t r = 0; r < R; r++) s += l1 ? fabs(p[r * I]) : (double)p[r * I] * p[r * I];
        float norm = (float)(l1 ? s : sqrt(s));
        /* a zero vector stays zero (ONNX reference), not NaN */
        for (int64_t r = 0; r < R; r++) q[r * I] = norm != 0 ? p[r * I] / norm : 0.0f;
    }
}

static kiln_status lp_exec(const struct kiln_node *n, struct kiln_exec_ctx *ctx,
                           const struct kiln_value *const *in, int n_in,
                           struct kiln_value *const *out, int n_out, kiln_error *err) {
    const struct kiln_value *x = in[0];
    int32_t axis;
    kiln_status st = kiln_norm_axis(n, kiln_attr_int(n, "axis", -1), x->rank, &axis, err);
    if (st) return st;
    if (kiln_value_numel(x) == 0) return KILN_OK;
    struct fbuf xb, yb;
    bool ok = fb_in(x, &xb) & fb_out(out[0], &yb);
    if (ok) {
        lp_f32(xb.p, yb.p, prod_dims(x->dims, 0, axis), x->dims[axis],
               prod_dims(x->dims, axis + 1, x->rank), kiln_attr_int(n, "p", 2) == 1);
        fb_out_done(out[0], &yb);
    }
    fb_free(&xb);
    fb_free(&yb);
    return ok ? KILN_OK : no_memory(err, n);
}

/* All but LRN (which reads neighbouring channels) finish reading a row or
 * group before writing it, so they may run in place (KILN_OP_INPLACE). */
const struct kiln_op_def kiln_ops_norm[] = {
    {"BatchNormalization", NULL, 6, KILN_OP_INPLACE, bn_infer, bn_exec, bn_prepare, NULL},
    {"InstanceNormalization", NULL, 6, KILN_OP_INPLACE, in_infer, in_exec, NULL, NULL},
    {"LayerNormalization", NULL, 17, KILN_OP_INPLACE, ln_infer, ln_exec, ln_prepare, NULL},
    {"RMSNormalization", NULL, 23, KILN_OP_INPLACE, ln_infer, ln_exec, NULL, NULL},
    {"GroupNormalization", NULL, 18, KILN_OP_INPLACE, gn_infer, gn_exec, NULL, NULL},
    {"LRN", NULL, 1, 0, lrn_infer, lrn_exec, NULL, NULL},
    {"MeanVarianceNormalization", NULL, 9, KILN_OP_INPLACE, mvn_infer, mvn_exec, NULL, NULL},
    {"LpNormalization", NULL, 1, KILN_OP_INPLACE, lp_infer, lp_exec, NULL, NULL},
    {0},
};
