/* unary.c — elementwise one-input ops: math, activations, Clip, IsNaN/IsInf,
 * Not/BitwiseNot, Cast and CastLike.
 *
 * Float math is written once per op as an expression over a type T and
 * instantiated for float and double (tgmath picks expf/exp, ...); float16 and
 * bfloat16 run the float kernel on converted chunks. */
#include "ops/op.h"
#include "ops/fast_expf.h"

#include <float.h>
#include <omp.h>
#include <stdint.h>
#include <string.h>
#include <tgmath.h>

#define UN_NDT     17          /* dtype enum values are < 17 */
#define UN_PAR_MIN (1 << 15)   /* below this, threads cost more than they save */
#define UN_CHUNK   (1 << 14)   /* elements per parallel task */
#define UN_BUF     512         /* elements per conversion buffer (on the stack) */
/* omp simd: no loop here has cross-iteration dependences (y may be x itself,
 * element for element), and at -O2 GCC's cheap cost model would otherwise
 * leave them scalar. */
#define SIMD _Pragma("omp simd")

static int un_threads(const struct kiln_exec_ctx *ctx) {
    return ctx && ctx->n_threads > 0 ? ctx->n_threads : omp_get_max_threads();
}

/* Calls fn(arg, start, end) over [0, n), in parallel chunks when n is large. */
static void run_chunks(const struct kiln_exec_ctx *ctx, int64_t n,
                       void (*fn)(const void *arg, int64_t s, int64_t e), const void *arg) {
    if (n <= 0) return;
    if (n < UN_PAR_MIN) {
        fn(arg, 0, n);
        return;
    }
    int64_t tasks = (n + UN_CHUNK - 1) / UN_CHUNK;
#pragma omp parallel for schedule(static) num_threads(un_threads(ctx))
    for (int64_t t = 0; t < tasks; t++) {
        int64_t e = (t + 1) * UN_CHUNK;
        fn(arg, t * UN_CHUNK, e < n ? e : n);
    }
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
/* Common checks                                                             */

static kiln_status unsupported_dtype(const struct kiln_node *n, int idx, kiln_dtype dt,
                                     kiln_error *err) {
    return kiln_op_fail(err, KILN_ERR_UNSUPPORTED, n, "input %d: dtype %s is not supported", idx,
                        kiln_dtype_name(dt));
}

/* Arity (min..max inputs, input 0 present), one output, sane input 0 shape. */
static kiln_status check_io(const struct kiln_node *n, const struct kiln_value *const *in,
                            int n_in, int max_in, struct kiln_value *const *out, int n_out,
                            kiln_error *err) {
    kiln_status s = kiln_op_check_arity(n, n_in, 1, max_in, err);
    if (s != KILN_OK) return s;
    if (!in[0]) return kiln_op_fail(err, KILN_ERR_BAD_MODEL, n, "input 0 is missing");
    if (n_out < 1 || !out[0])
        return kiln_op_fail(err, KILN_ERR_BAD_MODEL, n, "expected 1 output, got %d", n_out);
    const struct kiln_value *x = in[0];
    if (x->rank < 0 || x->rank > KILN_MAX_RANK)
        return kiln_op_fail(err, KILN_ERR_SHAPE, n, "input 0: rank %d out of range", x->rank);
    for (int32_t i = 0; i < x->rank; i++)
        if (x->dims[i] < 0)
            return kiln_op_fail(err, KILN_ERR_SHAPE, n, "input 0: dim %d is %lld", i,
                                (long long)x->dims[i]);
    return KILN_OK;
}

static double flops_numel(const struct kiln_node *n, const struct kiln_value *const *in, int n_in,
                          struct kiln_value *const *out, int n_out) {
    return n_out > 0 && out[0] ? (double)kiln_value_numel(out[0]) : 0.0;
}

/* ------------------------------------------------------------------------ */
/* Float math and activations                                                */

struct uparam {
    float alpha, beta, gamma;
};

typedef void (*uf32_fn)(const float *x, float *y, int64_t n, const struct uparam *p);
typedef void (*uf64_fn)(const double *x, double *y, int64_t n, const struct uparam *p);
/* same-dtype integer kernel (x and y of the op's dtype) */
typedef void (*uint_fn)(const void *x, void *y, int64_t n);

#define UNARY_FLOAT_T(NAME, SFX, TT, EXPR)                                                     \
    static void NAME##_##SFX(const TT *in, TT *out, int64_t n, const struct uparam *p) {       \
        typedef TT T;                                                                          \
        const T alpha = (T)p->alpha, beta = (T)p->beta, gamma = (T)p->gamma;                   \
        (void)alpha, (void)beta, (void)gamma;                                                  \
        SIMD for (int64_t i = 0; i < n; i++) {                                                      \
            const T x = in[i];                                                                 \
            out[i] = (T)(EXPR);                                                                \
        }                                                                                      \
    }
#define UNARY_FLOAT(NAME, EXPR) UNARY_FLOAT_T(NAME, f32, float, EXPR) \
                                UNARY_FLOAT_T(NAME, f64, double, EXPR)

/* log(1 + e^x) without overflow for large x */
#define SOFTPLUS(x) (fmax((x), (T)0) + log1p(exp(-fabs(x))))

UNARY_FLOAT(neg, -x)
UNARY_FLOAT(abs, fabs(x))
UNARY_FLOAT(recip, (T)1 / x)
UNARY_FLOAT(sqrt, sqrt(x))
UNARY_FLOAT(exp, exp(x))
UNARY_FLOAT(log, log(x))
UNARY_FLOAT(erf, erf(x))
UNARY_FLOAT(floor, floor(x))
UNARY_FLOAT(ceil, ceil(x))
UNARY_FLOAT(round, rint(x))   /* default rounding mode: half to even */
UNARY_FLOAT(sign, x != x ? x : (T)((x > 0) - (x < 0)))
UNARY_FLOAT(sin, sin(x))
UNARY_FLOAT(cos, cos(x))
UNARY_FLOAT(tan, tan(x))
UNARY_FLOAT(asin, asin(x))
UNARY_FLOAT(acos, acos(x))
UNARY_FLOAT(atan, atan(x))
UNARY_FLOAT(sinh, sinh(x))
UNARY_FLOAT(cosh, cosh(x))
UNARY_FLOAT(asinh, asinh(x))
UNARY_FLOAT(acosh, acosh(x))
UNARY_FLOAT(atanh, atanh(x))
UNARY_FLOAT(tanh, tanh(x))
UNARY_FLOAT(sigmoid, (T)1 / ((T)1 + exp(-x)))
UNARY_FLOAT(relu, x < 0 ? (T)0 : x)
UNARY_FLOAT(leaky_relu, x < 0 ? alpha * x : x)
UNARY_FLOAT(elu, x < 0 ? alpha * expm1(x) : x)
UNARY_FLOAT(selu, x > 0 ? gamma * x : gamma * (alpha * exp(x) - alpha))
UNARY_FLOAT(celu, fmax((T)0, x) + fmin((T)0, alpha * expm1(x / alpha)))
UNARY_FLOAT(gelu_erf, (T)0.5 * x * ((T)1 + erf(x * (T)0.70710678118654752440)))
UNARY_FLOAT(gelu_tanh, (T)0.5 * x *
                           ((T)1 + tanh((T)0.79788456080286535588 * (x + (T)0.044715 * x * x * x))))
UNARY_FLOAT(mish, x * tanh(SOFTPLUS(x)))
UNARY_FLOAT(swish, x / ((T)1 + exp(-alpha * x)))
UNARY_FLOAT(softplus, SOFTPLUS(x))
UNARY_FLOAT(softsign, x / ((T)1 + fabs(x)))
UNARY_FLOAT(hard_sigmoid, fmax((T)0, fmin((T)1, alpha * x + beta)))
UNARY_FLOAT(hard_swish, x * fmax((T)0, fmin((T)1, x * (T)(1.0 / 6.0) + (T)0.5)))
UNARY_FLOAT(thresholded_relu, x > alpha ? x : (T)0)
UNARY_FLOAT(shrink, x < -alpha ? x + beta : x > alpha ? x - beta : (T)0)

/* Integer variants (Neg, Abs, Sign, Relu take ints too). Signed negation
 * wraps (INT_MIN stays INT_MIN) instead of overflowing. */
#define UNARY_INT_T(NAME, SFX, TT, EXPR)                                                       \
    static void NAME##_##SFX(const void *vin, void *vout, int64_t n) {                         \
        typedef TT T;                                                                          \
        const T *in = vin;                                                                     \
        T *out = vout;                                                                         \
        SIMD for (int64_t i = 0; i < n; i++) {                                                      \
            const T x = in[i];                                                                 \
            out[i] = (T)(EXPR);                                                                \
        }                                                                                      \
    }
#define UNARY_SINT(NAME, EXPR)                                                                 \
    UNARY_INT_T(NAME, i8, int8_t, EXPR) UNARY_INT_T(NAME, i16, int16_t, EXPR)                  \
    UNARY_INT_T(NAME, i32, int32_t, EXPR) UNARY_INT_T(NAME, i64, int64_t, EXPR)
#define UNARY_UINT(NAME, EXPR)                                                                 \
    UNARY_INT_T(NAME, u8, uint8_t, EXPR) UNARY_INT_T(NAME, u16, uint16_t, EXPR)                \
    UNARY_INT_T(NAME, u32, uint32_t, EXPR) UNARY_INT_T(NAME, u64, uint64_t, EXPR)
#define SINT_ENTRIES(NAME)                                                                     \
    [KILN_DTYPE_INT8] = NAME##_i8, [KILN_DTYPE_INT16] = NAME##_i16,                            \
    [KILN_DTYPE_INT32] = NAME##_i32, [KILN_DTYPE_INT64] = NAME##_i64
#define UINT_ENTRIES(NAME)                                                                     \
    [KILN_DTYPE_UINT8] = NAME##_u8, [KILN_DTYPE_UINT16] = NAME##_u16,                          \
    [KILN_DTYPE_UINT32] = NAME##_u32, [KILN_DTYPE_UINT64] = NAME##_u64

UNARY_SINT(ineg, 0 - (uint64_t)x)
UNARY_SINT(iabs, x < 0 ? 0 - (uint64_t)x : (uint64_t)x)
UNARY_SINT(isign, (x > 0) - (x < 0))
UNARY_UINT(usign, x != 0)
UNARY_SINT(irelu, x < 0 ? 0 : x)
/* the identity, for unsigned Abs and Relu */
UNARY_UINT(ucopy, x)
UNARY_SINT(bnot_s, ~x)
UNARY_UINT(bnot_u, ~x)

typedef uint_fn uint_tab[UN_NDT];
static const uint_tab ineg_tab = {SINT_ENTRIES(ineg)};
static const uint_tab iabs_tab = {SINT_ENTRIES(iabs), UINT_ENTRIES(ucopy)};
static const uint_tab isign_tab = {SINT_ENTRIES(isign), UINT_ENTRIES(usign)};
static const uint_tab irelu_tab = {SINT_ENTRIES(irelu)};
static const uint_tab bnot_tab = {SINT_ENTRIES(bnot_s), UINT_ENTRIES(bnot_u)};

/* One float op: kernels, optional int kernels, and its attributes. */
struct unary_def {
    uf32_fn f32;
    uf64_fn f64;
    const uint_tab *ints;
    const char *a_name, *b_name, *g_name;   /* attribute names for alpha/beta/gamma */
    float a_def, b_def, g_def;
};

struct ujob {
    const struct unary_def *d;
    struct uparam p;
    kiln_dtype dt;
    const void *x;
    void *y;
};

static void ujob_range(const void *varg, int64_t s, int64_t e) {
    const struct ujob *J = varg;
    switch (J->dt) {
    case KILN_DTYPE_FLOAT:
        J->d->f32((const float *)J->x + s, (float *)J->y + s, e - s, &J->p);
        break;
    case KILN_DTYPE_DOUBLE:
        J->d->f64((const double *)J->x + s, (double *)J->y + s, e - s, &J->p);
        break;
    case KILN_DTYPE_FLOAT16:
    case KILN_DTYPE_BFLOAT16: {
        /* compute in float32, one buffer at a time */
        bool h = J->dt == KILN_DTYPE_FLOAT16;
        float buf[UN_BUF];
        const uint16_t *x = J->x;
        uint16_t *y = J->y;
        for (int64_t b = s; b < e; b += UN_BUF) {
            int64_t m = e - b < UN_BUF ? e - b : UN_BUF;
            for (int64_t i = 0; i < m; i++)
                buf[i] = h ? kiln_f16_to_f32(x[b + i]) : kiln_bf16_to_f32(x[b + i]);
            J->d->f32(buf, buf, m, &J->p);
            for (int64_t i = 0; i < m; i++)
                y[b + i] = h ? kiln_f32_to_f16(buf[i]) : kiln_f32_to_bf16(buf[i]);
        }
        break;
    }
    default: {
        uint_fn f = (*J->d->ints)[J->dt];
        size_t es = kiln_dtype_size(J->dt);
        f((const char *)J->x + s * (int64_t)es, (char *)J->y + s * (int64_t)es, e - s);
        break;
    }
    }
}

static bool unary_dtype_ok(const struct unary_def *d, kiln_dtype dt) {
    if (is_wide_float(dt)) return true;
    return d->ints && (unsigned)dt < UN_NDT && (*d->ints)[dt];
}

static kiln_status unary_infer(const struct kiln_node *n, const struct kiln_value *const *in,
                               int n_in, struct kiln_value *const *out, int n_out,
                               const struct unary_def *d, kiln_error *err) {
    kiln_status s = check_io(n, in, n_in, 1, out, n_out, err);
    if (s != KILN_OK) return s;
    if (!unary_dtype_ok(d, in[0]->dtype)) return unsupported_dtype(n, 0, in[0]->dtype, err);
    kiln_value_set_shape(out[0], in[0]->dtype, in[0]->rank, in[0]->dims);
    return KILN_OK;
}

static kiln_status unary_exec(const struct kiln_node *n, struct kiln_exec_ctx *ctx,
                              const struct kiln_value *const *in, struct kiln_value *out,
                              const struct unary_def *d, kiln_error *err) {
    if (!unary_dtype_ok(d, in[0]->dtype)) return unsupported_dtype(n, 0, in[0]->dtype, err);
    struct ujob J = {d, {0, 0, 0}, in[0]->dtype, in[0]->data, out->data};
    J.p.alpha = d->a_name ? kiln_attr_float(n, d->a_name, d->a_def) : d->a_def;
    J.p.beta = d->b_name ? kiln_attr_float(n, d->b_name, d->b_def) : d->b_def;
    J.p.gamma = d->g_name ? kiln_attr_float(n, d->g_name, d->g_def) : d->g_def;
    run_chunks(ctx, kiln_value_numel(in[0]), ujob_range, &J);
    return KILN_OK;
}

#define UNARY_OP(NAME, F, INTS, A, AD, B, BD, G, GD)                                           \
    static const struct unary_def def_##NAME = {F##_f32, F##_f64, INTS, A, B, G, AD, BD, GD}; \
    static kiln_status infer_##NAME(const struct kiln_node *n,                                 \
                                    const struct kiln_value *const *in, int n_in,              \
                                    struct kiln_value *const *out, int n_out, kiln_error *err) \
    {                                                                                          \
        return unary_infer(n, in, n_in, out, n_out, &def_##NAME, err);                         \
    }                                                                                          \
    static kiln_status exec_##NAME(const struct kiln_node *n, struct kiln_exec_ctx *ctx,       \
                                   const struct kiln_value *const *in, int n_in,               \
                                   struct kiln_value *const *out, int n_out, kiln_error *err)  \
    {                                                                                          \
        return unary_exec(n, ctx, in, out[0], &def_##NAME, err);                               \
    }
#define SIMPLE_OP(NAME, INTS) UNARY_OP(NAME, NAME, INTS, NULL, 0, NULL, 0, NULL, 0)

SIMPLE_OP(neg, &ineg_tab)
SIMPLE_OP(abs, &iabs_tab)
SIMPLE_OP(recip, NULL)
SIMPLE_OP(sqrt, NULL)
SIMPLE_OP(exp, NULL)
SIMPLE_OP(log, NULL)
SIMPLE_OP(erf, NULL)
SIMPLE_OP(floor, NULL)
SIMPLE_OP(ceil, NULL)
SIMPLE_OP(round, NULL)
SIMPLE_OP(sign, &isign_tab)
SIMPLE_OP(sin, NULL)
SIMPLE_OP(cos, NULL)
SIMPLE_OP(tan, NULL)
SIMPLE_OP(asin, NULL)
SIMPLE_OP(acos, NULL)
SIMPLE_OP(atan, NULL)
SIMPLE_OP(sinh, NULL)
SIMPLE_OP(cosh, NULL)
SIMPLE_OP(asinh, NULL)
SIMPLE_OP(acosh, NULL)
SIMPLE_OP(atanh, NULL)
SIMPLE_OP(tanh, NULL)
SIMPLE_OP(sigmoid, NULL)
SIMPLE_OP(relu, &irelu_tab)
SIMPLE_OP(mish, NULL)
SIMPLE_OP(softplus, NULL)
SIMPLE_OP(softsign, NULL)
SIMPLE_OP(hard_swish, NULL)
UNARY_OP(leaky_relu, leaky_relu, NULL, "alpha", 0.01f, NULL, 0, NULL, 0)
UNARY_OP(elu, elu, NULL, "alpha", 1.0f, NULL, 0, NULL, 0)
UNARY_OP(selu, selu, NULL, "alpha", 1.67326319217681884765625f, NULL, 0, "gamma",
         1.05070102214813232421875f)
UNARY_OP(celu, celu, NULL, "alpha", 1.0f, NULL, 0, NULL, 0)
UNARY_OP(swish, swish, NULL, "alpha", 1.0f, NULL, 0, NULL, 0)
UNARY_OP(hard_sigmoid, hard_sigmoid, NULL, "alpha", 0.2f, "beta", 0.5f, NULL, 0)
UNARY_OP(thresholded_relu, thresholded_relu, NULL, "alpha", 1.0f, NULL, 0, NULL, 0)
UNARY_OP(shrink, shrink, NULL, "lambd", 0.5f, "bias", 0.0f, NULL, 0)

/* ---- Fast float32 paths (prepare): vectorizable exp ----
 *
 * exec stays on libm (the reference); prepare switches the exp-based
 * activations to fast_expf (ops/fast_expf.h), which `omp simd` vectorizes. */

/* 1 + erf(z) for GELU: Abramowitz-Stegun 7.1.26 for erfc(|z|) (absolute error
 * under 1.5e-7), taken without cancellation on the negative side. */
static inline float one_plus_erf(float z) {
    uint32_t iz;
    memcpy(&iz, &z, 4);
    float pos = (float)(int32_t)(~iz >> 31);                  /* 1 if z >= +0, else 0 */
    float a = fabs(z);
    float t = 1.0f / (1.0f + 0.3275911f * a);
    float q = t * (0.254829592f +
                   t * (-0.284496736f + t * (1.421413741f + t * (-1.453152027f + t * 1.061405429f))));
    float c = q * fast_expf(-a * a);                          /* erfc(|z|) */
    return c + pos * (2.0f - 2.0f * c);
}

#define UNARY_FAST(NAME, EXPR, A, AD)                                                          \
    static void NAME##_fast(const float *in, float *out, int64_t n, const struct uparam *p) {  \
        const float alpha = p->alpha;                                                          \
        (void)alpha;                                                                           \
        SIMD for (int64_t i = 0; i < n; i++) {                                                 \
            const float x = in[i];                                                             \
            out[i] = (EXPR);                                                                   \
        }                                                                                      \
    }                                                                                          \
    static const struct unary_def fast_##NAME = {NAME##_fast, NAME##_f64, NULL, A, NULL,       \
                                                 NULL, AD, 0, 0};

UNARY_FAST(exp, fast_expf(x), NULL, 0)
UNARY_FAST(sigmoid, 1.0f / (1.0f + fast_expf(-x)), NULL, 0)
UNARY_FAST(swish, x / (1.0f + fast_expf(-alpha * x)), "alpha", 1.0f)
UNARY_FAST(gelu_erf, 0.5f * x * one_plus_erf(x * 0.70710678118654752440f), NULL, 0)
/* 0.5 (1 + tanh(u)) = 1 / (1 + e^(-2u)) */
UNARY_FAST(gelu_tanh,
           x / (1.0f + fast_expf(-1.5957691216057308f * (x + 0.044715f * x * x * x))), NULL, 0)

/* x * clip(x / 6 + 1/2, 0, 1), the clamp done on the float's bits (as in
 * fast_expf): float compares would keep GCC from vectorizing under
 * -ftrapping-math, and a branch per element mispredicts on real data. A
 * negative v (sign bit set) becomes +0; a positive one above 1.0 compares
 * above 1.0's bits and becomes 1. NaN x stays NaN (x * anything). */
static inline float hard_swish_sel(float x) {
    float v = x * (1.0f / 6.0f) + 0.5f;
    uint32_t u;
    memcpy(&u, &v, 4);
    u &= ~(uint32_t)((int32_t)u >> 31);
    u = u < 0x3f800000u ? u : 0x3f800000u;
    memcpy(&v, &u, 4);
    return x * v;
}
UNARY_FAST(hard_swish, hard_swish_sel(x), NULL, 0)

static kiln_status run_fast(const struct kiln_node *n, struct kiln_exec_ctx *ctx, void *state,
                            const struct kiln_value *const *in, int n_in,
                            struct kiln_value *const *out, int n_out, kiln_error *err) {
    return unary_exec(n, ctx, in, out[0], state, err);
}

static void use_fast(const struct kiln_value *x, const struct unary_def *d, struct kiln_kernel *k) {
    if (x->dtype != KILN_DTYPE_FLOAT) return;
    k->run = run_fast;
    k->state = (void *)(uintptr_t)d;   /* read-only; nothing to release */
    k->release = NULL;
    k->impl = d == &fast_hard_swish ? "simd" : "simd:expf";
}

#define PREPARE_FAST(NAME, DEF)                                                                \
    static kiln_status prepare_##NAME(const struct kiln_node *n, struct kiln_exec_ctx *ctx,    \
                                      const struct kiln_value *const *in, int n_in,            \
                                      struct kiln_value *const *out, int n_out,                \
                                      struct kiln_kernel *k, kiln_error *err) {                \
        use_fast(in[0], DEF, k);                                                               \
        return KILN_OK;                                                                        \
    }
PREPARE_FAST(exp, &fast_exp)
PREPARE_FAST(sigmoid, &fast_sigmoid)
PREPARE_FAST(swish, &fast_swish)
PREPARE_FAST(hard_swish, &fast_hard_swish)

/* ---- Gelu: approximate = "none" | "tanh" ---- */

static const struct unary_def def_gelu_erf = {gelu_erf_f32, gelu_erf_f64, NULL};
static const struct unary_def def_gelu_tanh = {gelu_tanh_f32, gelu_tanh_f64, NULL};

static const struct unary_def *gelu_def(const struct kiln_node *n) {
    const char *a = kiln_attr_string(n, "approximate", "none");
    if (strcmp(a, "none") == 0) return &def_gelu_erf;
    if (strcmp(a, "tanh") == 0) return &def_gelu_tanh;
    return NULL;
}

static kiln_status infer_gelu(const struct kiln_node *n, const struct kiln_value *const *in,
                              int n_in, struct kiln_value *const *out, int n_out,
                              kiln_error *err) {
    const struct unary_def *d = gelu_def(n);
    if (!d)
        return kiln_op_fail(err, KILN_ERR_UNSUPPORTED, n,
                            "approximate must be \"none\" or \"tanh\", got \"%s\"",
                            kiln_attr_string(n, "approximate", ""));
    return unary_infer(n, in, n_in, out, n_out, d, err);
}

static kiln_status exec_gelu(const struct kiln_node *n, struct kiln_exec_ctx *ctx,
                             const struct kiln_value *const *in, int n_in,
                             struct kiln_value *const *out, int n_out, kiln_error *err) {
    const struct unary_def *d = gelu_def(n);
    if (!d) return kiln_op_fail(err, KILN_ERR_UNSUPPORTED, n, "bad approximate attribute");
    return unary_exec(n, ctx, in, out[0], d, err);
}

static kiln_status prepare_gelu(const struct kiln_node *n, struct kiln_exec_ctx *ctx,
                                const struct kiln_value *const *in, int n_in,
                                struct kiln_value *const *out, int n_out, struct kiln_kernel *k,
                                kiln_error *err) {
    const struct unary_def *d = gelu_def(n);
    if (d) use_fast(in[0], d == &def_gelu_erf ? &fast_gelu_erf : &fast_gelu_tanh, k);
    return KILN_OK;
}

/* ------------------------------------------------------------------------ */
/* Clip: opset < 11 takes min/max attributes (floats); later opsets take
 * optional scalar inputs of the input's dtype.                              */

static kiln_status infer_clip(const struct kiln_node *n, const struct kiln_value *const *in,
                              int n_in, struct kiln_value *const *out, int n_out,
                              kiln_error *err) {
    kiln_status s = check_io(n, in, n_in, n->opset < 11 ? 1 : 3, out, n_out, err);
    if (s != KILN_OK) return s;
    kiln_dtype dt = in[0]->dtype;
    bool ok = is_wide_float(dt) || (n->opset >= 12 && is_std_int(dt));
    if (!ok) return unsupported_dtype(n, 0, dt, err);
    for (int i = 1; i < n_in; i++) {
        if (!in[i]) continue;
        if (in[i]->dtype != dt)
            return kiln_op_fail(err, KILN_ERR_SHAPE, n, "input %d: expected dtype %s, got %s", i,
                                kiln_dtype_name(dt), kiln_dtype_name(in[i]->dtype));
        if (kiln_value_numel(in[i]) != 1 || in[i]->rank > 1)
            return kiln_op_fail(err, KILN_ERR_SHAPE, n,
                                "input %d: expected a scalar, got %lld elements", i,
                                (long long)kiln_value_numel(in[i]));
    }
    kiln_value_set_shape(out[0], dt, in[0]->rank, in[0]->dims);
    return KILN_OK;
}

struct clip_job {
    kiln_dtype dt;
    const void *x, *lo, *hi;   /* lo/hi: one element of dt, or NULL when absent */
    float lo_attr, hi_attr;    /* opset < 11 bounds (floats only) */
    void *y;
};

/* NaN passes through: neither comparison is true. min > max yields max, as
 * numpy's clip does. */
#define CLIP_CASE(DT, TT, CT, LD, ST, LO_DEF, HI_DEF)                                          \
    case DT: {                                                                                 \
        const TT *x = J->x;                                                                    \
        TT *y = J->y;                                                                          \
        const CT lo = J->lo ? (CT)LD(*(const TT *)J->lo) : (LO_DEF);                           \
        const CT hi = J->hi ? (CT)LD(*(const TT *)J->hi) : (HI_DEF);                           \
        SIMD for (int64_t i = s; i < e; i++) {                                                 \
            CT v = (CT)LD(x[i]);                                                               \
            v = v < lo ? lo : v;                                                               \
            v = v > hi ? hi : v;                                                               \
            y[i] = ST(v);                                                                      \
        }                                                                                      \
        break;                                                                                 \
    }
#define ID(x) (x)

static void clip_range(const void *varg, int64_t s, int64_t e) {
    const struct clip_job *J = varg;
    switch (J->dt) {
        CLIP_CASE(KILN_DTYPE_FLOAT, float, float, ID, ID, J->lo_attr, J->hi_attr)
        CLIP_CASE(KILN_DTYPE_DOUBLE, double, double, ID, ID, J->lo_attr, J->hi_attr)
        CLIP_CASE(KILN_DTYPE_FLOAT16, uint16_t, float, kiln_f16_to_f32, kiln_f32_to_f16,
                  J->lo_attr, J->hi_attr)
        CLIP_CASE(KILN_DTYPE_BFLOAT16, uint16_t, float, kiln_bf16_to_f32, kiln_f32_to_bf16,
                  J->lo_attr, J->hi_attr)
        CLIP_CASE(KILN_DTYPE_INT8, int8_t, int8_t, ID, ID, INT8_MIN, INT8_MAX)
        CLIP_CASE(KILN_DTYPE_INT16, int16_t, int16_t, ID, ID, INT16_MIN, INT16_MAX)
        CLIP_CASE(KILN_DTYPE_INT32, int32_t, int32_t, ID, ID, INT32_MIN, INT32_MAX)
        CLIP_CASE(KILN_DTYPE_INT64, int64_t, int64_t, ID, ID, INT64_MIN, INT64_MAX)
        CLIP_CASE(KILN_DTYPE_UINT8, uint8_t, uint8_t, ID, ID, 0, UINT8_MAX)
        CLIP_CASE(KILN_DTYPE_UINT16, uint16_t, uint16_t, ID, ID, 0, UINT16_MAX)
        CLIP_CASE(KILN_DTYPE_UINT32, uint32_t, uint32_t, ID, ID, 0, UINT32_MAX)
        CLIP_CASE(KILN_DTYPE_UINT64, uint64_t, uint64_t, ID, ID, 0, UINT64_MAX)
    default: break;
    }
}

static kiln_status exec_clip(const struct kiln_node *n, struct kiln_exec_ctx *ctx,
                             const struct kiln_value *const *in, int n_in,
                             struct kiln_value *const *out, int n_out, kiln_error *err) {
    struct clip_job J = {in[0]->dtype, in[0]->data, NULL, NULL, -INFINITY, INFINITY,
                         out[0]->data};
    if (n->opset < 11) {
        J.lo_attr = kiln_attr_float(n, "min", -FLT_MAX);
        J.hi_attr = kiln_attr_float(n, "max", FLT_MAX);
    } else {
        if (n_in > 1 && in[1]) J.lo = in[1]->data;
        if (n_in > 2 && in[2]) J.hi = in[2]->data;
    }
    run_chunks(ctx, kiln_value_numel(in[0]), clip_range, &J);
    return KILN_OK;
}

/* ------------------------------------------------------------------------ */
/* IsNaN, IsInf, Not, BitwiseNot                                             */

static kiln_status infer_float_to_bool(const struct kiln_node *n,
                                       const struct kiln_value *const *in, int n_in,
                                       struct kiln_value *const *out, int n_out,
                                       kiln_error *err) {
    kiln_status s = check_io(n, in, n_in, 1, out, n_out, err);
    if (s != KILN_OK) return s;
    if (!is_wide_float(in[0]->dtype)) return unsupported_dtype(n, 0, in[0]->dtype, err);
    kiln_value_set_shape(out[0], KILN_DTYPE_BOOL, in[0]->rank, in[0]->dims);
    return KILN_OK;
}

struct fclass_job {
    kiln_dtype dt;
    const void *x;
    uint8_t *y;
    bool nan, pos_inf, neg_inf;   /* which classes map to true */
};

static double ld_float(kiln_dtype dt, const void *p, int64_t i) {
    switch (dt) {
    case KILN_DTYPE_FLOAT: return ((const float *)p)[i];
    case KILN_DTYPE_DOUBLE: return ((const double *)p)[i];
    case KILN_DTYPE_FLOAT16: return kiln_f16_to_f32(((const uint16_t *)p)[i]);
    case KILN_DTYPE_BFLOAT16: return kiln_bf16_to_f32(((const uint16_t *)p)[i]);
    default: return 0;
    }
}

static void fclass_range(const void *varg, int64_t s, int64_t e) {
    const struct fclass_job *J = varg;
    for (int64_t i = s; i < e; i++) {
        double v = ld_float(J->dt, J->x, i);
        J->y[i] = v != v ? J->nan : v == INFINITY ? J->pos_inf : v == -INFINITY && J->neg_inf;
    }
}

static kiln_status exec_isnan(const struct kiln_node *n, struct kiln_exec_ctx *ctx,
                              const struct kiln_value *const *in, int n_in,
                              struct kiln_value *const *out, int n_out, kiln_error *err) {
    struct fclass_job J = {in[0]->dtype, in[0]->data, out[0]->data, true, false, false};
    run_chunks(ctx, kiln_value_numel(in[0]), fclass_range, &J);
    return KILN_OK;
}

static kiln_status exec_isinf(const struct kiln_node *n, struct kiln_exec_ctx *ctx,
                              const struct kiln_value *const *in, int n_in,
                              struct kiln_value *const *out, int n_out, kiln_error *err) {
    struct fclass_job J = {in[0]->dtype, in[0]->data, out[0]->data, false,
                           kiln_attr_int(n, "detect_positive", 1) != 0,
                           kiln_attr_int(n, "detect_negative", 1) != 0};
    run_chunks(ctx, kiln_value_numel(in[0]), fclass_range, &J);
    return KILN_OK;
}
#define infer_isnan infer_float_to_bool
#define infer_isinf infer_float_to_bool

static kiln_status infer_not(const struct kiln_node *n, const struct kiln_value *const *in,
                             int n_in, struct kiln_value *const *out, int n_out,
                             kiln_error *err) {
    kiln_status s = check_io(n, in, n_in, 1, out, n_out, err);
    if (s != KILN_OK) return s;
    if (in[0]->dtype != KILN_DTYPE_BOOL) return unsupported_dtype(n, 0, in[0]->dtype, err);
    kiln_value_set_shape(out[0], KILN_DTYPE_BOOL, in[0]->rank, in[0]->dims);
    return KILN_OK;
}

struct raw_job {
    uint_fn f;
    size_t es;
    const void *x;
    void *y;
};

static void raw_range(const void *varg, int64_t s, int64_t e) {
    const struct raw_job *J = varg;
    J->f((const char *)J->x + s * (int64_t)J->es, (char *)J->y + s * (int64_t)J->es, e - s);
}

static void not_b(const void *vin, void *vout, int64_t n) {
    const uint8_t *x = vin;
    uint8_t *y = vout;
    for (int64_t i = 0; i < n; i++) y[i] = x[i] == 0;
}

static kiln_status exec_not(const struct kiln_node *n, struct kiln_exec_ctx *ctx,
                            const struct kiln_value *const *in, int n_in,
                            struct kiln_value *const *out, int n_out, kiln_error *err) {
    struct raw_job J = {not_b, 1, in[0]->data, out[0]->data};
    run_chunks(ctx, kiln_value_numel(in[0]), raw_range, &J);
    return KILN_OK;
}

static kiln_status infer_bitwise_not(const struct kiln_node *n,
                                     const struct kiln_value *const *in, int n_in,
                                     struct kiln_value *const *out, int n_out,
                                     kiln_error *err) {
    kiln_status s = check_io(n, in, n_in, 1, out, n_out, err);
    if (s != KILN_OK) return s;
    if (!is_std_int(in[0]->dtype)) return unsupported_dtype(n, 0, in[0]->dtype, err);
    kiln_value_set_shape(out[0], in[0]->dtype, in[0]->rank, in[0]->dims);
    return KILN_OK;
}

static kiln_status exec_bitwise_not(const struct kiln_node *n, struct kiln_exec_ctx *ctx,
                                    const struct kiln_value *const *in, int n_in,
                                    struct kiln_value *const *out, int n_out,
                                    kiln_error *err) {
    kiln_dtype dt = in[0]->dtype;
    if (!is_std_int(dt)) return unsupported_dtype(n, 0, dt, err);
    struct raw_job J = {bnot_tab[dt], kiln_dtype_size(dt), in[0]->data, out[0]->data};
    run_chunks(ctx, kiln_value_numel(in[0]), raw_range, &J);
    return KILN_OK;
}

/* ------------------------------------------------------------------------ */
/* Cast, CastLike
 *
 * Two stages per buffer of UN_BUF elements: load the source into double
 * (float sources, exact), int64 (signed/bool/small unsigned) or uint64, then
 * store into the target dtype with one correct rounding. Float -> integer
 * truncates toward zero; values outside int64 saturate, then narrower
 * targets wrap like the C conversion (so -1.0 -> uint8 is 255, as in numpy).
 * Float -> bool is x != 0 (NaN is true). */

enum cast_kind { CK_D, CK_I, CK_U };

static bool cast_dtype_ok(kiln_dtype t) {
    return kiln_dtype_is_float(t) || kiln_dtype_is_int(t) || t == KILN_DTYPE_BOOL ||
           kiln_dtype_is_narrow_float(t) || kiln_dtype_is_narrow_int(t);
}

static enum cast_kind cast_kind_of(kiln_dtype t) {
    return kiln_dtype_is_float(t) || kiln_dtype_is_narrow_float(t) ? CK_D
           : t == KILN_DTYPE_UINT64                                 ? CK_U
                                                                    : CK_I;
}

/* Rounds d to p significant bits, with the precision shrinking below 2^emin
 * (subnormals), ties to even. The result is exact in a float. */
static double round_bits(double d, int p, int emin) {
    if (d == 0 || !isfinite(d)) return d;
    int e;
    (void)frexp(d, &e);
    int lead = e - 1 < emin ? emin : e - 1;
    double q = ldexp(1.0, lead - (p - 1));
    return rint(d / q) * q;
}

static uint16_t f64_to_f16(double d) {
    return kiln_f32_to_f16((float)round_bits(d, 11, -14));
}

static uint16_t f64_to_bf16(double d) {
    return kiln_f32_to_bf16((float)round_bits(d, 8, -126));
}

static int64_t d_to_i64(double v) {
    if (v != v) return 0;
    if (v <= -9223372036854775808.0) return INT64_MIN;
    if (v >= 9223372036854775808.0) return INT64_MAX;
    return (int64_t)v;
}

static uint64_t d_to_u64(double v) {
    if (v >= 9223372036854775808.0) return v >= 18446744073709551616.0 ? UINT64_MAX : (uint64_t)v;
    return (uint64_t)d_to_i64(v);
}

union cast_buf {
    double d[UN_BUF];
    int64_t i[UN_BUF];
    uint64_t u[UN_BUF];
};

#define LOAD_CASE(DT, TT, FIELD, CONV)                                                         \
    case DT: {                                                                                 \
        const TT *x = (const TT *)src + off;                                                   \
        SIMD for (int64_t k = 0; k < m; k++) b->FIELD[k] = CONV(x[k]);                         \
        break;                                                                                 \
    }

static void cast_load(kiln_dtype t, const void *src, int64_t off, int64_t m, union cast_buf *b) {
    switch (t) {
        LOAD_CASE(KILN_DTYPE_FLOAT, float, d, ID)
        LOAD_CASE(KILN_DTYPE_DOUBLE, double, d, ID)
        LOAD_CASE(KILN_DTYPE_FLOAT16, uint16_t, d, kiln_f16_to_f32)
        LOAD_CASE(KILN_DTYPE_BFLOAT16, uint16_t, d, kiln_bf16_to_f32)
        LOAD_CASE(KILN_DTYPE_INT8, int8_t, i, ID)
        LOAD_CASE(KILN_DTYPE_INT16, int16_t, i, ID)
        LOAD_CASE(KILN_DTYPE_INT32, int32_t, i, ID)
        LOAD_CASE(KILN_DTYPE_INT64, int64_t, i, ID)
        LOAD_CASE(KILN_DTYPE_UINT8, uint8_t, i, ID)
        LOAD_CASE(KILN_DTYPE_BOOL, uint8_t, i, ID)
        LOAD_CASE(KILN_DTYPE_UINT16, uint16_t, i, ID)
        LOAD_CASE(KILN_DTYPE_UINT32, uint32_t, i, ID)
        LOAD_CASE(KILN_DTYPE_UINT64, uint64_t, u, ID)
        LOAD_CASE(KILN_DTYPE_INT4, int8_t, i, ID)
        LOAD_CASE(KILN_DTYPE_INT2, int8_t, i, ID)
        LOAD_CASE(KILN_DTYPE_UINT4, uint8_t, i, ID)
        LOAD_CASE(KILN_DTYPE_UINT2, uint8_t, i, ID)
    default:
        if (kiln_dtype_is_narrow_float(t)) {
            const uint8_t *x = (const uint8_t *)src + off;
            for (int64_t k = 0; k < m; k++) b->d[k] = kiln_narrow_to_f32(t, x[k]);
        }
        break;
    }
}

/* Stores into a narrow type: floats round to nearest even on the format's grid
 * (saturating when asked); int4/int2 round to even and wrap. */
static void narrow_store(kiln_dtype t, enum cast_kind kind, const union cast_buf *b, void *dst,
                         int64_t off, int64_t m, bool saturate) {
    uint8_t *y = (uint8_t *)dst + off;
    for (int64_t k = 0; k < m; k++) {
        double d = kind == CK_D ? b->d[k] : kind == CK_I ? (double)b->i[k] : (double)b->u[k];
        if (kiln_dtype_is_narrow_float(t)) {
            y[k] = kiln_f32_to_narrow(t, (float)d, saturate);
            continue;
        }
        /* like the wider integer casts: out-of-range values wrap modulo 2^bits */
        int bits = kiln_dtype_bits(t);
        bool sign = t == KILN_DTYPE_INT4 || t == KILN_DTYPE_INT2;
        int64_t r = kind == CK_D ? (d != d ? 0 : (int64_t)rint(d)) : kind == CK_I ? b->i[k] : (int64_t)b->u[k];
        int code = (int)(r & ((1 << bits) - 1));
        if (sign && code >= 1 << (bits - 1)) code -= 1 << bits;
        if (sign) ((int8_t *)y)[k] = (int8_t)code;
        else y[k] = (uint8_t)code;
    }
}

#define STORE_CASE(DT, TT, FROM_D, FROM_I, FROM_U)                                             \
    case DT: {                                                                                 \
        TT *y = (TT *)dst + off;                                                               \
        if (kind == CK_D)                                                                      \
            SIMD for (int64_t k = 0; k < m; k++) y[k] = (TT)FROM_D(b->d[k]);                   \
        else if (kind == CK_I)                                                                 \
            SIMD for (int64_t k = 0; k < m; k++) y[k] = (TT)FROM_I(b->i[k]);                   \
        else                                                                                   \
            SIMD for (int64_t k = 0; k < m; k++) y[k] = (TT)FROM_U(b->u[k]);                   \
        break;                                                                                 \
    }
#define TO_F16(x) f64_to_f16((double)(x))
#define TO_BF16(x) f64_to_bf16((double)(x))
#define NONZERO(x) ((x) != 0)

static void cast_store(kiln_dtype t, enum cast_kind kind, const union cast_buf *b, void *dst,
                       int64_t off, int64_t m) {
    switch (t) {
        STORE_CASE(KILN_DTYPE_FLOAT, float, ID, ID, ID)
        STORE_CASE(KILN_DTYPE_DOUBLE, double, ID, ID, ID)
        STORE_CASE(KILN_DTYPE_FLOAT16, uint16_t, TO_F16, TO_F16, TO_F16)
        STORE_CASE(KILN_DTYPE_BFLOAT16, uint16_t, TO_BF16, TO_BF16, TO_BF16)
        STORE_CASE(KILN_DTYPE_INT8, int8_t, d_to_i64, ID, ID)
        STORE_CASE(KILN_DTYPE_INT16, int16_t, d_to_i64, ID, ID)
        STORE_CASE(KILN_DTYPE_INT32, int32_t, d_to_i64, ID, ID)
        STORE_CASE(KILN_DTYPE_INT64, int64_t, d_to_i64, ID, ID)
        STORE_CASE(KILN_DTYPE_UINT8, uint8_t, d_to_i64, ID, ID)
        STORE_CASE(KILN_DTYPE_UINT16, uint16_t, d_to_i64, ID, ID)
        STORE_CASE(KILN_DTYPE_UINT32, uint32_t, d_to_i64, ID, ID)
        STORE_CASE(KILN_DTYPE_UINT64, uint64_t, d_to_u64, ID, ID)
        STORE_CASE(KILN_DTYPE_BOOL, uint8_t, NONZERO, NONZERO, NONZERO)
    default: break;
    }
}

struct cast_job {
    kiln_dtype from, to;
    const void *x;
    void *y;
    bool saturate;   /* Cast-19 `saturate` for float8 targets */
};

static void cast_range(const void *varg, int64_t s, int64_t e) {
    const struct cast_job *J = varg;
    /* direct paths for the common float conversions */
    if (J->from == KILN_DTYPE_FLOAT && J->to == KILN_DTYPE_FLOAT16) {
        const float *x = J->x;
        uint16_t *y = J->y;
        for (int64_t i = s; i < e; i++) y[i] = kiln_f32_to_f16(x[i]);
        return;
    }
    if (J->from == KILN_DTYPE_FLOAT && J->to == KILN_DTYPE_BFLOAT16) {
        const float *x = J->x;
        uint16_t *y = J->y;
        for (int64_t i = s; i < e; i++) y[i] = kiln_f32_to_bf16(x[i]);
        return;
    }
    if (J->from == KILN_DTYPE_FLOAT16 && J->to == KILN_DTYPE_FLOAT) {
        const uint16_t *x = J->x;
        float *y = J->y;
        for (int64_t i = s; i < e; i++) y[i] = kiln_f16_to_f32(x[i]);
        return;
    }
    union cast_buf b;
    enum cast_kind kind = cast_kind_of(J->from);
    bool narrow_to = kiln_dtype_bits(J->to) < 8 || kiln_dtype_is_narrow_float(J->to);
    for (int64_t off = s; off < e; off += UN_BUF) {
        int64_t m = e - off < UN_BUF ? e - off : UN_BUF;
        cast_load(J->from, J->x, off, m, &b);
        if (narrow_to) narrow_store(J->to, kind, &b, J->y, off, m, J->saturate);
        else cast_store(J->to, kind, &b, J->y, off, m);
    }
}

/* Cast-1 names the target type with a string. */
static kiln_dtype cast_target_from_string(const char *s) {
    static const struct { const char *name; kiln_dtype dt; } names[] = {
        {"FLOAT", KILN_DTYPE_FLOAT},     {"DOUBLE", KILN_DTYPE_DOUBLE},
        {"FLOAT16", KILN_DTYPE_FLOAT16}, {"BFLOAT16", KILN_DTYPE_BFLOAT16},
        {"INT8", KILN_DTYPE_INT8},       {"INT16", KILN_DTYPE_INT16},
        {"INT32", KILN_DTYPE_INT32},     {"INT64", KILN_DTYPE_INT64},
        {"UINT8", KILN_DTYPE_UINT8},     {"UINT16", KILN_DTYPE_UINT16},
        {"UINT32", KILN_DTYPE_UINT32},   {"UINT64", KILN_DTYPE_UINT64},
        {"BOOL", KILN_DTYPE_BOOL},       {"STRING", KILN_DTYPE_STRING},
    };
    for (size_t i = 0; i < sizeof names / sizeof names[0]; i++)
        if (strcmp(s, names[i].name) == 0) return names[i].dt;
    return KILN_DTYPE_UNDEFINED;
}

static kiln_status cast_check(const struct kiln_node *n, kiln_dtype from, kiln_dtype to,
                              kiln_error *err) {
    if (!cast_dtype_ok(from))
        return kiln_op_fail(err, KILN_ERR_UNSUPPORTED, n, "cast from %s is not supported",
                            kiln_dtype_name(from));
    if (!cast_dtype_ok(to))
        return kiln_op_fail(err, KILN_ERR_UNSUPPORTED, n,
                            "cast to ONNX type %d (%s) is not supported", (int)to,
                            kiln_dtype_size(to) ? kiln_dtype_name(to)
                                                : "string");
    return KILN_OK;
}

static kiln_status cast_target(const struct kiln_node *n, kiln_dtype *to, kiln_error *err) {
    const struct kiln_attr *a = kiln_attr_find(n, "to");
    if (!a) return kiln_op_fail(err, KILN_ERR_BAD_MODEL, n, "missing attribute 'to'");
    if (a->type == KILN_ATTR_STRING && a->s) {
        *to = cast_target_from_string(a->s);
        if (*to == KILN_DTYPE_UNDEFINED)
            return kiln_op_fail(err, KILN_ERR_UNSUPPORTED, n, "cast to '%s' is not supported",
                                a->s);
        return KILN_OK;
    }
    if (a->type != KILN_ATTR_INT || a->i <= 0 || a->i > INT32_MAX)
        return kiln_op_fail(err, KILN_ERR_BAD_MODEL, n, "attribute 'to' is not a valid type");
    *to = (kiln_dtype)a->i;
    return KILN_OK;
}

static kiln_status infer_cast_to(const struct kiln_node *n, const struct kiln_value *const *in,
                                 int n_in, int max_in, struct kiln_value *const *out, int n_out,
                                 kiln_dtype to, kiln_error *err) {
    kiln_status s = check_io(n, in, n_in, max_in, out, n_out, err);
    if (s != KILN_OK) return s;
    if ((s = cast_check(n, in[0]->dtype, to, err)) != KILN_OK) return s;
    kiln_value_set_shape(out[0], to, in[0]->rank, in[0]->dims);
    return KILN_OK;
}

static kiln_status exec_cast_to(const struct kiln_node *n, struct kiln_exec_ctx *ctx,
                                const struct kiln_value *x, struct kiln_value *y, kiln_error *err) {
    kiln_status s = cast_check(n, x->dtype, y->dtype, err);
    if (s != KILN_OK) return s;
    int64_t numel = kiln_value_numel(x);
    if (x->dtype == y->dtype) {
        size_t bytes = (size_t)numel * kiln_dtype_size(x->dtype);
        if (y->data != x->data && bytes) memcpy(y->data, x->data, bytes);
        return KILN_OK;
    }
    struct cast_job J = {x->dtype, y->dtype, x->data, y->data,
                         kiln_attr_int(n, "saturate", 1) != 0};
    run_chunks(ctx, numel, cast_range, &J);
    return KILN_OK;
}

static kiln_status infer_cast(const struct kiln_node *n, const struct kiln_value *const *in,
                              int n_in, struct kiln_value *const *out, int n_out,
                              kiln_error *err) {
    kiln_dtype to;
    kiln_status s = cast_target(n, &to, err);
    if (s != KILN_OK) return s;
    return infer_cast_to(n, in, n_in, 1, out, n_out, to, err);
}

static kiln_status exec_cast(const struct kiln_node *n, struct kiln_exec_ctx *ctx,
                             const struct kiln_value *const *in, int n_in,
                             struct kiln_value *const *out, int n_out, kiln_error *err) {
    return exec_cast_to(n, ctx, in[0], out[0], err);
}

static kiln_status infer_cast_like(const struct kiln_node *n, const struct kiln_value *const *in,
                                   int n_in, struct kiln_value *const *out, int n_out,
                                   kiln_error *err) {
    if (n_in != 2 || !in[1])
        return kiln_op_fail(err, KILN_ERR_BAD_MODEL, n, "expected 2 inputs, got %d", n_in);
    return infer_cast_to(n, in, n_in, 2, out, n_out, in[1]->dtype, err);
}

static kiln_status exec_cast_like(const struct kiln_node *n, struct kiln_exec_ctx *ctx,
                                  const struct kiln_value *const *in, int n_in,
                                  struct kiln_value *const *out, int n_out, kiln_error *err) {
    return exec_cast_to(n, ctx, in[0], out[0], err);
}

/* ------------------------------------------------------------------------ */

#define OP(NAME, SINCE, FLAGS, FN) \
    {NAME, NULL, SINCE, FLAGS, infer_##FN, exec_##FN, NULL, flops_numel}
#define OP_FAST(NAME, SINCE, FN) \
    {NAME, NULL, SINCE, KILN_OP_INPLACE, infer_##FN, exec_##FN, prepare_##FN, flops_numel}
#define IP KILN_OP_INPLACE

const struct kiln_op_def kiln_ops_unary[] = {
    OP("Neg", 1, IP, neg),
    OP("Abs", 1, IP, abs),
    OP("Reciprocal", 1, IP, recip),
    OP("Sqrt", 1, IP, sqrt),
    OP_FAST("Exp", 1, exp),
    OP("Log", 1, IP, log),
    OP("Erf", 9, IP, erf),
    OP("Floor", 1, IP, floor),
    OP("Ceil", 1, IP, ceil),
    OP("Round", 11, IP, round),
    OP("Sign", 9, IP, sign),
    OP("Sin", 7, IP, sin),
    OP("Cos", 7, IP, cos),
    OP("Tan", 7, IP, tan),
    OP("Asin", 7, IP, asin),
    OP("Acos", 7, IP, acos),
    OP("Atan", 7, IP, atan),
    OP("Sinh", 9, IP, sinh),
    OP("Cosh", 9, IP, cosh),
    OP("Asinh", 9, IP, asinh),
    OP("Acosh", 9, IP, acosh),
    OP("Atanh", 9, IP, atanh),
    OP("Tanh", 1, IP, tanh),
    OP_FAST("Sigmoid", 1, sigmoid),
    OP("Relu", 1, IP, relu),
    OP("LeakyRelu", 1, IP, leaky_relu),
    OP("Elu", 1, IP, elu),
    OP("Selu", 1, IP, selu),
    OP("Celu", 12, IP, celu),
    OP_FAST("Gelu", 20, gelu),
    /* ORT's contrib Gelu (exported transformer models): the exact erf form */
    {"Gelu", "com.microsoft", 1, KILN_OP_INPLACE, infer_gelu, exec_gelu, prepare_gelu,
     flops_numel},
    OP("Mish", 18, IP, mish),
    OP_FAST("Swish", 24, swish),
    OP("Softplus", 1, IP, softplus),
    OP("Softsign", 1, IP, softsign),
    OP("HardSigmoid", 1, IP, hard_sigmoid),
    OP_FAST("HardSwish", 14, hard_swish),
    OP("ThresholdedRelu", 10, IP, thresholded_relu),
    OP("Shrink", 9, IP, shrink),
    OP("Clip", 1, IP, clip),
    OP("IsNaN", 9, 0, isnan),
    OP("IsInf", 10, 0, isinf),
    OP("Not", 1, IP, not),
    OP("BitwiseNot", 18, IP, bitwise_not),
    OP("Cast", 1, 0, cast),
    OP("CastLike", 15, 0, cast_like),
    {0},
};
