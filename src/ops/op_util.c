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
    default: return "?";
    }
}

size_t kiln_dtype_size(kiln_dtype t) {
    switch (t) {
    case KILN_DTYPE_FLOAT: case KILN_DTYPE_INT32: case KILN_DTYPE_UINT32: return 4;
    case KILN_DTYPE_UINT8: case KILN_DTYPE_INT8: case KILN_DTYPE_BOOL: return 1;
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
           t == KILN_DTYPE_INT64 || kiln_dtype_is_float(t);
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
    case KILN_DTYPE_INT8: return ((const int8_t *)v->data)[i];
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
    default: return (double)kiln_value_get_int(v, i);
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
    default: break;
    }
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
    default:
        return kiln_op_fail(err, KILN_ERR_INTERNAL, n, "unknown fused activation %d", (int)a->kind);
    }
    return KILN_OK;
}
