/* attention.c — op family 'attention': the fused scaled-dot-product attention
 * that the fuse-attention pass writes (domain "kiln", op "Attention"; see
 * docs/passes.md and docs/kernels.md). It never comes from a model file.
 *
 *   kiln.Attention(Q, K, V, mask?; scale, q_perm?, kt_perm?, v_perm?, out_perm?)
 *
 * Logical operands (each input read through its perm, no copy):
 *   Q'  = Transpose(Q, q_perm)   [..., Sq, D]
 *   Kt' = Transpose(K, kt_perm)  [..., D, Skv]    (the right operand of Q·K^T)
 *   V'  = Transpose(V, v_perm)   [..., Skv, Dv]
 *   O   = Softmax(scale * Q'·Kt' + mask, axis=-1) · V'      [..., Sq, Dv]
 *   out = Transpose(O, out_perm)
 * An absent perm is the identity. Batch dims broadcast as in numpy MatMul and
 * Add (ranks 2..4, the shorter ones padded on the left); the mask broadcasts
 * against the scores like the Add it replaces, and may widen them. Float32
 * only: the pass fuses only chains whose scale is a float32 constant, which
 * makes every operand float32.
 *
 * exec is the reference: plain loops, one output row at a time, with the
 * products summed in double. prepare builds the fast kernel: per (batch, head)
 * and block of ATT_RB query rows it packs K^T and V of that head once, computes
 * the block's scores with a 6x16 register-tiled product, applies scale, mask
 * and softmax in place (vectorized exp) and multiplies by V with the same
 * tile. Only one block of scores (ATT_RB x Skv) per thread exists at a time;
 * the full [B, H, Sq, Skv] score tensor is never written. The tile has an
 * AVX2+FMA build chosen at run time and a portable one.
 */
#include "ops/op.h"
#include "ops/attention.h"
#include "ops/fast_expf.h"

#if defined(__x86_64__) || defined(__i386__)
#include <immintrin.h>
#define ATT_X86 1
#endif
#include <math.h>
#include <omp.h>
#include <stdlib.h>
#include <string.h>

#define ATT_R 4   /* logical rank everything is padded to */

/* One operand as a 4-D strided view: dims and element strides (0 where the
 * dim is 1, so that it broadcasts). */
struct att_view {
    int64_t dims[ATT_R], str[ATT_R];
};

struct att_shape {
    struct att_view q, kt, v, m, o;  /* o: strides into the output buffer */
    bool    has_mask;
    int64_t nb[2];                   /* broadcast batch dims */
    int64_t Sq, Skv, D, Dv;
    int32_t out_rank;
    int64_t out_dims[ATT_R];         /* of `out`, after out_perm */
};

/* perm attribute of length rank (a permutation), or identity when absent. */
static kiln_status att_perm(const struct kiln_node *n, const char *name, int32_t rank,
                            int64_t *perm, kiln_error *err) {
    int64_t cnt = 0;
    const int64_t *p = kiln_attr_ints(n, name, &cnt);
    if (!p) {
        for (int32_t i = 0; i < rank; i++) perm[i] = i;
        return KILN_OK;
    }
    if (cnt != rank)
        return kiln_op_fail(err, KILN_ERR_SHAPE, n, "%s has %lld entries for a rank-%d operand",
                            name, (long long)cnt, rank);
    bool seen[ATT_R] = {false};
    for (int32_t i = 0; i < rank; i++) {
        if (p[i] < 0 || p[i] >= rank || seen[p[i]])
            return kiln_op_fail(err, KILN_ERR_BAD_MODEL, n, "%s is not a permutation", name);
        seen[p[i]] = true;
        perm[i] = p[i];
    }
    return KILN_OK;
}

/* The logical (permuted) view of v, padded on the left to rank 4. */
static kiln_status att_view_of(const struct kiln_node *n, const char *what, const char *perm_name,
                               const struct kiln_value *v, struct att_view *w, kiln_error *err) {
    if (v->rank < 2 || v->rank > ATT_R)
        return kiln_op_fail(err, KILN_ERR_SHAPE, n, "%s has rank %d; expected 2..4", what, v->rank);
    int64_t perm[ATT_R], st[KILN_MAX_RANK];
    kiln_status s = att_perm(n, perm_name, v->rank, perm, err);
    if (s) return s;
    kiln_strides(v->rank, v->dims, st);
    int32_t pad = ATT_R - v->rank;
    for (int32_t i = 0; i < ATT_R; i++) {
        if (i < pad) {
            w->dims[i] = 1;
            w->str[i] = 0;
        } else {
            int64_t src = perm[i - pad];
            w->dims[i] = v->dims[src];
            w->str[i] = w->dims[i] == 1 ? 0 : st[src];
        }
    }
    return KILN_OK;
}

static bool bcast(int64_t *acc, int64_t d) {
    if (*acc == d || d == 1) return true;
    if (*acc == 1) {
        *acc = d;
        return true;
    }
    return false;
}

static kiln_status att_analyze(const struct kiln_node *n, const struct kiln_value *const *in,
                               int n_in, struct att_shape *a, kiln_error *err) {
    memset(a, 0, sizeof *a);
    kiln_status st = kiln_op_check_arity(n, n_in, 3, 4, err);
    if (st) return st;
    for (int i = 0; i < n_in; i++)
        if (in[i] && in[i]->dtype != KILN_DTYPE_FLOAT)
            return kiln_op_fail(err, KILN_ERR_UNSUPPORTED, n, "input %d is %s; expected float32",
                                i, kiln_dtype_name(in[i]->dtype));
    if (!kiln_attr_find(n, "scale"))
        return kiln_op_fail(err, KILN_ERR_BAD_MODEL, n, "attribute scale is required");
    if ((st = att_view_of(n, "Q", "q_perm", in[0], &a->q, err)) ||
        (st = att_view_of(n, "K", "kt_perm", in[1], &a->kt, err)) ||
        (st = att_view_of(n, "V", "v_perm", in[2], &a->v, err)))
        return st;
    a->Sq = a->q.dims[2];
    a->D = a->q.dims[3];
    a->Skv = a->kt.dims[3];
    a->Dv = a->v.dims[3];
    if (a->kt.dims[2] != a->D)
        return kiln_op_fail(err, KILN_ERR_SHAPE, n, "Q has D=%lld but K has D=%lld",
                            (long long)a->D, (long long)a->kt.dims[2]);
    int32_t rank = in[0]->rank;
    if (in[1]->rank > rank) rank = in[1]->rank;
    int64_t nb[2] = {1, 1};
    for (int i = 0; i < 2; i++)
        if (!bcast(&nb[i], a->q.dims[i]) || !bcast(&nb[i], a->kt.dims[i]))
            return kiln_op_fail(err, KILN_ERR_SHAPE, n, "batch dims of Q and K do not broadcast");
    int64_t sq = a->Sq, skv = a->Skv;
    a->has_mask = n_in > 3 && in[3];
    if (a->has_mask) {
        const struct kiln_value *m = in[3];
        if (m->rank > ATT_R)
            return kiln_op_fail(err, KILN_ERR_SHAPE, n, "mask has rank %d; at most 4", m->rank);
        int64_t st_m[KILN_MAX_RANK];
        kiln_strides(m->rank, m->dims, st_m);
        int32_t pad = ATT_R - m->rank;
        for (int32_t i = 0; i < ATT_R; i++) {
            a->m.dims[i] = i < pad ? 1 : m->dims[i - pad];
            a->m.str[i] = i < pad || a->m.dims[i] == 1 ? 0 : st_m[i - pad];
        }
        if (m->rank > rank) rank = m->rank;
        if (!bcast(&nb[0], a->m.dims[0]) || !bcast(&nb[1], a->m.dims[1]) ||
            !bcast(&sq, a->m.dims[2]) || !bcast(&skv, a->m.dims[3]))
            return kiln_op_fail(err, KILN_ERR_SHAPE, n, "mask does not broadcast to the scores");
    }
    /* P·V: the contraction dim does not broadcast */
    if (a->v.dims[2] != skv)
        return kiln_op_fail(err, KILN_ERR_SHAPE, n, "scores have %lld keys but V has %lld rows",
                            (long long)skv, (long long)a->v.dims[2]);
    if (!bcast(&nb[0], a->v.dims[0]) || !bcast(&nb[1], a->v.dims[1]))
        return kiln_op_fail(err, KILN_ERR_SHAPE, n, "batch dims of the scores and V do not broadcast");
    if (in[2]->rank > rank) rank = in[2]->rank;
    /* Q rows and K columns repeat where the mask widened them */
    if (sq != a->Sq) a->q.str[2] = 0;
    if (skv != a->Skv) a->kt.str[3] = 0;
    a->Sq = sq;
    a->Skv = skv;
    a->nb[0] = nb[0];
    a->nb[1] = nb[1];
    int64_t od[ATT_R] = {nb[0], nb[1], a->Sq, a->Dv};
    int64_t prod = 1;
    for (int i = 0; i < ATT_R; i++)
        if (od[i] < 0 || __builtin_mul_overflow(prod, od[i], &prod))
            return kiln_op_fail(err, KILN_ERR_LIMIT, n, "output element count overflows");
    int64_t sc;
    if (__builtin_mul_overflow(a->Sq, a->Skv, &sc))
        return kiln_op_fail(err, KILN_ERR_LIMIT, n, "score block size overflows");
    /* output: logical O is od[4 - rank ..]; out = Transpose(O, out_perm) */
    int64_t perm[ATT_R];
    if ((st = att_perm(n, "out_perm", rank, perm, err))) return st;
    int32_t pad = ATT_R - rank;
    a->out_rank = rank;
    int64_t ost[KILN_MAX_RANK];
    for (int32_t j = 0; j < rank; j++) a->out_dims[j] = od[pad + perm[j]];
    kiln_strides(rank, a->out_dims, ost);
    for (int32_t i = 0; i < ATT_R; i++) a->o.dims[i] = od[i];
    for (int32_t i = 0; i < pad; i++) a->o.str[i] = 0;
    for (int32_t j = 0; j < rank; j++) a->o.str[pad + perm[j]] = ost[j];
    return KILN_OK;
}

static kiln_status att_infer(const struct kiln_node *n, const struct kiln_value *const *in,
                             int n_in, struct kiln_value *const *out, int n_out, kiln_error *err) {
    struct att_shape a;
    kiln_status st = att_analyze(n, in, n_in, &a, err);
    if (st) return st;
    if (n_out != 1 || !out[0])
        return kiln_op_fail(err, KILN_ERR_BAD_MODEL, n, "expected one output");
    kiln_value_set_shape(out[0], KILN_DTYPE_FLOAT, a.out_rank, a.out_dims);
    return KILN_OK;
}

static inline int64_t boff(const struct att_view *w, int64_t b0, int64_t b1) {
    return b0 * w->str[0] + b1 * w->str[1];
}

/* ---- reference ---------------------------------------------------------- */

static kiln_status att_exec(const struct kiln_node *n, struct kiln_exec_ctx *ctx,
                            const struct kiln_value *const *in, int n_in,
                            struct kiln_value *const *out, int n_out, kiln_error *err) {
    struct att_shape a;
    kiln_status st = att_analyze(n, in, n_in, &a, err);
    if (st) return st;
    float scale = kiln_attr_float(n, "scale", 1.0f);
    const float *q = in[0]->data, *k = in[1]->data, *v = in[2]->data;
    const float *m = a.has_mask ? in[3]->data : NULL;
    float *o = out[0]->data;
    int64_t rows = a.nb[0] * a.nb[1] * a.Sq;
    if (rows == 0 || a.Dv == 0) return KILN_OK;
    int fail = 0;
#pragma omp parallel for schedule(static) num_threads(kiln_op_threads(ctx)) \
    if (rows > 1 && rows * a.Skv * (a.D + a.Dv) > 65536)
    for (int64_t r = 0; r < rows; r++) {
        int64_t b0 = r / (a.nb[1] * a.Sq), b1 = (r / a.Sq) % a.nb[1], i = r % a.Sq;
        float *s = malloc((size_t)(a.Skv > 0 ? a.Skv : 1) * sizeof *s);
        if (!s) {
#pragma omp atomic write
            fail = 1;
            continue;
        }
        const float *qr = q + boff(&a.q, b0, b1) + i * a.q.str[2];
        const float *kb = k + boff(&a.kt, b0, b1);
        const float *vb = v + boff(&a.v, b0, b1);
        float mx = -INFINITY;
        for (int64_t j = 0; j < a.Skv; j++) {
            double dot = 0;
            for (int64_t d = 0; d < a.D; d++)
                dot += (double)qr[d * a.q.str[3]] * kb[d * a.kt.str[2] + j * a.kt.str[3]];
            float x = (float)dot * scale;
            if (m) x += m[boff(&a.m, b0, b1) + i * a.m.str[2] + j * a.m.str[3]];
            s[j] = x;
            if (x > mx) mx = x;
        }
        /* as Softmax: a row of -inf gives NaN, like the unfused graph */
        double sum = 0;
        for (int64_t j = 0; j < a.Skv; j++) {
            s[j] = expf(s[j] - mx);
            sum += s[j];
        }
        float *orow = o + boff(&a.o, b0, b1) + i * a.o.str[2];
        for (int64_t c = 0; c < a.Dv; c++) {
            double acc = 0;
            for (int64_t j = 0; j < a.Skv; j++)
                acc += (double)s[j] * vb[j * a.v.str[2] + c * a.v.str[3]];
            orow[c * a.o.str[3]] = a.Skv ? (float)(acc / sum) : 0.0f;   /* no keys: P·V = 0 */
        }
        free(s);
    }
    if (fail) return kiln_op_fail(err, KILN_ERR_NO_MEMORY, n, "out of memory for attention scores");
    return KILN_OK;
}

static double att_flops(const struct kiln_node *n, const struct kiln_value *const *in, int n_in,
                        struct kiln_value *const *out, int n_out) {
    struct att_shape a;
    if (att_analyze(n, in, n_in, &a, NULL)) return 0;
    return 2.0 * (double)a.nb[0] * (double)a.nb[1] * (double)a.Sq * (double)a.Skv *
           (double)(a.D + a.Dv);
}

/* ---- fast kernel -------------------------------------------------------- */

#define ATT_RB 48   /* query rows per block: scores block ATT_RB x Skv stays in L1/L2 */
#define ATT_NR KILN_ATT_NR   /* tile columns */
#define ATT_MR KILN_ATT_MR   /* tile rows: 6x16 accumulators fill 12 of AVX2's 16 registers */


/* C[MR x NR] = A[MR x K] (row stride lda) * B[K x NR] (row stride ldb), C row
 * stride ldc; the portable form. The AVX2 form below is the same product with
 * the 6x16 accumulators held in registers (GCC keeps the array in memory). */
static void tile_generic(const float *A, int64_t lda, const float *B, int64_t ldb, float *C,
                         int64_t ldc, int64_t K) {
    float acc[ATT_MR][ATT_NR];
    for (int r = 0; r < ATT_MR; r++)
        for (int c = 0; c < ATT_NR; c++) acc[r][c] = 0.0f;
    for (int64_t k = 0; k < K; k++) {
        const float *b = B + k * ldb;
        for (int r = 0; r < ATT_MR; r++) {
            const float av = A[r * lda + k];
#pragma omp simd
            for (int c = 0; c < ATT_NR; c++) acc[r][c] += av * b[c];
        }
    }
    for (int r = 0; r < ATT_MR; r++) memcpy(C + r * ldc, acc[r], sizeof acc[r]);
}

#ifdef ATT_X86
__attribute__((target("avx2,fma"))) static void tile_avx2(const float *A, int64_t lda,
                                                          const float *B, int64_t ldb, float *C,
                                                          int64_t ldc, int64_t K) {
    __m256 c00 = _mm256_setzero_ps(), c01 = c00, c10 = c00, c11 = c00, c20 = c00, c21 = c00;
    __m256 c30 = c00, c31 = c00, c40 = c00, c41 = c00, c50 = c00, c51 = c00;
    const float *a0 = A, *a1 = A + lda, *a2 = A + 2 * lda, *a3 = A + 3 * lda, *a4 = A + 4 * lda,
                *a5 = A + 5 * lda;
    for (int64_t k = 0; k < K; k++) {
        const __m256 b0 = _mm256_loadu_ps(B + k * ldb), b1 = _mm256_loadu_ps(B + k * ldb + 8);
        __m256 a = _mm256_broadcast_ss(a0 + k);
        c00 = _mm256_fmadd_ps(a, b0, c00);
        c01 = _mm256_fmadd_ps(a, b1, c01);
        a = _mm256_broadcast_ss(a1 + k);
        c10 = _mm256_fmadd_ps(a, b0, c10);
        c11 = _mm256_fmadd_ps(a, b1, c11);
        a = _mm256_broadcast_ss(a2 + k);
        c20 = _mm256_fmadd_ps(a, b0, c20);
        c21 = _mm256_fmadd_ps(a, b1, c21);
        a = _mm256_broadcast_ss(a3 + k);
        c30 = _mm256_fmadd_ps(a, b0, c30);
        c31 = _mm256_fmadd_ps(a, b1, c31);
        a = _mm256_broadcast_ss(a4 + k);
        c40 = _mm256_fmadd_ps(a, b0, c40);
        c41 = _mm256_fmadd_ps(a, b1, c41);
        a = _mm256_broadcast_ss(a5 + k);
        c50 = _mm256_fmadd_ps(a, b0, c50);
        c51 = _mm256_fmadd_ps(a, b1, c51);
    }
    _mm256_storeu_ps(C, c00);
    _mm256_storeu_ps(C + 8, c01);
    _mm256_storeu_ps(C + ldc, c10);
    _mm256_storeu_ps(C + ldc + 8, c11);
    _mm256_storeu_ps(C + 2 * ldc, c20);
    _mm256_storeu_ps(C + 2 * ldc + 8, c21);
    _mm256_storeu_ps(C + 3 * ldc, c30);
    _mm256_storeu_ps(C + 3 * ldc + 8, c31);
    _mm256_storeu_ps(C + 4 * ldc, c40);
    _mm256_storeu_ps(C + 4 * ldc + 8, c41);
    _mm256_storeu_ps(C + 5 * ldc, c50);
    _mm256_storeu_ps(C + 5 * ldc + 8, c51);
}
#endif

/* Unnormalized row softmax of s[0..n) in place after s = s * scale + mask
 * (mask NULL or a row with element stride ms): s[j] = e^(s[j] - max); returns
 * 1 / sum, which the caller applies to the row's output (Dv values instead of
 * n). A portable and an AVX2 build of the same C: GCC widens the `omp simd`
 * loops to the target's vectors. */
#define ATT_SOFTMAX(SUF, ATTR)                                                                 \
    ATTR static float softmax_##SUF(float *s, int64_t n, float scale, const float *mask,       \
                                    int64_t ms) {                                              \
        float mx = -INFINITY;                                                                  \
        if (mask && ms == 1) {                                                                 \
            _Pragma("omp simd reduction(max : mx)") for (int64_t j = 0; j < n; j++) {          \
                float x = s[j] * scale + mask[j];                                              \
                s[j] = x;                                                                      \
                mx = x > mx ? x : mx;                                                          \
            }                                                                                  \
        } else if (mask) {                                                                     \
            for (int64_t j = 0; j < n; j++) {                                                  \
                float x = s[j] * scale + mask[j * ms];                                         \
                s[j] = x;                                                                      \
                mx = x > mx ? x : mx;                                                          \
            }                                                                                  \
        } else {                                                                               \
            _Pragma("omp simd reduction(max : mx)") for (int64_t j = 0; j < n; j++) {          \
                float x = s[j] * scale;                                                        \
                s[j] = x;                                                                      \
                mx = x > mx ? x : mx;                                                          \
            }                                                                                  \
        }                                                                                      \
        float sum = 0.0f;                                                                      \
        _Pragma("omp simd reduction(+ : sum)") for (int64_t j = 0; j < n; j++) {               \
            float e = fast_expf(s[j] - mx);                                                     \
            s[j] = e;                                                                          \
            sum += e;                                                                          \
        }                                                                                      \
        return 1.0f / sum;                                                                     \
    }

ATT_SOFTMAX(generic, )
#ifdef ATT_X86
ATT_SOFTMAX(avx2, __attribute__((target("avx2,fma"))))
#endif

struct att_fast {
    void (*tile)(const float *, int64_t, const float *, int64_t, float *, int64_t, int64_t);
    float (*softmax)(float *, int64_t, float, const float *, int64_t);
};

static int64_t round_up(int64_t x, int64_t m) { return (x + m - 1) / m * m; }

/* Query rows [i_begin, i_end) of one (b0, b1) head. K^T (and V, unless its
 * rows can be read in place) are packed once for the range; Q rows and the
 * output are read and written in place where they are contiguous, through
 * small buffers where not. ws layout (floats): kt [D x Skvp], v [Skv x Dvp],
 * s [RB x Skvp], q [MR x D], o [MR x Dvp]. */
static void att_head(const struct att_fast *f, const struct att_shape *a, float scale,
                     const float *q, const float *k, const float *v, const float *m, float *o,
                     int64_t b0, int64_t b1, int64_t i_begin, int64_t i_end, float *ws) {
    const int64_t Skv = a->Skv, D = a->D, Dv = a->Dv;
    const int64_t Skvp = round_up(Skv, ATT_NR), Dvp = round_up(Dv, ATT_NR);
    float *kt = ws, *vp = kt + D * Skvp, *s = vp + Skv * Dvp, *qt = s + ATT_RB * Skvp,
          *ot = qt + ATT_MR * D;
    const float *kb = k + boff(&a->kt, b0, b1), *vb = v + boff(&a->v, b0, b1);
    const float *qb = q + boff(&a->q, b0, b1), *mb = m ? m + boff(&a->m, b0, b1) : NULL;
    float *ob = o + boff(&a->o, b0, b1);
    /* K^T [D x Skvp], zero padded; reading key rows contiguously when they are */
    for (int64_t d = 0; d < D; d++)
        for (int64_t j = Skv; j < Skvp; j++) kt[d * Skvp + j] = 0.0f;
    if (a->kt.str[2] == 1) {
        /* 8 key rows at a time: reads stay in 8 cached rows, writes are runs of 8 */
        for (int64_t j0 = 0; j0 < Skv; j0 += 8) {
            int64_t nj = Skv - j0 < 8 ? Skv - j0 : 8;
            const float *src = kb + j0 * a->kt.str[3];
            for (int64_t d = 0; d < D; d++)
                for (int64_t jj = 0; jj < nj; jj++)
                    kt[d * Skvp + j0 + jj] = src[jj * a->kt.str[3] + d];
        }
    } else {
        for (int64_t d = 0; d < D; d++)
            for (int64_t j = 0; j < Skv; j++) kt[d * Skvp + j] = kb[d * a->kt.str[2] + j * a->kt.str[3]];
    }
    /* V [Skv x Dvp]: in place when rows are contiguous and whole tiles */
    const float *vuse = vp;
    int64_t ldv = Dvp;
    if (a->v.str[3] == 1 && Dv == Dvp && a->v.str[2] != 0) {
        vuse = vb;
        ldv = a->v.str[2];
    } else {
        for (int64_t j = 0; j < Skv; j++)
            for (int64_t c = 0; c < Dvp; c++)
                vp[j * Dvp + c] = c < Dv ? vb[j * a->v.str[2] + c * a->v.str[3]] : 0.0f;
    }
    bool q_in_place = a->q.str[3] == 1 && a->q.str[2] != 0;
    bool o_in_place = a->o.str[3] == 1 && Dv == Dvp;
    for (int64_t i0 = i_begin; i0 < i_end; i0 += ATT_RB) {
        int64_t rb = i_end - i0 < ATT_RB ? i_end - i0 : ATT_RB;
        /* scores of the block, MR rows at a time */
        for (int64_t r = 0; r < rb; r += ATT_MR) {
            int64_t mr = rb - r < ATT_MR ? rb - r : ATT_MR;
            const float *A;
            int64_t lda;
            if (q_in_place && mr == ATT_MR) {
                A = qb + (i0 + r) * a->q.str[2];
                lda = a->q.str[2];
            } else {
                for (int64_t rr = 0; rr < ATT_MR; rr++)
                    for (int64_t d = 0; d < D; d++)
                        qt[rr * D + d] = rr < mr ? qb[(i0 + r + rr) * a->q.str[2] + d * a->q.str[3]]
                                                 : 0.0f;
                A = qt;
                lda = D;
            }
            float *srow = s + r * Skvp;
            if (mr == ATT_MR) {
                for (int64_t j = 0; j < Skvp; j += ATT_NR) f->tile(A, lda, kt + j, Skvp, srow + j, Skvp, D);
            } else {   /* a partial group: the tile's extra rows land in ot */
                for (int64_t j = 0; j < Skvp; j += ATT_NR) {
                    f->tile(A, lda, kt + j, Skvp, ot, ATT_NR, D);
                    for (int64_t rr = 0; rr < mr; rr++)
                        memcpy(srow + rr * Skvp + j, ot + rr * ATT_NR, ATT_NR * sizeof *ot);
                }
            }
        }
        float inv[ATT_RB];
        for (int64_t r = 0; r < rb; r++) {
            float *row = s + r * Skvp;
            const float *mr = mb ? mb + (i0 + r) * a->m.str[2] : NULL;
            inv[r] = f->softmax(row, Skv, scale, mr, a->m.str[3]);
        }
        /* a partial last group reads up to MR - 1 rows past rb (ws has room):
         * zeros, whose results are dropped */
        for (int64_t r = rb; r < round_up(rb, ATT_MR); r++)
            memset(s + r * Skvp, 0, (size_t)Skv * sizeof *s);
        /* P · V, MR rows at a time; the output rows are written in place when
         * they are contiguous and the group is whole */
        for (int64_t r = 0; r < rb; r += ATT_MR) {
            int64_t mr = rb - r < ATT_MR ? rb - r : ATT_MR;
            const float *A = s + r * Skvp;
            if (o_in_place && mr == ATT_MR) {
                float *dst = ob + (i0 + r) * a->o.str[2];
                for (int64_t c = 0; c < Dvp; c += ATT_NR)
                    f->tile(A, Skvp, vuse + c, ldv, dst + c, a->o.str[2], Skv);
                for (int64_t rr = 0; rr < ATT_MR; rr++) {
                    float *row = dst + rr * a->o.str[2];
                    const float w = inv[r + rr];
#pragma omp simd
                    for (int64_t c = 0; c < Dv; c++) row[c] *= w;
                }
                continue;
            }
            for (int64_t c = 0; c < Dvp; c += ATT_NR) {
                f->tile(A, Skvp, vuse + c, ldv, ot + c, Dvp, Skv);
            }
            for (int64_t rr = 0; rr < mr; rr++) {
                float *dst = ob + (i0 + r + rr) * a->o.str[2];
                const float *src = ot + rr * Dvp;
                const float w = inv[r + rr];
                for (int64_t c = 0; c < Dv; c++) dst[c * a->o.str[3]] = src[c] * w;
            }
        }
    }
}

/* Workspace floats per thread, or -1 when it overflows. */
static int64_t att_ws_floats(const struct att_shape *a) {
    int64_t Skvp = round_up(a->Skv, ATT_NR), Dvp = round_up(a->Dv, ATT_NR), t, sum = 0;
    int64_t parts[5][2] = {{a->D, Skvp}, {a->Skv, Dvp}, {ATT_RB + ATT_MR, Skvp}, {ATT_MR, a->D},
                           {ATT_MR, Dvp}};
    for (int i = 0; i < 5; i++) {
        if (__builtin_mul_overflow(parts[i][0], parts[i][1], &t) ||
            __builtin_add_overflow(sum, t, &sum))
            return -1;
    }
    return sum;
}

static kiln_status att_fast_run(const struct kiln_node *n, struct kiln_exec_ctx *ctx, void *state,
                                const struct kiln_value *const *in, int n_in,
                                struct kiln_value *const *out, int n_out, kiln_error *err) {
    const struct att_fast *f = state;
    struct att_shape a;
    kiln_status st = att_analyze(n, in, n_in, &a, err);
    if (st) return st;
    int64_t wsf = att_ws_floats(&a);
    /* no keys: the reference writes the zeros P·V gives */
    if (wsf < 0 || (uint64_t)wsf > SIZE_MAX / sizeof(float) || a.Skv == 0)
        return att_exec(n, ctx, in, n_in, out, n_out, err);
    float scale = kiln_attr_float(n, "scale", 1.0f);
    const float *m = a.has_mask ? in[3]->data : NULL;
    int64_t heads = a.nb[0] * a.nb[1];
    if (heads == 0 || a.Sq == 0 || a.Dv == 0) return KILN_OK;
    int nth = kiln_op_threads(ctx);
    /* whole heads per task (K and V packed once) when there are enough of
     * them to share out; else blocks of rows, each packing its head again */
    int64_t per = heads >= nth ? a.Sq : ATT_RB;
    int64_t nblk = (a.Sq + per - 1) / per, tasks = heads * nblk;
    if (nth > tasks) nth = (int)tasks;
    int fail = 0;
#pragma omp parallel num_threads(nth) if (nth > 1)
    {
        float *ws = malloc((size_t)(wsf > 0 ? wsf : 1) * sizeof *ws);
        if (!ws) {
#pragma omp atomic write
            fail = 1;
        }
#pragma omp for schedule(static)
        for (int64_t t = 0; t < tasks; t++) {
            if (!ws) continue;
            int64_t h = t / nblk, blk = t % nblk, i0 = blk * per;
            int64_t i1 = i0 + per < a.Sq ? i0 + per : a.Sq;
            att_head(f, &a, scale, in[0]->data, in[1]->data, in[2]->data, m, out[0]->data,
                     h / a.nb[1], h % a.nb[1], i0, i1, ws);
        }
        free(ws);
    }
    if (fail) return kiln_op_fail(err, KILN_ERR_NO_MEMORY, n, "out of memory for attention blocks");
    return KILN_OK;
}

bool kiln_att_has_avx2(void) {
#ifdef ATT_X86
    __builtin_cpu_init();
    return __builtin_cpu_supports("avx2") && __builtin_cpu_supports("fma");
#else
    return false;
#endif
}

void kiln_att_tile(bool avx2, const float *A, int64_t lda, const float *B, int64_t ldb, float *C,
                   int64_t ldc, int64_t K) {
#ifdef ATT_X86
    if (avx2 && kiln_att_has_avx2()) {
        tile_avx2(A, lda, B, ldb, C, ldc, K);
        return;
    }
#endif
    tile_generic(A, lda, B, ldb, C, ldc, K);
}

float kiln_att_softmax(bool avx2, float *s, int64_t n, float scale, const float *mask, int64_t ms) {
#ifdef ATT_X86
    if (avx2 && kiln_att_has_avx2()) return softmax_avx2(s, n, scale, mask, ms);
#endif
    return softmax_generic(s, n, scale, mask, ms);
}

static kiln_status att_prepare(const struct kiln_node *n, struct kiln_exec_ctx *ctx,
                               const struct kiln_value *const *in, int n_in,
                               struct kiln_value *const *out, int n_out, struct kiln_kernel *k,
                               kiln_error *err) {
    for (int i = 0; i < n_in; i++)
        if (in[i] && in[i]->layout != KILN_LAYOUT_PLAIN) return KILN_OK;
    if (!out[0] || out[0]->layout != KILN_LAYOUT_PLAIN) return KILN_OK;
    struct att_shape a;
    if (att_analyze(n, in, n_in, &a, NULL) || att_ws_floats(&a) < 0) return KILN_OK;
    struct att_fast *f = calloc(1, sizeof *f);
    if (!f) return kiln_op_fail(err, KILN_ERR_NO_MEMORY, n, "out of memory");
    bool avx2 = kiln_att_has_avx2();
    f->tile = tile_generic;
    f->softmax = softmax_generic;
#ifdef ATT_X86
    if (avx2) {
        f->tile = tile_avx2;
        f->softmax = softmax_avx2;
    }
#endif
    k->run = att_fast_run;
    k->state = f;
    k->release = free;
    k->impl = avx2 ? "kiln:blocked:avx2" : "kiln:blocked";
    return KILN_OK;
}

const struct kiln_op_def kiln_ops_attention[] = {
    {"Attention", "kiln", 1, 0, att_infer, att_exec, att_prepare, att_flops},
    {0},
};
