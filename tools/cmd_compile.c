/* cmd_compile.c — `kiln compile MODEL.onnx -o MODEL.kiln`: runs the pass
 * pipeline with a report, optionally lowers the precision (int8 with
 * calibration, bf16; docs/precision.md), and writes the compiled plan. */
#include "cmd.h"

#include <stdarg.h>
#include <stdbool.h>
#include "input_sets.h"
#include "kiln.h"
#include "tensor_file.h"
#include "backend/dnnl_qconv.h"
#include "base/wcache.h"
#include "passes/passes.h"
#include "passes/quantize.h"
#include "plan/artifact.h"
#include "runtime/model.h"

#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <time.h>
#include <unistd.h>

/* Progress of a long compile on a terminal: one stderr line rewritten with
 * \r, nothing when stderr is a file or pipe (logs stay clean). */
struct progress {
    bool tty;
    bool shown;
    struct timespec t0;
};

static void progress_line(struct progress *p, const char *fmt, ...) __attribute__((format(printf, 2, 3)));
static void progress_line(struct progress *p, const char *fmt, ...) {
    if (!p->tty) return;
    struct timespec t;
    clock_gettime(CLOCK_MONOTONIC, &t);
    double s = (double)(t.tv_sec - p->t0.tv_sec) + (double)(t.tv_nsec - p->t0.tv_nsec) / 1e9;
    char msg[200];
    va_list ap;
    va_start(ap, fmt);
    vsnprintf(msg, sizeof msg, fmt, ap);
    va_end(ap);
    fprintf(stderr, "\r\033[Kkiln compile: %s (%.1f s)", msg, s);
    fflush(stderr);
    p->shown = true;
}

/* Ends the progress line so the next message starts on a clean line. */
static void progress_done(struct progress *p) {
    if (p->tty && p->shown) fprintf(stderr, "\r\033[K");
    p->shown = false;
}

static void plan_progress(void *user, int32_t done, int32_t total) {
    progress_line(user, "planning batch sizes %d/%d", done, total);
}

static void calib_progress(void *user, const char *stage, int32_t done, int32_t total) {
    progress_line(user, "%s %d/%d", stage, done, total);
}

static void usage(void) {
    fprintf(stderr,
            "usage: kiln compile MODEL.onnx -o OUT.kiln [--batch 1,8,32] [--report]\n"
            "                    [--dump-ir after=PASS|all] [--precision fp32|int8|bf16]\n"
            "  int8 (post-training static quantization) needs calibration inputs:\n"
            "  --calibrate DIR       test_data_set_* folders, or .pb/.npy/image files (one set each)\n"
            "  --calibrator minmax|percentile   activation ranges (default percentile)\n"
            "  --percentile P        clip each side at this percentile (default 99.999)\n"
            "  --max N               use at most N input sets\n"
            "  --int8-ops conv|all   quantize convolutions only, or also Gemm/MatMul (default all)\n"
            "  --min-cosine C        keep the layers that hurt most in fp32 until the outputs on\n"
            "                        (up to 4) calibration sets are within cosine C of fp32\n"
            "                        (default 0.995; 0: quantize every layer)\n"
            "  --mean R,G,B --std R,G,B --scale S   image normalization (as kiln run)\n"
            "bf16 falls back to fp32 on CPUs without avx512bf16 / amx-bf16.\n");
}

static int parse_batches(const char *s, int32_t *out, int max) {
    int n = 0;
    while (*s && n < max) {
        char *end;
        long v = strtol(s, &end, 10);
        if (end == s || v < 1 || v > 1 << 20) return -1;
        out[n++] = (int32_t)v;
        s = *end == ',' ? end + 1 : end;
        if (*end && *end != ',') return -1;
    }
    return n;
}

/* The CPU features that matter for the message: no baseline sse4.2/avx. */
static void features_brief(char *buf, size_t n) {
    char tmp[256];
    snprintf(tmp, sizeof tmp, "%s", kiln_cpu_features_str());
    buf[0] = '\0';
    size_t off = 0;
    for (char *save = NULL, *t = strtok_r(tmp, " ", &save); t; t = strtok_r(NULL, " ", &save)) {
        if (!strcmp(t, "sse4.2") || !strcmp(t, "avx")) continue;
        off += (size_t)snprintf(buf + off, off < n ? n - off : 0, "%s%s", off ? " " : "", t);
    }
    if (!buf[0]) snprintf(buf, n, "%s", kiln_cpu_features_str());
}

static int parse_triplet(const char *s, double *out) {
    double v[3];
    int n = tf_parse_f64_list(s, v, 3);
    if (n == 1) v[1] = v[2] = v[0];
    if (n != 1 && n != 3) return -1;
    memcpy(out, v, sizeof v);
    return 0;
}

struct int8_opts {
    const char *dir;
    struct kiln_calib_options calib;
    int32_t max_sets, matmuls;
    double min_cosine;
    struct image_norm norm;
    struct progress *prog;
};

/* Calibrates on the input sets in o->dir and rewrites m's graph to int8. */
static int quantize_int8(struct kiln_model *m, const struct int8_opts *o) {
    kiln_error err;
    struct input_sets sets;
    if (input_sets_load(m, o->dir, o->max_sets, &o->norm, &sets, &err)) {
        fprintf(stderr, "kiln compile: calibration inputs: %s\n", err.msg);
        return 1;
    }
    struct kiln_calib_range *ranges = NULL;
    int rc = 0;
    int32_t n_ranges = m->onnx.graph->n_values;
    if (kiln_calibrate(m, (const kiln_tensor *const *)sets.sets, sets.n_sets, &o->calib, &ranges,
                       &err)) {
        progress_done(o->prog);
        fprintf(stderr, "kiln compile: calibration: %s\n", err.msg);
        rc = 1;
    } else {
        progress_done(o->prog);
        struct kiln_quant_options qo = {.weight_max = kiln_cpu_has_int8_dot() ? 127 : 64,
                                        .matmuls = o->matmuls,
                                        .progress = calib_progress,
                                        .progress_user = o->prog};
        struct kiln_quant_stats qs;
        char **keep = NULL;
        double cos = 1;
        int32_t tried = 0;
        kiln_status cs = o->min_cosine > 0
                             ? kiln_int8_choose(m, ranges, &qo, (const kiln_tensor *const *)sets.sets,
                                                sets.n_sets < 4 ? sets.n_sets : 4, o->min_cosine, &keep,
                                                &cos, &tried, &err)
                             : KILN_OK;
        progress_done(o->prog);
        if (cs) {
            fprintf(stderr, "kiln compile: int8: choosing layers: %s\n", err.msg);
            rc = 1;
        } else if (keep) {
            int nk = 0;
            while (keep[nk]) nk++;
            fprintf(stderr,
                    "kiln compile: int8: %d layer%s kept in fp32 for cosine >= %g on %d calibration "
                    "set%s (got %.5f, %d variants tried)%s\n",
                    nk, nk == 1 ? "" : "s", o->min_cosine, sets.n_sets < 4 ? sets.n_sets : 4,
                    sets.n_sets == 1 ? "" : "s", cos, tried, nk ? ":" : "");
            for (int k = 0; k < nk; k++) fprintf(stderr, "  %s\n", keep[k]);
        }
        qo.exclude = (const char *const *)keep;
        if (rc) {
            /* reported above */
        } else if (kiln_quantize_int8(m->onnx.graph, ranges, &qo, &qs, &err)) {
            fprintf(stderr, "kiln compile: int8: %s\n", err.msg);
            rc = 1;
        } else {
            char cal[64];
            if (o->calib.method == KILN_CALIB_PERCENTILE)
                snprintf(cal, sizeof cal, "percentile %g", o->calib.percentile);
            else
                snprintf(cal, sizeof cal, "minmax");
            fprintf(stderr,
                    "kiln compile: int8: %d Conv and %d Gemm/MatMul quantized (%d kept in fp32, %d "
                    "without a calibrated range), %d-bit weights, calibrated on %d input set%s from "
                    "%s (%s)\n",
                    qs.convs, qs.matmuls, qs.excluded, qs.skipped, qo.weight_max == 127 ? 8 : 7, sets.n_sets,
                    sets.n_sets == 1 ? "" : "s", o->dir, cal);
            if (qs.convs + qs.matmuls == 0)
                fprintf(stderr, "kiln compile: warning: nothing to quantize in this model\n");
        }
        kiln_names_free(keep);
    }
    kiln_calib_free(ranges, n_ranges);
    input_sets_free(&sets);
    return rc;
}

int kiln_cmd_compile(int argc, char **argv) {
    const char *in = NULL, *out = NULL, *dump = NULL, *precision = "fp32";
    int report = 0;
    int32_t batches[16];
    int n_batches = 0;
    struct int8_opts q8 = {.calib = {.method = KILN_CALIB_PERCENTILE, .percentile = 99.999},
                           .matmuls = 1,
                           .min_cosine = 0.995,
                           .norm = {.scale = 1.0 / 255.0, .std = {1, 1, 1}}};
    for (int i = 1; i < argc; i++) {
        int64_t iv;
        if (!strcmp(argv[i], "-o") && i + 1 < argc) out = argv[++i];
        else if (!strcmp(argv[i], "--calibrate") && i + 1 < argc) q8.dir = argv[++i];
        else if (!strcmp(argv[i], "--calibrator") && i + 1 < argc) {
            const char *c = argv[++i];
            if (!strcmp(c, "minmax")) q8.calib.method = KILN_CALIB_MINMAX;
            else if (!strcmp(c, "percentile")) q8.calib.method = KILN_CALIB_PERCENTILE;
            else {
                fprintf(stderr, "kiln compile: bad --calibrator '%s' (minmax or percentile)\n", c);
                return 2;
            }
        } else if (!strcmp(argv[i], "--percentile") && i + 1 < argc) {
            if (tf_parse_f64(argv[++i], &q8.calib.percentile) || !(q8.calib.percentile > 50.0) ||
                q8.calib.percentile > 100.0) {
                fprintf(stderr, "kiln compile: bad --percentile '%s' (want 50 < P <= 100)\n", argv[i]);
                return 2;
            }
        } else if (!strcmp(argv[i], "--max") && i + 1 < argc) {
            if (tf_parse_i64(argv[++i], &iv) || iv < 1 || iv > 100000) {
                fprintf(stderr, "kiln compile: bad --max '%s'\n", argv[i]);
                return 2;
            }
            q8.max_sets = (int32_t)iv;
        } else if (!strcmp(argv[i], "--min-cosine") && i + 1 < argc) {
            if (tf_parse_f64(argv[++i], &q8.min_cosine) || q8.min_cosine > 1.0) {
                fprintf(stderr, "kiln compile: bad --min-cosine '%s' (want <= 1; 0 disables)\n", argv[i]);
                return 2;
            }
        } else if (!strcmp(argv[i], "--int8-ops") && i + 1 < argc) {
            const char *c = argv[++i];
            if (!strcmp(c, "conv")) q8.matmuls = 0;
            else if (!strcmp(c, "all")) q8.matmuls = 1;
            else {
                fprintf(stderr, "kiln compile: bad --int8-ops '%s' (conv or all)\n", c);
                return 2;
            }
        } else if ((!strcmp(argv[i], "--mean") || !strcmp(argv[i], "--std")) && i + 1 < argc) {
            bool mean = !strcmp(argv[i], "--mean");
            double *dst = mean ? q8.norm.mean : q8.norm.std;
            if (parse_triplet(argv[++i], dst) || (!mean && (!dst[0] || !dst[1] || !dst[2]))) {
                fprintf(stderr, "kiln compile: bad %s '%s'\n", mean ? "--mean" : "--std", argv[i]);
                return 2;
            }
        } else if (!strcmp(argv[i], "--scale") && i + 1 < argc) {
            if (tf_parse_f64(argv[++i], &q8.norm.scale)) {
                fprintf(stderr, "kiln compile: bad --scale '%s'\n", argv[i]);
                return 2;
            }
        }
        else if (!strcmp(argv[i], "--report")) report = 1;
        else if (!strcmp(argv[i], "--dump-ir") && i + 1 < argc) dump = argv[++i];
        else if (!strcmp(argv[i], "--precision") && i + 1 < argc) precision = argv[++i];
        else if (!strcmp(argv[i], "--batch") && i + 1 < argc) {
            n_batches = parse_batches(argv[++i], batches, 16);
            if (n_batches < 0) {
                fprintf(stderr, "kiln compile: bad --batch list '%s'\n", argv[i]);
                return 2;
            }
        } else if (argv[i][0] == '-') {
            usage();
            return 2;
        } else in = argv[i];
    }
    if (!in || (!out && !dump && !report)) {
        usage();
        return 2;
    }
    if (strcmp(precision, "fp32") && strcmp(precision, "int8") && strcmp(precision, "bf16")) {
        fprintf(stderr, "kiln compile: bad --precision '%s' (fp32, int8 or bf16)\n", precision);
        return 2;
    }
    if (!strcmp(precision, "int8") && !q8.dir) {
        fprintf(stderr, "kiln compile: --precision int8 needs calibration inputs: --calibrate DIR\n");
        return 2;
    }
    if (strcmp(precision, "int8") && q8.dir)
        fprintf(stderr, "kiln compile: note: --calibrate is only used with --precision int8\n");
    if (!strcmp(precision, "bf16") && !kiln_cpu_has_bf16()) {
        char f[256];
        features_brief(f, sizeof f);
        fprintf(stderr, "kiln compile: warning: bf16 not supported on this CPU (%s): compiling fp32\n", f);
        precision = "fp32";
    }
    struct progress prog = {.tty = isatty(2) == 1};
    clock_gettime(CLOCK_MONOTONIC, &prog.t0);
    q8.prog = &prog;
    q8.calib.progress = calib_progress;
    q8.calib.progress_user = &prog;
    const char *after = dump && !strncmp(dump, "after=", 6) ? dump + 6 : dump;
    kiln_load_options lo = kiln_load_options_default();
    lo.no_optimize = 1;
    kiln_error err;
    kiln_model *m;
    progress_line(&prog, "loading %s", in);
    if (kiln_model_load(in, &lo, &m, &err)) {
        progress_done(&prog);
        fprintf(stderr, "kiln compile: %s\n", err.msg);
        return 1;
    }
    struct kiln_graph *g = m->onnx.graph;
    if (after && !strcmp(after, "import")) kiln_graph_dump(g, stdout);
    if (report) printf("%-18s %8s %8s %9s\n", "pass", "before", "after", "rewrites");
    for (const struct kiln_pass *p = kiln_default_passes; p->name; p++) {
        struct kiln_pass_stats st = {.nodes_before = g->n_nodes};
        progress_line(&prog, "pass %s", p->name);
        if (p->run(g, &st, &err)) {
            progress_done(&prog);
            fprintf(stderr, "kiln compile: pass %s: %s\n", p->name, err.msg);
            kiln_model_free(m);
            return 1;
        }
        if (report) {
            progress_done(&prog);
            printf("%-18s %8d %8d %9d\n", p->name, st.nodes_before, g->n_nodes, st.rewrites);
            fflush(stdout);
        }
        if (after && (!strcmp(after, p->name) || !strcmp(after, "all")))
            kiln_graph_dump(g, stdout);
    }
    progress_done(&prog);
    int rc = 0;
    if (!strcmp(precision, "int8")) rc = quantize_int8(m, &q8);
    else if (!strcmp(precision, "bf16")) {
        struct kiln_quant_stats qs;
        if (kiln_convert_bf16(g, &qs, &err)) {
            fprintf(stderr, "kiln compile: bf16: %s\n", err.msg);
            rc = 1;
        } else {
            fprintf(stderr, "kiln compile: bf16: %d Conv and %d Gemm/MatMul with bf16 weights\n",
                    qs.convs, qs.matmuls);
        }
    }
    if (rc) {
        kiln_model_free(m);
        return rc;
    }
    if (strcmp(precision, "fp32")) {
        /* calibration packed the float weights it ran with; the plan stores the
         * packed weights of the rewritten graph only */
        kiln_wcache_free(m->wcache);
        if (!(m->wcache = kiln_wcache_new())) {
            fprintf(stderr, "kiln compile: out of memory\n");
            kiln_model_free(m);
            return 1;
        }
    }
    if (after && (!strcmp(after, "precision") || !strcmp(after, "all")) && strcmp(precision, "fp32"))
        kiln_graph_dump(g, stdout);
    if (report) {
        kiln_model_stats ms;
        kiln_model_stats_get(m, &ms);
        printf("weights: %lld values, %lld bytes\n", (long long)ms.n_params, (long long)ms.param_bytes);
    }
    if (out) {
        struct kiln_save_plan_opts so = {.precision = precision, .progress = plan_progress, .user = &prog};
        kiln_status ss = kiln_model_save_plan_ex(m, out, n_batches ? batches : NULL, n_batches, &so, &err);
        progress_done(&prog);
        if (ss) {
            fprintf(stderr, "kiln compile: %s\n", err.msg);
            rc = 1;
        } else {
            if (report) {
                if (!so.n_planned)
                    printf("stored plans: none (an input has an open dim other than the batch dim, "
                           "or the graph runs dynamically)\n");
                for (int32_t i = 0; i < so.n_planned; i++)
                    printf("batch %d: arena %llu bytes (%.1f MiB), %.3g GFLOPs\n", so.batch[i],
                           (unsigned long long)so.arena_bytes[i], (double)so.arena_bytes[i] / (1 << 20),
                           so.flops[i] / 1e9);
            }
            fprintf(stderr, "kiln compile: wrote %s (%d stored plan%s)\n", out, so.n_planned,
                    so.n_planned == 1 ? "" : "s");
        }
    }
    kiln_model_free(m);
    return rc;
}
