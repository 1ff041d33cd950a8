/* dnnl_conv.c — oneDNN (v2 C API) primitives for Conv, ConvTranspose and
 * pooling, built once per concrete shape and run many times.
 *
 * Layouts: activations stay in kiln's plain layout (ncw / nchw / ncdhw); the
 * weights are described with format_tag_any so the primitive picks its
 * preferred blocked layout, and constant weights are reordered into it once,
 * at create time. The scratchpad is user-managed and owned by the kernel.
 * `unimplemented` or `invalid_arguments` from descriptor creation means "no
 * fast path for this problem": create then returns KILN_OK with a NULL kernel.
 */
#include "backend/dnnl_conv.h"
#include "backend/dnnl.h"
#include "base/status.h"
#include "ir/graph.h"

#include <stdio.h>
#include <stdlib.h>
#include <string.h>

struct kiln_dnnl_conv {
    dnnl_primitive_t prim;
    dnnl_primitive_t wreorder;     /* user weights -> primitive layout; NULL if same layout */
    dnnl_stream_t    stream;
    dnnl_memory_t    src, dst, bias, wuser, wprim, scratch;
    void            *wbuf;         /* weights in the primitive's layout (owned), or NULL */
    void            *scratch_buf;  /* owned */
    const float     *wconst;       /* weights reordered at create time, or NULL */
    int32_t          packed_const; /* wprim holds packed constant weights (often the model's shared copy) */
    int32_t          has_bias;
    /* plain activations run through a blocked kernel: reordered in and out */
    dnnl_primitive_t src_reorder, dst_reorder;
    dnnl_primitive_t sum_reorder;         /* the residual (in plain dst) into the kernel's layout */
    dnnl_memory_t    src_user, dst_user;
    void            *src_buf, *dst_buf;   /* owned, in the kernel's layouts */
    char             impl[96];
};

struct kiln_dnnl_pool {
    dnnl_primitive_t prim;
    dnnl_stream_t    stream;
    dnnl_memory_t    src, dst, scratch;
    void            *scratch_buf;
    char             impl[96];
};

static dnnl_format_tag_t plain_tag(int32_t nsp) {
    return nsp == 1 ? dnnl_ncw : nsp == 2 ? dnnl_nchw : dnnl_ncdhw;
}

/* layout: enum kiln_layout of the activation */
static dnnl_format_tag_t act_tag(int32_t nsp, int32_t layout) {
    if (layout == KILN_LAYOUT_CHANNELS_LAST) return nsp == 1 ? dnnl_nwc : nsp == 2 ? dnnl_nhwc : dnnl_ndhwc;
    if (layout == KILN_LAYOUT_BLOCKED8) return nsp == 1 ? dnnl_nCw8c : nsp == 2 ? dnnl_nChw8c : dnnl_nCdhw8c;
    return plain_tag(nsp);
}

/* Maps a oneDNN failure to a kiln status. */
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

static void copy_impl(dnnl_primitive_desc_t pd, char *dst, size_t n) {
    const char *s = NULL;
    snprintf(dst, n, "dnnl");
    if (dnnl_primitive_desc_query(pd, dnnl_query_impl_info_str, 0, &s) == dnnl_success && s)
        snprintf(dst, n, "dnnl:%s", s);
}

void kiln_dnnl_conv_free(void *p) {
    struct kiln_dnnl_conv *c = p;
    if (!c) return;
    if (c->prim) dnnl_primitive_destroy(c->prim);
    if (c->wreorder) dnnl_primitive_destroy(c->wreorder);
    if (c->src_reorder) dnnl_primitive_destroy(c->src_reorder);
    if (c->dst_reorder) dnnl_primitive_destroy(c->dst_reorder);
    if (c->sum_reorder) dnnl_primitive_destroy(c->sum_reorder);
    if (c->src_user) dnnl_memory_destroy(c->src_user);
    if (c->dst_user) dnnl_memory_destroy(c->dst_user);
    free(c->src_buf);
    free(c->dst_buf);
    if (c->stream) dnnl_stream_destroy(c->stream);
    dnnl_memory_t mems[] = {c->src, c->dst, c->bias, c->wuser, c->wprim, c->scratch};
    for (size_t i = 0; i < KILN_ARRAY_LEN(mems); i++)
        if (mems[i]) dnnl_memory_destroy(mems[i]);
    free(c->wbuf);
    free(c->scratch_buf);
    free(c);
}

const char *kiln_dnnl_conv_impl(const struct kiln_dnnl_conv *c) { return c->impl; }

kiln_status kiln_dnnl_conv_create(const struct kiln_dnnl_conv_shape *sh, const float *weights,
                                  struct kiln_wcache *cache, struct kiln_dnnl_conv **out,
                                  kiln_error *err) {
    kiln_status rc = KILN_OK;
    *out = NULL;
    dnnl_engine_t eng = kiln_dnnl_engine();
    if (!eng || sh->nsp < 1 || sh->nsp > KILN_DNNL_MAX_SP || sh->G < 1 || sh->C % sh->G ||
        sh->M % sh->G)
        return KILN_OK;
    const int32_t nsp = sh->nsp;
    const int64_t G = sh->G, Cg = sh->C / sh->G, Mg = sh->M / sh->G;
    int64_t ksz = 1;
    for (int32_t i = 0; i < nsp; i++) ksz *= sh->k[i];

    dnnl_memory_desc_t src_md, dst_md, w_any, w_user, b_md;
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
    /* Weights dims are (G,) OC/G, IC/G, k... for both conv and deconv. */
    int32_t wnd = 0, gofs = G > 1 ? 1 : 0;
    if (G > 1) wdims[wnd++] = G;
    wdims[wnd++] = Mg;
    wdims[wnd++] = Cg;
    for (int32_t i = 0; i < nsp; i++) wdims[wnd++] = sh->k[i];
    {   /* spatial strides: row-major within one (o, i) kernel */
        int64_t st = 1;
        for (int32_t i = nsp - 1; i >= 0; i--) {
            wstr[gofs + 2 + i] = st;
            st *= sh->k[i];
        }
        if (!sh->transposed) {         /* ONNX Conv: M x C/G x k = G x Mg x Cg x k */
            wstr[gofs + 1] = ksz;
            wstr[gofs + 0] = Cg * ksz;
        } else {                       /* ONNX ConvTranspose: C x M/G x k = G x Cg x Mg x k */
            wstr[gofs + 0] = ksz;
            wstr[gofs + 1] = Mg * ksz;
        }
        if (G > 1) wstr[0] = Cg * Mg * ksz;
    }

    if (dnnl_memory_desc_init_by_tag(&src_md, nsp + 2, sdims, dnnl_f32, act_tag(nsp, sh->src_cl)) ||
        dnnl_memory_desc_init_by_tag(&dst_md, nsp + 2, ddims, dnnl_f32, act_tag(nsp, sh->dst_cl)) ||
        dnnl_memory_desc_init_by_tag(&w_any, wnd, wdims, dnnl_f32, dnnl_format_tag_any) ||
        dnnl_memory_desc_init_by_strides(&w_user, wnd, wdims, dnnl_f32, wstr) ||
        dnnl_memory_desc_init_by_tag(&b_md, 1, bdims, dnnl_f32, dnnl_x))
        return KILN_OK;

    dnnl_status_t st;
    union { dnnl_convolution_desc_t c; dnnl_deconvolution_desc_t d; } desc;
    if (!sh->transposed)
        st = dnnl_dilated_convolution_forward_desc_init(
            &desc.c, dnnl_forward_inference, dnnl_convolution_direct, &src_md, &w_any,
            sh->has_bias ? &b_md : NULL, &dst_md, strides, dil, pl, pr);
    else
        st = dnnl_dilated_deconvolution_forward_desc_init(
            &desc.d, dnnl_forward_inference, dnnl_deconvolution_direct, &src_md, &w_any,
            sh->has_bias ? &b_md : NULL, &dst_md, strides, dil, pl, pr);
    if (st != dnnl_success) return KILN_OK;   /* shape oneDNN does not accept */

    dnnl_primitive_attr_t attr = NULL;
    dnnl_primitive_desc_t pd = NULL, rpd = NULL;
    struct kiln_dnnl_conv *c = calloc(1, sizeof *c);
    if (!c) return kiln_fail(err, KILN_ERR_NO_MEMORY, "oneDNN conv: out of memory");
    c->has_bias = sh->has_bias;
    DN(dnnl_primitive_attr_create(&attr), "attr create");
    DN(dnnl_primitive_attr_set_scratchpad_mode(attr, dnnl_scratchpad_mode_user), "attr");
    if (sh->act != KILN_ACT_NONE || sh->sum) {
        dnnl_post_ops_t po = NULL;
        DN(dnnl_post_ops_create(&po), "post-ops");
        /* sum first: act(conv + residual), the order the executor's reference uses */
        bool ok = !sh->sum || !dnnl_post_ops_append_sum(po, 1.0f);
        if (ok && sh->act != KILN_ACT_NONE)
            ok = kiln_dnnl_append_activation(po, sh->act, sh->act_alpha, sh->act_beta);
        st = ok ? dnnl_primitive_attr_set_post_ops(attr, po) : dnnl_unimplemented;
        dnnl_post_ops_destroy(po);
        if (st == dnnl_unimplemented) goto none;
        DN(st, "post-ops");
    }
    st = dnnl_primitive_desc_create(&pd, &desc, attr, eng, NULL);
    if (st == dnnl_unimplemented || st == dnnl_invalid_arguments) goto none;
    DN(st, "conv primitive descriptor");
    copy_impl(pd, c->impl, sizeof c->impl);
    /* Plain activations that oneDNN can only convolve by im2col + gemm (for
     * example between a Concat and a Pad, where the planner keeps them plain):
     * its direct kernels in their own layouts are faster even with a reorder
     * in and one out, so try them. */
    dnnl_memory_desc_t src_int = src_md, dst_int = dst_md;
    /* Likewise a blocked source written to a plain destination (a graph
     * output), which oneDNN has no direct kernel for: reorder only the side
     * whose layout the direct kernel does not take. */
    bool mixed = sh->src_cl != sh->dst_cl && (strstr(c->impl, "ref") || strstr(c->impl, "gemm"));
    if ((sh->src_cl == KILN_LAYOUT_PLAIN && sh->dst_cl == KILN_LAYOUT_PLAIN && strstr(c->impl, "gemm")) ||
        mixed) {
        dnnl_memory_desc_t src_any, dst_any;
        union { dnnl_convolution_desc_t c; dnnl_deconvolution_desc_t d; } desc2;
        dnnl_primitive_desc_t pd2 = NULL;
        bool ok = !dnnl_memory_desc_init_by_tag(&src_any, nsp + 2, sdims, dnnl_f32, dnnl_format_tag_any) &&
                  !dnnl_memory_desc_init_by_tag(&dst_any, nsp + 2, ddims, dnnl_f32, dnnl_format_tag_any);
        if (ok && !sh->transposed)
            ok = !dnnl_dilated_convolution_forward_desc_init(
                &desc2.c, dnnl_forward_inference, dnnl_convolution_direct, &src_any, &w_any,
                sh->has_bias ? &b_md : NULL, &dst_any, strides, dil, pl, pr);
        else if (ok)
            ok = !dnnl_dilated_deconvolution_forward_desc_init(
                &desc2.d, dnnl_forward_inference, dnnl_deconvolution_direct, &src_any, &w_any,
                sh->has_bias ? &b_md : NULL, &dst_any, strides, dil, pl, pr);
        if (ok && dnnl_primitive_desc_create(&pd2, &desc2, attr, eng, NULL) == dnnl_success) {
            char impl2[96];
            copy_impl(pd2, impl2, sizeof impl2);
            const dnnl_memory_desc_t *s2 = dnnl_primitive_desc_query_md(pd2, dnnl_query_src_md, 0);
            const dnnl_memory_desc_t *d2 = dnnl_primitive_desc_query_md(pd2, dnnl_query_dst_md, 0);
            dnnl_primitive_desc_t rs = NULL, rd = NULL, rsum = NULL;
            bool same_src = s2 && dnnl_memory_desc_equal(s2, &src_md);
            bool same_dst = d2 && dnnl_memory_desc_equal(d2, &dst_md);
            if (!strstr(impl2, "gemm") && !strstr(impl2, "ref") && s2 && d2 &&
                (same_src ||
                 (dnnl_reorder_primitive_desc_create(&rs, &src_md, eng, s2, eng, NULL) == dnnl_success &&
                  dnnl_primitive_create(&c->src_reorder, rs) == dnnl_success)) &&
                (same_dst ||
                 (dnnl_reorder_primitive_desc_create(&rd, d2, eng, &dst_md, eng, NULL) == dnnl_success &&
                  dnnl_primitive_create(&c->dst_reorder, rd) == dnnl_success)) &&
                (!sh->sum || same_dst ||
                 (dnnl_reorder_primitive_desc_create(&rsum, &dst_md, eng, d2, eng, NULL) == dnnl_success &&
                  dnnl_primitive_create(&c->sum_reorder, rsum) == dnnl_success))) {
                src_int = *s2;
                dst_int = *d2;
                dnnl_primitive_desc_destroy(pd);
                pd = pd2;
                pd2 = NULL;
                snprintf(c->impl, sizeof c->impl, "%s%s", impl2,
                         c->src_reorder || c->dst_reorder ? "+reorders" : "");
            } else {
                if (c->src_reorder) dnnl_primitive_destroy(c->src_reorder);
                if (c->dst_reorder) dnnl_primitive_destroy(c->dst_reorder);
                if (c->sum_reorder) dnnl_primitive_destroy(c->sum_reorder);
                c->src_reorder = c->dst_reorder = c->sum_reorder = NULL;
            }
            if (rs) dnnl_primitive_desc_destroy(rs);
            if (rd) dnnl_primitive_desc_destroy(rd);
            if (rsum) dnnl_primitive_desc_destroy(rsum);
            if (pd2) dnnl_primitive_desc_destroy(pd2);
        }
    }
    /* oneDNN's reference kernels are no faster than kiln's own. */
    if (strstr(c->impl, "ref")) goto none;

    const dnnl_memory_desc_t *w_md = dnnl_primitive_desc_query_md(pd, dnnl_query_weights_md, 0);
    if (!w_md) goto none;
    if (c->src_reorder) {
        c->src_buf = kiln_dnnl_alloc(dnnl_memory_desc_get_size(&src_int));
        if (!c->src_buf) { rc = kiln_fail(err, KILN_ERR_NO_MEMORY, "oneDNN conv: activations"); goto fail; }
        DN(dnnl_memory_create(&c->src, &src_int, eng, c->src_buf), "memory");
        DN(dnnl_memory_create(&c->src_user, &src_md, eng, DNNL_MEMORY_NONE), "memory");
    } else {
        DN(dnnl_memory_create(&c->src, &src_md, eng, DNNL_MEMORY_NONE), "memory");
    }
    if (c->dst_reorder) {
        c->dst_buf = kiln_dnnl_alloc(dnnl_memory_desc_get_size(&dst_int));
        if (!c->dst_buf) { rc = kiln_fail(err, KILN_ERR_NO_MEMORY, "oneDNN conv: activations"); goto fail; }
        DN(dnnl_memory_create(&c->dst, &dst_int, eng, c->dst_buf), "memory");
        DN(dnnl_memory_create(&c->dst_user, &dst_md, eng, DNNL_MEMORY_NONE), "memory");
    } else {
        DN(dnnl_memory_create(&c->dst, &dst_md, eng, DNNL_MEMORY_NONE), "memory");
    }
    if (sh->has_bias) DN(dnnl_memory_create(&c->bias, &b_md, eng, DNNL_MEMORY_NONE), "memory");
    if (dnnl_memory_desc_equal(w_md, &w_user)) {
        DN(dnnl_memory_create(&c->wprim, &w_user, eng, DNNL_MEMORY_NONE), "memory");
    } else if (weights) {
        /* constant weights: packed once per model, shared by its sessions */
        void *packed = kiln_dnnl_pack_weights(cache, &w_user, weights, w_md, &c->wbuf, err);
        if (!packed) { rc = err ? err->code : KILN_ERR_INTERNAL; goto fail; }
        DN(dnnl_memory_create(&c->wprim, w_md, eng, packed), "memory");
        c->packed_const = 1;
    } else {
        c->wbuf = kiln_dnnl_alloc(dnnl_memory_desc_get_size(w_md));
        if (!c->wbuf) { rc = kiln_fail(err, KILN_ERR_NO_MEMORY, "oneDNN conv: weights"); goto fail; }
        DN(dnnl_memory_create(&c->wprim, w_md, eng, c->wbuf), "memory");
        DN(dnnl_memory_create(&c->wuser, &w_user, eng, DNNL_MEMORY_NONE), "memory");
        st = dnnl_reorder_primitive_desc_create(&rpd, &w_user, eng, w_md, eng, NULL);
        if (st == dnnl_unimplemented) goto none;
        DN(st, "weights reorder descriptor");
        DN(dnnl_primitive_create(&c->wreorder, rpd), "weights reorder");
    }
    DN(kiln_dnnl_make_scratch(pd, eng, &c->scratch_buf, &c->scratch), "scratchpad");
    DN(dnnl_stream_create(&c->stream, eng, dnnl_stream_default_flags), "stream");
    DN(dnnl_primitive_create(&c->prim, pd), "conv primitive");
    c->wconst = weights;
    dnnl_primitive_desc_destroy(pd);
    if (rpd) dnnl_primitive_desc_destroy(rpd);
    dnnl_primitive_attr_destroy(attr);
    *out = c;
    return KILN_OK;
none:
    rc = KILN_OK;
fail:
    if (pd) dnnl_primitive_desc_destroy(pd);
    if (rpd) dnnl_primitive_desc_destroy(rpd);
    if (attr) dnnl_primitive_attr_destroy(attr);
    kiln_dnnl_conv_free(c);
    return rc;
}

kiln_status kiln_dnnl_conv_run(struct kiln_dnnl_conv *c, const float *src, const float *weights,
                               const float *bias, float *dst, kiln_error *err) {
    kiln_status rc = KILN_OK;
    if (c->src_reorder) {
        DN(dnnl_memory_set_data_handle(c->src_user, (void *)src), "set handle");
        dnnl_exec_arg_t ra[2] = {{DNNL_ARG_FROM, c->src_user}, {DNNL_ARG_TO, c->src}};
        DN(dnnl_primitive_execute(c->src_reorder, c->stream, 2, ra), "src reorder");
    } else {
        DN(dnnl_memory_set_data_handle(c->src, (void *)src), "set handle");
    }
    if (c->dst_reorder) {
        DN(dnnl_memory_set_data_handle(c->dst_user, dst), "set handle");
        if (c->sum_reorder) { /* the caller put the residual in dst: the sum post-op reads it there */
            dnnl_exec_arg_t rr[2] = {{DNNL_ARG_FROM, c->dst_user}, {DNNL_ARG_TO, c->dst}};
            DN(dnnl_primitive_execute(c->sum_reorder, c->stream, 2, rr), "residual reorder");
        }
    } else {
        DN(dnnl_memory_set_data_handle(c->dst, dst), "set handle");
    }
    if (c->has_bias) DN(dnnl_memory_set_data_handle(c->bias, (void *)bias), "set handle");
    if (c->packed_const) {
        /* planned constants keep their address for the life of the model */
        if (weights != c->wconst) {
            rc = kiln_fail(err, KILN_ERR_INTERNAL, "oneDNN conv: constant weights moved");
            goto fail;
        }
    } else if (c->wreorder) {
        if (!c->wconst || c->wconst != weights) {
            DN(dnnl_memory_set_data_handle(c->wuser, (void *)weights), "set handle");
            dnnl_exec_arg_t ra[2] = {{DNNL_ARG_FROM, c->wuser}, {DNNL_ARG_TO, c->wprim}};
            DN(dnnl_primitive_execute(c->wreorder, c->stream, 2, ra), "weights reorder");
        }
    } else {
        DN(dnnl_memory_set_data_handle(c->wprim, (void *)weights), "set handle");
    }
    dnnl_exec_arg_t args[5] = {
        {DNNL_ARG_SRC, c->src},
        {DNNL_ARG_WEIGHTS, c->wprim},
        {DNNL_ARG_DST, c->dst},
        {DNNL_ARG_SCRATCHPAD, c->scratch},
        {DNNL_ARG_BIAS, c->bias},
    };
    DN(dnnl_primitive_execute(c->prim, c->stream, c->has_bias ? 5 : 4, args), "conv execute");
    if (c->dst_reorder) {
        dnnl_exec_arg_t ra[2] = {{DNNL_ARG_FROM, c->dst}, {DNNL_ARG_TO, c->dst_user}};
        DN(dnnl_primitive_execute(c->dst_reorder, c->stream, 2, ra), "dst reorder");
    }
    DN(dnnl_stream_wait(c->stream), "stream wait");
fail:
    return rc;
}

void kiln_dnnl_pool_free(void *p) {
    struct kiln_dnnl_pool *q = p;
    if (!q) return;
    if (q->prim) dnnl_primitive_destroy(q->prim);
    if (q->stream) dnnl_stream_destroy(q->stream);
    if (q->src) dnnl_memory_destroy(q->src);
    if (q->dst) dnnl_memory_destroy(q->dst);
    if (q->scratch) dnnl_memory_destroy(q->scratch);
    free(q->scratch_buf);
    free(q);
}

const char *kiln_dnnl_pool_impl(const struct kiln_dnnl_pool *p) { return p->impl; }

kiln_status kiln_dnnl_pool_create(const struct kiln_dnnl_pool_shape *sh,
                                  struct kiln_dnnl_pool **out, kiln_error *err) {
    kiln_status rc = KILN_OK;
    *out = NULL;
    dnnl_engine_t eng = kiln_dnnl_engine();
    if (!eng || sh->nsp < 1 || sh->nsp > KILN_DNNL_MAX_SP) return KILN_OK;
    const int32_t nsp = sh->nsp;
    dnnl_alg_kind_t alg = sh->alg == KILN_DNNL_POOL_MAX ? dnnl_pooling_max
                          : sh->alg == KILN_DNNL_POOL_AVG_INCLUDE_PAD
                              ? dnnl_pooling_avg_include_padding
                              : dnnl_pooling_avg_exclude_padding;
    dnnl_dims_t sdims = {sh->N, sh->C}, ddims = {sh->N, sh->C}, strides, kernel, dil, pl, pr;
    for (int32_t i = 0; i < nsp; i++) {
        sdims[2 + i] = sh->in[i];
        ddims[2 + i] = sh->out[i];
        strides[i] = sh->s[i];
        kernel[i] = sh->k[i];
        dil[i] = sh->d[i] - 1;
        pl[i] = sh->pb[i];
        pr[i] = sh->pe[i];
        if (pl[i] < 0 || pr[i] < 0) return KILN_OK;
    }
    dnnl_memory_desc_t src_md, dst_md;
    if (dnnl_memory_desc_init_by_tag(&src_md, nsp + 2, sdims, dnnl_f32, act_tag(nsp, sh->src_cl)) ||
        dnnl_memory_desc_init_by_tag(&dst_md, nsp + 2, ddims, dnnl_f32, act_tag(nsp, sh->dst_cl)))
        return KILN_OK;
    dnnl_pooling_v2_desc_t desc;
    if (dnnl_pooling_v2_forward_desc_init(&desc, dnnl_forward_inference, alg, &src_md, &dst_md,
                                          strides, kernel, dil, pl, pr) != dnnl_success)
        return KILN_OK;

    dnnl_primitive_attr_t attr = NULL;
    dnnl_primitive_desc_t pd = NULL;
    struct kiln_dnnl_pool *q = calloc(1, sizeof *q);
    if (!q) return kiln_fail(err, KILN_ERR_NO_MEMORY, "oneDNN pool: out of memory");
    DN(dnnl_primitive_attr_create(&attr), "attr create");
    DN(dnnl_primitive_attr_set_scratchpad_mode(attr, dnnl_scratchpad_mode_user), "attr");
    dnnl_status_t st = dnnl_primitive_desc_create(&pd, &desc, attr, eng, NULL);
    if (st == dnnl_unimplemented || st == dnnl_invalid_arguments) goto none;
    DN(st, "pooling primitive descriptor");
    copy_impl(pd, q->impl, sizeof q->impl);
    if (strstr(q->impl, "ref")) goto none;
    DN(dnnl_memory_create(&q->src, &src_md, eng, DNNL_MEMORY_NONE), "memory");
    DN(dnnl_memory_create(&q->dst, &dst_md, eng, DNNL_MEMORY_NONE), "memory");
    DN(kiln_dnnl_make_scratch(pd, eng, &q->scratch_buf, &q->scratch), "scratchpad");
    DN(dnnl_stream_create(&q->stream, eng, dnnl_stream_default_flags), "stream");
    DN(dnnl_primitive_create(&q->prim, pd), "pooling primitive");
    dnnl_primitive_desc_destroy(pd);
    dnnl_primitive_attr_destroy(attr);
    *out = q;
    return KILN_OK;
none:
    rc = KILN_OK;
fail:
    if (pd) dnnl_primitive_desc_destroy(pd);
    if (attr) dnnl_primitive_attr_destroy(attr);
    kiln_dnnl_pool_free(q);
    return rc;
}

kiln_status kiln_dnnl_pool_run(struct kiln_dnnl_pool *q, const float *src, float *dst,
                               kiln_error *err) {
    kiln_status rc = KILN_OK;
    DN(dnnl_memory_set_data_handle(q->src, (void *)src), "set handle");
    DN(dnnl_memory_set_data_handle(q->dst, dst), "set handle");
    dnnl_exec_arg_t args[3] = {
        {DNNL_ARG_SRC, q->src}, {DNNL_ARG_DST, q->dst}, {DNNL_ARG_SCRATCHPAD, q->scratch}};
    DN(dnnl_primitive_execute(q->prim, q->stream, 3, args), "pooling execute");
    DN(dnnl_stream_wait(q->stream), "stream wait");
fail:
    return rc;
}
