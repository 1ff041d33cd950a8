/* elementwise.c — numpy-broadcasting binary and variadic ops: arithmetic,
 * comparison, logic, bitwise, Where, PRelu.
 *
 * Every op runs through one broadcast walker: the output shape and each
 * input's strides (0 on broadcast axes) are collapsed to the fewest axes,
 * so that the innermost axis is a contiguous run in which every input either
 * advances by one element or stays put. A row kernel per (op, dtype) handles
 * such runs with the four stride patterns specialised, which turns the common
 * model cases (same shape, scalar operand, per-channel or last-dim bias) into
 * tight loops the compiler vectorizes. */
#include "ops/op.h"

#include <math.h>
#include <omp.h>
#include <stdint.h>
#include <string.h>

#define EW_MAX_IN  3           /* Where has three operands */
#define EW_NDT     17          /* dtype enum values are < 17 */
#define EW_PAR_MIN (1 << 15)   /* below this, threads cost more than they save */
#define EW_CHUNK   (1 << 14)   /* elements per parallel task */

/* One contiguous run: src[j] advances by inc[j] (0 or 1) elements per output
 * element; dst always advances by one. */
typedef void (*row_fn)(const void *const *src, const int *inc, void *dst, int64_t n,
                       const void *arg);

/* ------------------------------------------------------------------------ */
/* Broadcast walker                                                          */

struct bcast {
    int32_t rank;                               /* >= 1 after collapsing */
    int     k;                                  /* number of inputs */
    int64_t numel;
    int64_t dims[KILN_MAX_RANK];
    int64_t st[EW_MAX_IN][KILN_MAX_RANK];       /* element strides; 0 = broadcast */
};

static void bcast_setup(struct bcast *b, const struct kiln_value *out,
                        const struct kiln_value *const *ins, int k) {
    int32_t R = out->rank, r = 0;
    int64_t st[EW_MAX_IN][KILN_MAX_RANK];
    for (int j = 0; j < k; j++) {
        int64_t s = 1;
        for (int32_t i = R - 1; i >= 0; i--) {
            int32_t ij = i - (R - ins[j]->rank);
            int64_t d = ij >= 0 ? ins[j]->dims[ij] : 1;
            st[j][i] = d == 1 ? 0 : s;
            s *= d;
        }
    }
    b->k = k;
    b->numel = 1;
    /* Drop unit axes, then merge each axis into the previous one when every
     * input walks both as one (contiguous or both broadcast). */
    for (int32_t i = 0; i < R; i++) {
        int64_t d = out->dims[i];
        b->numel *= d;
        if (d == 1) continue;
        bool merge = r > 0;
        for (int j = 0; j < k && merge; j++)
            if (b->st[j][r - 1] != st[j][i] * d) merge = false;
        if (merge) {
            b->dims[r - 1] *= d;
            for (int j = 0; j < k; j++) b->st[j][r - 1] = st[j][i];
        } else {
            b->dims[r] = d;
            for (int j = 0; j < k; j++) b->st[j][r] = st[j][i];
            r++;
        }
    }
    if (r == 0) { /* scalar (or all-ones) output */
        b->dims[0] = 1;
        for (int j = 0; j < k; j++) b->st[j][0] = 0;
        r = 1;
    }
    b->rank = r;
}

struct bcast_job {
    const struct bcast *b;
    const char *src[EW_MAX_IN];
    size_t      esz[EW_MAX_IN];
    char       *dst;
    size_t      osz;
    row_fn      fn;
    const void *arg;
};

/* Runs output elements [start, end). */
static void bcast_range(const struct bcast_job *J, int64_t start, int64_t end) {
    const struct bcast *b = J->b;
    int32_t R = b->rank;
    int64_t idx[KILN_MAX_RANK];
    int inc[EW_MAX_IN];
    const void *src[EW_MAX_IN];
    int64_t rem = start;
    for (int32_t i = R - 1; i >= 0; i--) {
        idx[i] = rem % b->dims[i];
        rem /= b->dims[i];
    }
    for (int j = 0; j < b->k; j++) inc[j] = b->st[j][R - 1] != 0;
    while (start < end) {
        int64_t len = b->dims[R - 1] - idx[R - 1];
        if (len > end - start) len = end - start;
        for (int j = 0; j < b->k; j++) {
            int64_t off = 0;
            for (int32_t i = 0; i < R; i++) off += idx[i] * b->st[j][i];
            src[j] = J->src[j] + off * (int64_t)J->esz[j];
        }
        J->fn(src, inc, J->dst + start * (int64_t)J->osz, len, J->arg);
        start += len;
        /* next row: the innermost index wrapped, carry outwards */
        idx[R - 1] = 0;
        for (int32_t i = R - 2; i >= 0; i--) {
            if (++idx[i] < b->dims[i]) break;
            idx[i] = 0;
        }
    }
}

static int ew_threads(const struct kiln_exec_ctx *ctx) {
    return ctx && ctx->n_threads > 0 ? ctx->n_threads : omp_get_max_threads();
}

static void bcast_run(const struct bcast_job *J, const struct kiln_exec_ctx *ctx) {
    int64_t total = J->b->numel;
    if (total <= 0) return;
    if (total < EW_PAR_MIN) {
        bcast_range(J, 0, total);
        return;
    }
    int64_t tasks = (total + EW_CHUNK - 1) / EW_CHUNK;
#pragma omp parallel for schedule(static) num_threads(ew_threads(ctx))
    for (int64_t t = 0; t < tasks; t++) {
        int64_t e = (t + 1) * EW_CHUNK;
        bcast_range(J, t * EW_CHUNK, e < total ? e : total);
    }
}

/* Runs fn over out = f(ins...) with numpy broadcasting. */
static void ew_apply(const struct kiln_exec_ctx *ctx, const struct kiln_value *const *ins, int k,
                     struct kiln_value *out, row_fn fn, const void *arg) {
    struct bcast b;
    struct bcast_job J;
    bcast_setup(&b, out, ins, k);
    J.b = &b;
    for (int j = 0; j < k; j++) {
        J.src[j] = ins[j]->data;
        J.esz[j] = kiln_dtype_size(ins[j]->dtype);
    }
    J.dst = out->data;
    J.osz = kiln_dtype_size(out->dtype);
    J.fn = fn;
    J.arg = arg;
    bcast_run(&J, ctx);
}

/* ------------------------------------------------------------------------ */
/* Row kernels                                                               */

#define ID(x) (x)
/* omp simd: the loops have no cross-iteration dependences (out may be in0
 * itself, element for element), and at -O2 GCC's cheap cost model would
 * otherwise leave them scalar. */
#define SIMD _Pragma("omp simd")

/* out[i] = EXPR(x, y) with x = LDA(a), y = LDB(b); CT is the compute type. */
#define BIN_ROW(NAME, TA, TB, TO, CT, LDA, LDB, ST, EXPR)                                  \
    static void NAME(const void *const *src, const int *inc, void *dst, int64_t n,         \
                     const void *arg) {                                                    \
        const TA *a = src[0];                                                              \
        const TB *b = src[1];                                                              \
        TO *o = dst;                                                                       \
        (void)arg;                                                                         \
        if (inc[0] && inc[1]) {                                                            \
            SIMD for (int64_t i = 0; i < n; i++) {                                         \
                CT x = LDA(a[i]), y = LDB(b[i]);                                           \
                o[i] = ST(EXPR);                                                           \
            }                                                                              \
        } else if (inc[0]) {                                                               \
            CT y = LDB(b[0]);                                                              \
            SIMD for (int64_t i = 0; i < n; i++) {                                         \
                CT x = LDA(a[i]);                                                          \
                o[i] = ST(EXPR);                                                           \
            }                                                                              \
        } else if (inc[1]) {                                                               \
            CT x = LDA(a[0]);                                                              \
            SIMD for (int64_t i = 0; i < n; i++) {                                         \
                CT y = LDB(b[i]);                                                          \
                o[i] = ST(EXPR);                                                           \
            }                                                                              \
        } else {                                                                           \
            CT x = LDA(a[0]), y = LDB(b[0]);                                               \
            TO v = ST(EXPR);                                                               \
            for (int64_t i = 0; i < n; i++) o[i] = v;                                      \
        }                                                                                  \
    }

/* Type lists: X(OP, suffix, DTYPE, storage type, compute type, load, store). */
#define TYPES_FLOAT(X, OP)                                                     \
    X(OP, f32, FLOAT, float, float, ID, ID)                                    \
    X(OP, f64, DOUBLE, double, double, ID, ID)                                 \
    X(OP, f16, FLOAT16, uint16_t, float, kiln_f16_to_f32, kiln_f32_to_f16)     \
    X(OP, bf16, BFLOAT16, uint16_t, float, kiln_bf16_to_f32, kiln_f32_to_bf16)
#define TYPES_SINT(X, OP)                                                      \
    X(OP, i8, INT8, int8_t, int8_t, ID, ID)                                    \
    X(OP, i16, INT16, int16_t, int16_t, ID, ID)                                \
    X(OP, i32, INT32, int32_t, int32_t, ID, ID)                                \
    X(OP, i64, INT64, int64_t, int64_t, ID, ID)
#define TYPES_UINT(X, OP)                                                      \
    X(OP, u8, UINT8, uint8_t, uint8_t, ID, ID)                                 \
    X(OP, u16, UINT16, uint16_t, uint16_t, ID, ID)                             \
    X(OP, u32, UINT32, uint32_t, uint32_t, ID, ID)                             \
    X(OP, u64, UINT64, uint64_t, uint64_t, ID, ID)
#define TYPES_BOOL(X, OP) X(OP, b8, BOOL, uint8_t, uint8_t, ID, ID)

/* T op T -> T, and T op T -> bool */
#define DEF_BIN(OP, SFX, DT, T, CT, LD, ST) BIN_ROW(OP##_##SFX, T, T, T, CT, LD, LD, ST, OP(CT, x, y))
#define DEF_CMP(OP, SFX, DT, T, CT, LD, ST) \
    BIN_ROW(OP##_##SFX, T, T, uint8_t, CT, LD, LD, ID, (uint8_t)(OP(CT, x, y)))
#define ENTRY(OP, SFX, DT, T, CT, LD, ST) [KILN_DTYPE_##DT] = OP##_##SFX,

/* Integer arithmetic wraps (two's complement) instead of overflowing: done in
 * uint64 and truncated, which also avoids int promotion overflow for u16*u16. */
#define add_f(CT, x, y) ((x) + (y))
#define add_i(CT, x, y) ((CT)((uint64_t)(x) + (uint64_t)(y)))
#define sub_f(CT, x, y) ((x) - (y))
#define sub_i(CT, x, y) ((CT)((uint64_t)(x) - (uint64_t)(y)))
#define mul_f(CT, x, y) ((x) * (y))
#define mul_i(CT, x, y) ((CT)((uint64_t)(x) * (uint64_t)(y)))
#define div_f(CT, x, y) ((x) / (y))
/* Integer division by zero is undefined in ONNX; yield 0 rather than trap.
 * MIN / -1 also traps on x86, so -1 negates with wraparound. */
#define div_s(CT, x, y) \
    ((y) == 0 ? (CT)0 : (y) == -1 ? (CT)(0 - (uint64_t)(x)) : (CT)((x) / (y)))
#define div_u(CT, x, y) ((y) == 0 ? (CT)0 : (CT)((x) / (y)))
/* NaN in either operand propagates, as numpy's maximum/minimum do */
#define max_f(CT, x, y) (((x) != (x) || (x) > (y)) ? (x) : (y))
#define min_f(CT, x, y) (((x) != (x) || (x) < (y)) ? (x) : (y))
#define max_i(CT, x, y) ((x) > (y) ? (x) : (y))
#define min_i(CT, x, y) ((x) < (y) ? (x) : (y))
/* Mod: fmod=1 is C's truncated remainder (sign of dividend); fmod=0 takes the
 * sign of the divisor (Python). Integer x % 0 yields 0 rather than trapping. */
#define fmod_f(CT, x, y) ((CT)fmod((x), (y)))
#define fmod_s(CT, x, y) ((y) == 0 || (y) == -1 ? (CT)0 : (CT)((x) % (y)))
#define fmod_u(CT, x, y) ((y) == 0 ? (CT)0 : (CT)((x) % (y)))
#define pmod_f(CT, x, y) ((CT)py_fmod((x), (y)))
#define pmod_s(CT, x, y) ((CT)py_imod((int64_t)(x), (int64_t)(y)))
#define eq_x(CT, x, y) ((x) == (y))
#define lt_x(CT, x, y) ((x) < (y))
#define le_x(CT, x, y) ((x) <= (y))
#define gt_x(CT, x, y) ((x) > (y))
#define ge_x(CT, x, y) ((x) >= (y))
#define and_b(CT, x, y) (((x) != 0) & ((y) != 0))
#define or_b(CT, x, y)  (((x) != 0) | ((y) != 0))
#define xor_b(CT, x, y) (((x) != 0) ^ ((y) != 0))
#define band_i(CT, x, y) ((CT)((x) & (y)))
#define bor_i(CT, x, y)  ((CT)((x) | (y)))
#define bxor_i(CT, x, y) ((CT)((x) ^ (y)))
/* Shifting by the bit width or more is undefined in C; the result is 0. */
#define shl_u(CT, x, y) ((uint64_t)(y) >= 8 * sizeof(CT) ? (CT)0 : (CT)((uint64_t)(x) << (y)))
#define shr_u(CT, x, y) ((uint64_t)(y) >= 8 * sizeof(CT) ? (CT)0 : (CT)((x) >> (y)))
#define prelu_f(CT, x, y) ((x) < 0 ? (x) * (y) : (x))
#define prelu_s(CT, x, y) ((x) < 0 ? (CT)((uint64_t)(x) * (uint64_t)(y)) : (x))
#define prelu_u(CT, x, y) ((void)(y), (x))

static double py_fmod(double x, double y) {
    double r = fmod(x, y);
    if (r != 0 && ((r < 0) != (y < 0))) r += y;
    return r;
}

static int64_t py_imod(int64_t x, int64_t y) {
    if (y == 0 || y == -1) return 0;
    int64_t r = x % y;
    if (r != 0 && ((r < 0) != (y < 0))) r += y;
    return r;
}

TYPES_FLOAT(DEF_BIN, add_f) TYPES_SINT(DEF_BIN, add_i) TYPES_UINT(DEF_BIN, add_i)
TYPES_FLOAT(DEF_BIN, sub_f) TYPES_SINT(DEF_BIN, sub_i) TYPES_UINT(DEF_BIN, sub_i)
TYPES_FLOAT(DEF_BIN, mul_f) TYPES_SINT(DEF_BIN, mul_i) TYPES_UINT(DEF_BIN, mul_i)
TYPES_FLOAT(DEF_BIN, div_f) TYPES_SINT(DEF_BIN, div_s) TYPES_UINT(DEF_BIN, div_u)
TYPES_FLOAT(DEF_BIN, max_f) TYPES_SINT(DEF_BIN, max_i) TYPES_UINT(DEF_BIN, max_i)
TYPES_FLOAT(DEF_BIN, min_f) TYPES_SINT(DEF_BIN, min_i) TYPES_UINT(DEF_BIN, min_i)
TYPES_FLOAT(DEF_BIN, fmod_f) TYPES_SINT(DEF_BIN, fmod_s) TYPES_UINT(DEF_BIN, fmod_u)
TYPES_FLOAT(DEF_BIN, pmod_f) TYPES_SINT(DEF_BIN, pmod_s)
TYPES_FLOAT(DEF_CMP, eq_x) TYPES_SINT(DEF_CMP, eq_x) TYPES_UINT(DEF_CMP, eq_x)
TYPES_BOOL(DEF_CMP, eq_x)
TYPES_FLOAT(DEF_CMP, lt_x) TYPES_SINT(DEF_CMP, lt_x) TYPES_UINT(DEF_CMP, lt_x)
TYPES_FLOAT(DEF_CMP, le_x) TYPES_SINT(DEF_CMP, le_x) TYPES_UINT(DEF_CMP, le_x)
TYPES_FLOAT(DEF_CMP, gt_x) TYPES_SINT(DEF_CMP, gt_x) TYPES_UINT(DEF_CMP, gt_x)
TYPES_FLOAT(DEF_CMP, ge_x) TYPES_SINT(DEF_CMP, ge_x) TYPES_UINT(DEF_CMP, ge_x)
TYPES_BOOL(DEF_BIN, and_b) TYPES_BOOL(DEF_BIN, or_b) TYPES_BOOL(DEF_BIN, xor_b)
TYPES_SINT(DEF_BIN, band_i) TYPES_UINT(DEF_BIN, band_i)
TYPES_SINT(DEF_BIN, bor_i) TYPES_UINT(DEF_BIN, bor_i)
TYPES_SINT(DEF_BIN, bxor_i) TYPES_UINT(DEF_BIN, bxor_i)
TYPES_UINT(DEF_BIN, shl_u) TYPES_UINT(DEF_BIN, shr_u)
TYPES_FLOAT(DEF_BIN, prelu_f) TYPES_SINT(DEF_BIN, prelu_s) TYPES_UINT(DEF_BIN, prelu_u)

/* Kernel tables by dtype; NULL = dtype not supported by the op. */
typedef row_fn ew_tab[EW_NDT];
static const ew_tab add_tab = {TYPES_FLOAT(ENTRY, add_f) TYPES_SINT(ENTRY, add_i)
                                   TYPES_UINT(ENTRY, add_i)};
static const ew_tab sub_tab = {TYPES_FLOAT(ENTRY, sub_f) TYPES_SINT(ENTRY, sub_i)
                                   TYPES_UINT(ENTRY, sub_i)};
static const ew_tab mul_tab = {TYPES_FLOAT(ENTRY, mul_f) TYPES_SINT(ENTRY, mul_i)
                                   TYPES_UINT(ENTRY, mul_i)};
static const ew_tab div_tab = {TYPES_FLOAT(ENTRY, div_f) TYPES_SINT(ENTRY, div_s)
                                   TYPES_UINT(ENTRY, div_u)};
static const ew_tab max_tab = {TYPES_FLOAT(ENTRY, max_f) TYPES_SINT(ENTRY, max_i)
                                   TYPES_UINT(ENTRY, max_i)};
static const ew_tab min_tab = {TYPES_FLOAT(ENTRY, min_f) TYPES_SINT(ENTRY, min_i)
                                   TYPES_UINT(ENTRY, min_i)};
static const ew_tab fmod_tab = {TYPES_FLOAT(ENTRY, fmod_f) TYPES_SINT(ENTRY, fmod_s)
                                    TYPES_UINT(ENTRY, fmod_u)};
/* unsigned remainders have no sign to fix: fmod=0 shares the fmod=1 kernels */
static const ew_tab pmod_tab = {TYPES_FLOAT(ENTRY, pmod_f) TYPES_SINT(ENTRY, pmod_s)
                                    TYPES_UINT(ENTRY, fmod_u)};
static const ew_tab eq_tab = {TYPES_FLOAT(ENTRY, eq_x) TYPES_SINT(ENTRY, eq_x)
                                  TYPES_UINT(ENTRY, eq_x) TYPES_BOOL(ENTRY, eq_x)};
static const ew_tab lt_tab = {TYPES_FLOAT(ENTRY, lt_x) TYPES_SINT(ENTRY, lt_x)
                                  TYPES_UINT(ENTRY, lt_x)};
static const ew_tab le_tab = {TYPES_FLOAT(ENTRY, le_x) TYPES_SINT(ENTRY, le_x)
                                  TYPES_UINT(ENTRY, le_x)};
static const ew_tab gt_tab = {TYPES_FLOAT(ENTRY, gt_x) TYPES_SINT(ENTRY, gt_x)
                                  TYPES_UINT(ENTRY, gt_x)};
static const ew_tab ge_tab = {TYPES_FLOAT(ENTRY, ge_x) TYPES_SINT(ENTRY, ge_x)
                                  TYPES_UINT(ENTRY, ge_x)};
static const ew_tab and_tab = {TYPES_BOOL(ENTRY, and_b)};
static const ew_tab or_tab = {TYPES_BOOL(ENTRY, or_b)};
static const ew_tab xor_tab = {TYPES_BOOL(ENTRY, xor_b)};
static const ew_tab band_tab = {TYPES_SINT(ENTRY, band_i) TYPES_UINT(ENTRY, band_i)};
static const ew_tab bor_tab = {TYPES_SINT(ENTRY, bor_i) TYPES_UINT(ENTRY, bor_i)};
static const ew_tab bxor_tab = {TYPES_SINT(ENTRY, bxor_i) TYPES_UINT(ENTRY, bxor_i)};
static const ew_tab shl_tab = {TYPES_UINT(ENTRY, shl_u)};
static const ew_tab shr_tab = {TYPES_UINT(ENTRY, shr_u)};
static const ew_tab prelu_tab = {TYPES_FLOAT(ENTRY, prelu_f) TYPES_SINT(ENTRY, prelu_s)
                                     TYPES_UINT(ENTRY, prelu_u)};

static row_fn tab_get(const ew_tab tab, kiln_dtype dt) {
    return (unsigned)dt < EW_NDT ? tab[dt] : NULL;
}

/* The dtypes these kernels compute on. kiln_dtype_is_float/_is_int also
 * accept the narrow storage types (float8, float4, int4, int2), which only
 * Cast handles. */
static bool is_wide_float(kiln_dtype t) {
    return t == KILN_DTYPE_FLOAT || t == KILN_DTYPE_DOUBLE || t == KILN_DTYPE_FLOAT16 ||
           t == KILN_DTYPE_BFLOAT16;
}

static bool is_std_int(kiln_dtype t) {
    return kiln_dtype_is_int(t) && kiln_dtype_bits(t) >= 8;
}

/* ------------------------------------------------------------------------ */
/* Shape inference helpers                                                   */

static kiln_status check_dims(const struct kiln_node *n, const struct kiln_value *v, int idx,
                              kiln_error *err) {
    if (v->rank < 0 || v->rank > KILN_MAX_RANK)
        return kiln_op_fail(err, KILN_ERR_SHAPE, n, "input %d: rank %d out of range", idx,
                            v->rank);
    for (int32_t i = 0; i < v->rank; i++)
        if (v->dims[i] < 0)
            return kiln_op_fail(err, KILN_ERR_SHAPE, n, "input %d: dim %d is %lld", idx, i,
                                (long long)v->dims[i]);
    return KILN_OK;
}

/* Before opset 7, binary ops broadcast only with broadcast=1, and `axis`
 * placed B's dims at that axis of A instead of at the end. Fills ins[] with
 * in[0] and a view of in[1] that numpy broadcasting then treats the same. */
static void legacy_inputs(const struct kiln_node *n, const struct kiln_value *const *in,
                          struct kiln_value *bview, const struct kiln_value **ins) {
    ins[0] = in[0];
    ins[1] = in[1];
    if (n->opset >= 7 || !kiln_attr_int(n, "broadcast", 0) || !kiln_attr_find(n, "axis")) return;
    const struct kiln_value *a = in[0], *b = in[1];
    int64_t axis = kiln_attr_int(n, "axis", 0);
    if (axis < 0) axis += a->rank;
    if (axis < 0 || axis + b->rank > a->rank || b->rank < 0) return; /* infer reports it */
    *bview = *b;
    bview->rank = (int32_t)(a->rank - axis);
    for (int32_t i = b->rank; i < bview->rank; i++) bview->dims[i] = 1;
    ins[1] = bview;
}

/* Broadcasts all inputs into (rank, dims) and checks the element count fits. */
static kiln_status broadcast_all(const struct kiln_node *n, const struct kiln_value *const *in,
                                 int n_in, int32_t *rank, int64_t *dims, kiln_error *err) {
    struct kiln_value acc;
    memset(&acc, 0, sizeof acc);
    kiln_status s;
    for (int i = 0; i < n_in; i++) {
        if ((s = check_dims(n, in[i], i, err)) != KILN_OK) return s;
        if (i == 0) {
            acc.rank = in[0]->rank;
            memcpy(acc.dims, in[0]->dims, sizeof acc.dims);
            continue;
        }
        int32_t r;
        int64_t d[KILN_MAX_RANK];
        if ((s = kiln_broadcast_shape(n, &acc, in[i], &r, d, err)) != KILN_OK) return s;
        acc.rank = r;
        memcpy(acc.dims, d, sizeof d);
    }
    int64_t numel = 1;
    for (int32_t i = 0; i < acc.rank; i++) {
        if (acc.dims[i] != 0 && numel > INT64_MAX / 16 / acc.dims[i])
            return kiln_op_fail(err, KILN_ERR_SHAPE, n, "broadcast output is too large");
        numel *= acc.dims[i];
    }
    *rank = acc.rank;
    memcpy(dims, acc.dims, sizeof acc.dims);
    return KILN_OK;
}

static kiln_status need_inputs(const struct kiln_node *n, const struct kiln_value *const *in,
                               int n_in, int min_in, int max_in, kiln_error *err) {
    kiln_status s = kiln_op_check_arity(n, n_in, min_in, max_in, err);
    if (s != KILN_OK) return s;
    for (int i = 0; i < n_in; i++)
        if (!in[i]) return kiln_op_fail(err, KILN_ERR_BAD_MODEL, n, "input %d is missing", i);
    return KILN_OK;
}

static kiln_status need_output(const struct kiln_node *n, struct kiln_value *const *out,
                               int n_out, kiln_error *err) {
    if (n_out < 1 || !out[0])
        return kiln_op_fail(err, KILN_ERR_BAD_MODEL, n, "expected 1 output, got %d", n_out);
    return KILN_OK;
}

static kiln_status unsupported_dtype(const struct kiln_node *n, int idx, kiln_dtype dt,
                                     kiln_error *err) {
    return kiln_op_fail(err, KILN_ERR_UNSUPPORTED, n, "input %d: dtype %s is not supported", idx,
                        kiln_dtype_name(dt));
}

/* Same-dtype n-ary op: checks dtypes against tab, broadcasts, sets out[0]. */
static kiln_status infer_same(const struct kiln_node *n, const struct kiln_value *const *in,
                              int n_in, int min_in, int max_in, struct kiln_value *const *out,
                              int n_out, const ew_tab tab, bool bool_out, kiln_error *err) {
    kiln_status s;
    if ((s = need_inputs(n, in, n_in, min_in, max_in, err)) != KILN_OK) return s;
    if ((s = need_output(n, out, n_out, err)) != KILN_OK) return s;
    kiln_dtype dt = in[0]->dtype;
    if (!tab_get(tab, dt)) return unsupported_dtype(n, 0, dt, err);
    for (int i = 1; i < n_in; i++)
        if (in[i]->dtype != dt)
            return kiln_op_fail(err, KILN_ERR_SHAPE, n, "input %d: expected dtype %s, got %s", i,
                                kiln_dtype_name(dt), kiln_dtype_name(in[i]->dtype));
    int32_t rank;
    int64_t dims[KILN_MAX_RANK];
    struct kiln_value bview;
    const struct kiln_value *ins[2];
    if (n_in == 2) {
        legacy_inputs(n, in, &bview, ins);
        in = ins;
    }
    if ((s = broadcast_all(n, in, n_in, &rank, dims, err)) != KILN_OK) return s;
    kiln_value_set_shape(out[0], bool_out ? KILN_DTYPE_BOOL : dt, rank, dims);
    return KILN_OK;
}

static double flops_numel(const struct kiln_node *n, const struct kiln_value *const *in, int n_in,
                          struct kiln_value *const *out, int n_out) {
    return n_out > 0 && out[0] ? (double)kiln_value_numel(out[0]) : 0.0;
}

/* ------------------------------------------------------------------------ */
/* Plain binary ops                                                          */

static kiln_status exec_binary(const struct kiln_node *n, struct kiln_exec_ctx *ctx,
                               const struct kiln_value *const *in, struct kiln_value *out,
                               const ew_tab tab, kiln_error *err) {
    row_fn fn = tab_get(tab, in[0]->dtype);
    if (!fn) return unsupported_dtype(n, 0, in[0]->dtype, err);
    struct kiln_value bview;
    const struct kiln_value *ins[2];
    legacy_inputs(n, in, &bview, ins);
    ew_apply(ctx, ins, 2, out, fn, NULL);
    return KILN_OK;
}

#define BINARY_OP(NAME, TAB, BOOL_OUT)                                                         \
    static kiln_status infer_##NAME(const struct kiln_node *n,                                 \
                                    const struct kiln_value *const *in, int n_in,              \
                                    struct kiln_value *const *out, int n_out, kiln_error *err) \
    {                                                                                          \
        return infer_same(n, in, n_in, 2, 2, out, n_out, TAB, BOOL_OUT, err);                  \
    }                                                                                          \
    static kiln_status exec_##NAME(const struct kiln_node *n, struct kiln_exec_ctx *ctx,       \
                                   const struct kiln_value *const *in, int n_in,               \
                                   struct kiln_value *const *out, int n_out, kiln_error *err)  \
    {                                                                                          \
        return exec_binary(n, ctx, in, out[0], TAB, err);                                      \
    }

BINARY_OP(add, add_tab, false)
BINARY_OP(sub, sub_tab, false)
BINARY_OP(mul, mul_tab, false)
BINARY_OP(div, div_tab, false)
BINARY_OP(equal, eq_tab, true)
BINARY_OP(less, lt_tab, true)
BINARY_OP(less_eq, le_tab, true)
BINARY_OP(greater, gt_tab, true)
BINARY_OP(greater_eq, ge_tab, true)
BINARY_OP(and, and_tab, false)
BINARY_OP(or, or_tab, false)
BINARY_OP(xor, xor_tab, false)
BINARY_OP(bit_and, band_tab, false)
BINARY_OP(bit_or, bor_tab, false)
BINARY_OP(bit_xor, bxor_tab, false)

/* ---- Mod ---- */

static kiln_status infer_mod(const struct kiln_node *n, const struct kiln_value *const *in,
                             int n_in, struct kiln_value *const *out, int n_out,
                             kiln_error *err) {
    int64_t fm = kiln_attr_int(n, "fmod", 0);
    if (fm != 0 && fm != 1)
        return kiln_op_fail(err, KILN_ERR_BAD_MODEL, n, "fmod must be 0 or 1, got %lld",
                            (long long)fm);
    return infer_same(n, in, n_in, 2, 2, out, n_out, fm ? fmod_tab : pmod_tab, false, err);
}

static kiln_status exec_mod(const struct kiln_node *n, struct kiln_exec_ctx *ctx,
                            const struct kiln_value *const *in, int n_in,
                            struct kiln_value *const *out, int n_out, kiln_error *err) {
    return exec_binary(n, ctx, in, out[0], kiln_attr_int(n, "fmod", 0) ? fmod_tab : pmod_tab,
                       err);
}

/* ---- BitShift ---- */

static const ew_tab *shift_tab(const struct kiln_node *n) {
    const char *d = kiln_attr_string(n, "direction", "");
    if (strcmp(d, "LEFT") == 0) return &shl_tab;
    if (strcmp(d, "RIGHT") == 0) return &shr_tab;
    return NULL;
}

static kiln_status infer_bitshift(const struct kiln_node *n, const struct kiln_value *const *in,
                                  int n_in, struct kiln_value *const *out, int n_out,
                                  kiln_error *err) {
    const ew_tab *tab = shift_tab(n);
    if (!tab)
        return kiln_op_fail(err, KILN_ERR_BAD_MODEL, n,
                            "direction must be \"LEFT\" or \"RIGHT\", got \"%s\"",
                            kiln_attr_string(n, "direction", ""));
    return infer_same(n, in, n_in, 2, 2, out, n_out, *tab, false, err);
}

static kiln_status exec_bitshift(const struct kiln_node *n, struct kiln_exec_ctx *ctx,
                                 const struct kiln_value *const *in, int n_in,
                                 struct kiln_value *const *out, int n_out, kiln_error *err) {
    const ew_tab *tab = shift_tab(n);
    if (!tab) return kiln_op_fail(err, KILN_ERR_BAD_MODEL, n, "bad direction");
    return exec_binary(n, ctx, in, out[0], *tab, err);
}

/* ------------------------------------------------------------------------ */
/* Pow: base and exponent may have different dtypes; output has the base's.  */

static double ld_any(kiln_dtype dt, const void *p, int64_t i) {
    switch (dt) {
    case KILN_DTYPE_FLOAT: return ((const float *)p)[i];
    case KILN_DTYPE_DOUBLE: return ((const double *)p)[i];
    case KILN_DTYPE_FLOAT16: return kiln_f16_to_f32(((const uint16_t *)p)[i]);
    case KILN_DTYPE_BFLOAT16: return kiln_bf16_to_f32(((const uint16_t *)p)[i]);
    case KILN_DTYPE_INT8: return ((const int8_t *)p)[i];
    case KILN_DTYPE_INT16: return ((const int16_t *)p)[i];
    case KILN_DTYPE_INT32: return ((const int32_t *)p)[i];
    case KILN_DTYPE_INT64: return (double)((const int64_t *)p)[i];
    case KILN_DTYPE_UINT8: return ((const uint8_t *)p)[i];
    case KILN_DTYPE_UINT16: return ((const uint16_t *)p)[i];
    case KILN_DTYPE_UINT32: return ((const uint32_t *)p)[i];
    case KILN_DTYPE_UINT64: return (double)((const uint64_t *)p)[i];
    default: return 0;
    }
}

static int64_t ld_int(kiln_dtype dt, const void *p, int64_t i) {
    switch (dt) {
    case KILN_DTYPE_INT8: return ((const int8_t *)p)[i];
    case KILN_DTYPE_INT16: return ((const int16_t *)p)[i];
    case KILN_DTYPE_INT32: return ((const int32_t *)p)[i];
    case KILN_DTYPE_INT64: return ((const int64_t *)p)[i];
    case KILN_DTYPE_UINT8: return ((const uint8_t *)p)[i];
    case KILN_DTYPE_UINT16: return ((const uint16_t *)p)[i];
    case KILN_DTYPE_UINT32: return ((const uint32_t *)p)[i];
    case KILN_DTYPE_UINT64: return (int64_t)((const uint64_t *)p)[i];
    default: return 0;
    }
}

/* double -> int64 with saturation (the C conversion is undefined out of range) */
static int64_t sat_i64(double v) {
    if (v != v) return 0;
    if (v <= -9223372036854775808.0) return INT64_MIN;
    if (v >= 9223372036854775808.0) return INT64_MAX;
    return (int64_t)v;
}

/* Stores a pow result into the base dtype (float32/64, f16, bf16, int32, int64). */
static void st_pow(kiln_dtype dt, void *p, int64_t i, double v, int64_t iv, bool exact) {
    switch (dt) {
    case KILN_DTYPE_FLOAT: ((float *)p)[i] = (float)v; break;
    case KILN_DTYPE_DOUBLE: ((double *)p)[i] = v; break;
    case KILN_DTYPE_FLOAT16: ((uint16_t *)p)[i] = kiln_f32_to_f16((float)v); break;
    case KILN_DTYPE_BFLOAT16: ((uint16_t *)p)[i] = kiln_f32_to_bf16((float)v); break;
    case KILN_DTYPE_INT32: {
        /* exact integer powers wrap (numpy); float powers saturate */
        int64_t x = exact ? iv : sat_i64(v);
        if (!exact) x = x < INT32_MIN ? INT32_MIN : x > INT32_MAX ? INT32_MAX : x;
        ((int32_t *)p)[i] = (int32_t)x;
        break;
    }
    case KILN_DTYPE_INT64: ((int64_t *)p)[i] = exact ? iv : sat_i64(v); break;
    default: break;
    }
}

/* Integer power by squaring, wrapping like numpy's integer power. */
static int64_t ipow(int64_t x, int64_t y) {
    if (y < 0) return x == 1 ? 1 : x == -1 ? ((y & 1) ? -1 : 1) : 0;
    uint64_t r = 1, b = (uint64_t)x;
    for (uint64_t e = (uint64_t)y; e; e >>= 1) {
        if (e & 1) r *= b;
        b *= b;
    }
    return (int64_t)r;
}

struct pow_arg {
    kiln_dtype ta, tb;
};

static void pow_any_row(const void *const *src, const int *inc, void *dst, int64_t n,
                        const void *varg) {
    const struct pow_arg *A = varg;
    bool ints = kiln_dtype_is_int(A->ta) && kiln_dtype_is_int(A->tb);
    for (int64_t i = 0; i < n; i++) {
        int64_t ia = i * inc[0], ib = i * inc[1];
        if (ints)
            st_pow(A->ta, dst, i, 0, ipow(ld_int(A->ta, src[0], ia), ld_int(A->tb, src[1], ib)),
                   true);
        else
            st_pow(A->ta, dst, i, pow(ld_any(A->ta, src[0], ia), ld_any(A->tb, src[1], ib)), 0,
                   false);
    }
}

BIN_ROW(pow_row_f32, float, float, float, float, ID, ID, ID, (float)pow(x, y))
BIN_ROW(pow_row_f64, double, double, double, double, ID, ID, ID, pow(x, y))

/* float32 ** float32, with the exponents models actually use (x^2 in
 * variance, x^0.5, x^3 in GELU) done without calling powf. */
static void pow_f32_row(const void *const *src, const int *inc, void *dst, int64_t n,
                        const void *arg) {
    if (inc[1] == 0 && inc[0]) {
        const float *a = src[0];
        float y = *(const float *)src[1], *o = dst;
        if (y == 2.0f) {
            for (int64_t i = 0; i < n; i++) o[i] = a[i] * a[i];
            return;
        }
        if (y == 3.0f) {
            for (int64_t i = 0; i < n; i++) o[i] = a[i] * a[i] * a[i];
            return;
        }
        if (y == 1.0f) {
            for (int64_t i = 0; i < n; i++) o[i] = a[i];
            return;
        }
        if (y == 0.5f) {
            for (int64_t i = 0; i < n; i++) o[i] = sqrtf(a[i]);
            return;
        }
    }
    pow_row_f32(src, inc, dst, n, arg);
}

static bool pow_base_ok(kiln_dtype t) {
    return t == KILN_DTYPE_FLOAT || t == KILN_DTYPE_DOUBLE || t == KILN_DTYPE_FLOAT16 ||
           t == KILN_DTYPE_BFLOAT16 || t == KILN_DTYPE_INT32 || t == KILN_DTYPE_INT64;
}

static kiln_status infer_pow(const struct kiln_node *n, const struct kiln_value *const *in,
                             int n_in, struct kiln_value *const *out, int n_out,
                             kiln_error *err) {
    kiln_status s;
    if ((s = need_inputs(n, in, n_in, 2, 2, err)) != KILN_OK) return s;
    if ((s = need_output(n, out, n_out, err)) != KILN_OK) return s;
    if (!pow_base_ok(in[0]->dtype)) return unsupported_dtype(n, 0, in[0]->dtype, err);
    if (!is_wide_float(in[1]->dtype) && !is_std_int(in[1]->dtype))
        return unsupported_dtype(n, 1, in[1]->dtype, err);
    /* before opset 12 both operands share one type */
    if (n->opset < 12 && in[1]->dtype != in[0]->dtype)
        return kiln_op_fail(err, KILN_ERR_SHAPE, n, "input 1: expected dtype %s, got %s",
                            kiln_dtype_name(in[0]->dtype), kiln_dtype_name(in[1]->dtype));
    int32_t rank;
    int64_t dims[KILN_MAX_RANK];
    struct kiln_value bview;
    const struct kiln_value *ins[2];
    legacy_inputs(n, in, &bview, ins);
    if ((s = broadcast_all(n, ins, 2, &rank, dims, err)) != KILN_OK) return s;
    kiln_value_set_shape(out[0], in[0]->dtype, rank, dims);
    return KILN_OK;
}

static kiln_status exec_pow(const struct kiln_node *n, struct kiln_exec_ctx *ctx,
                            const struct kiln_value *const *in, int n_in,
                            struct kiln_value *const *out, int n_out, kiln_error *err) {
    kiln_dtype ta = in[0]->dtype, tb = in[1]->dtype;
    struct kiln_value bview;
    const struct kiln_value *ins[2];
    legacy_inputs(n, in, &bview, ins);
    if (ta == KILN_DTYPE_FLOAT && tb == KILN_DTYPE_FLOAT) {
        ew_apply(ctx, ins, 2, out[0], pow_f32_row, NULL);
    } else if (ta == KILN_DTYPE_DOUBLE && tb == KILN_DTYPE_DOUBLE) {
        ew_apply(ctx, ins, 2, out[0], pow_row_f64, NULL);
    } else {
        struct pow_arg A = {ta, tb};
        ew_apply(ctx, ins, 2, out[0], pow_any_row, &A);
    }
    return KILN_OK;
}

/* ------------------------------------------------------------------------ */
/* Variadic: Max, Min, Sum, Mean                                             */

#define scale_f(CT, x, y) ((x) * (y))
TYPES_FLOAT(DEF_BIN, scale_f)
static const ew_tab scale_tab = {TYPES_FLOAT(ENTRY, scale_f)};

static const ew_tab float_only = {TYPES_FLOAT(ENTRY, add_f)};

static kiln_status infer_variadic(const struct kiln_node *n, const struct kiln_value *const *in,
                                  int n_in, struct kiln_value *const *out, int n_out,
                                  const ew_tab tab, kiln_error *err) {
    return infer_same(n, in, n_in, 1, 1 << 20, out, n_out, tab, false, err);
}

/* out = in0 op in1 op ... folded left to right; Mean then scales by 1/n. */
static kiln_status exec_variadic(const struct kiln_node *n, struct kiln_exec_ctx *ctx,
                                 const struct kiln_value *const *in, int n_in,
                                 struct kiln_value *out, const ew_tab tab, bool mean,
                                 kiln_error *err) {
    row_fn fn = tab_get(tab, out->dtype);
    if (!fn) return unsupported_dtype(n, 0, out->dtype, err);
    if (n_in == 1) { /* output shape equals input 0's */
        size_t bytes = (size_t)kiln_value_numel(out) * kiln_dtype_size(out->dtype);
        if (out->data != in[0]->data && bytes) memcpy(out->data, in[0]->data, bytes);
    } else {
        ew_apply(ctx, in, 2, out, fn, NULL);
        for (int i = 2; i < n_in; i++) {
            const struct kiln_value *pair[2] = {out, in[i]};
            ew_apply(ctx, pair, 2, out, fn, NULL);
        }
    }
    if (mean) {
        /* a 0-d value of the output dtype holding 1/n */
        union { float f; double d; uint16_t h; } inv;
        struct kiln_value sv;
        memset(&sv, 0, sizeof sv);
        sv.dtype = out->dtype;
        sv.data = &inv;
        switch (out->dtype) {
        case KILN_DTYPE_FLOAT: inv.f = 1.0f / (float)n_in; break;
        case KILN_DTYPE_DOUBLE: inv.d = 1.0 / n_in; break;
        case KILN_DTYPE_FLOAT16: inv.h = kiln_f32_to_f16(1.0f / (float)n_in); break;
        case KILN_DTYPE_BFLOAT16: inv.h = kiln_f32_to_bf16(1.0f / (float)n_in); break;
        default: return unsupported_dtype(n, 0, out->dtype, err);
        }
        const struct kiln_value *pair[2] = {out, &sv};
        ew_apply(ctx, pair, 2, out, tab_get(scale_tab, out->dtype), NULL);
    }
    return KILN_OK;
}

#define VARIADIC_OP(NAME, TAB, INFER_TAB, MEAN)                                                \
    static kiln_status infer_##NAME(const struct kiln_node *n,                                 \
                                    const struct kiln_value *const *in, int n_in,              \
                                    struct kiln_value *const *out, int n_out, kiln_error *err) \
    {                                                                                          \
        return infer_variadic(n, in, n_in, out, n_out, INFER_TAB, err);                        \
    }                                                                                          \
    static kiln_status exec_##NAME(const struct kiln_node *n, struct kiln_exec_ctx *ctx,       \
                                   const struct kiln_value *const *in, int n_in,               \
                                   struct kiln_value *const *out, int n_out, kiln_error *err)  \
    {                                                                                          \
        return exec_variadic(n, ctx, in, n_in, out[0], TAB, MEAN, err);                        \
    }

VARIADIC_OP(max, max_tab, max_tab, false)
VARIADIC_OP(min, min_tab, min_tab, false)
VARIADIC_OP(sum, add_tab, float_only, false)
VARIADIC_OP(mean, add_tab, float_only, true)

/* ------------------------------------------------------------------------ */
/* Where(cond, X, Y)                                                         */

#define WHERE_ROW(NAME, T)                                                                     \
    static void NAME(const void *const *src, const int *inc, void *dst, int64_t n,            \
                     const void *arg) {                                                        \
        const uint8_t *c = src[0];                                                             \
        const T *x = src[1], *y = src[2];                                                      \
        T *o = dst;                                                                            \
        if (inc[0] && inc[1] && inc[2]) {                                                      \
            for (int64_t i = 0; i < n; i++) o[i] = c[i] ? x[i] : y[i];                         \
        } else {                                                                               \
            int64_t sc = inc[0], sx = inc[1], sy = inc[2];                                     \
            for (int64_t i = 0; i < n; i++) o[i] = c[i * sc] ? x[i * sx] : y[i * sy];          \
        }                                                                                      \
    }
WHERE_ROW(where_1, uint8_t)
WHERE_ROW(where_2, uint16_t)
WHERE_ROW(where_4, uint32_t)
WHERE_ROW(where_8, uint64_t)

static row_fn where_fn(kiln_dtype dt) {
    switch (kiln_dtype_size(dt)) {
    case 1: return where_1;
    case 2: return where_2;
    case 4: return where_4;
    case 8: return where_8;
    default: return NULL;
    }
}

static kiln_status infer_where(const struct kiln_node *n, const struct kiln_value *const *in,
                               int n_in, struct kiln_value *const *out, int n_out,
                               kiln_error *err) {
    kiln_status s;
    if ((s = need_inputs(n, in, n_in, 3, 3, err)) != KILN_OK) return s;
    if ((s = need_output(n, out, n_out, err)) != KILN_OK) return s;
    if (in[0]->dtype != KILN_DTYPE_BOOL)
        return kiln_op_fail(err, KILN_ERR_SHAPE, n, "input 0: expected dtype bool, got %s",
                            kiln_dtype_name(in[0]->dtype));
    if (in[1]->dtype != in[2]->dtype)
        return kiln_op_fail(err, KILN_ERR_SHAPE, n, "input 2: expected dtype %s, got %s",
                            kiln_dtype_name(in[1]->dtype), kiln_dtype_name(in[2]->dtype));
    if (!where_fn(in[1]->dtype)) return unsupported_dtype(n, 1, in[1]->dtype, err);
    int32_t rank;
    int64_t dims[KILN_MAX_RANK];
    if ((s = broadcast_all(n, in, 3, &rank, dims, err)) != KILN_OK) return s;
    kiln_value_set_shape(out[0], in[1]->dtype, rank, dims);
    return KILN_OK;
}

static kiln_status exec_where(const struct kiln_node *n, struct kiln_exec_ctx *ctx,
                              const struct kiln_value *const *in, int n_in,
                              struct kiln_value *const *out, int n_out, kiln_error *err) {
    row_fn fn = where_fn(in[1]->dtype);
    if (!fn) return unsupported_dtype(n, 1, in[1]->dtype, err);
    ew_apply(ctx, in, 3, out[0], fn, NULL);
    return KILN_OK;
}

/* ------------------------------------------------------------------------ */
/* PRelu: slope broadcasts to X (unidirectionally); output has X's shape.    */

/* PRelu-1/6 models often give a per-channel slope of shape [C] for an NCHW
 * input, which numpy broadcasting would align with the last axis instead. */
static bool prelu_legacy_channel(const struct kiln_node *n, const struct kiln_value *x,
                                 const struct kiln_value *s) {
    return n->opset < 7 && s->rank == 1 && x->rank >= 2 && s->dims[0] == x->dims[1] &&
           s->dims[0] != 1;
}

static kiln_status infer_prelu(const struct kiln_node *n, const struct kiln_value *const *in,
                               int n_in, struct kiln_value *const *out, int n_out,
                               kiln_error *err) {
    kiln_status s;
    if ((s = need_inputs(n, in, n_in, 2, 2, err)) != KILN_OK) return s;
    if ((s = need_output(n, out, n_out, err)) != KILN_OK) return s;
    const struct kiln_value *x = in[0], *sl = in[1];
    if (!tab_get(prelu_tab, x->dtype)) return unsupported_dtype(n, 0, x->dtype, err);
    if (sl->dtype != x->dtype)
        return kiln_op_fail(err, KILN_ERR_SHAPE, n, "input 1: expected dtype %s, got %s",
                            kiln_dtype_name(x->dtype), kiln_dtype_name(sl->dtype));
    if ((s = check_dims(n, x, 0, err)) != KILN_OK) return s;
    if ((s = check_dims(n, sl, 1, err)) != KILN_OK) return s;
    bool ok = sl->rank <= x->rank;
    for (int32_t i = 0; ok && i < sl->rank; i++) {
        int64_t d = sl->dims[sl->rank - 1 - i];
        ok = d == 1 || d == x->dims[x->rank - 1 - i];
    }
    if (!ok && !prelu_legacy_channel(n, x, sl)) {
        char sx[128], ss[128];
        kiln_shape_str(x, sx, sizeof sx);
        kiln_shape_str(sl, ss, sizeof ss);
        return kiln_op_fail(err, KILN_ERR_SHAPE, n, "slope shape %s does not broadcast to X %s",
                            ss, sx);
    }
    kiln_value_set_shape(out[0], x->dtype, x->rank, x->dims);
    return KILN_OK;
}

static kiln_status exec_prelu(const struct kiln_node *n, struct kiln_exec_ctx *ctx,
                              const struct kiln_value *const *in, int n_in,
                              struct kiln_value *const *out, int n_out, kiln_error *err) {
    row_fn fn = tab_get(prelu_tab, in[0]->dtype);
    if (!fn) return unsupported_dtype(n, 0, in[0]->dtype, err);
    struct kiln_value slope = *in[1];
    const struct kiln_value *ins[2] = {in[0], &slope};
    if (prelu_legacy_channel(n, in[0], in[1])) {
        /* view slope [C] as [C, 1, ..., 1] trailing X's channel axis */
        slope.rank = in[0]->rank - 1;
        for (int32_t i = 1; i < slope.rank; i++) slope.dims[i] = 1;
    }
    ew_apply(ctx, ins, 2, out[0], fn, NULL);
    return KILN_OK;
}

/* ------------------------------------------------------------------------ */

#define OP(NAME, SINCE, FLAGS, FN) \
    {NAME, NULL, SINCE, FLAGS, infer_##FN, exec_##FN, NULL, flops_numel}

const struct kiln_op_def kiln_ops_elementwise[] = {
    OP("Add", 1, KILN_OP_INPLACE, add),
    OP("Sub", 1, KILN_OP_INPLACE, sub),
    OP("Mul", 1, KILN_OP_INPLACE, mul),
    OP("Div", 1, KILN_OP_INPLACE, div),
    OP("Pow", 1, KILN_OP_INPLACE, pow),
    OP("Mod", 10, KILN_OP_INPLACE, mod),
    OP("Max", 1, KILN_OP_INPLACE, max),
    OP("Min", 1, KILN_OP_INPLACE, min),
    OP("Sum", 1, KILN_OP_INPLACE, sum),
    OP("Mean", 1, KILN_OP_INPLACE, mean),
    OP("Equal", 1, 0, equal),
    OP("Less", 1, 0, less),
    OP("LessOrEqual", 12, 0, less_eq),
    OP("Greater", 1, 0, greater),
    OP("GreaterOrEqual", 12, 0, greater_eq),
    OP("And", 1, KILN_OP_INPLACE, and),
    OP("Or", 1, KILN_OP_INPLACE, or),
    OP("Xor", 1, KILN_OP_INPLACE, xor),
    OP("BitShift", 11, KILN_OP_INPLACE, bitshift),
    OP("BitwiseAnd", 18, KILN_OP_INPLACE, bit_and),
    OP("BitwiseOr", 18, KILN_OP_INPLACE, bit_or),
    OP("BitwiseXor", 18, KILN_OP_INPLACE, bit_xor),
    OP("Where", 9, 0, where),
    OP("PRelu", 1, KILN_OP_INPLACE, prelu),
    {0},
};
