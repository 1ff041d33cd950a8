/* dnnl_wino.c — Winograd F(4x4,3x3) / F(2x2,3x3) fp32 convolution (see
 * dnnl_wino.h). The transforms are AVX2+FMA code on 8-channel vectors,
 * compiled with a target attribute and only called after kiln_wino_cpu_ok();
 * the GEMMs in the transformed domain are oneDNN's dnnl_sgemm.
 *
 * Matrices (Lavin & Gray, interpolation points 0, +-1, +-2, inf for m = 4):
 *   F(4,3)  B^T = [4 0 -5 0 1 0; 0 -4 -4 1 1 0; 0 4 -4 -1 1 0; 0 -2 -1 2 1 0;
 *                  0 2 -1 -2 1 0; 0 4 0 -5 0 1]
 *           G   = [1/4 0 0; -1/6 -1/6 -1/6; -1/6 1/6 -1/6; 1/24 1/12 1/6;
 *                  1/24 -1/12 1/6; 0 0 1]
 *           A^T = [1 1 1 1 1 0; 0 1 -1 2 -2 0; 0 1 1 4 4 0; 0 1 -1 8 -8 1]
 *   F(2,3)  B^T = [1 0 -1 0; 0 1 1 0; 0 -1 1 0; 0 1 0 -1]
 *           G   = [1 0 0; 1/2 1/2 1/2; 1/2 -1/2 1/2; 0 0 1]
 *           A^T = [1 1 1 0; 0 1 -1 -1]
 */
#include "backend/dnnl_wino.h"
#include "backend/dnnl.h"
#include "base/status.h"
#include "base/wcache.h"
#include "ir/graph.h"

#include <omp.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

#if defined(__x86_64__) || defined(__i386__)
#include <immintrin.h>
#define WINO_X86 1
#else
#define WINO_X86 0
#endif

/* Element strides of an activation in one of kiln's layouts, with channels
 * split as (block of 8, lane). */
struct lay {
    int64_t sN, sCb, sCi, sY, sX;
};

struct kiln_wino {
    struct kiln_wino_shape sh;
    int32_t alpha, a2;           /* tile side (m + 2) and its square */
    int64_t C8, K8;              /* channels rounded up to 8 */
    int64_t th, tw, T;           /* tiles per row / column, tiles in all */
    int64_t TB;                  /* tiles per chunk */
    int64_t n_chunks, ksplit;    /* work items: n_chunks x ksplit (output-channel slices) */
    int64_t kstep;               /* output channels per slice (multiple of 8) */
    int32_t nthr;                /* threads the buffers are sized for */
    const float *U;              /* [a2][C8][K8] transformed weights (shared or owned) */
    float *U_owned;
    float *V, *M;                /* per thread: [a2][TB][C8] and [a2][TB][K8], one chunk */
    struct lay src, dst;
    char impl[48];
};

bool kiln_wino_cpu_ok(void) {
#if WINO_X86
    return __builtin_cpu_supports("avx2") && __builtin_cpu_supports("fma");
#else
    return false;
#endif
}

bool kiln_wino_fuses_act(int32_t act) {
    return act == KILN_ACT_NONE || act == KILN_ACT_RELU || act == KILN_ACT_LEAKY_RELU ||
           act == KILN_ACT_CLIP;
}

enum kiln_conv_algo kiln_conv_algo_env(void) {
    const char *s = getenv("KILN_CONV_ALGO");
    if (s && !strcmp(s, "direct")) return KILN_CONV_ALGO_DIRECT;
    if (s && !strcmp(s, "winograd")) return KILN_CONV_ALGO_WINOGRAD;
    return KILN_CONV_ALGO_AUTO;
}

int32_t kiln_wino_choose(const struct kiln_wino_shape *sh, enum kiln_conv_algo algo) {
    if (algo == KILN_CONV_ALGO_DIRECT || !kiln_wino_cpu_ok()) return 0;
    const int64_t tiles4 = sh->N * ((sh->OH + 3) / 4) * ((sh->OW + 3) / 4);
    if (algo == KILN_CONV_ALGO_WINOGRAD) return sh->OH * sh->OW >= 16 ? 4 : 2;
    /* AVX-512 machines: oneDNN has its own Winograd and faster direct kernels */
#if WINO_X86
    if (__builtin_cpu_supports("avx512f")) return 0;
#endif
    /* Measured single-threaded on ResNet-50's shapes (docs/kernels.md): F(4x4)
     * wins where there are enough tiles to amortize its 4x larger transformed
     * weights; the transforms only vectorize in blocked nChw8c. */
    if (sh->src_layout != KILN_LAYOUT_BLOCKED8 || sh->dst_layout != KILN_LAYOUT_BLOCKED8) return 0;
    if (sh->C < 32 || sh->K < 32) return 0;
    if (tiles4 < 16) return 0;
    return 4;
}

static struct lay make_lay(int32_t layout, int64_t C, int64_t H, int64_t W) {
    struct lay l;
    l.sN = C * H * W;
    if (layout == KILN_LAYOUT_BLOCKED8) {
        l.sCb = 8 * H * W; l.sCi = 1; l.sY = W * 8; l.sX = 8;
    } else if (layout == KILN_LAYOUT_CHANNELS_LAST) {
        l.sCb = 8; l.sCi = 1; l.sY = W * C; l.sX = C;
    } else {
        l.sCb = 8 * H * W; l.sCi = H * W; l.sY = W; l.sX = 1;
    }
    return l;
}

/* ---- weight transform (prepare time, double precision) ------------------ */

static const double G4[6][3] = {{1.0 / 4, 0, 0},
                                {-1.0 / 6, -1.0 / 6, -1.0 / 6},
                                {-1.0 / 6, 1.0 / 6, -1.0 / 6},
                                {1.0 / 24, 1.0 / 12, 1.0 / 6},
                                {1.0 / 24, -1.0 / 12, 1.0 / 6},
                                {0, 0, 1}};
static const double G2[4][3] = {{1, 0, 0}, {0.5, 0.5, 0.5}, {0.5, -0.5, 0.5}, {0, 0, 1}};

struct ufill {
    const float *w;
    int64_t C, K, C8, K8;
    int32_t alpha;
};

static kiln_status fill_u(void *dst, void *arg, kiln_error *err) {
    const struct ufill *f = arg;
    float *U = dst;
    const int32_t al = f->alpha, a2 = al * al;
    const double(*G)[3] = al == 6 ? G4 : G2;
    memset(U, 0, (size_t)a2 * (size_t)f->C8 * (size_t)f->K8 * sizeof(float));
    /* c outer, k inner: U's writes run along k (contiguous) */
#pragma omp parallel for schedule(static)
    for (int64_t c = 0; c < f->C; c++)
        for (int64_t k = 0; k < f->K; k++) {
            const float *g = f->w + (k * f->C + c) * 9;
            double t[6][3];   /* G g */
            for (int32_t a = 0; a < al; a++)
                for (int32_t j = 0; j < 3; j++)
                    t[a][j] = G[a][0] * g[j] + G[a][1] * g[3 + j] + G[a][2] * g[6 + j];
            for (int32_t a = 0; a < al; a++)
                for (int32_t b = 0; b < al; b++) {
                    double u = t[a][0] * G[b][0] + t[a][1] * G[b][1] + t[a][2] * G[b][2];
                    U[((int64_t)(a * al + b) * f->C8 + c) * f->K8 + k] = (float)u;
                }
        }
    return KILN_OK;
}

/* ---- AVX2 transforms ----------------------------------------------------- */
#if WINO_X86
#define AVX2 __attribute__((target("avx2,fma")))

/* 8 channels at p (lane stride sCi); nc < 8 or a strided lane reads scalars. */
static inline AVX2 __m256 ld8(const float *p, int64_t sCi, int nc) {
    if (sCi == 1 && nc == 8) return _mm256_loadu_ps(p);
    float t[8] = {0};
    for (int i = 0; i < nc; i++) t[i] = p[i * sCi];
    return _mm256_loadu_ps(t);
}

static inline AVX2 void st8(float *p, int64_t sCi, int nc, __m256 v) {
    if (sCi == 1 && nc == 8) {
        _mm256_storeu_ps(p, v);
        return;
    }
    float t[8];
    _mm256_storeu_ps(t, v);
    for (int i = 0; i < nc; i++) p[i * sCi] = t[i];
}

/* 1-D transforms over 'n' vectors at stride s (in) into r[0..]. */
static inline AVX2 void bt6(const __m256 *d, int s, __m256 *r, int rs) {
    const __m256 c4 = _mm256_set1_ps(4.0f), c5 = _mm256_set1_ps(5.0f), c2 = _mm256_set1_ps(2.0f);
    __m256 d0 = d[0], d1 = d[s], d2 = d[2 * s], d3 = d[3 * s], d4 = d[4 * s], d5 = d[5 * s];
    r[0] = _mm256_fmadd_ps(c4, d0, _mm256_fnmadd_ps(c5, d2, d4));
    r[rs] = _mm256_fnmadd_ps(c4, _mm256_add_ps(d1, d2), _mm256_add_ps(d3, d4));
    r[2 * rs] = _mm256_fmadd_ps(c4, _mm256_sub_ps(d1, d2), _mm256_sub_ps(d4, d3));
    r[3 * rs] = _mm256_fmadd_ps(c2, _mm256_sub_ps(d3, d1), _mm256_sub_ps(d4, d2));
    r[4 * rs] = _mm256_fmadd_ps(c2, _mm256_sub_ps(d1, d3), _mm256_sub_ps(d4, d2));
    r[5 * rs] = _mm256_fmadd_ps(c4, d1, _mm256_fnmadd_ps(c5, d3, d5));
}

static inline AVX2 void at6(const __m256 *m, int s, __m256 *o, int os) {
    const __m256 c2 = _mm256_set1_ps(2.0f), c4 = _mm256_set1_ps(4.0f), c8 = _mm256_set1_ps(8.0f);
    __m256 a = _mm256_add_ps(m[s], m[2 * s]), b = _mm256_sub_ps(m[s], m[2 * s]);
    __m256 c = _mm256_add_ps(m[3 * s], m[4 * s]), d = _mm256_sub_ps(m[3 * s], m[4 * s]);
    o[0] = _mm256_add_ps(_mm256_add_ps(m[0], a), c);
    o[os] = _mm256_fmadd_ps(c2, d, b);
    o[2 * os] = _mm256_fmadd_ps(c4, c, a);
    o[3 * os] = _mm256_add_ps(_mm256_fmadd_ps(c8, d, b), m[5 * s]);
}

static inline AVX2 void bt4(const __m256 *d, int s, __m256 *r, int rs) {
    __m256 d0 = d[0], d1 = d[s], d2 = d[2 * s], d3 = d[3 * s];
    r[0] = _mm256_sub_ps(d0, d2);
    r[rs] = _mm256_add_ps(d1, d2);
    r[2 * rs] = _mm256_sub_ps(d2, d1);
    r[3 * rs] = _mm256_sub_ps(d1, d3);
}

static inline AVX2 void at4(const __m256 *m, int s, __m256 *o, int os) {
    o[0] = _mm256_add_ps(_mm256_add_ps(m[0], m[s]), m[2 * s]);
    o[os] = _mm256_sub_ps(_mm256_sub_ps(m[s], m[2 * s]), m[3 * s]);
}

static inline AVX2 __m256 act8(__m256 v, int32_t act, __m256 al, __m256 be) {
    switch (act) {
    case KILN_ACT_RELU: return _mm256_max_ps(v, _mm256_setzero_ps());
    case KILN_ACT_LEAKY_RELU:
        return _mm256_blendv_ps(_mm256_mul_ps(al, v), v,
                                _mm256_cmp_ps(v, _mm256_setzero_ps(), _CMP_GE_OQ));
    case KILN_ACT_CLIP: return _mm256_min_ps(_mm256_max_ps(v, al), be);
    default: return v;
    }
}

/* Tile t (global index) of one 8-channel block into V (chunk-local tile tl). */
#define DEF_INPUT_TILE(SUF, AL, BT)                                                           \
    static AVX2 void input_tile_##SUF(const struct kiln_wino *w, float *V, const float *src,  \
                                      int64_t t, int64_t tl, int64_t cb) {                    \
        const struct kiln_wino_shape *sh = &w->sh;                                            \
        const int64_t per = w->th * w->tw, n = t / per, r = t % per;                          \
        const int64_t y0 = (r / w->tw) * (AL - 2) - sh->pt, x0 = (r % w->tw) * (AL - 2) - sh->pl; \
        const int nc = (int)(sh->C - cb * 8 < 8 ? sh->C - cb * 8 : 8);                        \
        const struct lay *L = &w->src;                                                        \
        const float *base = src + n * L->sN + cb * L->sCb;                                    \
        __m256 d[AL * AL], u[AL * AL];                                                        \
        const bool inside = y0 >= 0 && x0 >= 0 && y0 + AL <= sh->H && x0 + AL <= sh->W;      \
        for (int i = 0; i < AL; i++)                                                          \
            for (int j = 0; j < AL; j++) {                                                    \
                const int64_t y = y0 + i, x = x0 + j;                                         \
                d[i * AL + j] = inside || (y >= 0 && y < sh->H && x >= 0 && x < sh->W)        \
                                    ? ld8(base + y * L->sY + x * L->sX, L->sCi, nc)           \
                                    : _mm256_setzero_ps();                                    \
            }                                                                                 \
        for (int j = 0; j < AL; j++) BT(d + j, AL, u + j, AL);   /* columns: B^T d */        \
        for (int i = 0; i < AL; i++) BT(u + i * AL, 1, d + i * AL, 1);   /* rows: . B */     \
        const int64_t xs = w->TB * w->C8;                                                     \
        float *v = V + tl * w->C8 + cb * 8;                                                   \
        for (int e = 0; e < AL * AL; e++) _mm256_storeu_ps(v + e * xs, d[e]);                 \
    }

/* Output tile t of one 8-channel block from M: bias, residual, activation. */
#define DEF_OUTPUT_TILE(SUF, AL, AT)                                                          \
    static AVX2 void output_tile_##SUF(const struct kiln_wino *w, const float *M,             \
                                       const float *bias, const float *res, float *dst,       \
                                       int64_t t, int64_t tl, int64_t kb) {                   \
        enum { MM = AL - 2 };                                                                 \
        const struct kiln_wino_shape *sh = &w->sh;                                            \
        const int64_t per = w->th * w->tw, n = t / per, r = t % per;                          \
        const int64_t y0 = (r / w->tw) * MM, x0 = (r % w->tw) * MM;                           \
        const int nc = (int)(sh->K - kb * 8 < 8 ? sh->K - kb * 8 : 8);                        \
        const int64_t xs = w->TB * w->K8;                                                     \
        const float *mp = M + tl * w->K8 + kb * 8;                                            \
        __m256 m[AL * AL], s[MM * AL], o[MM * MM];                                            \
        for (int e = 0; e < AL * AL; e++) m[e] = _mm256_loadu_ps(mp + e * xs);                \
        for (int j = 0; j < AL; j++) AT(m + j, AL, s + j, AL);   /* A^T m */                 \
        for (int i = 0; i < MM; i++) AT(s + i * AL, 1, o + i * MM, 1);   /* . A */           \
        const __m256 b = sh->has_bias ? ld8(bias + kb * 8, 1, nc) : _mm256_setzero_ps();      \
        const __m256 al = _mm256_set1_ps(sh->act_alpha), be = _mm256_set1_ps(sh->act_beta);   \
        const int32_t act = kiln_wino_fuses_act(sh->act) ? sh->act : KILN_ACT_NONE;           \
        const struct lay *L = &w->dst;                                                        \
        const int64_t off0 = n * L->sN + kb * L->sCb;                                         \
        for (int i = 0; i < MM; i++) {                                                        \
            if (y0 + i >= sh->OH) break;                                                      \
            for (int j = 0; j < MM; j++) {                                                    \
                if (x0 + j >= sh->OW) break;                                                  \
                const int64_t off = off0 + (y0 + i) * L->sY + (x0 + j) * L->sX;               \
                __m256 v = _mm256_add_ps(o[i * MM + j], b);                                   \
                if (res) v = _mm256_add_ps(v, ld8(res + off, L->sCi, nc));                    \
                st8(dst + off, L->sCi, nc, act8(v, act, al, be));                             \
            }                                                                                 \
        }                                                                                     \
    }

DEF_INPUT_TILE(f4, 6, bt6)
DEF_INPUT_TILE(f2, 4, bt4)
DEF_OUTPUT_TILE(f4, 6, at6)
DEF_OUTPUT_TILE(f2, 4, at4)
#endif

/* ---- create / run -------------------------------------------------------- */

void kiln_wino_free(void *p) {
    struct kiln_wino *w = p;
    if (!w) return;
    free(w->U_owned);
    free(w->V);
    free(w->M);
    free(w);
}

const char *kiln_wino_impl(const struct kiln_wino *w) { return w->impl; }

static void *alloc_floats(int64_t n) {
    size_t bytes = ((size_t)(n > 0 ? n : 1) * sizeof(float) + 63) & ~(size_t)63;
    return aligned_alloc(64, bytes);
}

/* Tiles per chunk: the chunk's V and M (a2 x TB x (C8 + K8) floats) within
 * about 2 MiB so they stay in cache between the three phases, clamped to
 * [32, 64] tiles: measured on ResNet-50's shapes (bench/conv3x3), fewer rows
 * leave each GEMM call too short, more spill the chunk out of L2. */
static int64_t chunk_tiles(int64_t T, int32_t a2, int64_t C8, int64_t K8) {
    const char *e = getenv("KILN_WINO_TB");   /* tuning knob for benchmarks */
    int64_t tb = e ? atoll(e) : 0;
    if (tb <= 0) {
        tb = ((int64_t)2 << 20) / ((int64_t)a2 * (C8 + K8) * (int64_t)sizeof(float));
        tb = tb < 32 ? 32 : tb > 64 ? 64 : tb;
    }
    return tb < T ? tb : T;
}

kiln_status kiln_wino_create(const struct kiln_wino_shape *sh, const float *weights,
                             int32_t n_threads, struct kiln_wcache *cache, struct kiln_wino **out,
                             kiln_error *err) {
    *out = NULL;
#if !WINO_X86
    return KILN_OK;
#else
    /* the caller's geometry is a valid 3x3 / stride 1 conv (OH = H + pt + pb - 2);
     * rows and columns past the input read as zero padding */
    if (!kiln_wino_cpu_ok() || !weights || (sh->m != 2 && sh->m != 4) || sh->N < 1 || sh->C < 1 ||
        sh->K < 1 || sh->H < 1 || sh->W < 1 || sh->OH < 1 || sh->OW < 1 || sh->pt < 0 ||
        sh->pl < 0 || sh->C > (1 << 24) || sh->K > (1 << 24))
        return KILN_OK;
    if ((sh->src_layout == KILN_LAYOUT_BLOCKED8 && sh->C % 8) ||
        (sh->dst_layout == KILN_LAYOUT_BLOCKED8 && sh->K % 8))
        return KILN_OK;
    struct kiln_wino *w = calloc(1, sizeof *w);
    if (!w) return kiln_fail(err, KILN_ERR_NO_MEMORY, "winograd conv: out of memory");
    w->sh = *sh;
    w->alpha = sh->m + 2;
    w->a2 = w->alpha * w->alpha;
    w->C8 = (sh->C + 7) / 8 * 8;
    w->K8 = (sh->K + 7) / 8 * 8;
    w->th = (sh->OH + sh->m - 1) / sh->m;
    w->tw = (sh->OW + sh->m - 1) / sh->m;
    double tiles = (double)sh->N * (double)w->th * (double)w->tw;
    if (tiles > (double)((int64_t)1 << 40)) { kiln_wino_free(w); return KILN_OK; }
    w->T = sh->N * w->th * w->tw;
    /* Each thread runs whole work items (a chunk of tiles through all three
     * phases for one slice of output channels) in its own buffers, so the
     * threads meet only once per run, not at a barrier per phase; with too
     * few chunks for the threads, output channels are split too (each item
     * then repeats its chunk's cheap input transform). */
    w->nthr = n_threads > 0 ? n_threads : 1;
    w->TB = chunk_tiles(w->T, w->a2, w->C8, w->K8);
    w->n_chunks = (w->T + w->TB - 1) / w->TB;
    if (w->n_chunks > w->nthr && w->n_chunks % w->nthr) {
        /* equal shares: as many chunks for every thread, of equal size */
        w->n_chunks += w->nthr - w->n_chunks % w->nthr;
        w->TB = (w->T + w->n_chunks - 1) / w->n_chunks;
        w->n_chunks = (w->T + w->TB - 1) / w->TB;
    } else if (w->n_chunks > 1 && w->n_chunks <= w->nthr) {
        w->TB = (w->T + w->n_chunks - 1) / w->n_chunks;
    }
    int64_t Kb = w->K8 / 8, ks = (w->nthr + w->n_chunks - 1) / w->n_chunks;
    if (ks > Kb) ks = Kb;
    w->kstep = (Kb + ks - 1) / ks * 8;
    w->ksplit = (w->K8 + w->kstep - 1) / w->kstep;
    w->src = make_lay(sh->src_layout, sh->C, sh->H, sh->W);
    w->dst = make_lay(sh->dst_layout, sh->K, sh->OH, sh->OW);
    snprintf(w->impl, sizeof w->impl, "wino:f%dx%d:avx2", sh->m, sh->m);

    int64_t ufl = (int64_t)w->a2 * w->C8 * w->K8;
    struct ufill f = {weights, sh->C, sh->K, w->C8, w->K8, w->alpha};
    if (cache) {
        /* how U was derived from the weights: tag, tile and padded sizes */
        struct { char tag[8]; int64_t alpha, C, K, C8, K8; } key;
        memset(&key, 0, sizeof key);
        memcpy(key.tag, "wino1", 5);
        key.alpha = w->alpha; key.C = sh->C; key.K = sh->K; key.C8 = w->C8; key.K8 = w->K8;
        w->U = kiln_wcache_get(cache, weights, &key, sizeof key, (size_t)ufl * sizeof(float),
                               fill_u, &f, err);
        if (!w->U) { kiln_wino_free(w); return err ? err->code : KILN_ERR_INTERNAL; }
    } else {
        w->U_owned = alloc_floats(ufl);
        if (!w->U_owned) { kiln_wino_free(w); return kiln_fail(err, KILN_ERR_NO_MEMORY, "winograd conv: weights"); }
        fill_u(w->U_owned, &f, err);
        w->U = w->U_owned;
    }
    w->V = alloc_floats((int64_t)w->nthr * w->a2 * w->TB * w->C8);
    w->M = alloc_floats((int64_t)w->nthr * w->a2 * w->TB * w->K8);
    if (!w->V || !w->M) {
        kiln_wino_free(w);
        return kiln_fail(err, KILN_ERR_NO_MEMORY, "winograd conv: tile buffers");
    }
    *out = w;
    return KILN_OK;
#endif
}

kiln_status kiln_wino_run(struct kiln_wino *w, const float *src, const float *bias,
                          const float *res, float *dst, kiln_error *err) {
#if !WINO_X86
    return kiln_fail(err, KILN_ERR_INTERNAL, "winograd conv: not built for this CPU");
#else
    const struct kiln_wino_shape *sh = &w->sh;
    const int64_t Cb = w->C8 / 8, T = w->T, TB = w->TB, ks = w->ksplit;
    const int64_t items = w->n_chunks * ks;
    const int32_t a2 = w->a2;
    if (!sh->sum) res = NULL;
    int failed = 0;
    dnnl_status_t fst = dnnl_success;
#pragma omp parallel num_threads(w->nthr)
    {
        const int tid = omp_get_thread_num();
        float *V = w->V + (int64_t)tid * a2 * TB * w->C8;
        float *M = w->M + (int64_t)tid * a2 * TB * w->K8;
        int64_t have = -1;   /* the chunk V holds */
#pragma omp for schedule(static) nowait
        for (int64_t it = 0; it < items; it++) {
            const int64_t chunk = it / ks, t0 = chunk * TB, nt = T - t0 < TB ? T - t0 : TB;
            const int64_t k0 = (it % ks) * w->kstep;
            const int64_t kn = w->K8 - k0 < w->kstep ? w->K8 - k0 : w->kstep;
            if (have != chunk) {
                for (int64_t i = 0; i < nt * Cb; i++) {
                    if (w->alpha == 6) input_tile_f4(w, V, src, t0 + i / Cb, i / Cb, i % Cb);
                    else input_tile_f2(w, V, src, t0 + i / Cb, i / Cb, i % Cb);
                }
                have = chunk;
            }
            for (int32_t e = 0; e < a2; e++) {
                /* row-major: M_e[nt x kn] = V_e[nt x C8] . U_e[C8 x kn]; inside
                 * the parallel region oneDNN runs it on this thread */
                dnnl_status_t st = dnnl_sgemm('N', 'N', nt, kn, w->C8, 1.0f, V + e * TB * w->C8,
                                              w->C8, w->U + e * w->C8 * w->K8 + k0, w->K8, 0.0f,
                                              M + e * TB * w->K8 + k0, w->K8);
                if (st != dnnl_success) {
#pragma omp critical(kiln_wino_fail)
                    {
                        failed = 1;
                        fst = st;
                    }
                }
            }
            for (int64_t i = 0; i < nt * (kn / 8); i++) {
                const int64_t tl = i / (kn / 8), kb = k0 / 8 + i % (kn / 8);
                if (w->alpha == 6) output_tile_f4(w, M, bias, res, dst, t0 + tl, tl, kb);
                else output_tile_f2(w, M, bias, res, dst, t0 + tl, tl, kb);
            }
        }
    }
    if (failed)
        return kiln_fail(err, KILN_ERR_INTERNAL, "winograd conv: sgemm: %s", kiln_dnnl_status_str(fst));
    return KILN_OK;
#endif
}
