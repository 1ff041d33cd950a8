/* resize.c — op family 'resize': Resize (opsets 10..19), Upsample (7, 9),
 * GridSample (16, 20, 22) and AffineGrid (20).
 *
 * Resize is separable: for every axis a small table lists, per output index,
 * the input indices ("taps") it reads and their weights (nearest: 1 tap;
 * linear: 2; cubic: 4; antialias: a wider footprint when downsampling). An
 * output element is the weighted sum over the product of its axes' taps.
 * Zero-weight taps are dropped, so unresized axes cost nothing. Nearest
 * copies elements and works for every fixed-size dtype; linear and cubic
 * compute in double and support numeric dtypes.
 */
#include "ops/op.h"

#include <math.h>
#include <stdlib.h>
#include <string.h>

#define DIM_LIM ((int64_t)1 << 40)

enum { RM_NEAREST, RM_LINEAR, RM_CUBIC };
enum {
    CT_HALF_PIXEL, CT_HALF_PIXEL_SYM, CT_PYTORCH_HALF_PIXEL, CT_ALIGN_CORNERS, CT_ASYMMETRIC,
    CT_TF_HALF_PIXEL_NN, CT_TF_CROP_AND_RESIZE,
};
enum { NM_ROUND_PREFER_FLOOR, NM_ROUND_PREFER_CEIL, NM_FLOOR, NM_CEIL, NM_SIMPLE };

struct rs {
    int32_t rank;
    int     mode, ctm, nearest, exclude_outside, antialias;
    double  cubic_a, extrapolation;
    int64_t in[KILN_MAX_RANK], out[KILN_MAX_RANK];
    double  scale[KILN_MAX_RANK];
    double  len_f[KILN_MAX_RANK];      /* resized length as a real number (scale * in) */
    int     axis_on[KILN_MAX_RANK];    /* axis listed in `axes` */
    int     roi_pos[KILN_MAX_RANK];    /* position of the axis in roi, or -1 */
    int32_t n_axes;
};

static kiln_status parse_mode(const struct kiln_node *n, struct rs *r, bool upsample,
                              kiln_error *err) {
    const char *m = kiln_attr_string(n, "mode", "nearest");
    if (!strcmp(m, "nearest")) r->mode = RM_NEAREST;
    else if (!strcmp(m, "linear") || !strcmp(m, "bilinear") || !strcmp(m, "trilinear"))
        r->mode = RM_LINEAR;
    else if (!strcmp(m, "cubic") && !upsample && n->opset >= 11) r->mode = RM_CUBIC;
    else
        return kiln_op_fail(err, KILN_ERR_UNSUPPORTED, n,
                            "mode: expected nearest, linear%s, got '%s'",
                            upsample || n->opset < 11 ? "" : " or cubic", m);
    if (upsample || n->opset < 11) {
        r->ctm = CT_ASYMMETRIC;
        r->nearest = NM_SIMPLE;
        r->cubic_a = -0.75;
        return KILN_OK;
    }
    const char *c = kiln_attr_string(n, "coordinate_transformation_mode", "half_pixel");
    static const char *const ct_names[] = {"half_pixel", "half_pixel_symmetric",
                                           "pytorch_half_pixel", "align_corners", "asymmetric",
                                           "tf_half_pixel_for_nn", "tf_crop_and_resize"};
    r->ctm = -1;
    for (int i = 0; i < 7; i++)
        if (!strcmp(c, ct_names[i])) r->ctm = i;
    if (r->ctm < 0)
        return kiln_op_fail(err, KILN_ERR_UNSUPPORTED, n,
                            "coordinate_transformation_mode: unknown value '%s'", c);
    const char *nm = kiln_attr_string(n, "nearest_mode", "round_prefer_floor");
    if (!strcmp(nm, "round_prefer_floor")) r->nearest = NM_ROUND_PREFER_FLOOR;
    else if (!strcmp(nm, "round_prefer_ceil")) r->nearest = NM_ROUND_PREFER_CEIL;
    else if (!strcmp(nm, "floor")) r->nearest = NM_FLOOR;
    else if (!strcmp(nm, "ceil")) r->nearest = NM_CEIL;
    else
        return kiln_op_fail(err, KILN_ERR_UNSUPPORTED, n, "nearest_mode: unknown value '%s'", nm);
    r->cubic_a = kiln_attr_float(n, "cubic_coeff_a", -0.75f);
    r->exclude_outside = kiln_attr_int(n, "exclude_outside", 0) != 0;
    r->extrapolation = kiln_attr_float(n, "extrapolation_value", 0.0f);
    r->antialias = n->opset >= 18 && kiln_attr_int(n, "antialias", 0) != 0;
    return KILN_OK;
}

/* Fills r from the node and inputs. Returns KILN_DYNAMIC when scales/sizes
 * are not known yet. */
static kiln_status resize_params(const struct kiln_node *n, const struct kiln_value *const *in,
                                 int n_in, bool upsample, struct rs *r, kiln_error *err) {
    kiln_status st;
    memset(r, 0, sizeof *r);
    const struct kiln_value *X = in[0], *roi = NULL, *scales = NULL, *sizes = NULL;
    const float *scale_attr = NULL;
    int64_t n_scale_attr = 0;
    if (upsample) {
        if (n->opset < 9) {
            if ((st = kiln_op_check_arity(n, n_in, 1, 1, err))) return st;
            scale_attr = kiln_attr_floats(n, "scales", &n_scale_attr);
            if (!scale_attr)
                return kiln_op_fail(err, KILN_ERR_BAD_MODEL, n, "scales: required attribute missing");
        } else {
            if ((st = kiln_op_check_arity(n, n_in, 2, 2, err))) return st;
            scales = in[1];
        }
    } else if (n->opset < 11) {
        if ((st = kiln_op_check_arity(n, n_in, 2, 2, err))) return st;
        scales = in[1];
    } else {
        if ((st = kiln_op_check_arity(n, n_in, n->opset < 13 ? 3 : 1, 4, err))) return st;
        roi = n_in > 1 ? in[1] : NULL;
        scales = n_in > 2 ? in[2] : NULL;
        sizes = n_in > 3 ? in[3] : NULL;
    }
    if (kiln_dtype_size(X->dtype) == 0)
        return kiln_op_fail(err, KILN_ERR_UNSUPPORTED, n, "X: unsupported type %s",
                            kiln_dtype_name(X->dtype));
    if ((st = parse_mode(n, r, upsample, err))) return st;
    if (r->mode != RM_NEAREST && !kiln_dtype_is_float(X->dtype) && !kiln_dtype_is_int(X->dtype))
        return kiln_op_fail(err, KILN_ERR_UNSUPPORTED, n, "X: %s interpolation of %s",
                            r->mode == RM_LINEAR ? "linear" : "cubic", kiln_dtype_name(X->dtype));
    const int32_t rank = X->rank;
    r->rank = rank;
    for (int32_t i = 0; i < rank; i++) {
        if (X->dims[i] < 0)
            return kiln_op_fail(err, KILN_ERR_SHAPE, n, "X: expected known dims, got %lld at axis %d",
                                (long long)X->dims[i], i);
        r->in[i] = r->out[i] = X->dims[i];
        r->scale[i] = 1.0;
        r->roi_pos[i] = -1;
    }
    /* axes (opset 18+) */
    int32_t axes[KILN_MAX_RANK];
    int64_t n_axes_attr = 0;
    const int64_t *axes_attr = n->opset >= 18 && !upsample ? kiln_attr_ints(n, "axes", &n_axes_attr)
                                                             : NULL;
    if (axes_attr && n_axes_attr > 0) {
        if (n_axes_attr > rank)
            return kiln_op_fail(err, KILN_ERR_BAD_MODEL, n, "axes: expected at most %d values, got %lld",
                                rank, (long long)n_axes_attr);
        for (int64_t i = 0; i < n_axes_attr; i++) {
            if ((st = kiln_norm_axis(n, axes_attr[i], rank, &axes[i], err))) return st;
            if (r->axis_on[axes[i]])
                return kiln_op_fail(err, KILN_ERR_BAD_MODEL, n, "axes: axis %d repeated", axes[i]);
            r->axis_on[axes[i]] = 1;
        }
        r->n_axes = (int32_t)n_axes_attr;
    } else {
        for (int32_t i = 0; i < rank; i++) { axes[i] = i; r->axis_on[i] = 1; }
        r->n_axes = rank;
    }
    for (int32_t i = 0; i < r->n_axes; i++) r->roi_pos[axes[i]] = i;
    if (roi && kiln_value_numel(roi) == 0) roi = NULL;
    if (roi && (!kiln_dtype_is_float(roi->dtype) || roi->rank != 1 ||
                (roi->dims[0] != 2 * r->n_axes && roi->dims[0] != 2 * rank)))
        return kiln_op_fail(err, KILN_ERR_SHAPE, n, "roi: expected a float tensor of %d values",
                            2 * r->n_axes);
    if (scales && kiln_value_numel(scales) == 0 && (n->opset >= 11 || sizes)) scales = NULL;
    if (sizes && kiln_value_numel(sizes) == 0) sizes = NULL;
    if (scales && sizes)
        return kiln_op_fail(err, KILN_ERR_BAD_MODEL, n, "expected only one of scales and sizes");
    if (!scale_attr && !scales && !sizes)
        return kiln_op_fail(err, KILN_ERR_BAD_MODEL, n, "expected scales or sizes");
    if (scale_attr || scales) {
        int64_t cnt = scale_attr ? n_scale_attr : kiln_value_numel(scales);
        if (scales && (!kiln_dtype_is_float(scales->dtype) || scales->rank != 1))
            return kiln_op_fail(err, KILN_ERR_SHAPE, n, "scales: expected a 1-D float tensor, got %s rank %d",
                                kiln_dtype_name(scales->dtype), scales->rank);
        if (cnt != r->n_axes)
            return kiln_op_fail(err, KILN_ERR_SHAPE, n, "scales: expected %d values, got %lld",
                                r->n_axes, (long long)cnt);
        if (scales && !scales->data) return KILN_DYNAMIC;
        for (int32_t i = 0; i < r->n_axes; i++) {
            double s = scale_attr ? (double)scale_attr[i] : kiln_value_get_f64(scales, i);
            int32_t a = axes[i];
            if (!(s > 0) || !isfinite(s))
                return kiln_op_fail(err, KILN_ERR_BAD_MODEL, n, "scales[%d]: expected > 0, got %g", i, s);
            double o = floor((double)r->in[a] * s);
            if (o > (double)DIM_LIM)
                return kiln_op_fail(err, KILN_ERR_LIMIT, n, "axis %d: output size %g too large", a, o);
            r->scale[a] = s;
            r->out[a] = (int64_t)o;
            r->len_f[a] = s * (double)r->in[a];
        }
    } else {
        if (!kiln_dtype_is_int(sizes->dtype) || sizes->rank != 1 || sizes->dims[0] != r->n_axes)
            return kiln_op_fail(err, KILN_ERR_SHAPE, n, "sizes: expected int64 [%d], got %s rank %d",
                                r->n_axes, kiln_dtype_name(sizes->dtype), sizes->rank);
        if (!sizes->data) return KILN_DYNAMIC;
        const char *pol = n->opset >= 18 ? kiln_attr_string(n, "keep_aspect_ratio_policy", "stretch")
                                         : "stretch";
        int policy = !strcmp(pol, "stretch") ? 0 : !strcmp(pol, "not_larger") ? 1
                                                 : !strcmp(pol, "not_smaller") ? 2 : -1;
        if (policy < 0)
            return kiln_op_fail(err, KILN_ERR_BAD_MODEL, n,
                                "keep_aspect_ratio_policy: unknown value '%s'", pol);
        double common = policy == 1 ? INFINITY : 0.0;
        for (int32_t i = 0; i < r->n_axes; i++) {
            int64_t v = kiln_value_get_int(sizes, i);
            int32_t a = axes[i];
            if (v < 0 || v > DIM_LIM)
                return kiln_op_fail(err, KILN_ERR_BAD_MODEL, n, "sizes[%d]: bad value %lld", i,
                                    (long long)v);
            if (r->in[a] == 0 && v != 0)
                return kiln_op_fail(err, KILN_ERR_SHAPE, n, "axis %d: cannot resize an empty axis to %lld",
                                    a, (long long)v);
            r->out[a] = v;
            r->scale[a] = r->in[a] ? (double)v / (double)r->in[a] : 1.0;
            r->len_f[a] = (double)v;
            if (policy == 1 && r->scale[a] < common) common = r->scale[a];
            if (policy == 2 && r->scale[a] > common) common = r->scale[a];
        }
        if (policy) {
            for (int32_t i = 0; i < r->n_axes; i++) {
                int32_t a = axes[i];
                double o = floor(common * (double)r->in[a] + 0.5);
                if (o > (double)DIM_LIM)
                    return kiln_op_fail(err, KILN_ERR_LIMIT, n, "axis %d: output size too large", a);
                r->out[a] = (int64_t)o;
                r->scale[a] = common;
                r->len_f[a] = common * (double)r->in[a];
            }
        }
    }
    for (int32_t a = 0; a < rank; a++) {
        if (!r->axis_on[a] || r->len_f[a] == 0) r->len_f[a] = (double)r->out[a];
        if (r->in[a] == 0 && r->out[a] != 0)
            return kiln_op_fail(err, KILN_ERR_SHAPE, n, "axis %d: cannot resize an empty axis", a);
        if (!(r->scale[a] > 0)) r->scale[a] = 1.0;
    }
    return KILN_OK;
}

static kiln_status resize_infer_common(const struct kiln_node *n,
                                       const struct kiln_value *const *in, int n_in,
                                       struct kiln_value *const *out, int n_out, bool upsample,
                                       kiln_error *err) {
    struct rs r;
    if (n_in < 1 || !in[0])
        return kiln_op_fail(err, KILN_ERR_BAD_MODEL, n, "X: required input missing");
    kiln_status st = resize_params(n, in, n_in, upsample, &r, err);
    if (st) return st;
    if (n_out != 1)
        return kiln_op_fail(err, KILN_ERR_BAD_MODEL, n, "expected 1 output, got %d", n_out);
    kiln_value_set_shape(out[0], in[0]->dtype, r.rank, r.out);
    return KILN_OK;
}

static kiln_status resize_infer(const struct kiln_node *n, const struct kiln_value *const *in,
                                int n_in, struct kiln_value *const *out, int n_out,
                                kiln_error *err) {
    return resize_infer_common(n, in, n_in, out, n_out, false, err);
}

static kiln_status upsample_infer(const struct kiln_node *n, const struct kiln_value *const *in,
                                  int n_in, struct kiln_value *const *out, int n_out,
                                  kiln_error *err) {
    return resize_infer_common(n, in, n_in, out, n_out, true, err);
}

/* Per-axis taps: for output index o, taps idx[o*nt + t] / w[o*nt + t] for
 * t < cnt[o]; outside[o] marks tf_crop_and_resize extrapolation. */
struct taps {
    int32_t  nt;        /* max taps per output index */
    int32_t *cnt;
    int64_t *idx;
    double  *w;
    uint8_t *outside;
};

static double cubic_kernel(double x, double A) {
    x = fabs(x);
    if (x <= 1) return ((A + 2) * x - (A + 3)) * x * x + 1;
    if (x < 2) return ((A * x - 5 * A) * x + 8 * A) * x - 4 * A;
    return 0.0;
}

static double map_coord(const struct rs *r, int32_t a, int64_t x, double roi_s, double roi_e) {
    const double s = r->scale[a], in = (double)r->in[a], len = r->len_f[a];
    const double xr = (double)x;
    switch (r->ctm) {
    case CT_HALF_PIXEL: return (xr + 0.5) / s - 0.5;
    case CT_HALF_PIXEL_SYM: {
        double adj = (double)r->out[a] / len;
        double center = in / 2;
        return center * (1 - adj) + (xr + 0.5) / s - 0.5;
    }
    case CT_PYTORCH_HALF_PIXEL: return len > 1 ? (xr + 0.5) / s - 0.5 : 0.0;
    case CT_ALIGN_CORNERS: return len == 1 ? 0.0 : xr * (in - 1) / (len - 1);
    case CT_TF_HALF_PIXEL_NN: return (xr + 0.5) / s;
    case CT_TF_CROP_AND_RESIZE:
        if (len == 1) return (roi_e - roi_s) * (in - 1) / 2 + roi_s * (in - 1);
        return xr * (roi_e - roi_s) * (in - 1) / (len - 1) + roi_s * (in - 1);
    default: return xr / s;   /* asymmetric */
    }
}

static void taps_free(struct taps *t) {
    free(t->cnt);
    free(t->idx);
    free(t->w);
    free(t->outside);
}

/* Builds the tap table of axis a. Returns false when out of memory. */
static bool build_taps(const struct rs *r, int32_t a, double roi_s, double roi_e, struct taps *t) {
    const int64_t out = r->out[a], in = r->in[a];
    double s_eff = 1.0;
    int64_t start;   /* first tap offset relative to the base index */
    if (r->mode == RM_NEAREST || !r->axis_on[a]) {
        t->nt = 1;
        start = 0;
    } else {
        if (r->antialias && r->scale[a] < 1) s_eff = r->scale[a];
        double support = r->mode == RM_LINEAR ? 1.0 : 2.0;
        start = (int64_t)floor(-support / s_eff) + 1;
        int64_t nt = 2 - 2 * start;
        if (nt > (1 << 20)) nt = 1 << 20;
        t->nt = (int32_t)nt;
    }
    size_t m = (size_t)(out ? out : 1);
    t->cnt = calloc(m, sizeof *t->cnt);
    t->idx = calloc(m * (size_t)t->nt, sizeof *t->idx);
    t->w = calloc(m * (size_t)t->nt, sizeof *t->w);
    t->outside = calloc(m, 1);
    if (!t->cnt || !t->idx || !t->w || !t->outside) return false;
    for (int64_t o = 0; o < out; o++) {
        int64_t *ip = t->idx + o * t->nt;
        double *wp = t->w + o * t->nt;
        if (!r->axis_on[a]) {   /* untouched axis: identity */
            ip[0] = o < in ? o : in - 1;
            wp[0] = 1.0;
            t->cnt[o] = 1;
            continue;
        }
        double xo = map_coord(r, a, o, roi_s, roi_e);
        if (r->ctm == CT_TF_CROP_AND_RESIZE && (xo < 0 || xo > (double)(in - 1))) {
            t->outside[o] = 1;
            continue;
        }
        if (r->mode == RM_NEAREST) {
            double v;
            switch (r->nearest) {
            case NM_ROUND_PREFER_FLOOR: v = ceil(xo - 0.5); break;
            case NM_ROUND_PREFER_CEIL: v = floor(xo + 0.5); break;
            case NM_FLOOR: v = floor(xo); break;
            case NM_CEIL: v = ceil(xo); break;
            default: v = r->scale[a] < 1 ? ceil(xo) : floor(xo); break;   /* opset < 11 */
            }
            if (!(v >= 0)) v = 0;
            if (v > (double)(in - 1)) v = (double)(in - 1);
            ip[0] = (int64_t)v;
            wp[0] = 1.0;
            t->cnt[o] = 1;
            continue;
        }
        /* ratio in (0, 1]: prefer the pixel left of xo */
        double fl = floor(xo);
        double ratio = xo - fl;
        int64_t base = (int64_t)fl;
        if (ratio == 0) { ratio = 1.0; base -= 1; }
        double sum = 0.0, wtmp[64];
        int32_t k = 0;
        double *wv = t->nt <= 64 ? wtmp : wp;   /* raw weights */
        for (int32_t j = 0; j < t->nt; j++) {
            double dist = ((double)(start + j) - ratio) * s_eff;
            double w = r->mode == RM_LINEAR ? fmax(0.0, 1.0 - fabs(dist)) : cubic_kernel(dist, r->cubic_a);
            int64_t idx = base + start + j;
            if (r->exclude_outside && (idx < 0 || idx >= in)) w = 0.0;
            wv[j] = w;
            sum += w;
        }
        bool normalize = r->exclude_outside || s_eff < 1;
        for (int32_t j = 0; j < t->nt; j++) {
            double w = wv[j];
            if (normalize) w = sum != 0 ? w / sum : 0.0;
            if (w == 0.0) continue;
            int64_t idx = base + start + j;
            if (idx < 0) idx = 0;
            if (idx > in - 1) idx = in - 1;
            ip[k] = idx;
            wp[k] = w;
            k++;
        }
        t->cnt[o] = k;
    }
    return true;
}

static void store_num(struct kiln_value *v, int64_t i, double x) {
    switch (v->dtype) {
    case KILN_DTYPE_FLOAT: ((float *)v->data)[i] = (float)x; return;
    case KILN_DTYPE_DOUBLE: ((double *)v->data)[i] = x; return;
    case KILN_DTYPE_FLOAT16: case KILN_DTYPE_BFLOAT16: kiln_value_set_f64(v, i, x); return;
    default: break;
    }
    /* integer outputs: round to nearest, saturate */
    double lo = -9.2e18, hi = 9.2e18;
    switch (v->dtype) {
    case KILN_DTYPE_UINT8: lo = 0; hi = 255; break;
    case KILN_DTYPE_INT8: lo = -128; hi = 127; break;
    case KILN_DTYPE_UINT16: lo = 0; hi = 65535; break;
    case KILN_DTYPE_INT16: lo = -32768; hi = 32767; break;
    case KILN_DTYPE_INT32: lo = -2147483648.0; hi = 2147483647.0; break;
    case KILN_DTYPE_UINT32: lo = 0; hi = 4294967295.0; break;
    case KILN_DTYPE_UINT64: lo = 0; hi = 1.8e19; break;
    default: break;
    }
    x = nearbyint(x);
    if (!(x >= lo)) x = lo;
    if (x > hi) x = hi;
    kiln_value_set_f64(v, i, x);
}

static kiln_status resize_exec_common(const struct kiln_node *n, const struct kiln_value *const *in,
                                      int n_in, struct kiln_value *const *out, bool upsample,
                                      kiln_error *err) {
    struct rs r;
    kiln_status st = resize_params(n, in, n_in, upsample, &r, err);
    if (st == KILN_DYNAMIC)
        return kiln_op_fail(err, KILN_ERR_INTERNAL, n, "scales/sizes not known at run time");
    if (st) return st;
    const struct kiln_value *X = in[0];
    struct kiln_value *Y = out[0];
    const int32_t rank = r.rank;
    const int64_t ycnt = kiln_value_numel(Y);
    if (ycnt == 0) return KILN_OK;
    if (rank == 0) {
        memcpy(Y->data, X->data, kiln_dtype_size(X->dtype));
        return KILN_OK;
    }
    const struct kiln_value *roi = (!upsample && n->opset >= 11 && n_in > 1) ? in[1] : NULL;
    if (roi && kiln_value_numel(roi) == 0) roi = NULL;
    struct taps t[KILN_MAX_RANK];
    memset(t, 0, sizeof t);
    kiln_status rc = KILN_OK;
    int64_t maxp = 1;
    for (int32_t a = 0; a < rank; a++) {
        double rs = 0.0, re = 1.0;
        if (roi && r.ctm == CT_TF_CROP_AND_RESIZE) {
            int64_t half = kiln_value_numel(roi) / 2;
            int64_t pos = half == rank ? a : r.roi_pos[a];
            if (pos >= 0) {
                rs = kiln_value_get_f64(roi, pos);
                re = kiln_value_get_f64(roi, pos + half);
            }
        }
        if (!build_taps(&r, a, rs, re, &t[a])) { rc = KILN_ERR_NO_MEMORY; goto done; }
        if (a < rank - 1 && kiln_mul_overflow_i64(maxp, t[a].nt, &maxp)) maxp = INT64_MAX;
    }
    if (maxp > ((int64_t)1 << 22)) {
        rc = kiln_op_fail(err, KILN_ERR_LIMIT, n, "interpolation footprint too large (%lld taps)",
                          (long long)maxp);
        goto done;
    }
    int64_t istr[KILN_MAX_RANK];
    kiln_strides(rank, r.in, istr);
    const int32_t L = rank - 1;
    const int64_t rows = ycnt / r.out[L], olast = r.out[L];
    const size_t es = kiln_dtype_size(X->dtype);
    const bool nearest = r.mode == RM_NEAREST;
    const float *xf = X->dtype == KILN_DTYPE_FLOAT ? X->data : NULL;
    int failed = 0;
#pragma omp parallel
    {
        int64_t *poff = malloc((size_t)maxp * sizeof *poff);
        double *pw = malloc((size_t)maxp * sizeof *pw);
        if (!poff || !pw) {
#pragma omp atomic write
            failed = 1;
        }
#pragma omp for schedule(static)
        for (int64_t row = 0; row < rows; row++) {
            if (!poff || !pw) continue;
            int64_t c[KILN_MAX_RANK], rem = row;
            for (int32_t a = L - 1; a >= 0; a--) { c[a] = rem % r.out[a]; rem /= r.out[a]; }
            int outside = 0;
            for (int32_t a = 0; a < L; a++) outside |= t[a].outside[c[a]];
            /* combinations of the outer axes' taps */
            int64_t np = 0;
            if (!outside) {
                int32_t k[KILN_MAX_RANK] = {0};
                for (;;) {
                    int64_t off = 0;
                    double w = 1.0;
                    for (int32_t a = 0; a < L; a++) {
                        int64_t j = c[a] * t[a].nt + k[a];
                        off += t[a].idx[j] * istr[a];
                        w *= t[a].w[j];
                    }
                    poff[np] = off;
                    pw[np] = w;
                    np++;
                    int32_t a = L - 1;
                    while (a >= 0 && ++k[a] >= t[a].cnt[c[a]]) { k[a] = 0; a--; }
                    if (a < 0) break;
                }
            }
            const struct taps *tl = &t[L];
            for (int64_t x = 0; x < olast; x++) {
                const int64_t yi = row * olast + x;
                if (outside || tl->outside[x] || np == 0) {
                    store_num(Y, yi, r.extrapolation);
                    continue;
                }
                const int64_t *li = tl->idx + x * tl->nt;
                const double *lw = tl->w + x * tl->nt;
                const int32_t lc = tl->cnt[x];
                if (nearest) {
                    memcpy((char *)Y->data + (size_t)yi * es,
                           (const char *)X->data + (size_t)(poff[0] + li[0]) * es, es);
                    continue;
                }
                double acc = 0.0;
                for (int64_t p = 0; p < np; p++) {
                    double part = 0.0;
                    if (xf)
                        for (int32_t j = 0; j < lc; j++) part += lw[j] * (double)xf[poff[p] + li[j]];
                    else
                        for (int32_t j = 0; j < lc; j++)
                            part += lw[j] * kiln_value_get_f64(X, poff[p] + li[j]);
                    acc += pw[p] * part;
                }
                store_num(Y, yi, acc);
            }
        }
        free(poff);
        free(pw);
    }
    if (failed) rc = KILN_ERR_NO_MEMORY;
done:
    for (int32_t a = 0; a < rank; a++) taps_free(&t[a]);
    if (rc == KILN_ERR_NO_MEMORY)
        return kiln_op_fail(err, rc, n, "out of memory for interpolation tables");
    return rc;
}

static kiln_status resize_exec(const struct kiln_node *n, struct kiln_exec_ctx *ctx,
                               const struct kiln_value *const *in, int n_in,
                               struct kiln_value *const *out, int n_out, kiln_error *err) {
    return resize_exec_common(n, in, n_in, out, false, err);
}

static kiln_status upsample_exec(const struct kiln_node *n, struct kiln_exec_ctx *ctx,
                                 const struct kiln_value *const *in, int n_in,
                                 struct kiln_value *const *out, int n_out, kiln_error *err) {
    return resize_exec_common(n, in, n_in, out, true, err);
}

/* ---- GridSample ------------------------------------------------------------ */

enum { GS_ZEROS, GS_BORDER, GS_REFLECTION };

struct gs {
    int mode;          /* RM_NEAREST / RM_LINEAR / RM_CUBIC */
    int pad;
    int align;
    int32_t nsp;
};

static kiln_status gs_params(const struct kiln_node *n, const struct kiln_value *const *in,
                             int n_in, struct gs *p, int64_t *odims, kiln_error *err) {
    kiln_status st = kiln_op_check_arity(n, n_in, 2, 2, err);
    if (st) return st;
    const struct kiln_value *X = in[0], *G = in[1];
    if (!kiln_dtype_is_float(X->dtype) || !kiln_dtype_is_float(G->dtype))
        return kiln_op_fail(err, KILN_ERR_UNSUPPORTED, n, "X and grid: expected float types, got %s and %s",
                            kiln_dtype_name(X->dtype), kiln_dtype_name(G->dtype));
    if (X->rank < 3 || G->rank != X->rank)
        return kiln_op_fail(err, KILN_ERR_SHAPE, n, "expected X rank >= 3 and grid of the same rank, got %d and %d",
                            X->rank, G->rank);
    p->nsp = X->rank - 2;
    if (G->dims[0] != X->dims[0] || G->dims[X->rank - 1] != p->nsp)
        return kiln_op_fail(err, KILN_ERR_SHAPE, n, "grid: expected shape [N=%lld, ..., %d], got N=%lld last %lld",
                            (long long)X->dims[0], p->nsp, (long long)G->dims[0],
                            (long long)G->dims[X->rank - 1]);
    for (int32_t i = 0; i < X->rank; i++)
        if (X->dims[i] < 0 || G->dims[i] < 0)
            return kiln_op_fail(err, KILN_ERR_SHAPE, n, "expected known dims");
    const char *m = kiln_attr_string(n, "mode", n->opset >= 20 ? "linear" : "bilinear");
    if (!strcmp(m, "bilinear") || !strcmp(m, "linear")) p->mode = RM_LINEAR;
    else if (!strcmp(m, "nearest")) p->mode = RM_NEAREST;
    else if (!strcmp(m, "bicubic") || !strcmp(m, "cubic")) p->mode = RM_CUBIC;
    else return kiln_op_fail(err, KILN_ERR_BAD_MODEL, n, "mode: unknown value '%s'", m);
    const char *pm = kiln_attr_string(n, "padding_mode", "zeros");
    if (!strcmp(pm, "zeros")) p->pad = GS_ZEROS;
    else if (!strcmp(pm, "border")) p->pad = GS_BORDER;
    else if (!strcmp(pm, "reflection")) p->pad = GS_REFLECTION;
    else return kiln_op_fail(err, KILN_ERR_BAD_MODEL, n, "padding_mode: unknown value '%s'", pm);
    p->align = kiln_attr_int(n, "align_corners", 0) != 0;
    odims[0] = X->dims[0];
    odims[1] = X->dims[1];
    for (int32_t i = 0; i < p->nsp; i++) odims[2 + i] = G->dims[1 + i];
    return KILN_OK;
}

static kiln_status gs_infer(const struct kiln_node *n, const struct kiln_value *const *in,
                            int n_in, struct kiln_value *const *out, int n_out, kiln_error *err) {
    struct gs p;
    int64_t odims[KILN_MAX_RANK];
    kiln_status st = gs_params(n, in, n_in, &p, odims, err);
    if (st) return st;
    if (n_out != 1) return kiln_op_fail(err, KILN_ERR_BAD_MODEL, n, "expected 1 output, got %d", n_out);
    kiln_value_set_shape(out[0], in[0]->dtype, in[0]->rank, odims);
    return KILN_OK;
}

static double gs_reflect(double x, double lo, double hi) {
    double rng = hi - lo;
    if (rng <= 0) return lo;
    if (x < lo) {
        double dx = lo - x;
        double k = floor(dx / rng), r = dx - k * rng;
        return fmod(k, 2.0) == 0 ? lo + r : hi - r;
    }
    if (x > hi) {
        double dx = x - hi;
        double k = floor(dx / rng), r = dx - k * rng;
        return fmod(k, 2.0) == 0 ? hi - r : lo + r;
    }
    return x;
}

/* Resolves tap index i along an axis of size d; false when it reads zero padding. */
static bool gs_index(const struct gs *p, int64_t i, int64_t d, int64_t *o) {
    if (p->pad == GS_ZEROS) {
        if (i < 0 || i >= d) return false;
    } else if (p->pad == GS_BORDER) {
        i = i < 0 ? 0 : i >= d ? d - 1 : i;
    } else {
        double lo = p->align ? 0.0 : -0.5, hi = p->align ? (double)d - 1 : (double)d - 0.5;
        i = (int64_t)gs_reflect((double)i, lo, hi);
        i = i < 0 ? 0 : i >= d ? d - 1 : i;
    }
    *o = i;
    return true;
}

static kiln_status gs_exec(const struct kiln_node *n, struct kiln_exec_ctx *ctx,
                           const struct kiln_value *const *in, int n_in,
                           struct kiln_value *const *out, int n_out, kiln_error *err) {
    struct gs p;
    int64_t odims[KILN_MAX_RANK];
    kiln_status st = gs_params(n, in, n_in, &p, odims, err);
    if (st) return st;
    const struct kiln_value *X = in[0], *G = in[1];
    struct kiln_value *Y = out[0];
    const int32_t nsp = p.nsp;
    const int64_t N = X->dims[0], C = X->dims[1];
    const int64_t ocnt = kiln_value_numel(Y);
    if (ocnt == 0) return KILN_OK;
    int64_t isp = 1, osp = 1;
    for (int32_t i = 0; i < nsp; i++) { isp *= X->dims[2 + i]; osp *= odims[2 + i]; }
    if (isp == 0 && p.pad != GS_ZEROS)
        return kiln_op_fail(err, KILN_ERR_SHAPE, n, "X: empty spatial dims");
    int64_t istr[KILN_MAX_RANK];
    kiln_strides(nsp, X->dims + 2, istr);
    const int ntap = p.mode == RM_NEAREST ? 1 : p.mode == RM_LINEAR ? 2 : 4;
#pragma omp parallel for schedule(static) if (ocnt > 4096)
    for (int64_t no = 0; no < N * osp; no++) {
        const int64_t b = no / osp, o = no % osp;
        double tw[KILN_MAX_RANK][4];
        int64_t ti[KILN_MAX_RANK][4];
        bool tv[KILN_MAX_RANK][4];
        for (int32_t j = 0; j < nsp; j++) {
            const int64_t d = X->dims[2 + j];
            /* grid's last axis lists coordinates innermost first (x, y, z) */
            double g = kiln_value_get_f64(G, (b * osp + o) * nsp + (nsp - 1 - j));
            double x = p.align ? (g + 1) / 2.0 * (double)(d - 1) : ((g + 1) * (double)d - 1) / 2.0;
            if (p.mode == RM_NEAREST)
                x = nearbyint(x);
            double lo = p.align ? 0.0 : -0.5, hi = p.align ? (double)d - 1 : (double)d - 0.5;
            if (x < lo || x > hi) {
                if (p.pad == GS_BORDER) x = x < 0 ? 0 : x > (double)(d - 1) ? (double)(d - 1) : x;
                else if (p.pad == GS_REFLECTION) x = gs_reflect(x, lo, hi);
            }
            if (p.mode == RM_NEAREST) {
                tw[j][0] = 1.0;
                tv[j][0] = gs_index(&p, (int64_t)x, d, &ti[j][0]);
                continue;
            }
            double f = floor(x), t = x - f;
            int64_t x0 = (int64_t)f;
            if (p.mode == RM_LINEAR) {
                tw[j][0] = 1 - t;
                tw[j][1] = t;
                tv[j][0] = gs_index(&p, x0, d, &ti[j][0]);
                tv[j][1] = gs_index(&p, x0 + 1, d, &ti[j][1]);
            } else {
                for (int k = 0; k < 4; k++) {
                    tw[j][k] = cubic_kernel((double)(k - 1) - t, -0.75);
                    tv[j][k] = gs_index(&p, x0 - 1 + k, d, &ti[j][k]);
                }
            }
        }
        for (int64_t c = 0; c < C; c++) {
            const int64_t xbase = (b * C + c) * isp;
            double acc = 0.0;
            int k[KILN_MAX_RANK] = {0};
            for (;;) {
                double w = 1.0;
                int64_t off = 0;
                bool valid = true;
                for (int32_t j = 0; j < nsp; j++) {
                    w *= tw[j][k[j]];
                    valid = valid && tv[j][k[j]];
                    off += (tv[j][k[j]] ? ti[j][k[j]] : 0) * istr[j];
                }
                if (valid && w != 0.0) acc += w * kiln_value_get_f64(X, xbase + off);
                int32_t j = nsp - 1;
                while (j >= 0 && ++k[j] >= ntap) { k[j] = 0; j--; }
                if (j < 0) break;
            }
            kiln_value_set_f64(Y, (b * C + c) * osp + o, acc);
        }
    }
    return KILN_OK;
}

/* ---- AffineGrid ------------------------------------------------------------ */

static kiln_status ag_infer(const struct kiln_node *n, const struct kiln_value *const *in,
                            int n_in, struct kiln_value *const *out, int n_out, kiln_error *err) {
    kiln_status st = kiln_op_check_arity(n, n_in, 2, 2, err);
    if (st) return st;
    const struct kiln_value *T = in[0], *S = in[1];
    if (!kiln_dtype_is_float(T->dtype))
        return kiln_op_fail(err, KILN_ERR_UNSUPPORTED, n, "theta: expected a float type, got %s",
                            kiln_dtype_name(T->dtype));
    if (!kiln_dtype_is_int(S->dtype) || S->rank != 1 || (S->dims[0] != 4 && S->dims[0] != 5))
        return kiln_op_fail(err, KILN_ERR_SHAPE, n, "size: expected int64 [4] or [5]");
    const int32_t nsp = (int32_t)S->dims[0] - 2;
    if (T->rank != 3 || T->dims[1] != nsp || T->dims[2] != nsp + 1)
        return kiln_op_fail(err, KILN_ERR_SHAPE, n, "theta: expected [N, %d, %d]", nsp, nsp + 1);
    if (!S->data) return KILN_DYNAMIC;
    int64_t dims[KILN_MAX_RANK];
    dims[0] = kiln_value_get_int(S, 0);
    if (dims[0] != T->dims[0])
        return kiln_op_fail(err, KILN_ERR_SHAPE, n, "size[0] = %lld: expected theta's N %lld",
                            (long long)dims[0], (long long)T->dims[0]);
    for (int32_t i = 0; i < nsp; i++) {
        dims[1 + i] = kiln_value_get_int(S, 2 + i);
        if (dims[1 + i] < 0 || dims[1 + i] > DIM_LIM)
            return kiln_op_fail(err, KILN_ERR_BAD_MODEL, n, "size[%d]: bad value %lld", 2 + i,
                                (long long)dims[1 + i]);
    }
    dims[1 + nsp] = nsp;
    if (n_out != 1) return kiln_op_fail(err, KILN_ERR_BAD_MODEL, n, "expected 1 output, got %d", n_out);
    kiln_value_set_shape(out[0], T->dtype, nsp + 2, dims);
    return KILN_OK;
}

static kiln_status ag_exec(const struct kiln_node *n, struct kiln_exec_ctx *ctx,
                           const struct kiln_value *const *in, int n_in,
                           struct kiln_value *const *out, int n_out, kiln_error *err) {
    const struct kiln_value *T = in[0];
    struct kiln_value *Y = out[0];
    const int32_t nsp = Y->rank - 2;
    const int align = kiln_attr_int(n, "align_corners", 0) != 0;
    const int64_t N = Y->dims[0];
    int64_t sp = 1;
    for (int32_t i = 0; i < nsp; i++) sp *= Y->dims[1 + i];
    for (int64_t b = 0; b < N; b++) {
        for (int64_t o = 0; o < sp; o++) {
            double base[4];
            int64_t rem = o;
            /* spatial dims D,H,W -> base coordinates listed x (W) first */
            for (int32_t i = nsp - 1; i >= 0; i--) {
                int64_t L = Y->dims[1 + i], c = rem % L;
                rem /= L;
                double v;
                if (align) v = L > 1 ? -1.0 + 2.0 * (double)c / (double)(L - 1) : -1.0;
                else v = (2.0 * (double)c + 1.0) / (double)L - 1.0;
                base[nsp - 1 - i] = v;
            }
            base[nsp] = 1.0;
            for (int32_t r = 0; r < nsp; r++) {
                double acc = 0.0;
                for (int32_t c = 0; c <= nsp; c++)
                    acc += kiln_value_get_f64(T, (b * nsp + r) * (nsp + 1) + c) * base[c];
                kiln_value_set_f64(Y, (b * sp + o) * nsp + r, acc);
            }
        }
    }
    return KILN_OK;
}

const struct kiln_op_def kiln_ops_resize[] = {
    {"Resize", NULL, 10, 0, resize_infer, resize_exec, NULL, NULL},
    {"Upsample", NULL, 7, 0, upsample_infer, upsample_exec, NULL, NULL},
    {"GridSample", NULL, 16, 0, gs_infer, gs_exec, NULL, NULL},
    {"AffineGrid", NULL, 20, 0, ag_infer, ag_exec, NULL, NULL},
    {0},
};
