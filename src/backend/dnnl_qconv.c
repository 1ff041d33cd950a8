/* dnnl_qconv.c — oneDNN (v2 C API) int8 and bf16 convolution and matmul
 * (see dnnl_qconv.h).
 *
 * oneDNN v2 semantics used here: dst = output_scale * (sum + bias) [post-ops]
 * + dst_zero_point, the sum taken over (src - src_zero_point) * weights, with
 * padding counting as the real value 0. Quantizing reorders compute
 * dst = round(output_scale * src) + dst_zero_point, saturated.
 */
#include "backend/dnnl_qconv.h"
#include "backend/dnnl.h"
#include "base/status.h"
#include "ir/graph.h"

#include <math.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

struct kiln_dnnl_qconv {
    dnnl_primitive_t prim, src_reorder, dst_reorder;
    dnnl_stream_t    stream;
    dnnl_memory_t    usrc, csrc, cdst, udst, wmem, bias, scratch;
    void  *src_buf, *dst_buf, *wbuf, *bias_buf, *scratch_buf;   /* owned */
    char   impl[96];
};

struct kiln_dnnl_qmatmul {
    dnnl_primitive_t prim, src_reorder;
    dnnl_stream_t    stream;
    dnnl_memory_t    usrc, csrc, dst, wmem, bias, scratch;
    void  *src_buf, *wbuf, *bias_buf, *scratch_buf;
    char   impl[96];
};

int kiln_cpu_has_int8_dot(void) {
    const char *f = kiln_cpu_features_str();
    return strstr(f, "avx512vnni") || strstr(f, "amx-int8");
}

int kiln_cpu_has_bf16(void) {
    const char *f = kiln_cpu_features_str();
    return strstr(f, "avx512bf16") || strstr(f, "amx-bf16");
}

/* layout: enum kiln_layout (ir/graph.h) */
static dnnl_format_tag_t act_tag(int32_t nsp, int32_t layout) {
    if (layout == KILN_LAYOUT_CHANNELS_LAST) return nsp == 1 ? dnnl_nwc : nsp == 2 ? dnnl_nhwc : dnnl_ndhwc;
    if (layout == KILN_LAYOUT_BLOCKED8) return nsp == 1 ? dnnl_nCw8c : nsp == 2 ? dnnl_nChw8c : dnnl_nCdhw8c;
    return nsp == 1 ? dnnl_ncw : nsp == 2 ? dnnl_nchw : dnnl_ncdhw;
}

static dnnl_data_type_t dt_of(kiln_dtype t) {
    switch (t) {
    case KILN_DTYPE_UINT8: return dnnl_u8;
    case KILN_DTYPE_INT8: return dnnl_s8;
    case KILN_DTYPE_BFLOAT16: return dnnl_bf16;
    default: return dnnl_f32;
    }
}

static kiln_status dnnl_fail(kiln_error *err, dnnl_status_t st, const char *what) {
    return kiln_fail(err, st == dnnl_out_of_memory ? KILN_ERR_NO_MEMORY : KILN_ERR_INTERNAL,
                     "oneDNN %s: %s", what, kiln_dnnl_status_str(st));
}

#define DN(call, what)                                                   \
    do {                                                                 \
        dnnl_status_t st_ = (call);                                      \
        if (st_ != dnnl_success) {                                       \
            rc = dnnl_fail(err, st_, what);                              \
            goto fail;                                                   \
        }                                                                \
    } while (0)

static void copy_impl(dnnl_primitive_desc_t pd, const char *prefix, char *dst, size_t n) {
    const char *s = NULL;
    snprintf(dst, n, "dnnl:%s", prefix);
    if (dnnl_primitive_desc_query(pd, dnnl_query_impl_info_str, 0, &s) == dnnl_success && s)
        snprintf(dst, n, "dnnl:%s:%s", prefix, s);
}

static bool is_ref_impl(dnnl_primitive_desc_t pd) {
    const char *s = NULL;
    return dnnl_primitive_desc_query(pd, dnnl_query_impl_info_str, 0, &s) != dnnl_success || !s ||
           strncmp(s, "ref", 3) == 0;
}

/* A reorder from `from` to `to`, quantizing with scale/zero point when asked
 * (scale 0: none). NULL pd when oneDNN cannot do it. */
static dnnl_status_t make_reorder(const dnnl_memory_desc_t *from, const dnnl_memory_desc_t *to,
                                  float scale, int32_t zp, dnnl_primitive_t *out) {
    dnnl_engine_t eng = kiln_dnnl_engine();
    dnnl_primitive_attr_t attr = NULL;
    dnnl_primitive_desc_t rpd = NULL;
    dnnl_status_t st = dnnl_primitive_attr_create(&attr);
    if (st == dnnl_success && scale != 0.0f) st = dnnl_primitive_attr_set_output_scales(attr, 1, 0, &scale);
    if (st == dnnl_success && zp != 0) st = dnnl_primitive_attr_set_zero_points(attr, DNNL_ARG_DST, 1, 0, &zp);
    if (st == dnnl_success) st = dnnl_reorder_primitive_desc_create(&rpd, from, eng, to, eng, attr);
    if (st == dnnl_success) st = dnnl_primitive_create(out, rpd);
    if (rpd) dnnl_primitive_desc_destroy(rpd);
    if (attr) dnnl_primitive_attr_destroy(attr);
    return st;
}

/* Without VNNI, u8 x s8 products are summed in pairs into saturating 16-bit
 * lanes: keep |w| <= 64 (2 * 255 * 64 < 32768) by re-quantizing to 7 bits.
 * Returns a malloc'ed copy of weights and scales when it had to, else NULL. */
static int8_t *fit_weights_7bit(const int8_t *w, int64_t n, int64_t M, const float *scales,
                                int64_t n_scales, float **scales_out, bool *oom) {
    *scales_out = NULL;
    *oom = false;
    int maxabs = 0;
    for (int64_t i = 0; i < n; i++) {
        int a = w[i] < 0 ? -w[i] : w[i];
        if (a > maxabs) maxabs = a;
    }
    if (maxabs <= 64) return NULL;
    int8_t *nw = malloc((size_t)(n ? n : 1));
    float *ns = malloc((size_t)n_scales * sizeof *ns);
    if (!nw || !ns) {
        free(nw);
        free(ns);
        *oom = true;
        return NULL;
    }
    for (int64_t i = 0; i < n; i++) nw[i] = (int8_t)lrintf((float)w[i] * 0.5f);
    for (int64_t i = 0; i < n_scales; i++) ns[i] = scales[i] * 2.0f;
    (void)M;
    *scales_out = ns;
    return nw;
}

void kiln_dnnl_qconv_free(void *p) {
    struct kiln_dnnl_qconv *q = p;
    if (!q) return;
    dnnl_primitive_t prims[] = {q->prim, q->src_reorder, q->dst_reorder};
    for (size_t i = 0; i < KILN_ARRAY_LEN(prims); i++)
        if (prims[i]) dnnl_primitive_destroy(prims[i]);
    if (q->stream) dnnl_stream_destroy(q->stream);
    dnnl_memory_t mems[] = {q->usrc, q->csrc, q->cdst, q->udst, q->wmem, q->bias, q->scratch};
    for (size_t i = 0; i < KILN_ARRAY_LEN(mems); i++)
        if (mems[i]) dnnl_memory_destroy(mems[i]);
    free(q->src_buf);
    free(q->dst_buf);
    free(q->wbuf);
    free(q->bias_buf);
    free(q->scratch_buf);
    free(q);
}

const char *kiln_dnnl_qconv_impl(const struct kiln_dnnl_qconv *q) { return q->impl; }

kiln_status kiln_dnnl_qconv_create(const struct kiln_dnnl_qconv_shape *sh, const void *weights,
                                   const float *bias, struct kiln_wcache *cache,
                                   struct kiln_dnnl_qconv **out, kiln_error *err) {
    kiln_status rc = KILN_OK;
    *out = NULL;
    dnnl_engine_t eng = kiln_dnnl_engine();
    const bool int8 = sh->kind == KILN_LOWP_INT8;
    if (!eng || !weights || sh->nsp < 1 || sh->nsp > KILN_DNNL_MAX_SP || sh->G < 1 ||
        sh->C % sh->G || sh->M % sh->G || (sh->has_bias && !bias))
        return KILN_OK;
    if (int8) {
        if ((sh->q_dt != KILN_DTYPE_UINT8 && sh->q_dt != KILN_DTYPE_INT8) ||
            (sh->src_dt != KILN_DTYPE_FLOAT && sh->src_dt != sh->q_dt) ||
            (sh->dst_dt != KILN_DTYPE_FLOAT && sh->dst_dt != KILN_DTYPE_UINT8 &&
             sh->dst_dt != KILN_DTYPE_INT8) ||
            !sh->w_scales || (sh->n_w_scales != 1 && sh->n_w_scales != sh->M) ||
            !(sh->x_scale > 0.0f) || !isfinite(sh->x_scale) ||
            (sh->dst_dt != KILN_DTYPE_FLOAT && (!(sh->y_scale > 0.0f) || !isfinite(sh->y_scale) ||
                                                 sh->act != KILN_ACT_NONE)))
            return KILN_OK;
        for (int64_t i = 0; i < sh->n_w_scales; i++)
            if (!(sh->w_scales[i] > 0.0f) || !isfinite(sh->w_scales[i])) return KILN_OK;
    }
    const int32_t nsp = sh->nsp;
    const int64_t G = sh->G, Cg = sh->C / sh->G, Mg = sh->M / sh->G;
    int64_t ksz = 1;
    for (int32_t i = 0; i < nsp; i++) ksz *= sh->k[i];

    dnnl_dims_t sdims = {sh->N, sh->C}, ddims = {sh->N, sh->M}, wdims, wstr, bdims = {sh->M};
    dnnl_dims_t strides, dil, pl, pr;
    for (int32_t i = 0; i < nsp; i++) {
        sdims[2 + i] = sh->in[i];
        ddims[2 + i] = sh->out[i];
        strides[i] = sh->s[i];
        dil[i] = sh->d[i] - 1;
        pl[i] = sh->pb[i];
        pr[i] = sh->pe[i];
        if (pl[i] < 0 || pr[i] < 0) return KILN_OK;
    }
    int32_t wnd = 0, gofs = G > 1 ? 1 : 0;
    if (G > 1) wdims[wnd++] = G;
    wdims[wnd++] = Mg;
    wdims[wnd++] = Cg;
    for (int32_t i = 0; i < nsp; i++) wdims[wnd++] = sh->k[i];
    {
        int64_t st = 1;
        for (int32_t i = nsp - 1; i >= 0; i--) {
            wstr[gofs + 2 + i] = st;
            st *= sh->k[i];
        }
        wstr[gofs + 1] = ksz;
        wstr[gofs + 0] = Cg * ksz;
        if (G > 1) wstr[0] = Cg * Mg * ksz;
    }
    const int64_t wn = sh->M * Cg * ksz;

    /* int8: fit the weights to what this CPU multiplies without saturating */
    const void *wsrc = weights;
    const float *wscales = sh->w_scales;
    int8_t *w7 = NULL;
    float *s7 = NULL;
    if (int8 && sh->q_dt == KILN_DTYPE_UINT8 && !kiln_cpu_has_int8_dot()) {
        bool oom;
        w7 = fit_weights_7bit(weights, wn, sh->M, sh->w_scales, sh->n_w_scales, &s7, &oom);
        if (oom) return kiln_fail(err, KILN_ERR_NO_MEMORY, "oneDNN int8 conv: weights");
        if (w7) wsrc = w7, wscales = s7;
    }

    dnnl_data_type_t wdt = int8 ? dnnl_s8 : dnnl_bf16;
    dnnl_data_type_t cdt_src = int8 ? dt_of(sh->q_dt) : dnnl_bf16;
    dnnl_data_type_t udt_src = int8 ? dt_of(sh->src_dt) : dnnl_f32;
    dnnl_data_type_t ddt = int8 ? dt_of(sh->dst_dt) : dnnl_f32;
    /* int8 needs channels-last; bf16 lets oneDNN pick the source layout */
    dnnl_format_tag_t csrc_tag = int8 ? act_tag(nsp, KILN_LAYOUT_CHANNELS_LAST) : dnnl_format_tag_any;
    dnnl_format_tag_t cdst_tag = int8 ? act_tag(nsp, KILN_LAYOUT_CHANNELS_LAST) : act_tag(nsp, sh->dst_cl);
    dnnl_memory_desc_t usrc_md, csrc_md, cdst_md, udst_md, w_any, w_user, b_md;
    if (dnnl_memory_desc_init_by_tag(&usrc_md, nsp + 2, sdims, udt_src, act_tag(nsp, sh->src_cl)) ||
        dnnl_memory_desc_init_by_tag(&csrc_md, nsp + 2, sdims, cdt_src, csrc_tag) ||
        dnnl_memory_desc_init_by_tag(&cdst_md, nsp + 2, ddims, ddt, cdst_tag) ||
        dnnl_memory_desc_init_by_tag(&udst_md, nsp + 2, ddims, ddt, act_tag(nsp, sh->dst_cl)) ||
        dnnl_memory_desc_init_by_tag(&w_any, wnd, wdims, wdt, dnnl_format_tag_any) ||
        dnnl_memory_desc_init_by_strides(&w_user, wnd, wdims, wdt, wstr) ||
        dnnl_memory_desc_init_by_tag(&b_md, 1, bdims, dnnl_f32, dnnl_x)) {
        free(w7);
        free(s7);
        return KILN_OK;
    }
    dnnl_convolution_desc_t desc;
    if (dnnl_dilated_convolution_forward_desc_init(&desc, dnnl_forward_inference,
                                                   dnnl_convolution_direct, &csrc_md, &w_any,
                                                   sh->has_bias ? &b_md : NULL, &cdst_md, strides,
                                                   dil, pl, pr) != dnnl_success) {
        free(w7);
        free(s7);
        return KILN_OK;
    }

    dnnl_primitive_attr_t attr = NULL;
    dnnl_primitive_desc_t pd = NULL;
    dnnl_post_ops_t po = NULL;
    float *oscales = NULL;
    dnnl_status_t st;
    struct kiln_dnnl_qconv *q = calloc(1, sizeof *q);
    if (!q) {
        free(w7);
        free(s7);
        return kiln_fail(err, KILN_ERR_NO_MEMORY, "oneDNN low-precision conv: out of memory");
    }
    DN(dnnl_primitive_attr_create(&attr), "attr create");
    DN(dnnl_primitive_attr_set_scratchpad_mode(attr, dnnl_scratchpad_mode_user), "attr");
    if (int8) {
        int64_t ns = sh->n_w_scales;
        oscales = malloc((size_t)ns * sizeof *oscales);
        if (!oscales) { rc = kiln_fail(err, KILN_ERR_NO_MEMORY, "oneDNN int8 conv"); goto fail; }
        for (int64_t i = 0; i < ns; i++)
            oscales[i] = sh->x_scale * wscales[i] /
                         (sh->dst_dt == KILN_DTYPE_FLOAT ? 1.0f : sh->y_scale);
        DN(dnnl_primitive_attr_set_output_scales(attr, ns, ns > 1 ? 1 << 1 : 0, oscales), "scales");
        if (sh->x_zp)
            DN(dnnl_primitive_attr_set_zero_points(attr, DNNL_ARG_SRC, 1, 0, &sh->x_zp), "zero point");
        if (sh->dst_dt != KILN_DTYPE_FLOAT && sh->y_zp)
            DN(dnnl_primitive_attr_set_zero_points(attr, DNNL_ARG_DST, 1, 0, &sh->y_zp), "zero point");
    }
    if (sh->sum && (sh->dst_dt != KILN_DTYPE_FLOAT || (int8 && sh->dst_cl != KILN_LAYOUT_CHANNELS_LAST)))
        goto none;
    if (sh->act != KILN_ACT_NONE || sh->sum) {
        DN(dnnl_post_ops_create(&po), "post-ops");
        /* sum first: act(conv + residual), as the reference does */
        if (sh->sum && dnnl_post_ops_append_sum(po, 1.0f)) goto none;
        if (!kiln_dnnl_append_activation(po, sh->act, sh->act_alpha, sh->act_beta)) goto none;
        DN(dnnl_primitive_attr_set_post_ops(attr, po), "post-ops");
    }
    st = dnnl_primitive_desc_create(&pd, &desc, attr, eng, NULL);
    if (st == dnnl_unimplemented || st == dnnl_invalid_arguments) goto none;
    DN(st, "low-precision conv descriptor");
    /* oneDNN's reference kernels are slower than kiln's own */
    if (is_ref_impl(pd)) goto none;
    copy_impl(pd, int8 ? "int8" : "bf16", q->impl, sizeof q->impl);

    const dnnl_memory_desc_t *src_md = dnnl_primitive_desc_query_md(pd, dnnl_query_src_md, 0);
    const dnnl_memory_desc_t *w_md = dnnl_primitive_desc_query_md(pd, dnnl_query_weights_md, 0);
    if (!src_md || !w_md) goto none;
    /* weights: packed once (shared through the model's cache unless re-fitted) */
    {
        void *packed = kiln_dnnl_pack_weights(w7 ? NULL : cache, &w_user, wsrc, w_md, &q->wbuf, err);
        if (!packed) { rc = err ? err->code : KILN_ERR_INTERNAL; goto fail; }
        DN(dnnl_memory_create(&q->wmem, w_md, eng, packed), "memory");
    }
    if (sh->has_bias) {
        q->bias_buf = kiln_dnnl_alloc((size_t)sh->M * sizeof(float));
        if (!q->bias_buf) { rc = kiln_fail(err, KILN_ERR_NO_MEMORY, "oneDNN conv bias"); goto fail; }
        memcpy(q->bias_buf, bias, (size_t)sh->M * sizeof(float));
        if (w7) /* the accumulator unit doubled with the scales */
            for (int64_t i = 0; i < sh->M; i++) ((float *)q->bias_buf)[i] *= 0.5f;
        DN(dnnl_memory_create(&q->bias, &b_md, eng, q->bias_buf), "memory");
    }
    /* source: used as is, or reordered (and quantized) into a private buffer */
    DN(dnnl_memory_create(&q->usrc, &usrc_md, eng, DNNL_MEMORY_NONE), "memory");
    if (!dnnl_memory_desc_equal(src_md, &usrc_md)) {
        q->src_buf = kiln_dnnl_alloc(dnnl_memory_desc_get_size(src_md));
        if (!q->src_buf) { rc = kiln_fail(err, KILN_ERR_NO_MEMORY, "oneDNN conv source"); goto fail; }
        DN(dnnl_memory_create(&q->csrc, src_md, eng, q->src_buf), "memory");
        bool quant = int8 && sh->src_dt == KILN_DTYPE_FLOAT;
        st = make_reorder(&usrc_md, src_md, quant ? 1.0f / sh->x_scale : 0.0f, quant ? sh->x_zp : 0,
                          &q->src_reorder);
        if (st == dnnl_unimplemented) goto none;
        DN(st, "source reorder");
    }
    DN(dnnl_memory_create(&q->udst, &udst_md, eng, DNNL_MEMORY_NONE), "memory");
    if (!dnnl_memory_desc_equal(&cdst_md, &udst_md)) {
        q->dst_buf = kiln_dnnl_alloc(dnnl_memory_desc_get_size(&cdst_md));
        if (!q->dst_buf) { rc = kiln_fail(err, KILN_ERR_NO_MEMORY, "oneDNN conv output"); goto fail; }
        DN(dnnl_memory_create(&q->cdst, &cdst_md, eng, q->dst_buf), "memory");
        st = make_reorder(&cdst_md, &udst_md, 0.0f, 0, &q->dst_reorder);
        if (st == dnnl_unimplemented) goto none;
        DN(st, "output reorder");
    }
    DN(kiln_dnnl_make_scratch(pd, eng, &q->scratch_buf, &q->scratch), "scratchpad");
    DN(dnnl_stream_create(&q->stream, eng, dnnl_stream_default_flags), "stream");
    DN(dnnl_primitive_create(&q->prim, pd), "low-precision conv primitive");
    dnnl_primitive_desc_destroy(pd);
    dnnl_primitive_attr_destroy(attr);
    if (po) dnnl_post_ops_destroy(po);
    free(oscales);
    free(w7);
    free(s7);
    *out = q;
    return KILN_OK;
none:
    rc = KILN_OK;
fail:
    if (pd) dnnl_primitive_desc_destroy(pd);
    if (attr) dnnl_primitive_attr_destroy(attr);
    if (po) dnnl_post_ops_destroy(po);
    free(oscales);
    free(w7);
    free(s7);
    kiln_dnnl_qconv_free(q);
    return rc;
}

kiln_status kiln_dnnl_qconv_run(struct kiln_dnnl_qconv *q, const void *src, void *dst,
                                kiln_error *err) {
    kiln_status rc = KILN_OK;
    DN(dnnl_memory_set_data_handle(q->usrc, (void *)src), "set handle");
    DN(dnnl_memory_set_data_handle(q->udst, dst), "set handle");
    if (q->src_reorder) {
        dnnl_exec_arg_t ra[2] = {{DNNL_ARG_FROM, q->usrc}, {DNNL_ARG_TO, q->csrc}};
        DN(dnnl_primitive_execute(q->src_reorder, q->stream, 2, ra), "source reorder");
    }
    dnnl_exec_arg_t args[5] = {
        {DNNL_ARG_SRC, q->src_reorder ? q->csrc : q->usrc},
        {DNNL_ARG_WEIGHTS, q->wmem},
        {DNNL_ARG_DST, q->dst_reorder ? q->cdst : q->udst},
        {DNNL_ARG_SCRATCHPAD, q->scratch},
        {DNNL_ARG_BIAS, q->bias},
    };
    DN(dnnl_primitive_execute(q->prim, q->stream, q->bias ? 5 : 4, args), "conv execute");
    if (q->dst_reorder) {
        dnnl_exec_arg_t ra[2] = {{DNNL_ARG_FROM, q->cdst}, {DNNL_ARG_TO, q->udst}};
        DN(dnnl_primitive_execute(q->dst_reorder, q->stream, 2, ra), "output reorder");
    }
    DN(dnnl_stream_wait(q->stream), "stream wait");
fail:
    return rc;
}

/* ---- matmul ------------------------------------------------------------- */

void kiln_dnnl_qmatmul_free(void *p) {
    struct kiln_dnnl_qmatmul *q = p;
    if (!q) return;
    if (q->prim) dnnl_primitive_destroy(q->prim);
    if (q->src_reorder) dnnl_primitive_destroy(q->src_reorder);
    if (q->stream) dnnl_stream_destroy(q->stream);
    dnnl_memory_t mems[] = {q->usrc, q->csrc, q->dst, q->wmem, q->bias, q->scratch};
    for (size_t i = 0; i < KILN_ARRAY_LEN(mems); i++)
        if (mems[i]) dnnl_memory_destroy(mems[i]);
    free(q->src_buf);
    free(q->wbuf);
    free(q->bias_buf);
    free(q->scratch_buf);
    free(q);
}

const char *kiln_dnnl_qmatmul_impl(const struct kiln_dnnl_qmatmul *q) { return q->impl; }

kiln_status kiln_dnnl_qmatmul_create(const struct kiln_dnnl_qmatmul_shape *sh, const void *weights,
                                     const float *bias, struct kiln_wcache *cache,
                                     struct kiln_dnnl_qmatmul **out, kiln_error *err) {
    kiln_status rc = KILN_OK;
    *out = NULL;
    dnnl_engine_t eng = kiln_dnnl_engine();
    const bool int8 = sh->kind == KILN_LOWP_INT8;
    if (!eng || !weights || sh->M < 1 || sh->K < 1 || sh->N < 1 || (sh->has_bias && !bias))
        return KILN_OK;
    if (int8) {
        if (!sh->w_scales || (sh->n_w_scales != 1 && sh->n_w_scales != sh->N) ||
            !(sh->x_scale > 0.0f) || !isfinite(sh->x_scale))
            return KILN_OK;
        for (int64_t i = 0; i < sh->n_w_scales; i++)
            if (!(sh->w_scales[i] > 0.0f) || !isfinite(sh->w_scales[i])) return KILN_OK;
    }
    const void *wsrc = weights;
    const float *wscales = sh->w_scales;
    int8_t *w7 = NULL;
    float *s7 = NULL;
    if (int8 && !kiln_cpu_has_int8_dot()) {
        bool oom;
        w7 = fit_weights_7bit(weights, sh->K * sh->N, sh->N, sh->w_scales, sh->n_w_scales, &s7, &oom);
        if (oom) return kiln_fail(err, KILN_ERR_NO_MEMORY, "oneDNN int8 matmul: weights");
        if (w7) wsrc = w7, wscales = s7;
    }
    dnnl_dims_t sdims = {sh->M, sh->K}, wdims = {sh->K, sh->N}, ddims = {sh->M, sh->N},
                bdims = {1, sh->N};
    dnnl_data_type_t cdt = int8 ? dnnl_u8 : dnnl_bf16, wdt = int8 ? dnnl_s8 : dnnl_bf16;
    dnnl_memory_desc_t usrc_md, csrc_md, w_any, w_user, d_md, b_md;
    dnnl_matmul_desc_t desc;
    if (dnnl_memory_desc_init_by_tag(&usrc_md, 2, sdims, dnnl_f32, dnnl_ab) ||
        dnnl_memory_desc_init_by_tag(&csrc_md, 2, sdims, cdt, dnnl_ab) ||
        dnnl_memory_desc_init_by_tag(&w_any, 2, wdims, wdt, dnnl_format_tag_any) ||
        dnnl_memory_desc_init_by_tag(&w_user, 2, wdims, wdt, dnnl_ab) ||
        dnnl_memory_desc_init_by_tag(&d_md, 2, ddims, dnnl_f32, dnnl_ab) ||
        dnnl_memory_desc_init_by_tag(&b_md, 2, bdims, dnnl_f32, dnnl_ab) ||
        dnnl_matmul_desc_init(&desc, &csrc_md, &w_any, sh->has_bias ? &b_md : NULL, &d_md)) {
        free(w7);
        free(s7);
        return KILN_OK;
    }
    dnnl_primitive_attr_t attr = NULL;
    dnnl_primitive_desc_t pd = NULL;
    dnnl_post_ops_t po = NULL;
    float *oscales = NULL;
    dnnl_status_t st;
    struct kiln_dnnl_qmatmul *q = calloc(1, sizeof *q);
    if (!q) {
        free(w7);
        free(s7);
        return kiln_fail(err, KILN_ERR_NO_MEMORY, "oneDNN low-precision matmul: out of memory");
    }
    DN(dnnl_primitive_attr_create(&attr), "attr create");
    DN(dnnl_primitive_attr_set_scratchpad_mode(attr, dnnl_scratchpad_mode_user), "attr");
    if (int8) {
        int64_t ns = sh->n_w_scales;
        oscales = malloc((size_t)ns * sizeof *oscales);
        if (!oscales) { rc = kiln_fail(err, KILN_ERR_NO_MEMORY, "oneDNN int8 matmul"); goto fail; }
        for (int64_t i = 0; i < ns; i++) oscales[i] = sh->x_scale * wscales[i];
        DN(dnnl_primitive_attr_set_output_scales(attr, ns, ns > 1 ? 1 << 1 : 0, oscales), "scales");
        if (sh->x_zp)
            DN(dnnl_primitive_attr_set_zero_points(attr, DNNL_ARG_SRC, 1, 0, &sh->x_zp), "zero point");
    }
    if (sh->act != KILN_ACT_NONE) {
        DN(dnnl_post_ops_create(&po), "post-ops");
        if (!kiln_dnnl_append_activation(po, sh->act, sh->act_alpha, sh->act_beta)) goto none;
        DN(dnnl_primitive_attr_set_post_ops(attr, po), "post-ops");
    }
    st = dnnl_primitive_desc_create(&pd, &desc, attr, eng, NULL);
    if (st == dnnl_unimplemented || st == dnnl_invalid_arguments) goto none;
    DN(st, "low-precision matmul descriptor");
    if (is_ref_impl(pd)) goto none;
    copy_impl(pd, int8 ? "int8" : "bf16", q->impl, sizeof q->impl);
    const dnnl_memory_desc_t *w_md = dnnl_primitive_desc_query_md(pd, dnnl_query_weights_md, 0);
    if (!w_md) goto none;
    {
        void *packed = kiln_dnnl_pack_weights(w7 ? NULL : cache, &w_user, wsrc, w_md, &q->wbuf, err);
        if (!packed) { rc = err ? err->code : KILN_ERR_INTERNAL; goto fail; }
        DN(dnnl_memory_create(&q->wmem, w_md, eng, packed), "memory");
    }
    if (sh->has_bias) {
        q->bias_buf = kiln_dnnl_alloc((size_t)sh->N * sizeof(float));
        if (!q->bias_buf) { rc = kiln_fail(err, KILN_ERR_NO_MEMORY, "oneDNN matmul bias"); goto fail; }
        memcpy(q->bias_buf, bias, (size_t)sh->N * sizeof(float));
        if (w7)
            for (int64_t i = 0; i < sh->N; i++) ((float *)q->bias_buf)[i] *= 0.5f;
        DN(dnnl_memory_create(&q->bias, &b_md, eng, q->bias_buf), "memory");
    }
    DN(dnnl_memory_create(&q->usrc, &usrc_md, eng, DNNL_MEMORY_NONE), "memory");
    q->src_buf = kiln_dnnl_alloc(dnnl_memory_desc_get_size(&csrc_md));
    if (!q->src_buf) { rc = kiln_fail(err, KILN_ERR_NO_MEMORY, "oneDNN matmul source"); goto fail; }
    DN(dnnl_memory_create(&q->csrc, &csrc_md, eng, q->src_buf), "memory");
    st = make_reorder(&usrc_md, &csrc_md, int8 ? 1.0f / sh->x_scale : 0.0f, int8 ? sh->x_zp : 0,
                      &q->src_reorder);
    if (st == dnnl_unimplemented) goto none;
    DN(st, "source reorder");
    DN(dnnl_memory_create(&q->dst, &d_md, eng, DNNL_MEMORY_NONE), "memory");
    DN(kiln_dnnl_make_scratch(pd, eng, &q->scratch_buf, &q->scratch), "scratchpad");
    DN(dnnl_stream_create(&q->stream, eng, dnnl_stream_default_flags), "stream");
    DN(dnnl_primitive_create(&q->prim, pd), "low-precision matmul primitive");
    dnnl_primitive_desc_destroy(pd);
    dnnl_primitive_attr_destroy(attr);
    if (po) dnnl_post_ops_destroy(po);
    free(oscales);
    free(w7);
    free(s7);
    *out = q;
    return KILN_OK;
none:
    rc = KILN_OK;
fail:
    if (pd) dnnl_primitive_desc_destroy(pd);
    if (attr) dnnl_primitive_attr_destroy(attr);
    if (po) dnnl_post_ops_destroy(po);
    free(oscales);
    free(w7);
    free(s7);
    kiln_dnnl_qmatmul_free(q);
    return rc;
}

kiln_status kiln_dnnl_qmatmul_run(struct kiln_dnnl_qmatmul *q, const float *src, float *dst,
                                  kiln_error *err) {
    kiln_status rc = KILN_OK;
    DN(dnnl_memory_set_data_handle(q->usrc, (void *)src), "set handle");
    DN(dnnl_memory_set_data_handle(q->dst, dst), "set handle");
    dnnl_exec_arg_t ra[2] = {{DNNL_ARG_FROM, q->usrc}, {DNNL_ARG_TO, q->csrc}};
    DN(dnnl_primitive_execute(q->src_reorder, q->stream, 2, ra), "source reorder");
    dnnl_exec_arg_t args[5] = {
        {DNNL_ARG_SRC, q->csrc},
        {DNNL_ARG_WEIGHTS, q->wmem},
        {DNNL_ARG_DST, q->dst},
        {DNNL_ARG_SCRATCHPAD, q->scratch},
        {DNNL_ARG_BIAS, q->bias},
    };
    DN(dnnl_primitive_execute(q->prim, q->stream, q->bias ? 5 : 4, args), "matmul execute");
    DN(dnnl_stream_wait(q->stream), "stream wait");
fail:
    return rc;
}
