/* dnnl_matmul.c — float32 matmul primitives (oneDNN v2.6 C API).
 *
 * Owns every dnnl_* call for MatMul/Gemm. One object = one primitive for one
 * set of concrete shapes, its stream and its memory objects; the data handles
 * are re-pointed on each run (plain layouts only, so that is free). Constant
 * weights are reordered once into the layout the primitive asked for, in a
 * buffer owned here; when that layout is the plain one the caller's buffer is
 * used as is (read only).
 */
#include "backend/dnnl_matmul.h"
#include "backend/dnnl.h"
#include "base/status.h"
#include "ir/graph.h"

#include <stdio.h>
#include <stdlib.h>
#include <string.h>

struct kiln_dnnl_matmul {
    dnnl_primitive_desc_t pd;
    dnnl_primitive_t      prim;
    dnnl_stream_t         stream;
    dnnl_memory_t         src, wei, bias, dst;
    void                 *wei_buf;      /* owned reordered weights, or NULL */
    bool                  wei_const;
    bool                  has_bias;
    char                  impl[96];
};

static kiln_status dnnl_err(kiln_error *err, dnnl_status_t s, const char *what) {
    kiln_status code = s == dnnl_out_of_memory ? KILN_ERR_NO_MEMORY
                     : (s == dnnl_unimplemented || s == dnnl_invalid_arguments)
                         ? KILN_ERR_UNSUPPORTED
                         : KILN_ERR_INTERNAL;
    return kiln_fail(err, code, "oneDNN matmul: %s: %s", what, kiln_dnnl_status_str(s));
}

#define DNNL_TRY(call, what)                          \
    do {                                              \
        dnnl_status_t s_ = (call);                    \
        if (s_ != dnnl_success) {                     \
            st = dnnl_err(err, s_, what);             \
            goto fail;                                \
        }                                             \
    } while (0)

static void dense_strides(int32_t rank, const int64_t *dims, dnnl_dims_t strides) {
    int64_t s = 1;
    for (int32_t i = rank - 1; i >= 0; i--) {
        strides[i] = s;
        s *= dims[i] > 0 ? dims[i] : 1;
    }
}

/* Packs the caller's plain constant weights into the layout `want`: once per
 * model when the model's cache is available, shared by all its sessions. */
static kiln_status reorder_weights(struct kiln_dnnl_matmul *m, dnnl_engine_t eng,
                                   const dnnl_memory_desc_t *user_md,
                                   const dnnl_memory_desc_t *want, const float *w,
                                   struct kiln_wcache *cache, kiln_error *err) {
    kiln_status st = KILN_OK;
    void *packed = kiln_dnnl_pack_weights(cache, user_md, w, want, &m->wei_buf, err);
    if (!packed) return err ? err->code : KILN_ERR_INTERNAL;
    DNNL_TRY(dnnl_memory_create(&m->wei, want, eng, packed), "weights memory");
fail:
    return st;
}

/* oneDNN eltwise algorithm for a fused activation; 0 when there is none */
static dnnl_alg_kind_t act_alg(int32_t act, float *alpha, float *beta) {
    switch (act) {
    case KILN_ACT_RELU: *alpha = 0.0f; *beta = 0.0f; return dnnl_eltwise_relu;
    case KILN_ACT_LEAKY_RELU: *beta = 0.0f; return dnnl_eltwise_relu;   /* alpha = slope */
    case KILN_ACT_CLIP: return dnnl_eltwise_clip_v2;                   /* alpha..beta */
    case KILN_ACT_SIGMOID: *alpha = 0.0f; *beta = 0.0f; return dnnl_eltwise_logistic;
    case KILN_ACT_TANH: *alpha = 0.0f; *beta = 0.0f; return dnnl_eltwise_tanh;
    case KILN_ACT_HARD_SWISH: *alpha = 0.0f; *beta = 0.0f; return dnnl_eltwise_hardswish;
    case KILN_ACT_GELU_ERF: *alpha = 0.0f; *beta = 0.0f; return dnnl_eltwise_gelu_erf;
    case KILN_ACT_GELU_TANH: *alpha = 0.0f; *beta = 0.0f; return dnnl_eltwise_gelu_tanh;
    case KILN_ACT_SILU: *beta = 0.0f; return dnnl_eltwise_swish;         /* alpha = slope */
    default: return dnnl_alg_kind_undef;
    }
}

bool kiln_dnnl_matmul_act_ok(int32_t act) {
    float a = 0, b = 0;
    return act_alg(act, &a, &b) != dnnl_alg_kind_undef;
}

kiln_status kiln_dnnl_matmul_create(const struct kiln_dnnl_matmul_desc *d,
                                    struct kiln_dnnl_matmul **out, const char **impl,
                                    kiln_error *err) {
    kiln_status st = KILN_OK;
    *out = NULL;
    dnnl_engine_t eng = kiln_dnnl_engine();
    if (!eng) return kiln_fail(err, KILN_ERR_UNSUPPORTED, "oneDNN matmul: no CPU engine");
    if (d->rank < 2 || d->rank > KILN_MAX_RANK || d->rank > DNNL_MAX_NDIMS)
        return kiln_fail(err, KILN_ERR_UNSUPPORTED, "oneDNN matmul: rank %d", d->rank);

    struct kiln_dnnl_matmul *m = calloc(1, sizeof *m);
    if (!m) return kiln_fail(err, KILN_ERR_NO_MEMORY, "oneDNN matmul: state");
    dnnl_primitive_attr_t attr = NULL;
    dnnl_post_ops_t po = NULL;

    dnnl_dims_t sd, ss, wd, ws, dd, dst_s, bd, bs;
    for (int32_t i = 0; i < d->rank; i++) {
        sd[i] = d->src_dims[i];
        ss[i] = d->src_strides[i];
        wd[i] = d->wei_dims[i];
        ws[i] = d->wei_strides[i];
        dd[i] = d->dst_dims[i];
        bd[i] = d->has_bias ? d->bias_dims[i] : 1;
    }
    dense_strides(d->rank, d->dst_dims, dst_s);
    dense_strides(d->rank, bd, bs);

    dnnl_memory_desc_t src_md, wei_user_md, wei_md, dst_md, bias_md;
    DNNL_TRY(dnnl_memory_desc_init_by_strides(&src_md, d->rank, sd, dnnl_f32, ss), "src desc");
    DNNL_TRY(dnnl_memory_desc_init_by_strides(&wei_user_md, d->rank, wd, dnnl_f32, ws),
             "weights desc");
    if (d->wei_const)
        DNNL_TRY(dnnl_memory_desc_init_by_tag(&wei_md, d->rank, wd, dnnl_f32, dnnl_format_tag_any),
                 "weights desc (any)");
    else
        wei_md = wei_user_md;
    DNNL_TRY(dnnl_memory_desc_init_by_strides(&dst_md, d->rank, dd, dnnl_f32, dst_s), "dst desc");
    if (d->has_bias)
        DNNL_TRY(dnnl_memory_desc_init_by_strides(&bias_md, d->rank, bd, dnnl_f32, bs),
                 "bias desc");

    dnnl_matmul_desc_t md;
    DNNL_TRY(dnnl_matmul_desc_init(&md, &src_md, &wei_md, d->has_bias ? &bias_md : NULL, &dst_md),
             "matmul desc");
    DNNL_TRY(dnnl_primitive_attr_create(&attr), "attr");
    if (d->alpha != 1.0f) {
        float a = d->alpha;
        DNNL_TRY(dnnl_primitive_attr_set_output_scales(attr, 1, 0, &a), "output scale");
    }
    if (d->sum_beta != 0.0f || d->act) {
        DNNL_TRY(dnnl_post_ops_create(&po), "post-ops");
        if (d->sum_beta != 0.0f)
            DNNL_TRY(dnnl_post_ops_append_sum(po, d->sum_beta), "sum post-op");
        if (d->act) {
            float al = d->act_alpha, be = d->act_beta;
            dnnl_alg_kind_t alg = act_alg(d->act, &al, &be);
            if (alg == dnnl_alg_kind_undef) {
                st = kiln_fail(err, KILN_ERR_UNSUPPORTED, "oneDNN matmul: activation %d", d->act);
                goto fail;
            }
            DNNL_TRY(dnnl_post_ops_append_eltwise(po, 1.0f, alg, al, be), "eltwise post-op");
        }
        DNNL_TRY(dnnl_primitive_attr_set_post_ops(attr, po), "set post-ops");
    }
    DNNL_TRY(dnnl_primitive_desc_create(&m->pd, &md, attr, eng, NULL), "primitive desc");
    DNNL_TRY(dnnl_primitive_create(&m->prim, m->pd), "primitive");
    DNNL_TRY(dnnl_stream_create(&m->stream, eng, dnnl_stream_default_flags), "stream");

    m->wei_const = d->wei_const != NULL;
    m->has_bias = d->has_bias;
    if (d->wei_const) {
        const dnnl_memory_desc_t *want = dnnl_primitive_desc_query_md(m->pd, dnnl_query_weights_md, 0);
        if (!want) {
            st = kiln_fail(err, KILN_ERR_INTERNAL, "oneDNN matmul: no weights md");
            goto fail;
        }
        if (dnnl_memory_desc_equal(want, &wei_user_md)) {
            /* plain layout: read the model's copy in place (never written) */
            DNNL_TRY(dnnl_memory_create(&m->wei, &wei_user_md, eng, (void *)d->wei_const),
                     "weights memory");
        } else {
            st = reorder_weights(m, eng, &wei_user_md, want, d->wei_const, d->wcache, err);
            if (st != KILN_OK) goto fail;
        }
    } else {
        DNNL_TRY(dnnl_memory_create(&m->wei, &wei_md, eng, DNNL_MEMORY_NONE), "weights memory");
    }
    DNNL_TRY(dnnl_memory_create(&m->src, &src_md, eng, DNNL_MEMORY_NONE), "src memory");
    DNNL_TRY(dnnl_memory_create(&m->dst, &dst_md, eng, DNNL_MEMORY_NONE), "dst memory");
    if (d->has_bias)
        DNNL_TRY(dnnl_memory_create(&m->bias, &bias_md, eng, DNNL_MEMORY_NONE), "bias memory");

    const char *name = NULL;
    if (dnnl_primitive_desc_query(m->pd, dnnl_query_impl_info_str, 0, &name) != dnnl_success ||
        !name)
        name = "?";
    snprintf(m->impl, sizeof m->impl, "dnnl:%s", name);
    if (impl) *impl = m->impl;

    if (po) dnnl_post_ops_destroy(po);
    dnnl_primitive_attr_destroy(attr);
    *out = m;
    return KILN_OK;
fail:
    if (po) dnnl_post_ops_destroy(po);
    if (attr) dnnl_primitive_attr_destroy(attr);
    kiln_dnnl_matmul_free(m);
    return st;
}

kiln_status kiln_dnnl_matmul_exec(struct kiln_dnnl_matmul *m, const float *src,
                                  const float *wei, const float *bias, float *dst,
                                  kiln_error *err) {
    kiln_status st = KILN_OK;
    dnnl_exec_arg_t args[4];
    int n = 0;
    DNNL_TRY(dnnl_memory_set_data_handle(m->src, (void *)src), "set src");
    DNNL_TRY(dnnl_memory_set_data_handle(m->dst, dst), "set dst");
    if (!m->wei_const) DNNL_TRY(dnnl_memory_set_data_handle(m->wei, (void *)wei), "set weights");
    args[n++] = (dnnl_exec_arg_t){DNNL_ARG_SRC, m->src};
    args[n++] = (dnnl_exec_arg_t){DNNL_ARG_WEIGHTS, m->wei};
    args[n++] = (dnnl_exec_arg_t){DNNL_ARG_DST, m->dst};
    if (m->has_bias) {
        DNNL_TRY(dnnl_memory_set_data_handle(m->bias, (void *)bias), "set bias");
        args[n++] = (dnnl_exec_arg_t){DNNL_ARG_BIAS, m->bias};
    }
    DNNL_TRY(dnnl_primitive_execute(m->prim, m->stream, n, args), "execute");
    DNNL_TRY(dnnl_stream_wait(m->stream), "wait");
fail:
    if (st == KILN_ERR_UNSUPPORTED) {   /* it was created: now a real failure */
        st = KILN_ERR_INTERNAL;
        if (err) err->code = st;
    }
    return st;
}

void kiln_dnnl_matmul_free(struct kiln_dnnl_matmul *m) {
    if (!m) return;
    if (m->src) dnnl_memory_destroy(m->src);
    if (m->wei) dnnl_memory_destroy(m->wei);
    if (m->bias) dnnl_memory_destroy(m->bias);
    if (m->dst) dnnl_memory_destroy(m->dst);
    if (m->prim) dnnl_primitive_destroy(m->prim);
    if (m->pd) dnnl_primitive_desc_destroy(m->pd);
    if (m->stream) dnnl_stream_destroy(m->stream);
    free(m->wei_buf);
    free(m);
}
