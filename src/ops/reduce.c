/* reduce.c — reductions (Reduce*), ArgMax/ArgMin, the softmax class
 * (Softmax, LogSoftmax, Hardmax) and TopK.
 *
 * Most kernels see the input as [O, R, I]: O outer rows, R the reduced (or
 * normalized) extent, I the inner extent left untouched. float32 gets direct
 * loops; other dtypes are widened to double or int64 so that one loop serves
 * them all. */
#include "ops/op.h"
#include "backend/dnnl_norm.h"

#include <math.h>
#include <stdlib.h>
#include <string.h>

#define PAR_MIN (1 << 15)   /* element count above which loops use OpenMP */
#define BLK 64              /* inner-column block kept on the stack */

static kiln_status no_memory(kiln_error *err, const struct kiln_node *n) {
    return kiln_op_fail(err, KILN_ERR_NO_MEMORY, n, "out of memory for a temporary buffer");
}

static int64_t prod_dims(const int64_t *dims, int32_t from, int32_t to) {
    int64_t p = 1;
    for (int32_t i = from; i < to; i++) p *= dims[i];
    return p;
}

/* Stores an int64 into element i of an integer/bool tensor with wraparound. */
static void store_i64(struct kiln_value *v, int64_t i, int64_t x) {
    switch (v->dtype) {
    case KILN_DTYPE_INT64: ((int64_t *)v->data)[i] = x; break;
    case KILN_DTYPE_UINT64: ((uint64_t *)v->data)[i] = (uint64_t)x; break;
    case KILN_DTYPE_INT32: ((int32_t *)v->data)[i] = (int32_t)x; break;
    case KILN_DTYPE_UINT32: ((uint32_t *)v->data)[i] = (uint32_t)x; break;
    case KILN_DTYPE_INT16: ((int16_t *)v->data)[i] = (int16_t)x; break;
    case KILN_DTYPE_UINT16: ((uint16_t *)v->data)[i] = (uint16_t)x; break;
    case KILN_DTYPE_INT8: ((int8_t *)v->data)[i] = (int8_t)x; break;
    case KILN_DTYPE_UINT8: ((uint8_t *)v->data)[i] = (uint8_t)x; break;
    case KILN_DTYPE_BOOL: ((uint8_t *)v->data)[i] = x != 0; break;
    default: kiln_value_set_f64(v, i, (double)x); break;
    }
}

static bool is_numeric(kiln_dtype t) { return kiln_dtype_is_float(t) || kiln_dtype_is_int(t); }

/* ======================================================================
 * Reduce*
 * ====================================================================== */

enum red_kind { R_SUM, R_MEAN, R_MAX, R_MIN, R_PROD, R_L1, R_L2, R_LOGSUM, R_LSE, R_SUMSQ };

static const struct {
    const char *name;
    enum red_kind kind;
    int axes_input_since;   /* opset from which `axes` is an input, not an attribute */
} red_ops[] = {
    {"ReduceSum", R_SUM, 13},     {"ReduceMean", R_MEAN, 18},  {"ReduceMax", R_MAX, 18},
    {"ReduceMin", R_MIN, 18},     {"ReduceProd", R_PROD, 18},  {"ReduceL1", R_L1, 18},
    {"ReduceL2", R_L2, 18},       {"ReduceLogSum", R_LOGSUM, 18},
    {"ReduceLogSumExp", R_LSE, 18}, {"ReduceSumSquare", R_SUMSQ, 18},
};

static int red_lookup(const char *op_type) {
    for (size_t i = 0; i < sizeof red_ops / sizeof red_ops[0]; i++)
        if (strcmp(red_ops[i].name, op_type) == 0) return (int)i;
    return 0;
}

/* Which axes a Reduce node reduces. *noop is set when the node is an identity
 * (empty axes with noop_with_empty_axes=1). */
static kiln_status red_axes(const struct kiln_node *n, const struct kiln_value *const *in,
                            int n_in, bool *mask, bool *noop, kiln_error *err) {
    int32_t rank = in[0]->rank;
    int ri = red_lookup(n->op_type);
    int64_t count = 0;
    const int64_t *attr_axes = NULL;
    const struct kiln_value *axes_in = NULL;
    if (n->opset >= red_ops[ri].axes_input_since) {
        if (n_in >= 2 && in[1]) {
            axes_in = in[1];
            if (!kiln_dtype_is_int(axes_in->dtype) || axes_in->rank > 1)
                return kiln_op_fail(err, KILN_ERR_BAD_MODEL, n,
                                    "expected axes as a 1-D int64 tensor, got %s of rank %d",
                                    kiln_dtype_name(axes_in->dtype), axes_in->rank);
            count = kiln_value_numel(axes_in);
            if (count > 0 && !axes_in->data) return KILN_DYNAMIC;
        }
    } else {
        attr_axes = kiln_attr_ints(n, "axes", &count);
    }
    *noop = false;
    for (int32_t d = 0; d < rank; d++) mask[d] = count == 0;
    if (count == 0) {
        *noop = kiln_attr_int(n, "noop_with_empty_axes", 0) != 0;
        if (*noop)
            for (int32_t d = 0; d < rank; d++) mask[d] = false;
        return KILN_OK;
    }
    if (count > rank)
        return kiln_op_fail(err, KILN_ERR_BAD_MODEL, n, "expected at most %d axes, got %lld",
                            rank, (long long)count);
    for (int64_t i = 0; i < count; i++) {
        int64_t a = attr_axes ? attr_axes[i] : kiln_value_get_int(axes_in, i);
        int32_t ax;
        kiln_status st = kiln_norm_axis(n, a, rank, &ax, err);
        if (st) return st;
        if (mask[ax])
            return kiln_op_fail(err, KILN_ERR_BAD_MODEL, n, "axis %lld repeated in axes",
                                (long long)a);
        mask[ax] = true;
    }
    return KILN_OK;
}

static kiln_status reduce_infer(const struct kiln_node *n, const struct kiln_value *const *in,
                                int n_in, struct kiln_value *const *out, int n_out,
                                kiln_error *err) {
    kiln_status st = kiln_op_check_arity(n, n_in, 1, 2, err);
    if (st) return st;
    enum red_kind k = red_ops[red_lookup(n->op_type)].kind;
    kiln_dtype dt = in[0]->dtype;
    bool ok = is_numeric(dt) || (dt == KILN_DTYPE_BOOL && (k == R_MAX || k == R_MIN));
    if (!ok)
        return kiln_op_fail(err, KILN_ERR_UNSUPPORTED, n, "input dtype %s is not supported",
                            kiln_dtype_name(dt));
    bool mask[KILN_MAX_RANK], noop;
    st = red_axes(n, in, n_in, mask, &noop, err);
    if (st) return st;
    bool keep = kiln_attr_int(n, "keepdims", 1) != 0;
    int64_t dims[KILN_MAX_RANK];
    int32_t r = 0;
    for (int32_t d = 0; d < in[0]->rank; d++) {
        if (!mask[d]) dims[r++] = in[0]->dims[d];
        else if (keep) dims[r++] = 1;
    }
    kiln_value_set_shape(out[0], dt, r, dims);
    return KILN_OK;
}

static inline __attribute__((always_inline)) double red_init(int k) {
    switch (k) {
    case R_MAX: return -INFINITY;
    case R_MIN: return INFINITY;
    case R_PROD: return 1.0;
    default: return 0.0;
    }
}

static inline __attribute__((always_inline)) double red_map(int k, double v, double shift) {
    switch (k) {
    case R_SUMSQ: case R_L2: return v * v;
    case R_L1: return fabs(v);
    case R_LSE: return exp(v - shift);
    default: return v;
    }
}

static inline __attribute__((always_inline)) double red_comb(int k, double a, double b) {
    switch (k) {
    case R_MAX: return (b > a || b != b) ? b : a;   /* NaN propagates like numpy */
    case R_MIN: return (b < a || b != b) ? b : a;
    case R_PROD: return a * b;
    default: return a + b;
    }
}

static inline __attribute__((always_inline)) double red_fin(int k, double a, int64_t R,
                                                            double shift) {
    switch (k) {
    case R_MEAN: return a / (double)R;
    case R_L2: return sqrt(a);
    case R_LOGSUM: return log(a);
    case R_LSE: return log(a) + shift;
    default: return a;
    }
}

/* Row helpers with 8 independent lanes: the fixed-width inner loops vectorize
 * at -O2 and the summation order stays fixed (deterministic). */
#define LANES 8

static double row_sum_f32(const float *p, int64_t n) {
    double acc[LANES] = {0}, s = 0;
    int64_t r = 0;
    for (; r + LANES <= n; r += LANES)
        for (int j = 0; j < LANES; j++) acc[j] += p[r + j];
    for (; r < n; r++) s += p[r];
    for (int j = 0; j < LANES; j++) s += acc[j];
    return s;
}

static double row_sumsq_f32(const float *p, int64_t n) {
    double acc[LANES] = {0}, s = 0;
    int64_t r = 0;
    for (; r + LANES <= n; r += LANES)
        for (int j = 0; j < LANES; j++) acc[j] += (double)p[r + j] * p[r + j];
    for (; r < n; r++) s += (double)p[r] * p[r];
    for (int j = 0; j < LANES; j++) s += acc[j];
    return s;
}

static float row_max_f32(const float *p, int64_t n) {
    float acc[LANES], m = -INFINITY;
    for (int j = 0; j < LANES; j++) acc[j] = -INFINITY;
    int64_t r = 0;
    for (; r + LANES <= n; r += LANES)
        for (int j = 0; j < LANES; j++) acc[j] = p[r + j] > acc[j] ? p[r + j] : acc[j];
    for (; r < n; r++) m = p[r] > m ? p[r] : m;
    for (int j = 0; j < LANES; j++) m = acc[j] > m ? acc[j] : m;
    return m;
}

/* float32 [O, R, I] reduction, double accumulators. Not used for LogSumExp. */
static inline __attribute__((always_inline)) void red_f32_kern(int k, const float *x, float *y,
                                                               int64_t O, int64_t R,
                                                               int64_t I) {
    if (I == 1) {
#pragma omp parallel for if (O * R > PAR_MIN) schedule(static)
        for (int64_t o = 0; o < O; o++) {
            const float *p = x + o * R;
            double a;
            if (k == R_SUM || k == R_MEAN || k == R_LOGSUM) a = row_sum_f32(p, R);
            else if (k == R_SUMSQ || k == R_L2) a = row_sumsq_f32(p, R);
            else {
                a = red_init(k);
                for (int64_t r = 0; r < R; r++) a = red_comb(k, a, red_map(k, p[r], 0));
            }
            y[o] = (float)red_fin(k, a, R, 0);
        }
        return;
    }
    int64_t nb = (I + BLK - 1) / BLK;
#pragma omp parallel for if (O * R * I > PAR_MIN) schedule(static)
    for (int64_t ob = 0; ob < O * nb; ob++) {
        int64_t o = ob / nb, i0 = (ob % nb) * BLK, m = I - i0 < BLK ? I - i0 : BLK;
        double acc[BLK];
        for (int64_t j = 0; j < m; j++) acc[j] = red_init(k);
        for (int64_t r = 0; r < R; r++) {
            const float *p = x + (o * R + r) * I + i0;
            for (int64_t j = 0; j < m; j++) acc[j] = red_comb(k, acc[j], red_map(k, p[j], 0));
        }
        for (int64_t j = 0; j < m; j++) y[o * I + i0 + j] = (float)red_fin(k, acc[j], R, 0);
    }
}

static void red_f32(int k, const float *x, float *y, int64_t O, int64_t R, int64_t I) {
    switch (k) {
    case R_SUM: red_f32_kern(R_SUM, x, y, O, R, I); break;
    case R_MEAN: red_f32_kern(R_MEAN, x, y, O, R, I); break;
    case R_MAX: red_f32_kern(R_MAX, x, y, O, R, I); break;
    case R_MIN: red_f32_kern(R_MIN, x, y, O, R, I); break;
    case R_PROD: red_f32_kern(R_PROD, x, y, O, R, I); break;
    case R_L1: red_f32_kern(R_L1, x, y, O, R, I); break;
    case R_L2: red_f32_kern(R_L2, x, y, O, R, I); break;
    case R_LOGSUM: red_f32_kern(R_LOGSUM, x, y, O, R, I); break;
    case R_SUMSQ: red_f32_kern(R_SUMSQ, x, y, O, R, I); break;
    default: break;
    }
}

/* Output offset strides for the odometer: 0 along reduced axes. */
static void red_out_strides(int32_t rank, const int64_t *dims, const bool *mask, int64_t *ostr) {
    int64_t s = 1;
    for (int32_t d = rank - 1; d >= 0; d--) {
        ostr[d] = mask[d] ? 0 : s;
        if (!mask[d]) s *= dims[d];
    }
}

/* Advances a row-major multi-index; keeps *off in step with strides st. */
static inline void odo_next(int32_t rank, const int64_t *dims, const int64_t *st, int64_t *idx,
                            int64_t *off) {
    for (int32_t d = rank - 1; d >= 0; d--) {
        *off += st[d];
        if (++idx[d] < dims[d]) return;
        *off -= st[d] * dims[d];
        idx[d] = 0;
    }
}

/* Any-axes reduction in double: acc (out_n entries) receives the results. */
static void red_generic_f64(int k, const struct kiln_value *xv, const bool *mask, double *acc,
                            double *shift, int64_t out_n, int64_t R) {
    int32_t rank = xv->rank;
    int64_t ostr[KILN_MAX_RANK], idx[KILN_MAX_RANK] = {0}, numel = kiln_value_numel(xv);
    red_out_strides(rank, xv->dims, mask, ostr);
    for (int64_t j = 0; j < out_n; j++) shift[j] = 0;
    if (k == R_LSE) {   /* first pass: per-output max, so exp never overflows */
        for (int64_t j = 0; j < out_n; j++) shift[j] = -INFINITY;
        int64_t off = 0;
        for (int64_t i = 0; i < numel; i++) {
            shift[off] = red_comb(R_MAX, shift[off], kiln_value_get_f64(xv, i));
            odo_next(rank, xv->dims, ostr, idx, &off);
        }
        for (int64_t j = 0; j < out_n; j++)
            if (!isfinite(shift[j])) shift[j] = 0;
    }
    for (int64_t j = 0; j < out_n; j++) acc[j] = red_init(k);
    int64_t off = 0;
    for (int32_t d = 0; d < rank; d++) idx[d] = 0;
    for (int64_t i = 0; i < numel; i++) {
        acc[off] = red_comb(k, acc[off], red_map(k, kiln_value_get_f64(xv, i), shift[off]));
        odo_next(rank, xv->dims, ostr, idx, &off);
    }
    for (int64_t j = 0; j < out_n; j++) acc[j] = red_fin(k, acc[j], R, shift[j]);
}

/* Any-axes reduction in int64 with wraparound (uint64 arithmetic avoids
 * signed-overflow UB). Unsigned 64-bit values compare after flipping the sign
 * bit. */
static void red_generic_i64(int k, const struct kiln_value *xv, const bool *mask, int64_t *acc,
                            int64_t out_n, int64_t R) {
    int32_t rank = xv->rank;
    int64_t ostr[KILN_MAX_RANK], idx[KILN_MAX_RANK] = {0}, numel = kiln_value_numel(xv);
    uint64_t flip = xv->dtype == KILN_DTYPE_UINT64 ? (uint64_t)1 << 63 : 0;
    red_out_strides(rank, xv->dims, mask, ostr);
    int64_t init = k == R_PROD ? 1 : 0;
    if (k == R_MAX || k == R_MIN) {   /* empty-set identity: the dtype's min / max */
        int bits = xv->dtype == KILN_DTYPE_BOOL ? 1 : 8 * (int)kiln_dtype_size(xv->dtype);
        bool sgn = kiln_dtype_is_signed(xv->dtype);
        uint64_t hi = sgn ? ((uint64_t)1 << (bits - 1)) - 1
                          : (bits == 64 ? UINT64_MAX : ((uint64_t)1 << bits) - 1);
        init = k == R_MIN ? (int64_t)hi : (sgn ? -(int64_t)hi - 1 : 0);
    }
    for (int64_t j = 0; j < out_n; j++) acc[j] = init;
    int64_t off = 0;
    for (int64_t i = 0; i < numel; i++) {
        uint64_t v = (uint64_t)kiln_value_get_int(xv, i), a = (uint64_t)acc[off];
        switch (k) {
        case R_MAX: v ^= flip; if ((int64_t)v > (int64_t)(a ^ flip)) a = v ^ flip; break;
        case R_MIN: v ^= flip; if ((int64_t)v < (int64_t)(a ^ flip)) a = v ^ flip; break;
        case R_PROD: a *= v; break;
        case R_L1: a += (int64_t)v < 0 ? (uint64_t)0 - v : v; break;
        case R_SUMSQ: a += v * v; break;
        default: a += v; break;
        }
        acc[off] = (int64_t)a;
        odo_next(rank, xv->dims, ostr, idx, &off);
    }
    if (k == R_MEAN)
        for (int64_t j = 0; j < out_n; j++) acc[j] = R > 0 ? acc[j] / R : 0;
}

/* Collapses the reduced axes into one [O, R, I] block when they are
 * contiguous (ignoring size-1 axes). */
static bool red_block(const struct kiln_value *x, const bool *mask, int64_t *O, int64_t *R,
                      int64_t *I) {
    int32_t first = -1, last = -1;
    for (int32_t d = 0; d < x->rank; d++)
        if (mask[d] && x->dims[d] != 1) {
            if (first < 0) first = d;
            last = d;
        }
    if (first < 0) {   /* only size-1 axes reduced: every element is its own result */
        *O = 1; *R = 1; *I = kiln_value_numel(x);
        return true;
    }
    for (int32_t d = first; d <= last; d++)
        if (!mask[d] && x->dims[d] != 1) return false;
    *O = prod_dims(x->dims, 0, first);
    *R = prod_dims(x->dims, first, last + 1);
    *I = prod_dims(x->dims, last + 1, x->rank);
    return true;
}

static kiln_status reduce_exec(const struct kiln_node *n, struct kiln_exec_ctx *ctx,
                               const struct kiln_value *const *in, int n_in,
                               struct kiln_value *const *out, int n_out, kiln_error *err) {
    const struct kiln_value *x = in[0];
    struct kiln_value *y = out[0];
    int k = red_ops[red_lookup(n->op_type)].kind;
    bool mask[KILN_MAX_RANK], noop;
    kiln_status st = red_axes(n, in, n_in, mask, &noop, err);
    if (st) return st == KILN_DYNAMIC ? kiln_op_fail(err, KILN_ERR_INTERNAL, n, "axes unknown at run time") : st;
    int64_t out_n = kiln_value_numel(y);
    if (out_n == 0) return KILN_OK;
    if (noop) {
        memcpy(y->data, x->data, (size_t)out_n * kiln_dtype_size(x->dtype));
        return KILN_OK;
    }
    int64_t R = 1;
    for (int32_t d = 0; d < x->rank; d++)
        if (mask[d]) R *= x->dims[d];
    int64_t O, RR, I;
    if (x->dtype == KILN_DTYPE_FLOAT && k != R_LSE && red_block(x, mask, &O, &RR, &I)) {
        red_f32(k, x->data, y->data, O, RR, I);
        return KILN_OK;
    }
    bool int_domain = !kiln_dtype_is_float(x->dtype) && k != R_L2 && k != R_LOGSUM && k != R_LSE;
    if (int_domain) {
        int64_t *acc = malloc((size_t)out_n * sizeof *acc);
        if (!acc) return no_memory(err, n);
        red_generic_i64(k, x, mask, acc, out_n, R);
        for (int64_t j = 0; j < out_n; j++) store_i64(y, j, acc[j]);
        free(acc);
    } else {
        double *acc = malloc((size_t)out_n * 2 * sizeof *acc);
        if (!acc) return no_memory(err, n);
        red_generic_f64(k, x, mask, acc, acc + out_n, out_n, R);
        for (int64_t j = 0; j < out_n; j++) kiln_value_set_f64(y, j, acc[j]);
        free(acc);
    }
    return KILN_OK;
}

/* ======================================================================
 * ArgMax / ArgMin
 * ====================================================================== */

static kiln_status arg_infer(const struct kiln_node *n, const struct kiln_value *const *in,
                             int n_in, struct kiln_value *const *out, int n_out,
                             kiln_error *err) {
    kiln_status st = kiln_op_check_arity(n, n_in, 1, 1, err);
    if (st) return st;
    if (!is_numeric(in[0]->dtype))
        return kiln_op_fail(err, KILN_ERR_UNSUPPORTED, n, "input dtype %s is not supported",
                            kiln_dtype_name(in[0]->dtype));
    int32_t rank = in[0]->rank, ax;
    st = kiln_norm_axis(n, kiln_attr_int(n, "axis", 0), rank > 0 ? rank : 1, &ax, err);
    if (st) return st;
    if (rank > 0 && in[0]->dims[ax] == 0)
        return kiln_op_fail(err, KILN_ERR_SHAPE, n, "cannot take the arg of an empty axis %d",
                            ax);
    bool keep = kiln_attr_int(n, "keepdims", 1) != 0;
    int64_t dims[KILN_MAX_RANK];
    int32_t r = 0;
    for (int32_t d = 0; d < rank; d++) {
        if (d != ax) dims[r++] = in[0]->dims[d];
        else if (keep) dims[r++] = 1;
    }
    kiln_value_set_shape(out[0], KILN_DTYPE_INT64, r, dims);
    return KILN_OK;
}

/* One loop per key type; `last` picks the last index among equal extremes. */
#define DEF_ARG(NAME, T)                                                                     \
    static void NAME(const T *x, int64_t *y, int64_t O, int64_t R, int64_t I, bool is_max,   \
                     bool last) {                                                            \
        for (int64_t o = 0; o < O; o++)                                                      \
            for (int64_t i = 0; i < I; i++) {                                                \
                const T *p = x + o * R * I + i;                                              \
                T best = p[0];                                                               \
                int64_t bi = 0;                                                              \
                for (int64_t r = 1; r < R; r++) {                                            \
                    T v = p[r * I];                                                          \
                    bool better = is_max ? (last ? v >= best : v > best)                     \
                                         : (last ? v <= best : v < best);                    \
                    if (better) { best = v; bi = r; }                                        \
                }                                                                            \
                y[o * I + i] = bi;                                                           \
            }                                                                                \
    }
DEF_ARG(arg_f32, float)
DEF_ARG(arg_f64, double)
DEF_ARG(arg_i64, int64_t)
DEF_ARG(arg_u64, uint64_t)

static kiln_status arg_exec(const struct kiln_node *n, struct kiln_exec_ctx *ctx,
                            const struct kiln_value *const *in, int n_in,
                            struct kiln_value *const *out, int n_out, kiln_error *err) {
    const struct kiln_value *x = in[0];
    int32_t rank = x->rank, ax = 0;
    kiln_status st = kiln_norm_axis(n, kiln_attr_int(n, "axis", 0), rank > 0 ? rank : 1, &ax, err);
    if (st) return st;
    int64_t O = prod_dims(x->dims, 0, ax), R = rank ? x->dims[ax] : 1,
            I = prod_dims(x->dims, ax + 1, rank);
    if (kiln_value_numel(out[0]) == 0) return KILN_OK;
    bool is_max = strcmp(n->op_type, "ArgMax") == 0;
    bool last = kiln_attr_int(n, "select_last_index", 0) != 0;
    int64_t *y = out[0]->data;
    switch (x->dtype) {
    case KILN_DTYPE_FLOAT: arg_f32(x->data, y, O, R, I, is_max, last); return KILN_OK;
    case KILN_DTYPE_DOUBLE: arg_f64(x->data, y, O, R, I, is_max, last); return KILN_OK;
    case KILN_DTYPE_INT64: arg_i64(x->data, y, O, R, I, is_max, last); return KILN_OK;
    case KILN_DTYPE_UINT64: arg_u64(x->data, y, O, R, I, is_max, last); return KILN_OK;
    default: break;
    }
    /* narrower types widen exactly to double */
    int64_t numel = kiln_value_numel(x);
    double *tmp = malloc((size_t)numel * sizeof *tmp);
    if (!tmp) return no_memory(err, n);
    for (int64_t i = 0; i < numel; i++) tmp[i] = kiln_value_get_f64(x, i);
    arg_f64(tmp, y, O, R, I, is_max, last);
    free(tmp);
    return KILN_OK;
}

/* ======================================================================
 * Softmax / LogSoftmax / Hardmax
 * ====================================================================== */

enum sm_kind { SM_SOFT, SM_LOG, SM_HARD };

static enum sm_kind sm_kind_of(const struct kiln_node *n) {
    if (strcmp(n->op_type, "LogSoftmax") == 0) return SM_LOG;
    if (strcmp(n->op_type, "Hardmax") == 0) return SM_HARD;
    return SM_SOFT;
}

/* [O, R, I] view. Before opset 13 the input is coerced to 2-D at axis
 * (default 1) and normalized over the whole flattened tail; from 13 on only
 * the one axis (default -1) is. */
static kiln_status sm_view(const struct kiln_node *n, const struct kiln_value *x, int64_t *O,
                           int64_t *R, int64_t *I, kiln_error *err) {
    bool old = n->opset < 13;
    int32_t rank = x->rank, ax;
    int64_t a = kiln_attr_int(n, "axis", old ? 1 : -1);
    if (rank == 0) {
        *O = *R = *I = 1;
        return KILN_OK;
    }
    if (old) {
        /* axis may equal rank in the old form (an empty tail) */
        if (a < -(int64_t)rank || a > rank)
            return kiln_op_fail(err, KILN_ERR_BAD_MODEL, n, "axis %lld out of range for rank %d",
                                (long long)a, rank);
        ax = (int32_t)(a < 0 ? a + rank : a);
        *O = prod_dims(x->dims, 0, ax);
        *R = prod_dims(x->dims, ax, rank);
        *I = 1;
        return KILN_OK;
    }
    kiln_status st = kiln_norm_axis(n, a, rank, &ax, err);
    if (st) return st;
    *O = prod_dims(x->dims, 0, ax);
    *R = x->dims[ax];
    *I = prod_dims(x->dims, ax + 1, rank);
    return KILN_OK;
}

static kiln_status sm_infer(const struct kiln_node *n, const struct kiln_value *const *in,
                            int n_in, struct kiln_value *const *out, int n_out,
                            kiln_error *err) {
    kiln_status st = kiln_op_check_arity(n, n_in, 1, 1, err);
    if (st) return st;
    if (!kiln_dtype_is_float(in[0]->dtype))
        return kiln_op_fail(err, KILN_ERR_UNSUPPORTED, n,
                            "expected a float input, got %s", kiln_dtype_name(in[0]->dtype));
    int64_t O, R, I;
    st = sm_view(n, in[0], &O, &R, &I, err);
    if (st) return st;
    kiln_value_set_shape(out[0], in[0]->dtype, in[0]->rank, in[0]->dims);
    return KILN_OK;
}

/* exp on 4 floats at a time, with GCC vector extensions: at -O2 the
 * auto-vectorizer leaves such loops scalar (unknown trip counts, FP compares
 * that may trap), so the SIMD form is written out. Cody-Waite reduction by
 * ln 2 and a degree-6 polynomial, about 1 ulp for x in [-88, 88]; inputs are
 * clamped to that range (results below 2^-126 flush to 0); NaN passes. */
typedef float v4f __attribute__((vector_size(16)));
typedef int32_t v4i __attribute__((vector_size(16)));

static inline v4f exp_v4(v4f x) {
    v4i xi = (v4i)x, mag = xi & 0x7fffffff;
    v4i big = mag > 0x42b00000;                       /* |x| > 88 */
    v4f c = (v4f)((xi & (int32_t)0x80000000) | (mag & ~big) | (0x42b00000 & big));
    v4f nf = (c * 1.44269504f + 12582912.0f) - 12582912.0f;   /* round to nearest */
    v4f r = c - nf * 0.693359375f + nf * 2.12194440e-4f;
    v4f p = r * 1.9875691500e-4f + 1.3981999507e-3f;
    p = p * r + 8.3334519073e-3f;
    p = p * r + 4.1665795894e-2f;
    p = p * r + 1.6666665459e-1f;
    p = p * r + 5.0000001201e-1f;
    p = p * r * r + r + 1.0f;
    v4i e = __builtin_convertvector(nf, v4i) + 127;   /* >= 0 after the clamp */
    v4i res = (v4i)(p * (v4f)(e << 23));
    v4i nan = mag > 0x7f800000;
    return (v4f)((res & ~nan) | (xi & nan));
}

static inline v4f ld4(const float *p, int64_t cnt, float pad) {
    v4f v = {pad, pad, pad, pad};
    memcpy(&v, p, (size_t)cnt * sizeof(float));
    return v;
}

/* y[i] = exp(x[i] - m[i or 0]) for n values; returns their sum (summed in
 * a fixed order). m has n entries when m_vec, else one. y may be NULL. */
static float exp_sub(const float *x, const float *m, bool m_vec, float *y, int64_t n) {
    v4f acc = {0, 0, 0, 0};
    for (int64_t r = 0; r < n; r += 4) {
        int64_t c = n - r < 4 ? n - r : 4;
        v4f mv = m_vec ? ld4(m + r, c, 0) : (v4f){m[0], m[0], m[0], m[0]};
        v4f e = exp_v4(ld4(x + r, c, -INFINITY) - mv);   /* padding gives exp(-inf) = 0 */
        if (y) memcpy(y + r, &e, (size_t)c * sizeof(float));
        acc += e;
    }
    return (acc[0] + acc[1]) + (acc[2] + acc[3]);
}

static void sm_row_f32(int k, const float *x, float *y, int64_t R) {
    float m = row_max_f32(x, R);
    if (k == SM_HARD) {
        int64_t bi = 0;
        for (int64_t r = 0; r < R; r++)
            if (x[r] == m) { bi = r; break; }
        for (int64_t r = 0; r < R; r++) y[r] = r == bi ? 1.0f : 0.0f;
        return;
    }
    if (k == SM_SOFT) {
        float inv = 1.0f / exp_sub(x, &m, false, y, R);
        int64_t r = 0;
        for (; r + LANES <= R; r += LANES)   /* fixed-width body: vectorizes at -O2 */
            for (int j = 0; j < LANES; j++) y[r + j] *= inv;
        for (; r < R; r++) y[r] *= inv;
    } else {
        float ls = m + logf(exp_sub(x, &m, false, NULL, R));
        int64_t r = 0;
        for (; r + 4 <= R; r += 4) {   /* x and y may alias: explicit vectors */
            v4f v = ld4(x + r, 4, 0) - ls;
            memcpy(y + r, &v, sizeof v);
        }
        for (; r < R; r++) y[r] = x[r] - ls;
    }
}

/* Strided columns (I > 1), a block of up to BLK columns at a time. */
static void sm_cols_f32(int k, const float *x, float *y, int64_t R, int64_t I, int64_t i0,
                        int64_t m) {
    float mx[BLK], s[BLK];
    for (int64_t j = 0; j < m; j++) { mx[j] = -INFINITY; s[j] = 0; }
    for (int64_t r = 0; r < R; r++)
        for (int64_t j = 0; j < m; j++) {
            float v = x[r * I + i0 + j];
            mx[j] = v > mx[j] ? v : mx[j];
        }
    if (k == SM_HARD) {
        int64_t bi[BLK];
        for (int64_t j = 0; j < m; j++) bi[j] = -1;
        for (int64_t r = 0; r < R; r++)
            for (int64_t j = 0; j < m; j++)
                if (bi[j] < 0 && x[r * I + i0 + j] == mx[j]) bi[j] = r;
        for (int64_t r = 0; r < R; r++)
            for (int64_t j = 0; j < m; j++) y[r * I + i0 + j] = r == bi[j] ? 1.0f : 0.0f;
        return;
    }
    float e[BLK];
    for (int64_t r = 0; r < R; r++) {
        float *q = k == SM_SOFT ? y + r * I + i0 : e;
        exp_sub(x + r * I + i0, mx, true, q, m);
        for (int64_t j = 0; j < m; j++) s[j] += q[j];
    }
    for (int64_t j = 0; j < m; j++) s[j] = k == SM_SOFT ? 1.0f / s[j] : mx[j] + logf(s[j]);
    for (int64_t r = 0; r < R; r++)
        for (int64_t j = 0; j < m; j++) {
            int64_t q = r * I + i0 + j;
            y[q] = k == SM_SOFT ? y[q] * s[j] : x[q] - s[j];
        }
}

static void sm_f32(int k, const float *x, float *y, int64_t O, int64_t R, int64_t I) {
    if (I == 1) {
#pragma omp parallel for if (O * R > PAR_MIN) schedule(static)
        for (int64_t o = 0; o < O; o++) sm_row_f32(k, x + o * R, y + o * R, R);
        return;
    }
    int64_t nb = (I + BLK - 1) / BLK;
#pragma omp parallel for if (O * R * I > PAR_MIN) schedule(static)
    for (int64_t ob = 0; ob < O * nb; ob++) {
        int64_t o = ob / nb, i0 = (ob % nb) * BLK, m = I - i0 < BLK ? I - i0 : BLK;
        sm_cols_f32(k, x + o * R * I, y + o * R * I, R, I, i0, m);
    }
}

/* double input: plain loops with libm exp (reference precision). */
static void sm_f64(int k, const double *x, double *y, int64_t O, int64_t R, int64_t I) {
    for (int64_t o = 0; o < O; o++)
        for (int64_t i = 0; i < I; i++) {
            const double *p = x + o * R * I + i;
            double *q = y + o * R * I + i;
            double m = -INFINITY, s = 0;
            int64_t bi = 0;
            for (int64_t r = 0; r < R; r++)
                if (p[r * I] > m) { m = p[r * I]; bi = r; }
            if (k == SM_HARD) {
                for (int64_t r = 0; r < R; r++) q[r * I] = r == bi ? 1.0 : 0.0;
                continue;
            }
            for (int64_t r = 0; r < R; r++) s += exp(p[r * I] - m);
            for (int64_t r = 0; r < R; r++)
                q[r * I] = k == SM_SOFT ? exp(p[r * I] - m) / s : p[r * I] - m - log(s);
        }
}

static kiln_status sm_exec(const struct kiln_node *n, struct kiln_exec_ctx *ctx,
                           const struct kiln_value *const *in, int n_in,
                           struct kiln_value *const *out, int n_out, kiln_error *err) {
    const struct kiln_value *x = in[0];
    int64_t O, R, I, numel = kiln_value_numel(x);
    kiln_status st = sm_view(n, x, &O, &R, &I, err);
    if (st) return st;
    if (numel == 0) return KILN_OK;
    int k = sm_kind_of(n);
    if (x->dtype == KILN_DTYPE_FLOAT) {
        sm_f32(k, x->data, out[0]->data, O, R, I);
        return KILN_OK;
    }
    if (x->dtype == KILN_DTYPE_DOUBLE) {
        sm_f64(k, x->data, out[0]->data, O, R, I);
        return KILN_OK;
    }
    /* f16 / bf16: compute in float32 */
    float *tmp = malloc((size_t)numel * 2 * sizeof *tmp);
    if (!tmp) return no_memory(err, n);
    for (int64_t i = 0; i < numel; i++) tmp[i] = (float)kiln_value_get_f64(x, i);
    sm_f32(k, tmp, tmp + numel, O, R, I);
    for (int64_t i = 0; i < numel; i++) kiln_value_set_f64(out[0], i, tmp[numel + i]);
    free(tmp);
    return KILN_OK;
}

/* ======================================================================
 * TopK
 * ====================================================================== */

static kiln_status topk_k(const struct kiln_node *n, const struct kiln_value *const *in,
                          int n_in, int64_t *k, kiln_error *err) {
    if (n->opset < 10) {
        const struct kiln_attr *a = kiln_attr_find(n, "k");
        if (!a) return kiln_op_fail(err, KILN_ERR_BAD_MODEL, n, "missing attribute k");
        *k = a->i;
    } else {
        if (n_in < 2 || !in[1])
            return kiln_op_fail(err, KILN_ERR_BAD_MODEL, n, "expected input K");
        if (!kiln_dtype_is_int(in[1]->dtype) || kiln_value_numel(in[1]) != 1)
            return kiln_op_fail(err, KILN_ERR_BAD_MODEL, n,
                                "expected K as a one-element int64 tensor");
        if (!in[1]->data) return KILN_DYNAMIC;
        *k = kiln_value_get_int(in[1], 0);
    }
    return KILN_OK;
}

static kiln_status topk_infer(const struct kiln_node *n, const struct kiln_value *const *in,
                              int n_in, struct kiln_value *const *out, int n_out,
                              kiln_error *err) {
    kiln_status st = kiln_op_check_arity(n, n_in, n->opset < 10 ? 1 : 2, n->opset < 10 ? 1 : 2,
                                         err);
    if (st) return st;
    const struct kiln_value *x = in[0];
    if (!is_numeric(x->dtype))
        return kiln_op_fail(err, KILN_ERR_UNSUPPORTED, n, "input dtype %s is not supported",
                            kiln_dtype_name(x->dtype));
    int32_t ax;
    if (x->rank == 0)
        return kiln_op_fail(err, KILN_ERR_SHAPE, n, "expected an input of rank >= 1");
    st = kiln_norm_axis(n, kiln_attr_int(n, "axis", -1), x->rank, &ax, err);
    if (st) return st;
    int64_t k;
    st = topk_k(n, in, n_in, &k, err);
    if (st) return st;
    if (k < 0 || k > x->dims[ax])
        return kiln_op_fail(err, KILN_ERR_SHAPE, n, "expected 0 <= k <= %lld, got k = %lld",
                            (long long)x->dims[ax], (long long)k);
    int64_t dims[KILN_MAX_RANK];
    memcpy(dims, x->dims, sizeof dims);
    dims[ax] = k;
    kiln_value_set_shape(out[0], x->dtype, x->rank, dims);
    if (n_out > 1 && out[1]) kiln_value_set_shape(out[1], KILN_DTYPE_INT64, x->rank, dims);
    return KILN_OK;
}

struct tk_item {
    union { double f; int64_t i; uint64_t u; } key;
    int64_t idx;
};

/* Orders best-first; equal keys keep ascending index, as the ONNX reference. */
#define DEF_TK_CMP(NAME, FIELD, GT)                                      \
    static int NAME(const void *pa, const void *pb) {                    \
        const struct tk_item *a = pa, *b = pb;                           \
        if (a->key.FIELD != b->key.FIELD) return (a->key.FIELD GT b->key.FIELD) ? -1 : 1; \
        return a->idx < b->idx ? -1 : a->idx > b->idx;                   \
    }
DEF_TK_CMP(tk_f_desc, f, >)
DEF_TK_CMP(tk_f_asc, f, <)
DEF_TK_CMP(tk_i_desc, i, >)
DEF_TK_CMP(tk_i_asc, i, <)
DEF_TK_CMP(tk_u_desc, u, >)
DEF_TK_CMP(tk_u_asc, u, <)

static kiln_status topk_exec(const struct kiln_node *n, struct kiln_exec_ctx *ctx,
                             const struct kiln_value *const *in, int n_in,
                             struct kiln_value *const *out, int n_out, kiln_error *err) {
    const struct kiln_value *x = in[0];
    int32_t ax;
    kiln_status st = kiln_norm_axis(n, kiln_attr_int(n, "axis", -1), x->rank, &ax, err);
    if (st) return st;
    int64_t k;
    st = topk_k(n, in, n_in, &k, err);
    if (st) return st;
    int64_t O = prod_dims(x->dims, 0, ax), R = x->dims[ax], I = prod_dims(x->dims, ax + 1, x->rank);
    if (O * I == 0 || k == 0) return KILN_OK;
    bool largest = kiln_attr_int(n, "largest", 1) != 0;
    int (*cmp)(const void *, const void *);
    int key_kind; /* 0 double, 1 int64, 2 uint64 */
    if (kiln_dtype_is_float(x->dtype)) { key_kind = 0; cmp = largest ? tk_f_desc : tk_f_asc; }
    else if (kiln_dtype_is_signed(x->dtype)) { key_kind = 1; cmp = largest ? tk_i_desc : tk_i_asc; }
    else { key_kind = 2; cmp = largest ? tk_u_desc : tk_u_asc; }
    struct tk_item *items = malloc((size_t)R * sizeof *items);
    if (!items) return no_memory(err, n);
    size_t es = kiln_dtype_size(x->dtype);
    const char *xd = x->data;
    char *vd = out[0]->data;
    int64_t *id = n_out > 1 && out[1] ? out[1]->data : NULL;
    for (int64_t o = 0; o < O; o++)
        for (int64_t i = 0; i < I; i++) {
            int64_t base = o * R * I + i;
            for (int64_t r = 0; r < R; r++) {
                int64_t e = base + r * I;
                items[r].idx = r;
                if (key_kind == 0) items[r].key.f = kiln_value_get_f64(x, e);
                else items[r].key.i = kiln_value_get_int(x, e);   /* uint64 bits kept */
            }
            qsort(items, (size_t)R, sizeof *items, cmp);
            for (int64_t j = 0; j < k; j++) {
                int64_t q = o * k * I + j * I + i;
                memcpy(vd + (size_t)q * es, xd + (size_t)(base + items[j].idx * I) * es, es);
                if (id) id[q] = items[j].idx;
            }
        }
    free(items);
    return KILN_OK;
}

/* ---- oneDNN fast path for Softmax / LogSoftmax ---------------------------- */

static kiln_status sm_fast_run(const struct kiln_node *n, struct kiln_exec_ctx *ctx, void *state,
                               const struct kiln_value *const *in, int n_in,
                               struct kiln_value *const *out, int n_out, kiln_error *err) {
    kiln_status st = kiln_dnnl_norm_run(state, in[0]->data, out[0]->data, NULL, NULL, NULL, NULL,
                                        err);
    if (st) return kiln_op_fail(err, st, n, "%s", err ? err->msg : "oneDNN failed");
    return KILN_OK;
}

/* The [O, R, I] view as a dense tensor with the reduced axis at 1: [O, R]
 * when I == 1 (the last axis, and every opset < 13 form, whose flattened
 * tail is one row), else [O, R, I]. */
static kiln_status sm_prepare(const struct kiln_node *n, struct kiln_exec_ctx *ctx,
                              const struct kiln_value *const *in, int n_in,
                              struct kiln_value *const *out, int n_out, struct kiln_kernel *k,
                              kiln_error *err) {
    const struct kiln_value *x = in[0];
    enum sm_kind kind = sm_kind_of(n);
    if (kind == SM_HARD || x->dtype != KILN_DTYPE_FLOAT || x->layout != KILN_LAYOUT_PLAIN ||
        !out[0] || out[0]->layout != KILN_LAYOUT_PLAIN || x->rank == 0 ||
        kiln_value_numel(x) == 0)
        return KILN_OK;
    int64_t O, R, I;
    kiln_status st = sm_view(n, x, &O, &R, &I, err);
    if (st) return st;
    struct kiln_dnnl_norm_desc d = {
        .kind = kind == SM_LOG ? KILN_DNNL_LOGSOFTMAX : KILN_DNNL_SOFTMAX,
        .rank = I == 1 ? 2 : 3,
        .dims = {O, R, I},
        .axis = 1};
    struct kiln_dnnl_norm *f = NULL;
    if ((st = kiln_dnnl_norm_create(&d, &f, err)))
        return kiln_op_fail(err, st, n, "%s", err ? err->msg : "oneDNN failed");
    if (!f) return KILN_OK;
    k->run = sm_fast_run;
    k->state = f;
    k->release = kiln_dnnl_norm_free;
    k->impl = kiln_dnnl_norm_impl(f);
    return KILN_OK;
}

/* The softmax-class kernels read every element of a row (or column block)
 * before writing it, so they may run in place (KILN_OP_INPLACE). */
const struct kiln_op_def kiln_ops_reduce[] = {
    {"ReduceSum", NULL, 1, 0, reduce_infer, reduce_exec, NULL, NULL},
    {"ReduceMean", NULL, 1, 0, reduce_infer, reduce_exec, NULL, NULL},
    {"ReduceMax", NULL, 1, 0, reduce_infer, reduce_exec, NULL, NULL},
    {"ReduceMin", NULL, 1, 0, reduce_infer, reduce_exec, NULL, NULL},
    {"ReduceProd", NULL, 1, 0, reduce_infer, reduce_exec, NULL, NULL},
    {"ReduceL1", NULL, 1, 0, reduce_infer, reduce_exec, NULL, NULL},
    {"ReduceL2", NULL, 1, 0, reduce_infer, reduce_exec, NULL, NULL},
    {"ReduceLogSum", NULL, 1, 0, reduce_infer, reduce_exec, NULL, NULL},
    {"ReduceLogSumExp", NULL, 1, 0, reduce_infer, reduce_exec, NULL, NULL},
    {"ReduceSumSquare", NULL, 1, 0, reduce_infer, reduce_exec, NULL, NULL},
    {"ArgMax", NULL, 1, 0, arg_infer, arg_exec, NULL, NULL},
    {"ArgMin", NULL, 1, 0, arg_infer, arg_exec, NULL, NULL},
    {"Softmax", NULL, 1, KILN_OP_INPLACE, sm_infer, sm_exec, sm_prepare, NULL},
    {"LogSoftmax", NULL, 1, KILN_OP_INPLACE, sm_infer, sm_exec, sm_prepare, NULL},
    {"Hardmax", NULL, 1, KILN_OP_INPLACE, sm_infer, sm_exec, NULL, NULL},
    {"TopK", NULL, 1, 0, topk_infer, topk_exec, NULL, NULL},
    {0},
};
