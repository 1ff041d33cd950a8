/* shape.c — shape and layout ops.
 *
 *   views       Reshape, Flatten, Squeeze, Unsqueeze, Identity, Dropout
 *               (inference; its mask is all ones). KILN_OP_VIEW: exec copies
 *               only when the executor did not alias.
 *   movement    Transpose, Concat, Split, Slice, Expand, Tile, Pad,
 *               DepthToSpace, SpaceToDepth, Trilu
 *   generators  Shape, Size, ConstantOfShape, Range, EyeLike, Constant
 *
 * All data movement goes through one strided-copy engine that merges
 * contiguous dimensions, copies contiguous inner runs with memcpy and uses a
 * blocked 2-D transpose when the innermost dimensions swap. Kernels move
 * bytes, so they work for every fixed-size dtype. */
#include "ops/op.h"

#include <math.h>
#include <stdlib.h>
#include <string.h>

#define MAXR KILN_MAX_RANK
#define SC_MAX (2 * KILN_MAX_RANK)   /* Tile iterates over two dims per axis */
#define PAR_BYTES ((int64_t)1 << 17) /* below this, threads cost more than they save */
#define TB 32                        /* transpose tile edge, in elements */

/* ------------------------------------------------------------------------ */
/* helpers                                                                  */

/* Checks an output shape from untrusted data: rank, non-negative dims, and a
 * byte size that fits in int64. */
static kiln_status check_dims(const struct kiln_node *n, kiln_dtype dt, int64_t rank,
                              const int64_t *dims, kiln_error *err) {
    if (rank < 0 || rank > MAXR)
        return kiln_op_fail(err, KILN_ERR_UNSUPPORTED, n, "expected output rank <= %d, got %lld",
                            MAXR, (long long)rank);
    int64_t total = (int64_t)(kiln_dtype_size(dt) ? kiln_dtype_size(dt) : 1);
    for (int64_t i = 0; i < rank; i++) {
        if (dims[i] < 0)
            return kiln_op_fail(err, KILN_ERR_SHAPE, n, "output dim %lld is negative (%lld)",
                                (long long)i, (long long)dims[i]);
        if (kiln_mul_overflow_i64(total, dims[i], &total))
            return kiln_op_fail(err, KILN_ERR_SHAPE, n, "output size overflows");
    }
    return KILN_OK;
}

static kiln_status set_out(const struct kiln_node *n, struct kiln_value *out, kiln_dtype dt,
                           int64_t rank, const int64_t *dims, kiln_error *err) {
    kiln_status st = check_dims(n, dt, rank, dims, err);
    if (st != KILN_OK) return st;
    kiln_value_set_shape(out, dt, (int32_t)rank, dims);
    return KILN_OK;
}

static int64_t numel_of(int32_t rank, const int64_t *dims) {
    int64_t c = 1;
    for (int32_t i = 0; i < rank; i++) c *= dims[i];
    return c;
}

/* Reads a 0-D or 1-D integer tensor (shape, axes, pads, repeats) into buf. */
static kiln_status read_ints(const struct kiln_node *n, const struct kiln_value *v,
                             const char *what, int64_t *buf, int64_t max, int64_t *count,
                             kiln_error *err) {
    if (!kiln_dtype_is_int(v->dtype))
        return kiln_op_fail(err, KILN_ERR_BAD_MODEL, n,
                            "expected '%s' as an integer tensor, got %s", what,
                            kiln_dtype_name(v->dtype));
    if (v->rank > 1)
        return kiln_op_fail(err, KILN_ERR_BAD_MODEL, n, "expected '%s' of rank 0 or 1, got rank %d",
                            what, v->rank);
    int64_t c = kiln_value_numel(v);
    if (c > max)
        return kiln_op_fail(err, KILN_ERR_UNSUPPORTED, n,
                            "expected at most %lld '%s' values, got %lld", (long long)max, what,
                            (long long)c);
    for (int64_t i = 0; i < c; i++) buf[i] = kiln_value_get_int(v, i);
    *count = c;
    return KILN_OK;
}

/* Reads an ints attribute into buf (at most max entries); *count = -1 when absent. */
static kiln_status attr_ints(const struct kiln_node *n, const char *name, int64_t *buf, int64_t max,
                             int64_t *count, kiln_error *err) {
    int64_t c;
    const int64_t *a = kiln_attr_ints(n, name, &c);
    if (!a && !kiln_attr_find(n, name)) {
        *count = -1;
        return KILN_OK;
    }
    if (c > max)
        return kiln_op_fail(err, KILN_ERR_UNSUPPORTED, n,
                            "expected at most %lld '%s' values, got %lld", (long long)max, name,
                            (long long)c);
    for (int64_t i = 0; i < c; i++) buf[i] = a[i];
    *count = c;
    return KILN_OK;
}

/* Row-major strides in bytes. */
static void byte_strides(int32_t rank, const int64_t *dims, size_t es, int64_t *st) {
    int64_t s = (int64_t)es;
    for (int32_t i = rank - 1; i >= 0; i--) {
        st[i] = s;
        s *= dims[i];
    }
}

static size_t value_bytes(const struct kiln_value *v) {
    size_t b = 0;
    return kiln_value_bytes(v, &b) ? b : 0;
}

/* exec re-derives parameters that infer validated; KILN_DYNAMIC there means
 * the executor ran the kernel without the data infer needed. */
static kiln_status late_fail(const struct kiln_node *n, kiln_status st, kiln_error *err) {
    if (st != KILN_DYNAMIC) return st;
    return kiln_op_fail(err, KILN_ERR_INTERNAL, n, "exec called before its inputs were known");
}

/* Copies input 0 into output 0 unless the executor aliased them. */
static void copy_through(const struct kiln_value *in, struct kiln_value *out) {
    size_t b = value_bytes(out);
    if (out->data != in->data && b) memcpy(out->data, in->data, b);
}

/* ------------------------------------------------------------------------ */
/* strided copy engine                                                       */

static inline __attribute__((always_inline)) void copy_elem(char *d, const char *s, size_t es) {
    memcpy(d, s, es);
}

static bool all_zero(const void *elem, size_t es) {
    for (size_t i = 0; i < es; i++)
        if (((const unsigned char *)elem)[i]) return false;
    return true;
}

/* Fills count elements of es bytes with the pattern at elem (one thread). */
static void fill_row(char *dst, int64_t count, const void *elem, size_t es) {
    if (all_zero(elem, es)) memset(dst, 0, (size_t)count * es);
    else
        for (int64_t i = 0; i < count; i++) memcpy(dst + i * (int64_t)es, elem, es);
}

static void fill_elems(char *dst, int64_t count, const void *elem, size_t es, int nt) {
    if (all_zero(elem, es)) {
        memset(dst, 0, (size_t)count * es);
        return;
    }
#pragma omp parallel for num_threads(nt) if (count * (int64_t)es > PAR_BYTES)
    for (int64_t i = 0; i < count; i++) memcpy(dst + i * (int64_t)es, elem, es);
}

static inline __attribute__((always_inline)) void
tile_block(char *dst, const char *src, int64_t ni, int64_t nj, int64_t D, int64_t S, size_t es) {
    /* dst[i*D + j*es] = src[i*es + j*S]: both sides stay in cache within a tile */
    for (int64_t i = 0; i < ni; i++)
        for (int64_t j = 0; j < nj; j++)
            copy_elem(dst + i * D + j * (int64_t)es, src + i * (int64_t)es + j * S, es);
}

static inline __attribute__((always_inline)) void line_copy(char *dst, const char *src, int64_t cnt,
                                                            int64_t ds, int64_t ss, size_t es) {
    for (int64_t i = 0; i < cnt; i++) copy_elem(dst + i * ds, src + i * ss, es);
}

/* Byte offsets of outer index t over the dims listed in idx. */
static void outer_offsets(int n_idx, const int *idx, const int64_t *d, const int64_t *ds,
                          const int64_t *ss, int64_t t, int64_t *doff, int64_t *soff) {
    int64_t a = 0, b = 0;
    for (int j = n_idx - 1; j >= 0; j--) {
        int k = idx[j];
        int64_t c = t % d[k];
        t /= d[k];
        a += c * ds[k];
        b += c * ss[k];
    }
    *doff = a;
    *soff = b;
}

/* dst[sum i_k*dst_st[k]] = src[sum i_k*src_st[k]] for every index in dims.
 * Strides are in bytes and may be 0 (broadcast) or negative (reversal). */
static void strided_copy(int rank, const int64_t *dims, char *dst, const int64_t *dst_st,
                         const char *src, const int64_t *src_st, size_t es, int nt) {
    int64_t d[SC_MAX], ds[SC_MAX], ss[SC_MAX];
    int r = 0;
    for (int i = 0; i < rank; i++) {
        if (dims[i] == 0) return;
        if (dims[i] == 1) continue;
        /* merge with the previous dim when both sides are contiguous across them */
        if (r > 0 && ds[r - 1] == dst_st[i] * dims[i] && ss[r - 1] == src_st[i] * dims[i]) {
            d[r - 1] *= dims[i];
            ds[r - 1] = dst_st[i];
            ss[r - 1] = src_st[i];
            continue;
        }
        d[r] = dims[i];
        ds[r] = dst_st[i];
        ss[r] = src_st[i];
        r++;
    }
    if (r == 0) {
        memcpy(dst, src, es);
        return;
    }
    int64_t total = 1;
    for (int i = 0; i < r; i++) total *= d[i];
    bool par = total * (int64_t)es > PAR_BYTES;
    int idx[SC_MAX], n_idx = 0;
    const int64_t ies = (int64_t)es;

    if (ds[r - 1] == ies && ss[r - 1] == ies) { /* contiguous inner runs */
        for (int i = 0; i < r - 1; i++) idx[n_idx++] = i;
        int64_t T = total / d[r - 1], run = d[r - 1] * ies;
#pragma omp parallel for num_threads(nt) if (par)
        for (int64_t t = 0; t < T; t++) {
            int64_t a, b;
            outer_offsets(n_idx, idx, d, ds, ss, t, &a, &b);
            memcpy(dst + a, src + b, (size_t)run);
        }
        return;
    }
    int k = -1;
    if (ds[r - 1] == ies)
        for (int i = 0; i < r - 1; i++)
            if (ss[i] == ies) k = i;
    if (k >= 0) { /* innermost dims swap: blocked 2-D transpose */
        for (int i = 0; i < r - 1; i++)
            if (i != k) idx[n_idx++] = i;
        int64_t ni = d[k], nj = d[r - 1], D = ds[k], S = ss[r - 1];
        int64_t nbi = (ni + TB - 1) / TB, nbj = (nj + TB - 1) / TB;
        int64_t T = total / (ni * nj);
#pragma omp parallel for num_threads(nt) if (par)
        for (int64_t t = 0; t < T * nbi * nbj; t++) {
            int64_t bj = t % nbj, bi = (t / nbj) % nbi, a, b;
            outer_offsets(n_idx, idx, d, ds, ss, t / (nbi * nbj), &a, &b);
            int64_t i0 = bi * TB, j0 = bj * TB;
            int64_t mi = ni - i0 < TB ? ni - i0 : TB, mj = nj - j0 < TB ? nj - j0 : TB;
            char *pd = dst + a + i0 * D + j0 * ies;
            const char *ps = src + b + i0 * ies + j0 * S;
            switch (es) {
            case 1: tile_block(pd, ps, mi, mj, D, S, 1); break;
            case 2: tile_block(pd, ps, mi, mj, D, S, 2); break;
            case 4: tile_block(pd, ps, mi, mj, D, S, 4); break;
            case 8: tile_block(pd, ps, mi, mj, D, S, 8); break;
            default: tile_block(pd, ps, mi, mj, D, S, es); break;
            }
        }
        return;
    }
    /* general: element loop along the innermost dim */
    for (int i = 0; i < r - 1; i++) idx[n_idx++] = i;
    int64_t T = total / d[r - 1], cnt = d[r - 1], lds = ds[r - 1], lss = ss[r - 1];
#pragma omp parallel for num_threads(nt) if (par)
    for (int64_t t = 0; t < T; t++) {
        int64_t a, b;
        outer_offsets(n_idx, idx, d, ds, ss, t, &a, &b);
        switch (es) {
        case 1: line_copy(dst + a, src + b, cnt, lds, lss, 1); break;
        case 2: line_copy(dst + a, src + b, cnt, lds, lss, 2); break;
        case 4: line_copy(dst + a, src + b, cnt, lds, lss, 4); break;
        case 8: line_copy(dst + a, src + b, cnt, lds, lss, 8); break;
        default: line_copy(dst + a, src + b, cnt, lds, lss, es); break;
        }
    }
}

/* out = transpose(in, perm) for a dense input of the given dims. */
static void permute_copy(int32_t rank, const int64_t *in_dims, const int64_t *perm, char *dst,
                         const char *src, size_t es, int nt) {
    int64_t ist[MAXR], od[MAXR], ss[MAXR], ds[MAXR];
    byte_strides(rank, in_dims, es, ist);
    for (int32_t i = 0; i < rank; i++) {
        od[i] = in_dims[perm[i]];
        ss[i] = ist[perm[i]];
    }
    byte_strides(rank, od, es, ds);
    strided_copy(rank, od, dst, ds, src, ss, es, nt);
}

/* ------------------------------------------------------------------------ */
/* views: Reshape, Flatten, Squeeze, Unsqueeze, Identity                    */

static kiln_status exec_view(const struct kiln_node *n, struct kiln_exec_ctx *ctx,
                             const struct kiln_value *const *in, int n_in,
                             struct kiln_value *const *out, int n_out, kiln_error *err) {
    copy_through(in[0], out[0]);
    return KILN_OK;
}

static kiln_status infer_identity(const struct kiln_node *n, const struct kiln_value *const *in,
                                  int n_in, struct kiln_value *const *out, int n_out,
                                  kiln_error *err) {
    kiln_status st = kiln_op_check_arity(n, n_in, 1, 1, err);
    size_t es;
    if (st == KILN_OK) st = kiln_op_elem_size(n, in[0]->dtype, &es, err);
    if (st != KILN_OK) return st;
    kiln_value_set_shape(out[0], in[0]->dtype, in[0]->rank, in[0]->dims);
    return KILN_OK;
}

static kiln_status infer_reshape(const struct kiln_node *n, const struct kiln_value *const *in,
                                 int n_in, struct kiln_value *const *out, int n_out,
                                 kiln_error *err) {
    int64_t shape[MAXR], cnt;
    kiln_status st;
    if (n->opset < 5) { /* Reshape-1: shape attribute */
        if ((st = kiln_op_check_arity(n, n_in, 1, 1, err)) != KILN_OK) return st;
        if ((st = attr_ints(n, "shape", shape, MAXR, &cnt, err)) != KILN_OK) return st;
        if (cnt < 0) return kiln_op_fail(err, KILN_ERR_BAD_MODEL, n, "missing 'shape' attribute");
    } else {
        if ((st = kiln_op_check_arity(n, n_in, 2, 2, err)) != KILN_OK) return st;
        if (!in[1]->data) return KILN_DYNAMIC;
        if ((st = read_ints(n, in[1], "shape", shape, MAXR, &cnt, err)) != KILN_OK) return st;
    }
    size_t es;
    if ((st = kiln_op_elem_size(n, in[0]->dtype, &es, err)) != KILN_OK) return st;
    bool allowzero = n->opset >= 14 && kiln_attr_int(n, "allowzero", 0) != 0;
    int64_t total = kiln_value_numel(in[0]), known = 1;
    int infer_at = -1;
    for (int64_t i = 0; i < cnt; i++) {
        if (shape[i] == 0 && !allowzero) {
            if (i >= in[0]->rank)
                return kiln_op_fail(
                    err, KILN_ERR_SHAPE, n,
                    "shape[%lld] = 0 copies an input dim, but the input has rank %d", (long long)i,
                    in[0]->rank);
            shape[i] = in[0]->dims[i];
        } else if (shape[i] == -1) {
            if (infer_at >= 0)
                return kiln_op_fail(err, KILN_ERR_BAD_MODEL, n, "expected at most one -1 in shape");
            infer_at = (int)i;
            continue;
        } else if (shape[i] < 0) {
            return kiln_op_fail(err, KILN_ERR_BAD_MODEL, n, "expected shape values >= -1, got %lld",
                                (long long)shape[i]);
        }
        if (kiln_mul_overflow_i64(known, shape[i], &known))
            return kiln_op_fail(err, KILN_ERR_SHAPE, n, "shape product overflows");
    }
    if (infer_at >= 0) {
        if (known == 0 && total != 0)
            return kiln_op_fail(err, KILN_ERR_SHAPE, n,
                                "cannot infer -1 dim with a zero dim in shape");
        shape[infer_at] = known == 0 ? 0 : total / known;
        known *= shape[infer_at];
    }
    if (known != total) {
        char s[128];
        kiln_shape_str(in[0], s, sizeof s);
        return kiln_op_fail(err, KILN_ERR_SHAPE, n,
                            "cannot reshape input %s (%lld elements) to %lld elements", s,
                            (long long)total, (long long)known);
    }
    return set_out(n, out[0], in[0]->dtype, cnt, shape, err);
}

static kiln_status infer_flatten(const struct kiln_node *n, const struct kiln_value *const *in,
                                 int n_in, struct kiln_value *const *out, int n_out,
                                 kiln_error *err) {
    kiln_status st = kiln_op_check_arity(n, n_in, 1, 1, err);
    size_t es;
    if (st == KILN_OK) st = kiln_op_elem_size(n, in[0]->dtype, &es, err);
    if (st != KILN_OK) return st;
    int32_t r = in[0]->rank;
    int64_t axis = kiln_attr_int(n, "axis", 1);
    if (axis < -(int64_t)r || axis > r)
        return kiln_op_fail(err, KILN_ERR_BAD_MODEL, n, "expected axis in [%d, %d], got %lld", -r,
                            r, (long long)axis);
    if (axis < 0) axis += r;
    int64_t dims[2] = {numel_of((int32_t)axis, in[0]->dims),
                       numel_of(r - (int32_t)axis, in[0]->dims + axis)};
    return set_out(n, out[0], in[0]->dtype, 2, dims, err);
}

static kiln_status infer_squeeze(const struct kiln_node *n, const struct kiln_value *const *in,
                                 int n_in, struct kiln_value *const *out, int n_out,
                                 kiln_error *err) {
    int64_t axes[MAXR], cnt = -1;
    kiln_status st = kiln_op_check_arity(n, n_in, 1, n->opset >= 13 ? 2 : 1, err);
    size_t es;
    if (st == KILN_OK) st = kiln_op_elem_size(n, in[0]->dtype, &es, err);
    if (st != KILN_OK) return st;
    if (n->opset < 13) {
        if ((st = attr_ints(n, "axes", axes, MAXR, &cnt, err)) != KILN_OK) return st;
    } else if (n_in > 1 && in[1]) {
        if (!in[1]->data) return KILN_DYNAMIC;
        if ((st = read_ints(n, in[1], "axes", axes, MAXR, &cnt, err)) != KILN_OK) return st;
        if (cnt == 0) cnt = -1; /* empty axes acts like absent axes, as in onnxruntime */
    }
    const struct kiln_value *x = in[0];
    bool drop[MAXR] = {0};
    if (cnt < 0) { /* no axes: drop every unit dim */
        for (int32_t i = 0; i < x->rank; i++) drop[i] = x->dims[i] == 1;
    }
    for (int64_t i = 0; i < cnt; i++) {
        int32_t a;
        if ((st = kiln_norm_axis(n, axes[i], x->rank, &a, err)) != KILN_OK) return st;
        if (x->dims[a] != 1)
            return kiln_op_fail(err, KILN_ERR_SHAPE, n,
                                "expected dim %d to be 1 to squeeze, got %lld", a,
                                (long long)x->dims[a]);
        if (drop[a]) return kiln_op_fail(err, KILN_ERR_BAD_MODEL, n, "axis %d repeated in axes", a);
        drop[a] = true;
    }
    int64_t dims[MAXR];
    int32_t r = 0;
    for (int32_t i = 0; i < x->rank; i++)
        if (!drop[i]) dims[r++] = x->dims[i];
    return set_out(n, out[0], x->dtype, r, dims, err);
}

static kiln_status infer_unsqueeze(const struct kiln_node *n, const struct kiln_value *const *in,
                                   int n_in, struct kiln_value *const *out, int n_out,
                                   kiln_error *err) {
    int64_t axes[MAXR], cnt = -1;
    kiln_status st = kiln_op_check_arity(n, n_in, n->opset >= 13 ? 2 : 1, n->opset >= 13 ? 2 : 1, err);
    size_t es;
    if (st == KILN_OK) st = kiln_op_elem_size(n, in[0]->dtype, &es, err);
    if (st != KILN_OK) return st;
    if (n->opset < 13) {
        if ((st = attr_ints(n, "axes", axes, MAXR, &cnt, err)) != KILN_OK) return st;
        if (cnt < 0) return kiln_op_fail(err, KILN_ERR_BAD_MODEL, n, "missing 'axes' attribute");
    } else {
        if (!in[1]->data) return KILN_DYNAMIC;
        if ((st = read_ints(n, in[1], "axes", axes, MAXR, &cnt, err)) != KILN_OK) return st;
    }
    const struct kiln_value *x = in[0];
    int64_t r = x->rank + cnt;
    if (r > MAXR)
        return kiln_op_fail(err, KILN_ERR_UNSUPPORTED, n, "expected output rank <= %d, got %lld",
                            MAXR, (long long)r);
    bool ins[MAXR] = {0};
    for (int64_t i = 0; i < cnt; i++) {
        int32_t a;
        if ((st = kiln_norm_axis(n, axes[i], (int32_t)r, &a, err)) != KILN_OK) return st;
        if (ins[a]) return kiln_op_fail(err, KILN_ERR_BAD_MODEL, n, "axis %d repeated in axes", a);
        ins[a] = true;
    }
    int64_t dims[MAXR];
    for (int32_t i = 0, j = 0; i < r; i++) dims[i] = ins[i] ? 1 : x->dims[j++];
    return set_out(n, out[0], x->dtype, r, dims, err);
}

/* ------------------------------------------------------------------------ */
/* Transpose                                                                 */

static kiln_status transpose_perm(const struct kiln_node *n, int32_t rank, int64_t *perm,
                                  kiln_error *err) {
    int64_t cnt;
    kiln_status st = attr_ints(n, "perm", perm, MAXR, &cnt, err);
    if (st != KILN_OK) return st;
    if (cnt < 0) {
        for (int32_t i = 0; i < rank; i++) perm[i] = rank - 1 - i;
        return KILN_OK;
    }
    if (cnt != rank)
        return kiln_op_fail(err, KILN_ERR_BAD_MODEL, n, "expected %d perm entries, got %lld", rank,
                            (long long)cnt);
    bool seen[MAXR] = {0};
    for (int32_t i = 0; i < rank; i++) {
        if (perm[i] < 0 || perm[i] >= rank || seen[perm[i]])
            return kiln_op_fail(err, KILN_ERR_BAD_MODEL, n, "perm is not a permutation of 0..%d",
                                rank - 1);
        seen[perm[i]] = true;
    }
    return KILN_OK;
}

static kiln_status infer_transpose(const struct kiln_node *n, const struct kiln_value *const *in,
                                   int n_in, struct kiln_value *const *out, int n_out,
                                   kiln_error *err) {
    int64_t perm[MAXR], dims[MAXR];
    size_t es;
    kiln_status st = kiln_op_check_arity(n, n_in, 1, 1, err);
    if (st == KILN_OK) st = kiln_op_elem_size(n, in[0]->dtype, &es, err);
    if (st == KILN_OK) st = transpose_perm(n, in[0]->rank, perm, err);
    if (st != KILN_OK) return st;
    for (int32_t i = 0; i < in[0]->rank; i++) dims[i] = in[0]->dims[perm[i]];
    return set_out(n, out[0], in[0]->dtype, in[0]->rank, dims, err);
}

static kiln_status exec_transpose(const struct kiln_node *n, struct kiln_exec_ctx *ctx,
                                  const struct kiln_value *const *in, int n_in,
                                  struct kiln_value *const *out, int n_out, kiln_error *err) {
    int64_t perm[MAXR];
    kiln_status st = transpose_perm(n, in[0]->rank, perm, err);
    if (st != KILN_OK) return st;
    permute_copy(in[0]->rank, in[0]->dims, perm, out[0]->data, in[0]->data,
                 kiln_dtype_size(in[0]->dtype), kiln_op_threads(ctx));
    return KILN_OK;
}

/* ------------------------------------------------------------------------ */
/* Concat, Split                                                             */

static kiln_status infer_concat(const struct kiln_node *n, const struct kiln_value *const *in,
                                int n_in, struct kiln_value *const *out, int n_out,
                                kiln_error *err) {
    if (n_in < 1)
        return kiln_op_fail(err, KILN_ERR_BAD_MODEL, n, "expected at least 1 input, got 0");
    for (int i = 0; i < n_in; i++)
        if (!in[i]) return kiln_op_fail(err, KILN_ERR_BAD_MODEL, n, "input %d is missing", i);
    size_t es;
    kiln_status st = kiln_op_elem_size(n, in[0]->dtype, &es, err);
    if (st != KILN_OK) return st;
    if (n->opset >= 4 && !kiln_attr_find(n, "axis"))
        return kiln_op_fail(err, KILN_ERR_BAD_MODEL, n, "missing 'axis' attribute");
    int32_t axis, r = in[0]->rank;
    if ((st = kiln_norm_axis(n, kiln_attr_int(n, "axis", 1), r, &axis, err)) != KILN_OK) return st;
    int64_t dims[MAXR];
    memcpy(dims, in[0]->dims, sizeof dims);
    dims[axis] = 0;
    for (int i = 0; i < n_in; i++) {
        const struct kiln_value *v = in[i];
        if (v->dtype != in[0]->dtype)
            return kiln_op_fail(err, KILN_ERR_SHAPE, n, "expected input %d of dtype %s, got %s", i,
                                kiln_dtype_name(in[0]->dtype), kiln_dtype_name(v->dtype));
        bool ok = v->rank == r;
        for (int32_t k = 0; ok && k < r; k++) ok = k == axis || v->dims[k] == in[0]->dims[k];
        if (!ok) {
            char s0[128], si[128];
            kiln_shape_str(in[0], s0, sizeof s0);
            kiln_shape_str(v, si, sizeof si);
            return kiln_op_fail(err, KILN_ERR_SHAPE, n,
                                "input %d has shape %s, incompatible with input 0 %s on axis %d", i,
                                si, s0, axis);
        }
        if (__builtin_add_overflow(dims[axis], v->dims[axis], &dims[axis]))
            return kiln_op_fail(err, KILN_ERR_SHAPE, n, "output size overflows");
    }
    return set_out(n, out[0], in[0]->dtype, r, dims, err);
}

static kiln_status exec_concat(const struct kiln_node *n, struct kiln_exec_ctx *ctx,
                               const struct kiln_value *const *in, int n_in,
                               struct kiln_value *const *out, int n_out, kiln_error *err) {
    int32_t axis, r = out[0]->rank;
    kiln_status st = kiln_norm_axis(n, kiln_attr_int(n, "axis", 1), r, &axis, err);
    if (st != KILN_OK) return st;
    size_t es = kiln_dtype_size(out[0]->dtype);
    int64_t ost[MAXR], ist[MAXR], off = 0;
    byte_strides(r, out[0]->dims, es, ost);
    for (int i = 0; i < n_in; i++) {
        byte_strides(r, in[i]->dims, es, ist);
        strided_copy(r, in[i]->dims, (char *)out[0]->data + off * ost[axis], ost, in[i]->data, ist,
                     es, kiln_op_threads(ctx));
        off += in[i]->dims[axis];
    }
    return KILN_OK;
}

/* Offset and length of Split output i along the axis. */
static kiln_status split_part(const struct kiln_node *n, const struct kiln_value *const *in,
                              int n_in, int n_out, int32_t axis, int i, int64_t *off, int64_t *len,
                              kiln_error *err) {
    int64_t D = in[0]->dims[axis];
    const struct kiln_value *sv = n_in > 1 ? in[1] : NULL;
    if (sv && sv->data && kiln_value_numel(sv) == 0) sv = NULL; /* empty split: equal parts */
    int64_t acnt;
    const int64_t *a = n->opset < 13 ? kiln_attr_ints(n, "split", &acnt) : NULL;
    if (a || sv) {
        if (!a && !sv->data) return KILN_DYNAMIC;
        if (!a && !kiln_dtype_is_int(sv->dtype))
            return kiln_op_fail(err, KILN_ERR_BAD_MODEL, n, "expected integer 'split', got %s",
                                kiln_dtype_name(sv->dtype));
        int64_t cnt = a ? acnt : kiln_value_numel(sv), sum = 0;
        if (cnt != n_out)
            return kiln_op_fail(err, KILN_ERR_BAD_MODEL, n, "expected %d 'split' values, got %lld",
                                n_out, (long long)cnt);
        for (int64_t k = 0; k < cnt; k++) {
            int64_t s = a ? a[k] : kiln_value_get_int(sv, k);
            if (s < 0 || s > D - sum)
                return kiln_op_fail(err, KILN_ERR_SHAPE, n,
                                    "'split' values must be >= 0 and sum to %lld (dim %d)",
                                    (long long)D, axis);
            if (k == i) {
                *off = sum;
                *len = s;
            }
            sum += s;
        }
        if (sum != D)
            return kiln_op_fail(err, KILN_ERR_SHAPE, n, "expected 'split' to sum to %lld, got %lld",
                                (long long)D, (long long)sum);
        return KILN_OK;
    }
    int64_t num = kiln_attr_int(n, "num_outputs", n_out);
    if (num != n_out)
        return kiln_op_fail(err, KILN_ERR_BAD_MODEL, n,
                            "num_outputs is %lld but the node has %d outputs", (long long)num,
                            n_out);
    if (n->opset < 18 && D % n_out != 0)
        return kiln_op_fail(err, KILN_ERR_SHAPE, n, "dim %lld does not split into %d equal parts",
                            (long long)D, n_out);
    int64_t chunk = (D + n_out - 1) / n_out, start = chunk * i;
    *off = start < D ? start : D;
    *len = start >= D ? 0 : (D - start < chunk ? D - start : chunk);
    return KILN_OK;
}

static kiln_status split_axis(const struct kiln_node *n, const struct kiln_value *const *in,
                              int n_in, int32_t *axis, kiln_error *err) {
    return kiln_norm_axis(n, kiln_attr_int(n, "axis", 0), in[0]->rank, axis, err);
}

static kiln_status infer_split(const struct kiln_node *n, const struct kiln_value *const *in,
                               int n_in, struct kiln_value *const *out, int n_out,
                               kiln_error *err) {
    kiln_status st = kiln_op_check_arity(n, n_in, 1, 2, err);
    size_t es;
    int32_t axis;
    if (st == KILN_OK) st = kiln_op_elem_size(n, in[0]->dtype, &es, err);
    if (st == KILN_OK) st = split_axis(n, in, n_in, &axis, err);
    if (st != KILN_OK) return st;
    if (n_out < 1) return kiln_op_fail(err, KILN_ERR_BAD_MODEL, n, "expected at least 1 output");
    for (int i = 0; i < n_out; i++) {
        int64_t off, len, dims[MAXR];
        if ((st = split_part(n, in, n_in, n_out, axis, i, &off, &len, err)) != KILN_OK) return st;
        if (!out[i]) continue;
        memcpy(dims, in[0]->dims, sizeof dims);
        dims[axis] = len;
        kiln_value_set_shape(out[i], in[0]->dtype, in[0]->rank, dims);
    }
    return KILN_OK;
}

static kiln_status exec_split(const struct kiln_node *n, struct kiln_exec_ctx *ctx,
                              const struct kiln_value *const *in, int n_in,
                              struct kiln_value *const *out, int n_out, kiln_error *err) {
    int32_t axis, r = in[0]->rank;
    kiln_status st = split_axis(n, in, n_in, &axis, err);
    if (st != KILN_OK) return st;
    size_t es = kiln_dtype_size(in[0]->dtype);
    int64_t ist[MAXR], ost[MAXR];
    byte_strides(r, in[0]->dims, es, ist);
    for (int i = 0; i < n_out; i++) {
        int64_t off, len;
        if ((st = split_part(n, in, n_in, n_out, axis, i, &off, &len, err)) != KILN_OK)
            return late_fail(n, st, err);
        if (!out[i]) continue;
        byte_strides(r, out[i]->dims, es, ost);
        strided_copy(r, out[i]->dims, out[i]->data, ost,
                     (const char *)in[0]->data + off * ist[axis], ist, es, kiln_op_threads(ctx));
    }
    return KILN_OK;
}

/* ------------------------------------------------------------------------ */
/* Slice                                                                     */

struct slice_p {
    int64_t start[MAXR], step[MAXR], count[MAXR];
};

/* Reads starts/ends/axes/steps (attributes before opset 10, inputs after)
 * and resolves them to a start, step and count per axis. */
static kiln_status slice_params(const struct kiln_node *n, const struct kiln_value *const *in,
                                int n_in, struct slice_p *p, kiln_error *err) {
    const struct kiln_value *x = in[0];
    int64_t starts[MAXR], ends[MAXR], axes[MAXR], steps[MAXR], cs, ce, ca = -1, cp = -1;
    kiln_status st;
    if (n->opset < 10) {
        if ((st = kiln_op_check_arity(n, n_in, 1, 1, err)) != KILN_OK) return st;
        if ((st = attr_ints(n, "starts", starts, MAXR, &cs, err)) != KILN_OK ||
            (st = attr_ints(n, "ends", ends, MAXR, &ce, err)) != KILN_OK ||
            (st = attr_ints(n, "axes", axes, MAXR, &ca, err)) != KILN_OK)
            return st;
        if (cs < 0 || ce < 0)
            return kiln_op_fail(err, KILN_ERR_BAD_MODEL, n, "missing 'starts' or 'ends' attribute");
    } else {
        if ((st = kiln_op_check_arity(n, n_in, 3, 5, err)) != KILN_OK) return st;
        for (int i = 1; i < n_in; i++)
            if (in[i] && !in[i]->data) return KILN_DYNAMIC;
        if ((st = read_ints(n, in[1], "starts", starts, MAXR, &cs, err)) != KILN_OK ||
            (st = read_ints(n, in[2], "ends", ends, MAXR, &ce, err)) != KILN_OK)
            return st;
        if (n_in > 3 && in[3] &&
            (st = read_ints(n, in[3], "axes", axes, MAXR, &ca, err)) != KILN_OK)
            return st;
        if (n_in > 4 && in[4] &&
            (st = read_ints(n, in[4], "steps", steps, MAXR, &cp, err)) != KILN_OK)
            return st;
    }
    if (ce != cs || (ca >= 0 && ca != cs) || (cp >= 0 && cp != cs))
        return kiln_op_fail(err, KILN_ERR_BAD_MODEL, n,
                            "expected starts, ends, axes and steps of equal length");
    bool seen[MAXR] = {0};
    for (int32_t i = 0; i < x->rank; i++) {
        p->start[i] = 0;
        p->step[i] = 1;
        p->count[i] = x->dims[i];
    }
    for (int64_t i = 0; i < cs; i++) {
        int32_t a;
        if ((st = kiln_norm_axis(n, ca >= 0 ? axes[i] : i, x->rank, &a, err)) != KILN_OK) return st;
        if (seen[a]) return kiln_op_fail(err, KILN_ERR_BAD_MODEL, n, "axis %d repeated in axes", a);
        seen[a] = true;
        int64_t d = x->dims[a], s = starts[i], e = ends[i], k = cp >= 0 ? steps[i] : 1, c = 0;
        if (k == 0) return kiln_op_fail(err, KILN_ERR_BAD_MODEL, n, "step for axis %d is 0", a);
        if (s < 0) s += d;
        if (e < 0) e += d;
        if (d == 0) {
            s = 0; /* nothing to select; negative-step clamping below assumes d >= 1 */
        } else if (k > 0) {
            s = s < 0 ? 0 : (s > d ? d : s);
            e = e < 0 ? 0 : (e > d ? d : e);
            if (e > s) c = (e - s - 1) / k + 1;
        } else {
            s = s < 0 ? 0 : (s > d - 1 ? d - 1 : s);
            e = e < -1 ? -1 : (e > d - 1 ? d - 1 : e);
            if (s > e) c = (int64_t)((uint64_t)(s - e - 1) / ((uint64_t)0 - (uint64_t)k)) + 1;
        }
        if (c <= 1) k = 1; /* step is irrelevant; keeps stride math from overflowing */
        p->start[a] = c > 0 ? s : 0;
        p->step[a] = k;
        p->count[a] = c;
    }
    return KILN_OK;
}

static kiln_status infer_slice(const struct kiln_node *n, const struct kiln_value *const *in,
                               int n_in, struct kiln_value *const *out, int n_out,
                               kiln_error *err) {
    struct slice_p p;
    size_t es;
    if (n_in < 1 || !in[0]) return kiln_op_fail(err, KILN_ERR_BAD_MODEL, n, "missing input 0");
    kiln_status st = kiln_op_elem_size(n, in[0]->dtype, &es, err);
    if (st == KILN_OK) st = slice_params(n, in, n_in, &p, err);
    if (st != KILN_OK) return st;
    return set_out(n, out[0], in[0]->dtype, in[0]->rank, p.count, err);
}

static kiln_status exec_slice(const struct kiln_node *n, struct kiln_exec_ctx *ctx,
                              const struct kiln_value *const *in, int n_in,
                              struct kiln_value *const *out, int n_out, kiln_error *err) {
    struct slice_p p;
    kiln_status st = slice_params(n, in, n_in, &p, err);
    if (st != KILN_OK) return late_fail(n, st, err);
    int32_t r = in[0]->rank;
    size_t es = kiln_dtype_size(in[0]->dtype);
    int64_t ist[MAXR], ss[MAXR], ds[MAXR], off = 0;
    byte_strides(r, in[0]->dims, es, ist);
    byte_strides(r, p.count, es, ds);
    for (int32_t i = 0; i < r; i++) {
        off += p.start[i] * ist[i];
        ss[i] = ist[i] * p.step[i];
    }
    if (numel_of(r, p.count) == 0) return KILN_OK;
    strided_copy(r, p.count, out[0]->data, ds, (const char *)in[0]->data + off, ss, es,
                 kiln_op_threads(ctx));
    return KILN_OK;
}

/* ------------------------------------------------------------------------ */
/* Expand, Tile                                                              */

static kiln_status infer_expand(const struct kiln_node *n, const struct kiln_value *const *in,
                                int n_in, struct kiln_value *const *out, int n_out,
                                kiln_error *err) {
    kiln_status st = kiln_op_check_arity(n, n_in, 2, 2, err);
    size_t es;
    if (st == KILN_OK) st = kiln_op_elem_size(n, in[0]->dtype, &es, err);
    if (st != KILN_OK) return st;
    if (!in[1]->data) return KILN_DYNAMIC;
    struct kiln_value shp = {.dtype = in[0]->dtype};
    int64_t cnt, dims[MAXR];
    if ((st = read_ints(n, in[1], "shape", shp.dims, MAXR, &cnt, err)) != KILN_OK) return st;
    shp.rank = (int32_t)cnt;
    for (int64_t i = 0; i < cnt; i++)
        if (shp.dims[i] < 0)
            return kiln_op_fail(err, KILN_ERR_SHAPE, n, "expected shape values >= 0, got %lld",
                                (long long)shp.dims[i]);
    int32_t r;
    if ((st = kiln_broadcast_shape(n, in[0], &shp, &r, dims, err)) != KILN_OK) return st;
    return set_out(n, out[0], in[0]->dtype, r, dims, err);
}

static kiln_status exec_expand(const struct kiln_node *n, struct kiln_exec_ctx *ctx,
                               const struct kiln_value *const *in, int n_in,
                               struct kiln_value *const *out, int n_out, kiln_error *err) {
    const struct kiln_value *x = in[0];
    int32_t R = out[0]->rank, r = x->rank;
    size_t es = kiln_dtype_size(x->dtype);
    int64_t ist[MAXR], ss[MAXR], ds[MAXR];
    byte_strides(r, x->dims, es, ist);
    byte_strides(R, out[0]->dims, es, ds);
    for (int32_t i = 0; i < R; i++) {
        int32_t k = i - (R - r);
        ss[i] = (k >= 0 && x->dims[k] != 1) ? ist[k] : 0; /* stride 0 repeats a unit dim */
    }
    strided_copy(R, out[0]->dims, out[0]->data, ds, x->data, ss, es, kiln_op_threads(ctx));
    return KILN_OK;
}

static kiln_status tile_repeats(const struct kiln_node *n, const struct kiln_value *const *in,
                                int64_t *rep, kiln_error *err) {
    int64_t cnt;
    kiln_status st = read_ints(n, in[1], "repeats", rep, MAXR, &cnt, err);
    if (st != KILN_OK) return st;
    if (cnt != in[0]->rank)
        return kiln_op_fail(err, KILN_ERR_SHAPE, n, "expected %d repeats (input rank), got %lld",
                            in[0]->rank, (long long)cnt);
    for (int64_t i = 0; i < cnt; i++)
        if (rep[i] < 0)
            return kiln_op_fail(err, KILN_ERR_SHAPE, n, "expected repeats >= 0, got %lld",
                                (long long)rep[i]);
    return KILN_OK;
}

static kiln_status infer_tile(const struct kiln_node *n, const struct kiln_value *const *in,
                              int n_in, struct kiln_value *const *out, int n_out, kiln_error *err) {
    kiln_status st = kiln_op_check_arity(n, n_in, 2, 2, err);
    size_t es;
    if (st == KILN_OK) st = kiln_op_elem_size(n, in[0]->dtype, &es, err);
    if (st != KILN_OK) return st;
    if (!in[1]->data) return KILN_DYNAMIC;
    int64_t rep[MAXR], dims[MAXR];
    if ((st = tile_repeats(n, in, rep, err)) != KILN_OK) return st;
    for (int32_t i = 0; i < in[0]->rank; i++)
        if (kiln_mul_overflow_i64(in[0]->dims[i], rep[i], &dims[i]))
            return kiln_op_fail(err, KILN_ERR_SHAPE, n, "output size overflows");
    return set_out(n, out[0], in[0]->dtype, in[0]->rank, dims, err);
}

static kiln_status exec_tile(const struct kiln_node *n, struct kiln_exec_ctx *ctx,
                             const struct kiln_value *const *in, int n_in,
                             struct kiln_value *const *out, int n_out, kiln_error *err) {
    const struct kiln_value *x = in[0];
    int32_t r = x->rank;
    size_t es = kiln_dtype_size(x->dtype);
    int64_t ist[MAXR], ost[MAXR], d[SC_MAX], ds[SC_MAX], ss[SC_MAX];
    byte_strides(r, x->dims, es, ist);
    byte_strides(r, out[0]->dims, es, ost);
    /* view each output axis as [repeat, dim]: the repeat index does not move the source */
    for (int32_t i = 0; i < r; i++) {
        d[2 * i] = x->dims[i] ? out[0]->dims[i] / x->dims[i] : 0;
        ds[2 * i] = ost[i] * x->dims[i];
        ss[2 * i] = 0;
        d[2 * i + 1] = x->dims[i];
        ds[2 * i + 1] = ost[i];
        ss[2 * i + 1] = ist[i];
    }
    strided_copy(2 * r, d, out[0]->data, ds, x->data, ss, es, kiln_op_threads(ctx));
    return KILN_OK;
}

/* ------------------------------------------------------------------------ */
/* Pad                                                                       */

enum { PAD_CONSTANT, PAD_REFLECT, PAD_EDGE, PAD_WRAP };

struct pad_p {
    int mode;
    int64_t pb[MAXR], pe[MAXR];
    unsigned char value[16]; /* the constant, in the data's dtype */
};

static kiln_status pad_params(const struct kiln_node *n, const struct kiln_value *const *in,
                              int n_in, struct pad_p *p, kiln_error *err) {
    const struct kiln_value *x = in[0];
    int32_t r = x->rank;
    int64_t pads[2 * MAXR], axes[MAXR], cnt, na = -1;
    kiln_status st;
    memset(p, 0, sizeof *p);
    const char *mode = kiln_attr_string(n, "mode", "constant");
    if (strcmp(mode, "constant") == 0) p->mode = PAD_CONSTANT;
    else if (strcmp(mode, "reflect") == 0) p->mode = PAD_REFLECT;
    else if (strcmp(mode, "edge") == 0) p->mode = PAD_EDGE;
    else if (strcmp(mode, "wrap") == 0) p->mode = PAD_WRAP;
    else return kiln_op_fail(err, KILN_ERR_UNSUPPORTED, n, "pad mode '%s' is not supported", mode);
    if (n->opset < 11) {
        if ((st = kiln_op_check_arity(n, n_in, 1, 1, err)) != KILN_OK) return st;
        if ((st = attr_ints(n, n->opset < 2 ? "paddings" : "pads", pads, 2 * MAXR, &cnt, err)) !=
            KILN_OK)
            return st;
        if (cnt < 0) return kiln_op_fail(err, KILN_ERR_BAD_MODEL, n, "missing 'pads' attribute");
        struct kiln_value v = {.dtype = x->dtype, .data = p->value};
        kiln_value_set_f64(&v, 0, kiln_attr_float(n, "value", 0.0f));
    } else {
        if ((st = kiln_op_check_arity(n, n_in, 2, 4, err)) != KILN_OK) return st;
        for (int i = 1; i < n_in; i++)
            if (in[i] && !in[i]->data) return KILN_DYNAMIC;
        if ((st = read_ints(n, in[1], "pads", pads, 2 * MAXR, &cnt, err)) != KILN_OK) return st;
        if (n_in > 2 && in[2] && kiln_value_numel(in[2]) > 0) {
            if (in[2]->dtype != x->dtype)
                return kiln_op_fail(err, KILN_ERR_SHAPE, n,
                                    "expected constant_value of dtype %s, got %s",
                                    kiln_dtype_name(x->dtype), kiln_dtype_name(in[2]->dtype));
            memcpy(p->value, in[2]->data, kiln_dtype_size(x->dtype));
        }
        if (n_in > 3 && in[3] &&
            (st = read_ints(n, in[3], "axes", axes, MAXR, &na, err)) != KILN_OK)
            return st;
    }
    if (na < 0) {
        na = r;
        for (int32_t i = 0; i < r; i++) axes[i] = i;
    }
    if (cnt != 2 * na)
        return kiln_op_fail(err, KILN_ERR_BAD_MODEL, n, "expected %lld pads, got %lld",
                            (long long)(2 * na), (long long)cnt);
    bool seen[MAXR] = {0};
    for (int64_t i = 0; i < na; i++) {
        int32_t a;
        if ((st = kiln_norm_axis(n, axes[i], r, &a, err)) != KILN_OK) return st;
        if (seen[a]) return kiln_op_fail(err, KILN_ERR_BAD_MODEL, n, "axis %d repeated in axes", a);
        seen[a] = true;
        p->pb[a] = pads[i];
        p->pe[a] = pads[i + na];
    }
    return KILN_OK;
}

static kiln_status infer_pad(const struct kiln_node *n, const struct kiln_value *const *in,
                             int n_in, struct kiln_value *const *out, int n_out, kiln_error *err) {
    struct pad_p p;
    size_t es;
    if (n_in < 1 || !in[0]) return kiln_op_fail(err, KILN_ERR_BAD_MODEL, n, "missing input 0");
    kiln_status st = kiln_op_elem_size(n, in[0]->dtype, &es, err);
    if (st == KILN_OK) st = pad_params(n, in, n_in, &p, err);
    if (st != KILN_OK) return st;
    int64_t dims[MAXR];
    for (int32_t i = 0; i < in[0]->rank; i++) {
        int64_t d = in[0]->dims[i];
        if (__builtin_add_overflow(d, p.pb[i], &dims[i]) ||
            __builtin_add_overflow(dims[i], p.pe[i], &dims[i]) || dims[i] < 0)
            return kiln_op_fail(err, KILN_ERR_SHAPE, n,
                                "pads %lld, %lld on dim %d of size %lld give an invalid size",
                                (long long)p.pb[i], (long long)p.pe[i], i, (long long)d);
        if (d == 0 && dims[i] > 0 && p.mode != PAD_CONSTANT)
            return kiln_op_fail(err, KILN_ERR_SHAPE, n, "cannot pad empty dim %d in mode '%s'", i,
                                kiln_attr_string(n, "mode", "constant"));
    }
    return set_out(n, out[0], in[0]->dtype, in[0]->rank, dims, err);
}

/* Source index for output coordinate o, or -1 for the constant. */
static inline int64_t pad_src(int mode, int64_t o, int64_t pb, int64_t d) {
    int64_t x = o - pb;
    if (x >= 0 && x < d) return x;
    switch (mode) {
    case PAD_EDGE: return x < 0 ? 0 : d - 1;
    case PAD_WRAP: x %= d; return x < 0 ? x + d : x;
    case PAD_REFLECT: {
        if (d == 1) return 0;
        int64_t period = 2 * (d - 1);
        x %= period;
        if (x < 0) x += period;
        return x >= d ? period - x : x;
    }
    default: return -1;
    }
}

static kiln_status exec_pad(const struct kiln_node *n, struct kiln_exec_ctx *ctx,
                            const struct kiln_value *const *in, int n_in,
                            struct kiln_value *const *out, int n_out, kiln_error *err) {
    struct pad_p p;
    kiln_status st = pad_params(n, in, n_in, &p, err);
    if (st != KILN_OK) return late_fail(n, st, err);
    const struct kiln_value *x = in[0];
    int32_t r = x->rank;
    size_t es = kiln_dtype_size(x->dtype);
    int64_t total = kiln_value_numel(out[0]);
    if (total == 0) return KILN_OK;
    if (r == 0) {
        memcpy(out[0]->data, x->data, es);
        return KILN_OK;
    }
    const int64_t *od = out[0]->dims, *id = x->dims;
    int64_t ist[MAXR], W = od[r - 1], rows = total / W, d = id[r - 1], pb = p.pb[r - 1];
    byte_strides(r, id, es, ist);
    /* columns [c0, c1) of each row copy a contiguous run of the source row */
    int64_t c0 = pb > 0 ? pb : 0, c1 = pb + d < W ? pb + d : W;
    if (c1 < c0) c1 = c0;
    const char *src = x->data;
    char *dst = out[0]->data;
    int64_t ies = (int64_t)es;
#pragma omp parallel for num_threads(kiln_op_threads(ctx)) if (total * ies > PAR_BYTES)
    for (int64_t row = 0; row < rows; row++) {
        char *drow = dst + row * W * ies;
        int64_t t = row, soff = 0;
        bool constant = false;
        for (int32_t a = r - 2; a >= 0; a--) {
            int64_t s = pad_src(p.mode, t % od[a], p.pb[a], id[a]);
            t /= od[a];
            if (s < 0) constant = true;
            else soff += s * ist[a];
        }
        if (constant) {
            fill_row(drow, W, p.value, es);
            continue;
        }
        const char *srow = src + soff;
        if (c1 > c0) memcpy(drow + c0 * ies, srow + (c0 - pb) * ies, (size_t)((c1 - c0) * ies));
        for (int64_t j = 0; j < W; j++) {
            if (j == c0 && c1 > c0) j = c1;
            if (j >= W) break;
            int64_t s = pad_src(p.mode, j, pb, d);
            memcpy(drow + j * ies, s < 0 ? (const char *)p.value : srow + s * ies, es);
        }
    }
    return KILN_OK;
}

/* ------------------------------------------------------------------------ */
/* DepthToSpace, SpaceToDepth                                                */

static kiln_status d2s_check(const struct kiln_node *n, const struct kiln_value *const *in,
                             int n_in, int64_t *b, kiln_error *err) {
    kiln_status st = kiln_op_check_arity(n, n_in, 1, 1, err);
    size_t es;
    if (st == KILN_OK) st = kiln_op_elem_size(n, in[0]->dtype, &es, err);
    if (st != KILN_OK) return st;
    if (in[0]->rank != 4)
        return kiln_op_fail(err, KILN_ERR_SHAPE, n, "expected a rank-4 input, got rank %d",
                            in[0]->rank);
    *b = kiln_attr_int(n, "blocksize", 0);
    if (*b <= 0 || *b > (1 << 20))
        return kiln_op_fail(err, KILN_ERR_BAD_MODEL, n, "expected blocksize > 0, got %lld",
                            (long long)*b);
    return KILN_OK;
}

static bool d2s_crd(const struct kiln_node *n) {
    return strcmp(kiln_attr_string(n, "mode", "DCR"), "CRD") == 0;
}

static kiln_status infer_d2s(const struct kiln_node *n, const struct kiln_value *const *in,
                             int n_in, struct kiln_value *const *out, int n_out, kiln_error *err) {
    int64_t b;
    kiln_status st = d2s_check(n, in, n_in, &b, err);
    if (st != KILN_OK) return st;
    const char *mode = kiln_attr_string(n, "mode", "DCR");
    if (strcmp(mode, "DCR") != 0 && strcmp(mode, "CRD") != 0)
        return kiln_op_fail(err, KILN_ERR_BAD_MODEL, n, "expected mode DCR or CRD, got '%s'", mode);
    const int64_t *d = in[0]->dims;
    if (d[1] % (b * b) != 0)
        return kiln_op_fail(err, KILN_ERR_SHAPE, n,
                            "channels %lld not divisible by blocksize^2 %lld", (long long)d[1],
                            (long long)(b * b));
    int64_t dims[4] = {d[0], d[1] / (b * b), 0, 0};
    if (kiln_mul_overflow_i64(d[2], b, &dims[2]) || kiln_mul_overflow_i64(d[3], b, &dims[3]))
        return kiln_op_fail(err, KILN_ERR_SHAPE, n, "output size overflows");
    return set_out(n, out[0], in[0]->dtype, 4, dims, err);
}

static kiln_status exec_d2s(const struct kiln_node *n, struct kiln_exec_ctx *ctx,
                            const struct kiln_value *const *in, int n_in,
                            struct kiln_value *const *out, int n_out, kiln_error *err) {
    const int64_t *d = in[0]->dims;
    int64_t b = kiln_attr_int(n, "blocksize", 1), C = d[1], H = d[2], W = d[3], Co = C / (b * b);
    int64_t HW = H * W, ies = (int64_t)kiln_dtype_size(in[0]->dtype);
    /* iterate the output as [N, C', H, b, W, b]; source channel depends on the mode */
    int64_t it[6] = {d[0], Co, H, b, W, b}, ds[6], ss[6];
    byte_strides(6, it, (size_t)ies, ds);
    if (d2s_crd(n)) { /* channel = c*b*b + b1*b + b2 */
        int64_t s[6] = {C * HW, b * b * HW, W, b * HW, 1, HW};
        memcpy(ss, s, sizeof s);
    } else { /* channel = (b1*b + b2)*C' + c */
        int64_t s[6] = {C * HW, HW, W, b * Co * HW, 1, Co * HW};
        memcpy(ss, s, sizeof s);
    }
    for (int i = 0; i < 6; i++) ss[i] *= ies;
    strided_copy(6, it, out[0]->data, ds, in[0]->data, ss, (size_t)ies, kiln_op_threads(ctx));
    return KILN_OK;
}

static kiln_status infer_s2d(const struct kiln_node *n, const struct kiln_value *const *in,
                             int n_in, struct kiln_value *const *out, int n_out, kiln_error *err) {
    int64_t b;
    kiln_status st = d2s_check(n, in, n_in, &b, err);
    if (st != KILN_OK) return st;
    const int64_t *d = in[0]->dims;
    if (d[2] % b != 0 || d[3] % b != 0)
        return kiln_op_fail(err, KILN_ERR_SHAPE, n,
                            "spatial dims %lldx%lld not divisible by blocksize %lld",
                            (long long)d[2], (long long)d[3], (long long)b);
    int64_t dims[4] = {d[0], 0, d[2] / b, d[3] / b};
    if (kiln_mul_overflow_i64(d[1], b * b, &dims[1]))
        return kiln_op_fail(err, KILN_ERR_SHAPE, n, "output size overflows");
    return set_out(n, out[0], in[0]->dtype, 4, dims, err);
}

static kiln_status exec_s2d(const struct kiln_node *n, struct kiln_exec_ctx *ctx,
                            const struct kiln_value *const *in, int n_in,
                            struct kiln_value *const *out, int n_out, kiln_error *err) {
    const int64_t *d = in[0]->dims;
    int64_t b = kiln_attr_int(n, "blocksize", 1), C = d[1], H = d[2], W = d[3];
    int64_t ies = (int64_t)kiln_dtype_size(in[0]->dtype);
    /* output channel = (b1*b + b2)*C + c: iterate the output as [N, b, b, C, H/b, W/b] */
    int64_t it[6] = {d[0], b, b, C, H / b, W / b}, ds[6];
    int64_t ss[6] = {C * H * W, W, 1, H * W, b * W, b};
    byte_strides(6, it, (size_t)ies, ds);
    for (int i = 0; i < 6; i++) ss[i] *= ies;
    strided_copy(6, it, out[0]->data, ds, in[0]->data, ss, (size_t)ies, kiln_op_threads(ctx));
    return KILN_OK;
}

/* ------------------------------------------------------------------------ */
/* Trilu                                                                     */

static kiln_status infer_trilu(const struct kiln_node *n, const struct kiln_value *const *in,
                               int n_in, struct kiln_value *const *out, int n_out,
                               kiln_error *err) {
    kiln_status st = kiln_op_check_arity(n, n_in, 1, 2, err);
    size_t es;
    if (st == KILN_OK) st = kiln_op_elem_size(n, in[0]->dtype, &es, err);
    if (st != KILN_OK) return st;
    if (in[0]->rank < 2)
        return kiln_op_fail(err, KILN_ERR_SHAPE, n, "expected rank >= 2, got %d", in[0]->rank);
    if (n_in > 1 && in[1] && (!kiln_dtype_is_int(in[1]->dtype) || kiln_value_numel(in[1]) != 1))
        return kiln_op_fail(err, KILN_ERR_BAD_MODEL, n, "expected k as an integer scalar");
    kiln_value_set_shape(out[0], in[0]->dtype, in[0]->rank, in[0]->dims);
    return KILN_OK;
}

static kiln_status exec_trilu(const struct kiln_node *n, struct kiln_exec_ctx *ctx,
                              const struct kiln_value *const *in, int n_in,
                              struct kiln_value *const *out, int n_out, kiln_error *err) {
    const struct kiln_value *x = in[0];
    int32_t r = x->rank;
    int64_t R = x->dims[r - 2], C = x->dims[r - 1], ies = (int64_t)kiln_dtype_size(x->dtype);
    int64_t k = n_in > 1 && in[1] ? kiln_value_get_int(in[1], 0) : 0;
    bool upper = kiln_attr_int(n, "upper", 1) != 0;
    if (R * C == 0) return KILN_OK;
    int64_t lim = R + C; /* clamp so that i + k cannot overflow */
    k = k > lim ? lim : (k < -lim ? -lim : k);
    int64_t rows = kiln_value_numel(x) / C;
#pragma omp parallel for num_threads(kiln_op_threads(ctx)) if (rows * C * ies > PAR_BYTES)
    for (int64_t row = 0; row < rows; row++) {
        int64_t i = row % R, cut = i + k + (upper ? 0 : 1); /* first column of the upper part */
        cut = cut < 0 ? 0 : (cut > C ? C : cut);
        const char *s = (const char *)x->data + row * C * ies;
        char *d = (char *)out[0]->data + row * C * ies;
        if (upper) {
            memset(d, 0, (size_t)(cut * ies));
            memcpy(d + cut * ies, s + cut * ies, (size_t)((C - cut) * ies));
        } else {
            memcpy(d, s, (size_t)(cut * ies));
            memset(d + cut * ies, 0, (size_t)((C - cut) * ies));
        }
    }
    return KILN_OK;
}

/* ------------------------------------------------------------------------ */
/* Dropout (inference only)                                                  */

static kiln_status infer_dropout(const struct kiln_node *n, const struct kiln_value *const *in,
                                 int n_in, struct kiln_value *const *out, int n_out,
                                 kiln_error *err) {
    kiln_status st = kiln_op_check_arity(n, n_in, 1, n->opset >= 12 ? 3 : 1, err);
    size_t es;
    if (st == KILN_OK) st = kiln_op_elem_size(n, in[0]->dtype, &es, err);
    if (st != KILN_OK) return st;
    /* Dropout-1/6 run in training mode only when is_test is present and 0 */
    bool training =
        n->opset < 7 && kiln_attr_find(n, "is_test") && kiln_attr_int(n, "is_test", 0) == 0;
    double ratio = kiln_attr_float(n, "ratio", 0.5f);
    if (n->opset >= 12) {
        if (n_in > 2 && in[2]) {
            if (!in[2]->data) return KILN_DYNAMIC;
            training = kiln_value_get_int(in[2], 0) != 0;
        }
        ratio = 0.5;
        if (training && n_in > 1 && in[1]) {
            if (!in[1]->data) return KILN_DYNAMIC;
            ratio = kiln_value_get_f64(in[1], 0);
        }
    }
    if (training && ratio > 0)
        return kiln_op_fail(err, KILN_ERR_UNSUPPORTED, n,
                            "training mode with ratio %g (random dropout) is not supported", ratio);
    kiln_value_set_shape(out[0], in[0]->dtype, in[0]->rank, in[0]->dims);
    if (n_out > 1 && out[1])
        kiln_value_set_shape(out[1], n->opset >= 10 ? KILN_DTYPE_BOOL : in[0]->dtype, in[0]->rank,
                             in[0]->dims);
    return KILN_OK;
}

static kiln_status exec_dropout(const struct kiln_node *n, struct kiln_exec_ctx *ctx,
                                const struct kiln_value *const *in, int n_in,
                                struct kiln_value *const *out, int n_out, kiln_error *err) {
    copy_through(in[0], out[0]);
    if (n_out > 1 && out[1]) { /* nothing dropped: the mask is all ones */
        unsigned char one[16] = {0};
        struct kiln_value v = {.dtype = out[1]->dtype, .data = one};
        kiln_value_set_f64(&v, 0, 1.0);
        fill_elems(out[1]->data, kiln_value_numel(out[1]), one, kiln_dtype_size(out[1]->dtype),
                   kiln_op_threads(ctx));
    }
    return KILN_OK;
}

/* ------------------------------------------------------------------------ */
/* Shape, Size                                                               */

static void shape_range(const struct kiln_node *n, int32_t r, int64_t *start, int64_t *end) {
    int64_t s = n->opset >= 15 ? kiln_attr_int(n, "start", 0) : 0;
    int64_t e = n->opset >= 15 ? kiln_attr_int(n, "end", r) : r;
    if (s < 0) s += r;
    if (e < 0) e += r;
    s = s < 0 ? 0 : (s > r ? r : s);
    e = e < 0 ? 0 : (e > r ? r : e);
    *start = s;
    *end = e < s ? s : e;
}

static kiln_status infer_shape(const struct kiln_node *n, const struct kiln_value *const *in,
                               int n_in, struct kiln_value *const *out, int n_out,
                               kiln_error *err) {
    kiln_status st = kiln_op_check_arity(n, n_in, 1, 1, err);
    if (st != KILN_OK) return st;
    int64_t s, e;
    shape_range(n, in[0]->rank, &s, &e);
    int64_t dims[1] = {e - s};
    kiln_value_set_shape(out[0], KILN_DTYPE_INT64, 1, dims);
    return KILN_OK;
}

static kiln_status exec_shape(const struct kiln_node *n, struct kiln_exec_ctx *ctx,
                              const struct kiln_value *const *in, int n_in,
                              struct kiln_value *const *out, int n_out, kiln_error *err) {
    int64_t s, e;
    shape_range(n, in[0]->rank, &s, &e);
    for (int64_t i = s; i < e; i++) ((int64_t *)out[0]->data)[i - s] = in[0]->dims[i];
    return KILN_OK;
}

static kiln_status infer_size(const struct kiln_node *n, const struct kiln_value *const *in,
                              int n_in, struct kiln_value *const *out, int n_out, kiln_error *err) {
    kiln_status st = kiln_op_check_arity(n, n_in, 1, 1, err);
    if (st != KILN_OK) return st;
    kiln_value_set_shape(out[0], KILN_DTYPE_INT64, 0, NULL);
    return KILN_OK;
}

static kiln_status exec_size(const struct kiln_node *n, struct kiln_exec_ctx *ctx,
                             const struct kiln_value *const *in, int n_in,
                             struct kiln_value *const *out, int n_out, kiln_error *err) {
    *(int64_t *)out[0]->data = kiln_value_numel(in[0]);
    return KILN_OK;
}

/* ------------------------------------------------------------------------ */
/* ConstantOfShape, EyeLike, Range, Constant                                 */

static kiln_status cos_value(const struct kiln_node *n, const struct kiln_value **v,
                             kiln_error *err) {
    const struct kiln_attr *a = kiln_attr_find(n, "value");
    *v = NULL;
    if (!a) return KILN_OK;
    if (a->type != KILN_ATTR_TENSOR || kiln_value_numel(&a->t) != 1 || !a->t.data)
        return kiln_op_fail(err, KILN_ERR_BAD_MODEL, n, "expected 'value' as a one-element tensor");
    size_t es;
    kiln_status st = kiln_op_elem_size(n, a->t.dtype, &es, err);
    if (st == KILN_OK) *v = &a->t;
    return st;
}

static kiln_status infer_cos(const struct kiln_node *n, const struct kiln_value *const *in,
                             int n_in, struct kiln_value *const *out, int n_out, kiln_error *err) {
    const struct kiln_value *v;
    int64_t dims[MAXR], cnt;
    kiln_status st = kiln_op_check_arity(n, n_in, 1, 1, err);
    if (st == KILN_OK) st = cos_value(n, &v, err);
    if (st != KILN_OK) return st;
    if (!in[0]->data) return KILN_DYNAMIC;
    if ((st = read_ints(n, in[0], "shape", dims, MAXR, &cnt, err)) != KILN_OK) return st;
    return set_out(n, out[0], v ? v->dtype : KILN_DTYPE_FLOAT, cnt, dims, err);
}

static kiln_status exec_cos(const struct kiln_node *n, struct kiln_exec_ctx *ctx,
                            const struct kiln_value *const *in, int n_in,
                            struct kiln_value *const *out, int n_out, kiln_error *err) {
    const struct kiln_value *v;
    kiln_status st = cos_value(n, &v, err);
    if (st != KILN_OK) return st;
    static const unsigned char zero[16];
    fill_elems(out[0]->data, kiln_value_numel(out[0]), v ? v->data : zero,
               kiln_dtype_size(out[0]->dtype), kiln_op_threads(ctx));
    return KILN_OK;
}

static kiln_status infer_eyelike(const struct kiln_node *n, const struct kiln_value *const *in,
                                 int n_in, struct kiln_value *const *out, int n_out,
                                 kiln_error *err) {
    kiln_status st = kiln_op_check_arity(n, n_in, 1, 1, err);
    if (st != KILN_OK) return st;
    if (in[0]->rank != 2)
        return kiln_op_fail(err, KILN_ERR_SHAPE, n, "expected a rank-2 input, got rank %d",
                            in[0]->rank);
    kiln_dtype dt = (kiln_dtype)kiln_attr_int(n, "dtype", in[0]->dtype);
    size_t es;
    if ((st = kiln_op_elem_size(n, dt, &es, err)) != KILN_OK) return st;
    kiln_value_set_shape(out[0], dt, 2, in[0]->dims);
    return KILN_OK;
}

static kiln_status exec_eyelike(const struct kiln_node *n, struct kiln_exec_ctx *ctx,
                                const struct kiln_value *const *in, int n_in,
                                struct kiln_value *const *out, int n_out, kiln_error *err) {
    int64_t R = out[0]->dims[0], C = out[0]->dims[1], k = kiln_attr_int(n, "k", 0);
    memset(out[0]->data, 0, value_bytes(out[0]));
    for (int64_t i = 0; i < R; i++) {
        if (k > C || k < -R) break; /* no diagonal entries; also keeps i + k in range */
        int64_t j = i + k;
        if (j >= 0 && j < C) kiln_value_set_f64(out[0], i * C + j, 1.0);
    }
    return KILN_OK;
}

static bool range_dtype_ok(kiln_dtype t) {
    return t == KILN_DTYPE_FLOAT || t == KILN_DTYPE_DOUBLE || t == KILN_DTYPE_FLOAT16 ||
           t == KILN_DTYPE_BFLOAT16 || t == KILN_DTYPE_INT16 || t == KILN_DTYPE_INT32 ||
           t == KILN_DTYPE_INT64;
}

static kiln_status range_count(const struct kiln_node *n, const struct kiln_value *const *in,
                               int64_t *count, kiln_error *err) {
    kiln_dtype t = in[0]->dtype;
    for (int i = 0; i < 3; i++)
        if (kiln_value_numel(in[i]) != 1 || in[i]->dtype != t)
            return kiln_op_fail(err, KILN_ERR_BAD_MODEL, n,
                                "expected start, limit, delta as scalars of one dtype");
    if (kiln_dtype_is_int(t)) {
        int64_t s = kiln_value_get_int(in[0], 0), l = kiln_value_get_int(in[1], 0),
                d = kiln_value_get_int(in[2], 0), diff;
        if (d == 0) return kiln_op_fail(err, KILN_ERR_BAD_MODEL, n, "delta is 0");
        if (__builtin_sub_overflow(l, s, &diff))
            return kiln_op_fail(err, KILN_ERR_SHAPE, n, "range overflows");
        if ((diff > 0) != (d > 0) || diff == 0) *count = 0;
        else
            *count = (int64_t)(((diff > 0 ? (uint64_t)diff : (uint64_t)0 - (uint64_t)diff) - 1) /
                               (d > 0 ? (uint64_t)d : (uint64_t)0 - (uint64_t)d)) +
                     1;
        return KILN_OK;
    }
    double s = kiln_value_get_f64(in[0], 0), l = kiln_value_get_f64(in[1], 0),
           d = kiln_value_get_f64(in[2], 0);
    if (d == 0) return kiln_op_fail(err, KILN_ERR_BAD_MODEL, n, "delta is 0");
    double c = ceil((l - s) / d);
    if (!(c < 9.0e15)) /* also rejects NaN */
        return kiln_op_fail(err, KILN_ERR_SHAPE, n, "range has too many elements");
    *count = c > 0 ? (int64_t)c : 0;
    return KILN_OK;
}

static kiln_status infer_range(const struct kiln_node *n, const struct kiln_value *const *in,
                               int n_in, struct kiln_value *const *out, int n_out,
                               kiln_error *err) {
    kiln_status st = kiln_op_check_arity(n, n_in, 3, 3, err);
    if (st != KILN_OK) return st;
    if (!range_dtype_ok(in[0]->dtype))
        return kiln_op_fail(err, KILN_ERR_UNSUPPORTED, n, "dtype %s is not supported",
                            kiln_dtype_name(in[0]->dtype));
    if (!in[0]->data || !in[1]->data || !in[2]->data) return KILN_DYNAMIC;
    int64_t c;
    if ((st = range_count(n, in, &c, err)) != KILN_OK) return st;
    return set_out(n, out[0], in[0]->dtype, 1, &c, err);
}

static kiln_status exec_range(const struct kiln_node *n, struct kiln_exec_ctx *ctx,
                              const struct kiln_value *const *in, int n_in,
                              struct kiln_value *const *out, int n_out, kiln_error *err) {
    int64_t c = out[0]->dims[0];
    if (kiln_dtype_is_int(in[0]->dtype)) {
        int64_t s = kiln_value_get_int(in[0], 0), d = kiln_value_get_int(in[2], 0);
        for (int64_t i = 0; i < c; i++) {
            int64_t v = s + i * d;
            switch (out[0]->dtype) {
            case KILN_DTYPE_INT64: ((int64_t *)out[0]->data)[i] = v; break;
            case KILN_DTYPE_INT32: ((int32_t *)out[0]->data)[i] = (int32_t)v; break;
            default: ((int16_t *)out[0]->data)[i] = (int16_t)v; break;
            }
        }
        return KILN_OK;
    }
    double s = kiln_value_get_f64(in[0], 0), d = kiln_value_get_f64(in[2], 0);
    for (int64_t i = 0; i < c; i++) kiln_value_set_f64(out[0], i, s + (double)i * d);
    return KILN_OK;
}

/* Constant: the value comes from exactly one of its attributes. */
static kiln_status constant_value(const struct kiln_node *n, struct kiln_value *v,
                                  kiln_error *err) {
    static const char *unsupported[] = {"sparse_value", "value_string", "value_strings"};
    for (size_t i = 0; i < KILN_ARRAY_LEN(unsupported); i++)
        if (kiln_attr_find(n, unsupported[i]))
            return kiln_op_fail(err, KILN_ERR_UNSUPPORTED, n, "attribute '%s' is not supported",
                                unsupported[i]);
    const struct kiln_attr *a;
    memset(v, 0, sizeof *v);
    if ((a = kiln_attr_find(n, "value")) && a->type == KILN_ATTR_TENSOR) {
        *v = a->t;
        size_t es, b;
        kiln_status st = kiln_op_elem_size(n, v->dtype, &es, err);
        if (st != KILN_OK) return st;
        if (!kiln_value_bytes(v, &b) || (b && !v->data))
            return kiln_op_fail(err, KILN_ERR_BAD_MODEL, n, "'value' tensor has no valid data");
    } else if ((a = kiln_attr_find(n, "value_float")) && a->type == KILN_ATTR_FLOAT) {
        v->dtype = KILN_DTYPE_FLOAT;
        v->data = (void *)&a->f;
    } else if ((a = kiln_attr_find(n, "value_int")) && a->type == KILN_ATTR_INT) {
        v->dtype = KILN_DTYPE_INT64;
        v->data = (void *)&a->i;
    } else if ((a = kiln_attr_find(n, "value_floats")) && a->type == KILN_ATTR_FLOATS) {
        v->dtype = KILN_DTYPE_FLOAT;
        v->rank = 1;
        v->dims[0] = a->n;
        v->data = a->floats;
    } else if ((a = kiln_attr_find(n, "value_ints")) && a->type == KILN_ATTR_INTS) {
        v->dtype = KILN_DTYPE_INT64;
        v->rank = 1;
        v->dims[0] = a->n;
        v->data = a->ints;
    } else {
        return kiln_op_fail(err, KILN_ERR_BAD_MODEL, n, "expected a value attribute");
    }
    return KILN_OK;
}

static kiln_status infer_constant(const struct kiln_node *n, const struct kiln_value *const *in,
                                  int n_in, struct kiln_value *const *out, int n_out,
                                  kiln_error *err) {
    struct kiln_value v;
    kiln_status st = kiln_op_check_arity(n, n_in, 0, 0, err);
    if (st == KILN_OK) st = constant_value(n, &v, err);
    if (st != KILN_OK) return st;
    return set_out(n, out[0], v.dtype, v.rank, v.dims, err);
}

static kiln_status exec_constant(const struct kiln_node *n, struct kiln_exec_ctx *ctx,
                                 const struct kiln_value *const *in, int n_in,
                                 struct kiln_value *const *out, int n_out, kiln_error *err) {
    struct kiln_value v;
    kiln_status st = constant_value(n, &v, err);
    if (st != KILN_OK) return st;
    size_t b = value_bytes(out[0]);
    if (b) memcpy(out[0]->data, v.data, b);
    return KILN_OK;
}

/* ------------------------------------------------------------------------ */

const struct kiln_op_def kiln_ops_shape[] = {
    {"Reshape", "", 1, KILN_OP_VIEW, infer_reshape, exec_view},
    {"Flatten", "", 1, KILN_OP_VIEW, infer_flatten, exec_view},
    {"Squeeze", "", 1, KILN_OP_VIEW, infer_squeeze, exec_view},
    {"Unsqueeze", "", 1, KILN_OP_VIEW, infer_unsqueeze, exec_view},
    {"Identity", "", 1, KILN_OP_VIEW, infer_identity, exec_view},
    {"Transpose", "", 1, 0, infer_transpose, exec_transpose},
    {"Concat", "", 1, 0, infer_concat, exec_concat},
    {"Split", "", 1, 0, infer_split, exec_split},
    {"Slice", "", 1, 0, infer_slice, exec_slice},
    {"Expand", "", 8, 0, infer_expand, exec_expand},
    {"Tile", "", 6, 0, infer_tile, exec_tile},
    {"Pad", "", 1, 0, infer_pad, exec_pad},
    {"DepthToSpace", "", 1, 0, infer_d2s, exec_d2s},
    {"SpaceToDepth", "", 1, 0, infer_s2d, exec_s2d},
    {"Trilu", "", 14, 0, infer_trilu, exec_trilu},
    {"Dropout", "", 1, KILN_OP_VIEW, infer_dropout, exec_dropout},
    {"Shape", "", 1, KILN_OP_SHAPE_ONLY, infer_shape, exec_shape},
    {"Size", "", 1, KILN_OP_SHAPE_ONLY, infer_size, exec_size},
    {"ConstantOfShape", "", 9, 0, infer_cos, exec_cos},
    {"EyeLike", "", 9, 0, infer_eyelike, exec_eyelike},
    {"Range", "", 11, 0, infer_range, exec_range},
    {"Constant", "", 1, 0, infer_constant, exec_constant},
    {0},
};
