/* quantize.c — the int8 and bf16 graph rewrites (see quantize.h).
 *
 * A rewritten node keeps its place, its output value, its convolution
 * attributes and its fused activation; only its op, inputs and weights
 * change. The float weights it no longer reads are freed by a final DCE.
 *
 * Bias correction (int8): rounding the weights shifts each output channel's
 * expected value by sum((Wq * s - W) * E[x]); with the channel means of x
 * recorded during calibration, that shift is subtracted from the bias (ReLU
 * activations have large means, so the shift is far from zero).
 */
#include "passes/quantize.h"
#include "base/status.h"
#include "ops/op.h"
#include "passes/passes.h"

#include <math.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

static const struct kiln_value_info *const_input(const struct kiln_graph *g,
                                                 const struct kiln_node *n, int i) {
    if (i >= n->n_inputs || n->inputs[i] < 0) return NULL;
    const struct kiln_value_info *vi = &g->values[n->inputs[i]];
    return vi->is_const && vi->v.data ? vi : NULL;
}

static bool float_const(const struct kiln_value_info *vi) {
    return vi && vi->v.dtype == KILN_DTYPE_FLOAT;
}

bool kiln_quant_candidate(const struct kiln_graph *g, const struct kiln_node *n) {
    if (*n->domain || !n->op || n->n_outputs != 1 || n->n_inputs < 2 || n->inputs[0] < 0)
        return false;
    if (g->values[n->inputs[0]].is_const) return false;   /* folded at plan time anyway */
    const struct kiln_value_info *w = const_input(g, n, 1);
    if (!float_const(w)) return false;
    if (!strcmp(n->op_type, "Conv")) {
        /* a fused residual (fuse-residual pass) is input 3 */
        if (n->sum_input && (n->sum_input != 3 || n->n_inputs != 4)) return false;
        if (n->n_inputs > (n->sum_input ? 4 : 3) || w->v.rank < 3 || w->v.rank > 5) return false;
        if (n->n_inputs >= 3 && n->inputs[2] >= 0) {
            const struct kiln_value_info *b = const_input(g, n, 2);
            if (!float_const(b) || kiln_value_numel(&b->v) != w->v.dims[0]) return false;
        }
        return true;
    }
    if (!strcmp(n->op_type, "MatMul") && n->sum_input) {
        /* a bias fused by fuse-matmul-bias: input 2, [N] like Gemm's C */
        const struct kiln_value_info *c = const_input(g, n, 2);
        return n->sum_input == 2 && n->n_inputs == 3 && w->v.rank == 2 && float_const(c) &&
               kiln_value_numel(&c->v) == w->v.dims[1];
    }
    if (n->sum_input) return false;
    if (!strcmp(n->op_type, "Gemm")) {
        if (w->v.rank != 2 || kiln_attr_int(n, "transA", 0) != 0 ||
            kiln_attr_float(n, "alpha", 1.0f) != 1.0f)
            return false;
        int64_t N = kiln_attr_int(n, "transB", 0) ? w->v.dims[0] : w->v.dims[1];
        if (n->n_inputs > 2 && n->inputs[2] >= 0) {
            const struct kiln_value_info *c = const_input(g, n, 2);
            if (!float_const(c) || kiln_attr_float(n, "beta", 1.0f) != 1.0f ||
                kiln_value_numel(&c->v) != N || c->v.rank > 2 || (c->v.rank == 2 && c->v.dims[0] != 1))
                return false;
        }
        return true;
    }
    if (!strcmp(n->op_type, "MatMul")) return n->n_inputs == 2 && w->v.rank == 2;
    return false;
}

/* ---- small graph-editing helpers ---- */

static int32_t add_const(struct kiln_graph *g, const struct kiln_node *n, const char *suffix,
                         kiln_dtype dt, int32_t rank, const int64_t *dims, void *data) {
    char name[512];
    snprintf(name, sizeof name, "%s/%s", n->name, suffix);
    struct kiln_value v = {.dtype = dt, .rank = rank, .data = data};
    for (int32_t i = 0; i < rank; i++) v.dims[i] = dims[i];
    if (!kiln_value_bytes(&v, &v.nbytes)) return -1;
    return kiln_graph_add_const(g, name, v);
}

static bool set_inputs(struct kiln_node *n, const int32_t *ids, int32_t count) {
    int32_t *in = malloc((size_t)count * sizeof *in);
    if (!in) return false;
    memcpy(in, ids, (size_t)count * sizeof *in);
    free(n->inputs);
    n->inputs = in;
    n->n_inputs = count;
    return true;
}

static void attr_clear(struct kiln_attr *a) {
    free(a->name);
    free(a->s);
    free(a->t.data);
    free(a->floats);
    free(a->ints);
    for (int64_t i = 0; a->strings && i < a->n; i++) free(a->strings[i]);
    free(a->strings);
    kiln_graph_free(a->g);
}

/* Drops every attribute not in keep (NULL-terminated; NULL keeps all). */
static void keep_attrs(struct kiln_node *n, const char *const *keep) {
    if (!keep) return;
    int32_t j = 0;
    for (int32_t i = 0; i < n->n_attrs; i++) {
        bool k = false;
        for (const char *const *p = keep; *p; p++) k |= !strcmp(n->attrs[i].name, *p);
        if (k) n->attrs[j++] = n->attrs[i];
        else attr_clear(&n->attrs[i]);
    }
    n->n_attrs = j;
}

static bool add_attr(struct kiln_node *n, const char *name, kiln_attr_type t, float f, int64_t i) {
    struct kiln_attr *na = realloc(n->attrs, (size_t)(n->n_attrs + 1) * sizeof *na);
    if (!na) return false;
    n->attrs = na;
    struct kiln_attr *a = &na[n->n_attrs];
    memset(a, 0, sizeof *a);
    if (!(a->name = strdup(name))) return false;
    a->type = t;
    a->f = f;
    a->i = i;
    n->n_attrs++;
    return true;
}

static bool set_op(struct kiln_node *n, const char *op_type) {
    char *t = strdup(op_type), *d = strdup("kiln");
    if (!t || !d) {
        free(t);
        free(d);
        return false;
    }
    free(n->op_type);
    free(n->domain);
    n->op_type = t;
    n->domain = d;
    n->opset = 1;
    n->op = kiln_op_lookup("kiln", op_type, 1);
    return n->op != NULL;
}

/* The weight of a Gemm/MatMul as [K, N] floats (malloc'ed). */
static float *weights_kn(const struct kiln_node *n, const struct kiln_value *w, int64_t *K,
                         int64_t *N) {
    bool trans = !strcmp(n->op_type, "Gemm") && kiln_attr_int(n, "transB", 0);
    *K = trans ? w->dims[1] : w->dims[0];
    *N = trans ? w->dims[0] : w->dims[1];
    float *out = malloc((size_t)(*K * *N > 0 ? *K * *N : 1) * sizeof *out);
    if (!out) return NULL;
    const float *src = w->data;
    for (int64_t k = 0; k < *K; k++)
        for (int64_t j = 0; j < *N; j++) out[k * *N + j] = trans ? src[j * *K + k] : src[k * *N + j];
    return out;
}

/* Symmetric per-channel quantization: channel c is the elements with
 * index / inner % C == c (inner = 1 for columns of [K, N], the product of the
 * other dims for rows of [M, ...]); its scale maps max|w| to wmax. (Clipping
 * the largest weights at the least squared error measured worse end to end.) */
static void quantize_weights(const float *w, int64_t count, int64_t C, int64_t inner, int wmax,
                             int8_t *q, float *scales) {
    for (int64_t c = 0; c < C; c++) scales[c] = 0.0f;
    for (int64_t i = 0; i < count; i++) {
        int64_t c = (i / inner) % C;
        float a = fabsf(w[i]);
        if (a > scales[c]) scales[c] = a;
    }
    for (int64_t c = 0; c < C; c++)
        scales[c] = scales[c] > 0.0f && isfinite(scales[c]) ? scales[c] / (float)wmax : 1.0f;
    for (int64_t i = 0; i < count; i++) {
        float v = rintf(w[i] / scales[(i / inner) % C]);
        q[i] = (int8_t)(v > (float)wmax ? wmax : v < (float)-wmax ? -wmax : isnan(v) ? 0 : v);
    }
}

/* u8 scale and zero point over [0, qmax] for a calibrated range (widened to include 0). */
static void act_params(struct kiln_calib_range r, int32_t qmax, float *scale, int32_t *zp) {
    float lo = r.lo < 0.0f ? r.lo : 0.0f, hi = r.hi > 0.0f ? r.hi : 0.0f;
    if (!(hi - lo > 1e-30f) || !isfinite(hi - lo)) {
        *scale = 1.0f;
        *zp = 0;
        return;
    }
    *scale = (hi - lo) / (float)qmax;
    float z = rintf(-lo / *scale);
    *zp = z < 0.0f ? 0 : z > (float)qmax ? qmax : (int32_t)z;
}

static float bias_unchanged_;
#define BIAS_UNCHANGED (&bias_unchanged_)

/* The bias minus the shift weight rounding causes at the input's channel
 * means (see the top of the file): a new [C] array, BIAS_UNCHANGED when the
 * means do not fit the weights, or NULL when out of memory. */
static float *bias_corrected(const struct kiln_graph *g, int32_t bias, bool conv, const float *wf,
                             const int8_t *q, const float *s, const struct kiln_value *w,
                             int64_t K, int64_t N, const struct kiln_calib_range *r) {
    int64_t C = conv ? w->dims[0] : N;
    int64_t cg = conv ? w->dims[1] : K, ksz = 1, G = 1;
    if (conv) {
        for (int32_t i = 2; i < w->rank; i++) ksz *= w->dims[i];
        if (cg < 1 || r->n_mean % cg || (C % (r->n_mean / cg))) return BIAS_UNCHANGED;
        G = r->n_mean / cg;
    } else if (r->n_mean != K) {
        return BIAS_UNCHANGED;
    }
    float *b = calloc((size_t)(C ? C : 1), sizeof *b);
    if (!b) return NULL;
    if (bias >= 0) memcpy(b, g->values[bias].v.data, (size_t)C * sizeof *b);
    int64_t Mg = C / G;
    for (int64_t m = 0; m < C; m++) {
        double shift = 0;
        if (conv) {
            int64_t grp = m / Mg;
            for (int64_t ci = 0; ci < cg; ci++) {
                double mean = r->mean[grp * cg + ci];
                for (int64_t k = 0; k < ksz; k++) {
                    int64_t i = (m * cg + ci) * ksz + k;
                    shift += ((double)q[i] * s[m] - wf[i]) * mean;
                }
            }
        } else {
            for (int64_t k = 0; k < K; k++)
                shift += ((double)q[k * N + m] * s[m] - wf[k * N + m]) * r->mean[k];
        }
        b[m] -= (float)shift;
    }
    return b;
}

static const char *const conv_attrs[] = {"auto_pad", "dilations", "group", "kernel_shape",
                                         "pads", "strides", NULL};
static const char *const no_attrs[] = {NULL};

/* Rewrites one candidate. bf16: ranges unused. */
static kiln_status rewrite(struct kiln_graph *g, int32_t ni, bool bf16, struct kiln_calib_range r,
                           int wmax, int32_t act_max, bool correct_bias, kiln_error *err) {
    struct kiln_node *n = &g->nodes[ni];
    const struct kiln_value w = g->values[n->inputs[1]].v;   /* copy: values may move */
    bool conv = !strcmp(n->op_type, "Conv");
    int32_t bias = n->n_inputs > 2 ? n->inputs[2] : -1;
    int32_t residual = conv && n->sum_input ? n->inputs[n->sum_input] : -1;
    int32_t ids[5];
    int32_t count = 0;
    ids[count++] = n->inputs[0];
    if (!conv && bias >= 0) {
        /* Gemm's C as a plain [N] vector */
        const struct kiln_value *c = &g->values[bias].v;
        float *b = malloc(c->nbytes ? c->nbytes : 1);
        if (!b) return kiln_fail(err, KILN_ERR_NO_MEMORY, "quantize: out of memory");
        memcpy(b, c->data, c->nbytes);
        int64_t nb = kiln_value_numel(c);
        bias = add_const(g, n, "bias", KILN_DTYPE_FLOAT, 1, &nb, b);
        n = &g->nodes[ni];
        if (bias < 0) {
            free(b);
            return kiln_fail(err, KILN_ERR_NO_MEMORY, "quantize: out of memory");
        }
    }
    int64_t K = 0, N = 0;
    float *kn = conv ? NULL : weights_kn(n, &w, &K, &N);
    if (!conv && !kn) return kiln_fail(err, KILN_ERR_NO_MEMORY, "quantize: out of memory");
    const float *wf = conv ? w.data : kn;
    int64_t cnt = kiln_value_numel(&w);
    int64_t wdims[KILN_MAX_RANK];
    int32_t wrank = conv ? w.rank : 2;
    for (int32_t i = 0; i < w.rank; i++) wdims[i] = w.dims[i];
    if (!conv) wdims[0] = K, wdims[1] = N;
    int32_t wid, sid = -1;
    if (bf16) {
        uint16_t *h = malloc((size_t)(cnt ? cnt : 1) * sizeof *h);
        if (!h) {
            free(kn);
            return kiln_fail(err, KILN_ERR_NO_MEMORY, "bf16: out of memory");
        }
        for (int64_t i = 0; i < cnt; i++) h[i] = kiln_f32_to_bf16(wf[i]);
        wid = add_const(g, n, "w_bf16", KILN_DTYPE_BFLOAT16, wrank, wdims, h);
        if (wid < 0) free(h);
    } else {
        int64_t C = conv ? w.dims[0] : N, inner = conv ? cnt / (C ? C : 1) : 1;
        int8_t *q = malloc((size_t)(cnt ? cnt : 1));
        float *s = malloc((size_t)(C ? C : 1) * sizeof *s);
        if (!q || !s) {
            free(q);
            free(s);
            free(kn);
            return kiln_fail(err, KILN_ERR_NO_MEMORY, "quantize: out of memory");
        }
        quantize_weights(wf, cnt, C, inner, wmax, q, s);
        if (r.mean && correct_bias) {
            float *b = bias_corrected(g, bias, conv, wf, q, s, &w, K, N, &r);
            if (!b) {
                free(q);
                free(s);
                free(kn);
                return kiln_fail(err, KILN_ERR_NO_MEMORY, "quantize: out of memory");
            }
            if (b != BIAS_UNCHANGED) {
                int64_t nb = C;
                bias = add_const(g, n, "bias_corrected", KILN_DTYPE_FLOAT, 1, &nb, b);
                if (bias < 0) {
                    free(b);
                    free(q);
                    free(s);
                    free(kn);
                    return kiln_fail(err, KILN_ERR_NO_MEMORY, "quantize: out of memory");
                }
            }
        }
        wid = add_const(g, n, "w_int8", KILN_DTYPE_INT8, wrank, wdims, q);
        if (wid < 0) free(q);
        n = &g->nodes[ni];
        sid = wid < 0 ? -1 : add_const(g, n, "w_scale", KILN_DTYPE_FLOAT, 1, &C, s);
        if (sid < 0) free(s);
    }
    free(kn);
    n = &g->nodes[ni];
    if (wid < 0 || (!bf16 && sid < 0)) return kiln_fail(err, KILN_ERR_NO_MEMORY, "quantize: out of memory");
    ids[count++] = wid;
    if (!bf16) ids[count++] = sid;
    if (bias >= 0 || residual >= 0) ids[count++] = bias;
    if (residual >= 0) {
        /* QConv / Bf16Conv: the residual after an (omitted or not) bias */
        ids[count] = residual;
        n->sum_input = count++;
    } else {
        n->sum_input = 0;   /* a MatMul's fused bias became the QMatMul's plain bias */
    }
    if (!set_inputs(n, ids, count)) return kiln_fail(err, KILN_ERR_NO_MEMORY, "quantize: out of memory");
    keep_attrs(n, conv ? conv_attrs : no_attrs);
    bool ok = true;
    if (!bf16) {
        float xs;
        int32_t zp;
        act_params(r, act_max, &xs, &zp);
        ok = add_attr(n, "x_scale", KILN_ATTR_FLOAT, xs, 0) &&
             add_attr(n, "x_zero_point", KILN_ATTR_INT, 0.0f, zp) &&
             (act_max == 255 || add_attr(n, "x_qmax", KILN_ATTR_INT, 0.0f, act_max));
    }
    const char *op = conv ? (bf16 ? "Bf16Conv" : "QConv") : (bf16 ? "Bf16MatMul" : "QMatMul");
    if (!ok || !set_op(n, op))
        return kiln_fail(err, KILN_ERR_NO_MEMORY, "quantize: rewriting node '%s'", n->name);
    return KILN_OK;
}

static kiln_status rewrite_all(struct kiln_graph *g, const struct kiln_calib_range *ranges,
                               const struct kiln_quant_options *o, bool bf16,
                               struct kiln_quant_stats *st, kiln_error *err) {
    struct kiln_quant_stats local;
    if (!st) st = &local;
    memset(st, 0, sizeof *st);
    int32_t n_nodes = g->n_nodes;
    for (int32_t i = 0; i < n_nodes; i++) {
        struct kiln_node *n = &g->nodes[i];
        if (!kiln_quant_candidate(g, n)) continue;
        bool conv = !strcmp(n->op_type, "Conv");
        if (!bf16 && !conv && !o->matmuls) continue;
        if (bf16 && conv && n->sum_input) continue;   /* Bf16Conv has no fused residual */
        bool excluded = false;
        for (const char *const *e = o->exclude; e && *e; e++) excluded |= !strcmp(*e, n->name);
        if (conv && o->skip_depthwise && kiln_attr_int(n, "group", 1) > 1 &&
            g->values[n->inputs[1]].v.dims[1] == 1)
            excluded = true;
        if (excluded) {
            st->excluded++;
            continue;
        }
        struct kiln_calib_range r = {1.0f, 0.0f};
        if (!bf16) {
            r = ranges[n->inputs[0]];
            if (!(r.lo <= r.hi) || !isfinite(r.lo) || !isfinite(r.hi)) {
                st->skipped++;
                continue;
            }
        }
        kiln_status s = rewrite(g, i, bf16, r, o ? o->weight_max : 127,
                                o && o->act_max ? o->act_max : 255, o && !o->no_bias_correction, err);
        if (s) return s;
        if (conv) st->convs++;
        else st->matmuls++;
    }
    struct kiln_pass_stats ps = {.nodes_before = g->n_nodes};
    return kiln_pass_dce(g, &ps, err);
}

kiln_status kiln_quantize_int8(struct kiln_graph *g, const struct kiln_calib_range *ranges,
                               const struct kiln_quant_options *o, struct kiln_quant_stats *st,
                               kiln_error *err) {
    kiln_error_clear(err);
    if (!g || !ranges || !o || o->weight_max < 1 || o->weight_max > 127 || o->act_max < 0 ||
        o->act_max > 255)
        return kiln_fail(err, KILN_ERR_INVALID_ARG, "kiln_quantize_int8: bad arguments");
    return rewrite_all(g, ranges, o, false, st, err);
}

kiln_status kiln_convert_bf16(struct kiln_graph *g, struct kiln_quant_stats *st, kiln_error *err) {
    kiln_error_clear(err);
    if (!g) return kiln_fail(err, KILN_ERR_INVALID_ARG, "kiln_convert_bf16: NULL graph");
    struct kiln_quant_options o = {.weight_max = 127, .matmuls = 1};
    return rewrite_all(g, NULL, &o, true, st, err);
}
