/* dnnl_wino.h — Winograd fp32 convolution for 3x3, stride 1, dilation 1,
 * group 1 Conv on AVX2+FMA CPUs, where oneDNN 2.6 only has direct kernels
 * (its Winograd is AVX-512 only).
 *
 * F(m x m, 3x3) with m = 4 (6x6 input tiles) or m = 2 (4x4 tiles):
 *   weights  U = G g G^T, once at create (shared through the model's wcache),
 *            stored [alpha^2][C8][K8] (C, K rounded up to 8, zero padded);
 *   input    V = B^T d B per tile and 8-channel vector, [alpha^2][tiles][C8];
 *   product  alpha^2 independent [tiles x C8] . [C8 x K8] GEMMs (dnnl_sgemm);
 *   output   Y = A^T M A, plus bias, plus the fused residual, then the fused
 *            activation (ReLU / LeakyReLU / Clip), written in dst's layout.
 * Tiles are processed in chunks so the transformed buffers stay in cache;
 * each thread takes whole chunks (and, when chunks are fewer than threads,
 * slices of output channels) through all three steps in its own buffers,
 * allocated at create (a run allocates nothing), with one join per run.
 */
#ifndef KILN_BACKEND_DNNL_WINO_H
#define KILN_BACKEND_DNNL_WINO_H

#include "kiln.h"
#include <stdbool.h>
#include <stdint.h>

struct kiln_wcache;

struct kiln_wino_shape {
    int64_t N, C, K;          /* batch, input channels, output channels */
    int64_t H, W, OH, OW;     /* input and output spatial sizes */
    int64_t pt, pl;           /* top and left padding (bottom / right follow from OH, OW) */
    int32_t m;                /* output tile: 4 (F(4x4,3x3)) or 2 (F(2x2,3x3)) */
    int32_t has_bias;
    int32_t sum;              /* 1: add the residual passed to run (dst's shape and layout) */
    int32_t act;              /* enum kiln_act_kind; only kiln_wino_fuses_act() kinds are applied */
    float   act_alpha, act_beta;
    int32_t src_layout, dst_layout;   /* enum kiln_layout */
};

struct kiln_wino;

/* The CPU can run these kernels (AVX2 and FMA). */
bool kiln_wino_cpu_ok(void);
/* The activation kinds the output transform applies itself; the executor
 * applies the others after run. */
bool kiln_wino_fuses_act(int32_t act);

enum kiln_conv_algo { KILN_CONV_ALGO_AUTO = 0, KILN_CONV_ALGO_DIRECT, KILN_CONV_ALGO_WINOGRAD };
/* KILN_CONV_ALGO from the environment: "direct", "winograd" or unset / "auto". */
enum kiln_conv_algo kiln_conv_algo_env(void);

/* Which kernel the heuristic picks for this problem (the geometry must
 * already be a 3x3 / stride 1 / dilation 1 / group 1 conv): 0 for oneDNN
 * direct, else the Winograd tile m (2 or 4). `algo` forces it either way. */
int32_t kiln_wino_choose(const struct kiln_wino_shape *sh, enum kiln_conv_algo algo);

/* Builds the kernel for constant `weights` (K x C x 3 x 3, ONNX order), to
 * be run with n_threads OpenMP threads (the session's; buffers are per thread).
 * cache may be NULL (private copy of U). Returns KILN_OK with *out == NULL
 * when the CPU or the problem is not supported. */
kiln_status kiln_wino_create(const struct kiln_wino_shape *sh, const float *weights,
                             int32_t n_threads, struct kiln_wcache *cache, struct kiln_wino **out,
                             kiln_error *err);
/* bias may be NULL only without has_bias; res (sum only) may equal dst. */
kiln_status kiln_wino_run(struct kiln_wino *w, const float *src, const float *bias,
                          const float *res, float *dst, kiln_error *err);
const char *kiln_wino_impl(const struct kiln_wino *w);
void        kiln_wino_free(void *w);

#endif
