/* cmd_bench.c — `kiln bench MODEL`: offline latency and throughput.
 *
 * One session with T threads runs seeded random inputs of the declared shapes,
 * once per batch size: max(W,1) warm-up runs (the first one timed as the
 * first-run/planning cost), then N timed runs (or as many as fit in S
 * seconds). Reported per batch size: mean, p50, p90, p99, min, max latency
 * (ms) and inferences/s = batch * 1000 / mean.
 *
 * Shapes and statistics follow ../shared/peers/ort_bench.js so that the two
 * compare directly: nearest-rank percentiles (sorted[ceil(p/100*n)-1]), dim 0
 * of an input takes the batch size when it is symbolic, `--dim SYM=V` wins,
 * then the shape of test_data_set_0 beside the model, then 128 for dims whose
 * name looks like a sequence length, then 1 (with a warning). */
#include "cmd.h"
#include "kiln.h"
#include "tensor_file.h"

#include <math.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

static const char USAGE[] =
    "usage: kiln bench MODEL [options]\n"
    "  --batch B1,B2,...   batch sizes, one result row each (default 1)\n"
    "  --threads T         intra-op threads (default: all cores of the affinity mask)\n"
    "  --warmup W          untimed runs per batch size before timing (default 10)\n"
    "  --iters N           timed runs per batch size (default 100)\n"
    "  --seconds S         instead of --iters: time runs for S seconds per batch size\n"
    "  --dim NAME=VALUE    value of a symbolic dim (NAME or INPUT:INDEX)\n"
    "  --int-range LO,HI   integer inputs uniform in [LO,HI) (default 0,100)\n"
    "  --seed S            input generator seed (default 1)\n"
    "  --json              one JSON object per line per batch size\n"
    "  --reference         portable reference kernels only\n"
    "  --profile           after each batch size, print time per op type and the slowest steps\n"
    "  --layout L          convolution activations: auto (default), plain, nhwc, blocked\n";

#define MAX_BATCHES 64
#define MAX_SAMPLES (10 * 1000 * 1000)

struct bench_opts {
    const char *model;
    int64_t batches[MAX_BATCHES];
    int n_batches;
    int threads, warmup, iters, json, reference, profile, layout;
    double seconds;
    int64_t int_lo, int_hi;
    uint64_t seed;
    struct tf_dims dims;
};

static int cmp_prof(const void *a, const void *b) {
    double x = ((const kiln_profile_entry *)a)->total_ms, y = ((const kiln_profile_entry *)b)->total_ms;
    return x < y ? 1 : x > y ? -1 : 0;
}

/* Time per op type and implementation, then the ten slowest steps (per run). */
static void print_profile(const kiln_session *s) {
    int32_t n = kiln_session_profile(s, NULL, 0);
    kiln_profile_entry *e = calloc((size_t)n + 1, sizeof *e);
    if (!e) return;
    kiln_session_profile(s, e, n);
    double total = 0;
    for (int32_t i = 0; i < n; i++) total += e[i].total_ms;
    int64_t calls = n && e[0].calls ? e[0].calls : 1;
    printf("profile: %d steps, %.3f ms per run in steps\n", n, total / (double)calls);
    kiln_profile_entry *byop = calloc((size_t)n + 1, sizeof *byop);
    int32_t nb = 0;
    for (int32_t i = 0; byop && i < n; i++) {
        int32_t j;
        for (j = 0; j < nb; j++)
            if (!strcmp(byop[j].op_type, e[i].op_type) && !strcmp(byop[j].impl, e[i].impl)) break;
        if (j == nb) byop[nb++] = (kiln_profile_entry){NULL, e[i].op_type, e[i].impl, 0, 0};
        byop[j].total_ms += e[i].total_ms;
        byop[j].calls++;
    }
    if (byop) {
        qsort(byop, (size_t)nb, sizeof *byop, cmp_prof);
        printf("  %-20s %-28s %6s %10s %6s\n", "op", "impl", "steps", "ms/run", "%");
        for (int32_t j = 0; j < nb; j++)
            printf("  %-20s %-28s %6lld %10.3f %6.1f\n", byop[j].op_type, byop[j].impl, (long long)byop[j].calls,
                   byop[j].total_ms / (double)calls, total > 0 ? 100 * byop[j].total_ms / total : 0);
    }
    qsort(e, (size_t)n, sizeof *e, cmp_prof);
    printf("  slowest steps:\n");
    for (int32_t i = 0; i < n && i < 10; i++)
        printf("  %-48s %-18s %-28s %8.3f ms\n", e[i].node, e[i].op_type, e[i].impl, e[i].total_ms / (double)calls);
    free(byop);
    free(e);
}

static int parse_int_opt(const char *opt, const char *val, int64_t lo, int64_t hi, int64_t *out) {
    if (tf_parse_i64(val, out) || *out < lo || *out > hi) {
        fprintf(stderr, "kiln bench: bad %s '%s' (want an integer in %lld..%lld)\n", opt, val,
                (long long)lo, (long long)hi);
        return -1;
    }
    return 0;
}

static int parse_args(int argc, char **argv, struct bench_opts *o) {
    for (int i = 1; i < argc; i++) {
        const char *a = argv[i], *val = NULL;
        char key[32] = "";
        if (!strncmp(a, "--", 2)) {
            const char *eq = strchr(a, '=');
            if (eq && (size_t)(eq - a) < sizeof key) {
                snprintf(key, sizeof key, "%.*s", (int)(eq - a), a);
                val = eq + 1;
            } else snprintf(key, sizeof key, "%s", a);
        }
        static const char *with_value[] = {"--batch", "--threads", "--warmup", "--iters", "--seconds",
                                           "--dim", "--int-range", "--seed"};
        int needs = 0;
        for (size_t k = 0; k < sizeof with_value / sizeof *with_value; k++) needs |= !strcmp(key, with_value[k]);
        if (needs && !val) {
            if (i + 1 >= argc) {
                fprintf(stderr, "kiln bench: %s needs a value\n", key);
                return -1;
            }
            val = argv[++i];
        }
        int64_t v;
        if (!strcmp(a, "-h") || !strcmp(a, "--help")) {
            fputs(USAGE, stdout);
            exit(0);
        } else if (!strcmp(key, "--batch")) {
            int n = tf_parse_i64_list(val, o->batches, MAX_BATCHES);
            if (n <= 0) {
                fprintf(stderr, "kiln bench: bad --batch '%s' (want a list like 1,2,4,8)\n", val);
                return -1;
            }
            for (int k = 0; k < n; k++)
                if (o->batches[k] < 1 || o->batches[k] > 1000000) {
                    fprintf(stderr, "kiln bench: batch size %lld is outside 1..1000000\n", (long long)o->batches[k]);
                    return -1;
                }
            o->n_batches = n;
        } else if (!strcmp(key, "--threads")) {   /* 0: all cores, as the default */
            if (parse_int_opt(key, val, 0, 4096, &v)) return -1;
            o->threads = (int)v;
        } else if (!strcmp(key, "--warmup")) {
            if (parse_int_opt(key, val, 0, 1000000, &v)) return -1;
            o->warmup = (int)v;
        } else if (!strcmp(key, "--iters")) {
            if (parse_int_opt(key, val, 1, MAX_SAMPLES, &v)) return -1;
            o->iters = (int)v;
        } else if (!strcmp(key, "--seconds")) {
            if (tf_parse_f64(val, &o->seconds) || o->seconds <= 0 || o->seconds > 86400) {
                fprintf(stderr, "kiln bench: bad --seconds '%s' (want a number in (0, 86400])\n", val);
                return -1;
            }
        } else if (!strcmp(key, "--dim")) {
            if (tf_dims_add(&o->dims, val, "kiln bench")) return -1;
        } else if (!strcmp(key, "--int-range")) {
            int64_t r[2];
            if (tf_parse_i64_list(val, r, 2) != 2 || r[1] <= r[0]) {
                fprintf(stderr, "kiln bench: bad --int-range '%s' (want LO,HI with LO < HI)\n", val);
                return -1;
            }
            o->int_lo = r[0], o->int_hi = r[1];
        } else if (!strcmp(key, "--seed")) {
            if (parse_int_opt(key, val, 0, INT64_MAX, &v)) return -1;
            o->seed = (uint64_t)v;
        } else if (!strcmp(a, "--json")) o->json = 1;
        else if (!strcmp(a, "--profile")) o->profile = 1;
        else if (!strcmp(a, "--layout") && i + 1 < argc) {
            const char *l = argv[++i];
            o->layout = !strcmp(l, "auto") ? 0 : !strcmp(l, "plain") ? 1 : !strcmp(l, "nhwc") ? 2
                      : !strcmp(l, "blocked") ? 3 : -1;
            if (o->layout < 0) {
                fprintf(stderr, "kiln bench: --layout takes auto, plain, nhwc or blocked\n");
                return -1;
            }
        }
        else if (!strcmp(a, "--reference")) o->reference = 1;
        else if (a[0] == '-' && a[1]) {
            fprintf(stderr, "kiln bench: unknown option '%s'\n", a);
            return -1;
        } else if (!o->model) o->model = a;
        else {
            fprintf(stderr, "kiln bench: unexpected argument '%s'\n", a);
            return -1;
        }
    }
    if (!o->model) {
        fprintf(stderr, "kiln bench: no model given\n");
        return -1;
    }
    return 0;
}

static int cmp_double(const void *a, const void *b) {
    double x = *(const double *)a, y = *(const double *)b;
    return (x > y) - (x < y);
}

/* Nearest-rank percentile, exactly as ort_bench.js's pct(). */
static double pct(const double *sorted, int n, double p) {
    int i = (int)ceil(p / 100.0 * n) - 1;
    if (i < 0) i = 0;
    if (i > n - 1) i = n - 1;
    return sorted[i];
}

/* JS Math.round(x * 1000) / 1000, so printed numbers match the peer's. */
static double r3(double x) { return floor(x * 1000 + 0.5) / 1000; }

struct row {
    int64_t batch;
    int iters;
    double mean, p50, p90, p99, min, max, thr, first_run;
    char shapes[1024];       /* "input [1,3,224,224]" for the table */
    char shapes_json[1024];  /* {"input":[1,3,224,224]} */
};

/* Builds the inputs of one batch size; returns 0, or -1 after a message. */
static int make_inputs(const struct bench_opts *o, const kiln_model *m, int64_t batch,
                       kiln_tensor *ins, struct row *r) {
    int32_t n_in = kiln_model_n_inputs(m);
    struct tf_resolve res = {.dims = &o->dims, .batch = batch, .case_model = o->model, .seq_heuristic = 1};
    uint64_t rng = o->seed;
    size_t off = 0, offj = (size_t)snprintf(r->shapes_json, sizeof r->shapes_json, "{");
    int batch_applies = 0;
    int64_t fixed0 = -1;
    for (int32_t i = 0; i < n_in; i++) {
        kiln_tensor_info ti;
        kiln_model_input(m, i, &ti);
        if (ti.rank < 0) {
            fprintf(stderr, "kiln bench: input '%s' declares no shape; kiln bench cannot make it up\n", ti.name);
            return -1;
        }
        if (!tf_dtype_numeric(ti.dtype)) {
            fprintf(stderr, "kiln bench: input '%s' is %s; only numeric inputs can be generated\n", ti.name,
                    kiln_dtype_name(ti.dtype));
            return -1;
        }
        int64_t dims[KILN_MAX_RANK];
        int defaulted = 0;
        tf_resolve_shape(&ti, i, &res, dims, &defaulted);
        if (ti.rank > 0 && ti.dims[0] < 0) batch_applies = 1;
        else if (ti.rank > 0 && fixed0 < 0) fixed0 = ti.dims[0];
        for (int32_t d = 0; d < ti.rank; d++)
            if (ti.dims[d] < 0) {
                tf_resolve_bind(&res, ti.dim_names[d], dims[d]);
                if (defaulted && d > 0)
                    fprintf(stderr, "kiln bench: note: input '%s' dim %d (%s) set to %lld; choose it with --dim %s=VALUE\n",
                            ti.name, d, ti.dim_names[d] ? ti.dim_names[d] : "?", (long long)dims[d],
                            ti.dim_names[d] ? ti.dim_names[d] : ti.name);
            }
        kiln_error err;
        if (tf_alloc(&ins[i], ti.dtype, ti.rank, dims, &err)) {
            fprintf(stderr, "kiln bench: input '%s' at batch %lld: %s\n", ti.name, (long long)batch, err.msg);
            return -1;
        }
        ins[i].name = ti.name;
        tf_fill_random(&ins[i], &rng, 0.0, 1.0, o->int_lo, o->int_hi);
        char s[256];
        tf_shape_str(ti.rank, dims, NULL, s, sizeof s);
        if (off < sizeof r->shapes)
            off += (size_t)snprintf(r->shapes + off, sizeof r->shapes - off, "%s%s %s", i ? ", " : "", ti.name, s);
        if (offj < sizeof r->shapes_json) {
            /* JSON-escape the name into a bounded scratch string via a memstream */
            char *js = NULL;
            size_t jl = 0;
            FILE *f = open_memstream(&js, &jl);
            if (f) {
                tf_json_str(f, ti.name);
                fputc(':', f);
                fputc('[', f);
                for (int32_t d = 0; d < ti.rank; d++) fprintf(f, "%s%lld", d ? "," : "", (long long)dims[d]);
                fputc(']', f);
                fclose(f);
                offj += (size_t)snprintf(r->shapes_json + offj, sizeof r->shapes_json - offj, "%s%s",
                                         i ? "," : "", js ? js : "");
                free(js);
            }
        }
    }
    if (offj < sizeof r->shapes_json) snprintf(r->shapes_json + offj, sizeof r->shapes_json - offj, "}");
    if (!batch_applies && n_in > 0 && batch != fixed0 && !(fixed0 < 0 && batch == 1)) {
        fprintf(stderr, "kiln bench: batch %lld does not apply: the inputs have a fixed dim 0 (%lld)\n",
                (long long)batch, (long long)fixed0);
        return -1;
    }
    /* the batch reported is dim 0 of the first input, as the peer reports it */
    r->batch = n_in > 0 && ins[0].rank > 0 ? ins[0].dims[0] : batch;
    return 0;
}

static void print_json(const struct bench_opts *o, const char *label, const struct row *r,
                       double load_ms) {
    printf("{\"model\":");
    tf_json_str(stdout, label);
    printf(",\"batch\":%lld,\"threads\":%d,\"mean_ms\":%.3f,\"p50_ms\":%.3f,\"p90_ms\":%.3f,"
           "\"p99_ms\":%.3f,\"min_ms\":%.3f,\"max_ms\":%.3f,\"throughput_per_s\":%.3f,"
           "\"iters\":%d,\"warmup\":%d,\"first_run_ms\":%.3f,\"load_ms\":%.3f,\"input_shapes\":%s}\n",
           (long long)r->batch, o->threads, r3(r->mean), r3(r->p50), r3(r->p90), r3(r->p99), r3(r->min),
           r3(r->max), r3(r->thr), r->iters, o->warmup, r3(r->first_run), r3(load_ms), r->shapes_json);
    fflush(stdout);
}

int kiln_cmd_bench(int argc, char **argv) {
    static struct bench_opts o;   /* large (dims table): static, one bench per process */
    memset(&o, 0, sizeof o);
    o.warmup = 10;
    o.iters = 100;
    o.int_lo = 0, o.int_hi = 100;
    o.seed = 1;
    if (parse_args(argc, argv, &o)) {
        fprintf(stderr, "see 'kiln bench --help'\n");
        return 2;
    }
    if (!o.n_batches) o.batches[0] = 1, o.n_batches = 1;
    if (!o.threads) o.threads = kiln_cpu_count() > 0 ? kiln_cpu_count() : 1;
    char label[256];
    tf_model_label(o.model, label, sizeof label);

    kiln_error err;
    kiln_model *m = NULL;
    double t0 = tf_now_ms();
    if (kiln_model_load(o.model, NULL, &m, &err)) {
        fprintf(stderr, "kiln bench: cannot load model: %s\n", err.msg);
        return 1;
    }
    double t_load = tf_now_ms() - t0;
    kiln_session_options so = kiln_session_options_default();
    so.n_threads = o.threads;
    so.reference_kernels = o.reference;
    so.profile = o.profile;
    so.activation_layout = o.layout;
    kiln_session *s = NULL;
    t0 = tf_now_ms();
    if (kiln_session_create(m, &so, &s, &err)) {
        fprintf(stderr, "kiln bench: cannot create a session: %s\n", err.msg);
        kiln_model_free(m);
        return 1;
    }
    double t_session = tf_now_ms() - t0;

    int32_t n_in = kiln_model_n_inputs(m), n_out = kiln_model_n_outputs(m);
    kiln_tensor *ins = calloc((size_t)n_in + 1, sizeof *ins);
    kiln_tensor *outs = calloc((size_t)n_out + 1, sizeof *outs);
    int cap = o.seconds > 0 ? 1024 : o.iters;
    double *lat = malloc((size_t)cap * sizeof *lat);
    int failed = 0, header = 0, reported_load = 0;
    if (!ins || !outs || !lat) {
        fprintf(stderr, "kiln bench: out of memory\n");
        failed = o.n_batches;
        goto done;
    }
    if (!o.json) {
        char what[64];
        if (o.seconds > 0) snprintf(what, sizeof what, "%g s per batch size", o.seconds);
        else snprintf(what, sizeof what, "%d iters", o.iters);
        printf("kiln bench %s: %d thread%s, warmup %d, %s; cpu: %s\n", label, o.threads,
               o.threads > 1 ? "s" : "", o.warmup, what, kiln_cpu_features_str());
    }

    for (int b = 0; b < o.n_batches; b++) {
        struct row r;
        memset(&r, 0, sizeof r);
        for (int32_t i = 0; i < n_in; i++) tf_free(&ins[i]);
        memset(ins, 0, (size_t)n_in * sizeof *ins);
        if (make_inputs(&o, m, o.batches[b], ins, &r)) {
            failed++;
            continue;
        }
        /* the first run plans this shape; it counts as one warm-up run */
        double f0 = tf_now_ms();
        kiln_status st = kiln_session_run(s, ins, n_in, outs, n_out, &err);
        r.first_run = tf_now_ms() - f0;
        for (int w = 1; !st && w < o.warmup; w++) st = kiln_session_run(s, ins, n_in, outs, n_out, &err);
        int n = 0;
        double start = tf_now_ms();
        while (!st) {
            if (o.seconds > 0) {
                if (n > 0 && tf_now_ms() - start >= o.seconds * 1000) break;
                if (n == MAX_SAMPLES) break;
                if (n == cap) {
                    double *nl = realloc(lat, (size_t)cap * 2 * sizeof *nl);
                    if (!nl) break;   /* keep what we have */
                    lat = nl;
                    cap *= 2;
                }
            } else if (n == o.iters) break;
            double i0 = tf_now_ms();
            st = kiln_session_run(s, ins, n_in, outs, n_out, &err);
            lat[n++] = tf_now_ms() - i0;
        }
        if (st) {
            fprintf(stderr, "kiln bench: batch %lld: inference failed: %s\n", (long long)o.batches[b], err.msg);
            failed++;
            continue;
        }
        double sum = 0;
        for (int i = 0; i < n; i++) sum += lat[i];
        qsort(lat, (size_t)n, sizeof *lat, cmp_double);
        r.iters = n;
        r.mean = sum / n;
        r.p50 = pct(lat, n, 50);
        r.p90 = pct(lat, n, 90);
        r.p99 = pct(lat, n, 99);
        r.min = lat[0];
        r.max = lat[n - 1];
        r.thr = (double)r.batch * 1000.0 / r.mean;
        double load_ms = t_load + t_session + r.first_run;
        if (!reported_load++)   /* once: later rows share the load and session */
            fprintf(stderr, "kiln bench: load %.1f ms = model load %.1f + session %.1f + first run at batch %lld %.1f\n",
                    load_ms, t_load, t_session, (long long)r.batch, r.first_run);
        if (o.json) {
            print_json(&o, label, &r, load_ms);
            continue;
        }
        if (!header++)
            printf("%6s %9s %9s %9s %9s %9s %9s %11s %7s  %s\n", "batch", "mean_ms", "p50_ms", "p90_ms", "p99_ms",
                   "min_ms", "max_ms", "inf/s", "iters", "inputs");
        printf("%6lld %9.3f %9.3f %9.3f %9.3f %9.3f %9.3f %11.1f %7d  %s\n", (long long)r.batch, r.mean, r.p50,
               r.p90, r.p99, r.min, r.max, r.thr, r.iters, r.shapes);
        fflush(stdout);
        if (o.profile) print_profile(s);
    }
done:
    for (int32_t i = 0; ins && i < n_in; i++) tf_free(&ins[i]);
    free(ins);
    free(outs);
    free(lat);
    kiln_session_free(s);
    kiln_model_free(m);
    return failed ? 1 : 0;
}
