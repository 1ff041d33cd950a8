/*
 * cmd_perf.c — `kiln perf`: load generator for a KServe v2 server (kiln's or
 * any other), on libcurl's multi interface in one thread.
 *
 * Closed loop (--concurrency 1,2,4): N requests always in flight, each
 * re-sent as soon as it returns. Open loop (--rate R): requests start at
 * scheduled times (constant or Poisson gaps) whether or not earlier ones
 * returned, and latency counts from the scheduled time, so a slow server
 * cannot hide its queueing by slowing the client down (coordinated omission).
 *
 * Per level: throughput, p50/p90/p95/p99 latency, errors, and the server's
 * own view (average batch, queue and compute time) from its statistics API;
 * then every HTTP status with its own latencies (a quick 503 and a slow 200
 * must not blur), transport failures by kind (refused apart: after a
 * server's shutdown it means "never accepted"), and, after SIGUSR1, the
 * responses completed after that mark. --json appends the same per level.
 */
#define _GNU_SOURCE
#include "cmd.h"

#include <curl/curl.h>
#include <json-c/json.h>
#include <math.h>
#include <stdarg.h>
#include <stdbool.h>
#include <stdint.h>
#include <stdio.h>
#include <stdlib.h>
#include <signal.h>
#include <string.h>
#include <sys/resource.h>
#include <time.h>

#define MAX_INFLIGHT 1024

struct buf {
    char  *p;
    size_t len;
};

static size_t keep(char *p, size_t sz, size_t n, void *u) {
    struct buf *b = u;
    char *q = realloc(b->p, b->len + sz * n + 1);
    if (!q) return 0;
    b->p = q;
    memcpy(b->p + b->len, p, sz * n);
    b->len += sz * n;
    b->p[b->len] = '\0';
    return sz * n;
}

static size_t discard(char *p, size_t sz, size_t n, void *u) {
    (void)p;
    (void)u;
    return sz * n;
}

static double now_s(void) {
    struct timespec ts;
    clock_gettime(CLOCK_MONOTONIC, &ts);
    return (double)ts.tv_sec + ts.tv_nsec / 1e9;
}

static long http_get(const char *url, struct buf *out) {
    CURL *h = curl_easy_init();
    if (!h) return -1;
    curl_easy_setopt(h, CURLOPT_URL, url);
    curl_easy_setopt(h, CURLOPT_WRITEFUNCTION, keep);
    curl_easy_setopt(h, CURLOPT_WRITEDATA, out);
    curl_easy_setopt(h, CURLOPT_TIMEOUT, 10L);
    long code = -1;
    if (curl_easy_perform(h) == CURLE_OK) curl_easy_getinfo(h, CURLINFO_RESPONSE_CODE, &code);
    curl_easy_cleanup(h);
    return code;
}

/* ---- request body ------------------------------------------------------------ */

static size_t dt_size(const char *dt) {
    if (!strcmp(dt, "BOOL") || !strcmp(dt, "UINT8") || !strcmp(dt, "INT8")) return 1;
    if (!strcmp(dt, "UINT16") || !strcmp(dt, "INT16") || !strcmp(dt, "FP16") || !strcmp(dt, "BF16")) return 2;
    if (!strcmp(dt, "UINT32") || !strcmp(dt, "INT32") || !strcmp(dt, "FP32")) return 4;
    if (!strcmp(dt, "UINT64") || !strcmp(dt, "INT64") || !strcmp(dt, "FP64")) return 8;
    return 0;
}

static void append(struct buf *b, const void *p, size_t n) { keep((char *)p, 1, n, b); }

static void appendf(struct buf *b, const char *fmt, ...) __attribute__((format(printf, 2, 3)));
static void appendf(struct buf *b, const char *fmt, ...) {
    char tmp[512];
    va_list ap;
    va_start(ap, fmt);
    int n = vsnprintf(tmp, sizeof tmp, fmt, ap);
    va_end(ap);
    if (n > 0) append(b, tmp, (size_t)n < sizeof tmp ? (size_t)n : sizeof tmp - 1);
}

/* Builds one request with small pseudo-random values for every input; the
 * binary form puts the raw bytes after the JSON header. */
static int build_body(const char *meta, int batch, bool binary, struct buf *body, size_t *header_len,
                      char *err, size_t err_size) {
    json_object *root = json_tokener_parse(meta), *inputs = NULL;
    if (!root || !json_object_object_get_ex(root, "inputs", &inputs) ||
        !json_object_is_type(inputs, json_type_array)) {
        snprintf(err, err_size, "model metadata has no inputs: %.200s", meta);
        json_object_put(root);
        return 1;
    }
    struct buf bin = {0};
    appendf(body, "{\"inputs\":[");
    size_t n = json_object_array_length(inputs);
    uint32_t seed = 12345;
    for (size_t i = 0; i < n; i++) {
        json_object *in = json_object_array_get_idx(inputs, i), *jn, *jt, *js;
        if (!json_object_object_get_ex(in, "name", &jn) || !json_object_object_get_ex(in, "datatype", &jt) ||
            !json_object_object_get_ex(in, "shape", &js)) {
            snprintf(err, err_size, "input %zu: metadata lacks name, datatype or shape", i);
            json_object_put(root);
            return 1;
        }
        const char *dt = json_object_get_string(jt);
        size_t es = dt_size(dt);
        if (!es) {
            snprintf(err, err_size, "input '%s': datatype %s is not generated", json_object_get_string(jn), dt);
            json_object_put(root);
            return 1;
        }
        appendf(body, "%s{\"name\":\"%s\",\"datatype\":\"%s\",\"shape\":[", i ? "," : "", json_object_get_string(jn), dt);
        uint64_t elems = 1;
        size_t rank = json_object_array_length(js);
        for (size_t d = 0; d < rank; d++) {
            int64_t v = json_object_get_int64(json_object_array_get_idx(js, d));
            if (v < 0) v = d == 0 ? batch : 1;   /* free dims: batch first, 1 elsewhere */
            elems *= (uint64_t)v;
            appendf(body, "%s%lld", d ? "," : "", (long long)v);
        }
        if (elems > (1u << 24)) {
            snprintf(err, err_size, "input '%s': %llu elements is too large for a load test", json_object_get_string(jn),
                     (unsigned long long)elems);
            json_object_put(root);
            return 1;
        }
        if (binary) {
            appendf(body, "],\"parameters\":{\"binary_data_size\":%llu}}", (unsigned long long)(elems * es));
            for (uint64_t k = 0; k < elems; k++) {
                seed = seed * 1664525u + 1013904223u;
                uint8_t v[8] = {0};
                if (!strcmp(dt, "FP32")) { float x = (float)(seed >> 8) / 16777216.0f; memcpy(v, &x, 4); }
                else if (!strcmp(dt, "FP64")) { double x = (double)(seed >> 8) / 16777216.0; memcpy(v, &x, 8); }
                else if (!strcmp(dt, "FP16")) { v[1] = 0x38; }                        /* 0.5 */
                else if (!strcmp(dt, "BF16")) { v[1] = 0x3f; }                        /* 0.5 */
                else if (!strcmp(dt, "BOOL")) v[0] = (uint8_t)(seed >> 31);
                else v[0] = (uint8_t)((seed >> 16) & 0x3f);
                append(&bin, v, es);
            }
        } else {
            appendf(body, "],\"data\":[");
            for (uint64_t k = 0; k < elems; k++) {
                seed = seed * 1664525u + 1013904223u;
                if (!strncmp(dt, "FP", 2) || !strcmp(dt, "BF16")) appendf(body, "%s%.4f", k ? "," : "", (seed >> 8) / 16777216.0);
                else if (!strcmp(dt, "BOOL")) appendf(body, "%s%s", k ? "," : "", (seed >> 31) ? "true" : "false");
                else appendf(body, "%s%u", k ? "," : "", (seed >> 16) & 0x3f);
            }
            appendf(body, "]}");
        }
    }
    appendf(body, "]%s}", binary ? ",\"parameters\":{\"binary_data_output\":true}" : "");
    *header_len = body->len;
    if (bin.len) append(body, bin.p, bin.len);
    free(bin.p);
    json_object_put(root);
    return 0;
}

/* ---- load loop ------------------------------------------------------------------ */

struct slot {
    CURL  *h;
    double t0;        /* scheduled (open loop) or sent (closed loop) time */
    bool   busy;
};

struct lat {          /* latencies (s) of one outcome */
    double *v;
    long    n, cap;
};

/* Outcomes of the requests of one phase: HTTP status codes with their
 * latencies, and transport failures by kind. A refused connection was never
 * accepted (no listener: the server has closed its socket); a reset or empty
 * reply on a fresh connection may be a connection the kernel had queued when
 * the listener closed; both are told apart from HTTP errors. */
#define MAX_CODES 16
struct outcomes {
    long        code[MAX_CODES];
    struct lat  by_code[MAX_CODES];
    int         n_codes;
    long        refused, reset, timeout, other;
    char        first_other[256];
};

struct level_result {
    double  seconds;
    long    ok, errors, sent;
    long    late;      /* open loop: arrivals that found MAX_INFLIGHT in flight */
    long    connects;  /* new connections the client opened */
    char    first_error[256];
    struct outcomes all, after;   /* after: responses completed after the mark */
    struct lat lag;               /* open loop: send time minus scheduled time */
    double  mark;                 /* seconds from the level start; < 0: no mark */
};

/* SIGUSR1 marks a moment (e.g. when a script sends the server SIGTERM):
 * responses completed after it are also counted apart. */
static volatile sig_atomic_t mark_pending;
static void on_mark(int sig) {
    (void)sig;
    mark_pending = 1;
}

static void lat_add(struct lat *l, double v) {
    if (l->n == l->cap) {
        long cap = l->cap ? l->cap * 2 : 1024;
        double *p = realloc(l->v, sizeof(double) * (size_t)cap);
        if (!p) return;
        l->v = p;
        l->cap = cap;
    }
    l->v[l->n++] = v;
}

static int cmp_d(const void *a, const void *b) {
    double x = *(const double *)a, y = *(const double *)b;
    return x < y ? -1 : x > y;
}

/* nearest rank of sorted latencies */
static double lat_pct(const struct lat *l, double p) {
    if (!l || !l->n) return NAN;
    long i = (long)ceil(p / 100.0 * (double)l->n) - 1;
    if (i < 0) i = 0;
    if (i >= l->n) i = l->n - 1;
    return l->v[i];
}

static struct lat *code_lat(struct outcomes *o, long code) {
    for (int i = 0; i < o->n_codes; i++)
        if (o->code[i] == code) return &o->by_code[i];
    if (o->n_codes == MAX_CODES) return NULL;
    o->code[o->n_codes] = code;
    return &o->by_code[o->n_codes++];
}

static long code_count(const struct outcomes *o, long code) {
    for (int i = 0; i < o->n_codes; i++)
        if (o->code[i] == code) return o->by_code[i].n;
    return 0;
}

static const struct lat *code_lats(const struct outcomes *o, long code) {
    for (int i = 0; i < o->n_codes; i++)
        if (o->code[i] == code) return &o->by_code[i];
    return NULL;
}

static void outcome_add(struct outcomes *o, CURLcode res, long code, double lat) {
    if (res == CURLE_OK && code > 0) {
        struct lat *l = code_lat(o, code);
        if (l) lat_add(l, lat);
        else o->other++;
        return;
    }
    if (res == CURLE_COULDNT_CONNECT) o->refused++;
    else if (res == CURLE_GOT_NOTHING || res == CURLE_RECV_ERROR || res == CURLE_SEND_ERROR) o->reset++;
    else if (res == CURLE_OPERATION_TIMEDOUT) o->timeout++;
    else {
        o->other++;
        if (!o->first_other[0])
            snprintf(o->first_other, sizeof o->first_other, "%s (HTTP %ld)", curl_easy_strerror(res), code);
    }
}

static void outcomes_sort(struct outcomes *o) {
    /* codes ascending, each code's latencies ascending */
    for (int i = 0; i < o->n_codes; i++)
        for (int j = i + 1; j < o->n_codes; j++)
            if (o->code[j] < o->code[i]) {
                long c = o->code[i]; o->code[i] = o->code[j]; o->code[j] = c;
                struct lat t = o->by_code[i]; o->by_code[i] = o->by_code[j]; o->by_code[j] = t;
            }
    for (int i = 0; i < o->n_codes; i++)   /* qsort wants a non-NULL base even for 0 items */
        if (o->by_code[i].n > 1) qsort(o->by_code[i].v, (size_t)o->by_code[i].n, sizeof(double), cmp_d);
}

static void outcomes_free(struct outcomes *o) {
    for (int i = 0; i < o->n_codes; i++) free(o->by_code[i].v);
    memset(o, 0, sizeof *o);
}

static void result_free(struct level_result *r) {
    outcomes_free(&r->all);
    outcomes_free(&r->after);
    free(r->lag.v);
    memset(&r->lag, 0, sizeof r->lag);
}

static void setup_handle(CURL *h, const char *url, struct curl_slist *hdrs, const struct buf *body) {
    curl_easy_setopt(h, CURLOPT_URL, url);
    curl_easy_setopt(h, CURLOPT_POSTFIELDS, body->p);
    curl_easy_setopt(h, CURLOPT_POSTFIELDSIZE_LARGE, (curl_off_t)body->len);
    curl_easy_setopt(h, CURLOPT_HTTPHEADER, hdrs);
    curl_easy_setopt(h, CURLOPT_WRITEFUNCTION, discard);
    curl_easy_setopt(h, CURLOPT_TIMEOUT, 60L);
    curl_easy_setopt(h, CURLOPT_NOSIGNAL, 1L);
    curl_easy_setopt(h, CURLOPT_TCP_NODELAY, 1L);
}

/* concurrency > 0: closed loop; else open loop at `rate` per second. */
static void run_level(const char *url, struct curl_slist *hdrs, const struct buf *body, int concurrency,
                      double rate, bool poisson, double seconds, struct level_result *r) {
    memset(r, 0, sizeof *r);
    r->mark = -1;
    CURLM *m = curl_multi_init();
    int n_slots = concurrency > 0 ? concurrency : MAX_INFLIGHT;
    /* keep every connection a burst opened: closing and reopening them costs
     * the client CPU and fills the port space with TIME_WAIT sockets */
    curl_multi_setopt(m, CURLMOPT_MAXCONNECTS, (long)n_slots);
    struct slot *slots = calloc((size_t)n_slots, sizeof *slots);
    uint64_t rng = 0x9e3779b97f4a7c15ull;
    double start = now_s(), end = start + seconds, next_arrival = start;
    int inflight = 0;
    mark_pending = 0;
    for (;;) {
        double t = now_s();
        if (mark_pending && r->mark < 0) r->mark = t - start;
        bool sending = t < end;
        /* start requests: refill the loop, or release the arrivals now due */
        for (int i = 0; sending && i < n_slots; i++) {
            if (slots[i].busy) continue;
            if (concurrency <= 0) {
                if (next_arrival > t) break;
            }
            if (!slots[i].h) {
                slots[i].h = curl_easy_init();
                setup_handle(slots[i].h, url, hdrs, body);
            }
            slots[i].t0 = concurrency > 0 ? t : next_arrival;
            if (concurrency <= 0) lat_add(&r->lag, t - next_arrival);
            slots[i].busy = true;
            curl_easy_setopt(slots[i].h, CURLOPT_PRIVATE, &slots[i]);
            curl_multi_add_handle(m, slots[i].h);
            inflight++;
            r->sent++;
            if (concurrency <= 0) {
                double gap = 1.0 / rate;
                if (poisson) {
                    rng ^= rng << 13; rng ^= rng >> 7; rng ^= rng << 17;
                    double u = ((double)(rng >> 11) + 0.5) / 9007199254740992.0;
                    gap = -log(u) / rate;
                }
                next_arrival += gap;
            }
        }
        if (concurrency <= 0 && sending) {
            /* all slots busy: the arrivals now due are counted as late and skipped */
            while (next_arrival <= t && inflight >= n_slots) { r->late++; next_arrival += 1.0 / rate; }
        }
        if (!sending && inflight == 0) break;
        int running = 0;
        curl_multi_perform(m, &running);
        CURLMsg *msg;
        int left;
        bool freed = false;
        while ((msg = curl_multi_info_read(m, &left))) {
            if (msg->msg != CURLMSG_DONE) continue;
            struct slot *s = NULL;
            curl_easy_getinfo(msg->easy_handle, CURLINFO_PRIVATE, (char **)&s);
            long code = 0;
            curl_easy_getinfo(msg->easy_handle, CURLINFO_RESPONSE_CODE, &code);
            double done = now_s();
            CURLcode res = msg->data.result;
            long nc = 0;
            curl_easy_getinfo(msg->easy_handle, CURLINFO_NUM_CONNECTS, &nc);
            r->connects += nc;
            outcome_add(&r->all, res, code, done - s->t0);
            if (r->mark >= 0) outcome_add(&r->after, res, code, done - s->t0);
            if (res == CURLE_OK && code == 200) {
                r->ok++;
            } else {
                r->errors++;
                if (!r->first_error[0])
                    snprintf(r->first_error, sizeof r->first_error, "%s (HTTP %ld)", curl_easy_strerror(res), code);
            }
            curl_multi_remove_handle(m, msg->easy_handle);
            s->busy = false;
            inflight--;
            freed = true;
        }
        /* a closed loop re-sends at once; an open loop sleeps until the next arrival */
        int wait_ms = freed && concurrency > 0 ? 0 : 50;
        if (concurrency <= 0 && sending) {
            double dt = next_arrival - now_s();
            wait_ms = dt <= 0 ? 0 : dt < 0.05 ? (int)(dt * 1000) : 50;
        }
        if (wait_ms > 0) curl_multi_poll(m, NULL, 0, wait_ms, NULL);
    }
    r->seconds = now_s() - start;
    for (int i = 0; i < n_slots; i++)
        if (slots[i].h) curl_easy_cleanup(slots[i].h);
    free(slots);
    curl_multi_cleanup(m);
    outcomes_sort(&r->all);
    outcomes_sort(&r->after);
    if (r->lag.n > 1) qsort(r->lag.v, (size_t)r->lag.n, sizeof(double), cmp_d);
}

/* Server-side counters from GET .../stats (0 when unavailable). */
struct server_stats {
    double infer, exec, success, queue_ns, compute_ns;
    /* kiln's compute-time histogram from /metrics (n_le 0 when absent) */
    double le[32], cum[32];
    int    n_le;
};

/* value of label `key` in a Prometheus label set {a="x",b="y"}, or "" */
static void prom_label(const char *labels, const char *key, char *out, size_t n) {
    out[0] = '\0';
    char pat[64];
    snprintf(pat, sizeof pat, "%s=\"", key);
    const char *p = strstr(labels, pat);
    if (!p) return;
    p += strlen(pat);
    size_t k = 0;
    while (p[k] && p[k] != '"' && k + 1 < n) { out[k] = p[k]; k++; }
    out[k] = '\0';
}

static void get_compute_hist(const char *base, const char *model, struct server_stats *st) {
    char url[1100];
    snprintf(url, sizeof url, "%s/metrics", base);
    struct buf b = {0};
    if (http_get(url, &b) != 200 || !b.p) { free(b.p); return; }
    static const char name[] = "kiln_inference_compute_duration_us_bucket{";
    for (char *line = b.p; line && *line;) {
        char *nl = strchr(line, '\n');
        if (nl) *nl = '\0';
        if (!strncmp(line, name, sizeof name - 1) && st->n_le < 32) {
            char *close = strchr(line, '}');
            if (close) {
                *close = '\0';
                char mv[256], le[64];
                prom_label(line, "model", mv, sizeof mv);
                prom_label(line, "le", le, sizeof le);
                if (!strcmp(mv, model)) {
                    st->le[st->n_le] = !strcmp(le, "+Inf") ? INFINITY : atof(le);
                    st->cum[st->n_le++] = atof(close + 1);
                }
            }
        }
        line = nl ? nl + 1 : NULL;
    }
    free(b.p);
}

/* p-th percentile (us) of the compute times between two scrapes,
 * interpolated inside its bucket; NAN when unknown */
static double compute_pct(const struct server_stats *a, const struct server_stats *b, double p) {
    if (!b->n_le || a->n_le != b->n_le) return NAN;
    double total = b->cum[b->n_le - 1] - a->cum[a->n_le - 1];
    if (total <= 0) return NAN;
    double want = p / 100.0 * total, prev_c = 0, prev_le = 0;
    for (int i = 0; i < b->n_le; i++) {
        double c = b->cum[i] - a->cum[i];
        if (c >= want) {
            if (isinf(b->le[i])) return prev_le;
            double frac = c > prev_c ? (want - prev_c) / (c - prev_c) : 1;
            return prev_le + frac * (b->le[i] - prev_le);
        }
        prev_c = c;
        prev_le = b->le[i];
    }
    return prev_le;
}

static void get_stats(const char *base, const char *model, struct server_stats *st) {
    memset(st, 0, sizeof *st);
    char url[1024];
    snprintf(url, sizeof url, "%s/v2/models/%s/stats", base, model);
    struct buf b = {0};
    if (http_get(url, &b) != 200) { free(b.p); return; }
    json_object *root = json_tokener_parse(b.p), *ms, *m0, *x, *is, *y;
    free(b.p);
    if (!root || !json_object_object_get_ex(root, "model_stats", &ms) || !json_object_array_length(ms)) {
        json_object_put(root);
        return;
    }
    m0 = json_object_array_get_idx(ms, 0);
    if (json_object_object_get_ex(m0, "inference_count", &x)) st->infer = (double)json_object_get_int64(x);
    if (json_object_object_get_ex(m0, "execution_count", &x)) st->exec = (double)json_object_get_int64(x);
    if (json_object_object_get_ex(m0, "inference_stats", &is)) {
        if (json_object_object_get_ex(is, "success", &y) && json_object_object_get_ex(y, "count", &x))
            st->success = (double)json_object_get_int64(x);
        if (json_object_object_get_ex(is, "queue", &y) && json_object_object_get_ex(y, "ns", &x))
            st->queue_ns = (double)json_object_get_int64(x);
        if (json_object_object_get_ex(is, "compute_infer", &y) && json_object_object_get_ex(y, "ns", &x))
            st->compute_ns = (double)json_object_get_int64(x);
    }
    json_object_put(root);
    get_compute_hist(base, model, st);
}

/* ---- reports ------------------------------------------------------------------- */

/* "200 x1234 (p50 1.20 p99 3.40 ms), 503 x50 (...), refused x3" */
static void print_outcomes(const char *title, const struct outcomes *o) {
    printf("%-12s %s:", "", title);
    const char *sep = " ";
    for (int i = 0; i < o->n_codes; i++) {
        const struct lat *l = &o->by_code[i];
        printf("%s%ld x%ld (p50 %.3f p99 %.3f max %.3f ms)", sep, o->code[i], l->n, lat_pct(l, 50) * 1e3,
               lat_pct(l, 99) * 1e3, lat_pct(l, 100) * 1e3);
        sep = ", ";
    }
    if (o->refused) { printf("%srefused x%ld", sep, o->refused); sep = ", "; }
    if (o->reset) { printf("%sreset/no reply x%ld", sep, o->reset); sep = ", "; }
    if (o->timeout) { printf("%stimeout x%ld", sep, o->timeout); sep = ", "; }
    if (o->other) { printf("%sother x%ld: %s", sep, o->other, o->first_other); sep = ", "; }
    if (!o->n_codes && !o->refused && !o->reset && !o->timeout && !o->other) printf(" none");
    printf("\n");
}

static void json_num(FILE *f, const char *key, double v) {
    if (isfinite(v)) fprintf(f, ",\"%s\":%.6g", key, v);
    else fprintf(f, ",\"%s\":null", key);
}

/* Flat keys first (prefix "after_mark_" for the phase after SIGUSR1), so a
 * shell script can pick one with sed; then every status code in "status". */
static void json_outcomes(FILE *f, const char *prefix, const struct outcomes *o) {
    char k[96];
    long other_http = 0;
    for (int i = 0; i < o->n_codes; i++)
        if (o->code[i] != 200 && o->code[i] != 503) other_http += o->by_code[i].n;
    const struct lat *l200 = code_lats(o, 200), *l503 = code_lats(o, 503);
    snprintf(k, sizeof k, "%sn200", prefix); fprintf(f, ",\"%s\":%ld", k, code_count(o, 200));
    snprintf(k, sizeof k, "%sn503", prefix); fprintf(f, ",\"%s\":%ld", k, code_count(o, 503));
    snprintf(k, sizeof k, "%sother_http", prefix); fprintf(f, ",\"%s\":%ld", k, other_http);
    snprintf(k, sizeof k, "%srefused", prefix); fprintf(f, ",\"%s\":%ld", k, o->refused);
    snprintf(k, sizeof k, "%sreset", prefix); fprintf(f, ",\"%s\":%ld", k, o->reset);
    snprintf(k, sizeof k, "%stimeout", prefix); fprintf(f, ",\"%s\":%ld", k, o->timeout);
    snprintf(k, sizeof k, "%sother_error", prefix); fprintf(f, ",\"%s\":%ld", k, o->other);
    snprintf(k, sizeof k, "%sp50_200_ms", prefix); json_num(f, k, lat_pct(l200, 50) * 1e3);
    snprintf(k, sizeof k, "%sp99_200_ms", prefix); json_num(f, k, lat_pct(l200, 99) * 1e3);
    snprintf(k, sizeof k, "%sp50_503_ms", prefix); json_num(f, k, lat_pct(l503, 50) * 1e3);
    snprintf(k, sizeof k, "%sp99_503_ms", prefix); json_num(f, k, lat_pct(l503, 99) * 1e3);
    snprintf(k, sizeof k, "%smax_503_ms", prefix); json_num(f, k, lat_pct(l503, 100) * 1e3);
}

static void json_status(FILE *f, const char *key, const struct outcomes *o) {
    fprintf(f, ",\"%s\":{", key);
    for (int i = 0; i < o->n_codes; i++) {
        const struct lat *l = &o->by_code[i];
        fprintf(f, "%s\"%ld\":{\"count\":%ld", i ? "," : "", o->code[i], l->n);
        json_num(f, "p50_ms", lat_pct(l, 50) * 1e3);
        json_num(f, "p90_ms", lat_pct(l, 90) * 1e3);
        json_num(f, "p99_ms", lat_pct(l, 99) * 1e3);
        json_num(f, "max_ms", lat_pct(l, 100) * 1e3);
        fprintf(f, "}");
    }
    fprintf(f, "}");
}

static void usage(FILE *f) {
    fprintf(f,
            "usage: kiln perf --url URL --model M [options]\n"
            "  --concurrency LIST     closed loop, e.g. 1,2,4,8,16 (default 1,2,4,8,16)\n"
            "  --rate R[,R2...]       open loop at R requests/s instead\n"
            "  --distribution D       constant (default) or poisson, for --rate\n"
            "  --seconds S            measurement time per level (default 5)\n"
            "  --warmup S             unmeasured time before the first level (default 1)\n"
            "  --batch B              rows per request for batched models (default 1)\n"
            "  --binary               binary tensor data instead of JSON\n"
            "  --version V            model version (default: the one served)\n"
            "  --json FILE            also append one JSON object per level to FILE\n"
            "Per level it prints the latency of each HTTP status apart (e.g. 200 and 503)\n"
            "and transport failures by kind: refused, reset/no reply, timeout, other.\n"
            "SIGUSR1 marks a moment (say, when the server is sent SIGTERM): responses\n"
            "completed after it are also reported apart. Exit status 1 when any request\n"
            "failed, 2 on bad usage.\n");
}

static int parse_list(const char *s, double *out, int max) {
    int n = 0;
    while (*s && n < max) {
        char *end;
        double v = strtod(s, &end);
        if (end == s || v <= 0) return -1;
        out[n++] = v;
        s = *end == ',' ? end + 1 : end;
        if (*end && *end != ',') return -1;
    }
    return n;
}

int kiln_cmd_perf(int argc, char **argv) {
    const char *url = NULL, *model = NULL, *version = NULL, *conc = "1,2,4,8,16", *rates = NULL;
    const char *json_path = NULL;
    double seconds = 5, warmup = 1;
    int batch = 1;
    bool binary = false, poisson = false;
    for (int i = 1; i < argc; i++) {
        const char *a = argv[i], *v = i + 1 < argc ? argv[i + 1] : NULL;
        if (!strcmp(a, "-h") || !strcmp(a, "--help")) { usage(stdout); return 0; }
        if (!strcmp(a, "--binary")) { binary = true; continue; }
        if (!v) { fprintf(stderr, "kiln perf: %s needs a value\n", a); return 2; }
        i++;
        if (!strcmp(a, "--url")) url = v;
        else if (!strcmp(a, "--model")) model = v;
        else if (!strcmp(a, "--version")) version = v;
        else if (!strcmp(a, "--concurrency")) conc = v;
        else if (!strcmp(a, "--rate")) rates = v;
        else if (!strcmp(a, "--seconds")) seconds = atof(v);
        else if (!strcmp(a, "--warmup")) warmup = atof(v);
        else if (!strcmp(a, "--batch")) batch = atoi(v);
        else if (!strcmp(a, "--json")) json_path = v;
        else if (!strcmp(a, "--distribution")) {
            if (!strcmp(v, "poisson")) poisson = true;
            else if (strcmp(v, "constant")) { fprintf(stderr, "kiln perf: --distribution constant|poisson\n"); return 2; }
        } else { fprintf(stderr, "kiln perf: unknown option %s\n", a); usage(stderr); return 2; }
    }
    if (!url || !model || seconds <= 0 || batch < 1 || warmup < 0) { usage(stderr); return 2; }
    double levels[64];
    int n_levels = parse_list(rates ? rates : conc, levels, 64);
    if (n_levels <= 0) { fprintf(stderr, "kiln perf: bad %s list\n", rates ? "--rate" : "--concurrency"); return 2; }
    if (!rates)
        for (int i = 0; i < n_levels; i++)
            if (levels[i] != floor(levels[i]) || levels[i] > MAX_INFLIGHT) {
                fprintf(stderr, "kiln perf: concurrency must be whole numbers up to %d\n", MAX_INFLIGHT);
                return 2;
            }
    FILE *jf = NULL;
    if (json_path && !(jf = fopen(json_path, "a"))) {
        fprintf(stderr, "kiln perf: cannot open %s\n", json_path);
        return 2;
    }
    /* up to MAX_INFLIGHT connections at once: lift the soft descriptor limit */
    struct rlimit rl;
    if (getrlimit(RLIMIT_NOFILE, &rl) == 0 && rl.rlim_cur < rl.rlim_max) {
        rl.rlim_cur = rl.rlim_max;
        setrlimit(RLIMIT_NOFILE, &rl);
    }
    struct sigaction sa;
    memset(&sa, 0, sizeof sa);
    sa.sa_handler = on_mark;
    sigemptyset(&sa.sa_mask);
    sigaction(SIGUSR1, &sa, NULL);
    curl_global_init(CURL_GLOBAL_DEFAULT);
    char base[1024], meta_url[1200], infer_url[1200];
    snprintf(base, sizeof base, "%s", url);
    size_t bl = strlen(base);
    while (bl && base[bl - 1] == '/') base[--bl] = '\0';
    if (version) {
        snprintf(meta_url, sizeof meta_url, "%s/v2/models/%s/versions/%s", base, model, version);
        snprintf(infer_url, sizeof infer_url, "%s/v2/models/%s/versions/%s/infer", base, model, version);
    } else {
        snprintf(meta_url, sizeof meta_url, "%s/v2/models/%s", base, model);
        snprintf(infer_url, sizeof infer_url, "%s/v2/models/%s/infer", base, model);
    }
    struct buf meta = {0};
    long code = http_get(meta_url, &meta);
    if (code != 200) {
        fprintf(stderr, "kiln perf: GET %s: %s%s\n", meta_url, code < 0 ? "no answer" : "HTTP error ",
                code < 0 ? "" : (meta.p ? meta.p : ""));
        free(meta.p);
        curl_global_cleanup();
        if (jf) fclose(jf);
        return 1;
    }
    struct buf body = {0};
    size_t header_len = 0;
    char err[512];
    if (build_body(meta.p, batch, binary, &body, &header_len, err, sizeof err)) {
        fprintf(stderr, "kiln perf: %s\n", err);
        free(meta.p);
        curl_global_cleanup();
        if (jf) fclose(jf);
        return 1;
    }
    free(meta.p);
    struct curl_slist *hdrs = curl_slist_append(NULL, "Expect:");
    if (binary) {
        char h[96];
        snprintf(h, sizeof h, "Inference-Header-Content-Length: %zu", header_len);
        hdrs = curl_slist_append(hdrs, h);
        hdrs = curl_slist_append(hdrs, "Content-Type: application/octet-stream");
    } else {
        hdrs = curl_slist_append(hdrs, "Content-Type: application/json");
    }
    printf("kiln perf: %s model %s, %s, batch %d, %zu-byte requests, %.0f s per level\n", base, model,
           binary ? "binary" : "JSON", batch, body.len, seconds);
    struct level_result r;
    if (warmup > 0) {
        run_level(infer_url, hdrs, &body, 1, 0, false, warmup, &r);
        result_free(&r);
        if (r.errors && !r.ok) {
            fprintf(stderr, "kiln perf: every warmup request failed: %s\n", r.first_error);
            curl_slist_free_all(hdrs);
            free(body.p);
            curl_global_cleanup();
            if (jf) fclose(jf);
            return 1;
        }
    }
    printf("%-12s %10s %9s %9s %9s %9s %9s %7s %9s %10s %10s\n", rates ? "rate/s" : "concurrency", "infer/s",
           "p50 ms", "p90 ms", "p95 ms", "p99 ms", "avg ms", "errors", "avg batch", "queue ms", "compute ms");
    int rc = 0;
    for (int li = 0; li < n_levels; li++) {
        struct server_stats s0, s1;
        get_stats(base, model, &s0);
        run_level(infer_url, hdrs, &body, rates ? 0 : (int)levels[li], rates ? levels[li] : 0, poisson, seconds, &r);
        get_stats(base, model, &s1);
        /* the main row: successful requests (HTTP 200) */
        const struct lat *ok = code_lats(&r.all, 200);
        double avg = 0;
        for (long k = 0; ok && k < ok->n; k++) avg += ok->v[k];
        avg = ok && ok->n ? avg / (double)ok->n : NAN;
        double ds = s1.success - s0.success, de = s1.exec - s0.exec;
        double batch_avg = de > 0 ? (s1.infer - s0.infer) / de : NAN;
        double queue_ms = ds > 0 ? (s1.queue_ns - s0.queue_ns) / ds / 1e6 : NAN;
        double compute_ms = ds > 0 ? (s1.compute_ns - s0.compute_ns) / ds / 1e6 : NAN;
        double compute_p50_ms = compute_pct(&s0, &s1, 50) / 1e3;
        double thr = (double)r.ok * batch / r.seconds;
        char label[32];
        snprintf(label, sizeof label, "%g", levels[li]);
        printf("%-12s %10.1f %9.3f %9.3f %9.3f %9.3f %9.3f %7ld %9.2f %10.3f %10.3f\n", label, thr,
               lat_pct(ok, 50) * 1e3, lat_pct(ok, 90) * 1e3, lat_pct(ok, 95) * 1e3, lat_pct(ok, 99) * 1e3,
               avg * 1e3, r.errors, batch_avg, queue_ms, compute_ms);
        print_outcomes(r.mark >= 0 ? "all responses" : "responses", &r.all);
        if (r.mark >= 0) {
            char t[64];
            snprintf(t, sizeof t, "completed after SIGUSR1 at %.2f s", r.mark);
            print_outcomes(t, &r.after);
        }
        if (isfinite(compute_p50_ms))
            printf("%-12s server compute p50 %.3f ms (from its histogram)\n", "", compute_p50_ms);
        printf("%-12s %ld requests sent on %ld new connections\n", "", r.sent, r.connects);
        if (r.lag.n)
            printf("%-12s client lag behind the schedule: p50 %.3f p99 %.3f max %.3f ms (counted in latency)\n", "",
                   lat_pct(&r.lag, 50) * 1e3, lat_pct(&r.lag, 99) * 1e3, lat_pct(&r.lag, 100) * 1e3);
        if (r.late) printf("%-12s %ld arrivals skipped: %d requests already in flight\n", "", r.late, MAX_INFLIGHT);
        if (r.errors) rc = 1;
        if (jf) {
            fprintf(jf, "{\"mode\":\"%s\",\"level\":%g,\"seconds\":%.3f,\"sent\":%ld,\"ok\":%ld,\"errors\":%ld,"
                        "\"late\":%ld",
                    rates ? (poisson ? "poisson" : "rate") : "concurrency", levels[li], r.seconds, r.sent, r.ok,
                    r.errors, r.late);
            json_num(jf, "throughput", thr);
            json_num(jf, "p50_ms", lat_pct(ok, 50) * 1e3);
            json_num(jf, "p90_ms", lat_pct(ok, 90) * 1e3);
            json_num(jf, "p95_ms", lat_pct(ok, 95) * 1e3);
            json_num(jf, "p99_ms", lat_pct(ok, 99) * 1e3);
            json_num(jf, "avg_ms", avg * 1e3);
            json_num(jf, "server_avg_batch", batch_avg);
            json_num(jf, "server_queue_ms", queue_ms);
            json_num(jf, "server_compute_ms", compute_ms);
            json_num(jf, "server_compute_p50_ms", compute_p50_ms);
            json_num(jf, "mark_s", r.mark >= 0 ? r.mark : NAN);
            json_num(jf, "client_lag_p99_ms", lat_pct(&r.lag, 99) * 1e3);
            fprintf(jf, ",\"connects\":%ld", r.connects);
            json_outcomes(jf, "", &r.all);
            json_outcomes(jf, "after_mark_", &r.after);
            json_status(jf, "status", &r.all);
            json_status(jf, "after_mark_status", &r.after);
            fprintf(jf, "}\n");
            fflush(jf);
        }
        fflush(stdout);
        result_free(&r);
    }
    curl_slist_free_all(hdrs);
    free(body.p);
    curl_global_cleanup();
    if (jf) fclose(jf);
    return rc;
}
