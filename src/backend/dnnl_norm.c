/* dnnl_norm.c — oneDNN (v2.6 C API) softmax, logsoftmax, batch and layer
 * normalization primitives, built once per concrete shape, run many times.
 *
 * Tensors are dense row-major float32 (kiln's plain layout); the data
 * handles are re-pointed on each run, which is free. `unimplemented` or
 * `invalid_arguments` from descriptor creation, and oneDNN's reference
 * implementations (no faster than kiln's own), mean "no fast path": create
 * then returns KILN_OK with a NULL kernel.
 */
#include "backend/dnnl_norm.h"
#include "backend/dnnl.h"
#include "base/status.h"

#include <stdio.h>
#include <stdlib.h>
#include <string.h>

struct kiln_dnnl_norm {
    int32_t          kind;
    dnnl_primitive_t prim;
    dnnl_stream_t    stream;
    dnnl_memory_t    src, dst, scale, shift, mean, var, scratch;
    void            *scratch_buf;   /* owned */
    float           *scale_own, *shift_own;   /* LNORM constants copied at create, or NULL */
    int32_t          has_scale, has_shift, has_stats;
    char             impl[96];
};

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

void kiln_dnnl_norm_free(void *p) {
    struct kiln_dnnl_norm *k = p;
    if (!k) return;
    if (k->prim) dnnl_primitive_destroy(k->prim);
    if (k->stream) dnnl_stream_destroy(k->stream);
    dnnl_memory_t mems[] = {k->src, k->dst, k->scale, k->shift, k->mean, k->var, k->scratch};
    for (size_t i = 0; i < KILN_ARRAY_LEN(mems); i++)
        if (mems[i]) dnnl_memory_destroy(mems[i]);
    free(k->scratch_buf);
    free(k->scale_own);
    free(k->shift_own);
    free(k);
}

const char *kiln_dnnl_norm_impl(const struct kiln_dnnl_norm *k) { return k->impl; }

static const char *kind_name(int32_t kind) {
    switch (kind) {
    case KILN_DNNL_SOFTMAX: return "softmax";
    case KILN_DNNL_LOGSOFTMAX: return "logsoftmax";
    case KILN_DNNL_BNORM: return "batch normalization";
    default: return "layer normalization";
    }
}

/* Owned copy of a constant vector of n floats. */
static float *copy_vec(const float *p, int64_t n) {
    float *q = kiln_dnnl_alloc((size_t)n * sizeof(float));
    if (q) memcpy(q, p, (size_t)n * sizeof(float));
    return q;
}

kiln_status kiln_dnnl_norm_create(const struct kiln_dnnl_norm_desc *d, struct kiln_dnnl_norm **out,
                                  kiln_error *err) {
    kiln_status rc = KILN_OK;
    *out = NULL;
    dnnl_engine_t eng = kiln_dnnl_engine();
    if (!eng || d->rank < 1 || d->rank > 5 || (d->kind == KILN_DNNL_BNORM && d->rank < 2))
        return KILN_OK;
    dnnl_dims_t dims, strides;
    int64_t s = 1;
    for (int32_t i = d->rank - 1; i >= 0; i--) {
        if (d->dims[i] <= 0) return KILN_OK;
        dims[i] = d->dims[i];
        strides[i] = s;
        s *= d->dims[i];
    }
    dnnl_memory_desc_t data_md;
    if (dnnl_memory_desc_init_by_strides(&data_md, d->rank, dims, dnnl_f32, strides) != dnnl_success)
        return KILN_OK;

    /* the op descriptor: one of four kinds; create only reads it */
    union {
        dnnl_softmax_desc_t sm;
        dnnl_logsoftmax_desc_t lsm;
        dnnl_batch_normalization_desc_t bn;
        dnnl_layer_normalization_desc_t ln;
    } desc;
    dnnl_status_t ds;
    int64_t vec = 0;   /* length of scale / shift / mean / var */
    int32_t has_scale = 0, has_shift = 0, has_stats = 0;
    switch (d->kind) {
    case KILN_DNNL_SOFTMAX:
    case KILN_DNNL_LOGSOFTMAX:
        if (d->axis < 0 || d->axis >= d->rank) return KILN_OK;
        ds = d->kind == KILN_DNNL_SOFTMAX
                 ? dnnl_softmax_forward_desc_init(&desc.sm, dnnl_forward_inference, &data_md, d->axis)
                 : dnnl_logsoftmax_forward_desc_init(&desc.lsm, dnnl_forward_inference, &data_md,
                                                     d->axis);
        break;
    case KILN_DNNL_BNORM:
        /* the model's running mean / variance (global stats): inference form */
        vec = d->dims[1];
        has_scale = has_shift = has_stats = 1;
        ds = dnnl_batch_normalization_forward_desc_init(
            &desc.bn, dnnl_forward_inference, &data_md, d->eps,
            dnnl_use_global_stats | dnnl_use_scale | dnnl_use_shift);
        break;
    case KILN_DNNL_LNORM:
        /* statistics computed per row over the last dim; without use_global_stats
         * and in inference they live in the scratchpad */
        vec = d->dims[d->rank - 1];
        has_scale = 1;
        has_shift = d->has_shift != 0;
        ds = dnnl_layer_normalization_forward_desc_init(
            &desc.ln, dnnl_forward_inference, &data_md, NULL, d->eps,
            dnnl_use_scale | (has_shift ? dnnl_use_shift : 0u));
        break;
    default: return KILN_OK;
    }
    if (ds != dnnl_success) return KILN_OK;

    dnnl_primitive_attr_t attr = NULL;
    dnnl_primitive_desc_t pd = NULL;
    struct kiln_dnnl_norm *k = calloc(1, sizeof *k);
    if (!k) return kiln_fail(err, KILN_ERR_NO_MEMORY, "oneDNN %s: out of memory", kind_name(d->kind));
    k->kind = d->kind;
    k->has_scale = has_scale;
    k->has_shift = has_shift;
    k->has_stats = has_stats;
    DN(dnnl_primitive_attr_create(&attr), "attr create");
    DN(dnnl_primitive_attr_set_scratchpad_mode(attr, dnnl_scratchpad_mode_user), "attr");
    dnnl_status_t st = dnnl_primitive_desc_create(&pd, &desc, attr, eng, NULL);
    if (st == dnnl_unimplemented || st == dnnl_invalid_arguments) goto none;
    DN(st, "primitive descriptor");
    const char *name = NULL;
    if (dnnl_primitive_desc_query(pd, dnnl_query_impl_info_str, 0, &name) != dnnl_success || !name)
        goto none;
    /* oneDNN's reference kernels ("ref:any", "bnorm_ref:any") are no faster
     * than kiln's own */
    if (strstr(name, "ref")) goto none;
    snprintf(k->impl, sizeof k->impl, "dnnl:%s", name);

    DN(dnnl_memory_create(&k->src, &data_md, eng, DNNL_MEMORY_NONE), "src memory");
    DN(dnnl_memory_create(&k->dst, &data_md, eng, DNNL_MEMORY_NONE), "dst memory");
    if (vec > 0) {
        dnnl_memory_desc_t vec_md;
        dnnl_dims_t vd = {vec};
        DN(dnnl_memory_desc_init_by_tag(&vec_md, 1, vd, dnnl_f32, dnnl_a), "vector desc");
        if (has_scale) DN(dnnl_memory_create(&k->scale, &vec_md, eng, DNNL_MEMORY_NONE), "scale memory");
        if (has_shift) DN(dnnl_memory_create(&k->shift, &vec_md, eng, DNNL_MEMORY_NONE), "shift memory");
        if (has_stats) {
            DN(dnnl_memory_create(&k->mean, &vec_md, eng, DNNL_MEMORY_NONE), "mean memory");
            DN(dnnl_memory_create(&k->var, &vec_md, eng, DNNL_MEMORY_NONE), "variance memory");
        }
        if (d->kind == KILN_DNNL_LNORM && d->scale_const) {
            if (!(k->scale_own = copy_vec(d->scale_const, vec))) DN(dnnl_out_of_memory, "scale");
            DN(dnnl_memory_set_data_handle(k->scale, k->scale_own), "scale handle");
        }
        if (d->kind == KILN_DNNL_LNORM && has_shift && d->shift_const) {
            if (!(k->shift_own = copy_vec(d->shift_const, vec))) DN(dnnl_out_of_memory, "shift");
            DN(dnnl_memory_set_data_handle(k->shift, k->shift_own), "shift handle");
        }
    }
    const dnnl_memory_desc_t *smd = dnnl_primitive_desc_query_md(pd, dnnl_query_scratchpad_md, 0);
    if (!smd) DN(dnnl_runtime_error, "scratchpad desc");
    if (!(k->scratch_buf = kiln_dnnl_alloc(dnnl_memory_desc_get_size(smd))))
        DN(dnnl_out_of_memory, "scratchpad");
    DN(dnnl_memory_create(&k->scratch, smd, eng, k->scratch_buf), "scratchpad memory");
    DN(dnnl_stream_create(&k->stream, eng, dnnl_stream_default_flags), "stream");
    DN(dnnl_primitive_create(&k->prim, pd), "primitive");
    dnnl_primitive_desc_destroy(pd);
    dnnl_primitive_attr_destroy(attr);
    *out = k;
    return KILN_OK;
none:
    rc = KILN_OK;
fail:
    if (rc && err) kiln_fail_prefix(err, rc, "%s", kind_name(d->kind));
    if (pd) dnnl_primitive_desc_destroy(pd);
    if (attr) dnnl_primitive_attr_destroy(attr);
    kiln_dnnl_norm_free(k);
    return rc;
}

kiln_status kiln_dnnl_norm_run(struct kiln_dnnl_norm *k, const float *src, float *dst,
                               const float *scale, const float *shift, const float *mean,
                               const float *var, kiln_error *err) {
    kiln_status rc = KILN_OK;
    dnnl_exec_arg_t args[7];
    int n = 0;
    DN(dnnl_memory_set_data_handle(k->src, (void *)src), "set src");
    DN(dnnl_memory_set_data_handle(k->dst, dst), "set dst");
    args[n++] = (dnnl_exec_arg_t){DNNL_ARG_SRC, k->src};
    args[n++] = (dnnl_exec_arg_t){DNNL_ARG_DST, k->dst};
    if (k->has_scale) {
        if (!k->scale_own) DN(dnnl_memory_set_data_handle(k->scale, (void *)scale), "set scale");
        args[n++] = (dnnl_exec_arg_t){DNNL_ARG_SCALE, k->scale};
    }
    if (k->has_shift) {
        if (!k->shift_own) DN(dnnl_memory_set_data_handle(k->shift, (void *)shift), "set shift");
        args[n++] = (dnnl_exec_arg_t){DNNL_ARG_SHIFT, k->shift};
    }
    if (k->has_stats) {
        DN(dnnl_memory_set_data_handle(k->mean, (void *)mean), "set mean");
        DN(dnnl_memory_set_data_handle(k->var, (void *)var), "set variance");
        args[n++] = (dnnl_exec_arg_t){DNNL_ARG_MEAN, k->mean};
        args[n++] = (dnnl_exec_arg_t){DNNL_ARG_VARIANCE, k->var};
    }
    args[n++] = (dnnl_exec_arg_t){DNNL_ARG_SCRATCHPAD, k->scratch};
    DN(dnnl_primitive_execute(k->prim, k->stream, n, args), "execute");
    DN(dnnl_stream_wait(k->stream), "stream wait");
fail:
    if (rc && err) kiln_fail_prefix(err, rc, "%s", kind_name(k->kind));
    return rc;
}
