/* test_quantize.c — low precision (docs/precision.md):
 *   - QLinearConv on oneDNN int8 against the reference kernel (u8 and s8
 *     activations, zero points, groups, depthwise, strides, padding, bias,
 *     u8/s8 outputs, full-range weights that need 7-bit fitting without VNNI);
 *   - the int8 compiler on a small generated float model: calibration
 *     (minmax and percentile), the rewrite, oneDNN vs reference kernels of
 *     kiln.QConv / kiln.QMatMul, closeness to fp32, the .kiln round trip with
 *     its "int8" header;
 *   - the bf16 rewrite (reference kernels here: this CPU has no bf16);
 *   - with ../shared: resnet50 and mobilenet_v2 quantized with 8 calibration
 *     inputs stay within cosine 0.99 of fp32 on 16 other inputs (seeded smooth
 *     random images, ImageNet-normalized), and the CLI: `kiln compare` of a
 *     model with itself, `kiln compile --precision int8 --calibrate`, and the
 *     bf16 fallback warning. */
#include "backend/dnnl_qconv.h"
#include "support/kt.h"
#include "support/onnxgen.h"
#include "passes/quantize.h"
#include "plan/artifact.h"
#include "runtime/model.h"

#include <math.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/wait.h>

static uint64_t rng_state = 42;
static uint64_t rnd_u64(void) {
    uint64_t z = (rng_state += 0x9e3779b97f4a7c15ull);
    z = (z ^ (z >> 30)) * 0xbf58476d1ce4e5b9ull;
    z = (z ^ (z >> 27)) * 0x94d049bb133111ebull;
    return z ^ (z >> 31);
}
static double rnd01(void) { return (double)(rnd_u64() >> 11) / 9007199254740992.0; }
static double rnd_range(double lo, double hi) { return lo + (hi - lo) * rnd01(); }

static int64_t numel(int32_t rank, const int64_t *dims) {
    int64_t n = 1;
    for (int32_t i = 0; i < rank; i++) n *= dims[i];
    return n;
}

static kiln_model *load_buf(og_model *om) {
    size_t len;
    uint8_t *buf = og_model_pack(om, &len);
    kiln_model *m = NULL;
    kiln_error err;
    kiln_status s = kiln_model_load_buffer(buf, len, "gen", NULL, &m, &err);
    free(buf);
    EXPECT_OK("load generated model", s, &err);
    return s ? NULL : m;
}

/* Runs m once (reference kernels or not) and returns a malloc'ed copy of output 0. */
static void *run_copy_layout(const kiln_model *m, const kiln_tensor *in, int32_t n_in,
                             int reference, kiln_tensor *shape, int32_t layout) {
    kiln_session_options so = kiln_session_options_default();
    so.reference_kernels = reference;
    so.activation_layout = layout;
    kiln_session *s = NULL;
    kiln_error err;
    kiln_tensor out[4];
    void *copy = NULL;
    if (!EXPECT_OK("session", kiln_session_create(m, &so, &s, &err), &err)) return NULL;
    if (EXPECT_OK("run", kiln_session_run(s, in, n_in, out, kiln_model_n_outputs(m), &err), &err)) {
        copy = malloc(out[0].nbytes ? out[0].nbytes : 1);
        memcpy(copy, out[0].data, out[0].nbytes);
        if (shape) *shape = out[0];
    }
    kiln_session_free(s);
    return copy;
}

static void *run_copy(const kiln_model *m, const kiln_tensor *in, int32_t n_in, int reference,
                      kiln_tensor *shape) {
    return run_copy_layout(m, in, n_in, reference, shape, 0);
}

/* ---- QLinearConv: oneDNN int8 against the reference kernel ---------------- */

struct qlc_case {
    const char *name;
    int64_t N, C, H, W, M, k, group, stride, pad;
    int x_signed, y_signed, with_bias, wide_weights, x_zp, y_zp;
};

static void qlinearconv_case(const struct qlc_case *c) {
    og_model *om = og_model_new(13);
    og_graph *g = og_model_graph(om);
    int64_t xd[4] = {c->N, c->C, c->H, c->W}, wd[4] = {c->M, c->C / c->group, c->k, c->k};
    int64_t oh = (c->H + 2 * c->pad - c->k) / c->stride + 1, ow = (c->W + 2 * c->pad - c->k) / c->stride + 1;
    int64_t yd[4] = {c->N, c->M, oh, ow}, md[1] = {c->M};
    int xt = c->x_signed ? OG_INT8 : OG_UINT8, yt = c->y_signed ? OG_INT8 : OG_UINT8;
    og_input(g, "x", xt, 4, xd);
    og_output(g, "y", yt, 4, yd);
    int64_t wn = numel(4, wd);
    int8_t *w = malloc((size_t)wn);
    int wmax = c->wide_weights ? 127 : 64;
    for (int64_t i = 0; i < wn; i++) w[i] = (int8_t)(rnd_u64() % (uint64_t)(2 * wmax + 1)) - wmax;
    og_init_raw(g, "w", OG_INT8, 4, wd, w, (size_t)wn);
    float xs = 0.02f, ys = 0.05f * (float)(c->C / c->group * c->k * c->k) / 8.0f;
    float *ws = malloc((size_t)c->M * sizeof *ws);
    int32_t *b = malloc((size_t)c->M * sizeof *b);
    int8_t *wz = calloc((size_t)c->M, 1);
    for (int64_t i = 0; i < c->M; i++) {
        ws[i] = (float)rnd_range(0.001, 0.004);
        b[i] = (int32_t)rnd_range(-2000, 2000);
    }
    og_init_f32(g, "xs", 0, NULL, &xs);
    og_init_f32(g, "ys", 0, NULL, &ys);
    og_init_f32(g, "ws", 1, md, ws);
    og_init_raw(g, "wz", OG_INT8, 1, md, wz, (size_t)c->M);
    uint8_t xz = (uint8_t)c->x_zp, yz = (uint8_t)c->y_zp;
    og_init_raw(g, "xz", xt, 0, NULL, &xz, 1);
    og_init_raw(g, "yz", yt, 0, NULL, &yz, 1);
    og_init_raw(g, "b", OG_INT32, 1, md, b, (size_t)c->M * 4);
    og_node *n = og_node_add(g, "QLinearConv", c->with_bias ? "x,xs,xz,w,ws,wz,ys,yz,b" : "x,xs,xz,w,ws,wz,ys,yz", "y");
    og_attr_int(n, "group", c->group);
    int64_t st[2] = {c->stride, c->stride}, pads[4] = {c->pad, c->pad, c->pad, c->pad};
    og_attr_ints(n, "strides", st, 2);
    og_attr_ints(n, "pads", pads, 4);
    kiln_model *m = load_buf(om);
    og_model_free(om);
    free(w);
    free(ws);
    free(b);
    free(wz);
    if (!m) return;
    kiln_tensor x = {.name = "x", .dtype = c->x_signed ? KILN_DTYPE_INT8 : KILN_DTYPE_UINT8, .rank = 4};
    memcpy(x.dims, xd, sizeof xd);
    x.nbytes = (size_t)numel(4, xd);
    x.data = malloc(x.nbytes);
    for (size_t i = 0; i < x.nbytes; i++) ((uint8_t *)x.data)[i] = (uint8_t)rnd_u64();
    kiln_tensor shape;
    uint8_t *ref = run_copy(m, &x, 1, 1, &shape), *fast = run_copy(m, &x, 1, 0, NULL);
    /* the kernel must be oneDNN's, not the reference */
    kiln_session_options so = kiln_session_options_default();
    so.profile = 1;
    kiln_session *s = NULL;
    kiln_tensor out;
    kiln_error err;
    if (!kiln_session_create(m, &so, &s, &err) && !kiln_session_run(s, &x, 1, &out, 1, &err)) {
        kiln_profile_entry pe[4];
        int32_t np = kiln_session_profile(s, pe, 4);
        CHECK(np == 1 && strstr(pe[0].impl, "dnnl:int8"), "%s: impl %s", c->name,
              np >= 1 ? pe[0].impl : "?");
    }
    kiln_session_free(s);
    if (ref && fast) {
        int64_t cnt = (int64_t)shape.nbytes, worst = 0;
        for (int64_t i = 0; i < cnt; i++) {
            int64_t a = c->y_signed ? ((int8_t *)ref)[i] : ref[i];
            int64_t b2 = c->y_signed ? ((int8_t *)fast)[i] : fast[i];
            int64_t d = a > b2 ? a - b2 : b2 - a;
            if (d > worst) worst = d;
        }
        /* exact up to float rounding (1); 7-bit fitted weights may move a few steps */
        int64_t tol = c->wide_weights && !kiln_cpu_has_int8_dot() && !c->x_signed ? 6 : 1;
        CHECK(worst <= tol, "%s: fast and reference differ by %lld steps (tolerance %lld)", c->name,
              (long long)worst, (long long)tol);
    }
    free(ref);
    free(fast);
    free(x.data);
    kiln_model_free(m);
}

/* ---- the int8 compiler on a small float model ------------------------------- */

/* x[1,8,12,12] -> Conv3x3(16)+Relu -> Conv1x1 stride 2 (16) -> depthwise 3x3,
 * + the 1x1's output, Relu -> GlobalAveragePool -> Flatten -> Gemm(16 -> 10) */
static og_model *small_cnn(void) {
    og_model *om = og_model_new(13);
    og_graph *g = og_model_graph(om);
    int64_t xd[4] = {1, 8, 12, 12}, yd[2] = {1, 10};
    og_input(g, "x", OG_FLOAT, 4, xd);
    og_output(g, "logits", OG_FLOAT, 2, yd);
    struct { const char *w, *b; int64_t dims[4]; } p[] = {
        {"w1", "b1", {16, 8, 3, 3}}, {"w2", "b2", {16, 16, 1, 1}}, {"w3", "b3", {16, 1, 3, 3}}};
    for (size_t i = 0; i < 3; i++) {
        int64_t n = numel(4, p[i].dims), nb = p[i].dims[0];
        float *w = malloc((size_t)n * sizeof *w), *b = malloc((size_t)nb * sizeof *b);
        double sc = 1.0 / sqrt((double)(n / nb));
        for (int64_t k = 0; k < n; k++) w[k] = (float)(rnd_range(-1, 1) * sc * 1.7);
        for (int64_t k = 0; k < nb; k++) b[k] = (float)rnd_range(-0.1, 0.1);
        og_init_f32(g, p[i].w, 4, p[i].dims, w);
        og_init_f32(g, p[i].b, 1, &nb, b);
        free(w);
        free(b);
    }
    int64_t gd[2] = {10, 16}, gb = 10;
    float gw[160], gbias[10];
    for (int k = 0; k < 160; k++) gw[k] = (float)rnd_range(-0.5, 0.5);
    for (int k = 0; k < 10; k++) gbias[k] = (float)rnd_range(-0.1, 0.1);
    og_init_f32(g, "gw", 2, gd, gw);
    og_init_f32(g, "gb", 1, &gb, gbias);
    int64_t one[4] = {1, 1, 1, 1}, pad1[4] = {1, 1, 1, 1}, s2[2] = {2, 2};
    og_node *n = og_node_add(g, "Conv", "x,w1,b1", "c1");
    og_attr_ints(n, "pads", pad1, 4);
    og_node_add(g, "Relu", "c1", "r1");
    n = og_node_add(g, "Conv", "r1,w2,b2", "c2");
    og_attr_ints(n, "strides", s2, 2);
    n = og_node_add(g, "Conv", "c2,w3,b3", "c3");
    og_attr_ints(n, "pads", pad1, 4);
    og_attr_int(n, "group", 16);
    og_node_add(g, "Add", "c3,c2", "s3");   /* a residual: fused into the conv */
    og_node_add(g, "Relu", "s3", "r3");
    og_node_add(g, "GlobalAveragePool", "r3", "gap");
    og_node_add(g, "Flatten", "gap", "flat");
    n = og_node_add(g, "Gemm", "flat,gw,gb", "logits");
    og_attr_int(n, "transB", 1);
    (void)one;
    return om;
}

static kiln_tensor *random_sets(int n, int32_t rank, const int64_t *dims, const char *name) {
    kiln_tensor *t = calloc((size_t)n, sizeof *t);
    for (int i = 0; i < n; i++) {
        t[i].name = name;
        t[i].dtype = KILN_DTYPE_FLOAT;
        t[i].rank = rank;
        memcpy(t[i].dims, dims, (size_t)rank * sizeof *dims);
        t[i].nbytes = (size_t)numel(rank, dims) * sizeof(float);
        t[i].data = malloc(t[i].nbytes);
        for (int64_t k = 0; k < numel(rank, dims); k++) ((float *)t[i].data)[k] = (float)rnd_range(-1.5, 2.0);
    }
    return t;
}

static void free_sets(kiln_tensor *t, int n) {
    for (int i = 0; i < n; i++) free(t[i].data);
    free(t);
}

static double cosine(const float *a, const float *b, int64_t n, double *max_abs) {
    double dot = 0, na = 0, nb = 0;
    *max_abs = 0;
    for (int64_t i = 0; i < n; i++) {
        dot += (double)a[i] * b[i];
        na += (double)a[i] * a[i];
        nb += (double)b[i] * b[i];
        double d = fabs((double)a[i] - b[i]);
        if (d > *max_abs || isnan(d)) *max_abs = isnan(d) ? INFINITY : d;
    }
    return na > 0 && nb > 0 ? dot / sqrt(na * nb) : 0.0;
}

static int count_ops(const kiln_model *m, const char *op) {
    int c = 0;
    for (int32_t i = 0; i < m->onnx.graph->n_nodes; i++) c += !strcmp(m->onnx.graph->nodes[i].op_type, op);
    return c;
}

static void small_model_int8(int method, const char *tmp) {
    og_model *om = small_cnn();
    kiln_model *fp = load_buf(om), *q = load_buf(om);
    og_model_free(om);
    if (!fp || !q) return;
    int64_t xd[4] = {1, 8, 12, 12};
    kiln_tensor *cal = random_sets(8, 4, xd, "x"), *ev = random_sets(8, 4, xd, "x");
    const kiln_tensor *sets[8];
    for (int i = 0; i < 8; i++) sets[i] = &cal[i];
    struct kiln_calib_options co = {.method = method, .percentile = 99.9};
    struct kiln_calib_range *ranges = NULL;
    kiln_error err;
    int32_t n_ranges = q->onnx.graph->n_values;
    if (EXPECT_OK("calibrate", kiln_calibrate(q, sets, 8, &co, &ranges, &err), &err)) {
        /* the graph is given back as it was */
        CHECK(q->onnx.graph->n_outputs == 1, "outputs after calibration: %d", q->onnx.graph->n_outputs);
        int32_t x = kiln_graph_find(q->onnx.graph, "x");
        CHECK(x >= 0 && ranges[x].lo < -1.0f && ranges[x].hi > 1.5f && ranges[x].hi <= 2.0f,
              "input range [%g, %g]", x >= 0 ? ranges[x].lo : 0, x >= 0 ? ranges[x].hi : 0);
        int32_t r1 = kiln_graph_find(q->onnx.graph, "r1");
        CHECK(r1 >= 0 && ranges[r1].lo >= 0.0f && ranges[r1].hi > 0.0f, "relu output range [%g, %g]",
              r1 >= 0 ? ranges[r1].lo : 0, r1 >= 0 ? ranges[r1].hi : 0);
        /* as `kiln compile` does: 7-bit weights where oneDNN would otherwise fit them */
        struct kiln_quant_options qo = {.weight_max = kiln_cpu_has_int8_dot() ? 127 : 64, .matmuls = 1};
        struct kiln_quant_stats qs;
        if (EXPECT_OK("quantize", kiln_quantize_int8(q->onnx.graph, ranges, &qo, &qs, &err), &err)) {
            CHECK(qs.convs == 3 && qs.matmuls == 1 && qs.skipped == 0, "rewrote %d convs, %d matmuls, skipped %d",
                  qs.convs, qs.matmuls, qs.skipped);
            CHECK(count_ops(q, "QConv") == 3 && count_ops(q, "QMatMul") == 1 && count_ops(q, "Conv") == 0,
                  "ops after the rewrite");
            int residual = 0;
            for (int32_t i = 0; i < q->onnx.graph->n_nodes; i++)
                residual += q->onnx.graph->nodes[i].sum_input == 4;
            CHECK(residual == 1, "QConv nodes with the fused residual: %d", residual);
            /* the float weights are gone */
            CHECK(kiln_graph_find(q->onnx.graph, "w1") < 0 ||
                      !q->onnx.graph->values[kiln_graph_find(q->onnx.graph, "w1")].is_const,
                  "float weights kept");
        }
    }
    kiln_calib_free(ranges, n_ranges);
    double worst_cos = 1, worst_fast = 1;
    for (int i = 0; i < 8; i++) {
        kiln_tensor shape;
        float *a = run_copy(fp, &ev[i], 1, 0, &shape);
        float *b = run_copy(q, &ev[i], 1, 0, NULL), *r = run_copy(q, &ev[i], 1, 1, NULL);
        if (a && b && r) {
            double ma, mr;
            double c1 = cosine(a, b, 10, &ma), c2 = cosine(r, b, 10, &mr);
            if (c1 < worst_cos) worst_cos = c1;
            if (c2 < worst_fast) worst_fast = c2;
        }
        free(a);
        free(b);
        free(r);
    }
    /* every activation layout the planner may pick (plain, NHWC, nChw8c) */
    for (int32_t layout = 1; layout <= 3; layout++) {
        float *b = run_copy_layout(q, &ev[0], 1, 0, NULL, layout), *r = run_copy(q, &ev[0], 1, 1, NULL);
        double m2, c = b && r ? cosine(r, b, 10, &m2) : 0;
        CHECK(c >= 0.9999, "int8 oneDNN with activation layout %d vs reference: cosine %.6f", layout, c);
        free(b);
        free(r);
    }
    CHECK(worst_cos >= 0.99, "int8 vs fp32 (calibrator %d): worst cosine %.6f", method, worst_cos);
    CHECK(worst_fast >= 0.9999, "int8 oneDNN vs reference kernels: worst cosine %.6f", worst_fast);
    printf("small model, calibrator %s: int8 vs fp32 worst cosine %.6f, oneDNN vs reference %.7f\n",
           method ? "percentile" : "minmax", worst_cos, worst_fast);

    /* the .kiln round trip keeps the int8 graph and records the precision */
    char path[4200];
    snprintf(path, sizeof path, "%s/small_int8.kiln", tmp);
    struct kiln_artifact_info info = {.precision = "int8"};
    if (EXPECT_OK("write plan", kiln_artifact_write(q->onnx.graph, NULL, &info, path, &err), &err)) {
        kiln_model *p = NULL;
        if (EXPECT_OK("load plan", kiln_model_load(path, NULL, &p, &err), &err)) {
            CHECK(!strcmp(p->art.header.precision, "int8"), "header precision '%s'", p->art.header.precision);
            CHECK(count_ops(p, "QConv") == 3, "plan lost its QConv nodes");
            float *b = run_copy(q, &ev[0], 1, 0, NULL), *c = run_copy(p, &ev[0], 1, 0, NULL);
            CHECK(b && c && !memcmp(b, c, 10 * sizeof(float)), "plan output differs from the in-memory model");
            free(b);
            free(c);
            kiln_model_free(p);
        }
    }
    free_sets(cal, 8);
    free_sets(ev, 8);
    kiln_model_free(fp);
    kiln_model_free(q);
}

static void small_model_bf16(void) {
    og_model *om = small_cnn();
    kiln_model *fp = load_buf(om), *b = load_buf(om);
    og_model_free(om);
    if (!fp || !b) return;
    kiln_error err;
    struct kiln_quant_stats qs;
    if (EXPECT_OK("bf16", kiln_convert_bf16(b->onnx.graph, &qs, &err), &err))
        /* the conv with a fused residual stays fp32: Bf16Conv has no residual input */
        CHECK(qs.convs == 2 && qs.matmuls == 1 && count_ops(b, "Bf16Conv") == 2 &&
                  count_ops(b, "Conv") == 1 && count_ops(b, "Bf16MatMul") == 1,
              "bf16 rewrite: %d convs %d matmuls", qs.convs, qs.matmuls);
    int64_t xd[4] = {1, 8, 12, 12};
    kiln_tensor *ev = random_sets(4, 4, xd, "x");
    double worst = 1, worst_abs = 0;
    for (int i = 0; i < 4; i++) {
        float *x = run_copy(fp, &ev[i], 1, 0, NULL), *y = run_copy(b, &ev[i], 1, 0, NULL);
        float *z = run_copy(b, &ev[i], 1, 1, NULL);
        if (x && y && z) {
            double ma, mz;
            double c = cosine(x, y, 10, &ma);
            cosine(y, z, 10, &mz);
            if (c < worst) worst = c;
            if (ma > worst_abs) worst_abs = ma;
            CHECK(mz < 1e-3, "bf16 fast vs reference: max abs %g", mz);
        }
        free(x);
        free(y);
        free(z);
    }
    CHECK(worst >= 0.9999 && worst_abs < 0.05, "bf16 vs fp32: cosine %.7f, max abs %g", worst, worst_abs);
    free_sets(ev, 4);
    kiln_model_free(fp);
    kiln_model_free(b);
}

/* ---- real models ------------------------------------------------------------- */

/* Smooth random pictures (a few random plane waves per channel, pixel values
 * in [0, 1]), ImageNet-normalized: closer to photographs than white noise. */
static void smooth_image(float *dst, int64_t H, int64_t W, uint64_t seed) {
    static const double mean[3] = {0.485, 0.456, 0.406}, std[3] = {0.229, 0.224, 0.225};
    uint64_t save = rng_state;
    rng_state = seed * 7919 + 17;
    for (int c = 0; c < 3; c++) {
        double base = rnd_range(0.2, 0.8), fx[4], fy[4], ph[4], am[4];
        for (int k = 0; k < 4; k++) {
            fx[k] = rnd_range(-8, 8);
            fy[k] = rnd_range(-8, 8);
            ph[k] = rnd_range(0, 6.283);
            am[k] = rnd_range(0.05, 0.25);
        }
        for (int64_t y = 0; y < H; y++)
            for (int64_t x = 0; x < W; x++) {
                double v = base;
                for (int k = 0; k < 4; k++)
                    v += am[k] * cos(2 * M_PI * (fx[k] * (double)x / (double)W + fy[k] * (double)y / (double)H) + ph[k]);
                v = v < 0 ? 0 : v > 1 ? 1 : v;
                dst[(c * H + y) * W + x] = (float)((v - mean[c]) / std[c]);
            }
    }
    rng_state = save;
}

static kiln_tensor *image_sets(const kiln_model *m, int n, uint64_t seed0) {
    kiln_tensor_info ti;
    kiln_model_input(m, 0, &ti);
    kiln_tensor *t = calloc((size_t)n, sizeof *t);
    for (int i = 0; i < n; i++) {
        t[i] = (kiln_tensor){.name = ti.name, .dtype = KILN_DTYPE_FLOAT, .rank = 4,
                             .dims = {1, 3, 224, 224}};
        t[i].nbytes = 3 * 224 * 224 * sizeof(float);
        t[i].data = malloc(t[i].nbytes);
        smooth_image(t[i].data, 224, 224, seed0 + (uint64_t)i);
    }
    return t;
}

static int write_npy(const char *path, const kiln_tensor *t) {
    char hdr[128];
    int n = snprintf(hdr, sizeof hdr, "{'descr': '<f4', 'fortran_order': False, 'shape': (%lld, %lld, %lld, %lld), }",
                     (long long)t->dims[0], (long long)t->dims[1], (long long)t->dims[2], (long long)t->dims[3]);
    int total = 10 + n + 1, padn = (64 - total % 64) % 64;
    FILE *f = fopen(path, "wb");
    if (!f) return -1;
    uint16_t hl = (uint16_t)(n + padn + 1);
    fwrite("\x93NUMPY\x01\x00", 1, 8, f);
    fwrite(&hl, 2, 1, f);
    fwrite(hdr, 1, (size_t)n, f);
    for (int i = 0; i < padn; i++) fputc(' ', f);
    fputc('\n', f);
    fwrite(t->data, 1, t->nbytes, f);
    return fclose(f);
}

static int64_t argmax(const float *x, int64_t n) {
    int64_t b = 0;
    for (int64_t i = 1; i < n; i++)
        if (x[i] > x[b]) b = i;
    return b;
}

static void real_model(const char *shared, const char *name) {
    char path[4096];
    snprintf(path, sizeof path, "%s/models/%s/model.onnx", shared, name);
    kiln_model *fp = NULL, *q = NULL;
    kiln_error err;
    if (!EXPECT_OK(name, kiln_model_load(path, NULL, &fp, &err), &err) ||
        !EXPECT_OK(name, kiln_model_load(path, NULL, &q, &err), &err)) {
        kiln_model_free(fp);
        return;
    }
    enum { NCAL = 8, NEVAL = 16 };
    kiln_tensor *cal = image_sets(fp, NCAL, 1000), *ev = image_sets(fp, NEVAL, 2000);
    const kiln_tensor *sets[NCAL];
    for (int i = 0; i < NCAL; i++) sets[i] = &cal[i];
    struct kiln_calib_options co = {.method = KILN_CALIB_PERCENTILE, .percentile = 99.99};
    struct kiln_calib_range *ranges = NULL;
    struct kiln_quant_stats qs = {0};
    struct kiln_quant_options qo = {.weight_max = kiln_cpu_has_int8_dot() ? 127 : 64, .matmuls = 1};
    int32_t n_ranges = q->onnx.graph->n_values;
    char **keep = NULL;
    double ccos = 0;
    int32_t tried = 0;
    /* as `kiln compile` does by default: layers that hurt most stay fp32 until
     * the calibration outputs are within cosine 0.995 (2 sets here, for time) */
    if (EXPECT_OK("calibrate", kiln_calibrate(q, sets, NCAL, &co, &ranges, &err), &err) &&
        EXPECT_OK("choose", kiln_int8_choose(q, ranges, &qo, sets, 2, 0.995, &keep, &ccos, &tried, &err), &err)) {
        qo.exclude = (const char *const *)keep;
        EXPECT_OK("quantize", kiln_quantize_int8(q->onnx.graph, ranges, &qo, &qs, &err), &err);
    }
    kiln_calib_free(ranges, n_ranges);
    CHECK(qs.convs > 20 && qs.matmuls == 1 && qs.skipped == 0 && ccos >= 0.995,
          "%s: %d convs %d matmuls %d skipped, calibration cosine %.5f", name, qs.convs, qs.matmuls,
          qs.skipped, ccos);
    kiln_session *sa = NULL, *sb = NULL;
    kiln_session_options so = kiln_session_options_default();
    double worst = 1, sum = 0;
    int agree = 0, runs = 0;
    if (EXPECT_OK("session", kiln_session_create(fp, &so, &sa, &err), &err) &&
        EXPECT_OK("session", kiln_session_create(q, &so, &sb, &err), &err)) {
        for (int i = 0; i < NEVAL; i++) {
            kiln_tensor oa, ob;
            if (!EXPECT_OK("run fp32", kiln_session_run(sa, &ev[i], 1, &oa, 1, &err), &err) ||
                !EXPECT_OK("run int8", kiln_session_run(sb, &ev[i], 1, &ob, 1, &err), &err))
                break;
            int64_t n = (int64_t)(oa.nbytes / sizeof(float));
            double ma, c = cosine(oa.data, ob.data, n, &ma);
            worst = c < worst ? c : worst;
            sum += c;
            agree += argmax(oa.data, n) == argmax(ob.data, n);
            runs++;
        }
    }
    CHECK(runs == NEVAL && worst >= 0.99, "%s int8 vs fp32: worst cosine %.6f over %d inputs", name, worst, runs);
    printf("%s: %d Conv + %d Gemm int8, %d kept fp32 (%d variants tried); vs fp32 over %d inputs: "
           "cosine worst %.6f mean %.6f, top-1 agreement %d/%d\n",
           name, qs.convs, qs.matmuls, qs.excluded, tried, runs, worst, runs ? sum / runs : 0, agree,
           runs);
    kiln_names_free(keep);
    kiln_session_free(sa);
    kiln_session_free(sb);
    free_sets(cal, NCAL);
    free_sets(ev, NEVAL);
    kiln_model_free(fp);
    kiln_model_free(q);
}

static int run_cli(char *const argv[], char **out) {
    int st = kt_run_capture(argv, out);
    return st >= 0 && WIFEXITED(st) ? WEXITSTATUS(st) : -1;
}

static void cli_checks(const char *shared, const char *tmp) {
    char r50[4096], mnv2[4096], dir[4200], q8[4200], bf[4200];
    snprintf(r50, sizeof r50, "%s/models/resnet50/model.onnx", shared);
    snprintf(mnv2, sizeof mnv2, "%s/models/mobilenet_v2/model.onnx", shared);
    snprintf(dir, sizeof dir, "%s/inputs", tmp);
    snprintf(q8, sizeof q8, "%s/mnv2_int8.kiln", tmp);
    snprintf(bf, sizeof bf, "%s/mnv2_bf16.kiln", tmp);
    char cmd[4400];
    snprintf(cmd, sizeof cmd, "mkdir -p '%s'", dir);
    CHECK(system(cmd) == 0, "mkdir %s", dir);
    kiln_model *m = NULL;
    kiln_error err;
    if (!EXPECT_OK("load", kiln_model_load(mnv2, NULL, &m, &err), &err)) return;
    kiln_tensor *t = image_sets(m, 4, 3000);
    for (int i = 0; i < 4; i++) {
        char p[4400];
        snprintf(p, sizeof p, "%s/in%02d.npy", dir, i);
        CHECK(write_npy(p, &t[i]) == 0, "write %s", p);
    }
    free_sets(t, 4);
    kiln_model_free(m);
    const char *cli = kt_cli();
    char *out = NULL;

    /* a model compared with itself */
    char *a1[] = {(char *)cli, "compare", r50, r50, "--inputs", dir, NULL};
    int rc = run_cli(a1, &out);
    CHECK(rc == 0 && out && strstr(out, "1.000000") && strstr(out, "4/4 (100.0%)"),
          "compare resnet50 with itself: rc %d\n%s", rc, out ? out : "");
    free(out);

    /* int8 through the CLI, checked with compare */
    char *a2[] = {(char *)cli, "compile", mnv2, "-o", q8, "--precision", "int8", "--calibrate", dir,
                  "--calibrator", "minmax", "--min-cosine", "0", NULL};
    rc = run_cli(a2, &out);
    CHECK(rc == 0 && out && strstr(out, "int8:") && strstr(out, "Conv"), "compile int8: rc %d\n%s", rc,
          out ? out : "");
    free(out);
    kiln_model *p = NULL;
    if (EXPECT_OK("load int8 plan", kiln_model_load(q8, NULL, &p, &err), &err))
        CHECK(!strcmp(p->art.header.precision, "int8"), "precision '%s'", p->art.header.precision);
    kiln_model_free(p);
    /* every layer int8 and 4 calibration inputs: close, if not within 0.99 */
    char *a3[] = {(char *)cli, "compare", mnv2, q8, "--inputs", dir, "--min-cosine", "0.95", NULL};
    rc = run_cli(a3, &out);
    CHECK(rc == 0 && out && strstr(out, "(int8)"), "compare int8: rc %d\n%s", rc, out ? out : "");
    free(out);

    /* --precision int8 without calibration inputs is a usage error */
    char *a4[] = {(char *)cli, "compile", mnv2, "-o", q8, "--precision", "int8", NULL};
    rc = run_cli(a4, &out);
    CHECK(rc == 2 && out && strstr(out, "--calibrate"), "int8 without --calibrate: rc %d\n%s", rc, out ? out : "");
    free(out);

    /* bf16: the fallback on CPUs without bf16 still writes a working plan */
    char *a5[] = {(char *)cli, "compile", mnv2, "-o", bf, "--precision", "bf16", NULL};
    rc = run_cli(a5, &out);
    CHECK(rc == 0, "compile bf16: rc %d\n%s", rc, out ? out : "");
    if (!kiln_cpu_has_bf16())
        CHECK(out && strstr(out, "bf16 not supported on this CPU (") && strstr(out, "): compiling fp32"),
              "no fallback warning:\n%s", out ? out : "");
    free(out);
    p = NULL;
    if (EXPECT_OK("load bf16 plan", kiln_model_load(bf, NULL, &p, &err), &err))
        CHECK(!strcmp(p->art.header.precision, kiln_cpu_has_bf16() ? "bf16" : "fp32"), "precision '%s'",
              p->art.header.precision);
    kiln_model_free(p);
    char *a6[] = {(char *)cli, "compare", mnv2, bf, "--inputs", dir, "--max", "2", "--min-cosine", "0.999", NULL};
    rc = run_cli(a6, &out);
    CHECK(rc == 0, "compare bf16 plan: rc %d\n%s", rc, out ? out : "");
    free(out);
}

int main(void) {
    static const struct qlc_case cases[] = {
        {"u8 3x3 pad bias", 1, 16, 10, 10, 32, 3, 1, 1, 1, 0, 0, 1, 0, 128, 10},
        {"u8 1x1 stride 2", 2, 32, 9, 9, 16, 1, 1, 2, 0, 0, 0, 1, 0, 3, 0},
        {"u8 depthwise", 1, 24, 8, 8, 24, 3, 24, 1, 1, 0, 0, 1, 0, 100, 128},
        {"u8 groups 4, s8 out", 1, 16, 7, 7, 32, 3, 4, 2, 1, 0, 1, 0, 0, 0, 5},
        {"s8 in", 1, 8, 6, 6, 8, 3, 1, 1, 1, 1, 0, 1, 0, 0, 0},
        {"u8 full-range weights", 1, 32, 8, 8, 16, 3, 1, 1, 1, 0, 0, 1, 1, 128, 128},
    };
    for (size_t i = 0; i < sizeof cases / sizeof cases[0]; i++) qlinearconv_case(&cases[i]);
    char *tmp = kt_mkdtemp("quantize");
    small_model_int8(KILN_CALIB_MINMAX, tmp);
    small_model_int8(KILN_CALIB_PERCENTILE, tmp);
    small_model_bf16();
    const char *shared = kt_shared();
    if (shared) {
        real_model(shared, "resnet50");
        real_model(shared, "mobilenet_v2");
        cli_checks(shared, tmp);
    } else {
        printf("../shared is absent: real-model and CLI checks skipped\n");
    }
    kt_rm_rf(tmp);
    free(tmp);
    return kt_finish("test_quantize");
}
