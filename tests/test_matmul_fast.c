/* test_matmul_fast.c — the oneDNN MatMul/Gemm fast path against the reference
 * kernels on assorted shapes (batched broadcast, 1-D operands, transposes,
 * tails, constant and non-constant weights). Exit status 1 on any mismatch.
 *
 * Build (from the repository root, after building build/libkiln.a):
 *   cc -std=gnu11 -O1 -Iinclude -Isrc tests/test_matmul_fast.c build/libkiln.a \
 *      -ldnnl -lprotobuf-c -fopenmp -lpthread -lm -o build/test_matmul_fast
 */
#include "ops/op.h"

#include <math.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

static int failures, cases, fast_cases;
static int plant;   /* 1: corrupt the oneDNN result, to show the check can fail */
static uint32_t rng = 12345;

static float frand(void) {
    rng = rng * 1664525u + 1013904223u;
    return (float)((rng >> 8) & 0xffff) / 32768.0f - 1.0f;
}

static void make(struct kiln_value *v, int32_t rank, const int64_t *dims) {
    memset(v, 0, sizeof *v);
    v->dtype = KILN_DTYPE_FLOAT;
    v->rank = rank;
    int64_t n = 1;
    for (int32_t i = 0; i < rank; i++) n *= (v->dims[i] = dims[i]);
    v->nbytes = (size_t)n * 4;
    v->data = malloc(v->nbytes ? v->nbytes : 4);
    for (int64_t i = 0; i < n; i++) ((float *)v->data)[i] = frand();
}

static void set_int_attr(struct kiln_attr *a, const char *name, int64_t v) {
    memset(a, 0, sizeof *a);
    a->name = (char *)name;
    a->type = KILN_ATTR_INT;
    a->i = v;
}

static void set_float_attr(struct kiln_attr *a, const char *name, float v) {
    memset(a, 0, sizeof *a);
    a->name = (char *)name;
    a->type = KILN_ATTR_FLOAT;
    a->f = v;
}

/* Runs node n on inputs with both paths; b_const: pass B's data at prepare. */
static void run_case(const char *label, struct kiln_node *n, struct kiln_value *in, int n_in,
                     int b_const) {
    cases++;
    const struct kiln_op_def *op = kiln_op_lookup("", n->op_type, n->opset);
    if (!op) {
        printf("FAIL %s: op %s not registered\n", label, n->op_type);
        failures++;
        return;
    }
    const struct kiln_value *inp[3];
    for (int i = 0; i < n_in; i++) inp[i] = &in[i];
    struct kiln_value ref, fast;
    struct kiln_value *outp[1] = {&ref};
    kiln_error err = {0};
    if (op->infer(n, inp, n_in, outp, 1, &err) != KILN_OK) {
        printf("FAIL %s: infer: %s\n", label, err.msg);
        failures++;
        return;
    }
    fast = ref;
    size_t nb = 0;
    kiln_value_bytes(&ref, &nb);
    ref.data = calloc(1, nb ? nb : 4);
    ref.nbytes = nb;
    fast.data = calloc(1, nb ? nb : 4);
    fast.nbytes = nb;
    struct kiln_exec_ctx ctx = {.n_threads = 2};
    if (op->exec(n, &ctx, inp, n_in, outp, 1, &err) != KILN_OK) {
        printf("FAIL %s: exec: %s\n", label, err.msg);
        failures++;
        goto done;
    }
    kiln_activation_apply(n, &ref, &err);   /* what the executor does after exec */
    /* prepare sees B's data only when it is a constant */
    struct kiln_value planned[3];
    const struct kiln_value *pin[3];
    for (int i = 0; i < n_in; i++) {
        planned[i] = in[i];
        if (!(i == 1 && b_const)) planned[i].data = NULL;
        pin[i] = &planned[i];
    }
    struct kiln_value *foutp[1] = {&fast};
    struct kiln_kernel k = {0};
    if (op->prepare(n, &ctx, pin, n_in, foutp, 1, &k, &err) != KILN_OK) {
        printf("FAIL %s: prepare: %s\n", label, err.msg);
        failures++;
        goto done;
    }
    if (!k.run) {
        printf("note %s: oneDNN declined; reference only\n", label);
        goto done;
    }
    fast_cases++;
    for (int rep = 0; rep < 2; rep++) {   /* twice: primitives are reused */
        memset(fast.data, 0, nb);
        if (k.run(n, &ctx, k.state, inp, n_in, foutp, 1, &err) != KILN_OK) {
            printf("FAIL %s: run: %s\n", label, err.msg);
            failures++;
            break;
        }
        if (!k.fused_activation) kiln_activation_apply(n, &fast, &err);
        if (plant) ((float *)fast.data)[0] += 1.0f;
        int64_t cnt = kiln_value_numel(&ref);
        for (int64_t i = 0; i < cnt; i++) {
            float r = ((float *)ref.data)[i], f = ((float *)fast.data)[i];
            if (!(fabsf(r - f) <= 1e-4f + 1e-4f * fabsf(r))) {
                printf("FAIL %s (%s): element %lld: reference %g, oneDNN %g\n", label,
                       k.impl ? k.impl : "?", (long long)i, r, f);
                failures++;
                break;
            }
        }
    }
    if (k.release) k.release(k.state);
done:
    free(ref.data);
    free(fast.data);
}

static struct kiln_activation cur_act;   /* fused activation for the next cases */

static void matmul_case(int32_t ra, const int64_t *da, int32_t rb, const int64_t *db) {
    struct kiln_node n = {.name = "mm", .op_type = "MatMul", .domain = "", .opset = 13,
                          .act = cur_act};
    struct kiln_value in[2];
    make(&in[0], ra, da);
    make(&in[1], rb, db);
    char label[160], sa[64], sb[64];
    kiln_shape_str(&in[0], sa, sizeof sa);
    kiln_shape_str(&in[1], sb, sizeof sb);
    for (int c = 0; c < 2; c++) {
        snprintf(label, sizeof label, "MatMul %s x %s%s act %d", sa, sb, c ? " (const B)" : "",
                 (int)cur_act.kind);
        run_case(label, &n, in, 2, c);
    }
    free(in[0].data);
    free(in[1].data);
}

static void gemm_case(int64_t M, int64_t N, int64_t K, int ta, int tb, float alpha, float beta,
                      int32_t rc, const int64_t *dc) {
    struct kiln_attr attrs[4];
    set_int_attr(&attrs[0], "transA", ta);
    set_int_attr(&attrs[1], "transB", tb);
    set_float_attr(&attrs[2], "alpha", alpha);
    set_float_attr(&attrs[3], "beta", beta);
    struct kiln_node n = {.name = "gemm", .op_type = "Gemm", .domain = "", .opset = 13,
                          .n_attrs = 4, .attrs = attrs, .act = cur_act};
    struct kiln_value in[3];
    int64_t da[2] = {ta ? K : M, ta ? M : K}, db[2] = {tb ? N : K, tb ? K : N};
    make(&in[0], 2, da);
    make(&in[1], 2, db);
    if (rc >= 0) make(&in[2], rc, dc);
    char label[160];
    for (int c = 0; c < 2; c++) {
        snprintf(label, sizeof label,
                 "Gemm M=%lld N=%lld K=%lld tA=%d tB=%d a=%g b=%g C rank %d%s act %d",
                 (long long)M, (long long)N, (long long)K, ta, tb, alpha, beta, rc,
                 c ? " (const B)" : "", (int)cur_act.kind);
        run_case(label, &n, in, rc >= 0 ? 3 : 2, c);
    }
    for (int i = 0; i < (rc >= 0 ? 3 : 2); i++) free(in[i].data);
}

int main(void) {
#define D(...) ((const int64_t[]){__VA_ARGS__})
    matmul_case(2, D(7, 13), 2, D(13, 5));
    matmul_case(2, D(1, 1), 2, D(1, 1));
    matmul_case(2, D(64, 300), 2, D(300, 70));
    matmul_case(3, D(7, 13, 5), 2, D(5, 9));
    matmul_case(3, D(2, 3, 4), 3, D(2, 4, 5));
    matmul_case(4, D(2, 1, 3, 4), 3, D(5, 4, 6));
    matmul_case(4, D(3, 1, 7, 13), 4, D(1, 4, 13, 5));
    matmul_case(2, D(3, 4), 4, D(2, 3, 4, 5));
    matmul_case(1, D(4), 1, D(4));
    matmul_case(1, D(4), 3, D(2, 4, 3));
    matmul_case(3, D(2, 3, 4), 1, D(4));
    matmul_case(1, D(13), 2, D(13, 7));
    matmul_case(4, D(1, 2, 17, 33), 4, D(1, 2, 33, 17));
    matmul_case(3, D(4, 1, 8), 3, D(4, 8, 1));

    for (int ta = 0; ta < 2; ta++)
        for (int tb = 0; tb < 2; tb++) {
            gemm_case(7, 5, 13, ta, tb, 1.0f, 1.0f, -1, NULL);
            gemm_case(7, 5, 13, ta, tb, 1.0f, 1.0f, 1, D(5));
            gemm_case(7, 5, 13, ta, tb, 0.5f, 2.0f, 2, D(7, 5));
            gemm_case(1, 1, 1, ta, tb, 1.0f, 1.0f, 0, NULL);
        }
    gemm_case(7, 5, 13, 0, 1, 1.0f, 1.0f, 1, D(1));
    gemm_case(7, 5, 13, 0, 1, 1.0f, 1.0f, 2, D(7, 1));
    gemm_case(7, 5, 13, 0, 1, 1.0f, 1.0f, 2, D(1, 5));
    gemm_case(7, 5, 13, 1, 0, 0.25f, 1.0f, 1, D(5));
    gemm_case(7, 5, 13, 1, 0, 1.0f, 0.0f, 1, D(5));
    gemm_case(7, 5, 13, 0, 0, 1.0f, -1.5f, 2, D(1, 1));
    gemm_case(33, 70, 300, 0, 1, 1.0f, 1.0f, 1, D(70));

    /* fused activations (post-ops) */
    static const struct kiln_activation acts[] = {
        {KILN_ACT_RELU, 0, 0},        {KILN_ACT_LEAKY_RELU, 0.1f, 0}, {KILN_ACT_CLIP, -0.5f, 0.5f},
        {KILN_ACT_SIGMOID, 0, 0},     {KILN_ACT_TANH, 0, 0},          {KILN_ACT_HARD_SWISH, 0, 0},
        {KILN_ACT_HARD_SIGMOID, 0.2f, 0.5f},
    };
    for (size_t i = 0; i < sizeof acts / sizeof acts[0]; i++) {
        cur_act = acts[i];
        matmul_case(3, D(7, 13, 5), 2, D(5, 9));
        matmul_case(4, D(2, 1, 3, 4), 3, D(5, 4, 6));
        gemm_case(7, 5, 13, 0, 1, 1.0f, 1.0f, 1, D(5));
        gemm_case(7, 5, 13, 1, 0, 0.5f, 2.0f, 2, D(7, 5));
    }
    cur_act = (struct kiln_activation){0};

    /* the harness must be able to fail: a planted error is detected (twice: 2 reps) */
    int before = failures;
    plant = 1;
    printf("(planted error, expect FAIL lines:)\n");
    gemm_case(7, 5, 13, 0, 0, 1.0f, 1.0f, -1, NULL);
    plant = 0;
    if (failures == before) {
        printf("FAIL planted error went undetected\n");
        failures++;
    } else {
        failures = before;
    }

    printf("%d cases (%d through oneDNN), %d failed\n", cases, fast_cases, failures);
    return failures ? 1 : 0;
}
