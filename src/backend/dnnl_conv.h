/* dnnl_conv.h — oneDNN fast paths for Conv, ConvTranspose and pooling.
 *
 * The op files describe a problem with concrete shapes (ONNX conventions:
 * dilation >= 1, NC + spatial plain row-major tensors) and get back an opaque
 * kernel, or NULL when oneDNN has no implementation for it, in which case the
 * caller keeps its reference kernel. Only f32 is handled here.
 *
 * A kernel owns its primitive, a stream, its scratchpad and (for constant
 * weights) the weights reordered once into the primitive's preferred layout.
 * A kernel is used by one thread at a time (it belongs to one session plan).
 */
#ifndef KILN_BACKEND_DNNL_CONV_H
#define KILN_BACKEND_DNNL_CONV_H

#include "kiln.h"
#include <stdint.h>

#define KILN_DNNL_MAX_SP 3

struct kiln_dnnl_conv_shape {
    int32_t nsp;            /* spatial dims, 1..3 */
    int32_t transposed;     /* 0: Conv (W is M x C/G x k), 1: ConvTranspose (W is C x M/G x k) */
    int32_t has_bias;
    int64_t N, C, M, G;     /* batch, input channels, output channels, groups */
    int64_t in[KILN_DNNL_MAX_SP], out[KILN_DNNL_MAX_SP], k[KILN_DNNL_MAX_SP];
    int64_t s[KILN_DNNL_MAX_SP], d[KILN_DNNL_MAX_SP];          /* stride, dilation (>= 1) */
    int64_t pb[KILN_DNNL_MAX_SP], pe[KILN_DNNL_MAX_SP];        /* padding begin / end */
    int32_t sum;            /* 1: dst += conv (sum post-op, before act): the caller fills
                             * dst with the residual before each run */
    int32_t act;            /* enum kiln_act_kind to fuse as a post-op (KILN_ACT_NONE: none) */
    float   act_alpha, act_beta;
    int32_t src_cl, dst_cl; /* layouts of src / dst (enum kiln_layout in ir/graph.h) */
};

struct kiln_dnnl_conv;

/* Builds the primitive. `weights` is the constant weight tensor (reordered
 * once, never modified) or NULL when the weights change per run. Returns
 * KILN_OK with *out == NULL when oneDNN cannot do this problem. */
struct kiln_wcache;
/* weights non-NULL: constant weights, packed once into the model's cache
 * (cache may be NULL: a private copy). */
kiln_status kiln_dnnl_conv_create(const struct kiln_dnnl_conv_shape *sh, const float *weights,
                                  struct kiln_wcache *cache, struct kiln_dnnl_conv **out,
                                  kiln_error *err);
/* weights may differ from the pointer given at create time: then they are
 * reordered again for this run. bias may be NULL only if has_bias == 0. */
kiln_status kiln_dnnl_conv_run(struct kiln_dnnl_conv *c, const float *src, const float *weights,
                               const float *bias, float *dst, kiln_error *err);
const char *kiln_dnnl_conv_impl(const struct kiln_dnnl_conv *c);
void        kiln_dnnl_conv_free(void *c);

enum kiln_dnnl_pool_alg {
    KILN_DNNL_POOL_MAX = 0,
    KILN_DNNL_POOL_AVG_INCLUDE_PAD,
    KILN_DNNL_POOL_AVG_EXCLUDE_PAD,
};

struct kiln_dnnl_pool_shape {
    int32_t nsp;            /* 1..3 */
    int32_t alg;            /* enum kiln_dnnl_pool_alg */
    int64_t N, C;
    int64_t in[KILN_DNNL_MAX_SP], out[KILN_DNNL_MAX_SP], k[KILN_DNNL_MAX_SP];
    int64_t s[KILN_DNNL_MAX_SP], d[KILN_DNNL_MAX_SP];
    int64_t pb[KILN_DNNL_MAX_SP], pe[KILN_DNNL_MAX_SP];        /* pe may include ceil-mode extension */
    int32_t src_cl, dst_cl; /* layouts of src / dst (enum kiln_layout) */
};

struct kiln_dnnl_pool;

kiln_status kiln_dnnl_pool_create(const struct kiln_dnnl_pool_shape *sh,
                                  struct kiln_dnnl_pool **out, kiln_error *err);
kiln_status kiln_dnnl_pool_run(struct kiln_dnnl_pool *p, const float *src, float *dst,
                               kiln_error *err);
const char *kiln_dnnl_pool_impl(const struct kiln_dnnl_pool *p);
void        kiln_dnnl_pool_free(void *p);

#endif
