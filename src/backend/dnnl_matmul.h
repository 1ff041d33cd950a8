/* dnnl_matmul.h — float32 matrix products through oneDNN's matmul primitive.
 *
 * The op files (src/ops/matmul.c) describe a product with plain shapes and
 * strides; this file owns every dnnl_* call. A primitive is built once for
 * concrete shapes (prepare time) and executed many times. Constant weights are
 * reordered once into the layout oneDNN prefers, into memory this object owns;
 * the caller's constant buffer is only read.
 *
 *   dst = act(alpha * (src x weights) [+ bias] [+ sum_beta * dst_before])
 *
 * Every tensor has the same rank (2..KILN_MAX_RANK); batch dims of src/weights
 * may be 1 (broadcast). dst and bias are dense row-major.
 */
#ifndef KILN_BACKEND_DNNL_MATMUL_H
#define KILN_BACKEND_DNNL_MATMUL_H

#include "kiln.h"
#include <stdbool.h>
#include <stdint.h>

struct kiln_dnnl_matmul;

struct kiln_dnnl_matmul_desc {
    int32_t      rank;                      /* 2..KILN_MAX_RANK */
    int64_t      src_dims[KILN_MAX_RANK];   /* [..., M, K] */
    int64_t      src_strides[KILN_MAX_RANK];/* elements; transposes allowed */
    int64_t      wei_dims[KILN_MAX_RANK];   /* [..., K, N] */
    int64_t      wei_strides[KILN_MAX_RANK];
    int64_t      dst_dims[KILN_MAX_RANK];   /* [..., M, N], dense */
    bool         has_bias;
    int64_t      bias_dims[KILN_MAX_RANK];  /* dims 1 or equal to dst's; dense */
    float        alpha;                     /* output scale (1 = none) */
    float        sum_beta;                  /* 0 = no sum post-op */
    const float *wei_const;                 /* non-NULL: constant weights, reordered once */
    int32_t      act;                       /* enum kiln_act_kind (ir/graph.h); 0 = none */
    float        act_alpha, act_beta;
};

/* Whether an activation kind (enum kiln_act_kind) can run as a post-op. */
bool kiln_dnnl_matmul_act_ok(int32_t act);

/* Builds the primitive. Returns KILN_ERR_UNSUPPORTED when oneDNN has no
 * implementation (or no engine): the caller falls back to its reference
 * kernel. *impl (may be NULL) receives a short name owned by the object. */
kiln_status kiln_dnnl_matmul_create(const struct kiln_dnnl_matmul_desc *d,
                                    struct kiln_dnnl_matmul **out, const char **impl,
                                    kiln_error *err);
/* Runs it. wei is ignored when the weights were constant; bias is ignored
 * without has_bias. With sum_beta, dst must hold the addend on entry. */
kiln_status kiln_dnnl_matmul_exec(struct kiln_dnnl_matmul *m, const float *src,
                                  const float *wei, const float *bias, float *dst,
                                  kiln_error *err);
void        kiln_dnnl_matmul_free(struct kiln_dnnl_matmul *m);

#endif
