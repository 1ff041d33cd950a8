/* fast_expf.h — e^x for float32, branch-free so that `omp simd` vectorizes
 * it: Cody-Waite range reduction x = n ln2 + r and a degree-6 polynomial for
 * e^r (Cephes coefficients, about 1 ulp), with 2^n built in the exponent
 * bits. x = -inf gives 0, NaN passes through. Used by unary.c's fast paths
 * and the attention kernel's softmax. */
#ifndef KILN_OPS_FAST_EXPF_H
#define KILN_OPS_FAST_EXPF_H

#include <stdint.h>
#include <string.h>

/* Clamping and the special cases use integer bit tests and masks: float
 * compares and selects here would stop GCC from if-converting (and thus
 * vectorizing) the loop under -ftrapping-math. */
static inline float fast_expf(float x) {
    uint32_t ix, tb, eb, yb;
    memcpy(&ix, &x, 4);
    uint32_t sm = (uint32_t)((int32_t)ix >> 31);                     /* ones if x < 0 */
    uint32_t lim = 0x42b17218u ^ (sm & (0x42b17218u ^ 0xc2ad3333u)); /* 88.72 or -86.6 */
    uint32_t cb = ix < lim ? ix : lim;                       /* keeps 2^(n-1) normal */
    float xc;
    memcpy(&xc, &cb, 4);
    /* n = round(x / ln2) sits in the low mantissa bits of t (1.5 * 2^23 bias) */
    float t = xc * 1.44269504088896341f + 12582912.0f;
    float n = t - 12582912.0f;
    float r = xc - n * 0.693359375f;
    r = r + n * 2.12194440e-4f;
    float p = 1.9875691500e-4f;
    p = p * r + 1.3981999507e-3f;
    p = p * r + 8.3334519073e-3f;
    p = p * r + 4.1665795894e-2f;
    p = p * r + 1.6666665459e-1f;
    p = p * r + 5.0000001201e-1f;
    p = p * r * r + r + 1.0f;
    memcpy(&tb, &t, 4);
    eb = (tb - 0x4B400000u + 126u) << 23;        /* 2^(n-1): 2^n overflows at n = 128 */
    float e, y;
    memcpy(&e, &eb, 4);
    y = p * e * 2.0f;
    memcpy(&yb, &y, 4);
    uint32_t ax = ix & 0x7fffffffu;
    uint32_t inf = 0u - (uint32_t)(ix > 0x42b17218u && ix < 0x80000000u); /* x > 88.72 */
    uint32_t zero = 0u - (uint32_t)(ix > 0xc2ad3333u);     /* x < -86.6: below 2.6e-38 */
    uint32_t nan = 0u - (uint32_t)(ax > 0x7f800000u);
    yb = (yb & ~inf) | (0x7f800000u & inf);
    yb &= ~zero;
    yb = (yb & ~nan) | (ix & nan);
    memcpy(&y, &yb, 4);
    return y;
}

#endif
