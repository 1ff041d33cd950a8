/* bench_conv3x3.c — per-layer CPU time of ResNet-50's stride-1 3x3 convs
 * (nChw8c in and out, bias + ReLU fused, as kiln's planner runs them):
 * oneDNN direct vs Winograd F(4x4) and F(2x2). Single-threaded by default
 * (argv[1] = threads); reports the min over reps of the calling thread's CPU
 * time (CLOCK_THREAD_CPUTIME_ID with 1 thread, process CPU time otherwise),
 * which is robust on a shared machine. Build: make -C build bench_conv3x3. */
#include "backend/dnnl_conv.h"
#include "backend/dnnl_wino.h"
#include "ir/graph.h"
#include "kiln.h"

#include <omp.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <time.h>

static double cpu_ms(int threads) {
    struct timespec ts;
    clock_gettime(threads == 1 ? CLOCK_THREAD_CPUTIME_ID : CLOCK_MONOTONIC, &ts);
    return ts.tv_sec * 1e3 + ts.tv_nsec / 1e6;
}

/* Whole model: min and median CPU time of a run (1 thread: the calling
 * thread's CPU time), inputs zero; the environment picks the conv algorithm. */
static int bench_model(const char *path, int threads, int reps) {
    kiln_model *m = NULL;
    kiln_session *s = NULL;
    kiln_error err = {0};
    if (kiln_model_load(path, NULL, &m, &err)) { printf("load: %s\n", err.msg); return 1; }
    kiln_session_options so = kiln_session_options_default();
    so.n_threads = threads;
    if (kiln_session_create(m, &so, &s, &err)) { printf("session: %s\n", err.msg); return 1; }
    kiln_tensor_info info;
    kiln_model_input(m, 0, &info);
    kiln_tensor in = {0};
    in.dtype = info.dtype;
    in.rank = info.rank;
    int64_t n = 1;
    for (int32_t i = 0; i < info.rank; i++) { in.dims[i] = info.dims[i] > 0 ? info.dims[i] : 1; n *= in.dims[i]; }
    in.data = calloc((size_t)n, 4);
    in.nbytes = (size_t)n * 4;
    kiln_tensor out[8];
    int32_t no = kiln_model_n_outputs(m);
    double *t = calloc((size_t)reps, sizeof *t);
    for (int r = -2; r < reps; r++) {
        double t0 = cpu_ms(threads);
        if (kiln_session_run(s, &in, 1, out, no, &err)) { printf("run: %s\n", err.msg); return 1; }
        if (r == -2) printf("first run (plan + prepare): %.1f ms cpu\n", cpu_ms(threads) - t0);
        if (r >= 0) t[r] = cpu_ms(threads) - t0;
    }
    for (int i = 0; i < reps; i++)   /* sort */
        for (int j = i + 1; j < reps; j++)
            if (t[j] < t[i]) { double x = t[i]; t[i] = t[j]; t[j] = x; }
    printf("model cpu ms per run: min %.2f median %.2f (KILN_CONV_ALGO=%s)\n", t[0], t[reps / 2],
           getenv("KILN_CONV_ALGO") ? getenv("KILN_CONV_ALGO") : "auto");
    free(t);
    free(in.data);
    kiln_session_free(s);
    kiln_model_free(m);
    return 0;
}

int main(int argc, char **argv) {
    if (argc > 1 && strstr(argv[1], ".onnx"))
        return bench_model(argv[1], argc > 2 ? atoi(argv[2]) : 1, argc > 3 ? atoi(argv[3]) : 10);
    int threads = argc > 1 ? atoi(argv[1]) : 1, reps = argc > 2 ? atoi(argv[2]) : 15;
    /* argv[3] = "cold": evict the caches before each timed run (64 MiB
     * written), as weights and activations are cold in a whole-model pass */
    int cold = argc > 3 && !strcmp(argv[3], "cold");
    size_t flush_n = (size_t)16 << 20;
    float *flush = cold ? calloc(flush_n, sizeof(float)) : NULL;
    omp_set_num_threads(threads);
    static const int64_t shapes[][3] = {{56, 64, 64}, {28, 128, 128}, {14, 256, 256}, {7, 512, 512}};
    printf("| HxWxC | direct ms | wino F4 ms | F4 speedup | wino F2 ms | F2 speedup |\n|---|---|---|---|---|---|\n");
    for (int s = 0; s < 4; s++) {
        int64_t H = shapes[s][0], C = shapes[s][1], K = shapes[s][2];
        size_t xn = (size_t)(C * H * H), yn = (size_t)(K * H * H), wn = (size_t)(K * C * 9);
        float *x = aligned_alloc(64, xn * 4), *y = aligned_alloc(64, yn * 4);
        float *w = aligned_alloc(64, wn * 4), *b = aligned_alloc(64, (size_t)K * 4);
        for (size_t i = 0; i < xn; i++) x[i] = (float)((i * 7919) % 1000) / 1000.0f - 0.5f;
        for (size_t i = 0; i < wn; i++) w[i] = (float)((i * 104729) % 1000) / 20000.0f - 0.025f;
        for (int64_t i = 0; i < K; i++) b[i] = 0.01f * (float)i;
        kiln_error err = {0};
        struct kiln_dnnl_conv_shape dsh = {.nsp = 2, .has_bias = 1, .N = 1, .C = C, .M = K, .G = 1,
                                           .in = {H, H}, .out = {H, H}, .k = {3, 3}, .s = {1, 1},
                                           .d = {1, 1}, .pb = {1, 1}, .pe = {1, 1},
                                           .act = KILN_ACT_RELU, .src_cl = KILN_LAYOUT_BLOCKED8,
                                           .dst_cl = KILN_LAYOUT_BLOCKED8};
        struct kiln_dnnl_conv *dc = NULL;
        if (kiln_dnnl_conv_create(&dsh, w, NULL, &dc, &err) || !dc) { printf("dnnl create failed\n"); return 1; }
        double best[3] = {1e30, 1e30, 1e30};
        struct kiln_wino *wk[2] = {NULL, NULL};
        for (int m = 0; m < 2; m++) {
            struct kiln_wino_shape ws = {.N = 1, .C = C, .K = K, .H = H, .W = H, .OH = H, .OW = H,
                                         .pt = 1, .pl = 1, .m = m ? 2 : 4, .has_bias = 1,
                                         .act = KILN_ACT_RELU, .src_layout = KILN_LAYOUT_BLOCKED8,
                                         .dst_layout = KILN_LAYOUT_BLOCKED8};
            if (kiln_wino_create(&ws, w, threads, NULL, &wk[m], &err) || !wk[m]) { printf("wino create failed\n"); return 1; }
        }
        for (int r = 0; r < reps; r++)
            for (int a = 0; a < 3; a++) {   /* interleaved: machine noise hits all alike */
                if (flush)
                    for (size_t i = 0; i < flush_n; i += 16) flush[i] += 1.0f;
                double t0 = cpu_ms(threads);
                if (a == 0) kiln_dnnl_conv_run(dc, x, w, b, y, &err);
                else kiln_wino_run(wk[a - 1], x, b, NULL, y, &err);
                double t = cpu_ms(threads) - t0;
                if (r > 0 && t < best[a]) best[a] = t;   /* rep 0 warms up */
            }
        printf("| %lldx%lldx%lld | %.3f | %.3f | %.2fx | %.3f | %.2fx |\n", (long long)H, (long long)H,
               (long long)C, best[0], best[1], best[0] / best[1], best[2], best[0] / best[2]);
        kiln_dnnl_conv_free(dc);
        kiln_wino_free(wk[0]);
        kiln_wino_free(wk[1]);
        free(x); free(y); free(w); free(b);
    }
    free(flush);
    return 0;
}
