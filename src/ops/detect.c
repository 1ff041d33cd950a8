/* detect.c — detection ops: NonMaxSuppression and RoiAlign. Both follow the
 * ONNX reference implementation's arithmetic (float32 IoU; RoiAlign sampling
 * and its "max" mode, which takes the max of the weighted corner values). */
#include "ops/op.h"

#include <math.h>
#include <stdlib.h>
#include <string.h>

static kiln_status no_memory(kiln_error *err, const struct kiln_node *n) {
    return kiln_op_fail(err, KILN_ERR_NO_MEMORY, n, "out of memory for a temporary buffer");
}

/* ======================================================================
 * NonMaxSuppression
 * ====================================================================== */

struct nms_box {
    float x0, y0, x1, y1, area;
};

struct nms_cand {
    float score;
    int64_t idx;
};

/* Highest score first; equal scores keep ascending box index. */
static int nms_cmp(const void *pa, const void *pb) {
    const struct nms_cand *a = pa, *b = pb;
    if (a->score != b->score) return a->score > b->score ? -1 : 1;
    return a->idx < b->idx ? -1 : a->idx > b->idx;
}

static struct nms_box nms_corners(const struct kiln_value *boxes, int64_t off, bool center) {
    float c[4];
    for (int i = 0; i < 4; i++) c[i] = (float)kiln_value_get_f64(boxes, off + i);
    struct nms_box b;
    if (center) {   /* [x_center, y_center, width, height] */
        b.x0 = c[0] - c[2] / 2; b.x1 = c[0] + c[2] / 2;
        b.y0 = c[1] - c[3] / 2; b.y1 = c[1] + c[3] / 2;
    } else {        /* [y1, x1, y2, x2], corners in either order */
        b.y0 = fminf(c[0], c[2]); b.y1 = fmaxf(c[0], c[2]);
        b.x0 = fminf(c[1], c[3]); b.x1 = fmaxf(c[1], c[3]);
    }
    b.area = (b.x1 - b.x0) * (b.y1 - b.y0);
    return b;
}

static bool nms_suppress(const struct nms_box *a, const struct nms_box *b, float thr) {
    float ix0 = fmaxf(a->x0, b->x0), ix1 = fminf(a->x1, b->x1);
    if (ix1 <= ix0) return false;
    float iy0 = fmaxf(a->y0, b->y0), iy1 = fminf(a->y1, b->y1);
    if (iy1 <= iy0) return false;
    float inter = (ix1 - ix0) * (iy1 - iy0);
    float uni = a->area + b->area - inter;
    if (inter <= 0 || a->area <= 0 || b->area <= 0 || uni <= 0) return false;
    return inter / uni > thr;
}

static kiln_status nms_check(const struct kiln_node *n, const struct kiln_value *const *in,
                             int n_in, kiln_error *err) {
    kiln_status st = kiln_op_check_arity(n, n_in, 2, 5, err);
    if (st) return st;
    const struct kiln_value *bx = in[0], *sc = in[1];
    if (!kiln_dtype_is_float(bx->dtype) || !kiln_dtype_is_float(sc->dtype))
        return kiln_op_fail(err, KILN_ERR_UNSUPPORTED, n, "expected float boxes and scores");
    if (bx->rank != 3 || bx->dims[2] != 4)
        return kiln_op_fail(err, KILN_ERR_SHAPE, n,
                            "expected boxes of shape [batches, boxes, 4], got rank %d", bx->rank);
    if (sc->rank != 3 || sc->dims[0] != bx->dims[0] || sc->dims[2] != bx->dims[1])
        return kiln_op_fail(err, KILN_ERR_SHAPE, n,
                            "expected scores of shape [%lld, classes, %lld]",
                            (long long)bx->dims[0], (long long)bx->dims[1]);
    if (n_in > 2 && in[2] && (!kiln_dtype_is_int(in[2]->dtype) || kiln_value_numel(in[2]) > 1))
        return kiln_op_fail(err, KILN_ERR_BAD_MODEL, n,
                            "expected max_output_boxes_per_class as an int64 scalar");
    for (int i = 3; i < n_in; i++)
        if (in[i] && (!kiln_dtype_is_float(in[i]->dtype) || kiln_value_numel(in[i]) > 1))
            return kiln_op_fail(err, KILN_ERR_BAD_MODEL, n, "expected input %d as a float scalar",
                                i);
    int64_t cpb = kiln_attr_int(n, "center_point_box", 0);
    if (cpb != 0 && cpb != 1)
        return kiln_op_fail(err, KILN_ERR_BAD_MODEL, n,
                            "expected center_point_box 0 or 1, got %lld", (long long)cpb);
    return KILN_OK;
}

/* Runs the selection; writes triples to sel when not NULL; *count gets the
 * number selected. */
static kiln_status nms_run(const struct kiln_node *n, const struct kiln_value *const *in,
                           int n_in, int64_t *sel, int64_t *count, kiln_error *err) {
    const struct kiln_value *bx = in[0], *sc = in[1];
    int64_t B = bx->dims[0], N = bx->dims[1], C = sc->dims[1];
    int64_t max_out = 0;
    float iou_thr = 0, score_thr = 0;
    bool use_score = false;
    if (n_in > 2 && in[2] && kiln_value_numel(in[2]) == 1) max_out = kiln_value_get_int(in[2], 0);
    if (n_in > 3 && in[3] && kiln_value_numel(in[3]) == 1)
        iou_thr = (float)kiln_value_get_f64(in[3], 0);
    if (n_in > 4 && in[4] && kiln_value_numel(in[4]) == 1) {
        score_thr = (float)kiln_value_get_f64(in[4], 0);
        use_score = true;
    }
    if (max_out > N) max_out = N;
    *count = 0;
    if (max_out <= 0 || B * C * N == 0) return KILN_OK;
    bool center = kiln_attr_int(n, "center_point_box", 0) == 1;
    struct nms_box *boxes = malloc((size_t)N * sizeof *boxes);
    struct nms_cand *cand = malloc((size_t)N * sizeof *cand);
    int64_t *picked = malloc((size_t)max_out * sizeof *picked);
    if (!boxes || !cand || !picked) {
        free(boxes);
        free(cand);
        free(picked);
        return no_memory(err, n);
    }
    int64_t total = 0;
    for (int64_t b = 0; b < B; b++) {
        for (int64_t i = 0; i < N; i++) boxes[i] = nms_corners(bx, (b * N + i) * 4, center);
        for (int64_t c = 0; c < C; c++) {
            int64_t nc = 0, np = 0;
            for (int64_t i = 0; i < N; i++) {
                float s = (float)kiln_value_get_f64(sc, (b * C + c) * N + i);
                if (!use_score || s > score_thr) cand[nc++] = (struct nms_cand){s, i};
            }
            qsort(cand, (size_t)nc, sizeof *cand, nms_cmp);
            for (int64_t k = 0; k < nc && np < max_out; k++) {
                bool keep = true;
                for (int64_t j = 0; j < np && keep; j++)
                    keep = !nms_suppress(&boxes[cand[k].idx], &boxes[picked[j]], iou_thr);
                if (!keep) continue;
                picked[np++] = cand[k].idx;
                if (sel) {
                    sel[total * 3] = b;
                    sel[total * 3 + 1] = c;
                    sel[total * 3 + 2] = cand[k].idx;
                }
                total++;
            }
        }
    }
    free(boxes);
    free(cand);
    free(picked);
    *count = total;
    return KILN_OK;
}

/* The output's length is the number of boxes kept, so infer has to run the
 * selection itself once all inputs are known. */
static kiln_status nms_infer(const struct kiln_node *n, const struct kiln_value *const *in,
                             int n_in, struct kiln_value *const *out, int n_out,
                             kiln_error *err) {
    kiln_status st = nms_check(n, in, n_in, err);
    if (st) return st;
    for (int i = 0; i < n_in; i++)
        if (in[i] && kiln_value_numel(in[i]) > 0 && !in[i]->data) return KILN_DYNAMIC;
    int64_t count;
    st = nms_run(n, in, n_in, NULL, &count, err);
    if (st) return st;
    int64_t dims[2] = {count, 3};
    kiln_value_set_shape(out[0], KILN_DTYPE_INT64, 2, dims);
    return KILN_OK;
}

static kiln_status nms_exec(const struct kiln_node *n, struct kiln_exec_ctx *ctx,
                            const struct kiln_value *const *in, int n_in,
                            struct kiln_value *const *out, int n_out, kiln_error *err) {
    int64_t count;
    /* count first: a mismatch with the planned shape would overrun the buffer */
    kiln_status st = nms_run(n, in, n_in, NULL, &count, err);
    if (st) return st;
    if (count != out[0]->dims[0])
        return kiln_op_fail(err, KILN_ERR_INTERNAL, n,
                            "output planned for %lld boxes, selection kept %lld",
                            (long long)out[0]->dims[0], (long long)count);
    if (count == 0) return KILN_OK;
    return nms_run(n, in, n_in, out[0]->data, &count, err);
}

/* ======================================================================
 * RoiAlign
 * ====================================================================== */

struct ra_attrs {
    int64_t oh, ow, sampling;
    double scale;
    bool half_pixel, max_mode;
};

static kiln_status ra_attrs_get(const struct kiln_node *n, struct ra_attrs *a,
                                kiln_error *err) {
    a->oh = kiln_attr_int(n, "output_height", 1);
    a->ow = kiln_attr_int(n, "output_width", 1);
    a->sampling = kiln_attr_int(n, "sampling_ratio", 0);
    a->scale = kiln_attr_float(n, "spatial_scale", 1.0f);
    /* opset 10 had no attribute and behaved as output_half_pixel */
    const char *ctm = kiln_attr_string(n, "coordinate_transformation_mode",
                                       n->opset >= 16 ? "half_pixel" : "output_half_pixel");
    const char *mode = kiln_attr_string(n, "mode", "avg");
    if (strcmp(ctm, "half_pixel") && strcmp(ctm, "output_half_pixel"))
        return kiln_op_fail(err, KILN_ERR_UNSUPPORTED, n,
                            "coordinate_transformation_mode '%s' is not supported", ctm);
    if (strcmp(mode, "avg") && strcmp(mode, "max"))
        return kiln_op_fail(err, KILN_ERR_UNSUPPORTED, n, "mode '%s' is not supported", mode);
    if (a->oh <= 0 || a->ow <= 0 || a->sampling < 0)
        return kiln_op_fail(err, KILN_ERR_BAD_MODEL, n,
                            "expected output_height/width > 0 and sampling_ratio >= 0");
    a->half_pixel = strcmp(ctm, "half_pixel") == 0;
    a->max_mode = strcmp(mode, "max") == 0;
    return KILN_OK;
}

static kiln_status ra_infer(const struct kiln_node *n, const struct kiln_value *const *in,
                            int n_in, struct kiln_value *const *out, int n_out,
                            kiln_error *err) {
    kiln_status st = kiln_op_check_arity(n, n_in, 3, 3, err);
    if (st) return st;
    const struct kiln_value *x = in[0], *rois = in[1], *bi = in[2];
    if (!kiln_dtype_is_float(x->dtype) || !kiln_dtype_is_float(rois->dtype))
        return kiln_op_fail(err, KILN_ERR_UNSUPPORTED, n, "expected float X and rois");
    if (!kiln_dtype_is_int(bi->dtype))
        return kiln_op_fail(err, KILN_ERR_BAD_MODEL, n, "expected int64 batch_indices, got %s",
                            kiln_dtype_name(bi->dtype));
    if (x->rank != 4)
        return kiln_op_fail(err, KILN_ERR_SHAPE, n, "expected X of rank 4, got rank %d",
                            x->rank);
    if (rois->rank != 2 || rois->dims[1] != 4 || bi->rank != 1 || bi->dims[0] != rois->dims[0])
        return kiln_op_fail(err, KILN_ERR_SHAPE, n,
                            "expected rois [num_rois, 4] and batch_indices [num_rois]");
    struct ra_attrs a;
    if ((st = ra_attrs_get(n, &a, err))) return st;
    int64_t dims[4] = {rois->dims[0], x->dims[1], a.oh, a.ow}, t;
    if (kiln_mul_overflow_i64(a.oh, a.ow, &t) || kiln_mul_overflow_i64(t, x->dims[1], &t) ||
        kiln_mul_overflow_i64(t, rois->dims[0], &t))
        return kiln_op_fail(err, KILN_ERR_LIMIT, n, "output of %lld x %lld x %lld x %lld overflows",
                            (long long)dims[0], (long long)dims[1], (long long)a.oh,
                            (long long)a.ow);
    kiln_value_set_shape(out[0], x->dtype, 4, dims);
    return KILN_OK;
}

/* One bilinear sample: four corner offsets and weights (weights 0 outside). */
struct ra_sample {
    int64_t pos[4];
    float w[4];
};

static void ra_sample_at(double y, double x, int64_t H, int64_t W, struct ra_sample *s) {
    if (y < -1.0 || y > (double)H || x < -1.0 || x > (double)W) {
        memset(s, 0, sizeof *s);
        return;
    }
    if (y < 0) y = 0;
    if (x < 0) x = 0;
    int64_t yl = (int64_t)y, xl = (int64_t)x, yh, xh;
    if (yl >= H - 1) { yh = yl = H - 1; y = (double)yl; } else yh = yl + 1;
    if (xl >= W - 1) { xh = xl = W - 1; x = (double)xl; } else xh = xl + 1;
    double ly = y - (double)yl, lx = x - (double)xl, hy = 1 - ly, hx = 1 - lx;
    s->pos[0] = yl * W + xl; s->pos[1] = yl * W + xh;
    s->pos[2] = yh * W + xl; s->pos[3] = yh * W + xh;
    s->w[0] = (float)(hy * hx); s->w[1] = (float)(hy * lx);
    s->w[2] = (float)(ly * hx); s->w[3] = (float)(ly * lx);
}

/* Sampling grid per bin: sampling_ratio, or ceil(roi extent / bins). */
static kiln_status ra_grid(const struct kiln_node *n, int64_t sampling, double extent,
                           int64_t bins, int64_t *g, kiln_error *err) {
    if (sampling > 0) {
        *g = sampling;
        return KILN_OK;
    }
    double v = ceil(extent / (double)bins);
    if (!(v < 65536.0))   /* also catches NaN from garbage rois */
        return kiln_op_fail(err, KILN_ERR_LIMIT, n, "roi needs a %g-point sampling grid", v);
    *g = v > 0 ? (int64_t)v : 0;
    return KILN_OK;
}

static kiln_status ra_exec(const struct kiln_node *n, struct kiln_exec_ctx *ctx,
                           const struct kiln_value *const *in, int n_in,
                           struct kiln_value *const *out, int n_out, kiln_error *err) {
    const struct kiln_value *x = in[0], *rois = in[1], *bidx = in[2];
    struct ra_attrs a;
    kiln_status st = ra_attrs_get(n, &a, err);
    if (st) return st;
    int64_t NB = x->dims[0], C = x->dims[1], H = x->dims[2], W = x->dims[3];
    int64_t R = rois->dims[0], P = a.oh * a.ow;
    if (kiln_value_numel(out[0]) == 0) return KILN_OK;
    if (H == 0 || W == 0)
        return kiln_op_fail(err, KILN_ERR_SHAPE, n, "expected X with non-empty H and W");
    const float *xf = x->data;
    float *xtmp = NULL;
    if (x->dtype != KILN_DTYPE_FLOAT) {   /* other float dtypes: widen once */
        int64_t ne = kiln_value_numel(x);
        xtmp = malloc((size_t)ne * sizeof *xtmp);
        if (!xtmp) return no_memory(err, n);
        for (int64_t i = 0; i < ne; i++) xtmp[i] = (float)kiln_value_get_f64(x, i);
        xf = xtmp;
    }
    double off = a.half_pixel ? 0.5 : 0.0;
    struct ra_sample *smp = NULL;
    size_t smp_cap = 0;
    for (int64_t r = 0; r < R && st == KILN_OK; r++) {
        int64_t b = kiln_value_get_int(bidx, r);
        if (b < 0 || b >= NB) {
            st = kiln_op_fail(err, KILN_ERR_INVALID_ARG, n,
                              "batch_indices[%lld] = %lld is outside [0, %lld)", (long long)r,
                              (long long)b, (long long)NB);
            break;
        }
        double x0 = kiln_value_get_f64(rois, r * 4) * a.scale - off;
        double y0 = kiln_value_get_f64(rois, r * 4 + 1) * a.scale - off;
        double rw = kiln_value_get_f64(rois, r * 4 + 2) * a.scale - off - x0;
        double rh = kiln_value_get_f64(rois, r * 4 + 3) * a.scale - off - y0;
        if (!a.half_pixel) {   /* malformed rois become 1x1 */
            rw = rw > 1.0 ? rw : 1.0;
            rh = rh > 1.0 ? rh : 1.0;
        }
        double bh = rh / (double)a.oh, bw = rw / (double)a.ow;
        int64_t gh = 0, gw = 0;
        if ((st = ra_grid(n, a.sampling, rh, a.oh, &gh, err))) break;
        if ((st = ra_grid(n, a.sampling, rw, a.ow, &gw, err))) break;
        int64_t need_i;
        if (kiln_mul_overflow_i64(P, gh * gw, &need_i) || need_i > ((int64_t)1 << 28)) {
            st = kiln_op_fail(err, KILN_ERR_LIMIT, n, "roi %lld needs too many sample points",
                              (long long)r);
            break;
        }
        size_t need = (size_t)need_i;
        if (need > smp_cap) {
            struct ra_sample *ns = realloc(smp, need * sizeof *ns);
            if (!ns) { st = no_memory(err, n); break; }
            smp = ns;
            smp_cap = need;
        }
        size_t k = 0;
        for (int64_t ph = 0; ph < a.oh; ph++)
            for (int64_t pw = 0; pw < a.ow; pw++)
                for (int64_t iy = 0; iy < gh; iy++) {
                    double yy = y0 + (double)ph * bh + ((double)iy + 0.5) * bh / (double)gh;
                    for (int64_t ix = 0; ix < gw; ix++) {
                        double xx = x0 + (double)pw * bw + ((double)ix + 0.5) * bw / (double)gw;
                        ra_sample_at(yy, xx, H, W, &smp[k++]);
                    }
                }
        int64_t G = gh * gw;
        float cnt = (float)(G > 1 ? G : 1);
#pragma omp parallel for if (C * P * G > (1 << 15)) schedule(static)
        for (int64_t c = 0; c < C; c++) {
            const float *img = xf + (b * C + c) * H * W;
            float *y = (float *)out[0]->data + (r * C + c) * P;
            for (int64_t p = 0; p < P; p++) {
                const struct ra_sample *s = smp + p * G;
                float acc = 0;
                for (int64_t g = 0; g < G; g++) {
                    float v0 = s[g].w[0] * img[s[g].pos[0]], v1 = s[g].w[1] * img[s[g].pos[1]];
                    float v2 = s[g].w[2] * img[s[g].pos[2]], v3 = s[g].w[3] * img[s[g].pos[3]];
                    if (a.max_mode) {
                        float v = fmaxf(fmaxf(v0, v1), fmaxf(v2, v3));
                        acc = g == 0 ? v : fmaxf(acc, v);
                    } else {
                        acc += v0 + v1 + v2 + v3;
                    }
                }
                y[p] = a.max_mode ? acc : acc / cnt;
            }
        }
    }
    free(smp);
    free(xtmp);
    return st;
}

/* RoiAlign writes float32 through out->data directly, so other output
 * dtypes are computed into a float32 scratch and converted. */
static kiln_status ra_exec_any(const struct kiln_node *n, struct kiln_exec_ctx *ctx,
                               const struct kiln_value *const *in, int n_in,
                               struct kiln_value *const *out, int n_out, kiln_error *err) {
    if (out[0]->dtype == KILN_DTYPE_FLOAT) return ra_exec(n, ctx, in, n_in, out, n_out, err);
    int64_t ne = kiln_value_numel(out[0]);
    struct kiln_value tmp = *out[0];
    tmp.dtype = KILN_DTYPE_FLOAT;
    tmp.data = malloc((size_t)(ne ? ne : 1) * sizeof(float));
    if (!tmp.data) return no_memory(err, n);
    tmp.nbytes = (size_t)ne * sizeof(float);
    struct kiln_value *tp = &tmp;
    kiln_status st = ra_exec(n, ctx, in, n_in, &tp, 1, err);
    for (int64_t i = 0; st == KILN_OK && i < ne; i++)
        kiln_value_set_f64(out[0], i, ((float *)tmp.data)[i]);
    free(tmp.data);
    return st;
}

const struct kiln_op_def kiln_ops_detect[] = {
    {"NonMaxSuppression", NULL, 10, 0, nms_infer, nms_exec, NULL, NULL},
    {"RoiAlign", NULL, 10, 0, ra_infer, ra_exec_any, NULL, NULL},
    {0},
};
