/* index.c — indexing ops: Gather, GatherElements, GatherND, ScatterElements
 * (and Scatter-9/10), ScatterND, OneHot, NonZero, CumSum, ReverseSequence,
 * Compress.
 *
 * Indices come from model data, so every index is range-checked before it is
 * used; an out-of-range index fails with KILN_ERR_SHAPE naming the node, the
 * position and the value. Gathers move bytes and work for every fixed-size
 * dtype; reductions (scatter with reduction, CumSum) are typed. */
#include "ops/op.h"

#include <math.h>
#include <stdlib.h>
#include <string.h>

#define MAXR KILN_MAX_RANK
#define PAR_BYTES ((int64_t)1 << 17) /* below this, threads cost more than they save */

/* ------------------------------------------------------------------------ */
/* helpers                                                                  */

static kiln_status check_index_dtype(const struct kiln_node *n, const struct kiln_value *v,
                                     const char *what, kiln_error *err) {
    if (v->dtype != KILN_DTYPE_INT64 && v->dtype != KILN_DTYPE_INT32)
        return kiln_op_fail(err, KILN_ERR_BAD_MODEL, n,
                            "expected %s of dtype int32 or int64, got %s", what,
                            kiln_dtype_name(v->dtype));
    return KILN_OK;
}

static kiln_status set_out(const struct kiln_node *n, struct kiln_value *out, kiln_dtype dt,
                           int64_t rank, const int64_t *dims, kiln_error *err) {
    if (rank > MAXR)
        return kiln_op_fail(err, KILN_ERR_UNSUPPORTED, n, "expected output rank <= %d, got %lld",
                            MAXR, (long long)rank);
    int64_t total = (int64_t)(kiln_dtype_size(dt) ? kiln_dtype_size(dt) : 1);
    for (int64_t i = 0; i < rank; i++)
        if (dims[i] < 0 || kiln_mul_overflow_i64(total, dims[i], &total))
            return kiln_op_fail(err, KILN_ERR_SHAPE, n, "invalid output size");
    kiln_value_set_shape(out, dt, (int32_t)rank, dims);
    return KILN_OK;
}

static int64_t prod(const int64_t *dims, int32_t from, int32_t to) {
    int64_t c = 1;
    for (int32_t i = from; i < to; i++) c *= dims[i];
    return c;
}

static inline int64_t idx_at(const struct kiln_value *v, int64_t i) {
    return v->dtype == KILN_DTYPE_INT32 ? ((const int32_t *)v->data)[i]
                                        : ((const int64_t *)v->data)[i];
}

/* Normalizes index i (negative counts from the end) for a dim of size d. */
static kiln_status norm_index(const struct kiln_node *n, int64_t i, int64_t d, int64_t pos,
                              int64_t *out, kiln_error *err) {
    if (i < -d || i >= d)
        return kiln_op_fail(err, KILN_ERR_SHAPE, n,
                            "index %lld at position %lld is out of range for a dim of size %lld",
                            (long long)i, (long long)pos, (long long)d);
    *out = i < 0 ? i + d : i;
    return KILN_OK;
}

/* Validates every index of v against dim d (before any kernel touches memory). */
static kiln_status check_indices(const struct kiln_node *n, const struct kiln_value *v, int64_t d,
                                 kiln_error *err) {
    int64_t cnt = kiln_value_numel(v), dummy;
    for (int64_t i = 0; i < cnt; i++) {
        int64_t x = idx_at(v, i);
        if (x < -d || x >= d) return norm_index(n, x, d, i, &dummy, err);
    }
    return KILN_OK;
}

/* Element offset in data (strides dstr) of element e of an index tensor with
 * dims idims, leaving out the axis coordinate. */
static int64_t base_offset(int32_t r, const int64_t *idims, const int64_t *dstr, int32_t axis,
                           int64_t e) {
    int64_t off = 0;
    for (int32_t k = r - 1; k >= 0; k--) {
        int64_t c = e % idims[k];
        e /= idims[k];
        if (k != axis) off += c * dstr[k];
    }
    return off;
}

/* ------------------------------------------------------------------------ */
/* Gather                                                                   */

static kiln_status infer_gather(const struct kiln_node *n, const struct kiln_value *const *in,
                                int n_in, struct kiln_value *const *out, int n_out,
                                kiln_error *err) {
    kiln_status st = kiln_op_check_arity(n, n_in, 2, 2, err);
    size_t es;
    int32_t axis;
    if (st == KILN_OK) st = kiln_op_elem_size(n, in[0]->dtype, &es, err);
    if (st == KILN_OK) st = check_index_dtype(n, in[1], "indices", err);
    if (st == KILN_OK) st = kiln_norm_axis(n, kiln_attr_int(n, "axis", 0), in[0]->rank, &axis, err);
    if (st != KILN_OK) return st;
    const struct kiln_value *x = in[0], *ix = in[1];
    int64_t dims[2 * MAXR], r = 0;
    for (int32_t i = 0; i < axis; i++) dims[r++] = x->dims[i];
    for (int32_t i = 0; i < ix->rank; i++) dims[r++] = ix->dims[i];
    for (int32_t i = axis + 1; i < x->rank; i++) dims[r++] = x->dims[i];
    if (ix->data && (st = check_indices(n, ix, x->dims[axis], err)) != KILN_OK) return st;
    return set_out(n, out[0], x->dtype, r, dims, err);
}

static kiln_status exec_gather(const struct kiln_node *n, struct kiln_exec_ctx *ctx,
                               const struct kiln_value *const *in, int n_in,
                               struct kiln_value *const *out, int n_out, kiln_error *err) {
    const struct kiln_value *x = in[0], *ix = in[1];
    int32_t axis;
    kiln_status st = kiln_norm_axis(n, kiln_attr_int(n, "axis", 0), x->rank, &axis, err);
    if (st != KILN_OK) return st;
    int64_t K = x->dims[axis];
    if ((st = check_indices(n, ix, K, err)) != KILN_OK) return st;
    int64_t es = (int64_t)kiln_dtype_size(x->dtype);
    int64_t outer = prod(x->dims, 0, axis), m = kiln_value_numel(ix);
    int64_t inner = prod(x->dims, axis + 1, x->rank) * es; /* bytes per gathered slice */
    const char *src = x->data;
    char *dst = out[0]->data;
    int64_t total = outer * m;
    if (total == 0 || inner == 0) return KILN_OK; /* empty tensors may have no storage */
#pragma omp parallel for num_threads(kiln_op_threads(ctx)) if (total * inner > PAR_BYTES)
    for (int64_t t = 0; t < total; t++) {
        int64_t o = t / m, j = idx_at(ix, t % m);
        if (j < 0) j += K;
        const char *s = src + (o * K + j) * inner;
        char *d = dst + t * inner;
        if (inner == 4) memcpy(d, s, 4); /* the common scalar-float case, inlined */
        else memcpy(d, s, (size_t)inner);
    }
    return KILN_OK;
}

/* ------------------------------------------------------------------------ */
/* GatherElements                                                           */

/* Checks that indices (and updates) have data's rank and fit inside it. */
static kiln_status check_elem_shapes(const struct kiln_node *n, const struct kiln_value *x,
                                     const struct kiln_value *ix, int32_t axis, kiln_error *err) {
    bool ok = ix->rank == x->rank;
    for (int32_t k = 0; ok && k < x->rank; k++) ok = k == axis || ix->dims[k] <= x->dims[k];
    if (!ok) {
        char sx[128], si[128];
        kiln_shape_str(x, sx, sizeof sx);
        kiln_shape_str(ix, si, sizeof si);
        return kiln_op_fail(err, KILN_ERR_SHAPE, n,
                            "expected indices of rank %d within data %s (except axis %d), got %s",
                            x->rank, sx, axis, si);
    }
    return KILN_OK;
}

static kiln_status infer_gather_elements(const struct kiln_node *n,
                                         const struct kiln_value *const *in, int n_in,
                                         struct kiln_value *const *out, int n_out,
                                         kiln_error *err) {
    kiln_status st = kiln_op_check_arity(n, n_in, 2, 2, err);
    size_t es;
    int32_t axis;
    if (st == KILN_OK) st = kiln_op_elem_size(n, in[0]->dtype, &es, err);
    if (st == KILN_OK) st = check_index_dtype(n, in[1], "indices", err);
    if (st == KILN_OK) st = kiln_norm_axis(n, kiln_attr_int(n, "axis", 0), in[0]->rank, &axis, err);
    if (st == KILN_OK) st = check_elem_shapes(n, in[0], in[1], axis, err);
    if (st != KILN_OK) return st;
    return set_out(n, out[0], in[0]->dtype, in[1]->rank, in[1]->dims, err);
}

static kiln_status exec_gather_elements(const struct kiln_node *n, struct kiln_exec_ctx *ctx,
                                        const struct kiln_value *const *in, int n_in,
                                        struct kiln_value *const *out, int n_out, kiln_error *err) {
    const struct kiln_value *x = in[0], *ix = in[1];
    int32_t axis, r = x->rank;
    kiln_status st = kiln_norm_axis(n, kiln_attr_int(n, "axis", 0), r, &axis, err);
    if (st != KILN_OK) return st;
    if ((st = check_indices(n, ix, x->dims[axis], err)) != KILN_OK) return st;
    int64_t dstr[MAXR], cnt = kiln_value_numel(ix), es = (int64_t)kiln_dtype_size(x->dtype);
    kiln_strides(r, x->dims, dstr);
    const char *src = x->data;
    char *dst = out[0]->data;
#pragma omp parallel for num_threads(kiln_op_threads(ctx)) if (cnt * es > PAR_BYTES)
    for (int64_t e = 0; e < cnt; e++) {
        int64_t j = idx_at(ix, e);
        if (j < 0) j += x->dims[axis];
        int64_t off = base_offset(r, ix->dims, dstr, axis, e) + j * dstr[axis];
        memcpy(dst + e * es, src + off * es, (size_t)es);
    }
    return KILN_OK;
}

/* ------------------------------------------------------------------------ */
/* GatherND                                                                 */

static kiln_status infer_gather_nd(const struct kiln_node *n, const struct kiln_value *const *in,
                                   int n_in, struct kiln_value *const *out, int n_out,
                                   kiln_error *err) {
    kiln_status st = kiln_op_check_arity(n, n_in, 2, 2, err);
    size_t es;
    if (st == KILN_OK) st = kiln_op_elem_size(n, in[0]->dtype, &es, err);
    if (st == KILN_OK) st = check_index_dtype(n, in[1], "indices", err);
    if (st != KILN_OK) return st;
    const struct kiln_value *x = in[0], *ix = in[1];
    int64_t b = kiln_attr_int(n, "batch_dims", 0);
    int32_t r = x->rank, q = ix->rank;
    if (r < 1 || q < 1 || b < 0 || b >= q || b >= r)
        return kiln_op_fail(err, KILN_ERR_SHAPE, n,
                            "expected data and indices of rank >= 1 and batch_dims < both ranks, "
                            "got ranks %d, %d and batch_dims %lld",
                            r, q, (long long)b);
    int64_t k = ix->dims[q - 1];
    if (k < 1 || k > r - b)
        return kiln_op_fail(err, KILN_ERR_SHAPE, n,
                            "expected indices last dim in [1, %lld], got %lld", (long long)(r - b),
                            (long long)k);
    for (int64_t i = 0; i < b; i++)
        if (ix->dims[i] != x->dims[i])
            return kiln_op_fail(err, KILN_ERR_SHAPE, n,
                                "batch dim %lld differs: data %lld, indices %lld", (long long)i,
                                (long long)x->dims[i], (long long)ix->dims[i]);
    int64_t dims[2 * MAXR], orank = 0;
    for (int32_t i = 0; i < q - 1; i++) dims[orank++] = ix->dims[i];
    for (int64_t i = b + k; i < r; i++) dims[orank++] = x->dims[i];
    return set_out(n, out[0], x->dtype, orank, dims, err);
}

static kiln_status exec_gather_nd(const struct kiln_node *n, struct kiln_exec_ctx *ctx,
                                  const struct kiln_value *const *in, int n_in,
                                  struct kiln_value *const *out, int n_out, kiln_error *err) {
    const struct kiln_value *x = in[0], *ix = in[1];
    int32_t r = x->rank, q = ix->rank, b = (int32_t)kiln_attr_int(n, "batch_dims", 0);
    int32_t k = (int32_t)ix->dims[q - 1];
    int64_t es = (int64_t)kiln_dtype_size(x->dtype), dstr[MAXR];
    kiln_strides(r, x->dims, dstr);
    int64_t B = prod(x->dims, 0, b), N = prod(ix->dims, b, q - 1);
    int64_t slice = prod(x->dims, b + k, r) * es, bstride = prod(x->dims, b, r);
    for (int64_t bi = 0; bi < B; bi++)
        for (int64_t ni = 0; ni < N; ni++) {
            int64_t t = bi * N + ni, off = bi * bstride;
            for (int32_t j = 0; j < k; j++) {
                int64_t v = 0;
                kiln_status st =
                    norm_index(n, idx_at(ix, t * k + j), x->dims[b + j], t * k + j, &v, err);
                if (st != KILN_OK) return st;
                off += v * dstr[b + j];
            }
            memcpy((char *)out[0]->data + t * slice, (const char *)x->data + off * es,
                   (size_t)slice);
        }
    return KILN_OK;
}

/* ------------------------------------------------------------------------ */
/* Scatter reductions                                                       */

enum { RED_NONE, RED_ADD, RED_MUL, RED_MAX, RED_MIN };

static kiln_status parse_reduction(const struct kiln_node *n, kiln_dtype dt, int *red,
                                   kiln_error *err) {
    const char *s = kiln_attr_string(n, "reduction", "none");
    static const char *names[] = {"none", "add", "mul", "max", "min"};
    *red = -1;
    for (int i = 0; i < 5; i++)
        if (strcmp(s, names[i]) == 0) *red = i;
    if (*red < 0)
        return kiln_op_fail(err, KILN_ERR_UNSUPPORTED, n, "reduction '%s' is not supported", s);
    if (*red != RED_NONE && !kiln_dtype_is_float(dt) && !kiln_dtype_is_int(dt))
        return kiln_op_fail(err, KILN_ERR_UNSUPPORTED, n, "reduction '%s' on %s is not supported",
                            s, kiln_dtype_name(dt));
    return KILN_OK;
}

/* Integer math wraps through the unsigned type: no undefined overflow. */
#define RED_INT(T, UT)                                                                             \
    do {                                                                                           \
        T a, b;                                                                                    \
        memcpy(&a, dst, sizeof a);                                                                 \
        memcpy(&b, src, sizeof b);                                                                 \
        if (red == RED_ADD) a = (T)((UT)a + (UT)b);                                                \
        else if (red == RED_MUL) a = (T)((UT)a * (UT)b);                                           \
        else if (red == RED_MAX) a = a > b ? a : b;                                                \
        else a = a < b ? a : b;                                                                    \
        memcpy(dst, &a, sizeof a);                                                                 \
    } while (0)

static inline double red_f(int red, double a, double b) {
    switch (red) {
    case RED_ADD: return a + b;
    case RED_MUL: return a * b;
    case RED_MAX: return a > b ? a : b;
    default: return a < b ? a : b;
    }
}

/* *dst = red(*dst, *src) for one element of dtype dt. */
static void reduce_elem(kiln_dtype dt, int red, char *dst, const char *src, size_t es) {
    switch (dt) {
    case KILN_DTYPE_FLOAT: {
        float a, b;
        memcpy(&a, dst, 4);
        memcpy(&b, src, 4);
        a = red == RED_ADD ? a + b : red == RED_MUL ? a * b : (float)red_f(red, a, b);
        memcpy(dst, &a, 4);
        break;
    }
    case KILN_DTYPE_DOUBLE: {
        double a, b;
        memcpy(&a, dst, 8);
        memcpy(&b, src, 8);
        a = red_f(red, a, b);
        memcpy(dst, &a, 8);
        break;
    }
    case KILN_DTYPE_FLOAT16:
    case KILN_DTYPE_BFLOAT16: {
        uint16_t a, b;
        memcpy(&a, dst, 2);
        memcpy(&b, src, 2);
        bool h = dt == KILN_DTYPE_FLOAT16;
        float fa = h ? kiln_f16_to_f32(a) : kiln_bf16_to_f32(a);
        float fb = h ? kiln_f16_to_f32(b) : kiln_bf16_to_f32(b);
        float r = (float)red_f(red, fa, fb);
        a = h ? kiln_f32_to_f16(r) : kiln_f32_to_bf16(r);
        memcpy(dst, &a, 2);
        break;
    }
    case KILN_DTYPE_INT8: RED_INT(int8_t, uint8_t); break;
    case KILN_DTYPE_UINT8: RED_INT(uint8_t, uint8_t); break;
    case KILN_DTYPE_INT16: RED_INT(int16_t, uint16_t); break;
    case KILN_DTYPE_UINT16: RED_INT(uint16_t, uint16_t); break;
    case KILN_DTYPE_INT32: RED_INT(int32_t, uint32_t); break;
    case KILN_DTYPE_UINT32: RED_INT(uint32_t, uint32_t); break;
    case KILN_DTYPE_INT64: RED_INT(int64_t, uint64_t); break;
    case KILN_DTYPE_UINT64: RED_INT(uint64_t, uint64_t); break;
    default: memcpy(dst, src, es); break;
    }
}

static inline void scatter_elem(kiln_dtype dt, int red, char *dst, const char *src, size_t es) {
    if (red == RED_NONE) memcpy(dst, src, es);
    else reduce_elem(dt, red, dst, src, es);
}

static void copy_data(const struct kiln_value *x, struct kiln_value *out) {
    size_t b = 0;
    if (out->data != x->data && kiln_value_bytes(out, &b) && b) memcpy(out->data, x->data, b);
}

/* ------------------------------------------------------------------------ */
/* ScatterElements, Scatter                                                 */

static kiln_status infer_scatter_elements(const struct kiln_node *n,
                                          const struct kiln_value *const *in, int n_in,
                                          struct kiln_value *const *out, int n_out,
                                          kiln_error *err) {
    kiln_status st = kiln_op_check_arity(n, n_in, 3, 3, err);
    size_t es;
    int32_t axis;
    int red;
    if (st == KILN_OK) st = kiln_op_elem_size(n, in[0]->dtype, &es, err);
    if (st == KILN_OK) st = check_index_dtype(n, in[1], "indices", err);
    if (st == KILN_OK) st = parse_reduction(n, in[0]->dtype, &red, err);
    if (st == KILN_OK) st = kiln_norm_axis(n, kiln_attr_int(n, "axis", 0), in[0]->rank, &axis, err);
    if (st == KILN_OK) st = check_elem_shapes(n, in[0], in[1], axis, err);
    if (st != KILN_OK) return st;
    const struct kiln_value *ix = in[1], *up = in[2];
    bool same = up->dtype == in[0]->dtype && up->rank == ix->rank;
    for (int32_t k = 0; same && k < ix->rank; k++) same = up->dims[k] == ix->dims[k];
    if (!same) {
        char si[128], su[128];
        kiln_shape_str(ix, si, sizeof si);
        kiln_shape_str(up, su, sizeof su);
        return kiln_op_fail(err, KILN_ERR_SHAPE, n,
                            "expected updates of dtype %s and shape %s (indices), got %s %s",
                            kiln_dtype_name(in[0]->dtype), si, kiln_dtype_name(up->dtype), su);
    }
    kiln_value_set_shape(out[0], in[0]->dtype, in[0]->rank, in[0]->dims);
    return KILN_OK;
}

static kiln_status exec_scatter_elements(const struct kiln_node *n, struct kiln_exec_ctx *ctx,
                                         const struct kiln_value *const *in, int n_in,
                                         struct kiln_value *const *out, int n_out,
                                         kiln_error *err) {
    const struct kiln_value *x = in[0], *ix = in[1], *up = in[2];
    int32_t axis, r = x->rank;
    int red;
    kiln_status st = kiln_norm_axis(n, kiln_attr_int(n, "axis", 0), r, &axis, err);
    if (st == KILN_OK) st = parse_reduction(n, x->dtype, &red, err);
    if (st == KILN_OK) st = check_indices(n, ix, x->dims[axis], err);
    if (st != KILN_OK) return st;
    copy_data(x, out[0]);
    size_t es = kiln_dtype_size(x->dtype);
    int64_t dstr[MAXR], cnt = kiln_value_numel(ix);
    kiln_strides(r, x->dims, dstr);
    /* sequential: with duplicate indices, later updates win (or accumulate in order) */
    for (int64_t e = 0; e < cnt; e++) {
        int64_t j = idx_at(ix, e);
        if (j < 0) j += x->dims[axis];
        int64_t off = base_offset(r, ix->dims, dstr, axis, e) + j * dstr[axis];
        scatter_elem(x->dtype, red, (char *)out[0]->data + off * (int64_t)es,
                     (const char *)up->data + e * (int64_t)es, es);
    }
    return KILN_OK;
}

/* ------------------------------------------------------------------------ */
/* ScatterND                                                                */

static kiln_status infer_scatter_nd(const struct kiln_node *n, const struct kiln_value *const *in,
                                    int n_in, struct kiln_value *const *out, int n_out,
                                    kiln_error *err) {
    kiln_status st = kiln_op_check_arity(n, n_in, 3, 3, err);
    size_t es;
    int red;
    if (st == KILN_OK) st = kiln_op_elem_size(n, in[0]->dtype, &es, err);
    if (st == KILN_OK) st = check_index_dtype(n, in[1], "indices", err);
    if (st == KILN_OK) st = parse_reduction(n, in[0]->dtype, &red, err);
    if (st != KILN_OK) return st;
    const struct kiln_value *x = in[0], *ix = in[1], *up = in[2];
    int32_t r = x->rank, q = ix->rank;
    int64_t k = q >= 1 ? ix->dims[q - 1] : -1;
    if (q < 1 || k < 1 || k > r)
        return kiln_op_fail(err, KILN_ERR_SHAPE, n,
                            "expected indices of rank >= 1 with last dim in [1, %d]", r);
    /* updates shape = indices.shape[:-1] + data.shape[k:] */
    bool ok = up->dtype == x->dtype && up->rank == q - 1 + r - k;
    for (int32_t i = 0; ok && i < q - 1; i++) ok = up->dims[i] == ix->dims[i];
    for (int64_t i = k; ok && i < r; i++) ok = up->dims[q - 1 + i - k] == x->dims[i];
    if (!ok) {
        char su[128];
        kiln_shape_str(up, su, sizeof su);
        return kiln_op_fail(
            err, KILN_ERR_SHAPE, n,
            "expected updates of shape indices.shape[:-1] + data.shape[%lld:], got %s",
            (long long)k, su);
    }
    kiln_value_set_shape(out[0], x->dtype, r, x->dims);
    return KILN_OK;
}

static kiln_status exec_scatter_nd(const struct kiln_node *n, struct kiln_exec_ctx *ctx,
                                   const struct kiln_value *const *in, int n_in,
                                   struct kiln_value *const *out, int n_out, kiln_error *err) {
    const struct kiln_value *x = in[0], *ix = in[1], *up = in[2];
    int red;
    kiln_status st = parse_reduction(n, x->dtype, &red, err);
    if (st != KILN_OK) return st;
    int32_t r = x->rank, q = ix->rank, k = (int32_t)ix->dims[q - 1];
    int64_t es = (int64_t)kiln_dtype_size(x->dtype), dstr[MAXR];
    kiln_strides(r, x->dims, dstr);
    int64_t N = prod(ix->dims, 0, q - 1), slice = prod(x->dims, k, r);
    /* validate every tuple before writing anything */
    for (int64_t t = 0; t < N * k; t++) {
        int64_t v = 0;
        if ((st = norm_index(n, idx_at(ix, t), x->dims[t % k], t, &v, err)) != KILN_OK) return st;
    }
    copy_data(x, out[0]);
    char *dst = out[0]->data;
    const char *src = up->data;
    for (int64_t t = 0; t < N; t++) {
        int64_t off = 0;
        for (int32_t j = 0; j < k; j++) {
            int64_t v = idx_at(ix, t * k + j);
            off += (v < 0 ? v + x->dims[j] : v) * dstr[j];
        }
        char *d = dst + off * es;
        const char *s = src + t * slice * es;
        if (red == RED_NONE) memcpy(d, s, (size_t)(slice * es));
        else
            for (int64_t i = 0; i < slice; i++)
                reduce_elem(x->dtype, red, d + i * es, s + i * es, (size_t)es);
    }
    return KILN_OK;
}

/* ------------------------------------------------------------------------ */
/* OneHot                                                                   */

static kiln_status onehot_axis(const struct kiln_node *n, int32_t in_rank, int32_t *axis,
                               kiln_error *err) {
    return kiln_norm_axis(n, kiln_attr_int(n, "axis", -1), in_rank + 1, axis, err);
}

static kiln_status onehot_depth(const struct kiln_node *n, const struct kiln_value *d,
                                int64_t *depth, kiln_error *err) {
    if (kiln_value_numel(d) != 1 || kiln_dtype_size(d->dtype) == 0 || d->dtype == KILN_DTYPE_BOOL)
        return kiln_op_fail(err, KILN_ERR_BAD_MODEL, n, "expected depth as a numeric scalar");
    double v = kiln_value_get_f64(d, 0);
    if (!(v >= 1 && v < 9.0e15))
        return kiln_op_fail(err, KILN_ERR_SHAPE, n, "expected depth >= 1, got %g", v);
    *depth = (int64_t)v;
    return KILN_OK;
}

static kiln_status infer_onehot(const struct kiln_node *n, const struct kiln_value *const *in,
                                int n_in, struct kiln_value *const *out, int n_out,
                                kiln_error *err) {
    kiln_status st = kiln_op_check_arity(n, n_in, 3, 3, err);
    size_t es;
    int32_t axis;
    if (st == KILN_OK) st = kiln_op_elem_size(n, in[2]->dtype, &es, err);
    if (st == KILN_OK) st = onehot_axis(n, in[0]->rank, &axis, err);
    if (st != KILN_OK) return st;
    if (!kiln_dtype_is_int(in[0]->dtype) && !kiln_dtype_is_float(in[0]->dtype))
        return kiln_op_fail(err, KILN_ERR_BAD_MODEL, n, "expected numeric indices, got %s",
                            kiln_dtype_name(in[0]->dtype));
    if (kiln_value_numel(in[2]) != 2)
        return kiln_op_fail(err, KILN_ERR_BAD_MODEL, n, "expected 2 values (off, on), got %lld",
                            (long long)kiln_value_numel(in[2]));
    if (!in[1]->data) return KILN_DYNAMIC;
    int64_t depth, dims[MAXR + 1];
    if ((st = onehot_depth(n, in[1], &depth, err)) != KILN_OK) return st;
    for (int32_t i = 0, j = 0; i <= in[0]->rank; i++)
        dims[i] = i == axis ? depth : in[0]->dims[j++];
    return set_out(n, out[0], in[2]->dtype, in[0]->rank + 1, dims, err);
}

static kiln_status exec_onehot(const struct kiln_node *n, struct kiln_exec_ctx *ctx,
                               const struct kiln_value *const *in, int n_in,
                               struct kiln_value *const *out, int n_out, kiln_error *err) {
    const struct kiln_value *ix = in[0];
    int32_t axis;
    int64_t depth;
    kiln_status st = onehot_axis(n, ix->rank, &axis, err);
    if (st == KILN_OK) st = onehot_depth(n, in[1], &depth, err);
    if (st != KILN_OK) return st;
    int64_t es = (int64_t)kiln_dtype_size(out[0]->dtype), total = kiln_value_numel(out[0]);
    const char *off = in[2]->data, *on = off + es;
    char *dst = out[0]->data;
    for (int64_t i = 0; i < total; i++) memcpy(dst + i * es, off, (size_t)es);
    int64_t inner = prod(ix->dims, axis, ix->rank), cnt = kiln_value_numel(ix);
    bool fl = kiln_dtype_is_float(ix->dtype);
    for (int64_t e = 0; e < cnt; e++) {
        int64_t v = 0;
        if (fl) {
            double f = kiln_value_get_f64(ix, e);
            if (!(f > -9.0e15 && f < 9.0e15)) continue; /* NaN or huge: no hot entry */
            v = (int64_t)f;
        } else {
            v = kiln_value_get_int(ix, e);
        }
        if (v < 0) v += depth;
        if (v < 0 || v >= depth) continue; /* out of range: the row stays all "off" */
        int64_t o = e / inner, i = e % inner;
        memcpy(dst + ((o * depth + v) * inner + i) * es, on, (size_t)es);
    }
    return KILN_OK;
}

/* ------------------------------------------------------------------------ */
/* NonZero                                                                  */

static bool is_nonzero(const struct kiln_value *v, int64_t i, size_t es) {
    if (kiln_dtype_is_float(v->dtype)) return kiln_value_get_f64(v, i) != 0; /* -0.0 is zero */
    const unsigned char *p = (const unsigned char *)v->data + i * (int64_t)es;
    for (size_t k = 0; k < es; k++)
        if (p[k]) return true;
    return false;
}

static kiln_status infer_nonzero(const struct kiln_node *n, const struct kiln_value *const *in,
                                 int n_in, struct kiln_value *const *out, int n_out,
                                 kiln_error *err) {
    kiln_status st = kiln_op_check_arity(n, n_in, 1, 1, err);
    size_t es;
    if (st == KILN_OK) st = kiln_op_elem_size(n, in[0]->dtype, &es, err);
    if (st != KILN_OK) return st;
    if (!in[0]->data) return KILN_DYNAMIC;
    int64_t cnt = kiln_value_numel(in[0]), nnz = 0;
    for (int64_t i = 0; i < cnt; i++) nnz += is_nonzero(in[0], i, es);
    /* a scalar behaves like a 1-element vector, as numpy does */
    int64_t dims[2] = {in[0]->rank ? in[0]->rank : 1, nnz};
    return set_out(n, out[0], KILN_DTYPE_INT64, 2, dims, err);
}

static kiln_status exec_nonzero(const struct kiln_node *n, struct kiln_exec_ctx *ctx,
                                const struct kiln_value *const *in, int n_in,
                                struct kiln_value *const *out, int n_out, kiln_error *err) {
    const struct kiln_value *x = in[0];
    size_t es = kiln_dtype_size(x->dtype);
    int32_t r = x->rank;
    int64_t cnt = kiln_value_numel(x), nnz = out[0]->dims[1], j = 0, coord[MAXR] = {0};
    int64_t *o = out[0]->data;
    for (int64_t i = 0; i < cnt; i++) {
        if (is_nonzero(x, i, es)) {
            if (j >= nnz)
                return kiln_op_fail(err, KILN_ERR_INTERNAL, n, "more nonzeros than planned (%lld)",
                                    (long long)nnz);
            if (r == 0) o[j] = 0;
            for (int32_t k = 0; k < r; k++) o[k * nnz + j] = coord[k];
            j++;
        }
        for (int32_t k = r - 1; k >= 0; k--) { /* advance the row-major coordinate */
            if (++coord[k] < x->dims[k]) break;
            coord[k] = 0;
        }
    }
    return KILN_OK;
}

/* ------------------------------------------------------------------------ */
/* CumSum                                                                   */

static bool cumsum_dtype_ok(kiln_dtype t) {
    return kiln_dtype_is_float(t) || t == KILN_DTYPE_INT32 || t == KILN_DTYPE_INT64 ||
           t == KILN_DTYPE_UINT32 || t == KILN_DTYPE_UINT64;
}

static kiln_status cumsum_axis(const struct kiln_node *n, const struct kiln_value *x,
                               const struct kiln_value *a, int32_t *axis, kiln_error *err) {
    if (!kiln_dtype_is_int(a->dtype) || kiln_value_numel(a) != 1 || a->rank > 1)
        return kiln_op_fail(err, KILN_ERR_BAD_MODEL, n, "expected axis as an integer scalar");
    return kiln_norm_axis(n, kiln_value_get_int(a, 0), x->rank, axis, err);
}

static kiln_status infer_cumsum(const struct kiln_node *n, const struct kiln_value *const *in,
                                int n_in, struct kiln_value *const *out, int n_out,
                                kiln_error *err) {
    kiln_status st = kiln_op_check_arity(n, n_in, 2, 2, err);
    if (st != KILN_OK) return st;
    if (!cumsum_dtype_ok(in[0]->dtype))
        return kiln_op_fail(err, KILN_ERR_UNSUPPORTED, n, "dtype %s is not supported",
                            kiln_dtype_name(in[0]->dtype));
    int32_t axis;
    if (in[1]->data && (st = cumsum_axis(n, in[0], in[1], &axis, err)) != KILN_OK) return st;
    kiln_value_set_shape(out[0], in[0]->dtype, in[0]->rank, in[0]->dims);
    return KILN_OK;
}

/* Running sum along one axis: out[d] = out[prev] + x[d or prev]. Signed
 * integers add through their unsigned type (wraps, no UB). */
#define CUMSUM_LOOP(T, ADD)                                                                        \
    do {                                                                                           \
        const T *xs = x->data;                                                                     \
        T *ys = out[0]->data;                                                                      \
        for (int64_t o = 0; o < outer; o++)                                                        \
            for (int64_t s = 0; s < D; s++) {                                                      \
                int64_t d = rev ? D - 1 - s : s, p = rev ? d + 1 : d - 1;                          \
                int64_t od = (o * D + d) * inner, op = (o * D + p) * inner; /* op used if s>0 */   \
                for (int64_t i = 0; i < inner; i++)                                                \
                    ys[od + i] = s == 0 ? (excl ? (T)0 : xs[od + i])                               \
                                        : ADD(ys[op + i], excl ? xs[op + i] : xs[od + i]);         \
            }                                                                                      \
    } while (0)

#define ADD_PLAIN(a, b) ((a) + (b))
#define ADD_U32(a, b) ((int32_t)((uint32_t)(a) + (uint32_t)(b)))
#define ADD_U64(a, b) ((int64_t)((uint64_t)(a) + (uint64_t)(b)))
#define ADD_F16(a, b) kiln_f32_to_f16(kiln_f16_to_f32(a) + kiln_f16_to_f32(b))
#define ADD_BF16(a, b) kiln_f32_to_bf16(kiln_bf16_to_f32(a) + kiln_bf16_to_f32(b))

static kiln_status exec_cumsum(const struct kiln_node *n, struct kiln_exec_ctx *ctx,
                               const struct kiln_value *const *in, int n_in,
                               struct kiln_value *const *out, int n_out, kiln_error *err) {
    const struct kiln_value *x = in[0];
    int32_t axis;
    kiln_status st = cumsum_axis(n, x, in[1], &axis, err);
    if (st != KILN_OK) return st;
    bool excl = kiln_attr_int(n, "exclusive", 0) != 0, rev = kiln_attr_int(n, "reverse", 0) != 0;
    int64_t outer = prod(x->dims, 0, axis), D = x->dims[axis],
            inner = prod(x->dims, axis + 1, x->rank);
    switch (x->dtype) {
    case KILN_DTYPE_FLOAT: CUMSUM_LOOP(float, ADD_PLAIN); break;
    case KILN_DTYPE_DOUBLE: CUMSUM_LOOP(double, ADD_PLAIN); break;
    case KILN_DTYPE_INT32: CUMSUM_LOOP(int32_t, ADD_U32); break;
    case KILN_DTYPE_INT64: CUMSUM_LOOP(int64_t, ADD_U64); break;
    case KILN_DTYPE_UINT32: CUMSUM_LOOP(uint32_t, ADD_PLAIN); break;
    case KILN_DTYPE_UINT64: CUMSUM_LOOP(uint64_t, ADD_PLAIN); break;
    case KILN_DTYPE_FLOAT16: CUMSUM_LOOP(uint16_t, ADD_F16); break;
    case KILN_DTYPE_BFLOAT16: CUMSUM_LOOP(uint16_t, ADD_BF16); break;
    default:
        return kiln_op_fail(err, KILN_ERR_UNSUPPORTED, n, "dtype %s is not supported",
                            kiln_dtype_name(x->dtype));
    }
    return KILN_OK;
}

/* ------------------------------------------------------------------------ */
/* ReverseSequence                                                          */

static kiln_status revseq_axes(const struct kiln_node *n, int64_t *ta, int64_t *ba,
                               kiln_error *err) {
    *ta = kiln_attr_int(n, "time_axis", 0);
    *ba = kiln_attr_int(n, "batch_axis", 1);
    if (!((*ta == 0 && *ba == 1) || (*ta == 1 && *ba == 0)))
        return kiln_op_fail(err, KILN_ERR_BAD_MODEL, n,
                            "expected time_axis and batch_axis to be 0 and 1, got %lld and %lld",
                            (long long)*ta, (long long)*ba);
    return KILN_OK;
}

static kiln_status infer_revseq(const struct kiln_node *n, const struct kiln_value *const *in,
                                int n_in, struct kiln_value *const *out, int n_out,
                                kiln_error *err) {
    kiln_status st = kiln_op_check_arity(n, n_in, 2, 2, err);
    size_t es;
    int64_t ta, ba;
    if (st == KILN_OK) st = kiln_op_elem_size(n, in[0]->dtype, &es, err);
    if (st == KILN_OK) st = check_index_dtype(n, in[1], "sequence_lens", err);
    if (st == KILN_OK) st = revseq_axes(n, &ta, &ba, err);
    if (st != KILN_OK) return st;
    if (in[0]->rank < 2)
        return kiln_op_fail(err, KILN_ERR_SHAPE, n, "expected input rank >= 2, got %d",
                            in[0]->rank);
    if (in[1]->rank != 1 || in[1]->dims[0] != in[0]->dims[ba])
        return kiln_op_fail(err, KILN_ERR_SHAPE, n, "expected sequence_lens of shape [%lld]",
                            (long long)in[0]->dims[ba]);
    kiln_value_set_shape(out[0], in[0]->dtype, in[0]->rank, in[0]->dims);
    return KILN_OK;
}

static kiln_status exec_revseq(const struct kiln_node *n, struct kiln_exec_ctx *ctx,
                               const struct kiln_value *const *in, int n_in,
                               struct kiln_value *const *out, int n_out, kiln_error *err) {
    const struct kiln_value *x = in[0], *lens = in[1];
    int64_t ta, ba;
    kiln_status st = revseq_axes(n, &ta, &ba, err);
    if (st != KILN_OK) return st;
    int64_t T = x->dims[ta], B = x->dims[ba];
    int64_t inner = prod(x->dims, 2, x->rank) * (int64_t)kiln_dtype_size(x->dtype);
    for (int64_t b = 0; b < B; b++) {
        int64_t len = idx_at(lens, b);
        if (len < 0 || len > T)
            return kiln_op_fail(err, KILN_ERR_SHAPE, n,
                                "sequence_lens[%lld] = %lld is out of range [0, %lld]",
                                (long long)b, (long long)len, (long long)T);
        for (int64_t t = 0; t < T; t++) {
            int64_t s = t < len ? len - 1 - t : t;
            int64_t od = ta == 0 ? t * B + b : b * T + t, os = ta == 0 ? s * B + b : b * T + s;
            memcpy((char *)out[0]->data + od * inner, (const char *)x->data + os * inner,
                   (size_t)inner);
        }
    }
    return KILN_OK;
}

/* ------------------------------------------------------------------------ */
/* Compress                                                                 */

/* Axis (or -1 for the flattened input), its length and the selected count. */
static kiln_status compress_params(const struct kiln_node *n, const struct kiln_value *const *in,
                                   int32_t *axis, int64_t *D, int64_t *sel, kiln_error *err) {
    const struct kiln_value *x = in[0], *c = in[1];
    *axis = -1;
    *D = kiln_value_numel(x);
    if (kiln_attr_find(n, "axis")) {
        kiln_status st = kiln_norm_axis(n, kiln_attr_int(n, "axis", 0), x->rank, axis, err);
        if (st != KILN_OK) return st;
        *D = x->dims[*axis];
    }
    if (c->rank != 1 || kiln_dtype_size(c->dtype) == 0)
        return kiln_op_fail(err, KILN_ERR_BAD_MODEL, n, "expected a 1-D condition");
    *sel = 0;
    for (int64_t i = 0; i < c->dims[0]; i++) {
        if (kiln_value_get_f64(c, i) == 0) continue;
        if (i >= *D)
            return kiln_op_fail(err, KILN_ERR_SHAPE, n,
                                "condition selects index %lld, beyond the axis length %lld",
                                (long long)i, (long long)*D);
        (*sel)++;
    }
    return KILN_OK;
}

static kiln_status infer_compress(const struct kiln_node *n, const struct kiln_value *const *in,
                                  int n_in, struct kiln_value *const *out, int n_out,
                                  kiln_error *err) {
    kiln_status st = kiln_op_check_arity(n, n_in, 2, 2, err);
    size_t es;
    if (st == KILN_OK) st = kiln_op_elem_size(n, in[0]->dtype, &es, err);
    if (st != KILN_OK) return st;
    if (!in[1]->data) return KILN_DYNAMIC;
    int32_t axis;
    int64_t D, sel, dims[MAXR];
    if ((st = compress_params(n, in, &axis, &D, &sel, err)) != KILN_OK) return st;
    if (axis < 0) return set_out(n, out[0], in[0]->dtype, 1, &sel, err);
    memcpy(dims, in[0]->dims, sizeof dims);
    dims[axis] = sel;
    return set_out(n, out[0], in[0]->dtype, in[0]->rank, dims, err);
}

static kiln_status exec_compress(const struct kiln_node *n, struct kiln_exec_ctx *ctx,
                                 const struct kiln_value *const *in, int n_in,
                                 struct kiln_value *const *out, int n_out, kiln_error *err) {
    const struct kiln_value *x = in[0], *c = in[1];
    int32_t axis;
    int64_t D, sel;
    kiln_status st = compress_params(n, in, &axis, &D, &sel, err);
    if (st != KILN_OK) return st;
    int64_t es = (int64_t)kiln_dtype_size(x->dtype);
    int64_t outer = axis < 0 ? 1 : prod(x->dims, 0, axis);
    int64_t inner = (axis < 0 ? 1 : prod(x->dims, axis + 1, x->rank)) * es;
    int64_t lim = c->dims[0] < D ? c->dims[0] : D;
    char *dst = out[0]->data;
    for (int64_t o = 0; o < outer; o++)
        for (int64_t i = 0; i < lim; i++)
            if (kiln_value_get_f64(c, i) != 0) {
                memcpy(dst, (const char *)x->data + (o * D + i) * inner, (size_t)inner);
                dst += inner;
            }
    return KILN_OK;
}

/* ------------------------------------------------------------------------ */

const struct kiln_op_def kiln_ops_index[] = {
    {"Gather", "", 1, 0, infer_gather, exec_gather},
    {"GatherElements", "", 11, 0, infer_gather_elements, exec_gather_elements},
    {"GatherND", "", 11, 0, infer_gather_nd, exec_gather_nd},
    {"ScatterElements", "", 11, 0, infer_scatter_elements, exec_scatter_elements},
    {"Scatter", "", 9, 0, infer_scatter_elements, exec_scatter_elements},
    {"ScatterND", "", 11, 0, infer_scatter_nd, exec_scatter_nd},
    {"OneHot", "", 9, 0, infer_onehot, exec_onehot},
    {"NonZero", "", 9, 0, infer_nonzero, exec_nonzero},
    {"CumSum", "", 11, 0, infer_cumsum, exec_cumsum},
    {"ReverseSequence", "", 10, 0, infer_revseq, exec_revseq},
    {"Compress", "", 9, 0, infer_compress, exec_compress},
    {0},
};
