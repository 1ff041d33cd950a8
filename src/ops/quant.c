/* quant.c — op family 'quant': QuantizeLinear, DequantizeLinear,
 * DynamicQuantizeLinear, QLinearMatMul, ConvInteger, QLinearConv (see op.h).
 *
 * Quantized types are uint8/int8/uint16/int16/int32 (kiln has no 4-bit or
 * float8 dtypes; the importer reports those). Scales and zero points are
 * per-tensor, per-axis (1-D along `axis`) or blocked (same rank as the data,
 * `block_size` consecutive elements along `axis` share one). Rounding is
 * round-half-to-even, then saturation to the output type's range.
 *
 * QLinearConv runs on oneDNN's int8 convolution when its weights are constant
 * s8 with zero zero points (src/backend/dnnl_qconv.c). The family also holds
 * the ops kiln's own compiler writes (domain "kiln"): QConv and QMatMul
 * (int8 weights, float in and out) and Bf16Conv / Bf16MatMul (bf16 weights).
 */
#include "ops/op.h"
#include "backend/dnnl_qconv.h"

#include <math.h>
#include <stdlib.h>
#include <string.h>

/* kiln_op_check_arity plus: inputs below min_in are present (not omitted). */
static kiln_status arity(const struct kiln_node *n, const struct kiln_value *const *in, int n_in,
                         int min_in, int max_in, kiln_error *err) {
    kiln_status st = kiln_op_check_arity(n, n_in, min_in, max_in, err);
    if (st) return st;
    for (int i = 0; i < min_in; i++)
        if (!in[i]) return kiln_op_fail(err, KILN_ERR_BAD_MODEL, n, "input %d is required", i);
    return KILN_OK;
}

static kiln_status need_out0(const struct kiln_node *n, struct kiln_value *const *out, int n_out,
                             kiln_error *err) {
    if (n_out < 1 || !out[0]) return kiln_op_fail(err, KILN_ERR_BAD_MODEL, n, "output 0 is required");
    return KILN_OK;
}

/* ------------------------------------------------------------------------ */
/* helpers                                                                   */

static bool q_type_ok(kiln_dtype t) {
    return t == KILN_DTYPE_UINT8 || t == KILN_DTYPE_INT8 || t == KILN_DTYPE_UINT16 ||
           t == KILN_DTYPE_INT16 || t == KILN_DTYPE_INT32;
}

static bool scale_type_ok(kiln_dtype t) {
    return t == KILN_DTYPE_FLOAT || t == KILN_DTYPE_FLOAT16 || t == KILN_DTYPE_BFLOAT16 ||
           t == KILN_DTYPE_DOUBLE;
}

static void q_range(kiln_dtype t, double *lo, double *hi) {
    switch (t) {
    case KILN_DTYPE_UINT8: *lo = 0; *hi = 255; break;
    case KILN_DTYPE_INT8: *lo = -128; *hi = 127; break;
    case KILN_DTYPE_UINT16: *lo = 0; *hi = 65535; break;
    case KILN_DTYPE_INT16: *lo = -32768; *hi = 32767; break;
    default: *lo = -2147483648.0; *hi = 2147483647.0; break;
    }
}

/* saturating store of an already rounded value */
static void q_store(struct kiln_value *v, int64_t i, double x) {
    double lo, hi;
    q_range(v->dtype, &lo, &hi);
    if (!(x >= lo)) x = lo;   /* NaN goes to lo, as does -inf */
    if (x > hi) x = hi;
    switch (v->dtype) {
    case KILN_DTYPE_UINT8: ((uint8_t *)v->data)[i] = (uint8_t)x; break;
    case KILN_DTYPE_INT8: ((int8_t *)v->data)[i] = (int8_t)x; break;
    case KILN_DTYPE_UINT16: ((uint16_t *)v->data)[i] = (uint16_t)x; break;
    case KILN_DTYPE_INT16: ((int16_t *)v->data)[i] = (int16_t)x; break;
    default: ((int32_t *)v->data)[i] = (int32_t)x; break;
    }
}

static bool is_scalarish(const struct kiln_value *v) {
    return v->rank == 0 || (v->rank == 1 && v->dims[0] == 1);
}

/* how scale/zero-point elements map onto data elements */
struct qmap {
    int     mode;     /* 0 per-tensor, 1 per-axis, 2 blocked */
    int64_t D;        /* data dim along axis */
    int64_t inner;    /* product of data dims after axis */
    int64_t block;
    int64_t Ds;       /* scale dim along axis (blocked) */
};

static inline int64_t qmap_idx(const struct qmap *m, int64_t i) {
    if (m->mode == 0) return 0;
    int64_t a = (i / m->inner) % m->D;
    if (m->mode == 1) return a;
    int64_t outer = i / (m->D * m->inner), in = i % m->inner;
    return (outer * m->Ds + a / m->block) * m->inner + in;
}

static kiln_status qmap_init(const struct kiln_node *n, const struct kiln_value *x,
                             const struct kiln_value *scale, const struct kiln_value *zp,
                             struct qmap *m, kiln_error *err) {
    memset(m, 0, sizeof *m);
    int64_t block = n->opset >= 21 ? kiln_attr_int(n, "block_size", 0) : 0;
    if (block < 0) return kiln_op_fail(err, KILN_ERR_BAD_MODEL, n, "negative block_size");
    if (zp) {
        if (zp->rank != scale->rank)
            return kiln_op_fail(err, KILN_ERR_SHAPE, n,
                                "zero point rank %d differs from scale rank %d", zp->rank,
                                scale->rank);
        for (int32_t i = 0; i < zp->rank; i++)
            if (zp->dims[i] != scale->dims[i])
                return kiln_op_fail(err, KILN_ERR_SHAPE, n, "zero point and scale shapes differ");
    }
    if (block == 0 && is_scalarish(scale)) return KILN_OK;
    if (x->rank == 0)
        return kiln_op_fail(err, KILN_ERR_SHAPE, n, "expected a scalar scale for a scalar input");
    int32_t axis;
    kiln_status st = kiln_norm_axis(n, kiln_attr_int(n, "axis", 1), x->rank, &axis, err);
    if (st) return st;
    m->D = x->dims[axis];
    m->inner = 1;
    for (int32_t i = axis + 1; i < x->rank; i++) m->inner *= x->dims[i];
    if (block == 0) {
        if (scale->rank != 1 || scale->dims[0] != m->D)
            return kiln_op_fail(err, KILN_ERR_SHAPE, n,
                                "expected a scalar or 1-D scale of length %lld (axis %d), got rank "
                                "%d",
                                (long long)m->D, axis, scale->rank);
        m->mode = 1;
        return KILN_OK;
    }
    if (scale->rank != x->rank)
        return kiln_op_fail(err, KILN_ERR_SHAPE, n,
                            "blocked quantization: expected scale of rank %d, got %d", x->rank,
                            scale->rank);
    for (int32_t i = 0; i < x->rank; i++) {
        int64_t want = i == axis ? (x->dims[i] + block - 1) / block : x->dims[i];
        if (scale->dims[i] != want)
            return kiln_op_fail(err, KILN_ERR_SHAPE, n,
                                "blocked quantization: scale dim %d is %lld, expected %lld", i,
                                (long long)scale->dims[i], (long long)want);
    }
    m->mode = 2;
    m->block = block;
    m->Ds = scale->dims[axis];
    return KILN_OK;
}

/* ------------------------------------------------------------------------ */
/* QuantizeLinear                                                            */

static kiln_status quantize_infer(const struct kiln_node *n, const struct kiln_value *const *in,
                                  int n_in, struct kiln_value *const *out, int n_out,
                                  kiln_error *err) {
    kiln_status st = arity(n, in, n_in, 2, 3, err);
    if (st) return st;
    if ((st = need_out0(n, out, n_out, err))) return st;
    const struct kiln_value *x = in[0], *s = in[1], *zp = n_in > 2 ? in[2] : NULL;
    if (!(scale_type_ok(x->dtype) || x->dtype == KILN_DTYPE_INT32))
        return kiln_op_fail(err, KILN_ERR_SHAPE, n, "expected float or int32 input, got %s",
                            kiln_dtype_name(x->dtype));
    if (!scale_type_ok(s->dtype))
        return kiln_op_fail(err, KILN_ERR_SHAPE, n, "expected a float scale, got %s",
                            kiln_dtype_name(s->dtype));
    kiln_dtype od = KILN_DTYPE_UINT8;
    int64_t attr_dt = n->opset >= 21 ? kiln_attr_int(n, "output_dtype", 0) : 0;
    if (zp) od = zp->dtype;
    else if (attr_dt) od = (kiln_dtype)attr_dt;
    if (zp && attr_dt && attr_dt != (int64_t)zp->dtype)
        return kiln_op_fail(err, KILN_ERR_BAD_MODEL, n,
                            "output_dtype %lld differs from the zero point type %s",
                            (long long)attr_dt, kiln_dtype_name(zp->dtype));
    if (!q_type_ok(od))
        return kiln_op_fail(err, KILN_ERR_UNSUPPORTED, n,
                            "quantized type %s (%d) is not supported (uint8/int8/uint16/int16/int32)",
                            kiln_dtype_name(od), (int)od);
    struct qmap m;
    if ((st = qmap_init(n, x, s, zp, &m, err))) return st;
    kiln_value_set_shape(out[0], od, x->rank, x->dims);
    return KILN_OK;
}

static kiln_status quantize_exec(const struct kiln_node *n, struct kiln_exec_ctx *ctx,
                                 const struct kiln_value *const *in, int n_in,
                                 struct kiln_value *const *out, int n_out, kiln_error *err) {
    const struct kiln_value *x = in[0], *s = in[1], *zp = n_in > 2 ? in[2] : NULL;
    struct qmap m;
    kiln_status st = qmap_init(n, x, s, zp, &m, err);
    if (st) return st;
    int64_t cnt = kiln_value_numel(x);
    struct kiln_value *y = out[0];
    bool fx = x->dtype == KILN_DTYPE_FLOAT && s->dtype == KILN_DTYPE_FLOAT;
#pragma omp parallel for schedule(static) if (cnt > 65536)
    for (int64_t i = 0; i < cnt; i++) {
        int64_t si = qmap_idx(&m, i);
        double q;
        if (fx) {
            q = (double)rintf(((const float *)x->data)[i] / ((const float *)s->data)[si]);
        } else if (x->dtype == KILN_DTYPE_INT32 || x->dtype == KILN_DTYPE_DOUBLE ||
                   s->dtype == KILN_DTYPE_DOUBLE) {
            q = rint(kiln_value_get_f64(x, i) / kiln_value_get_f64(s, si));
        } else {
            q = (double)rintf((float)kiln_value_get_f64(x, i) / (float)kiln_value_get_f64(s, si));
        }
        if (zp) q += (double)kiln_value_get_int(zp, si);
        q_store(y, i, q);
    }
    return KILN_OK;
}

/* ------------------------------------------------------------------------ */
/* DequantizeLinear                                                          */

static kiln_status dequantize_infer(const struct kiln_node *n, const struct kiln_value *const *in,
                                    int n_in, struct kiln_value *const *out, int n_out,
                                    kiln_error *err) {
    kiln_status st = arity(n, in, n_in, 2, 3, err);
    if (st) return st;
    if ((st = need_out0(n, out, n_out, err))) return st;
    const struct kiln_value *x = in[0], *s = in[1], *zp = n_in > 2 ? in[2] : NULL;
    if (!q_type_ok(x->dtype))
        return kiln_op_fail(err, KILN_ERR_UNSUPPORTED, n,
                            "quantized type %s is not supported (uint8/int8/uint16/int16/int32)",
                            kiln_dtype_name(x->dtype));
    if (!scale_type_ok(s->dtype))
        return kiln_op_fail(err, KILN_ERR_SHAPE, n, "expected a float scale, got %s",
                            kiln_dtype_name(s->dtype));
    if (zp && zp->dtype != x->dtype)
        return kiln_op_fail(err, KILN_ERR_SHAPE, n, "zero point type %s differs from input %s",
                            kiln_dtype_name(zp->dtype), kiln_dtype_name(x->dtype));
    struct qmap m;
    if ((st = qmap_init(n, x, s, zp, &m, err))) return st;
    kiln_value_set_shape(out[0], s->dtype, x->rank, x->dims);
    return KILN_OK;
}

static kiln_status dequantize_exec(const struct kiln_node *n, struct kiln_exec_ctx *ctx,
                                   const struct kiln_value *const *in, int n_in,
                                   struct kiln_value *const *out, int n_out, kiln_error *err) {
    const struct kiln_value *x = in[0], *s = in[1], *zp = n_in > 2 ? in[2] : NULL;
    struct qmap m;
    kiln_status st = qmap_init(n, x, s, zp, &m, err);
    if (st) return st;
    int64_t cnt = kiln_value_numel(x);
    struct kiln_value *y = out[0];
#pragma omp parallel for schedule(static) if (cnt > 65536)
    for (int64_t i = 0; i < cnt; i++) {
        int64_t si = qmap_idx(&m, i);
        int64_t v = kiln_value_get_int(x, i) - (zp ? kiln_value_get_int(zp, si) : 0);
        if (y->dtype == KILN_DTYPE_DOUBLE)
            ((double *)y->data)[i] = (double)v * kiln_value_get_f64(s, si);
        else
            kiln_value_set_f64(y, i, (double)((float)v * (float)kiln_value_get_f64(s, si)));
    }
    return KILN_OK;
}

/* ------------------------------------------------------------------------ */
/* DynamicQuantizeLinear                                                     */

static kiln_status dynq_infer(const struct kiln_node *n, const struct kiln_value *const *in,
                              int n_in, struct kiln_value *const *out, int n_out,
                              kiln_error *err) {
    kiln_status st = arity(n, in, n_in, 1, 1, err);
    if (st) return st;
    if ((st = need_out0(n, out, n_out, err))) return st;
    if (in[0]->dtype != KILN_DTYPE_FLOAT)
        return kiln_op_fail(err, KILN_ERR_SHAPE, n, "expected float32 input, got %s",
                            kiln_dtype_name(in[0]->dtype));
    kiln_value_set_shape(out[0], KILN_DTYPE_UINT8, in[0]->rank, in[0]->dims);
    if (n_out > 1 && out[1]) kiln_value_set_shape(out[1], KILN_DTYPE_FLOAT, 0, NULL);
    if (n_out > 2 && out[2]) kiln_value_set_shape(out[2], KILN_DTYPE_UINT8, 0, NULL);
    return KILN_OK;
}

static kiln_status dynq_exec(const struct kiln_node *n, struct kiln_exec_ctx *ctx,
                             const struct kiln_value *const *in, int n_in,
                             struct kiln_value *const *out, int n_out, kiln_error *err) {
    const float *x = in[0]->data;
    int64_t cnt = kiln_value_numel(in[0]);
    float lo = 0.0f, hi = 0.0f;   /* the range always includes 0 */
    for (int64_t i = 0; i < cnt; i++) {
        if (x[i] < lo) lo = x[i];
        if (x[i] > hi) hi = x[i];
    }
    float scale = (hi - lo) / 255.0f;
    float zpf = scale != 0.0f ? rintf(0.0f - lo / scale) : 0.0f;
    if (zpf < 0) zpf = 0;
    if (zpf > 255) zpf = 255;
    uint8_t zp = (uint8_t)zpf;
    uint8_t *y = out[0]->data;
    for (int64_t i = 0; i < cnt; i++) {
        float q = scale != 0.0f ? rintf(x[i] / scale) + zpf : zpf;
        if (!(q >= 0)) q = 0;
        if (q > 255) q = 255;
        y[i] = (uint8_t)q;
    }
    if (n_out > 1 && out[1]) *(float *)out[1]->data = scale;
    if (n_out > 2 && out[2]) *(uint8_t *)out[2]->data = zp;
    return KILN_OK;
}

/* ------------------------------------------------------------------------ */
/* QLinearMatMul                                                             */

struct qmm_shape {
    int64_t M, N, K, nbatch;
    int32_t brank;
    int64_t bdims[KILN_MAX_RANK];
    int32_t out_rank;
    int64_t out_dims[KILN_MAX_RANK];
};

static kiln_status qmm_analyze(const struct kiln_node *n, const struct kiln_value *a,
                               const struct kiln_value *b, struct qmm_shape *s, kiln_error *err) {
    if (a->rank < 1 || b->rank < 1)
        return kiln_op_fail(err, KILN_ERR_SHAPE, n, "expected inputs of rank >= 1");
    int32_t ra = a->rank, rb = b->rank;
    s->M = ra == 1 ? 1 : a->dims[ra - 2];
    s->K = a->dims[ra - 1];
    s->N = rb == 1 ? 1 : b->dims[rb - 1];
    int64_t kb = rb == 1 ? b->dims[0] : b->dims[rb - 2];
    if (kb != s->K)
        return kiln_op_fail(err, KILN_ERR_SHAPE, n, "inner dimensions differ: %lld vs %lld",
                            (long long)s->K, (long long)kb);
    int32_t ba = ra > 2 ? ra - 2 : 0, bb = rb > 2 ? rb - 2 : 0;
    s->brank = ba > bb ? ba : bb;
    s->nbatch = 1;
    for (int32_t i = 0; i < s->brank; i++) {
        int32_t ia = i - (s->brank - ba), ib = i - (s->brank - bb);
        int64_t da = ia >= 0 ? a->dims[ia] : 1, db = ib >= 0 ? b->dims[ib] : 1;
        if (da != db && da != 1 && db != 1)
            return kiln_op_fail(err, KILN_ERR_SHAPE, n, "batch dims do not broadcast");
        s->bdims[i] = da == 1 ? db : da;
        if (__builtin_mul_overflow(s->nbatch, s->bdims[i], &s->nbatch))
            return kiln_op_fail(err, KILN_ERR_LIMIT, n, "batch size overflows");
    }
    s->out_rank = 0;
    for (int32_t i = 0; i < s->brank; i++) s->out_dims[s->out_rank++] = s->bdims[i];
    if (ra > 1) s->out_dims[s->out_rank++] = s->M;
    if (rb > 1) s->out_dims[s->out_rank++] = s->N;
    int64_t p = 1;
    for (int32_t i = 0; i < s->out_rank; i++)
        if (__builtin_mul_overflow(p, s->out_dims[i], &p))
            return kiln_op_fail(err, KILN_ERR_LIMIT, n, "output element count overflows");
    return KILN_OK;
}

static int64_t qmm_off(const struct qmm_shape *s, const struct kiln_value *v, int64_t b,
                       int64_t mat) {
    int32_t vb = v->rank > 2 ? v->rank - 2 : 0;
    int64_t o = 0, st = mat, r = b;
    for (int32_t i = s->brank - 1; i >= 0; i--) {
        int64_t idx = r % s->bdims[i];
        r /= s->bdims[i];
        int32_t iv = i - (s->brank - vb);
        int64_t d = iv >= 0 ? v->dims[iv] : 1;
        if (d != 1) o += idx * st;
        st *= d;
    }
    return o;
}

/* per-tensor, or 1-D of length len (per row of A / per column of B) */
static kiln_status qmm_param_ok(const struct kiln_node *n, const struct kiln_value *v,
                                int64_t len, const char *what, kiln_error *err) {
    if (kiln_value_numel(v) == 1 && v->rank <= 2) return KILN_OK;
    if (v->rank == 1 && v->dims[0] == len) return KILN_OK;
    return kiln_op_fail(err, KILN_ERR_UNSUPPORTED, n,
                        "%s: expected a scalar or 1-D of length %lld", what, (long long)len);
}

static kiln_status qlinearmatmul_infer(const struct kiln_node *n,
                                       const struct kiln_value *const *in, int n_in,
                                       struct kiln_value *const *out, int n_out,
                                       kiln_error *err) {
    kiln_status st = arity(n, in, n_in, 8, 8, err);
    if (st) return st;
    if ((st = need_out0(n, out, n_out, err))) return st;
    for (int i = 0; i < 8; i++)
        if (!in[i]) return kiln_op_fail(err, KILN_ERR_BAD_MODEL, n, "input %d is required", i);
    const struct kiln_value *a = in[0], *b = in[3];
    if (!q_type_ok(a->dtype) || !q_type_ok(b->dtype) || a->dtype == KILN_DTYPE_INT32 ||
        in[2]->dtype != a->dtype || in[5]->dtype != b->dtype || !q_type_ok(in[7]->dtype))
        return kiln_op_fail(err, KILN_ERR_SHAPE, n,
                            "expected 8/16-bit quantized A, B and zero points of matching types");
    if (!scale_type_ok(in[1]->dtype) || !scale_type_ok(in[4]->dtype) ||
        !scale_type_ok(in[6]->dtype))
        return kiln_op_fail(err, KILN_ERR_SHAPE, n, "expected float scales");
    struct qmm_shape s;
    if ((st = qmm_analyze(n, a, b, &s, err))) return st;
    if ((st = qmm_param_ok(n, in[1], s.M, "a_scale", err)) ||
        (st = qmm_param_ok(n, in[2], s.M, "a_zero_point", err)) ||
        (st = qmm_param_ok(n, in[4], s.N, "b_scale", err)) ||
        (st = qmm_param_ok(n, in[5], s.N, "b_zero_point", err)) ||
        (st = qmm_param_ok(n, in[6], 1, "y_scale", err)) ||
        (st = qmm_param_ok(n, in[7], 1, "y_zero_point", err)))
        return st;
    kiln_value_set_shape(out[0], in[7]->dtype, s.out_rank, s.out_dims);
    return KILN_OK;
}

static inline int64_t pget(const struct kiln_value *v, int64_t i) {
    return kiln_value_get_int(v, kiln_value_numel(v) == 1 ? 0 : i);
}
static inline double pgetf(const struct kiln_value *v, int64_t i) {
    return kiln_value_get_f64(v, kiln_value_numel(v) == 1 ? 0 : i);
}

static kiln_status qlinearmatmul_exec(const struct kiln_node *n, struct kiln_exec_ctx *ctx,
                                      const struct kiln_value *const *in, int n_in,
                                      struct kiln_value *const *out, int n_out,
                                      kiln_error *err) {
    const struct kiln_value *a = in[0], *b = in[3];
    struct qmm_shape s;
    kiln_status st = qmm_analyze(n, a, b, &s, err);
    if (st) return st;
    int64_t M = s.M, N = s.N, K = s.K;
    float ys = (float)pgetf(in[6], 0);
    double yzp = (double)pget(in[7], 0);
    int64_t total = s.nbatch * M;
#pragma omp parallel for schedule(static) if (total * N * K > 32768)
    for (int64_t t = 0; t < total; t++) {
        int64_t bt = t / M, i = t % M;
        int64_t ao = qmm_off(&s, a, bt, M * K), bo = qmm_off(&s, b, bt, K * N);
        int64_t azp = pget(in[2], i);
        float as = (float)pgetf(in[1], i);
        for (int64_t j = 0; j < N; j++) {
            int64_t bzp = pget(in[5], j), acc = 0;
            for (int64_t k = 0; k < K; k++)
                acc += (kiln_value_get_int(a, ao + i * K + k) - azp) *
                       (kiln_value_get_int(b, bo + k * N + j) - bzp);
            float mult = as * (float)pgetf(in[4], j) / ys;
            double q = (double)rintf((float)acc * mult) + yzp;
            q_store(out[0], t * N + j, q);
        }
    }
    return KILN_OK;
}

/* ------------------------------------------------------------------------ */
/* integer convolution (ConvInteger, QLinearConv): direct, N-d              */

struct conv_geom {
    int32_t sp;                        /* spatial rank */
    int64_t N, C, OC, G;
    int64_t in[KILN_MAX_RANK], k[KILN_MAX_RANK], out[KILN_MAX_RANK];
    int64_t stride[KILN_MAX_RANK], dil[KILN_MAX_RANK], pad[KILN_MAX_RANK];
    int64_t in_sz, k_sz, out_sz;       /* products of spatial dims */
};

static kiln_status conv_geom_init(const struct kiln_node *n, const struct kiln_value *x,
                                  const struct kiln_value *w, struct conv_geom *g,
                                  kiln_error *err) {
    memset(g, 0, sizeof *g);
    if (x->rank < 3 || w->rank != x->rank)
        return kiln_op_fail(err, KILN_ERR_SHAPE, n,
                            "expected X of rank >= 3 and W of the same rank, got %d and %d",
                            x->rank, w->rank);
    g->sp = x->rank - 2;
    g->N = x->dims[0];
    g->C = x->dims[1];
    g->OC = w->dims[0];
    g->G = kiln_attr_int(n, "group", 1);
    if (g->G <= 0 || g->C % g->G || g->OC % g->G || w->dims[1] != g->C / g->G)
        return kiln_op_fail(err, KILN_ERR_SHAPE, n,
                            "group %lld does not fit X channels %lld and W [%lld,%lld,...]",
                            (long long)g->G, (long long)g->C, (long long)g->OC,
                            (long long)w->dims[1]);
    int64_t cnt;
    const int64_t *ks = kiln_attr_ints(n, "kernel_shape", &cnt);
    if (ks && cnt != g->sp)
        return kiln_op_fail(err, KILN_ERR_BAD_MODEL, n, "kernel_shape has %lld values, expected %d",
                            (long long)cnt, g->sp);
    const int64_t *strides = kiln_attr_ints(n, "strides", &cnt);
    if (strides && cnt != g->sp)
        return kiln_op_fail(err, KILN_ERR_BAD_MODEL, n, "strides has %lld values, expected %d",
                            (long long)cnt, g->sp);
    const int64_t *dil = kiln_attr_ints(n, "dilations", &cnt);
    if (dil && cnt != g->sp)
        return kiln_op_fail(err, KILN_ERR_BAD_MODEL, n, "dilations has %lld values, expected %d",
                            (long long)cnt, g->sp);
    const int64_t *pads = kiln_attr_ints(n, "pads", &cnt);
    if (pads && cnt != 2 * g->sp)
        return kiln_op_fail(err, KILN_ERR_BAD_MODEL, n, "pads has %lld values, expected %d",
                            (long long)cnt, 2 * g->sp);
    const char *ap = kiln_attr_string(n, "auto_pad", "NOTSET");
    g->in_sz = g->k_sz = g->out_sz = 1;
    for (int32_t i = 0; i < g->sp; i++) {
        g->in[i] = x->dims[2 + i];
        g->k[i] = w->dims[2 + i];
        if (ks && ks[i] != g->k[i])
            return kiln_op_fail(err, KILN_ERR_SHAPE, n, "kernel_shape differs from W's shape");
        g->stride[i] = strides ? strides[i] : 1;
        g->dil[i] = dil ? dil[i] : 1;
        if (g->stride[i] <= 0 || g->dil[i] <= 0 || g->k[i] <= 0)
            return kiln_op_fail(err, KILN_ERR_BAD_MODEL, n,
                                "strides, dilations and kernel dims must be positive");
        int64_t ek = (g->k[i] - 1) * g->dil[i] + 1;
        int64_t pb = 0, pe = 0, o;
        if (strcmp(ap, "NOTSET") == 0) {
            pb = pads ? pads[i] : 0;
            pe = pads ? pads[i + g->sp] : 0;
            if (pb < 0 || pe < 0)
                return kiln_op_fail(err, KILN_ERR_BAD_MODEL, n, "negative pads");
            o = (g->in[i] + pb + pe - ek) / g->stride[i] + 1;
            if (g->in[i] + pb + pe < ek) o = 0;
        } else if (strcmp(ap, "VALID") == 0) {
            o = g->in[i] < ek ? 0 : (g->in[i] - ek) / g->stride[i] + 1;
        } else if (strcmp(ap, "SAME_UPPER") == 0 || strcmp(ap, "SAME_LOWER") == 0) {
            o = (g->in[i] + g->stride[i] - 1) / g->stride[i];
            int64_t tot = (o - 1) * g->stride[i] + ek - g->in[i];
            if (tot < 0) tot = 0;
            pb = ap[5] == 'U' ? tot / 2 : tot - tot / 2;
        } else {
            return kiln_op_fail(err, KILN_ERR_BAD_MODEL, n, "unknown auto_pad '%s'", ap);
        }
        g->pad[i] = pb;
        g->out[i] = o;
        g->in_sz *= g->in[i];
        g->k_sz *= g->k[i];
        g->out_sz *= o;
    }
    return KILN_OK;
}

/* acc[n, oc, out...] = sum (x - xzp) * (w - wzp[oc]) over the group's channels
 * and the kernel window; padding contributes 0. */
static kiln_status conv_int_acc(const struct kiln_node *n, const struct conv_geom *g,
                                const struct kiln_value *x, const struct kiln_value *w,
                                const struct kiln_value *xzp, const struct kiln_value *wzp,
                                int32_t *acc, kiln_error *err) {
    int64_t xn = kiln_value_numel(x), wn = kiln_value_numel(w);
    int32_t *xs = malloc((size_t)(xn > 0 ? xn : 1) * sizeof *xs);
    int32_t *ws = malloc((size_t)(wn > 0 ? wn : 1) * sizeof *ws);
    if (!xs || !ws) {
        free(xs);
        free(ws);
        return kiln_op_fail(err, KILN_ERR_NO_MEMORY, n, "out of memory for conv scratch");
    }
    int64_t xz = xzp ? kiln_value_get_int(xzp, 0) : 0;
    for (int64_t i = 0; i < xn; i++) xs[i] = (int32_t)(kiln_value_get_int(x, i) - xz);
    int64_t wper = wn / (g->OC > 0 ? g->OC : 1);
    bool wz_per_oc = wzp && kiln_value_numel(wzp) > 1;
    for (int64_t i = 0; i < wn; i++) {
        int64_t z = wzp ? kiln_value_get_int(wzp, wz_per_oc ? i / wper : 0) : 0;
        ws[i] = (int32_t)(kiln_value_get_int(w, i) - z);
    }
    int64_t cg = g->C / g->G, ocg = g->OC / g->G;
    int64_t total = g->N * g->OC;
#pragma omp parallel for schedule(static) if (total > 1)
    for (int64_t t = 0; t < total; t++) {
        int64_t b = t / g->OC, oc = t % g->OC, grp = oc / ocg;
        int32_t *o = acc + t * g->out_sz;
        for (int64_t op = 0; op < g->out_sz; op++) {
            int64_t oidx[KILN_MAX_RANK], r = op;
            for (int32_t d = g->sp - 1; d >= 0; d--) {
                oidx[d] = r % g->out[d];
                r /= g->out[d];
            }
            uint32_t sum = 0;   /* int32 accumulation, wrapping */
            for (int64_t kp = 0; kp < g->k_sz; kp++) {
                int64_t kr = kp, ipos = 0, mul = 1;
                bool inside = true;
                int64_t kidx[KILN_MAX_RANK];
                for (int32_t d = g->sp - 1; d >= 0; d--) {
                    kidx[d] = kr % g->k[d];
                    kr /= g->k[d];
                }
                for (int32_t d = g->sp - 1; d >= 0; d--) {
                    int64_t c = oidx[d] * g->stride[d] - g->pad[d] + kidx[d] * g->dil[d];
                    if (c < 0 || c >= g->in[d]) {
                        inside = false;
                        break;
                    }
                    ipos += c * mul;
                    mul *= g->in[d];
                }
                if (!inside) continue;
                for (int64_t ic = 0; ic < cg; ic++) {
                    int64_t c = grp * cg + ic;
                    sum += (uint32_t)xs[(b * g->C + c) * g->in_sz + ipos] *
                           (uint32_t)ws[(oc * cg + ic) * g->k_sz + kp];
                }
            }
            o[op] = (int32_t)sum;
        }
    }
    free(xs);
    free(ws);
    return KILN_OK;
}

static kiln_status conv_out_shape(const struct kiln_node *n, const struct conv_geom *g,
                                  kiln_dtype dt, struct kiln_value *out, kiln_error *err) {
    int64_t dims[KILN_MAX_RANK];
    dims[0] = g->N;
    dims[1] = g->OC;
    int64_t p = g->N;
    if (__builtin_mul_overflow(p, g->OC, &p))
        return kiln_op_fail(err, KILN_ERR_LIMIT, n, "output element count overflows");
    for (int32_t i = 0; i < g->sp; i++) {
        dims[2 + i] = g->out[i];
        if (__builtin_mul_overflow(p, g->out[i], &p))
            return kiln_op_fail(err, KILN_ERR_LIMIT, n, "output element count overflows");
    }
    kiln_value_set_shape(out, dt, g->sp + 2, dims);
    return KILN_OK;
}

static bool q8(kiln_dtype t) { return t == KILN_DTYPE_UINT8 || t == KILN_DTYPE_INT8; }

static kiln_status convinteger_infer(const struct kiln_node *n,
                                     const struct kiln_value *const *in, int n_in,
                                     struct kiln_value *const *out, int n_out, kiln_error *err) {
    kiln_status st = arity(n, in, n_in, 2, 4, err);
    if (st) return st;
    if ((st = need_out0(n, out, n_out, err))) return st;
    if (!q8(in[0]->dtype) || !q8(in[1]->dtype))
        return kiln_op_fail(err, KILN_ERR_SHAPE, n, "expected uint8/int8 X and W, got %s and %s",
                            kiln_dtype_name(in[0]->dtype), kiln_dtype_name(in[1]->dtype));
    struct conv_geom g;
    if ((st = conv_geom_init(n, in[0], in[1], &g, err))) return st;
    if (n_in > 2 && in[2] && (in[2]->dtype != in[0]->dtype || kiln_value_numel(in[2]) != 1))
        return kiln_op_fail(err, KILN_ERR_SHAPE, n, "x_zero_point must be a scalar of X's type");
    if (n_in > 3 && in[3] &&
        (in[3]->dtype != in[1]->dtype ||
         (kiln_value_numel(in[3]) != 1 && kiln_value_numel(in[3]) != g.OC)))
        return kiln_op_fail(err, KILN_ERR_SHAPE, n,
                            "w_zero_point must be a scalar or per output channel, of W's type");
    return conv_out_shape(n, &g, KILN_DTYPE_INT32, out[0], err);
}

static kiln_status convinteger_exec(const struct kiln_node *n, struct kiln_exec_ctx *ctx,
                                    const struct kiln_value *const *in, int n_in,
                                    struct kiln_value *const *out, int n_out, kiln_error *err) {
    struct conv_geom g;
    kiln_status st = conv_geom_init(n, in[0], in[1], &g, err);
    if (st) return st;
    if (kiln_value_numel(out[0]) == 0) return KILN_OK;
    return conv_int_acc(n, &g, in[0], in[1], n_in > 2 ? in[2] : NULL, n_in > 3 ? in[3] : NULL,
                        out[0]->data, err);
}

/* QLinearConv(x, x_scale, x_zp, w, w_scale, w_zp, y_scale, y_zp, B?) */
static kiln_status qlinearconv_infer(const struct kiln_node *n,
                                     const struct kiln_value *const *in, int n_in,
                                     struct kiln_value *const *out, int n_out, kiln_error *err) {
    kiln_status st = kiln_op_check_arity(n, n_in, 8, 9, err);
    if (st) return st;
    if ((st = need_out0(n, out, n_out, err))) return st;
    for (int i = 0; i < 8; i++)
        if (!in[i] && i != 2 && i != 5 && i != 7)
            return kiln_op_fail(err, KILN_ERR_BAD_MODEL, n, "input %d is required", i);
    if (!q8(in[0]->dtype) || !q8(in[3]->dtype))
        return kiln_op_fail(err, KILN_ERR_SHAPE, n, "expected uint8/int8 X and W, got %s and %s",
                            kiln_dtype_name(in[0]->dtype), kiln_dtype_name(in[3]->dtype));
    if (!scale_type_ok(in[1]->dtype) || !scale_type_ok(in[4]->dtype) ||
        !scale_type_ok(in[6]->dtype))
        return kiln_op_fail(err, KILN_ERR_SHAPE, n, "expected float scales");
    struct conv_geom g;
    if ((st = conv_geom_init(n, in[0], in[3], &g, err))) return st;
    if (kiln_value_numel(in[1]) != 1 || kiln_value_numel(in[6]) != 1 ||
        (in[2] && kiln_value_numel(in[2]) != 1) || (in[7] && kiln_value_numel(in[7]) != 1))
        return kiln_op_fail(err, KILN_ERR_SHAPE, n, "x and y scale/zero point must be scalars");
    int64_t ws = kiln_value_numel(in[4]);
    if ((ws != 1 && ws != g.OC) ||
        (in[5] && kiln_value_numel(in[5]) != 1 && kiln_value_numel(in[5]) != g.OC))
        return kiln_op_fail(err, KILN_ERR_SHAPE, n,
                            "w scale/zero point must be scalars or per output channel (%lld)",
                            (long long)g.OC);
    if (n_in > 8 && in[8] &&
        (in[8]->dtype != KILN_DTYPE_INT32 || kiln_value_numel(in[8]) != g.OC))
        return kiln_op_fail(err, KILN_ERR_SHAPE, n, "B must be int32 of length %lld",
                            (long long)g.OC);
    kiln_dtype yt = in[7] ? in[7]->dtype : in[0]->dtype;
    if (!q8(yt)) return kiln_op_fail(err, KILN_ERR_SHAPE, n, "expected a uint8/int8 y_zero_point");
    return conv_out_shape(n, &g, yt, out[0], err);
}

static kiln_status qlinearconv_exec(const struct kiln_node *n, struct kiln_exec_ctx *ctx,
                                    const struct kiln_value *const *in, int n_in,
                                    struct kiln_value *const *out, int n_out, kiln_error *err) {
    struct conv_geom g;
    kiln_status st = conv_geom_init(n, in[0], in[3], &g, err);
    if (st) return st;
    int64_t cnt = kiln_value_numel(out[0]);
    if (cnt == 0) return KILN_OK;
    int32_t *acc = malloc((size_t)cnt * sizeof *acc);
    if (!acc) return kiln_op_fail(err, KILN_ERR_NO_MEMORY, n, "out of memory for conv scratch");
    st = conv_int_acc(n, &g, in[0], in[3], in[2], in[5], acc, err);
    if (st) {
        free(acc);
        return st;
    }
    float xs = (float)kiln_value_get_f64(in[1], 0), ys = (float)kiln_value_get_f64(in[6], 0);
    double yzp = in[7] ? (double)kiln_value_get_int(in[7], 0) : 0.0;
    const struct kiln_value *bias = n_in > 8 ? in[8] : NULL;
    bool w_per = kiln_value_numel(in[4]) > 1;
    for (int64_t t = 0; t < g.N * g.OC; t++) {
        int64_t oc = t % g.OC;
        float mult = xs * (float)kiln_value_get_f64(in[4], w_per ? oc : 0) / ys;
        int64_t bv = bias ? kiln_value_get_int(bias, oc) : 0;
        for (int64_t p = 0; p < g.out_sz; p++) {
            int64_t i = t * g.out_sz + p;
            double q = (double)rintf((float)(acc[i] + bv) * mult) + yzp;
            q_store(out[0], i, q);
        }
    }
    free(acc);
    return KILN_OK;
}

/* ------------------------------------------------------------------------ */
/* oneDNN int8 path for QLinearConv and the compiler's low-precision ops     */

/* End padding for oneDNN, which wants out == (in + pb + pe - ek) / s + 1
 * (floor division) with pe >= 0: the exact pad, or 0 when the last rows of
 * the input are read by no window. */
static bool conv_geom_dnnl(const struct conv_geom *g, struct kiln_dnnl_qconv_shape *sh) {
    if (g->sp < 1 || g->sp > KILN_DNNL_MAX_SP) return false;
    sh->nsp = g->sp;
    sh->N = g->N;
    sh->C = g->C;
    sh->M = g->OC;
    sh->G = g->G;
    for (int32_t i = 0; i < g->sp; i++) {
        int64_t ek = (g->k[i] - 1) * g->dil[i] + 1;
        sh->in[i] = g->in[i];
        sh->out[i] = g->out[i];
        sh->k[i] = g->k[i];
        sh->s[i] = g->stride[i];
        sh->d[i] = g->dil[i];
        sh->pb[i] = g->pad[i];
        int64_t pe = (g->out[i] - 1) * g->stride[i] + ek - g->in[i] - g->pad[i];
        sh->pe[i] = pe < 0 ? 0 : pe;
        if (g->out[i] < 1 || (g->in[i] + g->pad[i] + sh->pe[i] - ek) / g->stride[i] + 1 != g->out[i])
            return false;
    }
    return true;
}

/* Copies a constant's elements as float (scales); NULL when it has no data. */
static float *const_floats(const struct kiln_value *v, int64_t *n) {
    if (!v || !v->data) return NULL;
    *n = kiln_value_numel(v);
    float *f = malloc((size_t)(*n > 0 ? *n : 1) * sizeof *f);
    if (!f) return NULL;
    for (int64_t i = 0; i < *n; i++) f[i] = (float)kiln_value_get_f64(v, i);
    return f;
}

static kiln_status qconv_fast_run(const struct kiln_node *n, struct kiln_exec_ctx *ctx, void *state,
                                  const struct kiln_value *const *in, int n_in,
                                  struct kiln_value *const *out, int n_out, kiln_error *err) {
    if (kiln_value_numel(out[0]) == 0) return KILN_OK;
    /* the sum post-op adds what dst holds: start it as the residual (same
     * shape and layout, checked at prepare) */
    if (n->sum_input && out[0]->data != in[n->sum_input]->data)
        memcpy(out[0]->data, in[n->sum_input]->data, out[0]->nbytes);
    kiln_status st = kiln_dnnl_qconv_run(state, in[0]->data, out[0]->data, err);
    if (st) return kiln_op_fail(err, st, n, "%s", err ? err->msg : "oneDNN failed");
    return KILN_OK;
}

static void set_kernel(struct kiln_kernel *k, struct kiln_dnnl_qconv *q, int32_t fused) {
    k->run = qconv_fast_run;
    k->state = q;
    k->release = kiln_dnnl_qconv_free;
    k->impl = kiln_dnnl_qconv_impl(q);
    k->fused_activation = fused;
}

/* QLinearConv on oneDNN: constant s8 weights with zero zero points, constant
 * scales, zero points and bias. Anything else keeps the reference kernel. */
static kiln_status qlinearconv_prepare(const struct kiln_node *n, struct kiln_exec_ctx *ctx,
                                       const struct kiln_value *const *in, int n_in,
                                       struct kiln_value *const *out, int n_out,
                                       struct kiln_kernel *k, kiln_error *err) {
    struct conv_geom g;
    kiln_status st = conv_geom_init(n, in[0], in[3], &g, err);
    if (st) return st;
    const struct kiln_value *bias = n_in > 8 ? in[8] : NULL;
    if (in[3]->dtype != KILN_DTYPE_INT8 || !in[3]->data || !in[1]->data || !in[4]->data ||
        !in[6]->data || (in[2] && !in[2]->data) || (in[7] && !in[7]->data) ||
        (in[5] && !in[5]->data) || (bias && !bias->data) || kiln_value_numel(out[0]) == 0)
        return KILN_OK;
    if (in[5])
        for (int64_t i = 0; i < kiln_value_numel(in[5]); i++)
            if (kiln_value_get_int(in[5], i) != 0) return KILN_OK;   /* oneDNN: symmetric weights only */
    struct kiln_dnnl_qconv_shape sh = {.kind = KILN_LOWP_INT8};
    if (!conv_geom_dnnl(&g, &sh)) return KILN_OK;
    int64_t nws = 0;
    float *ws = const_floats(in[4], &nws);
    float *b = bias ? malloc((size_t)g.OC * sizeof *b) : NULL;
    if (!ws || (bias && !b)) {
        free(ws);
        free(b);
        return kiln_op_fail(err, KILN_ERR_NO_MEMORY, n, "out of memory");
    }
    for (int64_t i = 0; b && i < g.OC; i++) b[i] = (float)kiln_value_get_int(bias, i);
    sh.src_dt = sh.q_dt = in[0]->dtype;
    sh.x_scale = (float)kiln_value_get_f64(in[1], 0);
    sh.x_zp = in[2] ? (int32_t)kiln_value_get_int(in[2], 0) : 0;
    sh.dst_dt = out[0]->dtype;
    sh.y_scale = (float)kiln_value_get_f64(in[6], 0);
    sh.y_zp = in[7] ? (int32_t)kiln_value_get_int(in[7], 0) : 0;
    sh.w_scales = ws;
    sh.n_w_scales = nws;
    sh.has_bias = b != NULL;
    sh.src_cl = in[0]->layout;
    sh.dst_cl = out[0]->layout;
    struct kiln_dnnl_qconv *q = NULL;
    st = kiln_dnnl_qconv_create(&sh, in[3]->data, b, ctx ? ctx->wcache : NULL, &q, err);
    free(ws);
    free(b);
    if (st) return kiln_op_fail(err, st, n, "%s", err ? err->msg : "oneDNN failed");
    if (q) set_kernel(k, q, 0);
    return KILN_OK;
}

/* ---- kiln.QConv(X float, W int8, w_scale, B float?) ----------------------
 * Written by the int8 compiler (src/passes/quantize.c): a Conv whose weights
 * are int8 with one scale per output channel, whose float input is quantized
 * on entry to u8 with the calibrated x_scale / x_zero_point, and whose output
 * is float: y = x_scale * w_scale[m] * sum((xq - x_zp) * w) + B[m], then the
 * node's fused activation. */

static kiln_status qconv_check(const struct kiln_node *n, const struct kiln_value *const *in,
                               int n_in, struct conv_geom *g, kiln_error *err) {
    kiln_status st = arity(n, in, n_in, 3, n->sum_input ? 5 : 4, err);
    if (st) return st;
    if (n->sum_input &&
        (n->sum_input != 4 || n_in != 5 || !in[4] || in[4]->dtype != KILN_DTYPE_FLOAT))
        return kiln_op_fail(err, KILN_ERR_BAD_MODEL, n, "the fused residual must be float input 4");
    if (in[0]->dtype != KILN_DTYPE_FLOAT || in[1]->dtype != KILN_DTYPE_INT8 ||
        in[2]->dtype != KILN_DTYPE_FLOAT || (n_in > 3 && in[3] && in[3]->dtype != KILN_DTYPE_FLOAT))
        return kiln_op_fail(err, KILN_ERR_SHAPE, n, "expected float X, int8 W, float scales and B");
    if ((st = conv_geom_init(n, in[0], in[1], g, err))) return st;
    int64_t ns = kiln_value_numel(in[2]);
    if (ns != 1 && ns != g->OC)
        return kiln_op_fail(err, KILN_ERR_SHAPE, n, "w_scale must have 1 or %lld values",
                            (long long)g->OC);
    if (n_in > 3 && in[3] && kiln_value_numel(in[3]) != g->OC)
        return kiln_op_fail(err, KILN_ERR_SHAPE, n, "B must have %lld values", (long long)g->OC);
    float xs = kiln_attr_float(n, "x_scale", 0.0f);
    int64_t zp = kiln_attr_int(n, "x_zero_point", 0);
    int64_t qmax = kiln_attr_int(n, "x_qmax", 255);
    if (!(xs > 0.0f) || !isfinite(xs) || qmax < 1 || qmax > 255 || zp < 0 || zp > qmax)
        return kiln_op_fail(err, KILN_ERR_BAD_MODEL, n,
                            "x_scale must be positive and 0 <= x_zero_point <= x_qmax <= 255");
    return KILN_OK;
}

static kiln_status qconv_infer(const struct kiln_node *n, const struct kiln_value *const *in,
                               int n_in, struct kiln_value *const *out, int n_out,
                               kiln_error *err) {
    kiln_status st = need_out0(n, out, n_out, err);
    if (st) return st;
    struct conv_geom g;
    if ((st = qconv_check(n, in, n_in, &g, err))) return st;
    if ((st = conv_out_shape(n, &g, KILN_DTYPE_FLOAT, out[0], err))) return st;
    if (n->sum_input) {   /* Add(conv, R): the broadcast of both shapes */
        int32_t r;
        int64_t d[KILN_MAX_RANK];
        if ((st = kiln_broadcast_shape(n, out[0], in[n->sum_input], &r, d, err))) return st;
        kiln_value_set_shape(out[0], KILN_DTYPE_FLOAT, r, d);
    }
    return KILN_OK;
}

/* out = y (conv-shaped) + r, both broadcast to out's shape (numpy rules). */
static void add_bcast(struct kiln_value *out, const float *y, int32_t yrank, const int64_t *ydims,
                      const struct kiln_value *r) {
    int32_t R = out->rank;
    int64_t ys[KILN_MAX_RANK], rs[KILN_MAX_RANK], full[KILN_MAX_RANK];
    kiln_strides(yrank, ydims, full);
    for (int32_t d = 0; d < R; d++) {
        int32_t iy = d - (R - yrank);
        ys[d] = iy >= 0 && ydims[iy] != 1 ? full[iy] : 0;
    }
    kiln_strides(r->rank, r->dims, full);
    for (int32_t d = 0; d < R; d++) {
        int32_t ir = d - (R - r->rank);
        rs[d] = ir >= 0 && r->dims[ir] != 1 ? full[ir] : 0;
    }
    int64_t cnt = kiln_value_numel(out);
    const float *rv = r->data;
    float *o = out->data;
    for (int64_t i = 0; i < cnt; i++) {
        int64_t rem = i, yo = 0, ro = 0;
        for (int32_t d = R - 1; d >= 0; d--) {
            int64_t idx = rem % out->dims[d];
            rem /= out->dims[d];
            yo += idx * ys[d];
            ro += idx * rs[d];
        }
        o[i] = y[yo] + rv[ro];
    }
}

/* x quantized to u8 the way QuantizeLinear does it */
static void quantize_u8(const float *x, int64_t cnt, float scale, int32_t zp, int32_t qmax,
                        uint8_t *q) {
#pragma omp parallel for schedule(static) if (cnt > 65536)
    for (int64_t i = 0; i < cnt; i++) {
        float v = rintf(x[i] / scale) + (float)zp;
        q[i] = !(v >= 0.0f) ? 0 : v > (float)qmax ? (uint8_t)qmax : (uint8_t)v;
    }
}

static kiln_status qconv_exec(const struct kiln_node *n, struct kiln_exec_ctx *ctx,
                              const struct kiln_value *const *in, int n_in,
                              struct kiln_value *const *out, int n_out, kiln_error *err) {
    struct conv_geom g;
    kiln_status st = qconv_check(n, in, n_in, &g, err);
    if (st) return st;
    if (kiln_value_numel(out[0]) == 0) return KILN_OK;
    int64_t cnt = g.N * g.OC * g.out_sz, xn = kiln_value_numel(in[0]);
    float xs = kiln_attr_float(n, "x_scale", 1.0f);
    uint8_t zp = (uint8_t)kiln_attr_int(n, "x_zero_point", 0);
    const struct kiln_value *R = n->sum_input ? in[n->sum_input] : NULL;
    float *ysep = R ? malloc((size_t)(cnt > 0 ? cnt : 1) * sizeof *ysep) : NULL;
    if (R && !ysep) return kiln_op_fail(err, KILN_ERR_NO_MEMORY, n, "out of memory for conv scratch");
    struct kiln_value xq = *in[0], xzp = {.dtype = KILN_DTYPE_UINT8, .data = &zp, .nbytes = 1};
    xq.dtype = KILN_DTYPE_UINT8;
    xq.data = malloc((size_t)(xn > 0 ? xn : 1));
    int32_t *acc = malloc((size_t)cnt * sizeof *acc);
    if (!xq.data || !acc) {
        free(xq.data);
        free(acc);
        free(ysep);
        return kiln_op_fail(err, KILN_ERR_NO_MEMORY, n, "out of memory for conv scratch");
    }
    quantize_u8(in[0]->data, xn, xs, zp, (int32_t)kiln_attr_int(n, "x_qmax", 255), xq.data);
    st = conv_int_acc(n, &g, &xq, in[1], &xzp, NULL, acc, err);
    if (!st) {
        const float *ws = in[2]->data, *b = n_in > 3 && in[3] ? in[3]->data : NULL;
        bool per = kiln_value_numel(in[2]) > 1;
        float *y = R ? ysep : out[0]->data;
        for (int64_t t = 0; t < g.N * g.OC; t++) {
            int64_t oc = t % g.OC;
            float mult = xs * ws[per ? oc : 0], bv = b ? b[oc] : 0.0f;
            for (int64_t p = 0; p < g.out_sz; p++)
                y[t * g.out_sz + p] = (float)acc[t * g.out_sz + p] * mult + bv;
        }
        if (R) {
            int64_t yd[KILN_MAX_RANK] = {g.N, g.OC};
            for (int32_t i = 0; i < g.sp; i++) yd[2 + i] = g.out[i];
            add_bcast(out[0], ysep, g.sp + 2, yd, R);
        }
    }
    free(xq.data);
    free(acc);
    free(ysep);
    return st;
}

static kiln_status qconv_prepare(const struct kiln_node *n, struct kiln_exec_ctx *ctx,
                                 const struct kiln_value *const *in, int n_in,
                                 struct kiln_value *const *out, int n_out, struct kiln_kernel *k,
                                 kiln_error *err) {
    struct conv_geom g;
    kiln_status st = qconv_check(n, in, n_in, &g, err);
    if (st) return st;
    const struct kiln_value *bias = n_in > 3 ? in[3] : NULL;
    if (n->sum_input) {
        /* oneDNN sums into dst as is: R must be dst's exact shape and layout */
        const struct kiln_value *R = in[n->sum_input];
        if (R->layout != out[0]->layout || R->rank != out[0]->rank ||
            out[0]->rank != g.sp + 2 || out[0]->dims[0] != g.N || out[0]->dims[1] != g.OC)
            return KILN_OK;
        for (int32_t i = 0; i < R->rank; i++)
            if (R->dims[i] != out[0]->dims[i]) return KILN_OK;
        for (int32_t i = 0; i < g.sp; i++)
            if (out[0]->dims[2 + i] != g.out[i]) return KILN_OK;
    }
    /* oneDNN's quantizing reorder saturates at 255 only */
    if (!in[1]->data || !in[2]->data || (bias && !bias->data) || kiln_value_numel(out[0]) == 0 ||
        kiln_attr_int(n, "x_qmax", 255) != 255)
        return KILN_OK;
    struct kiln_dnnl_qconv_shape sh = {.kind = KILN_LOWP_INT8};
    if (!conv_geom_dnnl(&g, &sh)) return KILN_OK;
    const float *ws = in[2]->data;
    int64_t nws = kiln_value_numel(in[2]);
    float xs = kiln_attr_float(n, "x_scale", 1.0f);
    float *b = bias ? malloc((size_t)g.OC * sizeof *b) : NULL;
    if (bias && !b) return kiln_op_fail(err, KILN_ERR_NO_MEMORY, n, "out of memory");
    /* oneDNN adds the bias to the integer sum: express it in those units */
    for (int64_t i = 0; b && i < g.OC; i++)
        b[i] = ((const float *)bias->data)[i] / (xs * ws[nws > 1 ? i : 0]);
    sh.src_dt = KILN_DTYPE_FLOAT;
    sh.q_dt = KILN_DTYPE_UINT8;
    sh.x_scale = xs;
    sh.x_zp = (int32_t)kiln_attr_int(n, "x_zero_point", 0);
    sh.dst_dt = KILN_DTYPE_FLOAT;
    sh.w_scales = ws;
    sh.n_w_scales = nws;
    sh.has_bias = b != NULL;
    sh.act = n->act.kind;
    sh.act_alpha = n->act.alpha;
    sh.act_beta = n->act.beta;
    sh.sum = n->sum_input != 0;
    sh.src_cl = in[0]->layout;
    sh.dst_cl = out[0]->layout;
    struct kiln_dnnl_qconv *q = NULL;
    st = kiln_dnnl_qconv_create(&sh, in[1]->data, b, ctx ? ctx->wcache : NULL, &q, err);
    free(b);
    if (st) return kiln_op_fail(err, st, n, "%s", err ? err->msg : "oneDNN failed");
    if (q) set_kernel(k, q, n->act.kind != KILN_ACT_NONE);
    return KILN_OK;
}

/* ---- kiln.Bf16Conv(X float, W bf16, B float?) ----------------------------
 * Written by the bf16 compiler: a Conv with bf16 weights, computed in bf16
 * with f32 accumulation by oneDNN where the CPU has bf16 instructions; the
 * reference kernel computes in f32 from the bf16 weights. */

static kiln_status bconv_check(const struct kiln_node *n, const struct kiln_value *const *in,
                               int n_in, struct conv_geom *g, kiln_error *err) {
    kiln_status st = arity(n, in, n_in, 2, 3, err);
    if (st) return st;
    if (in[0]->dtype != KILN_DTYPE_FLOAT || in[1]->dtype != KILN_DTYPE_BFLOAT16 ||
        (n_in > 2 && in[2] && in[2]->dtype != KILN_DTYPE_FLOAT))
        return kiln_op_fail(err, KILN_ERR_SHAPE, n, "expected float X, bfloat16 W and float B");
    if ((st = conv_geom_init(n, in[0], in[1], g, err))) return st;
    if (n_in > 2 && in[2] && kiln_value_numel(in[2]) != g->OC)
        return kiln_op_fail(err, KILN_ERR_SHAPE, n, "B must have %lld values", (long long)g->OC);
    return KILN_OK;
}

static kiln_status bconv_infer(const struct kiln_node *n, const struct kiln_value *const *in,
                               int n_in, struct kiln_value *const *out, int n_out,
                               kiln_error *err) {
    kiln_status st = need_out0(n, out, n_out, err);
    if (st) return st;
    struct conv_geom g;
    if ((st = bconv_check(n, in, n_in, &g, err))) return st;
    return conv_out_shape(n, &g, KILN_DTYPE_FLOAT, out[0], err);
}

static kiln_status bconv_exec(const struct kiln_node *n, struct kiln_exec_ctx *ctx,
                              const struct kiln_value *const *in, int n_in,
                              struct kiln_value *const *out, int n_out, kiln_error *err) {
    struct conv_geom g;
    kiln_status st = bconv_check(n, in, n_in, &g, err);
    if (st) return st;
    if (kiln_value_numel(out[0]) == 0) return KILN_OK;
    const float *x = in[0]->data, *b = n_in > 2 && in[2] ? in[2]->data : NULL;
    const uint16_t *w = in[1]->data;
    float *y = out[0]->data;
    int64_t cg = g.C / g.G, ocg = g.OC / g.G, total = g.N * g.OC;
#pragma omp parallel for schedule(static) if (total > 1)
    for (int64_t t = 0; t < total; t++) {
        int64_t bt = t / g.OC, oc = t % g.OC, grp = oc / ocg;
        for (int64_t op = 0; op < g.out_sz; op++) {
            int64_t oidx[KILN_MAX_RANK], r = op;
            for (int32_t d = g.sp - 1; d >= 0; d--) {
                oidx[d] = r % g.out[d];
                r /= g.out[d];
            }
            float sum = b ? b[oc] : 0.0f;
            for (int64_t kp = 0; kp < g.k_sz; kp++) {
                int64_t kr = kp, ipos = 0, mul = 1, kidx[KILN_MAX_RANK];
                bool inside = true;
                for (int32_t d = g.sp - 1; d >= 0; d--) {
                    kidx[d] = kr % g.k[d];
                    kr /= g.k[d];
                }
                for (int32_t d = g.sp - 1; d >= 0 && inside; d--) {
                    int64_t c = oidx[d] * g.stride[d] - g.pad[d] + kidx[d] * g.dil[d];
                    inside = c >= 0 && c < g.in[d];
                    ipos += c * mul;
                    mul *= g.in[d];
                }
                if (!inside) continue;
                for (int64_t ic = 0; ic < cg; ic++)
                    sum += x[(bt * g.C + grp * cg + ic) * g.in_sz + ipos] *
                           kiln_bf16_to_f32(w[(oc * cg + ic) * g.k_sz + kp]);
            }
            y[t * g.out_sz + op] = sum;
        }
    }
    return KILN_OK;
}

static kiln_status bconv_prepare(const struct kiln_node *n, struct kiln_exec_ctx *ctx,
                                 const struct kiln_value *const *in, int n_in,
                                 struct kiln_value *const *out, int n_out, struct kiln_kernel *k,
                                 kiln_error *err) {
    struct conv_geom g;
    kiln_status st = bconv_check(n, in, n_in, &g, err);
    if (st) return st;
    const struct kiln_value *bias = n_in > 2 ? in[2] : NULL;
    if (!in[1]->data || (bias && !bias->data) || kiln_value_numel(out[0]) == 0) return KILN_OK;
    struct kiln_dnnl_qconv_shape sh = {.kind = KILN_LOWP_BF16};
    if (!conv_geom_dnnl(&g, &sh)) return KILN_OK;
    sh.has_bias = bias != NULL;
    sh.act = n->act.kind;
    sh.act_alpha = n->act.alpha;
    sh.act_beta = n->act.beta;
    sh.src_cl = in[0]->layout;
    sh.dst_cl = out[0]->layout;
    struct kiln_dnnl_qconv *q = NULL;
    st = kiln_dnnl_qconv_create(&sh, in[1]->data, bias ? bias->data : NULL,
                                ctx ? ctx->wcache : NULL, &q, err);
    if (st) return kiln_op_fail(err, st, n, "%s", err ? err->msg : "oneDNN failed");
    if (q) set_kernel(k, q, n->act.kind != KILN_ACT_NONE);
    return KILN_OK;
}

/* ---- kiln.QMatMul(X float [..., K], W int8 [K, N], w_scale, B float [N]?) and
 * kiln.Bf16MatMul(X float [..., K], W bf16 [K, N], B float [N]?) -----------
 * Gemm/MatMul with constant weights, as the compilers write them:
 * Y = act(X @ W + B), W int8 with per-column scales (X quantized to u8 with
 * the calibrated x_scale / x_zero_point) or bf16. */

static bool lmm_is_q(const struct kiln_node *n) { return n->op_type[0] == 'Q'; }

static kiln_status lmm_check(const struct kiln_node *n, const struct kiln_value *const *in,
                             int n_in, int64_t *M, int64_t *K, int64_t *N, kiln_error *err) {
    bool q = lmm_is_q(n);
    kiln_status st = arity(n, in, n_in, q ? 3 : 2, q ? 4 : 3, err);
    if (st) return st;
    const struct kiln_value *x = in[0], *w = in[1], *b = n_in > (q ? 3 : 2) ? in[q ? 3 : 2] : NULL;
    if (x->dtype != KILN_DTYPE_FLOAT || w->dtype != (q ? KILN_DTYPE_INT8 : KILN_DTYPE_BFLOAT16) ||
        (q && in[2]->dtype != KILN_DTYPE_FLOAT) || (b && b->dtype != KILN_DTYPE_FLOAT))
        return kiln_op_fail(err, KILN_ERR_SHAPE, n, "expected float X, %s W and float B",
                            q ? "int8" : "bfloat16");
    if (x->rank < 1 || w->rank != 2 || x->dims[x->rank - 1] != w->dims[0])
        return kiln_op_fail(err, KILN_ERR_SHAPE, n, "expected X [..., K] and W [K, N]");
    *K = w->dims[0];
    *N = w->dims[1];
    *M = *K ? kiln_value_numel(x) / *K : 0;
    if (q && kiln_value_numel(in[2]) != 1 && kiln_value_numel(in[2]) != *N)
        return kiln_op_fail(err, KILN_ERR_SHAPE, n, "w_scale must have 1 or %lld values",
                            (long long)*N);
    if (b && kiln_value_numel(b) != *N)
        return kiln_op_fail(err, KILN_ERR_SHAPE, n, "B must have %lld values", (long long)*N);
    if (q) {
        float xs = kiln_attr_float(n, "x_scale", 0.0f);
        int64_t zp = kiln_attr_int(n, "x_zero_point", 0);
        int64_t qmax = kiln_attr_int(n, "x_qmax", 255);
        if (!(xs > 0.0f) || !isfinite(xs) || qmax < 1 || qmax > 255 || zp < 0 || zp > qmax)
            return kiln_op_fail(err, KILN_ERR_BAD_MODEL, n,
                                "x_scale must be positive and 0 <= x_zero_point <= x_qmax <= 255");
    }
    return KILN_OK;
}

static kiln_status lmm_infer(const struct kiln_node *n, const struct kiln_value *const *in,
                             int n_in, struct kiln_value *const *out, int n_out, kiln_error *err) {
    kiln_status st = need_out0(n, out, n_out, err);
    if (st) return st;
    int64_t M, K, N;
    if ((st = lmm_check(n, in, n_in, &M, &K, &N, err))) return st;
    int64_t dims[KILN_MAX_RANK];
    for (int32_t i = 0; i < in[0]->rank; i++) dims[i] = in[0]->dims[i];
    dims[in[0]->rank - 1] = N;
    kiln_value_set_shape(out[0], KILN_DTYPE_FLOAT, in[0]->rank, dims);
    return KILN_OK;
}

static kiln_status lmm_exec(const struct kiln_node *n, struct kiln_exec_ctx *ctx,
                            const struct kiln_value *const *in, int n_in,
                            struct kiln_value *const *out, int n_out, kiln_error *err) {
    int64_t M, K, N;
    kiln_status st = lmm_check(n, in, n_in, &M, &K, &N, err);
    if (st) return st;
    bool q = lmm_is_q(n);
    const struct kiln_value *bv = n_in > (q ? 3 : 2) ? in[q ? 3 : 2] : NULL;
    const float *x = in[0]->data, *b = bv ? bv->data : NULL;
    float *y = out[0]->data;
    float xs = kiln_attr_float(n, "x_scale", 1.0f);
    int32_t zp = (int32_t)kiln_attr_int(n, "x_zero_point", 0);
    float qmax = (float)kiln_attr_int(n, "x_qmax", 255);
    const float *ws = q ? in[2]->data : NULL;
    bool per = q && kiln_value_numel(in[2]) > 1;
#pragma omp parallel for schedule(static) if (M * N * K > 32768)
    for (int64_t i = 0; i < M; i++) {
        for (int64_t j = 0; j < N; j++) {
            float acc = 0.0f;
            int32_t iacc = 0;
            for (int64_t kk = 0; kk < K; kk++) {
                if (q) {
                    float v = rintf(x[i * K + kk] / xs) + (float)zp;
                    int32_t xq = !(v >= 0.0f) ? 0 : v > qmax ? (int32_t)qmax : (int32_t)v;
                    iacc += (xq - zp) * ((const int8_t *)in[1]->data)[kk * N + j];
                } else {
                    acc += x[i * K + kk] * kiln_bf16_to_f32(((const uint16_t *)in[1]->data)[kk * N + j]);
                }
            }
            if (q) acc = (float)iacc * (xs * ws[per ? j : 0]);
            y[i * N + j] = acc + (b ? b[j] : 0.0f);
        }
    }
    return KILN_OK;
}

static kiln_status lmm_fast_run(const struct kiln_node *n, struct kiln_exec_ctx *ctx, void *state,
                                const struct kiln_value *const *in, int n_in,
                                struct kiln_value *const *out, int n_out, kiln_error *err) {
    if (kiln_value_numel(out[0]) == 0) return KILN_OK;
    kiln_status st = kiln_dnnl_qmatmul_run(state, in[0]->data, out[0]->data, err);
    if (st) return kiln_op_fail(err, st, n, "%s", err ? err->msg : "oneDNN failed");
    return KILN_OK;
}

static kiln_status lmm_prepare(const struct kiln_node *n, struct kiln_exec_ctx *ctx,
                               const struct kiln_value *const *in, int n_in,
                               struct kiln_value *const *out, int n_out, struct kiln_kernel *k,
                               kiln_error *err) {
    int64_t M, K, N;
    kiln_status st = lmm_check(n, in, n_in, &M, &K, &N, err);
    if (st) return st;
    bool q = lmm_is_q(n);
    const struct kiln_value *bv = n_in > (q ? 3 : 2) ? in[q ? 3 : 2] : NULL;
    if (!in[1]->data || (q && !in[2]->data) || (bv && !bv->data) || M == 0 || in[0]->layout ||
        kiln_attr_int(n, "x_qmax", 255) != 255)
        return KILN_OK;
    struct kiln_dnnl_qmatmul_shape sh = {.kind = q ? KILN_LOWP_INT8 : KILN_LOWP_BF16,
                                         .M = M, .K = K, .N = N, .has_bias = bv != NULL,
                                         .act = n->act.kind, .act_alpha = n->act.alpha,
                                         .act_beta = n->act.beta};
    float *b = NULL;
    if (q) {
        sh.x_scale = kiln_attr_float(n, "x_scale", 1.0f);
        sh.x_zp = (int32_t)kiln_attr_int(n, "x_zero_point", 0);
        sh.w_scales = in[2]->data;
        sh.n_w_scales = kiln_value_numel(in[2]);
        if (bv) {
            if (!(b = malloc((size_t)N * sizeof *b)))
                return kiln_op_fail(err, KILN_ERR_NO_MEMORY, n, "out of memory");
            for (int64_t j = 0; j < N; j++)
                b[j] = ((const float *)bv->data)[j] /
                       (sh.x_scale * sh.w_scales[sh.n_w_scales > 1 ? j : 0]);
        }
    }
    struct kiln_dnnl_qmatmul *mm = NULL;
    st = kiln_dnnl_qmatmul_create(&sh, in[1]->data, q ? b : bv ? bv->data : NULL,
                                  ctx ? ctx->wcache : NULL, &mm, err);
    free(b);
    if (st) return kiln_op_fail(err, st, n, "%s", err ? err->msg : "oneDNN failed");
    if (!mm) return KILN_OK;
    k->run = lmm_fast_run;
    k->state = mm;
    k->release = kiln_dnnl_qmatmul_free;
    k->impl = kiln_dnnl_qmatmul_impl(mm);
    k->fused_activation = n->act.kind != KILN_ACT_NONE;
    return KILN_OK;
}

static double lmm_flops(const struct kiln_node *n, const struct kiln_value *const *in, int n_in,
                        struct kiln_value *const *out, int n_out) {
    if (n_in < 2 || in[1]->rank != 2) return 0;
    return 2.0 * (double)kiln_value_numel(out[0]) * (double)in[1]->dims[0];
}

static double conv_int_flops(const struct kiln_node *n, const struct kiln_value *const *in,
                             int n_in, struct kiln_value *const *out, int n_out) {
    const struct kiln_value *w = strcmp(n->op_type, "QLinearConv") == 0 ? in[3] : in[1];
    if (!w || w->rank < 3) return 0;
    double per = 1;
    for (int32_t i = 1; i < w->rank; i++) per *= (double)w->dims[i];
    return 2.0 * per * (double)kiln_value_numel(out[0]);
}

static double qmm_flops(const struct kiln_node *n, const struct kiln_value *const *in, int n_in,
                        struct kiln_value *const *out, int n_out) {
    if (n_in < 1 || in[0]->rank < 1) return 0;
    return 2.0 * (double)kiln_value_numel(out[0]) * (double)in[0]->dims[in[0]->rank - 1];
}

const struct kiln_op_def kiln_ops_quant[] = {
    {"QuantizeLinear", NULL, 10, 0, quantize_infer, quantize_exec, NULL, NULL},
    {"DequantizeLinear", NULL, 10, 0, dequantize_infer, dequantize_exec, NULL, NULL},
    {"DynamicQuantizeLinear", NULL, 11, 0, dynq_infer, dynq_exec, NULL, NULL},
    {"QLinearMatMul", NULL, 10, 0, qlinearmatmul_infer, qlinearmatmul_exec, NULL, qmm_flops},
    {"ConvInteger", NULL, 10, 0, convinteger_infer, convinteger_exec, NULL, conv_int_flops},
    {"QLinearConv", NULL, 10, 0, qlinearconv_infer, qlinearconv_exec, qlinearconv_prepare,
     conv_int_flops},
    /* written by kiln's compiler (--precision int8 / bf16), not by ONNX exporters */
    {"QConv", "kiln", 1, 0, qconv_infer, qconv_exec, qconv_prepare, conv_int_flops},
    {"QMatMul", "kiln", 1, 0, lmm_infer, lmm_exec, lmm_prepare, lmm_flops},
    {"Bf16Conv", "kiln", 1, 0, bconv_infer, bconv_exec, bconv_prepare, conv_int_flops},
    {"Bf16MatMul", "kiln", 1, 0, lmm_infer, lmm_exec, lmm_prepare, lmm_flops},
    {0},
};
