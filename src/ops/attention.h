/* attention.h — kiln.Attention's inner kernels (src/ops/attention.c), for
 * tests: the portable and the AVX2 builds side by side, so the portable one is
 * checked on machines that would never pick it. */
#ifndef KILN_OPS_ATTENTION_H
#define KILN_OPS_ATTENTION_H

#include <stdbool.h>
#include <stdint.h>

#define KILN_ATT_MR 6    /* tile rows */
#define KILN_ATT_NR 16   /* tile columns */

/* Whether the AVX2+FMA build can run here. */
bool  kiln_att_has_avx2(void);
/* C[6 x 16] = A[6 x K] (row stride lda) * B[K x 16] (row stride ldb), C row stride ldc. */
void  kiln_att_tile(bool avx2, const float *A, int64_t lda, const float *B, int64_t ldb, float *C,
                    int64_t ldc, int64_t K);
/* s = exp(s * scale + mask - max) in place; returns 1 / sum. mask may be NULL. */
float kiln_att_softmax(bool avx2, float *s, int64_t n, float scale, const float *mask, int64_t ms);

#endif
