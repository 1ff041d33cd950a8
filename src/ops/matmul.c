/* matmul.c — op family 'matmul': MatMul, Gemm, MatMulInteger, Einsum,
 * Attention, RotaryEmbedding (see op.h for the contract).
 *
 * The reference float kernels share one cache-blocked GEMM core (gemm_nn_*):
 * row-major, no transposes (transposed operands are packed first), tiles of
 * MB x NB outputs each owned by one OpenMP task, K summed in ascending order,
 * so results do not depend on the thread count. MatMul and Gemm in float32
 * have a oneDNN fast path (src/backend/dnnl_matmul.c) built in prepare.
 */
#include "ops/op.h"
#include "backend/dnnl_matmul.h"

#include <math.h>
#include <omp.h>
#include <stdlib.h>
#include <string.h>

static kiln_status need_out0(const struct kiln_node *n, struct kiln_value *const *out, int n_out,
                             kiln_error *err) {
    if (n_out < 1 || !out[0]) return kiln_op_fail(err, KILN_ERR_BAD_MODEL, n, "output 0 is required");
    return KILN_OK;
}

/* ------------------------------------------------------------------------ */
/* helpers                                                                   */

static kiln_status check_numel(const struct kiln_node *n, int32_t rank, const int64_t *dims,
                               kiln_error *err) {
    int64_t p = 1;
    for (int32_t i = 0; i < rank; i++) {
        if (dims[i] < 0)
            return kiln_op_fail(err, KILN_ERR_SHAPE, n, "negative output dimension %lld",
                                (long long)dims[i]);
        if (__builtin_mul_overflow(p, dims[i], &p))
            return kiln_op_fail(err, KILN_ERR_LIMIT, n, "output element count overflows");
    }
    return KILN_OK;
}

static int n_threads_of(const struct kiln_exec_ctx *ctx) {
    return ctx && ctx->n_threads > 0 ? ctx->n_threads : 0;
}

/* ------------------------------------------------------------------------ */
/* blocked GEMM core: C[M,N] = A[M,K] * B[K,N], all row-major with leading dims */

#define MB 16
#define NB 256
#define KB 256
#define PAR_MIN_WORK 32768.0   /* MACs below which we stay single-threaded */

#define DEFINE_GEMM_TILE(SUF, T)                                                              \
    static void gemm_tile_##SUF(const T *A, int64_t lda, const T *B, int64_t ldb, T *C,      \
                                int64_t ldc, int64_t m, int64_t n, int64_t K) {              \
        T acc[MB][NB];                                                                        \
        for (int64_t i = 0; i < m; i++)                                                       \
            for (int64_t j = 0; j < n; j++) acc[i][j] = 0;                                    \
        if (n == 1) {                                                                         \
            for (int64_t i = 0; i < m; i++) {                                                 \
                const T *a = A + i * lda;                                                     \
                T s = 0;                                                                      \
                for (int64_t k = 0; k < K; k++) s += a[k] * B[k * ldb];                       \
                acc[i][0] = s;                                                                \
            }                                                                                 \
        } else {                                                                              \
            for (int64_t k0 = 0; k0 < K; k0 += KB) {                                          \
                int64_t kb = K - k0 < KB ? K - k0 : KB;                                       \
                for (int64_t i = 0; i < m; i++) {                                             \
                    const T *a = A + i * lda + k0;                                            \
                    T *c = acc[i];                                                            \
                    for (int64_t kk = 0; kk < kb; kk++) {                                     \
                        const T av = a[kk];                                                   \
                        const T *b = B + (k0 + kk) * ldb;                                     \
                        _Pragma("omp simd") for (int64_t j = 0; j < n; j++) c[j] += av * b[j]; \
                    }                                                                         \
                }                                                                             \
            }                                                                                 \
        }                                                                                     \
        for (int64_t i = 0; i < m; i++) memcpy(C + i * ldc, acc[i], (size_t)n * sizeof(T));   \
    }                                                                                         \
    /* nb products; product b reads A + aoff[b], B + boff[b] (NULL: b * M*K / K*N) and      \
     * writes C + b*M*N (dense). */                                                           \
    static void gemm_batched_##SUF(int64_t nb, const int64_t *aoff, const int64_t *boff,      \
                                   const T *A, int64_t lda, const T *B, int64_t ldb, T *C,    \
                                   int64_t M, int64_t N, int64_t K, int nthreads) {           \
        if (nb <= 0 || M <= 0 || N <= 0) return;                                              \
        int64_t mt = (M + MB - 1) / MB, nt = (N + NB - 1) / NB, total = nb * mt * nt;         \
        double work = (double)nb * (double)M * (double)N * (double)(K > 0 ? K : 1);           \
        int par = total > 1 && work >= PAR_MIN_WORK;                                          \
        int nth = nthreads > 0 ? nthreads : omp_get_max_threads();                            \
        _Pragma("omp parallel for schedule(static) if(par) num_threads(nth)")                 \
        for (int64_t t = 0; t < total; t++) {                                                 \
            int64_t b = t / (mt * nt), r = t % (mt * nt);                                     \
            int64_t i0 = (r / nt) * MB, j0 = (r % nt) * NB;                                   \
            int64_t m = M - i0 < MB ? M - i0 : MB, n = N - j0 < NB ? N - j0 : NB;             \
            const T *a = A + (aoff ? aoff[b] : b * M * K) + i0 * lda;                         \
            const T *bb = B + (boff ? boff[b] : b * K * N) + j0;                              \
            gemm_tile_##SUF(a, lda, bb, ldb, C + b * M * N + i0 * N + j0, N, m, n, K);        \
        }                                                                                     \
    }

DEFINE_GEMM_TILE(f32, float)
DEFINE_GEMM_TILE(f64, double)

/* Dense copy of the transpose of a rows x cols row-major matrix. */
#define DEFINE_TRANSPOSE(SUF, T)                                                     \
    static void transpose_##SUF(const T *src, int64_t rows, int64_t cols, T *dst) {  \
        for (int64_t i0 = 0; i0 < rows; i0 += 32)                                    \
            for (int64_t j0 = 0; j0 < cols; j0 += 32)                                \
                for (int64_t i = i0; i < rows && i < i0 + 32; i++)                   \
                    for (int64_t j = j0; j < cols && j < j0 + 32; j++)               \
                        dst[j * rows + i] = src[i * cols + j];                       \
    }
DEFINE_TRANSPOSE(f32, float)
DEFINE_TRANSPOSE(f64, double)

/* ------------------------------------------------------------------------ */
/* MatMul                                                                    */

/* numpy matmul shape analysis */
struct mm_shape {
    int64_t M, N, K;
    int32_t brank;                       /* broadcast batch rank */
    int64_t bdims[KILN_MAX_RANK];
    int64_t nbatch;
    int32_t out_rank;
    int64_t out_dims[KILN_MAX_RANK];
};

static kiln_status mm_analyze(const struct kiln_node *n, const struct kiln_value *a,
                              const struct kiln_value *b, struct mm_shape *s, kiln_error *err) {
    if (a->rank < 1 || b->rank < 1)
        return kiln_op_fail(err, KILN_ERR_SHAPE, n, "expected inputs of rank >= 1, got %d and %d",
                            a->rank, b->rank);
    int32_t ra = a->rank, rb = b->rank;
    int64_t ka = a->dims[ra - 1], kb = rb == 1 ? b->dims[0] : b->dims[rb - 2];
    s->M = ra == 1 ? 1 : a->dims[ra - 2];
    s->K = ka;
    s->N = rb == 1 ? 1 : b->dims[rb - 1];
    if (ka != kb) {
        char sa[128], sb[128];
        kiln_shape_str(a, sa, sizeof sa);
        kiln_shape_str(b, sb, sizeof sb);
        return kiln_op_fail(err, KILN_ERR_SHAPE, n,
                            "inner dimensions differ: A %s has K=%lld, B %s has K=%lld", sa,
                            (long long)ka, sb, (long long)kb);
    }
    int32_t ba = ra > 2 ? ra - 2 : 0, bb = rb > 2 ? rb - 2 : 0;
    s->brank = ba > bb ? ba : bb;
    s->nbatch = 1;
    for (int32_t i = 0; i < s->brank; i++) {
        int32_t ia = i - (s->brank - ba), ib = i - (s->brank - bb);
        int64_t da = ia >= 0 ? a->dims[ia] : 1, db = ib >= 0 ? b->dims[ib] : 1;
        int64_t d;
        if (da == db || db == 1) d = da;
        else if (da == 1) d = db;
        else {
            char sa[128], sb[128];
            kiln_shape_str(a, sa, sizeof sa);
            kiln_shape_str(b, sb, sizeof sb);
            return kiln_op_fail(err, KILN_ERR_SHAPE, n, "batch dims of %s and %s do not broadcast",
                                sa, sb);
        }
        s->bdims[i] = d;
        if (__builtin_mul_overflow(s->nbatch, d, &s->nbatch))
            return kiln_op_fail(err, KILN_ERR_LIMIT, n, "batch size overflows");
    }
    s->out_rank = 0;
    for (int32_t i = 0; i < s->brank; i++) s->out_dims[s->out_rank++] = s->bdims[i];
    if (ra > 1) s->out_dims[s->out_rank++] = s->M;
    if (rb > 1) s->out_dims[s->out_rank++] = s->N;
    return check_numel(n, s->out_rank, s->out_dims, err);
}

/* Matrix offsets (in elements) of each batch's A or B under broadcasting. */
static int64_t *mm_batch_offsets(const struct mm_shape *s, const struct kiln_value *v,
                                 int64_t mat_elems) {
    int64_t *off = malloc((size_t)(s->nbatch > 0 ? s->nbatch : 1) * sizeof *off);
    if (!off) return NULL;
    int32_t vb = v->rank > 2 ? v->rank - 2 : 0;
    int64_t str[KILN_MAX_RANK];
    int64_t st = mat_elems;
    for (int32_t i = s->brank - 1; i >= 0; i--) {
        int32_t iv = i - (s->brank - vb);
        int64_t d = iv >= 0 ? v->dims[iv] : 1;
        str[i] = d == 1 ? 0 : st;
        st *= d;
    }
    for (int64_t b = 0; b < s->nbatch; b++) {
        int64_t r = b, o = 0;
        for (int32_t i = s->brank - 1; i >= 0; i--) {
            int64_t idx = r % s->bdims[i];
            r /= s->bdims[i];
            o += idx * str[i];
        }
        off[b] = o;
    }
    return off;
}

static bool mm_dtype_ok(kiln_dtype t) {
    return t == KILN_DTYPE_FLOAT || t == KILN_DTYPE_DOUBLE || t == KILN_DTYPE_FLOAT16 ||
           t == KILN_DTYPE_BFLOAT16 || t == KILN_DTYPE_INT32 || t == KILN_DTYPE_INT64 ||
           t == KILN_DTYPE_UINT32 || t == KILN_DTYPE_UINT64;
}

/* A bias fused by the fuse-matmul-bias pass (node->sum_input = 2, never set by
 * ONNX): MatMul(A, B, bias) = MatMul(A, B) + bias, where bias is float32 with
 * N values along its last dim, every other dim 1, and a rank no higher than
 * the product's, so adding it never changes the output shape. */
static kiln_status mm_bias_check(const struct kiln_node *n, const struct kiln_value *const *in,
                                 int n_in, const struct mm_shape *s, kiln_error *err) {
    if (!n->sum_input) return KILN_OK;
    if (n->sum_input != 2 || n_in != 3 || !in[2])
        return kiln_op_fail(err, KILN_ERR_BAD_MODEL, n, "fused bias must be input 2");
    const struct kiln_value *b = in[2];
    bool ok = in[0]->dtype == KILN_DTYPE_FLOAT && b->dtype == KILN_DTYPE_FLOAT && b->rank >= 1 &&
              b->rank <= s->out_rank && b->dims[b->rank - 1] == s->N &&
              s->out_dims[s->out_rank - 1] == s->N;
    for (int32_t i = 0; ok && i + 1 < b->rank; i++) ok = b->dims[i] == 1;
    if (!ok)
        return kiln_op_fail(err, KILN_ERR_SHAPE, n,
                            "fused bias must be float32 [..., 1, N=%lld] within the output's rank",
                            (long long)s->N);
    return KILN_OK;
}

static kiln_status matmul_infer(const struct kiln_node *n, const struct kiln_value *const *in,
                                int n_in, struct kiln_value *const *out, int n_out,
                                kiln_error *err) {
    kiln_status st = kiln_op_check_arity(n, n_in, 2, n->sum_input ? 3 : 2, err);
    if (st) return st;
    if ((st = need_out0(n, out, n_out, err))) return st;
    if (in[0]->dtype != in[1]->dtype || !mm_dtype_ok(in[0]->dtype))
        return kiln_op_fail(err, KILN_ERR_SHAPE, n,
                            "expected two inputs of one float or int32/64 type, got %s and %s",
                            kiln_dtype_name(in[0]->dtype), kiln_dtype_name(in[1]->dtype));
    struct mm_shape s;
    if ((st = mm_analyze(n, in[0], in[1], &s, err))) return st;
    if ((st = mm_bias_check(n, in, n_in, &s, err))) return st;
    kiln_value_set_shape(out[0], in[0]->dtype, s.out_rank, s.out_dims);
    return KILN_OK;
}

/* Float32 view of an f16/bf16 tensor (malloc'ed), or NULL. */
static float *to_f32(const struct kiln_value *v, int64_t cnt) {
    float *f = malloc((size_t)(cnt > 0 ? cnt : 1) * sizeof *f);
    if (!f) return NULL;
    const uint16_t *h = v->data;
    if (v->dtype == KILN_DTYPE_FLOAT16)
        for (int64_t i = 0; i < cnt; i++) f[i] = kiln_f16_to_f32(h[i]);
    else if (v->dtype == KILN_DTYPE_BFLOAT16)
        for (int64_t i = 0; i < cnt; i++) f[i] = kiln_bf16_to_f32(h[i]);
    else
        memcpy(f, v->data, (size_t)cnt * sizeof *f);
    return f;
}

static void from_f32(struct kiln_value *v, const float *f, int64_t cnt) {
    uint16_t *h = v->data;
    if (v->dtype == KILN_DTYPE_FLOAT16)
        for (int64_t i = 0; i < cnt; i++) h[i] = kiln_f32_to_f16(f[i]);
    else if (v->dtype == KILN_DTYPE_BFLOAT16)
        for (int64_t i = 0; i < cnt; i++) h[i] = kiln_f32_to_bf16(f[i]);
    else
        memcpy(v->data, f, (size_t)cnt * sizeof *f);
}

/* Integer product with wrap-around (two's complement) semantics. */
static void mm_int(const struct kiln_value *a, const struct kiln_value *b, struct kiln_value *o,
                   int64_t nb, const int64_t *aoff, const int64_t *boff, int64_t M, int64_t N,
                   int64_t K) {
    for (int64_t bt = 0; bt < nb; bt++)
        for (int64_t i = 0; i < M; i++)
            for (int64_t j = 0; j < N; j++) {
                uint64_t s = 0;
                for (int64_t k = 0; k < K; k++)
                    s += (uint64_t)kiln_value_get_int(a, aoff[bt] + i * K + k) *
                         (uint64_t)kiln_value_get_int(b, boff[bt] + k * N + j);
                int64_t oi = (bt * M + i) * N + j;
                switch (o->dtype) {
                case KILN_DTYPE_INT32: ((int32_t *)o->data)[oi] = (int32_t)(uint32_t)s; break;
                case KILN_DTYPE_UINT32: ((uint32_t *)o->data)[oi] = (uint32_t)s; break;
                case KILN_DTYPE_INT64: ((int64_t *)o->data)[oi] = (int64_t)s; break;
                default: ((uint64_t *)o->data)[oi] = s; break;
                }
            }
}

static kiln_status matmul_exec(const struct kiln_node *n, struct kiln_exec_ctx *ctx,
                               const struct kiln_value *const *in, int n_in,
                               struct kiln_value *const *out, int n_out, kiln_error *err) {
    struct mm_shape s;
    kiln_status st = mm_analyze(n, in[0], in[1], &s, err);
    if (st || (st = mm_bias_check(n, in, n_in, &s, err))) return st;
    int64_t on = kiln_value_numel(out[0]);
    if (on == 0) return KILN_OK;
    int64_t *aoff = mm_batch_offsets(&s, in[0], s.M * s.K);
    int64_t *boff = mm_batch_offsets(&s, in[1], s.K * s.N);
    int nt = n_threads_of(ctx);
    if (!aoff || !boff) goto oom;
    switch (in[0]->dtype) {
    case KILN_DTYPE_FLOAT:
        gemm_batched_f32(s.nbatch, aoff, boff, in[0]->data, s.K, in[1]->data, s.N, out[0]->data,
                         s.M, s.N, s.K, nt);
        break;
    case KILN_DTYPE_DOUBLE:
        gemm_batched_f64(s.nbatch, aoff, boff, in[0]->data, s.K, in[1]->data, s.N, out[0]->data,
                         s.M, s.N, s.K, nt);
        break;
    case KILN_DTYPE_FLOAT16:
    case KILN_DTYPE_BFLOAT16: {
        float *fa = to_f32(in[0], kiln_value_numel(in[0]));
        float *fb = to_f32(in[1], kiln_value_numel(in[1]));
        float *fo = malloc((size_t)on * sizeof *fo);
        if (fa && fb && fo) {
            gemm_batched_f32(s.nbatch, aoff, boff, fa, s.K, fb, s.N, fo, s.M, s.N, s.K, nt);
            from_f32(out[0], fo, on);
        }
        bool ok = fa && fb && fo;
        free(fa);
        free(fb);
        free(fo);
        if (!ok) goto oom;
        break;
    }
    default:
        mm_int(in[0], in[1], out[0], s.nbatch, aoff, boff, s.M, s.N, s.K);
        break;
    }
    if (n->sum_input) {   /* fused bias, float32 only (mm_bias_check): one row of N */
        float *o = out[0]->data;
        const float *b = in[2]->data;
        for (int64_t r = 0; r < on / s.N; r++)
            for (int64_t j = 0; j < s.N; j++) o[r * s.N + j] += b[j];
    }
    free(aoff);
    free(boff);
    return KILN_OK;
oom:
    free(aoff);
    free(boff);
    return kiln_op_fail(err, KILN_ERR_NO_MEMORY, n, "out of memory for matmul scratch");
}

static double matmul_flops(const struct kiln_node *n, const struct kiln_value *const *in,
                           int n_in, struct kiln_value *const *out, int n_out) {
    struct mm_shape s;
    if (n_in < 2 || mm_analyze(n, in[0], in[1], &s, NULL)) return 0;
    return 2.0 * (double)s.nbatch * (double)s.M * (double)s.N * (double)s.K;
}

/* ---- oneDNN fast path (MatMul and Gemm, float32) ---- */

enum { FAST_MATMUL, FAST_GEMM };

struct mm_fast {
    struct kiln_dnnl_matmul *mm;
    int      kind;
    int      prefill;        /* Gemm: out <- broadcast C before the sum post-op */
    int      use_bias;       /* Gemm: C passed as bias */
    int32_t  rank[3];        /* prepared input shapes, checked at run */
    int64_t  dims[3][KILN_MAX_RANK];
    int      n_in;
    int      act_fused;      /* n->act runs as a oneDNN post-op */
};

static void mm_fast_release(void *p) {
    struct mm_fast *f = p;
    if (!f) return;
    kiln_dnnl_matmul_free(f->mm);
    free(f);
}

static bool mm_fast_same_shapes(const struct mm_fast *f, const struct kiln_value *const *in,
                                int n_in) {
    if (n_in != f->n_in) return false;
    for (int i = 0; i < n_in; i++) {
        if (!in[i]) continue;
        if (in[i]->rank != f->rank[i]) return false;
        for (int32_t d = 0; d < in[i]->rank; d++)
            if (in[i]->dims[d] != f->dims[i][d]) return false;
    }
    return true;
}

static void mm_fast_record(struct mm_fast *f, const struct kiln_value *const *in, int n_in) {
    f->n_in = n_in;
    for (int i = 0; i < n_in && i < 3; i++) {
        if (!in[i]) continue;
        f->rank[i] = in[i]->rank;
        memcpy(f->dims[i], in[i]->dims, sizeof f->dims[i]);
    }
}

static void dense_strides_of(int32_t rank, const int64_t *dims, int64_t *str) {
    int64_t s = 1;
    for (int32_t i = rank - 1; i >= 0; i--) {
        str[i] = s;
        s *= dims[i] > 0 ? dims[i] : 1;
    }
}

static kiln_status matmul_fast_run(const struct kiln_node *n, struct kiln_exec_ctx *ctx,
                                   void *state, const struct kiln_value *const *in, int n_in,
                                   struct kiln_value *const *out, int n_out, kiln_error *err) {
    struct mm_fast *f = state;
    if (!mm_fast_same_shapes(f, in, n_in)) {
        kiln_status st = matmul_exec(n, ctx, in, n_in, out, n_out, err);
        if (!st && f->act_fused) st = kiln_activation_apply(n, out[0], err);
        return st;
    }
    kiln_status st = kiln_dnnl_matmul_exec(f->mm, in[0]->data, in[1]->data,
                                           n->sum_input ? in[2]->data : NULL, out[0]->data, err);
    if (st) return kiln_op_fail(err, st, n, "%s", err ? err->msg : "oneDNN matmul failed");
    return KILN_OK;
}

static kiln_status matmul_prepare(const struct kiln_node *n, struct kiln_exec_ctx *ctx,
                                  const struct kiln_value *const *in, int n_in,
                                  struct kiln_value *const *out, int n_out,
                                  struct kiln_kernel *k, kiln_error *err) {
    if (n_in != (n->sum_input ? 3 : 2) || in[0]->dtype != KILN_DTYPE_FLOAT ||
        in[1]->dtype != KILN_DTYPE_FLOAT)
        return KILN_OK;
    struct mm_shape s;
    if (mm_analyze(n, in[0], in[1], &s, NULL) || mm_bias_check(n, in, n_in, &s, NULL))
        return KILN_OK;
    if (s.M == 0 || s.N == 0 || s.K == 0 || s.nbatch == 0) return KILN_OK;
    struct kiln_dnnl_matmul_desc d;
    memset(&d, 0, sizeof d);
    d.wcache = ctx ? ctx->wcache : NULL;
    d.alpha = 1.0f;
    d.wei_const = in[1]->data;
    if (in[1]->rank <= 2) {
        /* fold A's batch dims into M: one 2-D product against one weight matrix */
        int64_t rows = s.nbatch * s.M;
        d.rank = 2;
        d.src_dims[0] = rows; d.src_dims[1] = s.K;
        d.wei_dims[0] = s.K; d.wei_dims[1] = s.N;
        d.dst_dims[0] = rows; d.dst_dims[1] = s.N;
    } else {
        d.rank = s.brank + 2;
        if (d.rank < 2) d.rank = 2;
        int32_t ba = in[0]->rank > 2 ? in[0]->rank - 2 : 0, bb = in[1]->rank - 2;
        for (int32_t i = 0; i < s.brank; i++) {
            int32_t ia = i - (s.brank - ba), ib = i - (s.brank - bb);
            d.src_dims[i] = ia >= 0 ? in[0]->dims[ia] : 1;
            d.wei_dims[i] = ib >= 0 ? in[1]->dims[ib] : 1;
            d.dst_dims[i] = s.bdims[i];
        }
        d.src_dims[s.brank] = s.M; d.src_dims[s.brank + 1] = s.K;
        d.wei_dims[s.brank] = s.K; d.wei_dims[s.brank + 1] = s.N;
        d.dst_dims[s.brank] = s.M; d.dst_dims[s.brank + 1] = s.N;
    }
    dense_strides_of(d.rank, d.src_dims, d.src_strides);
    dense_strides_of(d.rank, d.wei_dims, d.wei_strides);
    if (n->sum_input) {   /* fused bias [N]: oneDNN's bias broadcast over all rows */
        d.has_bias = true;
        for (int32_t i = 0; i < d.rank; i++) d.bias_dims[i] = 1;
        d.bias_dims[d.rank - 1] = s.N;
    }
    struct mm_fast *f = calloc(1, sizeof *f);
    if (!f) return kiln_op_fail(err, KILN_ERR_NO_MEMORY, n, "out of memory");
    f->kind = FAST_MATMUL;
    if (n->act.kind && kiln_dnnl_matmul_act_ok((int32_t)n->act.kind)) {
        d.act = (int32_t)n->act.kind;
        d.act_alpha = n->act.alpha;
        d.act_beta = n->act.beta;
        f->act_fused = 1;
    }
    kiln_error e2;
    kiln_status st = kiln_dnnl_matmul_create(&d, &f->mm, &k->impl, &e2);
    if (st == KILN_ERR_UNSUPPORTED) {   /* declined: reference kernel */
        free(f);
        return KILN_OK;
    }
    if (st) {
        free(f);
        return kiln_op_fail(err, st, n, "%s", e2.msg);
    }
    mm_fast_record(f, in, n_in);
    k->state = f;
    k->fused_activation = f->act_fused;
    k->release = mm_fast_release;
    k->run = matmul_fast_run;
    return KILN_OK;
}

/* ------------------------------------------------------------------------ */
/* Gemm                                                                      */

static bool gemm_c_broadcasts(const struct kiln_value *c, int64_t M, int64_t N) {
    if (c->rank > 2) return false;
    int64_t cm = c->rank == 2 ? c->dims[0] : 1;
    int64_t cn = c->rank >= 1 ? c->dims[c->rank - 1] : 1;
    return (cm == M || cm == 1) && (cn == N || cn == 1);
}

static kiln_status gemm_infer(const struct kiln_node *n, const struct kiln_value *const *in,
                              int n_in, struct kiln_value *const *out, int n_out,
                              kiln_error *err) {
    kiln_status st = kiln_op_check_arity(n, n_in, n->opset >= 11 ? 2 : 3, 3, err);
    if (st) return st;
    if ((st = need_out0(n, out, n_out, err))) return st;
    const struct kiln_value *a = in[0], *b = in[1], *c = n_in > 2 ? in[2] : NULL;
    if (a->dtype != b->dtype || !mm_dtype_ok(a->dtype) || (c && c->dtype != a->dtype))
        return kiln_op_fail(err, KILN_ERR_SHAPE, n,
                            "expected A, B (and C) of one float or int32/64 type, got %s, %s%s%s",
                            kiln_dtype_name(a->dtype), kiln_dtype_name(b->dtype), c ? ", " : "",
                            c ? kiln_dtype_name(c->dtype) : "");
    if (a->rank != 2 || b->rank != 2)
        return kiln_op_fail(err, KILN_ERR_SHAPE, n, "expected 2-D A and B, got rank %d and %d",
                            a->rank, b->rank);
    int64_t ta = kiln_attr_int(n, "transA", 0), tb = kiln_attr_int(n, "transB", 0);
    int64_t M = ta ? a->dims[1] : a->dims[0], K = ta ? a->dims[0] : a->dims[1];
    int64_t K2 = tb ? b->dims[1] : b->dims[0], N = tb ? b->dims[0] : b->dims[1];
    if (K != K2)
        return kiln_op_fail(err, KILN_ERR_SHAPE, n,
                            "inner dimensions differ: op(A) is %lldx%lld, op(B) is %lldx%lld",
                            (long long)M, (long long)K, (long long)K2, (long long)N);
    if (c && !gemm_c_broadcasts(c, M, N)) {
        char sc[128];
        kiln_shape_str(c, sc, sizeof sc);
        return kiln_op_fail(err, KILN_ERR_SHAPE, n, "C %s does not broadcast to [%lld,%lld]", sc,
                            (long long)M, (long long)N);
    }
    int64_t dims[2] = {M, N};
    if ((st = check_numel(n, 2, dims, err))) return st;
    kiln_value_set_shape(out[0], a->dtype, 2, dims);
    return KILN_OK;
}

static double gemm_c_at(const struct kiln_value *c, int64_t i, int64_t j) {
    int64_t cm = c->rank == 2 ? c->dims[0] : 1;
    int64_t cn = c->rank >= 1 ? c->dims[c->rank - 1] : 1;
    int64_t idx = (cm == 1 ? 0 : i) * cn + (cn == 1 ? 0 : j);
    return kiln_value_get_f64(c, idx);
}

/* out = alpha * out + beta * C (float32 output) */
static void gemm_epilogue_f32(float *o, int64_t M, int64_t N, float alpha, float beta,
                              const struct kiln_value *c) {
    bool cf = c && beta != 0.0f && c->dtype == KILN_DTYPE_FLOAT;
    int64_t cm = 1, cn = 1;
    if (c) {
        cm = c->rank == 2 ? c->dims[0] : 1;
        cn = c->rank >= 1 ? c->dims[c->rank - 1] : 1;
    }
    for (int64_t i = 0; i < M; i++) {
        float *row = o + i * N;
        if (alpha != 1.0f)
            for (int64_t j = 0; j < N; j++) row[j] *= alpha;
        if (cf) {
            const float *cr = (const float *)c->data + (cm == 1 ? 0 : i) * cn;
            if (cn == 1)
                for (int64_t j = 0; j < N; j++) row[j] += beta * cr[0];
            else
                for (int64_t j = 0; j < N; j++) row[j] += beta * cr[j];
        }
    }
}

static kiln_status gemm_exec(const struct kiln_node *n, struct kiln_exec_ctx *ctx,
                             const struct kiln_value *const *in, int n_in,
                             struct kiln_value *const *out, int n_out, kiln_error *err) {
    const struct kiln_value *a = in[0], *b = in[1], *c = n_in > 2 ? in[2] : NULL;
    int ta = kiln_attr_int(n, "transA", 0) != 0, tb = kiln_attr_int(n, "transB", 0) != 0;
    float alpha = kiln_attr_float(n, "alpha", 1.0f), beta = kiln_attr_float(n, "beta", 1.0f);
    int64_t M = ta ? a->dims[1] : a->dims[0], K = ta ? a->dims[0] : a->dims[1];
    int64_t N = tb ? b->dims[0] : b->dims[1];
    int64_t on = M * N;
    if (on == 0) return KILN_OK;
    int nt = n_threads_of(ctx);
    kiln_dtype dt = a->dtype;
    if (dt == KILN_DTYPE_FLOAT || dt == KILN_DTYPE_FLOAT16 || dt == KILN_DTYPE_BFLOAT16) {
        float *fa = NULL, *fb = NULL, *fo = NULL, *pa = NULL, *pb = NULL;
        bool ok = true;
        const float *A = a->data, *B = b->data;
        float *O = out[0]->data;
        if (dt != KILN_DTYPE_FLOAT) {
            fa = to_f32(a, M * K);
            fb = to_f32(b, K * N);
            fo = malloc((size_t)on * sizeof *fo);
            ok = fa && fb && fo;
            A = fa;
            B = fb;
            O = fo;
        }
        if (ok && ta) {
            pa = malloc((size_t)(M * K > 0 ? M * K : 1) * sizeof *pa);
            if ((ok = pa != NULL)) transpose_f32(A, K, M, pa);
            A = pa;
        }
        if (ok && tb) {
            pb = malloc((size_t)(K * N > 0 ? K * N : 1) * sizeof *pb);
            if ((ok = pb != NULL)) transpose_f32(B, N, K, pb);
            B = pb;
        }
        if (ok) {
            gemm_batched_f32(1, NULL, NULL, A, K, B, N, O, M, N, K, nt);
            if (dt == KILN_DTYPE_FLOAT) {
                gemm_epilogue_f32(O, M, N, alpha, beta, c);
            } else {
                for (int64_t i = 0; i < M; i++)
                    for (int64_t j = 0; j < N; j++) {
                        double v = alpha * (double)O[i * N + j];
                        if (c && beta != 0.0f) v += beta * gemm_c_at(c, i, j);
                        O[i * N + j] = (float)v;
                    }
                from_f32(out[0], O, on);
            }
        }
        free(fa);
        free(fb);
        free(fo);
        free(pa);
        free(pb);
        if (!ok) return kiln_op_fail(err, KILN_ERR_NO_MEMORY, n, "out of memory for gemm scratch");
        return KILN_OK;
    }
    if (dt == KILN_DTYPE_DOUBLE) {
        double *pa = NULL, *pb = NULL;
        const double *A = a->data, *B = b->data;
        double *O = out[0]->data;
        bool ok = true;
        if (ta) {
            pa = malloc((size_t)(M * K > 0 ? M * K : 1) * sizeof *pa);
            if ((ok = pa != NULL)) transpose_f64(A, K, M, pa);
            A = pa;
        }
        if (ok && tb) {
            pb = malloc((size_t)(K * N > 0 ? K * N : 1) * sizeof *pb);
            if ((ok = pb != NULL)) transpose_f64(B, N, K, pb);
            B = pb;
        }
        if (ok) {
            gemm_batched_f64(1, NULL, NULL, A, K, B, N, O, M, N, K, nt);
            for (int64_t i = 0; i < M; i++)
                for (int64_t j = 0; j < N; j++) {
                    double v = (double)alpha * O[i * N + j];
                    if (c && beta != 0.0f) v += (double)beta * gemm_c_at(c, i, j);
                    O[i * N + j] = v;
                }
        }
        free(pa);
        free(pb);
        if (!ok) return kiln_op_fail(err, KILN_ERR_NO_MEMORY, n, "out of memory for gemm scratch");
        return KILN_OK;
    }
    /* integer types: exact wrap-around products; alpha/beta applied in double only when != 1 */
    for (int64_t i = 0; i < M; i++)
        for (int64_t j = 0; j < N; j++) {
            uint64_t s = 0;
            for (int64_t k = 0; k < K; k++)
                s += (uint64_t)kiln_value_get_int(a, ta ? k * M + i : i * K + k) *
                     (uint64_t)kiln_value_get_int(b, tb ? j * K + k : k * N + j);
            int64_t v = (int64_t)s;
            if (alpha != 1.0f) v = (int64_t)(alpha * (double)v);
            if (c && beta != 0.0f) {
                int64_t cm = c->rank == 2 ? c->dims[0] : 1;
                int64_t cn = c->rank >= 1 ? c->dims[c->rank - 1] : 1;
                int64_t cv = kiln_value_get_int(c, (cm == 1 ? 0 : i) * cn + (cn == 1 ? 0 : j));
                v = beta == 1.0f ? (int64_t)((uint64_t)v + (uint64_t)cv)
                                 : v + (int64_t)(beta * (double)cv);
            }
            int64_t oi = i * N + j;
            switch (dt) {
            case KILN_DTYPE_INT32: ((int32_t *)out[0]->data)[oi] = (int32_t)(uint32_t)v; break;
            case KILN_DTYPE_UINT32: ((uint32_t *)out[0]->data)[oi] = (uint32_t)v; break;
            case KILN_DTYPE_INT64: ((int64_t *)out[0]->data)[oi] = v; break;
            default: ((uint64_t *)out[0]->data)[oi] = (uint64_t)v; break;
            }
        }
    return KILN_OK;
}

static double gemm_flops(const struct kiln_node *n, const struct kiln_value *const *in, int n_in,
                         struct kiln_value *const *out, int n_out) {
    if (n_in < 2 || in[0]->rank != 2 || out[0]->rank != 2) return 0;
    int64_t K = kiln_attr_int(n, "transA", 0) ? in[0]->dims[0] : in[0]->dims[1];
    return 2.0 * (double)out[0]->dims[0] * (double)out[0]->dims[1] * (double)K;
}

static kiln_status gemm_fast_run(const struct kiln_node *n, struct kiln_exec_ctx *ctx,
                                 void *state, const struct kiln_value *const *in, int n_in,
                                 struct kiln_value *const *out, int n_out, kiln_error *err) {
    struct mm_fast *f = state;
    if (!mm_fast_same_shapes(f, in, n_in)) {
        kiln_status st = gemm_exec(n, ctx, in, n_in, out, n_out, err);
        if (!st && f->act_fused) st = kiln_activation_apply(n, out[0], err);
        return st;
    }
    const struct kiln_value *c = n_in > 2 ? in[2] : NULL;
    float *o = out[0]->data;
    if (f->prefill) {
        int64_t M = out[0]->dims[0], N = out[0]->dims[1];
        int64_t cm = c->rank == 2 ? c->dims[0] : 1;
        int64_t cn = c->rank >= 1 ? c->dims[c->rank - 1] : 1;
        const float *cd = c->data;
        for (int64_t i = 0; i < M; i++) {
            const float *cr = cd + (cm == 1 ? 0 : i) * cn;
            float *row = o + i * N;
            if (cn == 1)
                for (int64_t j = 0; j < N; j++) row[j] = cr[0];
            else
                memcpy(row, cr, (size_t)N * sizeof *row);
        }
    }
    kiln_status st = kiln_dnnl_matmul_exec(f->mm, in[0]->data, in[1]->data,
                                           f->use_bias ? c->data : NULL, o, err);
    if (st) return kiln_op_fail(err, st, n, "%s", err ? err->msg : "oneDNN matmul failed");
    return KILN_OK;
}

static kiln_status gemm_prepare(const struct kiln_node *n, struct kiln_exec_ctx *ctx,
                                const struct kiln_value *const *in, int n_in,
                                struct kiln_value *const *out, int n_out, struct kiln_kernel *k,
                                kiln_error *err) {
    const struct kiln_value *a = in[0], *b = in[1], *c = n_in > 2 ? in[2] : NULL;
    if (a->dtype != KILN_DTYPE_FLOAT || a->rank != 2 || b->rank != 2) return KILN_OK;
    int ta = kiln_attr_int(n, "transA", 0) != 0, tb = kiln_attr_int(n, "transB", 0) != 0;
    float alpha = kiln_attr_float(n, "alpha", 1.0f), beta = kiln_attr_float(n, "beta", 1.0f);
    int64_t M = ta ? a->dims[1] : a->dims[0], K = ta ? a->dims[0] : a->dims[1];
    int64_t N = tb ? b->dims[0] : b->dims[1];
    if (M == 0 || N == 0 || K == 0) return KILN_OK;
    if (c && !gemm_c_broadcasts(c, M, N)) return KILN_OK;
    struct kiln_dnnl_matmul_desc d;
    memset(&d, 0, sizeof d);
    d.wcache = ctx ? ctx->wcache : NULL;
    d.rank = 2;
    d.src_dims[0] = M; d.src_dims[1] = K;
    d.src_strides[0] = ta ? 1 : K; d.src_strides[1] = ta ? M : 1;
    d.wei_dims[0] = K; d.wei_dims[1] = N;
    d.wei_strides[0] = tb ? 1 : N; d.wei_strides[1] = tb ? K : 1;
    d.dst_dims[0] = M; d.dst_dims[1] = N;
    d.wei_const = b->data;
    d.alpha = alpha;
    struct mm_fast *f = calloc(1, sizeof *f);
    if (!f) return kiln_op_fail(err, KILN_ERR_NO_MEMORY, n, "out of memory");
    f->kind = FAST_GEMM;
    if (c && beta != 0.0f) {
        if (alpha == 1.0f && beta == 1.0f) {
            f->use_bias = 1;
            d.has_bias = true;
            d.bias_dims[0] = c->rank == 2 ? c->dims[0] : 1;
            d.bias_dims[1] = c->rank >= 1 ? c->dims[c->rank - 1] : 1;
        } else {
            f->prefill = 1;
            d.sum_beta = beta;
        }
    }
    if (n->act.kind && kiln_dnnl_matmul_act_ok((int32_t)n->act.kind)) {
        d.act = (int32_t)n->act.kind;
        d.act_alpha = n->act.alpha;
        d.act_beta = n->act.beta;
        f->act_fused = 1;
    }
    kiln_error e2;
    kiln_status st = kiln_dnnl_matmul_create(&d, &f->mm, &k->impl, &e2);
    if (st == KILN_ERR_UNSUPPORTED) {
        free(f);
        return KILN_OK;
    }
    if (st) {
        free(f);
        return kiln_op_fail(err, st, n, "%s", e2.msg);
    }
    mm_fast_record(f, in, n_in);
    k->state = f;
    k->fused_activation = f->act_fused;
    k->release = mm_fast_release;
    k->run = gemm_fast_run;
    return KILN_OK;
}

/* ------------------------------------------------------------------------ */
/* MatMulInteger                                                             */

static bool i8ish(kiln_dtype t) { return t == KILN_DTYPE_UINT8 || t == KILN_DTYPE_INT8; }

/* zero point: scalar (numel 1) or one per row of A (len M) / column of B (len N) */
static kiln_status mmi_zp_ok(const struct kiln_node *n, const struct kiln_value *zp,
                             const struct kiln_value *of, int64_t len, const char *what,
                             kiln_error *err) {
    if (!zp) return KILN_OK;
    if (zp->dtype != of->dtype)
        return kiln_op_fail(err, KILN_ERR_SHAPE, n, "%s type %s differs from its input's %s", what,
                            kiln_dtype_name(zp->dtype), kiln_dtype_name(of->dtype));
    int64_t cnt = kiln_value_numel(zp);
    if (cnt == 1 || (cnt == len && zp->rank <= 2)) return KILN_OK;
    return kiln_op_fail(err, KILN_ERR_UNSUPPORTED, n,
                        "%s: expected a scalar or %lld per-%s values, got %lld elements", what,
                        (long long)len, what[0] == 'a' ? "row" : "column", (long long)cnt);
}

static kiln_status mmi_infer(const struct kiln_node *n, const struct kiln_value *const *in,
                             int n_in, struct kiln_value *const *out, int n_out,
                             kiln_error *err) {
    kiln_status st = kiln_op_check_arity(n, n_in, 2, 4, err);
    if (st) return st;
    if ((st = need_out0(n, out, n_out, err))) return st;
    if (!i8ish(in[0]->dtype) || !i8ish(in[1]->dtype))
        return kiln_op_fail(err, KILN_ERR_SHAPE, n, "expected uint8/int8 A and B, got %s and %s",
                            kiln_dtype_name(in[0]->dtype), kiln_dtype_name(in[1]->dtype));
    struct mm_shape s;
    if ((st = mm_analyze(n, in[0], in[1], &s, err))) return st;
    if ((st = mmi_zp_ok(n, n_in > 2 ? in[2] : NULL, in[0], s.M, "a_zero_point", err)) ||
        (st = mmi_zp_ok(n, n_in > 3 ? in[3] : NULL, in[1], s.N, "b_zero_point", err)))
        return st;
    kiln_value_set_shape(out[0], KILN_DTYPE_INT32, s.out_rank, s.out_dims);
    return KILN_OK;
}

static kiln_status mmi_exec(const struct kiln_node *n, struct kiln_exec_ctx *ctx,
                            const struct kiln_value *const *in, int n_in,
                            struct kiln_value *const *out, int n_out, kiln_error *err) {
    struct mm_shape s;
    kiln_status st = mm_analyze(n, in[0], in[1], &s, err);
    if (st) return st;
    if (kiln_value_numel(out[0]) == 0) return KILN_OK;
    const struct kiln_value *a = in[0], *b = in[1];
    const struct kiln_value *az = n_in > 2 ? in[2] : NULL, *bz = n_in > 3 ? in[3] : NULL;
    int64_t M = s.M, N = s.N, K = s.K;
    int64_t *aoff = mm_batch_offsets(&s, a, M * K), *boff = mm_batch_offsets(&s, b, K * N);
    int32_t *bs = malloc((size_t)(K * N > 0 ? K * N : 1) * sizeof *bs);
    if (!aoff || !boff || !bs) {
        free(aoff);
        free(boff);
        free(bs);
        return kiln_op_fail(err, KILN_ERR_NO_MEMORY, n, "out of memory for matmul scratch");
    }
    bool a_row = az && kiln_value_numel(az) > 1, b_col = bz && kiln_value_numel(bz) > 1;
    int32_t *o = out[0]->data;
    for (int64_t bt = 0; bt < s.nbatch; bt++) {
        /* B with its zero point removed, as int32 [K, N] */
        for (int64_t k = 0; k < K; k++)
            for (int64_t j = 0; j < N; j++)
                bs[k * N + j] = (int32_t)(kiln_value_get_int(b, boff[bt] + k * N + j) -
                                          (bz ? kiln_value_get_int(bz, b_col ? j : 0) : 0));
#pragma omp parallel for schedule(static) if (M * N * K > 32768)
        for (int64_t i = 0; i < M; i++) {
            int32_t azp = az ? (int32_t)kiln_value_get_int(az, a_row ? i : 0) : 0;
            uint32_t *row = (uint32_t *)(o + (bt * M + i) * N);   /* int32, wrapping */
            for (int64_t j = 0; j < N; j++) row[j] = 0;
            for (int64_t k = 0; k < K; k++) {
                uint32_t av = (uint32_t)((int32_t)kiln_value_get_int(a, aoff[bt] + i * K + k) - azp);
                const int32_t *br = bs + k * N;
                for (int64_t j = 0; j < N; j++) row[j] += av * (uint32_t)br[j];
            }
        }
    }
    free(aoff);
    free(boff);
    free(bs);
    return KILN_OK;
}

/* ------------------------------------------------------------------------ */
/* Einsum: a generic contraction. Each label gets, per input, the sum of the
 * strides of the dims it names (repeated labels = diagonals; broadcast
 * ellipsis dims of size 1 = stride 0); outputs are computed independently,
 * summed labels in row-major order. */

#define EIN_LETTERS 52
#define EIN_MAX_LABELS (EIN_LETTERS + KILN_MAX_RANK)
#define EIN_MAX_IN 16

struct ein {
    int     n_in;
    int64_t dim[EIN_MAX_LABELS];          /* -1: unused */
    int64_t stride[EIN_MAX_IN][EIN_MAX_LABELS];
    int     out_rank;
    int     out_lab[KILN_MAX_RANK];
    int     n_sum;
    int     sum_lab[EIN_MAX_LABELS];
};

static int ein_letter(char c) {
    if (c >= 'a' && c <= 'z') return c - 'a';
    if (c >= 'A' && c <= 'Z') return 26 + (c - 'A');
    return -1;
}

static kiln_status ein_parse(const struct kiln_node *n, const struct kiln_value *const *in,
                             int n_in, struct ein *e, kiln_error *err) {
    memset(e, 0, sizeof *e);
    const char *eq = kiln_attr_string(n, "equation", NULL);
    if (!eq) return kiln_op_fail(err, KILN_ERR_BAD_MODEL, n, "missing 'equation'");
    if (n_in < 1 || n_in > EIN_MAX_IN)
        return kiln_op_fail(err, KILN_ERR_UNSUPPORTED, n, "expected 1 to %d inputs, got %d",
                            EIN_MAX_IN, n_in);
    e->n_in = n_in;
    for (int l = 0; l < EIN_MAX_LABELS; l++) e->dim[l] = -1;
    const char *arrow = strstr(eq, "->");
    size_t lhs_len = arrow ? (size_t)(arrow - eq) : strlen(eq);
    int count[EIN_MAX_LABELS] = {0};
    int ell_rank = 0, have_ell = 0;
    /* pass 1: ellipsis ranks */
    int term = 0;
    int n_letters[EIN_MAX_IN] = {0}, has_ell[EIN_MAX_IN] = {0};
    for (size_t p = 0; p <= lhs_len; p++) {
        char c = p < lhs_len ? eq[p] : ',';
        if (c == ',') {
            if (term >= n_in)
                return kiln_op_fail(err, KILN_ERR_BAD_MODEL, n,
                                    "equation '%s' has more terms than the %d inputs", eq, n_in);
            term++;
        } else if (c == '.') {
            if (p + 2 >= lhs_len + 1 || eq[p + 1] != '.' || eq[p + 2] != '.' || has_ell[term])
                return kiln_op_fail(err, KILN_ERR_BAD_MODEL, n, "bad ellipsis in '%s'", eq);
            has_ell[term] = 1;
            p += 2;
        } else if (ein_letter(c) >= 0) {
            n_letters[term]++;
        } else if (c != ' ') {
            return kiln_op_fail(err, KILN_ERR_BAD_MODEL, n, "bad character '%c' in equation '%s'", c,
                                eq);
        }
    }
    if (term != n_in)
        return kiln_op_fail(err, KILN_ERR_BAD_MODEL, n, "equation '%s' has %d terms for %d inputs",
                            eq, term, n_in);
    for (int i = 0; i < n_in; i++) {
        int er = in[i]->rank - n_letters[i];
        if (er < 0 || (!has_ell[i] && er != 0))
            return kiln_op_fail(err, KILN_ERR_SHAPE, n,
                                "input %d has rank %d but its term names %d dims", i, in[i]->rank,
                                n_letters[i]);
        if (er > ell_rank) ell_rank = er;
        if (has_ell[i]) have_ell = 1;
    }
    /* pass 2: bind dims to labels */
    term = 0;
    int dpos = 0;
    int64_t tmp_dim[EIN_MAX_IN][EIN_MAX_LABELS];
    for (int i = 0; i < n_in; i++)
        for (int l = 0; l < EIN_MAX_LABELS; l++) tmp_dim[i][l] = -1;
    int64_t istr[KILN_MAX_RANK];
    kiln_strides(in[0]->rank, in[0]->dims, istr);
    for (size_t p = 0; p <= lhs_len; p++) {
        char c = p < lhs_len ? eq[p] : ',';
        const struct kiln_value *v = in[term];
        if (c == ',') {
            term++;
            dpos = 0;
            if (term < n_in) kiln_strides(in[term]->rank, in[term]->dims, istr);
            continue;
        }
        if (c == ' ') continue;
        int labs[KILN_MAX_RANK], nl = 0;
        if (c == '.') {
            int er = v->rank - n_letters[term];
            for (int k = 0; k < er; k++) labs[nl++] = EIN_LETTERS + (ell_rank - er + k);
            p += 2;
        } else {
            labs[nl++] = ein_letter(c);
            count[labs[0]]++;
        }
        for (int k = 0; k < nl; k++, dpos++) {
            int l = labs[k];
            int64_t d = v->dims[dpos];
            if (tmp_dim[term][l] >= 0 && tmp_dim[term][l] != d)
                return kiln_op_fail(err, KILN_ERR_SHAPE, n,
                                    "input %d repeats a label over dims %lld and %lld", term,
                                    (long long)tmp_dim[term][l], (long long)d);
            tmp_dim[term][l] = d;
            e->stride[term][l] += istr[dpos];
        }
    }
    for (int l = 0; l < EIN_MAX_LABELS; l++)
        for (int i = 0; i < n_in; i++) {
            int64_t d = tmp_dim[i][l];
            if (d < 0) continue;
            if (e->dim[l] < 0 || e->dim[l] == 1) e->dim[l] = d;
            else if (d != e->dim[l] && !(d == 1 && l >= EIN_LETTERS))
                return kiln_op_fail(err, KILN_ERR_SHAPE, n,
                                    "label '%c' has sizes %lld and %lld",
                                    l < 26 ? 'a' + l : l < 52 ? 'A' + l - 26 : '.',
                                    (long long)e->dim[l], (long long)d);
        }
    /* broadcast ellipsis dims of size 1: stride 0 */
    for (int i = 0; i < n_in; i++)
        for (int l = EIN_LETTERS; l < EIN_MAX_LABELS; l++)
            if (tmp_dim[i][l] == 1 && e->dim[l] > 1) e->stride[i][l] = 0;
    /* output labels */
    int in_out[EIN_MAX_LABELS] = {0};
    if (arrow) {
        const char *o = arrow + 2;
        int seen_ell = 0;
        for (; *o; o++) {
            if (*o == ' ') continue;
            if (*o == '.') {
                if (o[1] != '.' || o[2] != '.' || seen_ell)
                    return kiln_op_fail(err, KILN_ERR_BAD_MODEL, n, "bad output ellipsis in '%s'",
                                        eq);
                seen_ell = 1;
                o += 2;
                for (int k = 0; k < ell_rank; k++) {
                    if (e->out_rank >= KILN_MAX_RANK)
                        return kiln_op_fail(err, KILN_ERR_UNSUPPORTED, n, "output rank too large");
                    e->out_lab[e->out_rank++] = EIN_LETTERS + k;
                    in_out[EIN_LETTERS + k] = 1;
                }
                continue;
            }
            int l = ein_letter(*o);
            if (l < 0 || e->dim[l] < 0 || in_out[l])
                return kiln_op_fail(err, KILN_ERR_BAD_MODEL, n,
                                    "output label '%c' is unknown or repeated in '%s'", *o, eq);
            if (e->out_rank >= KILN_MAX_RANK)
                return kiln_op_fail(err, KILN_ERR_UNSUPPORTED, n, "output rank too large");
            e->out_lab[e->out_rank++] = l;
            in_out[l] = 1;
        }
    } else {
        for (int k = 0; k < ell_rank; k++) {
            e->out_lab[e->out_rank++] = EIN_LETTERS + k;
            in_out[EIN_LETTERS + k] = 1;
        }
        /* letters used once, in ASCII order (upper case first) */
        for (int pass = 0; pass < 2; pass++)
            for (int k = 0; k < 26; k++) {
                int l = pass == 0 ? 26 + k : k;
                if (count[l] == 1) {
                    if (e->out_rank >= KILN_MAX_RANK)
                        return kiln_op_fail(err, KILN_ERR_UNSUPPORTED, n, "output rank too large");
                    e->out_lab[e->out_rank++] = l;
                    in_out[l] = 1;
                }
            }
    }
    (void)have_ell;
    for (int l = 0; l < EIN_MAX_LABELS; l++)
        if (e->dim[l] >= 0 && !in_out[l]) e->sum_lab[e->n_sum++] = l;
    return KILN_OK;
}

static kiln_status einsum_infer(const struct kiln_node *n, const struct kiln_value *const *in,
                                int n_in, struct kiln_value *const *out, int n_out,
                                kiln_error *err) {
    if (n_in < 1) return kiln_op_fail(err, KILN_ERR_BAD_MODEL, n, "expected at least one input");
    kiln_status st0 = need_out0(n, out, n_out, err);
    if (st0) return st0;
    for (int i = 0; i < n_in; i++) {
        if (!in[i]) return kiln_op_fail(err, KILN_ERR_BAD_MODEL, n, "input %d is missing", i);
        if (in[i]->dtype != in[0]->dtype ||
            !(kiln_dtype_is_float(in[i]->dtype) || kiln_dtype_is_int(in[i]->dtype)))
            return kiln_op_fail(err, KILN_ERR_SHAPE, n,
                                "expected inputs of one numeric type, input %d is %s", i,
                                kiln_dtype_name(in[i]->dtype));
    }
    struct ein *e = malloc(sizeof *e);
    if (!e) return kiln_op_fail(err, KILN_ERR_NO_MEMORY, n, "out of memory");
    kiln_status st = ein_parse(n, in, n_in, e, err);
    if (!st) {
        int64_t dims[KILN_MAX_RANK];
        for (int k = 0; k < e->out_rank; k++) dims[k] = e->dim[e->out_lab[k]];
        st = check_numel(n, e->out_rank, dims, err);
        if (!st) kiln_value_set_shape(out[0], in[0]->dtype, e->out_rank, dims);
    }
    free(e);
    return st;
}

static kiln_status einsum_exec(const struct kiln_node *n, struct kiln_exec_ctx *ctx,
                               const struct kiln_value *const *in, int n_in,
                               struct kiln_value *const *out, int n_out, kiln_error *err) {
    struct ein *e = malloc(sizeof *e);
    if (!e) return kiln_op_fail(err, KILN_ERR_NO_MEMORY, n, "out of memory");
    kiln_status st = ein_parse(n, in, n_in, e, err);
    if (st) {
        free(e);
        return st;
    }
    int64_t on = kiln_value_numel(out[0]), sn = 1;
    for (int k = 0; k < e->n_sum; k++) sn *= e->dim[e->sum_lab[k]];
    bool is_f = kiln_dtype_is_float(out[0]->dtype);
    bool all_f32 = out[0]->dtype == KILN_DTYPE_FLOAT, all_f64 = out[0]->dtype == KILN_DTYPE_DOUBLE;
#pragma omp parallel for schedule(static) if (on > 1 && (double)on * (double)sn > 32768)
    for (int64_t o = 0; o < on; o++) {
        int64_t base[EIN_MAX_IN] = {0}, r = o;
        for (int k = e->out_rank - 1; k >= 0; k--) {
            int l = e->out_lab[k];
            int64_t idx = r % e->dim[l];
            r /= e->dim[l];
            for (int i = 0; i < e->n_in; i++) base[i] += idx * e->stride[i][l];
        }
        double accf = 0;
        uint64_t acci = 0;
        /* the last summed label runs innermost, by stride; the others are decoded */
        int last = e->n_sum > 0 ? e->sum_lab[e->n_sum - 1] : -1;
        int64_t inner = last >= 0 ? e->dim[last] : 1, outer = inner > 0 ? sn / inner : 0;
        int64_t istr[EIN_MAX_IN];
        for (int i = 0; i < e->n_in; i++) istr[i] = last >= 0 ? e->stride[i][last] : 0;
        for (int64_t s = 0; s < outer; s++) {
            int64_t off[EIN_MAX_IN], rr = s;
            for (int i = 0; i < e->n_in; i++) off[i] = base[i];
            for (int k = e->n_sum - 2; k >= 0; k--) {
                int l = e->sum_lab[k];
                int64_t idx = rr % e->dim[l];
                rr /= e->dim[l];
                for (int i = 0; i < e->n_in; i++) off[i] += idx * e->stride[i][l];
            }
            for (int64_t t = 0; t < inner; t++) {
                if (all_f32) {
                    double p = 1;
                    for (int i = 0; i < e->n_in; i++)
                        p *= ((const float *)in[i]->data)[off[i] + t * istr[i]];
                    accf += p;
                } else if (all_f64) {
                    double p = 1;
                    for (int i = 0; i < e->n_in; i++)
                        p *= ((const double *)in[i]->data)[off[i] + t * istr[i]];
                    accf += p;
                } else if (is_f) {
                    double p = 1;
                    for (int i = 0; i < e->n_in; i++)
                        p *= kiln_value_get_f64(in[i], off[i] + t * istr[i]);
                    accf += p;
                } else {
                    uint64_t p = 1;
                    for (int i = 0; i < e->n_in; i++)
                        p *= (uint64_t)kiln_value_get_int(in[i], off[i] + t * istr[i]);
                    acci += p;
                }
            }
        }
        if (is_f) kiln_value_set_f64(out[0], o, accf);
        else if (out[0]->dtype == KILN_DTYPE_INT64 || out[0]->dtype == KILN_DTYPE_UINT64)
            ((uint64_t *)out[0]->data)[o] = acci;
        else if (out[0]->dtype == KILN_DTYPE_INT32 || out[0]->dtype == KILN_DTYPE_UINT32)
            ((uint32_t *)out[0]->data)[o] = (uint32_t)acci;
        else if (out[0]->dtype == KILN_DTYPE_INT16 || out[0]->dtype == KILN_DTYPE_UINT16)
            ((uint16_t *)out[0]->data)[o] = (uint16_t)acci;
        else
            ((uint8_t *)out[0]->data)[o] = (uint8_t)acci;
    }
    free(e);
    return KILN_OK;
}

/* ------------------------------------------------------------------------ */
/* Attention (opset 23/24)                                                   */
/*
 * Inputs Q, K, V, attn_mask?, past_key?, past_value?, nonpad_kv_seqlen? (24).
 * 4-D: Q [B,Hq,Sq,D], K [B,Hkv,Skv,D], V [B,Hkv,Skv,Dv]; 3-D: [B,S,H*D] with
 * q_num_heads / kv_num_heads. Hq must be a multiple of Hkv (grouped-query:
 * query head h reads kv head h / (Hq/Hkv)). For each query row:
 *   s = scale * q.k  ->  softcap  ->  + mask (bool: keep/-inf, float: add;
 *   columns past the mask's last dim are -inf) + causal + key padding
 *   ->  softmax  ->  y = p.V
 * qk_matmul_output_mode picks which stage output 3 holds: 0/1 the (softcapped)
 * product, 2 after the mask, 3 the softmax. A fully masked row yields zeros.
 */

struct attn_dims {
    int     three_d;
    int64_t B, Hq, Hkv, Sq, Skv, D, Dv, P, total;
};

static kiln_status attn_analyze(const struct kiln_node *n, const struct kiln_value *const *in,
                                int n_in, struct attn_dims *a, kiln_error *err) {
    memset(a, 0, sizeof *a);
    int max_in = n->opset >= 24 ? 7 : 6;
    kiln_status st = kiln_op_check_arity(n, n_in, 3, max_in, err);
    if (st) return st;
    const struct kiln_value *q = in[0], *k = in[1], *v = in[2];
    kiln_dtype dt = q->dtype;
    if (!kiln_dtype_is_float(dt) || k->dtype != dt || v->dtype != dt)
        return kiln_op_fail(err, KILN_ERR_SHAPE, n, "expected Q, K, V of one float type, got %s, %s, %s",
                            kiln_dtype_name(q->dtype), kiln_dtype_name(k->dtype),
                            kiln_dtype_name(v->dtype));
    if (q->rank != k->rank || q->rank != v->rank || (q->rank != 3 && q->rank != 4))
        return kiln_op_fail(err, KILN_ERR_SHAPE, n,
                            "expected Q, K, V all 3-D or all 4-D, got ranks %d, %d, %d", q->rank,
                            k->rank, v->rank);
    a->B = q->dims[0];
    if (k->dims[0] != a->B || v->dims[0] != a->B)
        return kiln_op_fail(err, KILN_ERR_SHAPE, n, "Q, K, V batch sizes differ");
    if (q->rank == 3) {
        a->three_d = 1;
        a->Hq = kiln_attr_int(n, "q_num_heads", 0);
        a->Hkv = kiln_attr_int(n, "kv_num_heads", 0);
        if (a->Hq <= 0 || a->Hkv <= 0)
            return kiln_op_fail(err, KILN_ERR_BAD_MODEL, n,
                                "3-D inputs need positive q_num_heads and kv_num_heads");
        if (q->dims[2] % a->Hq || k->dims[2] % a->Hkv || v->dims[2] % a->Hkv)
            return kiln_op_fail(err, KILN_ERR_SHAPE, n,
                                "hidden sizes %lld/%lld/%lld are not multiples of the head counts",
                                (long long)q->dims[2], (long long)k->dims[2], (long long)v->dims[2]);
        a->Sq = q->dims[1];
        a->Skv = k->dims[1];
        a->D = q->dims[2] / a->Hq;
        if (k->dims[2] / a->Hkv != a->D)
            return kiln_op_fail(err, KILN_ERR_SHAPE, n, "Q and K head sizes differ");
        a->Dv = v->dims[2] / a->Hkv;
        if (v->dims[1] != a->Skv)
            return kiln_op_fail(err, KILN_ERR_SHAPE, n, "K and V sequence lengths differ");
    } else {
        a->Hq = q->dims[1];
        a->Hkv = k->dims[1];
        a->Sq = q->dims[2];
        a->Skv = k->dims[2];
        a->D = q->dims[3];
        a->Dv = v->dims[3];
        if (k->dims[3] != a->D)
            return kiln_op_fail(err, KILN_ERR_SHAPE, n, "Q and K head sizes differ (%lld vs %lld)",
                                (long long)a->D, (long long)k->dims[3]);
        if (v->dims[1] != a->Hkv || v->dims[2] != a->Skv)
            return kiln_op_fail(err, KILN_ERR_SHAPE, n, "K and V heads or sequence lengths differ");
    }
    if (a->Hkv <= 0 || a->Hq % a->Hkv)
        return kiln_op_fail(err, KILN_ERR_SHAPE, n,
                            "q heads (%lld) must be a multiple of kv heads (%lld)",
                            (long long)a->Hq, (long long)a->Hkv);
    const struct kiln_value *pk = n_in > 4 ? in[4] : NULL, *pv = n_in > 5 ? in[5] : NULL;
    if ((pk == NULL) != (pv == NULL))
        return kiln_op_fail(err, KILN_ERR_BAD_MODEL, n, "past_key and past_value go together");
    if (pk) {
        if (pk->dtype != dt || pv->dtype != dt || pk->rank != 4 || pv->rank != 4 ||
            pk->dims[0] != a->B || pk->dims[1] != a->Hkv || pk->dims[3] != a->D ||
            pv->dims[0] != a->B || pv->dims[1] != a->Hkv || pv->dims[3] != a->Dv ||
            pv->dims[2] != pk->dims[2])
            return kiln_op_fail(err, KILN_ERR_SHAPE, n,
                                "expected past_key [%lld,%lld,P,%lld] and past_value "
                                "[%lld,%lld,P,%lld]",
                                (long long)a->B, (long long)a->Hkv, (long long)a->D,
                                (long long)a->B, (long long)a->Hkv, (long long)a->Dv);
        a->P = pk->dims[2];
    }
    a->total = a->P + a->Skv;
    const struct kiln_value *m = n_in > 3 ? in[3] : NULL;
    if (m) {
        if (m->dtype != KILN_DTYPE_BOOL && m->dtype != dt)
            return kiln_op_fail(err, KILN_ERR_SHAPE, n, "attn_mask must be bool or %s, got %s",
                                kiln_dtype_name(dt), kiln_dtype_name(m->dtype));
        if (m->rank < 1 || m->rank > 4)
            return kiln_op_fail(err, KILN_ERR_SHAPE, n, "attn_mask rank %d not in 1..4", m->rank);
        int64_t want[4] = {a->B, a->Hq, a->Sq, a->total};
        for (int32_t i = 0; i < m->rank; i++) {
            int64_t d = m->dims[i], w = want[4 - m->rank + i];
            bool last = i == m->rank - 1;
            if (!(d == w || d == 1 || (last && d <= w)))
                return kiln_op_fail(err, KILN_ERR_SHAPE, n,
                                    "attn_mask dim %d is %lld, expected 1 or %lld", i,
                                    (long long)d, (long long)w);
        }
    }
    const struct kiln_value *nk = n_in > 6 ? in[6] : NULL;
    if (nk && (!kiln_dtype_is_int(nk->dtype) || kiln_value_numel(nk) != a->B))
        return kiln_op_fail(err, KILN_ERR_SHAPE, n, "nonpad_kv_seqlen must be int64 [%lld]",
                            (long long)a->B);
    int64_t chk[4] = {a->B, a->Hq, a->Sq, a->total};
    if ((st = check_numel(n, 4, chk, err))) return st;
    int64_t chk2[4] = {a->B, a->Hq, a->Sq, a->Dv};
    return check_numel(n, 4, chk2, err);
}

static kiln_status attention_infer(const struct kiln_node *n, const struct kiln_value *const *in,
                                   int n_in, struct kiln_value *const *out, int n_out,
                                   kiln_error *err) {
    struct attn_dims a;
    kiln_status st = attn_analyze(n, in, n_in, &a, err);
    if (st) return st;
    if ((st = need_out0(n, out, n_out, err))) return st;
    int64_t mode = kiln_attr_int(n, "qk_matmul_output_mode", 0);
    if (mode < 0 || mode > 3)
        return kiln_op_fail(err, KILN_ERR_BAD_MODEL, n, "qk_matmul_output_mode %lld not in 0..3",
                            (long long)mode);
    kiln_dtype dt = in[0]->dtype;
    if (a.three_d) {
        int64_t d[3] = {a.B, a.Sq, a.Hq * a.Dv};
        kiln_value_set_shape(out[0], dt, 3, d);
    } else {
        int64_t d[4] = {a.B, a.Hq, a.Sq, a.Dv};
        kiln_value_set_shape(out[0], dt, 4, d);
    }
    int64_t pk[4] = {a.B, a.Hkv, a.total, a.D}, pv[4] = {a.B, a.Hkv, a.total, a.Dv};
    int64_t qk[4] = {a.B, a.Hq, a.Sq, a.total};
    if (n_out > 1 && out[1]) kiln_value_set_shape(out[1], dt, 4, pk);
    if (n_out > 2 && out[2]) kiln_value_set_shape(out[2], dt, 4, pv);
    if (n_out > 3 && out[3]) kiln_value_set_shape(out[3], dt, 4, qk);
    return KILN_OK;
}

/* float32 copy of any float tensor */
static float *attn_load(const struct kiln_value *v) {
    int64_t cnt = kiln_value_numel(v);
    float *f = malloc((size_t)(cnt > 0 ? cnt : 1) * sizeof *f);
    if (!f) return NULL;
    if (v->dtype == KILN_DTYPE_FLOAT) memcpy(f, v->data, (size_t)cnt * sizeof *f);
    else
        for (int64_t i = 0; i < cnt; i++) f[i] = (float)kiln_value_get_f64(v, i);
    return f;
}

static void attn_store(struct kiln_value *v, const float *f, int64_t cnt) {
    if (v->dtype == KILN_DTYPE_FLOAT) memcpy(v->data, f, (size_t)cnt * sizeof *f);
    else
        for (int64_t i = 0; i < cnt; i++) kiln_value_set_f64(v, i, f[i]);
}

/* Builds present = concat(past, new) in [B, H, total, d] from a 3-D or 4-D new. */
static void attn_concat(float *dst, const float *past, const float *cur, const struct attn_dims *a,
                        int64_t H, int64_t d) {
    for (int64_t b = 0; b < a->B; b++)
        for (int64_t h = 0; h < H; h++) {
            float *o = dst + (b * H + h) * a->total * d;
            if (a->P) memcpy(o, past + (b * H + h) * a->P * d, (size_t)(a->P * d) * sizeof *o);
            for (int64_t s = 0; s < a->Skv; s++) {
                const float *src = a->three_d ? cur + ((b * a->Skv + s) * H + h) * d
                                              : cur + ((b * H + h) * a->Skv + s) * d;
                memcpy(o + (a->P + s) * d, src, (size_t)d * sizeof *o);
            }
        }
}

static kiln_status attention_exec(const struct kiln_node *n, struct kiln_exec_ctx *ctx,
                                  const struct kiln_value *const *in, int n_in,
                                  struct kiln_value *const *out, int n_out, kiln_error *err) {
    struct attn_dims a;
    kiln_status st = attn_analyze(n, in, n_in, &a, err);
    if (st) return st;
    const struct kiln_value *mv = n_in > 3 ? in[3] : NULL, *nk = n_in > 6 ? in[6] : NULL;
    bool has_past = n_in > 4 && in[4];
    int is_causal = kiln_attr_int(n, "is_causal", 0) != 0;
    int64_t mode = kiln_attr_int(n, "qk_matmul_output_mode", 0);
    const struct kiln_attr *sa = kiln_attr_find(n, "scale");
    float scale = sa ? kiln_attr_float(n, "scale", 1.0f) : 1.0f / sqrtf((float)a.D);
    float softcap = kiln_attr_float(n, "softcap", 0.0f);
    struct kiln_value *qk_out = n_out > 3 ? out[3] : NULL;

    int64_t kn = a.B * a.Hkv * a.total;
    float *q = attn_load(in[0]), *kc = NULL, *vc = NULL, *kk = NULL, *vv = NULL;
    float *pk = NULL, *pv = NULL, *mask = NULL, *y = NULL, *qko = NULL;
    bool ok = q != NULL;
    if (ok) {
        kk = attn_load(in[1]);
        vv = attn_load(in[2]);
        kc = malloc((size_t)(kn * a.D > 0 ? kn * a.D : 1) * sizeof *kc);
        vc = malloc((size_t)(kn * a.Dv > 0 ? kn * a.Dv : 1) * sizeof *vc);
        y = malloc((size_t)(a.B * a.Hq * a.Sq * a.Dv > 0 ? a.B * a.Hq * a.Sq * a.Dv : 1) *
                   sizeof *y);
        if (has_past) {
            pk = attn_load(in[4]);
            pv = attn_load(in[5]);
        }
        if (mv && mv->dtype != KILN_DTYPE_BOOL) mask = attn_load(mv);
        if (qk_out) {
            int64_t c = kiln_value_numel(qk_out);
            qko = malloc((size_t)(c > 0 ? c : 1) * sizeof *qko);
        }
        ok = kk && vv && kc && vc && y && (!has_past || (pk && pv)) &&
             (!mv || mv->dtype == KILN_DTYPE_BOOL || mask) && (!qk_out || qko);
    }
    if (!ok) {
        st = kiln_op_fail(err, KILN_ERR_NO_MEMORY, n, "out of memory for attention scratch");
        goto done;
    }
    attn_concat(kc, pk, kk, &a, a.Hkv, a.D);
    attn_concat(vc, pv, vv, &a, a.Hkv, a.Dv);

    /* mask strides over [B, Hq, Sq, mask_last] with broadcasting */
    int64_t ms[4] = {0, 0, 0, 0}, mlast = a.total;
    if (mv) {
        int64_t s = 1;
        for (int32_t i = mv->rank - 1; i >= 0; i--) {
            int32_t ax = 4 - mv->rank + i;
            ms[ax] = mv->dims[i] == 1 && ax != 3 ? 0 : s;
            s *= mv->dims[i];
        }
        mlast = mv->dims[mv->rank - 1];
        if (mlast == 1 && a.total != 1) ms[3] = 0, mlast = a.total;
    }
    int64_t rows = a.B * a.Hq * a.Sq, grp = a.Hq / a.Hkv;
    int fail = 0;
#pragma omp parallel for schedule(static) if (rows > 1 && rows * a.total * a.D > 16384)
    for (int64_t r = 0; r < rows; r++) {
        int64_t b = r / (a.Hq * a.Sq), h = (r / a.Sq) % a.Hq, i = r % a.Sq, hk = h / grp;
        float *sc = malloc((size_t)(a.total > 0 ? a.total : 1) * sizeof *sc);
        if (!sc) {
#pragma omp atomic write
            fail = 1;
            continue;
        }
        const float *qr = a.three_d ? q + ((b * a.Sq + i) * a.Hq + h) * a.D
                                    : q + ((b * a.Hq + h) * a.Sq + i) * a.D;
        const float *kb = kc + (b * a.Hkv + hk) * a.total * a.D;
        const float *vb = vc + (b * a.Hkv + hk) * a.total * a.Dv;
        float *qrow = qko ? qko + r * a.total : NULL;
        int64_t nonpad = nk ? kiln_value_get_int(nk, b) : a.total;
        int64_t causal_lim = is_causal
                                 ? (!has_past && nk ? i + (nonpad - a.Sq) : i + a.P)
                                 : INT64_MAX;
        float mx = -INFINITY;
        for (int64_t j = 0; j < a.total; j++) {
            const float *kr = kb + j * a.D;
            double dot = 0;
            for (int64_t d = 0; d < a.D; d++) dot += (double)qr[d] * kr[d];
            float s = (float)dot * scale;
            if (softcap > 0) s = softcap * tanhf(s / softcap);
            if (qrow && mode <= 1) qrow[j] = s;
            float bias = 0;
            if (mv) {
                if (j >= mlast) bias = -INFINITY;
                else {
                    int64_t mi = b * ms[0] + h * ms[1] + i * ms[2] + j * ms[3];
                    if (mv->dtype == KILN_DTYPE_BOOL)
                        bias = ((const uint8_t *)mv->data)[mi] ? 0.0f : -INFINITY;
                    else bias = mask[mi];
                }
            }
            if (j > causal_lim) bias = -INFINITY;
            if (j >= nonpad) bias = -INFINITY;
            s += bias;
            if (qrow && mode == 2) qrow[j] = s;
            sc[j] = s;
            if (s > mx) mx = s;
        }
        if (mx == -INFINITY) {
            /* fully masked row: attends to nothing (zeros, not NaN) */
            for (int64_t j = 0; j < a.total; j++) sc[j] = 0.0f;
        } else {
            double sum = 0;
            for (int64_t j = 0; j < a.total; j++) {
                float e = expf(sc[j] - mx);
                sc[j] = e;
                sum += e;
            }
            for (int64_t j = 0; j < a.total; j++) sc[j] = (float)(sc[j] / sum);
        }
        if (qrow && mode == 3)
            for (int64_t j = 0; j < a.total; j++) qrow[j] = sc[j];
        float *yr = a.three_d ? y + ((b * a.Sq + i) * a.Hq + h) * a.Dv
                              : y + ((b * a.Hq + h) * a.Sq + i) * a.Dv;
        for (int64_t d = 0; d < a.Dv; d++) {
            double acc = 0;
            for (int64_t j = 0; j < a.total; j++) acc += (double)sc[j] * vb[j * a.Dv + d];
            yr[d] = (float)acc;
        }
        free(sc);
    }
    if (fail) {
        st = kiln_op_fail(err, KILN_ERR_NO_MEMORY, n, "out of memory for attention scratch");
        goto done;
    }
    attn_store(out[0], y, kiln_value_numel(out[0]));
    if (n_out > 1 && out[1]) attn_store(out[1], kc, kn * a.D);
    if (n_out > 2 && out[2]) attn_store(out[2], vc, kn * a.Dv);
    if (qk_out) attn_store(qk_out, qko, kiln_value_numel(qk_out));
done:
    free(q); free(kk); free(vv); free(kc); free(vc); free(pk); free(pv);
    free(mask); free(y); free(qko);
    return st;
}

static double attention_flops(const struct kiln_node *n, const struct kiln_value *const *in,
                              int n_in, struct kiln_value *const *out, int n_out) {
    struct attn_dims a;
    if (attn_analyze(n, in, n_in, &a, NULL)) return 0;
    return 2.0 * (double)a.B * (double)a.Hq * (double)a.Sq * (double)a.total *
           (double)(a.D + a.Dv);
}

/* ------------------------------------------------------------------------ */
/* RotaryEmbedding (opset 23)                                                */
/*
 * X: 4-D [B, H, S, D] or 3-D [B, S, H*D] (num_heads). cos/sin caches:
 * [max_pos, R/2] indexed by position_ids [B, S], or [B, S, R/2] without them.
 * The first R = rotary_embedding_dim (0 = D) values of each head rotate, as
 * halves (x1 = first R/2, x2 = next) or interleaved pairs.
 */
static kiln_status rope_check(const struct kiln_node *n, const struct kiln_value *const *in,
                              int n_in, int64_t *B, int64_t *S, int64_t *H, int64_t *D,
                              int64_t *R, kiln_error *err) {
    kiln_status st = kiln_op_check_arity(n, n_in, 3, 4, err);
    if (st) return st;
    const struct kiln_value *x = in[0], *cs = in[1], *sn = in[2];
    const struct kiln_value *pos = n_in > 3 ? in[3] : NULL;
    if (!kiln_dtype_is_float(x->dtype) || cs->dtype != x->dtype || sn->dtype != x->dtype)
        return kiln_op_fail(err, KILN_ERR_SHAPE, n, "expected X and caches of one float type");
    if (x->rank == 4) {
        *B = x->dims[0], *H = x->dims[1], *S = x->dims[2], *D = x->dims[3];
    } else if (x->rank == 3) {
        *H = kiln_attr_int(n, "num_heads", 0);
        if (*H <= 0 || x->dims[2] % *H)
            return kiln_op_fail(err, KILN_ERR_BAD_MODEL, n,
                                "3-D input needs num_heads dividing %lld", (long long)x->dims[2]);
        *B = x->dims[0], *S = x->dims[1], *D = x->dims[2] / *H;
    } else {
        return kiln_op_fail(err, KILN_ERR_SHAPE, n, "expected 3-D or 4-D input, got rank %d",
                            x->rank);
    }
    *R = kiln_attr_int(n, "rotary_embedding_dim", 0);
    if (*R == 0) *R = *D;
    if (*R < 0 || *R > *D || *R % 2)
        return kiln_op_fail(err, KILN_ERR_BAD_MODEL, n,
                            "rotary_embedding_dim %lld must be even and at most head size %lld",
                            (long long)*R, (long long)*D);
    if (cs->rank != sn->rank)
        return kiln_op_fail(err, KILN_ERR_SHAPE, n, "cos and sin caches differ in rank");
    for (int32_t i = 0; i < cs->rank; i++)
        if (cs->dims[i] != sn->dims[i])
            return kiln_op_fail(err, KILN_ERR_SHAPE, n, "cos and sin caches differ in shape");
    if (pos) {
        if (!kiln_dtype_is_int(pos->dtype) || pos->rank != 2 || pos->dims[0] != *B ||
            pos->dims[1] != *S)
            return kiln_op_fail(err, KILN_ERR_SHAPE, n, "expected int64 position_ids [%lld,%lld]",
                                (long long)*B, (long long)*S);
        if (cs->rank != 2 || cs->dims[1] != *R / 2)
            return kiln_op_fail(err, KILN_ERR_SHAPE, n, "expected caches [max_pos, %lld]",
                                (long long)(*R / 2));
    } else if (cs->rank != 3 || cs->dims[0] != *B || cs->dims[1] != *S || cs->dims[2] != *R / 2) {
        return kiln_op_fail(err, KILN_ERR_SHAPE, n, "expected caches [%lld,%lld,%lld]",
                            (long long)*B, (long long)*S, (long long)(*R / 2));
    }
    return KILN_OK;
}

static kiln_status rope_infer(const struct kiln_node *n, const struct kiln_value *const *in,
                              int n_in, struct kiln_value *const *out, int n_out,
                              kiln_error *err) {
    int64_t B, S, H, D, R;
    kiln_status st = rope_check(n, in, n_in, &B, &S, &H, &D, &R, err);
    if (st) return st;
    if ((st = need_out0(n, out, n_out, err))) return st;
    kiln_value_set_shape(out[0], in[0]->dtype, in[0]->rank, in[0]->dims);
    return KILN_OK;
}

static kiln_status rope_exec(const struct kiln_node *n, struct kiln_exec_ctx *ctx,
                             const struct kiln_value *const *in, int n_in,
                             struct kiln_value *const *out, int n_out, kiln_error *err) {
    int64_t B, S, H, D, R;
    kiln_status st = rope_check(n, in, n_in, &B, &S, &H, &D, &R, err);
    if (st) return st;
    const struct kiln_value *x = in[0], *cs = in[1], *sn = in[2];
    const struct kiln_value *pos = n_in > 3 ? in[3] : NULL;
    struct kiln_value *y = out[0];
    int inter = kiln_attr_int(n, "interleaved", 0) != 0;
    int64_t half = R / 2, max_pos = pos ? cs->dims[0] : 0;
    bool f32 = x->dtype == KILN_DTYPE_FLOAT;
    for (int64_t b = 0; b < B; b++)
        for (int64_t s = 0; s < S; s++) {
            int64_t crow;
            if (pos) {
                int64_t p = kiln_value_get_int(pos, b * S + s);
                if (p < 0 || p >= max_pos)
                    return kiln_op_fail(err, KILN_ERR_SHAPE, n,
                                        "position id %lld outside the cache [0,%lld)",
                                        (long long)p, (long long)max_pos);
                crow = p * half;
            } else {
                crow = (b * S + s) * half;
            }
            for (int64_t h = 0; h < H; h++) {
                int64_t base = x->rank == 4 ? ((b * H + h) * S + s) * D : ((b * S + s) * H + h) * D;
                for (int64_t j = 0; j < half; j++) {
                    double c = kiln_value_get_f64(cs, crow + j), si = kiln_value_get_f64(sn, crow + j);
                    int64_t i1 = inter ? base + 2 * j : base + j;
                    int64_t i2 = inter ? base + 2 * j + 1 : base + half + j;
                    double x1, x2;
                    if (f32) {
                        x1 = ((const float *)x->data)[i1];
                        x2 = ((const float *)x->data)[i2];
                    } else {
                        x1 = kiln_value_get_f64(x, i1);
                        x2 = kiln_value_get_f64(x, i2);
                    }
                    kiln_value_set_f64(y, i1, c * x1 - si * x2);
                    kiln_value_set_f64(y, i2, si * x1 + c * x2);
                }
                for (int64_t j = R; j < D; j++)
                    kiln_value_set_f64(y, base + j, kiln_value_get_f64(x, base + j));
            }
        }
    return KILN_OK;
}

/* ------------------------------------------------------------------------ */

const struct kiln_op_def kiln_ops_matmul[] = {
    {"MatMul", NULL, 1, 0, matmul_infer, matmul_exec, matmul_prepare, matmul_flops},
    {"Gemm", NULL, 1, 0, gemm_infer, gemm_exec, gemm_prepare, gemm_flops},
    {"MatMulInteger", NULL, 10, 0, mmi_infer, mmi_exec, NULL, matmul_flops},
    {"Einsum", NULL, 12, 0, einsum_infer, einsum_exec, NULL, NULL},
    {"Attention", NULL, 23, 0, attention_infer, attention_exec, NULL, attention_flops},
    {"RotaryEmbedding", NULL, 23, 0, rope_infer, rope_exec, NULL, NULL},
    {0},
};
