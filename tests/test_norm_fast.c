/* test_norm_fast.c — the oneDNN fast paths of Softmax, LogSoftmax,
 * BatchNormalization and LayerNormalization against kiln's reference
 * kernels: softmax over the last and a middle axis, opset 11 (flattened
 * tail) vs 13 (one axis) semantics, BN on 2-D to 6-D inputs, LN over the
 * last one and two dims, with and without B, with a broadcast Scale, and
 * in place (dst == src). Pass: |fast - ref| <= 1e-5 + 1e-4 |ref|
 * everywhere; a planted error in one output element must be caught by the
 * same comparison. Exit status 0 on success. */
#include "ops/op.h"

#include <math.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

struct tcase {
    const char *name;
    const char *op;
    int64_t opset;
    int32_t rank;
    int64_t xdims[6];
    int has_axis;
    int64_t axis;
    int n_in;                  /* BN: 5; LN: 2 or 3 */
    int32_t prank;             /* LN: rank of Scale / B (0: the whole normalized tail) */
    int64_t pdims[4];
    int need_fast;             /* 1: must build a fast path; 0: may; -1: must decline */
    int inplace;               /* run the fast kernel with dst == src */
    int layout;                /* X's layout at prepare (enum kiln_layout) */
    int params_runtime;        /* Scale / B / mean / var not constant at prepare */
};

static uint32_t rng = 2024;
static float frand(void) {
    rng = rng * 1664525u + 1013904223u;
    return (float)((rng >> 8) & 0xffff) / 32768.0f - 1.0f;
}

static struct kiln_value make_value(int32_t rank, const int64_t *dims, float lo, float scale) {
    struct kiln_value v;
    memset(&v, 0, sizeof v);
    v.dtype = KILN_DTYPE_FLOAT;
    v.rank = rank;
    int64_t n = 1;
    for (int32_t i = 0; i < rank; i++) {
        v.dims[i] = dims[i];
        n *= dims[i];
    }
    v.nbytes = (size_t)n * sizeof(float);
    v.data = calloc((size_t)(n ? n : 1), sizeof(float));
    for (int64_t i = 0; i < n; i++) {
        float r = frand();
        ((float *)v.data)[i] = lo > 0 ? lo + fabsf(r) * scale : r * scale;
    }
    return v;
}

/* Index of the worst element outside |a - b| <= 1e-5 + 1e-4 |b|, or -1. */
static int64_t worst_mismatch(const float *a, const float *b, int64_t cnt, double *worst) {
    int64_t at = -1;
    *worst = 0;
    for (int64_t i = 0; i < cnt; i++) {
        double d = fabs((double)a[i] - (double)b[i]);
        double lim = 1e-5 + 1e-4 * fabs((double)b[i]);
        if (!(d <= lim) && (at < 0 || d > *worst)) {
            *worst = d;
            at = i;
        }
    }
    return at;
}

static int planted_caught = 0, planted_tried = 0;

static int run_case(const struct tcase *tc) {
    struct kiln_attr attr;
    memset(&attr, 0, sizeof attr);
    attr.name = (char *)"axis";
    attr.type = KILN_ATTR_INT;
    attr.i = tc->axis;
    struct kiln_node node;
    memset(&node, 0, sizeof node);
    node.name = (char *)tc->name;
    node.op_type = (char *)tc->op;
    node.domain = (char *)"";
    node.opset = tc->opset;
    node.n_attrs = tc->has_axis ? 1 : 0;
    node.attrs = &attr;
    const struct kiln_op_def *op = kiln_op_lookup("", tc->op, tc->opset);
    if (!op || !op->prepare) {
        printf("FAIL %s: op %s not registered with a fast path\n", tc->name, tc->op);
        return 1;
    }
    int is_bn = !strcmp(tc->op, "BatchNormalization"), is_ln = !strcmp(tc->op, "LayerNormalization");
    /* softmax inputs span a wide range so that rows are far from uniform */
    struct kiln_value vals[5];
    int n_in = is_bn ? 5 : is_ln ? tc->n_in : 1;
    vals[0] = make_value(tc->rank, tc->xdims, 0, is_bn || is_ln ? 3.0f : 8.0f);
    if (is_bn) {
        int64_t c = tc->xdims[1];
        vals[1] = make_value(1, &c, 0, 2.0f);       /* scale */
        vals[2] = make_value(1, &c, 0, 1.0f);       /* B */
        vals[3] = make_value(1, &c, 0, 1.0f);       /* mean */
        vals[4] = make_value(1, &c, 0.05f, 2.0f);   /* var > 0 */
    }
    if (is_ln) {
        int64_t a = tc->has_axis ? tc->axis : -1, ax = a < 0 ? a + tc->rank : a;
        int32_t pr = tc->prank ? tc->prank : (int32_t)(tc->rank - ax);
        const int64_t *pd = tc->prank ? tc->pdims : tc->xdims + ax;
        for (int i = 1; i < n_in; i++) vals[i] = make_value(pr, pd, 0, 1.5f);
    }
    const struct kiln_value *in[5];
    for (int i = 0; i < n_in; i++) in[i] = &vals[i];

    struct kiln_value Yr, Yf;
    memset(&Yr, 0, sizeof Yr);
    struct kiln_value *outr[1] = {&Yr}, *outf[1] = {&Yf};
    kiln_error err = {0};
    int bad = 0;
    if (op->infer(&node, in, n_in, outr, 1, &err) != KILN_OK) {
        printf("FAIL %s: infer: %s\n", tc->name, err.msg);
        return 1;
    }
    int64_t cnt = kiln_value_numel(&Yr);
    Yf = Yr;
    Yr.nbytes = Yf.nbytes = (size_t)cnt * sizeof(float);
    Yr.data = calloc((size_t)(cnt ? cnt : 1), sizeof(float));
    Yf.data = calloc((size_t)(cnt ? cnt : 1), sizeof(float));
    struct kiln_exec_ctx ctx;
    memset(&ctx, 0, sizeof ctx);
    ctx.n_threads = 2;
    if (op->exec(&node, &ctx, in, n_in, outr, 1, &err) != KILN_OK) {
        printf("FAIL %s: exec: %s\n", tc->name, err.msg);
        bad = 1;
        goto done;
    }
    struct kiln_kernel k;
    memset(&k, 0, sizeof k);
    /* as at plan time: only constants carry data (X is an activation) */
    void *pdata[5];
    for (int i = 0; i < n_in; i++) pdata[i] = vals[i].data;
    for (int i = 0; i < n_in; i++)
        if (i == 0 || tc->params_runtime) vals[i].data = NULL;
    vals[0].layout = (uint8_t)tc->layout;
    kiln_status st = op->prepare(&node, &ctx, in, n_in, outf, 1, &k, &err);
    vals[0].layout = KILN_LAYOUT_PLAIN;
    for (int i = 0; i < n_in; i++) vals[i].data = pdata[i];
    if (st != KILN_OK) {
        printf("FAIL %s: prepare: %s\n", tc->name, err.msg);
        bad = 1;
        goto done;
    }
    if (!k.run) {
        printf("%s %s: no fast path (reference kernel)\n", tc->need_fast > 0 ? "FAIL" : "ok  ",
               tc->name);
        bad = tc->need_fast > 0;
        goto done;
    }
    if (tc->need_fast < 0) {
        printf("FAIL %s: expected the reference kernel, got %s\n", tc->name, k.impl);
        bad = 1;
    }
    if (!k.impl || strncmp(k.impl, "dnnl:", 5) != 0 || strstr(k.impl, "ref")) {
        printf("FAIL %s: implementation '%s' is not a oneDNN fast one\n", tc->name,
               k.impl ? k.impl : "(null)");
        bad = 1;
    }
    /* run twice (the second reuses the prepared state); in place: dst is X */
    for (int rep = 0; rep < 2 && !bad; rep++) {
        const float *a = Yf.data;
        if (tc->inplace) {
            struct kiln_value Xc = vals[0];
            Xc.data = malloc(vals[0].nbytes);
            memcpy(Xc.data, vals[0].data, vals[0].nbytes);
            const struct kiln_value *in2[5];
            for (int i = 0; i < n_in; i++) in2[i] = in[i];
            in2[0] = &Xc;
            struct kiln_value *out2[1] = {&Xc};
            st = k.run(&node, &ctx, k.state, in2, n_in, out2, 1, &err);
            memcpy(Yf.data, Xc.data, Yf.nbytes);
            free(Xc.data);
        } else {
            memset(Yf.data, 0, Yf.nbytes);
            st = k.run(&node, &ctx, k.state, in, n_in, outf, 1, &err);
        }
        if (st != KILN_OK) {
            printf("FAIL %s: run: %s\n", tc->name, err.msg);
            bad = 1;
            break;
        }
        double worst;
        int64_t at = worst_mismatch(a, Yr.data, cnt, &worst);
        if (at >= 0) {
            printf("FAIL %s: |fast - ref| = %g at %lld (fast %g, ref %g) [%s]\n", tc->name,
                   worst, (long long)at, a[at], ((float *)Yr.data)[at], k.impl);
            bad = 1;
        }
    }
    if (!bad) {
        /* the comparison must catch one wrong element (a kernel that skips
         * part of the output, say): plant it mid-tensor */
        float *a = Yf.data;
        int64_t at = cnt / 2;
        float keep = a[at];
        a[at] += 1e-3f + 1e-3f * fabsf(a[at]);
        double worst;
        planted_tried++;
        if (worst_mismatch(a, Yr.data, cnt, &worst) == at) planted_caught++;
        a[at] = keep;
        printf("ok   %s [%s]\n", tc->name, k.impl);
    }
    if (k.release) k.release(k.state);
done:
    for (int i = 0; i < n_in; i++) free(vals[i].data);
    free(Yr.data);
    free(Yf.data);
    return bad;
}

static const struct tcase cases[] = {
    /* name, op, opset, rank, dims, has_axis, axis, n_in, prank, pdims, need_fast, inplace */
    {"softmax13_last", "Softmax", 13, 2, {5, 37}, 0, 0, 1, 0, {0}, 1, 0},
    {"softmax13_attention", "Softmax", 13, 4, {2, 4, 16, 16}, 1, -1, 1, 0, {0}, 1, 0},
    {"softmax13_last_inplace", "Softmax", 13, 3, {3, 7, 129}, 1, 2, 1, 0, {0}, 1, 1},
    {"softmax13_middle", "Softmax", 13, 3, {2, 5, 7}, 1, 1, 1, 0, {0}, 0, 0},
    {"softmax13_first", "Softmax", 13, 3, {6, 4, 3}, 1, 0, 1, 0, {0}, 0, 0},
    {"softmax11_default_axis", "Softmax", 11, 4, {2, 3, 4, 5}, 0, 0, 1, 0, {0}, 1, 0},
    {"softmax11_axis2", "Softmax", 11, 4, {2, 3, 4, 5}, 1, 2, 1, 0, {0}, 1, 0},
    {"softmax11_axis0", "Softmax", 11, 3, {2, 3, 4}, 1, 0, 1, 0, {0}, 1, 0},
    {"softmax11_last", "Softmax", 11, 3, {2, 3, 10}, 1, -1, 1, 0, {0}, 1, 0},
    {"logsoftmax13_last", "LogSoftmax", 13, 2, {3, 100}, 0, 0, 1, 0, {0}, 1, 0},
    {"logsoftmax13_middle", "LogSoftmax", 13, 4, {2, 6, 3, 4}, 1, 1, 1, 0, {0}, 0, 0},
    {"logsoftmax13_last_inplace", "LogSoftmax", 13, 3, {4, 2, 33}, 0, 0, 1, 0, {0}, 1, 1},
    {"logsoftmax11_default_axis", "LogSoftmax", 11, 3, {3, 4, 5}, 0, 0, 1, 0, {0}, 1, 0},
    {"bn_4d", "BatchNormalization", 15, 4, {2, 16, 7, 7}, 0, 0, 5, 0, {0}, 1, 0},
    {"bn_4d_odd_channels_inplace", "BatchNormalization", 15, 4, {1, 5, 9, 3}, 0, 0, 5, 0, {0}, 1, 1},
    {"bn_2d", "BatchNormalization", 15, 2, {8, 10}, 0, 0, 5, 0, {0}, 1, 0},
    {"bn_3d", "BatchNormalization", 9, 3, {2, 6, 11}, 0, 0, 5, 0, {0}, 1, 0},
    {"bn_5d", "BatchNormalization", 15, 5, {1, 4, 3, 4, 5}, 0, 0, 5, 0, {0}, 1, 0},
    {"bn_6d_flattened", "BatchNormalization", 15, 6, {2, 3, 2, 2, 3, 2}, 0, 0, 5, 0, {0}, 1, 0},
    {"ln_last_bias", "LayerNormalization", 17, 3, {2, 5, 64}, 0, 0, 3, 0, {0}, 1, 0},
    {"ln_last_no_bias", "LayerNormalization", 17, 2, {7, 30}, 1, -1, 2, 0, {0}, 1, 0},
    {"ln_last2_bias", "LayerNormalization", 17, 4, {2, 3, 4, 8}, 1, -2, 3, 0, {0}, 1, 0},
    {"ln_last2_inplace", "LayerNormalization", 17, 3, {3, 6, 10}, 1, 1, 3, 0, {0}, 1, 1},
    {"ln_last2_bcast_scale", "LayerNormalization", 17, 3, {2, 4, 8}, 1, -2, 3, 1, {8}, 1, 0},
    {"ln_runtime_params", "LayerNormalization", 17, 3, {2, 4, 8}, 1, -2, 3, 0, {0}, 1, 0, 0, 1},
    {"bn_runtime_params", "BatchNormalization", 15, 4, {1, 8, 5, 5}, 0, 0, 5, 0, {0}, 1, 0, 0, 1},
    /* declines: the reference kernel runs */
    {"ln_runtime_bcast_scale", "LayerNormalization", 17, 3, {2, 4, 8}, 1, -2, 2, 1, {8}, -1, 0, 0, 1},
    {"bn_channels_last", "BatchNormalization", 15, 4, {1, 8, 5, 5}, 0, 0, 5, 0, {0}, -1, 0,
     KILN_LAYOUT_CHANNELS_LAST, 0},
    {"softmax_blocked", "Softmax", 13, 4, {1, 8, 5, 5}, 0, 0, 1, 0, {0}, -1, 0,
     KILN_LAYOUT_BLOCKED8, 0},
};

int main(void) {
    int fails = 0, n = (int)(sizeof cases / sizeof cases[0]);
    for (int i = 0; i < n; i++) fails += run_case(&cases[i]);
    if (planted_tried == 0 || planted_caught != planted_tried) {
        printf("FAIL planted error caught in %d of %d cases\n", planted_caught, planted_tried);
        fails++;
    } else {
        printf("ok   planted error caught in all %d cases\n", planted_tried);
    }
    printf("%d cases, %d failed\n", n, fails);
    return fails ? 1 : 0;
}
