/* dnnl_norm.h — oneDNN fast paths for Softmax, LogSoftmax,
 * BatchNormalization (inference) and LayerNormalization.
 *
 * The op files (src/ops/reduce.c, src/ops/norm.c) describe the problem as a
 * dense row-major float32 tensor with concrete dims and get back an opaque
 * kernel, or NULL when oneDNN has no implementation for it, or only its
 * reference one (kiln's own kernel is as good): the caller then keeps its
 * reference kernel. This file owns every dnnl_* call for these ops.
 *
 * A kernel owns its primitive, a stream and a user-managed scratchpad, and is
 * used by one thread at a time (it belongs to one session plan). All of these
 * primitives may run in place (dst == src).
 */
#ifndef KILN_BACKEND_DNNL_NORM_H
#define KILN_BACKEND_DNNL_NORM_H

#include "kiln.h"
#include <stdint.h>

enum kiln_dnnl_norm_kind {
    KILN_DNNL_SOFTMAX = 0,     /* exp(x - max) / sum over `axis` */
    KILN_DNNL_LOGSOFTMAX,      /* x - max - log(sum exp(x - max)) over `axis` */
    KILN_DNNL_BNORM,           /* dims [N, C, ...]: (x - mean[c]) / sqrt(var[c] + eps) * scale[c] + shift[c] */
    KILN_DNNL_LNORM,           /* statistics over the last dim: (x - m) / sqrt(v + eps) * scale[r] (+ shift[r]) */
};

struct kiln_dnnl_norm_desc {
    int32_t kind;              /* enum kiln_dnnl_norm_kind */
    int32_t rank;              /* 1..5 (BNORM: 2..5) */
    int64_t dims[5];           /* dense row-major, all > 0 */
    int32_t axis;              /* softmax axis, in [0, rank) */
    float   eps;               /* BNORM / LNORM */
    int32_t has_shift;         /* LNORM: shift (bias) present; BNORM always has one */
    /* LNORM: when non-NULL, scale / shift (dims[rank-1] floats) are copied
     * here and run ignores its scale / shift arguments (used when the model's
     * tensors had to be broadcast to the full row at prepare time). */
    const float *scale_const, *shift_const;
};

struct kiln_dnnl_norm;

/* Builds the primitive. KILN_OK with *out == NULL: no fast path (no engine,
 * oneDNN declines, or only its reference implementation would run). */
kiln_status kiln_dnnl_norm_create(const struct kiln_dnnl_norm_desc *d, struct kiln_dnnl_norm **out,
                                  kiln_error *err);
/* Runs it. scale, shift (LNORM: unless given at create; BNORM), mean and var
 * (BNORM) are float32 vectors of the normalized dim's length; unused ones may
 * be NULL. dst may equal src. */
kiln_status kiln_dnnl_norm_run(struct kiln_dnnl_norm *k, const float *src, float *dst,
                               const float *scale, const float *shift, const float *mean,
                               const float *var, kiln_error *err);
/* "dnnl:" + oneDNN's implementation name; owned by the kernel. */
const char *kiln_dnnl_norm_impl(const struct kiln_dnnl_norm *k);
void        kiln_dnnl_norm_free(void *k);

#endif
