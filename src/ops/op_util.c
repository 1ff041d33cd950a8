/* op_util.c — helpers shared by the op families: messages, broadcasting,
 * axes, element access across dtypes, half-precision conversions. */
#include "ops/op.h"

#include <math.h>
#include <stdarg.h>
#include <stdio.h>
#include <string.h>

const char *kiln_dtype_name(kiln_dtype t) {
    switch (t) {
    case KILN_DTYPE_FLOAT: return "float32";
    case KILN_DTYPE_UINT8: return "uint8";
    case KILN_DTYPE_INT8: return "int8";
    case KILN_DTYPE_UINT16: return "uint16";
    case KILN_DTYPE_INT16: return "int16";
    case KILN_DTYPE_INT32: return "int32";
    case KILN_DTYPE_INT64: return "int64";
    case KILN_DTYPE_STRING: return "string";
    case KILN_DTYPE_BOOL: return "bool";
    case KILN_DTYPE_FLOAT16: return "float16";
    case KILN_DTYPE_DOUBLE: return "float64";
    case KILN_DTYPE_UINT32: return "uint32";
    case KILN_DTYPE_UINT64: return "uint64";
    case KILN_DTYPE_BFLOAT16: return "bfloat16";
    case KILN_DTYPE_FLOAT8E4M3FN: return "float8e4m3fn";
    case KILN_DTYPE_FLOAT8E4M3FNUZ: return "float8e4m3fnuz";
    case KILN_DTYPE_FLOAT8E5M2: return "float8e5m2";
    case KILN_DTYPE_FLOAT8E5M2FNUZ: return "float8e5m2fnuz";
    case KILN_DTYPE_UINT4: return "uint4";
    case KILN_DTYPE_INT4: return "int4";
    case KILN_DTYPE_FLOAT4E2M1: return "float4e2m1";
    case KILN_DTYPE_FLOAT8E8M0: return "float8e8m0";
    case KILN_DTYPE_UINT2: return "uint2";
    case KILN_DTYPE_INT2: return "int2";
    default: return "?";
    }
}

size_t kiln_dtype_size(kiln_dtype t) {
    switch (t) {
    case KILN_DTYPE_FLOAT: case KILN_DTYPE_INT32: case KILN_DTYPE_UINT32: return 4;
    case KILN_DTYPE_UINT8: case KILN_DTYPE_INT8: case KILN_DTYPE_BOOL: return 1;
    case KILN_DTYPE_FLOAT8E4M3FN: case KILN_DTYPE_FLOAT8E4M3FNUZ: case KILN_DTYPE_FLOAT8E5M2:
    case KILN_DTYPE_FLOAT8E5M2FNUZ: case KILN_DTYPE_UINT4: case KILN_DTYPE_INT4:
    case KILN_DTYPE_FLOAT4E2M1: case KILN_DTYPE_FLOAT8E8M0: case KILN_DTYPE_UINT2:
    case KILN_DTYPE_INT2: return 1;
    case KILN_DTYPE_UINT16: case KILN_DTYPE_INT16: case KILN_DTYPE_FLOAT16:
    case KILN_DTYPE_BFLOAT16: return 2;
    case KILN_DTYPE_INT64: case KILN_DTYPE_DOUBLE: case KILN_DTYPE_UINT64: return 8;
    default: return 0;
    }
}

bool kiln_dtype_is_float(kiln_dtype t) {
    return t == KILN_DTYPE_FLOAT || t == KILN_DTYPE_DOUBLE || t == KILN_DTYPE_FLOAT16 ||
           t == KILN_DTYPE_BFLOAT16;
}

bool kiln_dtype_is_narrow_int(kiln_dtype t) {
    return t == KILN_DTYPE_UINT4 || t == KILN_DTYPE_INT4 || t == KILN_DTYPE_UINT2 ||
           t == KILN_DTYPE_INT2;
}

bool kiln_dtype_is_narrow_float(kiln_dtype t) {
    return t == KILN_DTYPE_FLOAT8E4M3FN || t == KILN_DTYPE_FLOAT8E4M3FNUZ ||
           t == KILN_DTYPE_FLOAT8E5M2 || t == KILN_DTYPE_FLOAT8E5M2FNUZ ||
           t == KILN_DTYPE_FLOAT4E2M1 || t == KILN_DTYPE_FLOAT8E8M0;
}

int kiln_dtype_bits(kiln_dtype t) {
    switch (t) {
    case KILN_DTYPE_UINT4: case KILN_DTYPE_INT4: case KILN_DTYPE_FLOAT4E2M1: return 4;
    case KILN_DTYPE_UINT2: case KILN_DTYPE_INT2: return 2;
    default: return (int)kiln_dtype_size(t) * 8;
    }
}

bool kiln_dtype_is_int(kiln_dtype t) {
    switch (t) {
    case KILN_DTYPE_UINT8: case KILN_DTYPE_INT8: case KILN_DTYPE_UINT16: case KILN_DTYPE_INT16:
    case KILN_DTYPE_INT32: case KILN_DTYPE_INT64: case KILN_DTYPE_UINT32: case KILN_DTYPE_UINT64:
        return true;
    default: return false;
    }
}

bool kiln_dtype_is_signed(kiln_dtype t) {
    return t == KILN_DTYPE_INT8 || t == KILN_DTYPE_INT16 || t == KILN_DTYPE_INT32 ||
           t == KILN_DTYPE_INT64 || t == KILN_DTYPE_INT4 || t == KILN_DTYPE_INT2 ||
           kiln_dtype_is_float(t) || kiln_dtype_is_narrow_float(t);
}

kiln_status kiln_op_fail(kiln_error *err, kiln_status code, const struct kiln_node *n,
                         const char *fmt, ...) {
    if (err) {
        char msg[KILN_ERROR_MSG_MAX];
        va_list ap;
        va_start(ap, fmt);
        vsnprintf(msg, sizeof msg, fmt, ap);
        va_end(ap);
        snprintf(err->msg, sizeof err->msg, "node '%s' (%s): %s", n->name, n->op_type, msg);
        err->code = code;
    }
    return code;
}

kiln_status kiln_op_check_arity(const struct kiln_node *n, int n_in, int min_in, int max_in,
                                kiln_error *err) {
    if (n_in < min_in || n_in > max_in)
        return kiln_op_fail(err, KILN_ERR_BAD_MODEL, n, "expected %d to %d inputs, got %d",
                            min_in, max_in, n_in);
    /* the first min_in inputs are required: the model may not omit them with "" */
    for (int i = 0; i < min_in && i < n->n_inputs; i++)
        if (n->inputs[i] < 0)
            return kiln_op_fail(err, KILN_ERR_BAD_MODEL, n, "required input %d is omitted", i);
    return KILN_OK;
}

void kiln_value_set_shape(struct kiln_value *out, kiln_dtype dt, int32_t rank,
                          const int64_t *dims) {
    out->dtype = dt;
    out->rank = rank;
    for (int32_t i = 0; i < rank; i++) out->dims[i] = dims[i];
    for (int32_t i = rank; i < KILN_MAX_RANK; i++) out->dims[i] = 0;
    out->data = NULL;
    out->nbytes = 0;
}

kiln_status kiln_broadcast_shape(const struct kiln_node *n, const struct kiln_value *a,
                                 const struct kiln_value *b, int32_t *rank, int64_t *dims,
                                 kiln_error *err) {
    int32_t r = a->rank > b->rank ? a->rank : b->rank;
    for (int32_t i = 0; i < r; i++) {
        int32_t ia = i - (r - a->rank), ib = i - (r - b->rank);
        int64_t da = ia >= 0 ? a->dims[ia] : 1, db = ib >= 0 ? b->dims[ib] : 1;
        if (da == db || db == 1) dims[i] = da;
        else if (da == 1) dims[i] = db;
        else {
            char sa[128], sb[128];
            kiln_shape_str(a, sa, sizeof sa);
            kiln_shape_str(b, sb, sizeof sb);
            return kiln_op_fail(err, KILN_ERR_SHAPE, n, "shapes %s and %s do not broadcast", sa,
                                sb);
        }
    }
    *rank = r;
    return KILN_OK;
}

kiln_status kiln_norm_axis(const struct kiln_node *n, int64_t axis, int32_t rank,
                           int32_t *out_axis, kiln_error *err) {
    if (axis < -(int64_t)rank || axis >= rank)
        return kiln_op_fail(err, KILN_ERR_BAD_MODEL, n, "axis %lld out of range for rank %d",
                            (long long)axis, rank);
    *out_axis = (int32_t)(axis < 0 ? axis + rank : axis);
    return KILN_OK;
}

int64_t kiln_value_get_int(const struct kiln_value *v, int64_t i) {
    switch (v->dtype) {
    case KILN_DTYPE_INT64: return ((const int64_t *)v->data)[i];
    case KILN_DTYPE_INT32: return ((const int32_t *)v->data)[i];
    case KILN_DTYPE_INT16: return ((const int16_t *)v->data)[i];
    case KILN_DTYPE_INT8: case KILN_DTYPE_INT4: case KILN_DTYPE_INT2:
        return ((const int8_t *)v->data)[i];
    case KILN_DTYPE_UINT4: case KILN_DTYPE_UINT2: return ((const uint8_t *)v->data)[i];
    case KILN_DTYPE_UINT8: case KILN_DTYPE_BOOL: return ((const uint8_t *)v->data)[i];
    case KILN_DTYPE_UINT16: return ((const uint16_t *)v->data)[i];
    case KILN_DTYPE_UINT32: return ((const uint32_t *)v->data)[i];
    case KILN_DTYPE_UINT64: return (int64_t)((const uint64_t *)v->data)[i];
    default: return (int64_t)kiln_value_get_f64(v, i);
    }
}

double kiln_value_get_f64(const struct kiln_value *v, int64_t i) {
    switch (v->dtype) {
    case KILN_DTYPE_FLOAT: return ((const float *)v->data)[i];
    case KILN_DTYPE_DOUBLE: return ((const double *)v->data)[i];
    case KILN_DTYPE_FLOAT16: return kiln_f16_to_f32(((const uint16_t *)v->data)[i]);
    case KILN_DTYPE_BFLOAT16: return kiln_bf16_to_f32(((const uint16_t *)v->data)[i]);
    case KILN_DTYPE_UINT64: return (double)((const uint64_t *)v->data)[i];
    default:
        if (kiln_dtype_is_narrow_float(v->dtype))
            return kiln_narrow_to_f32(v->dtype, ((const uint8_t *)v->data)[i]);
        return (double)kiln_value_get_int(v, i);
    }
}

void kiln_value_set_f64(struct kiln_value *v, int64_t i, double x) {
    switch (v->dtype) {
    case KILN_DTYPE_FLOAT: ((float *)v->data)[i] = (float)x; break;
    case KILN_DTYPE_DOUBLE: ((double *)v->data)[i] = x; break;
    case KILN_DTYPE_FLOAT16: ((uint16_t *)v->data)[i] = kiln_f32_to_f16((float)x); break;
    case KILN_DTYPE_BFLOAT16: ((uint16_t *)v->data)[i] = kiln_f32_to_bf16((float)x); break;
    case KILN_DTYPE_INT64: ((int64_t *)v->data)[i] = (int64_t)x; break;
    case KILN_DTYPE_INT32: ((int32_t *)v->data)[i] = (int32_t)x; break;
    case KILN_DTYPE_INT16: ((int16_t *)v->data)[i] = (int16_t)x; break;
    case KILN_DTYPE_INT8: ((int8_t *)v->data)[i] = (int8_t)x; break;
    case KILN_DTYPE_UINT8: ((uint8_t *)v->data)[i] = (uint8_t)x; break;
    case KILN_DTYPE_BOOL: ((uint8_t *)v->data)[i] = x != 0; break;
    case KILN_DTYPE_UINT16: ((uint16_t *)v->data)[i] = (uint16_t)x; break;
    case KILN_DTYPE_UINT32: ((uint32_t *)v->data)[i] = (uint32_t)x; break;
    case KILN_DTYPE_UINT64: ((uint64_t *)v->data)[i] = (uint64_t)x; break;
    default:
        if (kiln_dtype_is_narrow_float(v->dtype))
            ((uint8_t *)v->data)[i] = kiln_f32_to_narrow(v->dtype, (float)x, true);
        else if (v->dtype == KILN_DTYPE_INT4 || v->dtype == KILN_DTYPE_INT2)
            ((int8_t *)v->data)[i] = (int8_t)x;
        else if (v->dtype == KILN_DTYPE_UINT4 || v->dtype == KILN_DTYPE_UINT2)
            ((uint8_t *)v->data)[i] = (uint8_t)x;
        break;
    }
}

/* Narrow float formats: exponent bits, mantissa bits, bias, and how they
 * spell infinity and NaN. */
struct narrow_fmt {
    int ebits, mbits, bias;
    bool has_inf;       /* IEEE-style all-ones exponent = inf/NaN (E5M2) */
    bool fnuz;          /* no -0: code 0x80 is the one NaN */
    bool e4m3fn;        /* only S.1111.111 is NaN; no inf */
};

static bool narrow_fmt_of(kiln_dtype t, struct narrow_fmt *f) {
    switch (t) {
    case KILN_DTYPE_FLOAT8E4M3FN: *f = (struct narrow_fmt){4, 3, 7, false, false, true}; return true;
    case KILN_DTYPE_FLOAT8E4M3FNUZ: *f = (struct narrow_fmt){4, 3, 8, false, true, false}; return true;
    case KILN_DTYPE_FLOAT8E5M2: *f = (struct narrow_fmt){5, 2, 15, true, false, false}; return true;
    case KILN_DTYPE_FLOAT8E5M2FNUZ: *f = (struct narrow_fmt){5, 2, 16, false, true, false}; return true;
    case KILN_DTYPE_FLOAT4E2M1: *f = (struct narrow_fmt){2, 1, 1, false, false, false}; return true;
    default: return false;
    }
}

float kiln_narrow_to_f32(kiln_dtype t, uint8_t code) {
    if (t == KILN_DTYPE_FLOAT8E8M0) return code == 0xff ? NAN : ldexpf(1.0f, (int)code - 127);
    struct narrow_fmt f;
    if (!narrow_fmt_of(t, &f)) return NAN;
    int bits = 1 + f.ebits + f.mbits;
    unsigned sign = (code >> (bits - 1)) & 1, e = (code >> f.mbits) & ((1u << f.ebits) - 1),
             m = code & ((1u << f.mbits) - 1);
    if (f.fnuz && code == 0x80) return NAN;
    if (f.e4m3fn && e == 15 && m == 7) return NAN;
    if (f.has_inf && e == (1u << f.ebits) - 1) return m ? NAN : (sign ? -INFINITY : INFINITY);
    float v = e ? ldexpf(1.0f + (float)m / (float)(1 << f.mbits), (int)e - f.bias)
                : ldexpf((float)m / (float)(1 << f.mbits), 1 - f.bias);
    return sign ? -v : v;
}

uint8_t kiln_f32_to_narrow(kiln_dtype t, float x, bool saturate) {
    if (t == KILN_DTYPE_FLOAT8E8M0) { /* power of two, round to nearest */
        if (isnan(x) || x <= 0) return isnan(x) ? 0xff : 0;
        if (isinf(x)) return saturate ? 0xfe : 0xff;
        int e;
        float m = frexpf(x, &e); /* x = m * 2^e, m in [0.5, 1) */
        /* ONNX's default round_mode "up": the next power of two at or above x */
        int code = (m == 0.5f ? e - 1 : e) + 127;
        if (code > 254) return saturate ? 0xfe : 0xff;
        return (uint8_t)(code < 0 ? 0 : code);
    }
    struct narrow_fmt f;
    if (!narrow_fmt_of(t, &f)) return 0;
    int bits = 1 + f.ebits + f.mbits;
    uint8_t sign = signbit(x) ? (uint8_t)(1u << (bits - 1)) : 0;
    uint8_t nan = f.fnuz ? 0x80 : f.e4m3fn ? 0x7f : f.has_inf ? 0x7f : 0;
    /* largest finite code (magnitude) */
    unsigned emax = (1u << f.ebits) - 1 - (f.has_inf ? 1 : 0);
    unsigned max_code = (emax << f.mbits) | ((1u << f.mbits) - 1);
    if (f.e4m3fn) max_code -= 1; /* S.1111.111 is NaN */
    float max_val = kiln_narrow_to_f32(t, (uint8_t)max_code);
    /* float4e2m1 has no NaN: the reference writes the sign bit alone (-0) */
    if (isnan(x)) return t == KILN_DTYPE_FLOAT4E2M1 ? (uint8_t)(1u << (bits - 1)) : nan;
    float a = fabsf(x);
    if (isinf(x)) {
        if (saturate || t == KILN_DTYPE_FLOAT4E2M1) return (uint8_t)(sign | max_code);
        return f.has_inf ? (uint8_t)(sign | (emax + 1) << f.mbits) : (f.fnuz ? nan : (uint8_t)(sign | nan));
    }
    /* round to nearest even on the format's grid */
    int min_exp = 1 - f.bias;
    int e;
    frexpf(a, &e);
    e -= 1; /* a = 1.m * 2^e */
    if (e < min_exp) e = min_exp;
    float step = ldexpf(1.0f, e - f.mbits);
    float q = a / step;
    float r = rintf(q); /* the FPU's default rounding is to nearest even */
    float v = r * step;
    if (v > max_val) {
        if (saturate || t == KILN_DTYPE_FLOAT4E2M1) return (uint8_t)(sign | max_code);
        return f.has_inf ? (uint8_t)(sign | (emax + 1) << f.mbits) : (f.fnuz ? nan : (uint8_t)(sign | nan));
    }
    if (v == 0) return f.fnuz ? 0 : sign;
    int ve;
    frexpf(v, &ve);
    ve -= 1;
    unsigned code;
    if (ve < min_exp) code = (unsigned)(v / ldexpf(1.0f, min_exp - f.mbits)); /* subnormal */
    else code = ((unsigned)(ve + f.bias) << f.mbits) |
                ((unsigned)(v / ldexpf(1.0f, ve - f.mbits)) & ((1u << f.mbits) - 1));
    return (uint8_t)(sign | code);
}

float kiln_f16_to_f32(uint16_t h) {
    uint32_t sign = (uint32_t)(h & 0x8000) << 16, exp = (h >> 10) & 0x1f, man = h & 0x3ff, bits;
    if (exp == 0) {
        if (man == 0) bits = sign;
        else { /* subnormal: renormalize */
            int e = -1;
            do { man <<= 1; e++; } while (!(man & 0x400));
            bits = sign | ((uint32_t)(127 - 15 - e) << 23) | ((man & 0x3ff) << 13);
        }
    } else if (exp == 31) bits = sign | 0x7f800000u | (man << 13);
    else bits = sign | ((exp + 127 - 15) << 23) | (man << 13);
    float f;
    memcpy(&f, &bits, 4);
    return f;
}

uint16_t kiln_f32_to_f16(float f) {
    uint32_t x;
    memcpy(&x, &f, 4);
    uint32_t sign = (x >> 16) & 0x8000;
    uint32_t ax = x & 0x7fffffffu;
    if (ax >= 0x7f800000u) return (uint16_t)(sign | 0x7c00 | (ax > 0x7f800000u ? 0x200 : 0));
    if (ax >= 0x477ff000u) return (uint16_t)(sign | 0x7c00); /* rounds to inf */
    if (ax < 0x38800000u) { /* subnormal or zero in half */
        float a;
        memcpy(&a, &ax, 4);
        /* 2^-24 is the half subnormal step; rint rounds to nearest even */
        return (uint16_t)(sign | (uint32_t)rintf(a * 16777216.0f));
    }
    uint32_t mant = ax & 0x7fffff, exp = (ax >> 23) - 127 + 15;
    uint32_t h = (exp << 10) | (mant >> 13);
    uint32_t rem = mant & 0x1fff;
    if (rem > 0x1000 || (rem == 0x1000 && (h & 1))) h++;
    return (uint16_t)(sign | h);
}

float kiln_bf16_to_f32(uint16_t h) {
    uint32_t bits = (uint32_t)h << 16;
    float f;
    memcpy(&f, &bits, 4);
    return f;
}

uint16_t kiln_f32_to_bf16(float f) {
    uint32_t x;
    memcpy(&x, &f, 4);
    if ((x & 0x7fffffffu) > 0x7f800000u) return (uint16_t)((x >> 16) | 0x40); /* quiet NaN */
    x += 0x7fff + ((x >> 16) & 1);
    return (uint16_t)(x >> 16);
}

void kiln_strides(int32_t rank, const int64_t *dims, int64_t *strides) {
    int64_t s = 1;
    for (int32_t i = rank - 1; i >= 0; i--) {
        strides[i] = s;
        s *= dims[i];
    }
}

kiln_status kiln_activation_apply(const struct kiln_node *n, struct kiln_value *out,
                                  kiln_error *err) {
    const struct kiln_activation *a = &n->act;
    if (a->kind == KILN_ACT_NONE || !out) return KILN_OK;
    if (out->dtype != KILN_DTYPE_FLOAT)
        return kiln_op_fail(err, KILN_ERR_INTERNAL, n, "fused activation on a %s output",
                            kiln_dtype_name(out->dtype));
    float *x = out->data;
    int64_t len = kiln_value_numel(out);
    float al = a->alpha, be = a->beta;
    switch (a->kind) {
    case KILN_ACT_RELU:
#pragma omp parallel for if (len > (1 << 16))
        for (int64_t i = 0; i < len; i++) x[i] = x[i] > 0 ? x[i] : 0;
        break;
    case KILN_ACT_CLIP:
#pragma omp parallel for if (len > (1 << 16))
        for (int64_t i = 0; i < len; i++) x[i] = x[i] < al ? al : (x[i] > be ? be : x[i]);
        break;
    case KILN_ACT_LEAKY_RELU:
#pragma omp parallel for if (len > (1 << 16))
        for (int64_t i = 0; i < len; i++) x[i] = x[i] >= 0 ? x[i] : al * x[i];
        break;
    case KILN_ACT_SIGMOID:
#pragma omp parallel for if (len > (1 << 16))
        for (int64_t i = 0; i < len; i++) x[i] = 1.0f / (1.0f + expf(-x[i]));
        break;
    case KILN_ACT_HARD_SIGMOID:
#pragma omp parallel for if (len > (1 << 16))
        for (int64_t i = 0; i < len; i++) {
            float v = al * x[i] + be;
            x[i] = v < 0 ? 0 : (v > 1 ? 1 : v);
        }
        break;
    case KILN_ACT_HARD_SWISH:
#pragma omp parallel for if (len > (1 << 16))
        for (int64_t i = 0; i < len; i++) {
            float v = x[i] / 6.0f + 0.5f;
            x[i] *= v < 0 ? 0 : (v > 1 ? 1 : v);
        }
        break;
    case KILN_ACT_TANH:
#pragma omp parallel for if (len > (1 << 16))
        for (int64_t i = 0; i < len; i++) x[i] = tanhf(x[i]);
        break;
    case KILN_ACT_GELU_ERF:
#pragma omp parallel for if (len > (1 << 16))
        for (int64_t i = 0; i < len; i++) x[i] = 0.5f * x[i] * (1.0f + erff(x[i] * 0.70710678118654752f));
        break;
    case KILN_ACT_GELU_TANH:
#pragma omp parallel for if (len > (1 << 16))
        for (int64_t i = 0; i < len; i++) {
            float v = x[i];
            x[i] = 0.5f * v * (1.0f + tanhf(0.79788456080286536f * (v + 0.044715f * v * v * v)));
        }
        break;
    case KILN_ACT_SILU:
#pragma omp parallel for if (len > (1 << 16))
        for (int64_t i = 0; i < len; i++) x[i] = x[i] / (1.0f + expf(-al * x[i]));
        break;
    default:
        return kiln_op_fail(err, KILN_ERR_INTERNAL, n, "unknown fused activation %d", (int)a->kind);
    }
    return KILN_OK;
}

int kiln_op_threads(const struct kiln_exec_ctx *ctx) {
    return ctx && ctx->n_threads > 0 ? ctx->n_threads : 1;
}

kiln_status kiln_op_elem_size(const struct kiln_node *n, kiln_dtype dt, size_t *es,
                              kiln_error *err) {
    *es = kiln_dtype_size(dt);
    if (*es == 0)
        return kiln_op_fail(err, KILN_ERR_UNSUPPORTED, n, "dtype %s is not supported",
                            kiln_dtype_name(dt));
    return KILN_OK;
}
