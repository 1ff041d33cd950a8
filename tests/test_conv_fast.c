/* test_conv_fast.c — the oneDNN fast paths of Conv, ConvTranspose and the
 * pools against kiln's reference kernels, on shapes that exercise groups,
 * depthwise, dilation, strides, asymmetric padding, auto_pad, 1x1, 1-D and
 * 3-D, plus non-constant weights (reordered per run).
 * Pass: |fast - ref| <= 1e-4 + 1e-4 |ref| everywhere. Exit status 0 on success. */
#include "ops/op.h"

#include <math.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

#define MAX_ATTRS 8

struct tcase {
    const char *name;
    const char *op;
    int32_t rank;
    int64_t xdims[5], wdims[5];   /* wdims unused for pools */
    int has_bias;
    int need_fast;                /* fail if no fast path was built */
    int const_weights;            /* 0: W is not constant at prepare time */
    struct { const char *name; int type; int64_t i; int64_t ints[6]; int n; const char *s; }
        attrs[MAX_ATTRS];
    int act;                      /* fused activation (enum kiln_act_kind) */
    float alpha, beta;
};

static uint32_t rng = 12345;
static float frand(void) {
    rng = rng * 1664525u + 1013904223u;
    return (float)((rng >> 8) & 0xffff) / 32768.0f - 1.0f;
}

static struct kiln_value make_value(int32_t rank, const int64_t *dims, int fill) {
    struct kiln_value v;
    memset(&v, 0, sizeof v);
    v.dtype = KILN_DTYPE_FLOAT;
    v.rank = rank;
    int64_t n = 1;
    for (int32_t i = 0; i < rank; i++) { v.dims[i] = dims[i]; n *= dims[i]; }
    v.nbytes = (size_t)n * sizeof(float);
    v.data = calloc((size_t)(n ? n : 1), sizeof(float));
    if (fill)
        for (int64_t i = 0; i < n; i++) ((float *)v.data)[i] = frand();
    return v;
}

static int run_case(const struct tcase *tc) {
    struct kiln_attr attrs[MAX_ATTRS];
    int na = 0;
    memset(attrs, 0, sizeof attrs);
    for (int i = 0; i < MAX_ATTRS && tc->attrs[i].name; i++, na++) {
        attrs[i].name = (char *)tc->attrs[i].name;
        attrs[i].type = tc->attrs[i].type;
        attrs[i].i = tc->attrs[i].i;
        attrs[i].n = tc->attrs[i].n;
        attrs[i].ints = (int64_t *)tc->attrs[i].ints;
        if (tc->attrs[i].s) {
            attrs[i].s = (char *)tc->attrs[i].s;
            attrs[i].s_len = strlen(tc->attrs[i].s);
        }
    }
    struct kiln_node node;
    memset(&node, 0, sizeof node);
    node.name = (char *)tc->name;
    node.op_type = (char *)tc->op;
    node.domain = (char *)"";
    node.opset = 17;
    node.n_attrs = na;
    node.attrs = attrs;
    node.act.kind = tc->act;
    node.act.alpha = tc->alpha;
    node.act.beta = tc->beta;
    const struct kiln_op_def *op = kiln_op_lookup("", tc->op, 17);
    if (!op || !op->prepare) {
        printf("FAIL %s: op %s not registered with a fast path\n", tc->name, tc->op);
        return 1;
    }
    int is_conv = !strcmp(tc->op, "Conv") || !strcmp(tc->op, "ConvTranspose");
    struct kiln_value X = make_value(tc->rank, tc->xdims, 1), W, B;
    const struct kiln_value *in[3] = {&X, NULL, NULL};
    int n_in = 1;
    if (is_conv) {
        W = make_value(tc->rank, tc->wdims, 1);
        in[1] = &W;
        n_in = 2;
        if (tc->has_bias) {
            int64_t m = !strcmp(tc->op, "Conv") ? tc->wdims[0] : tc->wdims[1];
            const struct kiln_attr *g = kiln_attr_find(&node, "group");
            if (g && !strcmp(tc->op, "ConvTranspose")) m *= g->i;
            B = make_value(1, &m, 1);
            in[2] = &B;
            n_in = 3;
        }
    }
    struct kiln_value Yr, Yf;
    memset(&Yr, 0, sizeof Yr);
    struct kiln_value *outr[1] = {&Yr}, *outf[1] = {&Yf};
    kiln_error err = {0};
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
        return 1;
    }
    /* the executor applies a fused activation after the reference kernel */
    if (kiln_activation_apply(&node, &Yr, &err) != KILN_OK) {
        printf("FAIL %s: activation: %s\n", tc->name, err.msg);
        return 1;
    }
    struct kiln_kernel k;
    memset(&k, 0, sizeof k);
    void *wdata = is_conv ? W.data : NULL;
    if (is_conv && !tc->const_weights) W.data = NULL;   /* weights only known at run time */
    kiln_status st = op->prepare(&node, &ctx, in, n_in, outf, 1, &k, &err);
    if (is_conv) W.data = wdata;
    if (st != KILN_OK) {
        printf("FAIL %s: prepare: %s\n", tc->name, err.msg);
        return 1;
    }
    int bad = 0;
    if (!k.run) {
        printf("%s %s: no fast path (reference kernel)\n", tc->need_fast ? "FAIL" : "ok  ", tc->name);
        bad = tc->need_fast;
    } else {
        /* run twice: the second run reuses the prepared state */
        for (int rep = 0; rep < 2 && !bad; rep++) {
            memset(Yf.data, 0, Yf.nbytes);
            if (k.run(&node, &ctx, k.state, in, n_in, outf, 1, &err) != KILN_OK) {
                printf("FAIL %s: run: %s\n", tc->name, err.msg);
                bad = 1;
                break;
            }
            if (!k.fused_activation && kiln_activation_apply(&node, &Yf, &err) != KILN_OK) {
                printf("FAIL %s: activation: %s\n", tc->name, err.msg);
                bad = 1;
                break;
            }
            if (tc->act && !k.fused_activation) {
                printf("FAIL %s: activation not fused as a post-op\n", tc->name);
                bad = 1;
                break;
            }
            const float *a = Yf.data, *b = Yr.data;
            double worst = 0;
            int64_t at = -1;
            for (int64_t i = 0; i < cnt; i++) {
                double d = fabs((double)a[i] - (double)b[i]);
                double lim = 1e-4 + 1e-4 * fabs((double)b[i]);
                if (!(d <= lim) && (at < 0 || d > worst)) { worst = d; at = i; }
            }
            if (at >= 0) {
                printf("FAIL %s: |fast - ref| = %g at %lld (fast %g, ref %g) [%s]\n", tc->name,
                       worst, (long long)at, a[at], b[at], k.impl ? k.impl : "?");
                bad = 1;
            }
        }
        if (!bad) printf("ok   %s [%s]\n", tc->name, k.impl ? k.impl : "?");
        if (k.release) k.release(k.state);
    }
    free(X.data);
    if (is_conv) free(W.data);
    if (is_conv && tc->has_bias) free(B.data);
    free(Yr.data);
    free(Yf.data);
    return bad;
}

#define I(nm, v) {nm, KILN_ATTR_INT, v, {0}, 0, NULL}
#define IS(nm, cnt, ...) {nm, KILN_ATTR_INTS, 0, {__VA_ARGS__}, cnt, NULL}
#define S(nm, str) {nm, KILN_ATTR_STRING, 0, {0}, 0, str}

static const struct tcase cases[] = {
    {"conv3x3_pad1_bias", "Conv", 4, {2, 8, 14, 14}, {16, 8, 3, 3}, 1, 1, 1,
     {IS("pads", 4, 1, 1, 1, 1)}},
    {"conv_grouped_stride2_asym", "Conv", 4, {1, 8, 13, 11}, {12, 2, 3, 3}, 1, 1, 1,
     {I("group", 4), IS("strides", 2, 2, 2), IS("pads", 4, 0, 1, 1, 0)}},
    {"conv_depthwise", "Conv", 4, {1, 16, 12, 12}, {16, 1, 3, 3}, 1, 1, 1,
     {I("group", 16), IS("pads", 4, 1, 1, 1, 1)}},
    {"conv_depthwise_stride2", "Conv", 4, {1, 32, 15, 15}, {32, 1, 3, 3}, 0, 1, 1,
     {I("group", 32), IS("strides", 2, 2, 2), IS("pads", 4, 1, 1, 1, 1)}},
    {"conv_dilated", "Conv", 4, {1, 4, 16, 16}, {8, 4, 3, 3}, 1, 1, 1,
     {IS("dilations", 2, 2, 3), IS("pads", 4, 2, 3, 2, 3)}},
    {"conv1x1", "Conv", 4, {2, 64, 7, 7}, {32, 64, 1, 1}, 1, 1, 1, {{0}}},
    {"conv1x1_stride2", "Conv", 4, {1, 16, 9, 9}, {24, 16, 1, 1}, 0, 1, 1,
     {IS("strides", 2, 2, 2)}},
    {"conv7x7_stride2_rgb", "Conv", 4, {1, 3, 32, 32}, {16, 3, 7, 7}, 1, 1, 1,
     {IS("strides", 2, 2, 2), IS("pads", 4, 3, 3, 3, 3)}},
    {"conv_same_upper_stride2", "Conv", 4, {1, 5, 10, 10}, {6, 5, 3, 3}, 1, 1, 1,
     {S("auto_pad", "SAME_UPPER"), IS("strides", 2, 2, 2)}},
    {"conv_same_lower", "Conv", 4, {1, 5, 9, 8}, {6, 5, 4, 4}, 0, 1, 1,
     {S("auto_pad", "SAME_LOWER")}},
    {"conv1d", "Conv", 3, {2, 6, 31}, {10, 6, 5}, 1, 1, 1,
     {IS("strides", 1, 2), IS("pads", 2, 2, 2)}},
    {"conv3d", "Conv", 5, {1, 4, 6, 7, 8}, {8, 4, 3, 3, 3}, 1, 1, 1,
     {IS("pads", 6, 1, 1, 1, 1, 1, 1)}},
    {"conv_weights_at_runtime", "Conv", 4, {1, 8, 10, 10}, {8, 8, 3, 3}, 1, 1, 0,
     {IS("pads", 4, 1, 1, 1, 1)}},
    {"convT_stride2_k4_group2", "ConvTranspose", 4, {1, 4, 6, 6}, {4, 3, 4, 4}, 1, 1, 1,
     {I("group", 2), IS("strides", 2, 2, 2), IS("pads", 4, 1, 1, 1, 1)}},
    {"convT_plain", "ConvTranspose", 4, {2, 3, 5, 5}, {3, 2, 3, 3}, 1, 1, 1, {{0}}},
    {"convT_dilated_1d", "ConvTranspose", 3, {1, 2, 9}, {2, 3, 3}, 0, 1, 1,
     {IS("dilations", 1, 2), IS("strides", 1, 3)}},
    {"convT_output_padding", "ConvTranspose", 4, {1, 2, 4, 4}, {2, 2, 3, 3}, 1, 0, 1,
     {IS("strides", 2, 2, 2), IS("output_padding", 2, 1, 1)}},
    {"conv_relu_postop", "Conv", 4, {1, 8, 10, 10}, {16, 8, 3, 3}, 1, 1, 1,
     {IS("pads", 4, 1, 1, 1, 1)}, KILN_ACT_RELU, 0, 0},
    {"dw_clip6_postop", "Conv", 4, {1, 16, 10, 10}, {16, 1, 3, 3}, 1, 1, 1,
     {I("group", 16), IS("pads", 4, 1, 1, 1, 1)}, KILN_ACT_CLIP, 0.0f, 6.0f},
    {"conv1x1_hardsigmoid_postop", "Conv", 4, {1, 8, 6, 6}, {8, 8, 1, 1}, 1, 1, 1,
     {{0}}, KILN_ACT_HARD_SIGMOID, 0.2f, 0.5f},
    {"conv_leaky_postop", "Conv", 4, {1, 4, 6, 6}, {4, 4, 3, 3}, 0, 1, 1,
     {{0}}, KILN_ACT_LEAKY_RELU, 0.1f, 0},
    {"convT_sigmoid_postop", "ConvTranspose", 4, {1, 4, 5, 5}, {4, 2, 2, 2}, 1, 1, 1,
     {IS("strides", 2, 2, 2)}, KILN_ACT_SIGMOID, 0, 0},
    {"maxpool3x3_s2_p1", "MaxPool", 4, {1, 8, 15, 15}, {0}, 0, 1, 1,
     {IS("kernel_shape", 2, 3, 3), IS("strides", 2, 2, 2), IS("pads", 4, 1, 1, 1, 1)}},
    {"maxpool_ceil_dilated", "MaxPool", 4, {1, 3, 10, 11}, {0}, 0, 0, 1,
     {IS("kernel_shape", 2, 2, 2), IS("strides", 2, 2, 2), IS("dilations", 2, 2, 1),
      I("ceil_mode", 1)}},
    {"avgpool_exclude_pad", "AveragePool", 4, {1, 4, 9, 9}, {0}, 0, 1, 1,
     {IS("kernel_shape", 2, 3, 3), IS("strides", 2, 2, 2), IS("pads", 4, 1, 1, 1, 1)}},
    {"avgpool_include_pad", "AveragePool", 4, {1, 4, 9, 9}, {0}, 0, 1, 1,
     {IS("kernel_shape", 2, 3, 3), IS("pads", 4, 1, 0, 1, 2), I("count_include_pad", 1)}},
    {"avgpool_ceil", "AveragePool", 4, {2, 3, 8, 8}, {0}, 0, 1, 1,
     {IS("kernel_shape", 2, 3, 3), IS("strides", 2, 2, 2), I("ceil_mode", 1)}},
    {"avgpool_1d", "AveragePool", 3, {1, 3, 12}, {0}, 0, 1, 1,
     {IS("kernel_shape", 1, 4), IS("strides", 1, 3)}},
    {"gap_7x7", "GlobalAveragePool", 4, {2, 64, 7, 7}, {0}, 0, 1, 1, {{0}}},
};

int main(void) {
    int fails = 0, n = (int)(sizeof cases / sizeof cases[0]);
    for (int i = 0; i < n; i++) fails += run_case(&cases[i]);
    printf("%d passed, %d failed\n", n - fails, fails);
    return fails ? 1 : 0;
}
