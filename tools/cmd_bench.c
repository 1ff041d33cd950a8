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
 * name looks like a sequence length, then 1 (with a warning).
 *
 * --instances N: data parallelism in one process. N sessions of the one model
 * (sharing its weights and packed-weight cache), each run by its own thread
 * and pinned to its own group of cores (the affinity mask split evenly), time
 * the same loop concurrently. A row then reports throughput over all of them
 * (batch * total runs / wall time) and latency percentiles over every run of
 * every instance. Memory (RSS, PSS from /proc/self/smaps_rollup) is reported
 * before load, after load and after running, with the weight bytes and each
 * session's arena: the target is RSS ~ one copy of the weights + N arenas. */
#define _GNU_SOURCE   /* sched_getaffinity, CPU_* */
#include "cmd.h"
#include "kiln.h"
#include "tensor_file.h"
#include "precision.h"

#include "mem.h"

#include <math.h>
#include <pthread.h>
#include <sched.h>
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
    "  --layout L          convolution activations: auto (default), plain, nhwc, blocked\n"
    "  --instances N       N sessions of the model on N threads, each pinned to its own cores,\n"
    "                      timed concurrently; threads per instance = T/N (or cores/N), at least 1\n"
    "  --price-per-hour USD  machine price: adds the cost per million inferences to each row\n"
    "  --precision fp32|bf16|int8  compile an .onnx at this precision first (as kiln compile;\n"
    "                      bf16 falls back to fp32 without CPU support)\n"
    "  --calibrate DIR     calibration inputs for --precision int8 (as kiln compile)\n";

#define MAX_BATCHES 64
#define MAX_SAMPLES (10 * 1000 * 1000)

struct bench_opts {
    const char *model;
    int64_t batches[MAX_BATCHES];
    int n_batches;
    int threads, warmup, iters, json, reference, profile, layout;
    int threads_given, instances;   /* instances 0: one session on the main thread, unpinned */
    double seconds, price_per_hour;
    int64_t int_lo, int_hi;
    uint64_t seed;
    struct tf_dims dims;
    const char *precision, *calib_dir;   /* compile an .onnx on the fly */
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
                                           "--dim", "--int-range", "--seed", "--instances",
                                           "--price-per-hour", "--precision", "--calibrate"};
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
            o->threads_given = v > 0;
        } else if (!strcmp(key, "--instances")) {
            if (parse_int_opt(key, val, 1, KILN_MAX_PIN_CPUS, &v)) return -1;
            o->instances = (int)v;
        } else if (!strcmp(key, "--price-per-hour")) {
            if (tf_parse_f64(val, &o->price_per_hour) || !(o->price_per_hour > 0) || o->price_per_hour > 1e6) {
                fprintf(stderr, "kiln bench: bad --price-per-hour '%s' (want a price in USD, > 0)\n", val);
                return -1;
            }
        } else if (!strcmp(key, "--precision")) o->precision = val;
        else if (!strcmp(key, "--calibrate")) o->calib_dir = val;
        else if (!strcmp(key, "--warmup")) {
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
            o->layout = tf_parse_layout(argv[++i]);
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

/* Memory at one point of the run. */
struct mem_point {
    struct kiln_mem m;
    int ok;
};
static void mem_take(struct mem_point *p) { p->ok = mem_read(0, &p->m) == 0; }

/* What every row's JSON carries beyond the timings. */
struct bench_mem {
    struct mem_point before, loaded, ran;
    int64_t weights_bytes;
    uint64_t arena_bytes;      /* largest of the instances' arenas */
};

static void json_mb(const char *key, int64_t kb) {
    if (kb < 0) printf(",\"%s\":null", key);
    else printf(",\"%s\":%.3f", key, r3(mem_mb(kb)));
}

static double usd_per_million(const struct bench_opts *o, double thr) {
    return thr > 0 ? o->price_per_hour / 3600.0 / thr * 1e6 : 0;
}

static void print_json(const struct bench_opts *o, const char *label, const struct row *r,
                       double load_ms, int threads, const struct bench_mem *bm) {
    printf("{\"model\":");
    tf_json_str(stdout, label);
    printf(",\"batch\":%lld,\"threads\":%d,\"mean_ms\":%.3f,\"p50_ms\":%.3f,\"p90_ms\":%.3f,"
           "\"p99_ms\":%.3f,\"min_ms\":%.3f,\"max_ms\":%.3f,\"throughput_per_s\":%.3f,"
           "\"iters\":%d,\"warmup\":%d,\"first_run_ms\":%.3f,\"load_ms\":%.3f,\"input_shapes\":%s",
           (long long)r->batch, threads, r3(r->mean), r3(r->p50), r3(r->p90), r3(r->p99), r3(r->min),
           r3(r->max), r3(r->thr), r->iters, o->warmup, r3(r->first_run), r3(load_ms), r->shapes_json);
    printf(",\"instances\":%d", o->instances ? o->instances : 1);
    json_mb("rss_mb", bm->ran.ok ? bm->ran.m.rss_kb : -1);
    json_mb("pss_mb", bm->ran.ok ? bm->ran.m.pss_kb : -1);
    json_mb("anon_mb", bm->ran.ok && bm->ran.m.pss_kb >= 0 ? bm->ran.m.anon_kb : -1);
    json_mb("rss_before_mb", bm->before.ok ? bm->before.m.rss_kb : -1);
    json_mb("rss_loaded_mb", bm->loaded.ok ? bm->loaded.m.rss_kb : -1);
    printf(",\"weights_bytes\":%lld,\"arena_bytes\":%llu", (long long)bm->weights_bytes,
           (unsigned long long)bm->arena_bytes);
    if (o->price_per_hour > 0) printf(",\"usd_per_million\":%.6f", usd_per_million(o, r->thr));
    printf("}\n");
    fflush(stdout);
}

/* ---- instances ---------------------------------------------------------- */

struct bench_shared {
    const struct bench_opts *o;
    const kiln_tensor *ins;
    int32_t n_in, n_out;
    pthread_barrier_t start;   /* instances + the main thread; used when o->instances > 0 */
};

struct instance {
    struct bench_shared *sh;
    kiln_session *s;
    kiln_tensor *outs;
    double *lat;
    int cap, n;
    int threads, n_cpus;
    int32_t first_cpu, last_cpu;
    kiln_status st;
    kiln_error err;
    double first_run;
    pthread_t tid;
};

/* One instance's share of a row: the planning run, warm-up, then (after all
 * instances have warmed up) the timed loop. */
static void *instance_run(void *arg) {
    struct instance *in = arg;
    const struct bench_opts *o = in->sh->o;
    const kiln_tensor *ins = in->sh->ins;
    int32_t n_in = in->sh->n_in, n_out = in->sh->n_out;
    in->n = 0;
    /* the first run plans this shape; it counts as one warm-up run */
    double f0 = tf_now_ms();
    in->st = kiln_session_run(in->s, ins, n_in, in->outs, n_out, &in->err);
    in->first_run = tf_now_ms() - f0;
    for (int w = 1; !in->st && w < o->warmup; w++) in->st = kiln_session_run(in->s, ins, n_in, in->outs, n_out, &in->err);
    if (o->instances) pthread_barrier_wait(&in->sh->start);   /* even after a failure: no one waits forever */
    double start = tf_now_ms();
    while (!in->st) {
        if (o->seconds > 0) {
            if (in->n > 0 && tf_now_ms() - start >= o->seconds * 1000) break;
            if (in->n == MAX_SAMPLES) break;
            if (in->n == in->cap) {
                double *nl = realloc(in->lat, (size_t)in->cap * 2 * sizeof *nl);
                if (!nl) break;   /* keep what we have */
                in->lat = nl;
                in->cap *= 2;
            }
        } else if (in->n == o->iters) break;
        double i0 = tf_now_ms();
        in->st = kiln_session_run(in->s, ins, n_in, in->outs, n_out, &in->err);
        in->lat[in->n++] = tf_now_ms() - i0;
    }
    return NULL;
}

/* The CPUs of the affinity mask, in order; returns how many. */
static int affinity_cpus(int32_t *cpus, int max) {
    cpu_set_t set;
    int n = 0;
    if (sched_getaffinity(0, sizeof set, &set) == 0)
        for (int c = 0; c < CPU_SETSIZE && n < max; c++)
            if (CPU_ISSET(c, &set)) cpus[n++] = c;
    if (!n) cpus[n++] = 0;
    return n;
}

/* Splits the cores evenly: instance i gets cores [i*per, (i+1)*per) of the
 * mask (the remainder stays idle), or one core, round robin, when there are
 * more instances than cores. Threads: T/N when --threads was given, else one
 * per core of the instance; at least 1. */
static void assign_cpus(const struct bench_opts *o, struct instance *inst, kiln_session_options *so, int i) {
    int32_t cpus[CPU_SETSIZE];
    int ncpu = affinity_cpus(cpus, CPU_SETSIZE);
    int n = o->instances;
    int per = ncpu >= n ? ncpu / n : 1;
    int first = ncpu >= n ? i * per : i % ncpu;
    so->n_pin_cpus = per < KILN_MAX_PIN_CPUS ? per : KILN_MAX_PIN_CPUS;
    for (int k = 0; k < so->n_pin_cpus; k++) so->pin_cpus[k] = cpus[first + k];
    inst->n_cpus = so->n_pin_cpus;
    inst->first_cpu = so->pin_cpus[0];
    inst->last_cpu = so->pin_cpus[so->n_pin_cpus - 1];
    int t = o->threads_given ? o->threads / n : per;
    inst->threads = so->n_threads = t > 0 ? t : 1;
}

static void print_memory(const struct bench_mem *bm, int n_inst) {
    printf("memory: weights %.1f MB (param_bytes), arena %.1f MB per instance x %d\n",
           (double)bm->weights_bytes / 1e6, (double)bm->arena_bytes / 1e6, n_inst);
    const struct mem_point *pts[3] = {&bm->before, &bm->loaded, &bm->ran};
    static const char *names[3] = {"before load", "after load", "after running"};
    for (int k = 0; k < 3; k++) {
        if (!pts[k]->ok) {
            printf("  %-14s  rss ?  (no /proc)\n", names[k]);
            continue;
        }
        printf("  %-14s  rss %9.1f MB", names[k], mem_mb(pts[k]->m.rss_kb));
        if (pts[k]->m.pss_kb >= 0)
            printf("   pss %9.1f MB   (anonymous %.1f MB, file-backed %.1f MB)", mem_mb(pts[k]->m.pss_kb),
                   mem_mb(pts[k]->m.anon_kb), mem_mb(pts[k]->m.rss_kb - pts[k]->m.anon_kb));
        printf("\n");
    }
    if (bm->before.ok && bm->ran.ok) {
        double grown = mem_mb(bm->ran.m.rss_kb - bm->before.m.rss_kb);
        double ideal = ((double)bm->weights_bytes + (double)n_inst * (double)bm->arena_bytes) / 1e6;
        printf("  rss grew %.1f MB; one copy of the weights + %d arena%s = %.1f MB\n", grown, n_inst,
               n_inst > 1 ? "s" : "", ideal);
    }
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

    struct bench_mem bm;
    memset(&bm, 0, sizeof bm);
    mem_take(&bm.before);
    kiln_error err;
    kiln_model *m = NULL;
    char path[4096];
    if (tf_precision_check("bench", o.model, o.precision, o.calib_dir)) return 2;
    if (tf_precision_compile("bench", o.model, o.precision, o.calib_dir, NULL, path, sizeof path)) return 1;
    double t0 = tf_now_ms();
    kiln_status lst = kiln_model_load(path, NULL, &m, &err);
    tf_precision_done(o.model, path);
    if (lst) {
        fprintf(stderr, "kiln bench: cannot load model: %s\n", err.msg);
        return 1;
    }
    double t_load = tf_now_ms() - t0;
    mem_take(&bm.loaded);
    kiln_model_stats ms;
    if (kiln_model_stats_get(m, &ms) == KILN_OK) bm.weights_bytes = ms.param_bytes;

    int n_inst = o.instances ? o.instances : 1;
    int32_t n_in = kiln_model_n_inputs(m), n_out = kiln_model_n_outputs(m);
    struct bench_shared sh = {.o = &o, .n_in = n_in, .n_out = n_out};
    struct instance *inst = calloc((size_t)n_inst, sizeof *inst);
    kiln_tensor *ins = calloc((size_t)n_in + 1, sizeof *ins);
    double *all = NULL;   /* every latency of a row, over all instances */
    int failed = 0, header = 0, reported_load = 0, barrier = 0;
    double t_session = 0;
    if (!inst || !ins) {
        fprintf(stderr, "kiln bench: out of memory\n");
        failed = o.n_batches;
        goto done;
    }
    sh.ins = ins;
    t0 = tf_now_ms();
    for (int i = 0; i < n_inst; i++) {
        kiln_session_options so = kiln_session_options_default();
        so.n_threads = o.threads;
        so.reference_kernels = o.reference;
        so.profile = o.profile;
        so.activation_layout = o.layout;
        inst[i].sh = &sh;
        inst[i].threads = o.threads;
        if (o.instances) assign_cpus(&o, &inst[i], &so, i);
        inst[i].cap = o.seconds > 0 ? 1024 : o.iters;
        inst[i].lat = malloc((size_t)inst[i].cap * sizeof *inst[i].lat);
        inst[i].outs = calloc((size_t)n_out + 1, sizeof *inst[i].outs);
        if (!inst[i].lat || !inst[i].outs) {
            fprintf(stderr, "kiln bench: out of memory\n");
            failed = o.n_batches;
            goto done;
        }
        if (kiln_session_create(m, &so, &inst[i].s, &err)) {
            fprintf(stderr, "kiln bench: cannot create a session: %s\n", err.msg);
            failed = o.n_batches;
            goto done;
        }
    }
    t_session = tf_now_ms() - t0;
    if (o.instances) {
        if (pthread_barrier_init(&sh.start, NULL, (unsigned)n_inst + 1)) {
            fprintf(stderr, "kiln bench: cannot set up %d instances\n", n_inst);
            failed = o.n_batches;
            goto done;
        }
        barrier = 1;
    }
    int threads = inst[0].threads;   /* per instance */
    if (!o.json) {
        char what[64];
        if (o.seconds > 0) snprintf(what, sizeof what, "%g s per batch size", o.seconds);
        else snprintf(what, sizeof what, "%d iters", o.iters);
        if (o.instances) {
            printf("kiln bench %s: %d instance%s x %d thread%s, warmup %d, %s; cpu: %s\n", label, n_inst, n_inst > 1 ? "s" : "",
                   threads, threads > 1 ? "s" : "", o.warmup, what, kiln_cpu_features_str());
            for (int i = 0; i < n_inst; i++) {
                char cpus[32];
                if (inst[i].n_cpus > 1) snprintf(cpus, sizeof cpus, "cpus %d-%d", inst[i].first_cpu, inst[i].last_cpu);
                else snprintf(cpus, sizeof cpus, "cpu %d", inst[i].first_cpu);
                printf("  instance %d: %s, %d thread%s\n", i, cpus, inst[i].threads, inst[i].threads > 1 ? "s" : "");
            }
        } else
            printf("kiln bench %s: %d thread%s, warmup %d, %s; cpu: %s\n", label, o.threads,
                   o.threads > 1 ? "s" : "", o.warmup, what, kiln_cpu_features_str());
    }
    if (o.instances && kiln_cpu_count() < n_inst)
        fprintf(stderr, "kiln bench: note: %d instances on %d cores: instances share cores\n", n_inst,
                kiln_cpu_count());

    for (int b = 0; b < o.n_batches; b++) {
        struct row r;
        memset(&r, 0, sizeof r);
        for (int32_t i = 0; i < n_in; i++) tf_free(&ins[i]);
        memset(ins, 0, (size_t)n_in * sizeof *ins);
        if (make_inputs(&o, m, o.batches[b], ins, &r)) {
            failed++;
            continue;
        }
        double wall0 = 0, wall = 0;
        if (!o.instances) instance_run(&inst[0]);
        else {
            int started = 0;
            for (; started < n_inst; started++)
                if (pthread_create(&inst[started].tid, NULL, instance_run, &inst[started])) break;
            if (started < n_inst) {
                /* cannot happen in practice; the barrier would never open */
                fprintf(stderr, "kiln bench: cannot start instance %d\n", started);
                exit(1);
            }
            pthread_barrier_wait(&sh.start);
            wall0 = tf_now_ms();
            for (int i = 0; i < n_inst; i++) pthread_join(inst[i].tid, NULL);
            wall = tf_now_ms() - wall0;
        }
        int bad = 0;
        long total = 0;
        for (int i = 0; i < n_inst; i++) {
            if (inst[i].st) {
                fprintf(stderr, "kiln bench: batch %lld%s: inference failed: %s\n", (long long)o.batches[b],
                        o.instances ? " (an instance)" : "", inst[i].err.msg);
                bad = 1;
                break;
            }
            total += inst[i].n;
        }
        if (bad) {
            failed++;
            continue;
        }
        free(all);
        all = malloc((size_t)total * sizeof *all);
        if (!all) {
            fprintf(stderr, "kiln bench: out of memory\n");
            failed++;
            continue;
        }
        int n = 0;
        double first_run = 0;
        for (int i = 0; i < n_inst; i++) {
            memcpy(all + n, inst[i].lat, (size_t)inst[i].n * sizeof *all);
            n += inst[i].n;
            if (inst[i].first_run > first_run) first_run = inst[i].first_run;
            uint64_t ab = kiln_session_arena_bytes(inst[i].s);
            if (ab > bm.arena_bytes) bm.arena_bytes = ab;
        }
        double sum = 0;
        for (int i = 0; i < n; i++) sum += all[i];
        qsort(all, (size_t)n, sizeof *all, cmp_double);
        r.first_run = first_run;
        r.iters = n;
        r.mean = sum / n;
        r.p50 = pct(all, n, 50);
        r.p90 = pct(all, n, 90);
        r.p99 = pct(all, n, 99);
        r.min = all[0];
        r.max = all[n - 1];
        /* one session: from the mean, as the peer computes it; N: what the
         * machine delivered over the wall time of the concurrent loops */
        r.thr = o.instances ? (wall > 0 ? (double)r.batch * (double)n * 1000.0 / wall : 0)
                            : (double)r.batch * 1000.0 / r.mean;
        mem_take(&bm.ran);
        double load_ms = t_load + t_session + r.first_run;
        if (!reported_load++)   /* once: later rows share the load and session */
            fprintf(stderr, "kiln bench: load %.1f ms = model load %.1f + session%s %.1f + first run at batch %lld %.1f\n",
                    load_ms, t_load, o.instances ? "s" : "", t_session, (long long)r.batch, r.first_run);
        if (o.json) {
            print_json(&o, label, &r, load_ms, threads, &bm);
            continue;
        }
        if (!header++) {
            printf("%6s %9s %9s %9s %9s %9s %9s %11s %7s", "batch", "mean_ms", "p50_ms", "p90_ms", "p99_ms",
                   "min_ms", "max_ms", "inf/s", "iters");
            if (o.price_per_hour > 0) printf(" %10s", "usd/M");
            printf("  inputs\n");
        }
        printf("%6lld %9.3f %9.3f %9.3f %9.3f %9.3f %9.3f %11.1f %7d", (long long)r.batch, r.mean, r.p50,
               r.p90, r.p99, r.min, r.max, r.thr, r.iters);
        if (o.price_per_hour > 0) printf(" %10.4f", usd_per_million(&o, r.thr));
        printf("  %s\n", r.shapes);
        fflush(stdout);
        if (o.profile) print_profile(inst[0].s);
    }
    if (!o.json && bm.ran.ok) print_memory(&bm, n_inst);
done:
    for (int32_t i = 0; ins && i < n_in; i++) tf_free(&ins[i]);
    free(ins);
    free(all);
    for (int i = 0; inst && i < n_inst; i++) {
        free(inst[i].outs);
        free(inst[i].lat);
        kiln_session_free(inst[i].s);
    }
    free(inst);
    if (barrier) pthread_barrier_destroy(&sh.start);
    kiln_model_free(m);
    return failed ? 1 : 0;
}
