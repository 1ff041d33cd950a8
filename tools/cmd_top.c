/*
 * cmd_top.c — `kiln top`: a live terminal view of a kiln server, computed from
 * two consecutive scrapes of its Prometheus /metrics (rates and latency
 * percentiles come from counter and histogram deltas, so they describe the
 * last interval, not the server's whole life).
 */
#define _GNU_SOURCE
#include "cmd.h"

#include <curl/curl.h>
#include <math.h>
#include <stdbool.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <time.h>
#include <unistd.h>

#define MAX_ROWS 64
#define MAX_BUCKETS 32

struct row {
    char   model[128], version[32];
    double success, fail, infer, exec, pending, inflight;
    double q_sum, q_cnt, c_sum, c_cnt;
    double le[MAX_BUCKETS], cum[MAX_BUCKETS];   /* request-duration histogram */
    int    n_buckets;
    double busy_us, n_inst, cores, weight, arena;
};

struct sample {
    double     t;
    struct row rows[MAX_ROWS];
    int        n;
    double     active;
};

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

static double now_s(void) {
    struct timespec ts;
    clock_gettime(CLOCK_MONOTONIC, &ts);
    return (double)ts.tv_sec + ts.tv_nsec / 1e9;
}

/* Copies label `key` from a {k="v",...} block into out ("" if absent). */
static void label(const char *labels, const char *key, char *out, size_t n) {
    out[0] = '\0';
    char pat[64];
    snprintf(pat, sizeof pat, "%s=\"", key);
    const char *p = strstr(labels, pat);
    if (!p) return;
    p += strlen(pat);
    size_t k = 0;
    while (*p && *p != '"' && k + 1 < n) out[k++] = *p++;
    out[k] = '\0';
}

static struct row *row_for(struct sample *s, const char *model, const char *version) {
    for (int i = 0; i < s->n; i++)
        if (!strcmp(s->rows[i].model, model) && !strcmp(s->rows[i].version, version)) return &s->rows[i];
    if (s->n == MAX_ROWS) return NULL;
    struct row *r = &s->rows[s->n++];
    memset(r, 0, sizeof *r);
    snprintf(r->model, sizeof r->model, "%s", model);
    snprintf(r->version, sizeof r->version, "%s", version);
    return r;
}

static void parse_metrics(char *text, struct sample *s) {
    for (char *line = strtok(text, "\n"); line; line = strtok(NULL, "\n")) {
        if (line[0] == '#') continue;
        char *brace = strchr(line, '{'), *close = brace ? strchr(brace, '}') : NULL;
        if (!strncmp(line, "kiln_server_active_requests ", 28)) { s->active = atof(line + 28); continue; }
        if (!brace || !close) continue;
        *brace = '\0';
        *close = '\0';
        const char *name = line, *labels = brace + 1;
        double v = atof(close + 1);
        char model[128], version[32], le[32];
        label(labels, "model", model, sizeof model);
        label(labels, "version", version, sizeof version);
        if (!model[0]) continue;
        struct row *r = row_for(s, model, version);
        if (!r) continue;
        if (!strcmp(name, "kiln_inference_request_success")) r->success = v;
        else if (!strcmp(name, "kiln_inference_request_failure")) r->fail += v;
        else if (!strcmp(name, "kiln_inference_count")) r->infer = v;
        else if (!strcmp(name, "kiln_inference_exec_count")) r->exec = v;
        else if (!strcmp(name, "kiln_inference_pending_request_count")) r->pending = v;
        else if (!strcmp(name, "kiln_inference_inflight_request_count")) r->inflight = v;
        else if (!strcmp(name, "kiln_inference_queue_duration_us_sum")) r->q_sum = v;
        else if (!strcmp(name, "kiln_inference_queue_duration_us_count")) r->q_cnt = v;
        else if (!strcmp(name, "kiln_inference_compute_duration_us_sum")) r->c_sum = v;
        else if (!strcmp(name, "kiln_inference_compute_duration_us_count")) r->c_cnt = v;
        else if (!strcmp(name, "kiln_inference_request_duration_us_bucket") && r->n_buckets < MAX_BUCKETS) {
            label(labels, "le", le, sizeof le);
            r->le[r->n_buckets] = !strcmp(le, "+Inf") ? INFINITY : atof(le);
            r->cum[r->n_buckets++] = v;
        } else if (!strcmp(name, "kiln_instance_busy_us_total")) { r->busy_us += v; r->n_inst++; }
        else if (!strcmp(name, "kiln_instance_cores")) r->cores += v;
        else if (!strcmp(name, "kiln_instance_arena_bytes")) r->arena += v;
        else if (!strcmp(name, "kiln_model_weight_bytes")) r->weight = v;
    }
}

static int scrape(const char *url, struct sample *s) {
    memset(s, 0, sizeof *s);
    CURL *h = curl_easy_init();
    if (!h) return -1;
    struct buf b = {0};
    curl_easy_setopt(h, CURLOPT_URL, url);
    curl_easy_setopt(h, CURLOPT_WRITEFUNCTION, keep);
    curl_easy_setopt(h, CURLOPT_WRITEDATA, &b);
    curl_easy_setopt(h, CURLOPT_TIMEOUT, 5L);
    long code = 0;
    CURLcode rc = curl_easy_perform(h);
    curl_easy_getinfo(h, CURLINFO_RESPONSE_CODE, &code);
    curl_easy_cleanup(h);
    s->t = now_s();
    if (rc != CURLE_OK || code != 200 || !b.p) { free(b.p); return -1; }
    parse_metrics(b.p, s);
    free(b.p);
    return 0;
}

/* Percentile of the interval from histogram deltas, interpolated inside the bucket. */
static double hist_pct(const struct row *a, const struct row *b, double p) {
    if (a->n_buckets != b->n_buckets || !b->n_buckets) return NAN;
    double total = b->cum[b->n_buckets - 1] - a->cum[a->n_buckets - 1];
    if (total <= 0) return NAN;
    double want = p / 100.0 * total, prev_c = 0, prev_le = 0;
    for (int i = 0; i < b->n_buckets; i++) {
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

static void render(const char *url, const struct sample *a, const struct sample *b, bool clear) {
    double dt = b->t - a->t;
    if (clear) printf("\033[H\033[2J");
    printf("kiln top — %s   interval %.1f s   active requests %.0f\n\n", url, dt, b->active);
    printf("%-20s %4s %9s %9s %7s %7s %5s %8s %8s %8s %8s %6s %9s %9s\n", "model", "ver", "req/s", "infer/s",
           "fail/s", "batch", "queue", "inflight", "p50 ms", "p99 ms", "queue ms", "util%", "weights", "arena");
    for (int i = 0; i < b->n; i++) {
        const struct row *y = &b->rows[i], *x = NULL;
        for (int k = 0; k < a->n; k++)
            if (!strcmp(a->rows[k].model, y->model) && !strcmp(a->rows[k].version, y->version)) x = &a->rows[k];
        struct row zero;
        if (!x) { memset(&zero, 0, sizeof zero); zero.n_buckets = y->n_buckets; memcpy(zero.le, y->le, sizeof zero.le); x = &zero; }
        double dexec = y->exec - x->exec, dq = y->q_cnt - x->q_cnt;
        double util = y->n_inst > 0 && dt > 0 ? (y->busy_us - x->busy_us) / (dt * 1e6 * y->n_inst) * 100 : 0;
        printf("%-20.20s %4s %9.1f %9.1f %7.1f %7.2f %5.0f %8.0f %8.3f %8.3f %8.3f %6.1f %8.1fM %8.1fM\n", y->model,
               y->version, (y->success - x->success) / dt, (y->infer - x->infer) / dt, (y->fail - x->fail) / dt,
               dexec > 0 ? (y->infer - x->infer) / dexec : 0.0, y->pending, y->inflight,
               hist_pct(x, y, 50) / 1e3, hist_pct(x, y, 99) / 1e3, dq > 0 ? (y->q_sum - x->q_sum) / dq / 1e3 : 0.0,
               util, y->weight / 1048576.0, y->arena / 1048576.0);
    }
    if (!b->n) printf("(no models served)\n");
    fflush(stdout);
}

int kiln_cmd_top(int argc, char **argv) {
    const char *url = NULL;
    double interval = 1;
    int count = 0;   /* 0 = until interrupted */
    for (int i = 1; i < argc; i++) {
        const char *a = argv[i], *v = i + 1 < argc ? argv[i + 1] : NULL;
        if (!strcmp(a, "-h") || !strcmp(a, "--help")) {
            printf("usage: kiln top --url URL [--interval S] [--count N] [--once]\n"
                   "  --once   print one interval's view without clearing the screen (scripts)\n");
            return 0;
        }
        if (!strcmp(a, "--once")) { count = 1; continue; }
        if (!v) { fprintf(stderr, "kiln top: %s needs a value\n", a); return 2; }
        i++;
        if (!strcmp(a, "--url")) url = v;
        else if (!strcmp(a, "--interval")) interval = atof(v);
        else if (!strcmp(a, "--count")) count = atoi(v);
        else { fprintf(stderr, "kiln top: unknown option %s\n", a); return 2; }
    }
    if (!url || interval <= 0 || count < 0) {
        fprintf(stderr, "usage: kiln top --url URL [--interval S] [--count N] [--once]\n");
        return 2;
    }
    char murl[1100];
    snprintf(murl, sizeof murl, url[strlen(url) - 1] == '/' ? "%smetrics" : "%s/metrics", url);
    curl_global_init(CURL_GLOBAL_DEFAULT);
    static struct sample s[2];
    if (scrape(murl, &s[0])) {
        fprintf(stderr, "kiln top: cannot read %s\n", murl);
        curl_global_cleanup();
        return 1;
    }
    bool tty = isatty(1) && count != 1;
    for (int k = 1; count == 0 || k <= count; k++) {
        usleep((useconds_t)(interval * 1e6));
        struct sample *prev = &s[(k - 1) & 1], *cur = &s[k & 1];
        if (scrape(murl, cur)) {
            fprintf(stderr, "kiln top: cannot read %s\n", murl);
            curl_global_cleanup();
            return 1;
        }
        render(url, prev, cur, tty);
    }
    curl_global_cleanup();
    return 0;
}
