/* conv.c — op family 'conv': Conv, ConvTranspose, MaxPool, AveragePool,
 * LpPool, GlobalAveragePool, GlobalMaxPool, GlobalLpPool, MaxUnpool.
 *
 * Geometry (kernel, strides, dilations, pads, auto_pad, ceil_mode) is parsed
 * and checked once per call into `struct geom`, shared by infer, the
 * reference kernels and the oneDNN fast path (src/backend/dnnl_conv.c).
 *
 * Reference kernels compute in f32 for every float dtype (f16/bf16/f64 are
 * converted in and out) and work for any number of spatial dims. Conv and
 * ConvTranspose parallelize over (batch, output channel) planes, so each
 * output element is summed in one fixed order: results are deterministic
 * whatever the thread count.
 *
 * A Conv with node->sum_input (set by the fuse-residual pass, never by ONNX)
 * has a 4th input R and computes Add(Conv(X, W, B), R) with Add's
 * broadcasting; the executor then applies node->act. The oneDNN path does it
 * as a sum post-op when R has exactly the conv output's shape and layout.
 */
#include "ops/op.h"
#include "backend/dnnl_conv.h"
#include "backend/dnnl_wino.h"

#include <float.h>
#include <math.h>
#include <stdlib.h>
#include <string.h>

#define MAXSP    (KILN_MAX_RANK - 2)
#define ATTR_LIM ((int64_t)1 << 30)   /* kernel, stride, dilation and pad bound */

enum { AP_NOTSET, AP_SAME_UPPER, AP_SAME_LOWER, AP_VALID };
enum { POOL_MAX, POOL_AVG, POOL_LP };

struct geom {
    int32_t nsp;                       /* number of spatial dims */
    int64_t N, C, M, G;                /* batch, in channels, out channels, groups */
    int64_t in[MAXSP], out[MAXSP], k[MAXSP], s[MAXSP], d[MAXSP];
    int64_t pb[MAXSP], pe[MAXSP];      /* pads; pe may be negative for ConvTranspose */
    int32_t ceil_mode;
};

/* ---- small helpers ------------------------------------------------------- */

/* ceil(a / b) for b > 0 and any a */
static int64_t cdiv(int64_t a, int64_t b) { return a >= 0 ? (a + b - 1) / b : -((-a) / b); }
/* floor(a / b) for b > 0 and any a */
static int64_t fdiv(int64_t a, int64_t b) { return a >= 0 ? a / b : -((-a + b - 1) / b); }
static int64_t imax(int64_t a, int64_t b) { return a > b ? a : b; }
static int64_t imin(int64_t a, int64_t b) { return a < b ? a : b; }

static kiln_status get_auto_pad(const struct kiln_node *n, int *ap, kiln_error *err) {
    const char *s = kiln_attr_string(n, "auto_pad", "NOTSET");
    if (!strcmp(s, "NOTSET") || !s[0]) *ap = AP_NOTSET;
    else if (!strcmp(s, "SAME_UPPER")) *ap = AP_SAME_UPPER;
    else if (!strcmp(s, "SAME_LOWER")) *ap = AP_SAME_LOWER;
    else if (!strcmp(s, "VALID")) *ap = AP_VALID;
    else
        return kiln_op_fail(err, KILN_ERR_BAD_MODEL, n,
                            "auto_pad: expected NOTSET, SAME_UPPER, SAME_LOWER or VALID, got '%s'",
                            s);
    return KILN_OK;
}

/* Reads an optional ints attribute of exactly `want` values in [lo, hi];
 * fills `def` when it is absent or empty. */
static kiln_status get_ints(const struct kiln_node *n, const char *name, int64_t want,
                            int64_t lo, int64_t hi, int64_t def, int64_t *dst, kiln_error *err) {
    int64_t cnt = 0;
    const int64_t *v = kiln_attr_ints(n, name, &cnt);
    if (!v || cnt == 0) {
        for (int64_t i = 0; i < want; i++) dst[i] = def;
        return KILN_OK;
    }
    if (cnt != want)
        return kiln_op_fail(err, KILN_ERR_BAD_MODEL, n, "attribute %s: expected %lld values, got %lld",
                            name, (long long)want, (long long)cnt);
    for (int64_t i = 0; i < want; i++) {
        if (v[i] < lo || v[i] > hi)
            return kiln_op_fail(err, KILN_ERR_BAD_MODEL, n,
                                "attribute %s[%lld]: expected a value in [%lld, %lld], got %lld",
                                name, (long long)i, (long long)lo, (long long)hi,
                                (long long)v[i]);
        dst[i] = v[i];
    }
    return KILN_OK;
}

static kiln_status check_known_dims(const struct kiln_node *n, const struct kiln_value *v, int idx,
                                    kiln_error *err) {
    for (int32_t i = 0; i < v->rank; i++)
        if (v->dims[i] < 0)
            return kiln_op_fail(err, KILN_ERR_SHAPE, n,
                                "input %d: expected known dims, got %lld at axis %d", idx,
                                (long long)v->dims[i], i);
    return KILN_OK;
}

/* The tensor as f32: its own data, or a converted copy in *tmp (caller frees).
 * NULL when out of memory. */
static const float *in_f32(const struct kiln_value *v, float **tmp) {
    static const float none = 0.0f;   /* stands in for an empty tensor's data */
    *tmp = NULL;
    int64_t cnt = kiln_value_numel(v);
    if (cnt == 0) return &none;
    if (v->dtype == KILN_DTYPE_FLOAT) return v->data;
    float *t = malloc((size_t)(cnt > 0 ? cnt : 1) * sizeof(float));
    if (!t) return NULL;
    for (int64_t i = 0; i < cnt; i++) t[i] = (float)kiln_value_get_f64(v, i);
    *tmp = t;
    return t;
}

/* Where to write an f32 result for v: v's data, or a scratch in *tmp. */
static float *out_f32(struct kiln_value *v, float **tmp) {
    *tmp = NULL;
    if (v->dtype == KILN_DTYPE_FLOAT) return v->data;
    int64_t cnt = kiln_value_numel(v);
    *tmp = malloc((size_t)(cnt > 0 ? cnt : 1) * sizeof(float));
    return *tmp;
}

static void out_commit(struct kiln_value *v, float *tmp) {
    if (!tmp) return;
    int64_t cnt = kiln_value_numel(v);
    for (int64_t i = 0; i < cnt; i++) kiln_value_set_f64(v, i, tmp[i]);
    free(tmp);
}

static kiln_status oom(const struct kiln_node *n, kiln_error *err) {
    return kiln_op_fail(err, KILN_ERR_NO_MEMORY, n, "out of memory for a temporary buffer");
}

static int64_t prod(const int64_t *v, int32_t k) {
    int64_t p = 1;
    for (int32_t i = 0; i < k; i++) p *= v[i];
    return p;
}

/* ---- Conv / ConvTranspose geometry --------------------------------------- */

static kiln_status conv_geom(const struct kiln_node *n, const struct kiln_value *const *in,
                             int n_in, bool transposed, struct geom *g, kiln_error *err) {
    kiln_status st = kiln_op_check_arity(n, n_in, 2, n->sum_input ? 4 : 3, err);
    if (st) return st;
    if (n->sum_input && (transposed || n->sum_input != 3 || n_in != 4 || !in[3]))
        return kiln_op_fail(err, KILN_ERR_BAD_MODEL, n, "fused residual: expected input 3 of a Conv");
    const struct kiln_value *X = in[0], *W = in[1], *B = n_in > 2 ? in[2] : NULL;
    if (!kiln_dtype_is_float(X->dtype))
        return kiln_op_fail(err, KILN_ERR_UNSUPPORTED, n, "X: expected a float type, got %s",
                            kiln_dtype_name(X->dtype));
    if (n->sum_input && in[3]->dtype != X->dtype)
        return kiln_op_fail(err, KILN_ERR_SHAPE, n, "fused residual: expected %s like X, got %s",
                            kiln_dtype_name(X->dtype), kiln_dtype_name(in[3]->dtype));
    if (W->dtype != X->dtype || (B && B->dtype != X->dtype))
        return kiln_op_fail(err, KILN_ERR_SHAPE, n, "W and B: expected %s like X, got %s%s%s",
                            kiln_dtype_name(X->dtype), kiln_dtype_name(W->dtype), B ? " and " : "",
                            B ? kiln_dtype_name(B->dtype) : "");
    if (X->rank < 3)
        return kiln_op_fail(err, KILN_ERR_SHAPE, n, "X: expected rank >= 3 (N, C, spatial...), got %d",
                            X->rank);
    if (W->rank != X->rank)
        return kiln_op_fail(err, KILN_ERR_SHAPE, n, "W: expected rank %d like X, got %d", X->rank,
                            W->rank);
    for (int i = 0; i < n_in; i++)
        if (in[i] && (st = check_known_dims(n, in[i], i, err))) return st;
    memset(g, 0, sizeof *g);
    const int32_t nsp = X->rank - 2;
    g->nsp = nsp;
    g->N = X->dims[0];
    g->C = X->dims[1];
    g->G = kiln_attr_int(n, "group", 1);
    if (g->G < 1 || g->G > ATTR_LIM)
        return kiln_op_fail(err, KILN_ERR_BAD_MODEL, n, "group: expected >= 1, got %lld",
                            (long long)g->G);
    if (g->C % g->G)
        return kiln_op_fail(err, KILN_ERR_SHAPE, n, "X: expected channels (%lld) divisible by group %lld",
                            (long long)g->C, (long long)g->G);
    if (!transposed) {
        g->M = W->dims[0];
        if (W->dims[1] != g->C / g->G)
            return kiln_op_fail(err, KILN_ERR_SHAPE, n,
                                "W: expected shape[1] == C/group = %lld, got %lld",
                                (long long)(g->C / g->G), (long long)W->dims[1]);
        if (g->M % g->G)
            return kiln_op_fail(err, KILN_ERR_SHAPE, n,
                                "W: expected output channels (%lld) divisible by group %lld",
                                (long long)g->M, (long long)g->G);
    } else {
        if (W->dims[0] != g->C)
            return kiln_op_fail(err, KILN_ERR_SHAPE, n, "W: expected shape[0] == C = %lld, got %lld",
                                (long long)g->C, (long long)W->dims[0]);
        if (kiln_mul_overflow_i64(W->dims[1], g->G, &g->M))
            return kiln_op_fail(err, KILN_ERR_SHAPE, n, "W: output channels overflow");
    }
    if (B && (B->rank != 1 || B->dims[0] != g->M))
        return kiln_op_fail(err, KILN_ERR_SHAPE, n, "B: expected shape [%lld], got rank %d dim %lld",
                            (long long)g->M, B->rank, (long long)(B->rank ? B->dims[0] : 0));
    int64_t ks[MAXSP];
    if ((st = get_ints(n, "kernel_shape", nsp, 1, ATTR_LIM, 0, ks, err)) ||
        (st = get_ints(n, "strides", nsp, 1, ATTR_LIM, 1, g->s, err)) ||
        (st = get_ints(n, "dilations", nsp, 1, ATTR_LIM, 1, g->d, err)))
        return st;
    int64_t pads[2 * MAXSP];
    if ((st = get_ints(n, "pads", 2 * nsp, 0, ATTR_LIM, 0, pads, err))) return st;
    int ap;
    if ((st = get_auto_pad(n, &ap, err))) return st;
    for (int32_t i = 0; i < nsp; i++) {
        g->k[i] = W->dims[2 + i];
        if (ks[i] && ks[i] != g->k[i])
            return kiln_op_fail(err, KILN_ERR_SHAPE, n,
                                "kernel_shape[%d] = %lld does not match W's dim %lld", i,
                                (long long)ks[i], (long long)g->k[i]);
        if (g->k[i] < 1 || g->k[i] > ATTR_LIM)
            return kiln_op_fail(err, KILN_ERR_SHAPE, n, "W: expected kernel dims in [1, 2^30], got %lld",
                                (long long)g->k[i]);
        g->in[i] = X->dims[2 + i];
        if (g->in[i] > ((int64_t)1 << 40))
            return kiln_op_fail(err, KILN_ERR_LIMIT, n, "X: spatial dim %lld too large",
                                (long long)g->in[i]);
        g->pb[i] = ap == AP_NOTSET ? pads[i] : 0;
        g->pe[i] = ap == AP_NOTSET ? pads[nsp + i] : 0;
    }
    if (!transposed) {
        for (int32_t i = 0; i < nsp; i++) {
            int64_t dk = (g->k[i] - 1) * g->d[i] + 1;
            if (ap == AP_SAME_UPPER || ap == AP_SAME_LOWER) {
                g->out[i] = cdiv(g->in[i], g->s[i]);
                int64_t tot = imax(0, (g->out[i] - 1) * g->s[i] + dk - g->in[i]);
                g->pb[i] = ap == AP_SAME_UPPER ? tot / 2 : tot - tot / 2;
                g->pe[i] = tot - g->pb[i];
            } else {
                int64_t num = g->in[i] + g->pb[i] + g->pe[i] - dk;
                if (num < 0)
                    return kiln_op_fail(err, KILN_ERR_SHAPE, n,
                                        "spatial dim %d: dilated kernel %lld larger than padded input %lld",
                                        i, (long long)dk, (long long)(g->in[i] + g->pb[i] + g->pe[i]));
                g->out[i] = num / g->s[i] + 1;
            }
        }
        return KILN_OK;
    }
    /* ConvTranspose */
    int64_t opad[MAXSP], oshape[MAXSP + 2];
    if ((st = get_ints(n, "output_padding", nsp, 0, ATTR_LIM, 0, opad, err))) return st;
    int64_t n_os = 0;
    const int64_t *os = kiln_attr_ints(n, "output_shape", &n_os);
    if (os && n_os > 0) {
        if (n_os != nsp && n_os != nsp + 2)
            return kiln_op_fail(err, KILN_ERR_BAD_MODEL, n,
                                "output_shape: expected %d values, got %lld", nsp, (long long)n_os);
        for (int32_t i = 0; i < nsp; i++) {
            oshape[i] = os[n_os - nsp + i];
            if (oshape[i] < 0 || oshape[i] > ((int64_t)1 << 40))
                return kiln_op_fail(err, KILN_ERR_BAD_MODEL, n, "output_shape[%d]: bad value %lld",
                                    i, (long long)oshape[i]);
        }
    }
    for (int32_t i = 0; i < nsp; i++) {
        int64_t dk = (g->k[i] - 1) * g->d[i] + 1;
        /* natural output size before padding is removed (in <= 2^40, s <= 2^30) */
        int64_t full;
        if (kiln_mul_overflow_i64(g->s[i], g->in[i], &full) || full > ((int64_t)1 << 40))
            return kiln_op_fail(err, KILN_ERR_LIMIT, n, "spatial dim %d: output size too large", i);
        full = full - g->s[i] + opad[i] + dk;
        if (g->in[i] == 0) full = 0;
        if ((os && n_os > 0) || ap == AP_SAME_UPPER || ap == AP_SAME_LOWER) {
            g->out[i] = (os && n_os > 0) ? oshape[i] : g->in[i] * g->s[i];
            if (ap == AP_SAME_UPPER || ap == AP_SAME_LOWER) {
                int64_t tot = full - g->out[i];
                g->pb[i] = ap == AP_SAME_UPPER ? fdiv(tot, 2) : tot - fdiv(tot, 2);
            }
        } else {
            g->out[i] = full - g->pb[i] - g->pe[i];
            if (g->out[i] < 0)
                return kiln_op_fail(err, KILN_ERR_SHAPE, n,
                                    "spatial dim %d: pads (%lld, %lld) exceed the output size %lld",
                                    i, (long long)g->pb[i], (long long)g->pe[i], (long long)full);
        }
        /* end padding as oneDNN counts it (output_padding excluded) */
        g->pe[i] = full - opad[i] - g->pb[i] - g->out[i];
    }
    return KILN_OK;
}

static void set_out_shape(struct kiln_value *out, kiln_dtype dt, const struct geom *g,
                          int64_t channels) {
    int64_t dims[KILN_MAX_RANK];
    dims[0] = g->N;
    dims[1] = channels;
    for (int32_t i = 0; i < g->nsp; i++) dims[2 + i] = g->out[i];
    kiln_value_set_shape(out, dt, g->nsp + 2, dims);
}

static kiln_status conv_infer_common(const struct kiln_node *n, const struct kiln_value *const *in,
                                     int n_in, struct kiln_value *const *out, int n_out,
                                     bool transposed, kiln_error *err) {
    struct geom g;
    kiln_status st = conv_geom(n, in, n_in, transposed, &g, err);
    if (st) return st;
    if (n_out != 1)
        return kiln_op_fail(err, KILN_ERR_BAD_MODEL, n, "expected 1 output, got %d", n_out);
    set_out_shape(out[0], in[0]->dtype, &g, g.M);
    if (n->sum_input) {   /* Add(conv, R): the broadcast of both shapes */
        int32_t r;
        int64_t d[KILN_MAX_RANK];
        if ((st = kiln_broadcast_shape(n, out[0], in[n->sum_input], &r, d, err))) return st;
        kiln_value_set_shape(out[0], in[0]->dtype, r, d);
    }
    return KILN_OK;
}

static kiln_status conv_infer(const struct kiln_node *n, const struct kiln_value *const *in,
                              int n_in, struct kiln_value *const *out, int n_out,
                              kiln_error *err) {
    return conv_infer_common(n, in, n_in, out, n_out, false, err);
}

static kiln_status convt_infer(const struct kiln_node *n, const struct kiln_value *const *in,
                               int n_in, struct kiln_value *const *out, int n_out,
                               kiln_error *err) {
    return conv_infer_common(n, in, n_in, out, n_out, true, err);
}

/* Decomposes a flat index over dims[0..k) (row-major) into coords. */
static void unflatten(int64_t idx, const int64_t *dims, int32_t k, int64_t *coord) {
    for (int32_t i = k - 1; i >= 0; i--) {
        coord[i] = dims[i] ? idx % dims[i] : 0;
        idx = dims[i] ? idx / dims[i] : 0;
    }
}

/* Reference Conv: y[n,m,o] = b[m] + sum_{c,k} w[m,c,k] * x[n, g*Cg + c, o*s + k*d - pb]. */
static void conv_ref(const struct geom *g, const float *x, const float *w, const float *b,
                     float *y) {
    const int32_t nsp = g->nsp, L = nsp - 1;
    const int64_t Cg = g->C / g->G, Mg = g->M / g->G;
    const int64_t isz = prod(g->in, nsp), osz = prod(g->out, nsp), ksz = prod(g->k, nsp);
    const int64_t orows = osz / (g->out[L] ? g->out[L] : 1);
    const int64_t NM = g->N * g->M;
#pragma omp parallel for schedule(dynamic, 1) if (NM > 1 && osz * Cg * ksz > 4096)
    for (int64_t nm = 0; nm < NM; nm++) {
        const int64_t bn = nm / g->M, m = nm % g->M, grp = m / Mg;
        float *yp = y + nm * osz;
        for (int64_t i = 0; i < osz; i++) yp[i] = 0.0f;
        int64_t kc[MAXSP], oc[MAXSP];
        for (int64_t c = 0; c < Cg; c++) {
            const float *xp = x + (bn * g->C + grp * Cg + c) * isz;
            const float *wp = w + (m * Cg + c) * ksz;
            for (int64_t kk = 0; kk < ksz; kk++) {
                const float wv = wp[kk];
                unflatten(kk, g->k, nsp, kc);
                const int64_t off = kc[L] * g->d[L] - g->pb[L], s = g->s[L];
                const int64_t o0 = imax(0, cdiv(-off, s));
                const int64_t o1 = imin(g->out[L], cdiv(g->in[L] - off, s));
                if (o0 >= o1) continue;
                for (int64_t r = 0; r < orows; r++) {
                    unflatten(r, g->out, L, oc);
                    int64_t ioff = 0, ok = 1;
                    for (int32_t j = 0; j < L; j++) {
                        int64_t ij = oc[j] * g->s[j] + kc[j] * g->d[j] - g->pb[j];
                        if (ij < 0 || ij >= g->in[j]) { ok = 0; break; }
                        ioff = ioff * g->in[j] + ij;
                    }
                    if (!ok) continue;
                    float *yr = yp + r * g->out[L];
                    const float *xr = xp + ioff * g->in[L] + off;
                    if (s == 1) {
                        for (int64_t o = o0; o < o1; o++) yr[o] += wv * xr[o];
                    } else {
                        for (int64_t o = o0; o < o1; o++) yr[o] += wv * xr[o * s];
                    }
                }
            }
        }
        if (b)
            for (int64_t i = 0; i < osz; i++) yp[i] += b[m];
    }
}

/* Reference ConvTranspose: y[n, g*Mg + m, i*s + k*d - pb] += x[n, g*Cg + c, i] * w[g*Cg + c, m, k]. */
static void convt_ref(const struct geom *g, const float *x, const float *w, const float *b,
                      float *y) {
    const int32_t nsp = g->nsp, L = nsp - 1;
    const int64_t Cg = g->C / g->G, Mg = g->M / g->G;
    const int64_t isz = prod(g->in, nsp), osz = prod(g->out, nsp), ksz = prod(g->k, nsp);
    const int64_t irows = isz / (g->in[L] ? g->in[L] : 1);
    const int64_t NM = g->N * g->M;
#pragma omp parallel for schedule(dynamic, 1) if (NM > 1 && isz * Cg * ksz > 4096)
    for (int64_t nm = 0; nm < NM; nm++) {
        const int64_t bn = nm / g->M, m = nm % g->M, grp = m / Mg, mm = m % Mg;
        float *yp = y + nm * osz;
        for (int64_t i = 0; i < osz; i++) yp[i] = 0.0f;
        int64_t kc[MAXSP], ic[MAXSP];
        for (int64_t c = 0; c < Cg; c++) {
            const float *xp = x + (bn * g->C + grp * Cg + c) * isz;
            const float *wp = w + ((grp * Cg + c) * Mg + mm) * ksz;
            for (int64_t kk = 0; kk < ksz; kk++) {
                const float wv = wp[kk];
                unflatten(kk, g->k, nsp, kc);
                const int64_t off = kc[L] * g->d[L] - g->pb[L], s = g->s[L];
                const int64_t i0 = imax(0, cdiv(-off, s));
                const int64_t i1 = imin(g->in[L], cdiv(g->out[L] - off, s));
                if (i0 >= i1) continue;
                for (int64_t r = 0; r < irows; r++) {
                    unflatten(r, g->in, L, ic);
                    int64_t ooff = 0, ok = 1;
                    for (int32_t j = 0; j < L; j++) {
                        int64_t oj = ic[j] * g->s[j] + kc[j] * g->d[j] - g->pb[j];
                        if (oj < 0 || oj >= g->out[j]) { ok = 0; break; }
                        ooff = ooff * g->out[j] + oj;
                    }
                    if (!ok) continue;
                    float *yr = yp + ooff * g->out[L] + off;
                    const float *xr = xp + r * g->in[L];
                    for (int64_t i = i0; i < i1; i++) yr[i * s] += wv * xr[i];
                }
            }
        }
        if (b)
            for (int64_t i = 0; i < osz; i++) yp[i] += b[m];
    }
}

static bool same_dims(int32_t ra, const int64_t *a, int32_t rb, const int64_t *b) {
    if (ra != rb) return false;
    for (int32_t i = 0; i < ra; i++)
        if (a[i] != b[i]) return false;
    return true;
}

/* z = a + b with numpy broadcasting into z's dims. a may be z itself when it
 * has z's dims (each element is read before it is written, at one index). */
static void add_bcast(float *z, int32_t zr, const int64_t *zd, const float *a, int32_t ar,
                      const int64_t *ad, const float *b, int32_t br, const int64_t *bd) {
    const int64_t total = prod(zd, zr);
    if (same_dims(ar, ad, zr, zd) && same_dims(br, bd, zr, zd)) {
#pragma omp parallel for simd if (total > (1 << 16))
        for (int64_t i = 0; i < total; i++) z[i] = a[i] + b[i];
        return;
    }
    int64_t as[KILN_MAX_RANK], bs[KILN_MAX_RANK], sa = 1, sb = 1;
    for (int32_t i = zr - 1; i >= 0; i--) {   /* strides aligned right, 0 where broadcast */
        int32_t ia = i - (zr - ar), ib = i - (zr - br);
        int64_t da = ia >= 0 ? ad[ia] : 1, db = ib >= 0 ? bd[ib] : 1;
        as[i] = da == 1 ? 0 : sa;
        bs[i] = db == 1 ? 0 : sb;
        sa *= da;
        sb *= db;
    }
    int64_t idx[KILN_MAX_RANK] = {0}, oa = 0, ob = 0;
    for (int64_t i = 0; i < total; i++) {
        z[i] = a[oa] + b[ob];
        for (int32_t d = zr - 1; d >= 0; d--) {
            oa += as[d];
            ob += bs[d];
            if (++idx[d] < zd[d]) break;
            oa -= as[d] * zd[d];
            ob -= bs[d] * zd[d];
            idx[d] = 0;
        }
    }
}

static kiln_status conv_exec_common(const struct kiln_node *n, const struct kiln_value *const *in,
                                    int n_in, struct kiln_value *const *out, bool transposed,
                                    kiln_error *err) {
    struct geom g;
    kiln_status st = conv_geom(n, in, n_in, transposed, &g, err);
    if (st) return st;
    if (kiln_value_numel(out[0]) == 0) return KILN_OK;
    const struct kiln_value *B = n_in > 2 ? in[2] : NULL;
    const struct kiln_value *R = n->sum_input ? in[n->sum_input] : NULL;
    int64_t ydims[KILN_MAX_RANK] = {g.N, g.M};
    for (int32_t i = 0; i < g.nsp; i++) ydims[2 + i] = g.out[i];
    const int32_t yrank = g.nsp + 2;
    /* a residual that widens the output needs the conv result on its own */
    const bool ysep = R && !same_dims(yrank, ydims, out[0]->rank, out[0]->dims);
    float *tx, *tw, *tb = NULL, *ty, *tr = NULL, *ysc = NULL;
    const float *x = in_f32(in[0], &tx), *w = in_f32(in[1], &tw), *b = NULL, *r = NULL;
    if (B) b = in_f32(B, &tb);
    if (R) r = in_f32(R, &tr);
    float *z = out_f32(out[0], &ty);
    if (ysep) ysc = malloc((size_t)(prod(ydims, yrank) > 0 ? prod(ydims, yrank) : 1) * sizeof(float));
    float *y = ysep ? ysc : z;
    if (!x || !w || (B && !b) || (R && !r) || !z || !y) {
        free(tx); free(tw); free(tb); free(tr); free(ty); free(ysc);
        return oom(n, err);
    }
    if (transposed) convt_ref(&g, x, w, b, y);
    else conv_ref(&g, x, w, b, y);
    if (R) add_bcast(z, out[0]->rank, out[0]->dims, y, yrank, ydims, r, R->rank, R->dims);
    out_commit(out[0], ty);
    free(tx); free(tw); free(tb); free(tr); free(ysc);
    return KILN_OK;
}

static kiln_status conv_exec(const struct kiln_node *n, struct kiln_exec_ctx *ctx,
                             const struct kiln_value *const *in, int n_in,
                             struct kiln_value *const *out, int n_out, kiln_error *err) {
    return conv_exec_common(n, in, n_in, out, false, err);
}

static kiln_status convt_exec(const struct kiln_node *n, struct kiln_exec_ctx *ctx,
                              const struct kiln_value *const *in, int n_in,
                              struct kiln_value *const *out, int n_out, kiln_error *err) {
    return conv_exec_common(n, in, n_in, out, true, err);
}

/* ---- oneDNN fast path for Conv / ConvTranspose --------------------------- */

static kiln_status conv_fast_run(const struct kiln_node *n, struct kiln_exec_ctx *ctx,
                                 void *state, const struct kiln_value *const *in, int n_in,
                                 struct kiln_value *const *out, int n_out, kiln_error *err) {
    if (kiln_value_numel(out[0]) == 0) return KILN_OK;
    /* the sum post-op adds what dst holds: start it as the residual (same
     * shape and layout, checked at prepare) */
    if (n->sum_input && out[0]->data != in[n->sum_input]->data)
        memcpy(out[0]->data, in[n->sum_input]->data, out[0]->nbytes);
    kiln_status st = kiln_dnnl_conv_run(state, in[0]->data, in[1]->data,
                                        n_in > 2 && in[2] ? in[2]->data : NULL, out[0]->data, err);
    if (st) return kiln_op_fail(err, st, n, "%s", err ? err->msg : "oneDNN failed");
    return KILN_OK;
}

/* ---- Winograd fast path for 3x3 / stride 1 Conv (backend/dnnl_wino.c) ---- */

static kiln_status conv_wino_run(const struct kiln_node *n, struct kiln_exec_ctx *ctx,
                                 void *state, const struct kiln_value *const *in, int n_in,
                                 struct kiln_value *const *out, int n_out, kiln_error *err) {
    if (kiln_value_numel(out[0]) == 0) return KILN_OK;
    /* the residual is read where it is (it may be dst itself) */
    kiln_status st = kiln_wino_run(state, in[0]->data, n_in > 2 && in[2] ? in[2]->data : NULL,
                                   n->sum_input ? in[n->sum_input]->data : NULL, out[0]->data, err);
    if (st) return kiln_op_fail(err, st, n, "%s", err ? err->msg : "winograd failed");
    return KILN_OK;
}

/* Builds the Winograd kernel when the conv qualifies and the heuristic (or
 * KILN_CONV_ALGO) picks it; leaves k->run NULL otherwise. */
static kiln_status conv_try_wino(const struct kiln_node *n, struct kiln_exec_ctx *ctx,
                                 const struct kiln_value *const *in, int n_in,
                                 struct kiln_value *const *out, const struct geom *g,
                                 struct kiln_kernel *k, kiln_error *err) {
    if (g->nsp != 2 || g->G != 1 || !in[1]->data || g->k[0] != 3 || g->k[1] != 3 ||
        g->s[0] != 1 || g->s[1] != 1 || g->d[0] != 1 || g->d[1] != 1 || g->pb[0] < 0 ||
        g->pb[1] < 0 || (n_in > 2 && in[2] && in[2]->dtype != KILN_DTYPE_FLOAT))
        return KILN_OK;
    struct kiln_wino_shape sh = {
        .N = g->N, .C = g->C, .K = g->M, .H = g->in[0], .W = g->in[1],
        .OH = g->out[0], .OW = g->out[1], .pt = g->pb[0], .pl = g->pb[1],
        .has_bias = n_in > 2 && in[2] != NULL, .sum = n->sum_input != 0,
        .act = n->act.kind, .act_alpha = n->act.alpha, .act_beta = n->act.beta,
        .src_layout = in[0]->layout, .dst_layout = out[0]->layout};
    sh.m = kiln_wino_choose(&sh, kiln_conv_algo_env());
    if (!sh.m) return KILN_OK;
    struct kiln_wino *w = NULL;
    kiln_status st = kiln_wino_create(&sh, in[1]->data, kiln_op_threads(ctx), ctx ? ctx->wcache : NULL,
                                      &w, err);
    if (st) return kiln_op_fail(err, st, n, "%s", err ? err->msg : "winograd failed");
    if (!w) return KILN_OK;
    k->run = conv_wino_run;
    k->state = w;
    k->release = kiln_wino_free;
    k->impl = kiln_wino_impl(w);
    k->fused_activation = n->act.kind != KILN_ACT_NONE && kiln_wino_fuses_act(n->act.kind);
    return KILN_OK;
}

static kiln_status conv_prepare_common(const struct kiln_node *n, struct kiln_exec_ctx *ctx,
                                       const struct kiln_value *const *in, int n_in,
                                       struct kiln_value *const *out, bool transposed,
                                       struct kiln_kernel *k, kiln_error *err) {
    struct geom g;
    kiln_status st = conv_geom(n, in, n_in, transposed, &g, err);
    if (st) return st;
    if (in[0]->dtype != KILN_DTYPE_FLOAT || g.nsp > KILN_DNNL_MAX_SP ||
        kiln_value_numel(out[0]) == 0 || kiln_value_numel(in[0]) == 0 ||
        kiln_value_numel(in[1]) == 0)
        return KILN_OK;
    if (n->sum_input) {
        /* oneDNN sums into dst as is: R must be dst's exact shape, dtype and layout */
        const struct kiln_value *R = in[n->sum_input];
        if (R->dtype != KILN_DTYPE_FLOAT || R->layout != out[0]->layout ||
            !same_dims(R->rank, R->dims, out[0]->rank, out[0]->dims) ||
            out[0]->rank != g.nsp + 2 || out[0]->dims[0] != g.N || out[0]->dims[1] != g.M)
            return KILN_OK;
        for (int32_t i = 0; i < g.nsp; i++)
            if (out[0]->dims[2 + i] != g.out[i]) return KILN_OK;
    }
    if (!transposed) {
        if ((st = conv_try_wino(n, ctx, in, n_in, out, &g, k, err))) return st;
        if (k->run) return KILN_OK;
    }
    struct kiln_dnnl_conv_shape sh = {
        .nsp = g.nsp, .transposed = transposed, .has_bias = n_in > 2 && in[2] != NULL,
        .N = g.N, .C = g.C, .M = g.M, .G = g.G,
        .act = n->act.kind, .act_alpha = n->act.alpha, .act_beta = n->act.beta,
        .sum = n->sum_input != 0,
        .src_cl = in[0]->layout,
        .dst_cl = out[0]->layout};
    for (int32_t i = 0; i < g.nsp; i++) {
        sh.in[i] = g.in[i]; sh.out[i] = g.out[i]; sh.k[i] = g.k[i];
        sh.s[i] = g.s[i]; sh.d[i] = g.d[i]; sh.pb[i] = g.pb[i]; sh.pe[i] = g.pe[i];
    }
    struct kiln_dnnl_conv *c = NULL;
    if ((st = kiln_dnnl_conv_create(&sh, in[1]->data, ctx ? ctx->wcache : NULL, &c, err)))
        return kiln_op_fail(err, st, n, "%s", err ? err->msg : "oneDNN failed");
    if (!c) return KILN_OK;
    k->run = conv_fast_run;
    k->state = c;
    k->release = kiln_dnnl_conv_free;
    k->impl = kiln_dnnl_conv_impl(c);
    k->fused_activation = n->act.kind != KILN_ACT_NONE;   /* applied as a post-op */
    return KILN_OK;
}

static kiln_status conv_prepare(const struct kiln_node *n, struct kiln_exec_ctx *ctx,
                                const struct kiln_value *const *in, int n_in,
                                struct kiln_value *const *out, int n_out, struct kiln_kernel *k,
                                kiln_error *err) {
    return conv_prepare_common(n, ctx, in, n_in, out, false, k, err);
}

static kiln_status convt_prepare(const struct kiln_node *n, struct kiln_exec_ctx *ctx,
                                 const struct kiln_value *const *in, int n_in,
                                 struct kiln_value *const *out, int n_out, struct kiln_kernel *k,
                                 kiln_error *err) {
    return conv_prepare_common(n, ctx, in, n_in, out, true, k, err);
}

static double conv_flops(const struct kiln_node *n, const struct kiln_value *const *in, int n_in,
                         struct kiln_value *const *out, int n_out) {
    /* 2 * MACs: every output element takes C/G * prod(kernel) MACs (ConvTranspose:
     * every input element scatters M/G * prod(kernel)). */
    if (n_in < 2 || in[1]->rank < 3 || n_out < 1 || !out[0]) return 0;
    double kprod = 1;
    for (int32_t i = 1; i < in[1]->rank; i++) kprod *= (double)in[1]->dims[i];
    bool transposed = !strcmp(n->op_type, "ConvTranspose");
    return 2.0 * kprod * (double)kiln_value_numel(transposed ? in[0] : out[0]);
}

/* ---- pooling -------------------------------------------------------------- */

static kiln_status pool_geom(const struct kiln_node *n, const struct kiln_value *X, int kind,
                             struct geom *g, kiln_error *err) {
    kiln_status st;
    if (X->rank < 3)
        return kiln_op_fail(err, KILN_ERR_SHAPE, n, "X: expected rank >= 3 (N, C, spatial...), got %d",
                            X->rank);
    if ((st = check_known_dims(n, X, 0, err))) return st;
    memset(g, 0, sizeof *g);
    const int32_t nsp = X->rank - 2;
    g->nsp = nsp;
    g->N = X->dims[0];
    g->C = g->M = X->dims[1];
    g->G = 1;
    if (!kiln_attr_find(n, "kernel_shape"))
        return kiln_op_fail(err, KILN_ERR_BAD_MODEL, n, "kernel_shape: required attribute missing");
    int64_t pads[2 * MAXSP];
    int ap;
    if ((st = get_ints(n, "kernel_shape", nsp, 1, ATTR_LIM, 1, g->k, err)) ||
        (st = get_ints(n, "strides", nsp, 1, ATTR_LIM, 1, g->s, err)) ||
        (st = get_ints(n, "dilations", nsp, 1, ATTR_LIM, 1, g->d, err)) ||
        (st = get_ints(n, "pads", 2 * nsp, 0, ATTR_LIM, 0, pads, err)) ||
        (st = get_auto_pad(n, &ap, err)))
        return st;
    int64_t cm = kiln_attr_int(n, "ceil_mode", 0);
    if (cm != 0 && cm != 1)
        return kiln_op_fail(err, KILN_ERR_BAD_MODEL, n, "ceil_mode: expected 0 or 1, got %lld",
                            (long long)cm);
    g->ceil_mode = (int32_t)cm;
    (void)kind;
    for (int32_t i = 0; i < nsp; i++) {
        g->in[i] = X->dims[2 + i];
        if (g->in[i] > ((int64_t)1 << 40))
            return kiln_op_fail(err, KILN_ERR_LIMIT, n, "X: spatial dim %lld too large",
                                (long long)g->in[i]);
        int64_t dk = (g->k[i] - 1) * g->d[i] + 1;
        if (ap == AP_SAME_UPPER || ap == AP_SAME_LOWER) {
            g->out[i] = cdiv(g->in[i], g->s[i]);
            int64_t tot = imax(0, (g->out[i] - 1) * g->s[i] + dk - g->in[i]);
            g->pb[i] = ap == AP_SAME_UPPER ? tot / 2 : tot - tot / 2;
            g->pe[i] = tot - g->pb[i];
            continue;
        }
        g->pb[i] = ap == AP_NOTSET ? pads[i] : 0;
        g->pe[i] = ap == AP_NOTSET ? pads[nsp + i] : 0;
        int64_t num = g->in[i] + g->pb[i] + g->pe[i] - dk;
        if (num < 0)
            return kiln_op_fail(err, KILN_ERR_SHAPE, n,
                                "spatial dim %d: dilated kernel %lld larger than padded input %lld",
                                i, (long long)dk, (long long)(g->in[i] + g->pb[i] + g->pe[i]));
        if (cm) {
            g->out[i] = cdiv(num, g->s[i]) + 1;
            /* the last window must start inside the input or the begin padding */
            if ((g->out[i] - 1) * g->s[i] >= g->in[i] + g->pb[i]) g->out[i]--;
        } else {
            g->out[i] = num / g->s[i] + 1;
        }
    }
    return KILN_OK;
}

static kiln_status pool_infer_common(const struct kiln_node *n, const struct kiln_value *const *in,
                                     int n_in, struct kiln_value *const *out, int n_out, int kind,
                                     kiln_error *err) {
    kiln_status st = kiln_op_check_arity(n, n_in, 1, 1, err);
    if (st) return st;
    const struct kiln_value *X = in[0];
    bool ok = kiln_dtype_is_float(X->dtype) ||
              (kind == POOL_MAX && (X->dtype == KILN_DTYPE_INT8 || X->dtype == KILN_DTYPE_UINT8));
    if (!ok)
        return kiln_op_fail(err, KILN_ERR_UNSUPPORTED, n, "X: expected a float%s type, got %s",
                            kind == POOL_MAX ? ", int8 or uint8" : "", kiln_dtype_name(X->dtype));
    int max_out = kind == POOL_MAX ? 2 : 1;
    if (n_out < 1 || n_out > max_out)
        return kiln_op_fail(err, KILN_ERR_BAD_MODEL, n, "expected 1 to %d outputs, got %d", max_out,
                            n_out);
    if (kind == POOL_MAX) {
        int64_t so = kiln_attr_int(n, "storage_order", 0);
        if (so != 0 && so != 1)
            return kiln_op_fail(err, KILN_ERR_BAD_MODEL, n, "storage_order: expected 0 or 1, got %lld",
                                (long long)so);
    }
    if (kind == POOL_AVG) {
        int64_t cip = kiln_attr_int(n, "count_include_pad", 0);
        if (cip != 0 && cip != 1)
            return kiln_op_fail(err, KILN_ERR_BAD_MODEL, n,
                                "count_include_pad: expected 0 or 1, got %lld", (long long)cip);
    }
    if (kind == POOL_LP) {
        int64_t p = kiln_attr_int(n, "p", 2);
        if (p < 1 || p > 64)
            return kiln_op_fail(err, KILN_ERR_BAD_MODEL, n, "p: expected in [1, 64], got %lld",
                                (long long)p);
    }
    struct geom g;
    if ((st = pool_geom(n, X, kind, &g, err))) return st;
    if (out[0]) set_out_shape(out[0], X->dtype, &g, g.C);
    if (n_out > 1 && out[1]) set_out_shape(out[1], KILN_DTYPE_INT64, &g, g.C);
    return KILN_OK;
}

static kiln_status maxpool_infer(const struct kiln_node *n, const struct kiln_value *const *in,
                                 int n_in, struct kiln_value *const *out, int n_out,
                                 kiln_error *err) {
    return pool_infer_common(n, in, n_in, out, n_out, POOL_MAX, err);
}
static kiln_status avgpool_infer(const struct kiln_node *n, const struct kiln_value *const *in,
                                 int n_in, struct kiln_value *const *out, int n_out,
                                 kiln_error *err) {
    return pool_infer_common(n, in, n_in, out, n_out, POOL_AVG, err);
}
static kiln_status lppool_infer(const struct kiln_node *n, const struct kiln_value *const *in,
                                int n_in, struct kiln_value *const *out, int n_out,
                                kiln_error *err) {
    return pool_infer_common(n, in, n_in, out, n_out, POOL_LP, err);
}

/* Reference pooling over one (n, c) plane per iteration. Windows are boxes, so
 * the valid taps along each axis form a contiguous range of t in [t0, t1). */
static void pool_ref(const struct geom *g, int kind, int include_pad, int p, int storage_order,
                     const float *x, float *y, int64_t *idx) {
    const int32_t nsp = g->nsp;
    const int64_t isz = prod(g->in, nsp), osz = prod(g->out, nsp), NC = g->N * g->C;
    int64_t istr[MAXSP], istr_cm[MAXSP];
    kiln_strides(nsp, g->in, istr);
    {   /* column-major spatial strides for storage_order = 1 */
        int64_t s = 1;
        for (int32_t j = 0; j < nsp; j++) { istr_cm[j] = s; s *= g->in[j]; }
    }
#pragma omp parallel for schedule(static) if (NC * osz > 4096)
    for (int64_t nc = 0; nc < NC; nc++) {
        const float *xp = x + nc * isz;
        int64_t oc[MAXSP], t0[MAXSP], t1[MAXSP], t[MAXSP], start[MAXSP];
        for (int64_t o = 0; o < osz; o++) {
            unflatten(o, g->out, nsp, oc);
            int64_t cnt_valid = 1, cnt_pad = 1;
            for (int32_t j = 0; j < nsp; j++) {
                start[j] = oc[j] * g->s[j] - g->pb[j];
                t0[j] = imax(0, cdiv(-start[j], g->d[j]));
                t1[j] = imin(g->k[j], cdiv(g->in[j] - start[j], g->d[j]));
                if (t1[j] < t0[j]) t1[j] = t0[j];
                cnt_valid *= t1[j] - t0[j];
                /* taps inside [-pb, in + pe): start >= -pb always */
                int64_t tp = imin(g->k[j], cdiv(g->in[j] + g->pe[j] - start[j], g->d[j]));
                cnt_pad *= imax(tp, 0);
            }
            double acc = kind == POOL_MAX ? -INFINITY : 0.0;
            int64_t best = -1;
            if (cnt_valid > 0) {
                for (int32_t j = 0; j < nsp; j++) t[j] = t0[j];
                for (;;) {
                    int64_t off = 0;
                    for (int32_t j = 0; j < nsp; j++) off += (start[j] + t[j] * g->d[j]) * istr[j];
                    float v = xp[off];
                    if (kind == POOL_MAX) {
                        if (best < 0 || v > acc) {
                            acc = v;
                            best = off;
                            if (storage_order) {
                                best = 0;
                                for (int32_t j = 0; j < nsp; j++)
                                    best += (start[j] + t[j] * g->d[j]) * istr_cm[j];
                            }
                        }
                    } else if (kind == POOL_AVG) {
                        acc += v;
                    } else {
                        double a = fabs((double)v);
                        acc += p == 1 ? a : p == 2 ? a * a : pow(a, p);
                    }
                    int32_t j = nsp - 1;
                    while (j >= 0 && ++t[j] >= t1[j]) { t[j] = t0[j]; j--; }
                    if (j < 0) break;
                }
            }
            float r;
            if (kind == POOL_MAX) r = (float)acc;
            else if (kind == POOL_AVG) {
                int64_t cnt = include_pad ? cnt_pad : cnt_valid;
                r = cnt > 0 ? (float)(acc / (double)cnt) : 0.0f;
            } else
                r = (float)(p == 1 ? acc : p == 2 ? sqrt(acc) : pow(acc, 1.0 / p));
            y[nc * osz + o] = r;
            if (idx) idx[nc * osz + o] = best < 0 ? -1 : nc * isz + best;
        }
    }
}

static kiln_status pool_exec_common(const struct kiln_node *n, const struct kiln_value *const *in,
                                    int n_in, struct kiln_value *const *out, int n_out, int kind,
                                    kiln_error *err) {
    struct geom g;
    kiln_status st = pool_geom(n, in[0], kind, &g, err);
    if (st) return st;
    struct kiln_value *Y = out[0], *I = n_out > 1 ? out[1] : NULL;
    if (kiln_value_numel(Y ? Y : I) == 0) return KILN_OK;
    float *tx, *ty = NULL, *yscratch = NULL;
    const float *x = in_f32(in[0], &tx);
    float *y;
    if (Y) y = out_f32(Y, &ty);
    else y = yscratch = malloc((size_t)kiln_value_numel(I) * sizeof(float));
    if (!x || !y) {
        free(tx); free(ty); free(yscratch);
        return oom(n, err);
    }
    pool_ref(&g, kind, (int)kiln_attr_int(n, "count_include_pad", 0),
             (int)kiln_attr_int(n, "p", 2), (int)kiln_attr_int(n, "storage_order", 0), x, y,
             I ? I->data : NULL);
    if (Y) out_commit(Y, ty);
    free(tx);
    free(yscratch);
    return KILN_OK;
}

static kiln_status maxpool_exec(const struct kiln_node *n, struct kiln_exec_ctx *ctx,
                                const struct kiln_value *const *in, int n_in,
                                struct kiln_value *const *out, int n_out, kiln_error *err) {
    return pool_exec_common(n, in, n_in, out, n_out, POOL_MAX, err);
}
static kiln_status avgpool_exec(const struct kiln_node *n, struct kiln_exec_ctx *ctx,
                                const struct kiln_value *const *in, int n_in,
                                struct kiln_value *const *out, int n_out, kiln_error *err) {
    return pool_exec_common(n, in, n_in, out, n_out, POOL_AVG, err);
}
static kiln_status lppool_exec(const struct kiln_node *n, struct kiln_exec_ctx *ctx,
                               const struct kiln_value *const *in, int n_in,
                               struct kiln_value *const *out, int n_out, kiln_error *err) {
    return pool_exec_common(n, in, n_in, out, n_out, POOL_LP, err);
}

static kiln_status pool_fast_run(const struct kiln_node *n, struct kiln_exec_ctx *ctx,
                                 void *state, const struct kiln_value *const *in, int n_in,
                                 struct kiln_value *const *out, int n_out, kiln_error *err) {
    if (kiln_value_numel(out[0]) == 0) return KILN_OK;
    kiln_status st = kiln_dnnl_pool_run(state, in[0]->data, out[0]->data, err);
    if (st) return kiln_op_fail(err, st, n, "%s", err ? err->msg : "oneDNN failed");
    return KILN_OK;
}

/* Builds the oneDNN pooling primitive for f32 MaxPool (without Indices),
 * AveragePool and GlobalAveragePool (g describes the window). */
static kiln_status pool_prepare_geom(const struct kiln_node *n, const struct geom *g, int alg,
                                     const struct kiln_value *src, const struct kiln_value *dst,
                                     struct kiln_kernel *k, kiln_error *err) {
    if (g->nsp > KILN_DNNL_MAX_SP || g->N * g->C == 0 || prod(g->in, g->nsp) == 0) return KILN_OK;
    struct kiln_dnnl_pool_shape sh = {.nsp = g->nsp, .alg = alg, .N = g->N, .C = g->C,
                                      .src_cl = src->layout,
                                      .dst_cl = dst->layout};
    for (int32_t i = 0; i < g->nsp; i++) {
        int64_t dk = (g->k[i] - 1) * g->d[i] + 1;
        sh.in[i] = g->in[i]; sh.out[i] = g->out[i]; sh.k[i] = g->k[i];
        sh.s[i] = g->s[i]; sh.d[i] = g->d[i]; sh.pb[i] = g->pb[i];
        /* oneDNN wants (in + pb + pe - dk) / s + 1 == out exactly: ceil_mode
         * windows reach past the end padding */
        sh.pe[i] = (g->out[i] - 1) * g->s[i] + dk - g->in[i] - g->pb[i];
        if (sh.pe[i] < g->pe[i]) sh.pe[i] = g->pe[i];
        /* include-pad averages divide by the window clipped at the real end
         * padding; oneDNN would count the ceil_mode extension too */
        if (alg == KILN_DNNL_POOL_AVG_INCLUDE_PAD && sh.pe[i] != g->pe[i]) return KILN_OK;
        if ((g->in[i] + sh.pb[i] + sh.pe[i] - dk) / g->s[i] + 1 != g->out[i]) return KILN_OK;
    }
    struct kiln_dnnl_pool *p = NULL;
    kiln_status st = kiln_dnnl_pool_create(&sh, &p, err);
    if (st) return kiln_op_fail(err, st, n, "%s", err ? err->msg : "oneDNN failed");
    if (!p) return KILN_OK;
    k->run = pool_fast_run;
    k->state = p;
    k->release = kiln_dnnl_pool_free;
    k->impl = kiln_dnnl_pool_impl(p);
    return KILN_OK;
}

static kiln_status maxpool_prepare(const struct kiln_node *n, struct kiln_exec_ctx *ctx,
                                   const struct kiln_value *const *in, int n_in,
                                   struct kiln_value *const *out, int n_out,
                                   struct kiln_kernel *k, kiln_error *err) {
    if (in[0]->dtype != KILN_DTYPE_FLOAT || (n_out > 1 && out[1]) || !out[0]) return KILN_OK;
    struct geom g;
    kiln_status st = pool_geom(n, in[0], POOL_MAX, &g, err);
    if (st) return st;
    return pool_prepare_geom(n, &g, KILN_DNNL_POOL_MAX, in[0], out[0], k, err);
}

static kiln_status avgpool_prepare(const struct kiln_node *n, struct kiln_exec_ctx *ctx,
                                   const struct kiln_value *const *in, int n_in,
                                   struct kiln_value *const *out, int n_out,
                                   struct kiln_kernel *k, kiln_error *err) {
    if (in[0]->dtype != KILN_DTYPE_FLOAT) return KILN_OK;
    struct geom g;
    kiln_status st = pool_geom(n, in[0], POOL_AVG, &g, err);
    if (st) return st;
    int alg = kiln_attr_int(n, "count_include_pad", 0) ? KILN_DNNL_POOL_AVG_INCLUDE_PAD
                                                        : KILN_DNNL_POOL_AVG_EXCLUDE_PAD;
    return pool_prepare_geom(n, &g, alg, in[0], out[0], k, err);
}

static double pool_flops(const struct kiln_node *n, const struct kiln_value *const *in, int n_in,
                         struct kiln_value *const *out, int n_out) {
    return 0.0;   /* not multiply-accumulate work */
}

/* ---- global pools ---------------------------------------------------------- */

static kiln_status global_infer(const struct kiln_node *n, const struct kiln_value *const *in,
                                int n_in, struct kiln_value *const *out, int n_out,
                                kiln_error *err) {
    kiln_status st = kiln_op_check_arity(n, n_in, 1, 1, err);
    if (st) return st;
    const struct kiln_value *X = in[0];
    if (!kiln_dtype_is_float(X->dtype))
        return kiln_op_fail(err, KILN_ERR_UNSUPPORTED, n, "X: expected a float type, got %s",
                            kiln_dtype_name(X->dtype));
    if (X->rank < 2)
        return kiln_op_fail(err, KILN_ERR_SHAPE, n, "X: expected rank >= 2, got %d", X->rank);
    if ((st = check_known_dims(n, X, 0, err))) return st;
    if (n_out != 1)
        return kiln_op_fail(err, KILN_ERR_BAD_MODEL, n, "expected 1 output, got %d", n_out);
    if (!strcmp(n->op_type, "GlobalLpPool")) {
        int64_t p = kiln_attr_int(n, "p", 2);
        if (p < 1 || p > 64)
            return kiln_op_fail(err, KILN_ERR_BAD_MODEL, n, "p: expected in [1, 64], got %lld",
                                (long long)p);
    }
    int64_t dims[KILN_MAX_RANK];
    dims[0] = X->dims[0];
    dims[1] = X->dims[1];
    for (int32_t i = 2; i < X->rank; i++) dims[i] = 1;
    kiln_value_set_shape(out[0], X->dtype, X->rank, dims);
    return KILN_OK;
}

static kiln_status global_exec(const struct kiln_node *n, struct kiln_exec_ctx *ctx,
                               const struct kiln_value *const *in, int n_in,
                               struct kiln_value *const *out, int n_out, kiln_error *err) {
    const struct kiln_value *X = in[0];
    const int64_t NC = X->dims[0] * X->dims[1];
    if (NC == 0) return KILN_OK;
    int64_t sp = 1;
    for (int32_t i = 2; i < X->rank; i++) sp *= X->dims[i];
    const int kind = !strcmp(n->op_type, "GlobalMaxPool")   ? POOL_MAX
                     : !strcmp(n->op_type, "GlobalLpPool") ? POOL_LP
                                                            : POOL_AVG;
    const int p = (int)kiln_attr_int(n, "p", 2);
    float *tx, *ty;
    const float *x = in_f32(X, &tx);
    float *y = out_f32(out[0], &ty);
    if (!x || !y) {
        free(tx); free(ty);
        return oom(n, err);
    }
#pragma omp parallel for schedule(static) if (NC * sp > 32768)
    for (int64_t i = 0; i < NC; i++) {
        const float *xp = x + i * sp;
        double acc = kind == POOL_MAX ? -INFINITY : 0.0;
        if (kind == POOL_MAX) {
            for (int64_t j = 0; j < sp; j++) if (xp[j] > acc || j == 0) acc = xp[j];
        } else if (kind == POOL_AVG) {
            for (int64_t j = 0; j < sp; j++) acc += xp[j];
            acc = sp ? acc / (double)sp : 0.0;
        } else {
            for (int64_t j = 0; j < sp; j++) {
                double a = fabs((double)xp[j]);
                acc += p == 1 ? a : p == 2 ? a * a : pow(a, p);
            }
            acc = p == 1 ? acc : p == 2 ? sqrt(acc) : pow(acc, 1.0 / p);
        }
        y[i] = (float)acc;
    }
    out_commit(out[0], ty);
    free(tx);
    return KILN_OK;
}

static kiln_status gap_prepare(const struct kiln_node *n, struct kiln_exec_ctx *ctx,
                               const struct kiln_value *const *in, int n_in,
                               struct kiln_value *const *out, int n_out, struct kiln_kernel *k,
                               kiln_error *err) {
    const struct kiln_value *X = in[0];
    if (X->dtype != KILN_DTYPE_FLOAT || X->rank < 3 || X->rank - 2 > KILN_DNNL_MAX_SP)
        return KILN_OK;
    struct geom g = {.nsp = X->rank - 2, .N = X->dims[0], .C = X->dims[1], .M = X->dims[1], .G = 1};
    for (int32_t i = 0; i < g.nsp; i++) {
        g.in[i] = g.k[i] = X->dims[2 + i];
        g.out[i] = g.s[i] = g.d[i] = 1;
        if (g.in[i] <= 0) return KILN_OK;
    }
    return pool_prepare_geom(n, &g, KILN_DNNL_POOL_AVG_EXCLUDE_PAD, in[0], out[0], k, err);
}

/* ---- MaxUnpool ------------------------------------------------------------- */

/* odims: the output shape; idims: the shape the indices address (the
 * inferred one; output_shape pads it at the end, as the ONNX reference does). */
static kiln_status unpool_geom(const struct kiln_node *n, const struct kiln_value *const *in,
                               int n_in, struct geom *g, int64_t *odims, int64_t *idims,
                               kiln_error *err) {
    kiln_status st = kiln_op_check_arity(n, n_in, 2, 3, err);
    if (st) return st;
    const struct kiln_value *X = in[0], *I = in[1];
    if (kiln_dtype_size(X->dtype) == 0)
        return kiln_op_fail(err, KILN_ERR_UNSUPPORTED, n, "X: unsupported type %s",
                            kiln_dtype_name(X->dtype));
    if (I->dtype != KILN_DTYPE_INT64)
        return kiln_op_fail(err, KILN_ERR_SHAPE, n, "I: expected int64, got %s",
                            kiln_dtype_name(I->dtype));
    if (I->rank != X->rank)
        return kiln_op_fail(err, KILN_ERR_SHAPE, n, "I: expected rank %d like X, got %d", X->rank,
                            I->rank);
    for (int32_t i = 0; i < X->rank; i++)
        if (I->dims[i] != X->dims[i])
            return kiln_op_fail(err, KILN_ERR_SHAPE, n, "I: expected the shape of X");
    if (X->rank < 3)
        return kiln_op_fail(err, KILN_ERR_SHAPE, n, "X: expected rank >= 3, got %d", X->rank);
    if ((st = check_known_dims(n, X, 0, err))) return st;
    memset(g, 0, sizeof *g);
    const int32_t nsp = X->rank - 2;
    g->nsp = nsp;
    int64_t pads[2 * MAXSP];
    if (!kiln_attr_find(n, "kernel_shape"))
        return kiln_op_fail(err, KILN_ERR_BAD_MODEL, n, "kernel_shape: required attribute missing");
    if ((st = get_ints(n, "kernel_shape", nsp, 1, ATTR_LIM, 1, g->k, err)) ||
        (st = get_ints(n, "strides", nsp, 1, ATTR_LIM, 1, g->s, err)) ||
        (st = get_ints(n, "pads", 2 * nsp, 0, ATTR_LIM, 0, pads, err)))
        return st;
    odims[0] = idims[0] = X->dims[0];
    odims[1] = idims[1] = X->dims[1];
    for (int32_t i = 0; i < nsp; i++) {
        int64_t v = (X->dims[2 + i] - 1) * g->s[i] + g->k[i] - pads[i] - pads[nsp + i];
        if (X->dims[2 + i] == 0) v = 0;
        if (v < 0 || X->dims[2 + i] > ((int64_t)1 << 40))
            return kiln_op_fail(err, KILN_ERR_SHAPE, n, "spatial dim %d: bad output size %lld", i,
                                (long long)v);
        odims[2 + i] = idims[2 + i] = v;
    }
    const struct kiln_value *S = n_in > 2 ? in[2] : NULL;
    if (S) {
        if (!kiln_dtype_is_int(S->dtype) || S->rank != 1 || S->dims[0] != X->rank)
            return kiln_op_fail(err, KILN_ERR_SHAPE, n,
                                "output_shape: expected int64 [%d], got %s rank %d", X->rank,
                                kiln_dtype_name(S->dtype), S->rank);
        if (!S->data) return KILN_DYNAMIC;
        for (int32_t i = 0; i < X->rank; i++) {
            odims[i] = kiln_value_get_int(S, i);
            if (odims[i] < 0 || odims[i] > ((int64_t)1 << 40))
                return kiln_op_fail(err, KILN_ERR_BAD_MODEL, n, "output_shape[%d]: bad value %lld",
                                    i, (long long)odims[i]);
        }
    }
    return KILN_OK;
}

static kiln_status unpool_infer(const struct kiln_node *n, const struct kiln_value *const *in,
                                int n_in, struct kiln_value *const *out, int n_out,
                                kiln_error *err) {
    struct geom g;
    int64_t odims[KILN_MAX_RANK], idims[KILN_MAX_RANK];
    kiln_status st = unpool_geom(n, in, n_in, &g, odims, idims, err);
    if (st) return st;
    if (n_out != 1)
        return kiln_op_fail(err, KILN_ERR_BAD_MODEL, n, "expected 1 output, got %d", n_out);
    kiln_value_set_shape(out[0], in[0]->dtype, in[0]->rank, odims);
    return KILN_OK;
}

static kiln_status unpool_exec(const struct kiln_node *n, struct kiln_exec_ctx *ctx,
                               const struct kiln_value *const *in, int n_in,
                               struct kiln_value *const *out, int n_out, kiln_error *err) {
    const struct kiln_value *X = in[0], *I = in[1];
    struct kiln_value *Y = out[0];
    struct geom g;
    int64_t odims[KILN_MAX_RANK], idims[KILN_MAX_RANK], c[KILN_MAX_RANK];
    kiln_status st = unpool_geom(n, in, n_in, &g, odims, idims, err);
    if (st) return st;
    const int32_t rank = X->rank;
    const size_t es = kiln_dtype_size(X->dtype);
    const int64_t ycnt = kiln_value_numel(Y), xcnt = kiln_value_numel(X);
    const int64_t icnt = prod(idims, rank);
    if (ycnt) memset(Y->data, 0, (size_t)ycnt * es);
    const int64_t *ip = I->data;
    for (int64_t i = 0; i < xcnt; i++) {
        int64_t t = ip[i];
        if (t < 0 || t >= icnt)
            return kiln_op_fail(err, KILN_ERR_BAD_MODEL, n,
                                "I[%lld] = %lld: expected an index in [0, %lld)", (long long)i,
                                (long long)t, (long long)icnt);
        unflatten(t, idims, rank, c);
        int64_t o = 0, inside = 1;
        for (int32_t j = 0; j < rank; j++) {
            if (c[j] >= odims[j]) inside = 0;
            o = o * odims[j] + c[j];
        }
        if (inside)
            memcpy((char *)Y->data + (size_t)o * es, (const char *)X->data + (size_t)i * es, es);
    }
    return KILN_OK;
}

const struct kiln_op_def kiln_ops_conv[] = {
    {"Conv", NULL, 1, 0, conv_infer, conv_exec, conv_prepare, conv_flops},
    {"ConvTranspose", NULL, 1, 0, convt_infer, convt_exec, convt_prepare, conv_flops},
    {"MaxPool", NULL, 1, 0, maxpool_infer, maxpool_exec, maxpool_prepare, pool_flops},
    {"AveragePool", NULL, 1, 0, avgpool_infer, avgpool_exec, avgpool_prepare, pool_flops},
    {"LpPool", NULL, 1, 0, lppool_infer, lppool_exec, NULL, pool_flops},
    {"GlobalAveragePool", NULL, 1, 0, global_infer, global_exec, gap_prepare, NULL},
    {"GlobalMaxPool", NULL, 1, 0, global_infer, global_exec, NULL, NULL},
    {"GlobalLpPool", NULL, 1, 0, global_infer, global_exec, NULL, NULL},
    {"MaxUnpool", NULL, 9, 0, unpool_infer, unpool_exec, NULL, NULL},
    {0},
};
