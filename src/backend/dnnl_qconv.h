/* dnnl_qconv.h — oneDNN low-precision convolution and matmul: int8 (u8/s8
 * activations, s8 weights with per-output-channel scales) and bf16 (bf16
 * weights and activations, f32 accumulation and output).
 *
 * Like dnnl_conv.h, the op files describe a problem with concrete shapes and
 * get back an opaque kernel, or NULL when oneDNN has no good implementation
 * for it (the caller keeps its reference kernel). A kernel owns its
 * primitives, buffers and a stream, and is used by one thread at a time.
 *
 * int8 convolution runs in channels-last (nhwc): the only layout with a jit
 * int8 kernel on AVX2. Float or plain inputs are reordered (and quantized:
 * q = saturate(round(x / x_scale) + x_zp)) into a private buffer on entry;
 * a plain output is reordered from a private channels-last one.
 *
 * Without VNNI, oneDNN multiplies u8 x s8 pairs with vpmaddubsw, whose 16-bit
 * sum saturates when |w| > 63; such weights are re-quantized to 7 bits at
 * create time (w/2 rounded, scale doubled). s8 activations are handled inside
 * oneDNN the same way.
 */
#ifndef KILN_BACKEND_DNNL_QCONV_H
#define KILN_BACKEND_DNNL_QCONV_H

#include "backend/dnnl_conv.h"
#include "kiln.h"

#include <stdint.h>

enum kiln_lowp_kind {
    KILN_LOWP_INT8 = 0,
    KILN_LOWP_BF16 = 1,
};

struct kiln_dnnl_qconv_shape {
    int32_t kind;           /* enum kiln_lowp_kind */
    int32_t nsp;            /* spatial dims, 1..3 */
    int64_t N, C, M, G;
    int64_t in[KILN_DNNL_MAX_SP], out[KILN_DNNL_MAX_SP], k[KILN_DNNL_MAX_SP];
    int64_t s[KILN_DNNL_MAX_SP], d[KILN_DNNL_MAX_SP];
    int64_t pb[KILN_DNNL_MAX_SP], pe[KILN_DNNL_MAX_SP];
    /* int8 only */
    kiln_dtype src_dt;      /* FLOAT (quantized on entry), UINT8 or INT8 */
    kiln_dtype q_dt;        /* UINT8 or INT8: what the convolution reads */
    float   x_scale;        /* used when src_dt is FLOAT, and for the output scale */
    int32_t x_zp;
    kiln_dtype dst_dt;      /* FLOAT, or UINT8/INT8 (then y_scale, y_zp apply) */
    float   y_scale;
    int32_t y_zp;
    const float *w_scales;  /* n_w_scales = 1 or M, all finite and > 0 */
    int64_t n_w_scales;
    /* both */
    int32_t has_bias;
    int32_t act;            /* enum kiln_act_kind post-op; float dst only */
    float   act_alpha, act_beta;
    int32_t sum;            /* 1: dst += result, before act (the caller fills dst with the
                             * residual); float dst written in place only */
    int32_t src_cl, dst_cl; /* layouts of the user tensors (enum kiln_layout) */
};

struct kiln_dnnl_qconv;
struct kiln_wcache;

/* weights: int8 [M, C/G, k...] (ONNX Conv order), or bf16 bit patterns of
 * the same shape. bias (length M, may be NULL when !has_bias): int8: in
 * accumulator units (added to the integer sum before scaling, as QLinearConv's
 * B); bf16: plain float. Sets *out = NULL when oneDNN cannot do it. */
kiln_status kiln_dnnl_qconv_create(const struct kiln_dnnl_qconv_shape *sh, const void *weights,
                                   const float *bias, struct kiln_wcache *cache,
                                   struct kiln_dnnl_qconv **out, kiln_error *err);
kiln_status kiln_dnnl_qconv_run(struct kiln_dnnl_qconv *q, const void *src, void *dst,
                                kiln_error *err);
const char *kiln_dnnl_qconv_impl(const struct kiln_dnnl_qconv *q);
void        kiln_dnnl_qconv_free(void *q);

/* Y[M, N] = act(scale[n] * (X[M, K] @ W[K, N] + bias[n])): int8 (X f32
 * quantized on entry with x_scale/x_zp to u8, W s8 with per-column scales,
 * bias in accumulator units) or bf16 (W bf16 bits, bias float). X and Y are
 * row-major float32. */
struct kiln_dnnl_qmatmul_shape {
    int32_t kind;
    int64_t M, K, N;
    float   x_scale;
    int32_t x_zp;
    const float *w_scales;
    int64_t n_w_scales;
    int32_t has_bias;
    int32_t act;
    float   act_alpha, act_beta;
};

struct kiln_dnnl_qmatmul;

kiln_status kiln_dnnl_qmatmul_create(const struct kiln_dnnl_qmatmul_shape *sh, const void *weights,
                                     const float *bias, struct kiln_wcache *cache,
                                     struct kiln_dnnl_qmatmul **out, kiln_error *err);
kiln_status kiln_dnnl_qmatmul_run(struct kiln_dnnl_qmatmul *q, const float *src, float *dst,
                                  kiln_error *err);
const char *kiln_dnnl_qmatmul_impl(const struct kiln_dnnl_qmatmul *q);
void        kiln_dnnl_qmatmul_free(void *q);

/* 1 when int8 products of u8 x s8 do not saturate in 16 bits (VNNI/AMX). */
int kiln_cpu_has_int8_dot(void);
/* 1 when oneDNN can run bf16 convolutions natively (avx512bf16 or amx-bf16). */
int kiln_cpu_has_bf16(void);

#endif
