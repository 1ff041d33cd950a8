/*
 * metrics.c — Prometheus text (GET /metrics) and Triton-style JSON
 * statistics (GET /v2/models[/<m>[/versions/<v>]]/stats).
 *
 * Counters live in each version under its queue lock; rendering copies a
 * snapshot of every served version first, then formats without locks.
 * Names follow Triton's nv_inference_* with a kiln_ prefix.
 */
#include "serve/internal.h"

#include <stdio.h>
#include <stdlib.h>
#include <string.h>

/* from 10 us: a tiny model's compute and the server's own overhead are tens
 * of microseconds, and percentiles are interpolated inside a bucket */
const double hist_us_bounds[HIST_US_BUCKETS] = {10,    25,     50,     100,    250,     500,
                                                1000,  2500,   5000,   10000,  25000,   50000,
                                                100000, 250000, 500000, 1e6,   2.5e6,   1e7};
const double hist_bs_bounds[HIST_BS_BUCKETS] = {1, 2, 4, 8, 16, 32, 64, 128, 256, 1024};
const char *const fail_reason_name[FAIL_N] = {"REJECTED", "TIMEOUT", "CANCELED", "BACKEND", "INVALID"};

void hist_add(struct hist *h, const double *bounds, int nb, double v) {
    int i = 0;
    while (i < nb && v > bounds[i]) i++;
    h->b[i]++;
    h->count++;
    h->sum += v;
}

void metrics_record_fail(struct srv_version *v, enum fail_reason r) {
    pthread_mutex_lock(&v->qlock);
    v->m.fail[r]++;
    pthread_mutex_unlock(&v->qlock);
}

struct snap {
    char     name[128];
    int64_t  version;
    struct srv_metrics m;
    int64_t  pending, executing;
    uint64_t weight_bytes;
    int32_t  n_inst;
    uint64_t busy_ns[64], arena[64];
    int32_t  n_cpus[64];
    int64_t  run_sizes[SRV_MAX_RUN_SIZES];
    int32_t  n_run_sizes;
};

static void snap_one(struct srv_version *v, struct snap *o) {
    snprintf(o->name, sizeof o->name, "%s", v->name);
    o->version = v->version;
    o->weight_bytes = v->weight_bytes;
    o->n_inst = v->n_inst < 64 ? v->n_inst : 64;
    o->n_run_sizes = v->cfg.n_run_sizes;
    memcpy(o->run_sizes, v->cfg.run_sizes, sizeof o->run_sizes);
    pthread_mutex_lock(&v->qlock);
    o->m = v->m;
    o->pending = v->qlen;
    o->executing = v->executing;
    for (int32_t i = 0; i < o->n_inst; i++) {
        o->busy_ns[i] = v->inst[i].busy_ns;
        o->arena[i] = v->inst[i].arena_bytes;
        o->n_cpus[i] = v->inst[i].n_cpus;
    }
    pthread_mutex_unlock(&v->qlock);
}

/* Snapshots served versions (all, or one name); returns the count. */
static int snapshot(struct kiln_server *s, const char *name, struct snap **out) {
    int n = 0, cap = 0;
    struct snap *a = NULL;
    pthread_mutex_lock(&s->repo_lock);
    for (struct srv_model *m = s->models; m; m = m->next) {
        if (!m->live || (name && strcmp(name, m->name))) continue;
        if (n == cap) {
            cap = cap ? cap * 2 : 8;
            struct snap *p = realloc(a, sizeof *a * (size_t)cap);
            if (!p) break;
            a = p;
        }
        snap_one(m->live, &a[n++]);
    }
    pthread_mutex_unlock(&s->repo_lock);
    *out = a;
    return n;
}

static void family(struct sbuf *b, const char *name, const char *type, const char *help) {
    sb_printf(b, "# HELP %s %s\n# TYPE %s %s\n", name, help, name, type);
}

static void labels(struct sbuf *b, const struct snap *x) {
    sb_printf(b, "{model=\"%s\",version=\"%lld\"", x->name, (long long)x->version);
}

static void counter(struct sbuf *b, const char *name, const struct snap *x, uint64_t v) {
    sb_puts(b, name);
    labels(b, x);
    sb_printf(b, "} %llu\n", (unsigned long long)v);
}

static void histogram(struct sbuf *b, const char *name, const struct snap *x, const struct hist *h,
                      const double *bounds, int nb) {
    uint64_t cum = 0;
    for (int i = 0; i <= nb; i++) {
        cum += h->b[i];
        sb_printf(b, "%s_bucket", name);
        labels(b, x);
        if (i < nb) sb_printf(b, ",le=\"%g\"} %llu\n", bounds[i], (unsigned long long)cum);
        else sb_printf(b, ",le=\"+Inf\"} %llu\n", (unsigned long long)cum);
    }
    sb_printf(b, "%s_sum", name);
    labels(b, x);
    sb_printf(b, "} %.3f\n%s_count", h->sum, name);
    labels(b, x);
    sb_printf(b, "} %llu\n", (unsigned long long)h->count);
}

void metrics_prometheus(struct kiln_server *s, struct sbuf *b) {
    struct snap *a = NULL;
    int n = snapshot(s, NULL, &a);
    family(b, "kiln_inference_request_success", "counter", "Successful inference requests");
    for (int i = 0; i < n; i++) counter(b, "kiln_inference_request_success", &a[i], a[i].m.success);
    family(b, "kiln_inference_request_failure", "counter", "Failed inference requests by reason");
    for (int i = 0; i < n; i++)
        for (int r = 0; r < FAIL_N; r++) {
            sb_puts(b, "kiln_inference_request_failure");
            labels(b, &a[i]);
            sb_printf(b, ",reason=\"%s\"} %llu\n", fail_reason_name[r], (unsigned long long)a[i].m.fail[r]);
        }
    family(b, "kiln_inference_count", "counter", "Inferences performed (a batch of n counts n)");
    for (int i = 0; i < n; i++) counter(b, "kiln_inference_count", &a[i], a[i].m.inference_count);
    family(b, "kiln_inference_exec_count", "counter", "Model executions (batches run)");
    for (int i = 0; i < n; i++) counter(b, "kiln_inference_exec_count", &a[i], a[i].m.exec_count);
    family(b, "kiln_inference_pending_request_count", "gauge", "Requests waiting in the batch queue");
    for (int i = 0; i < n; i++) counter(b, "kiln_inference_pending_request_count", &a[i], (uint64_t)a[i].pending);
    family(b, "kiln_inference_inflight_request_count", "gauge", "Requests being executed");
    for (int i = 0; i < n; i++) counter(b, "kiln_inference_inflight_request_count", &a[i], (uint64_t)a[i].executing);
    family(b, "kiln_inference_queue_duration_us", "histogram", "Time from enqueue to execution start");
    for (int i = 0; i < n; i++)
        histogram(b, "kiln_inference_queue_duration_us", &a[i], &a[i].m.queue_us, hist_us_bounds, HIST_US_BUCKETS);
    family(b, "kiln_inference_compute_duration_us", "histogram", "Model execution time per batch");
    for (int i = 0; i < n; i++)
        histogram(b, "kiln_inference_compute_duration_us", &a[i], &a[i].m.compute_us, hist_us_bounds, HIST_US_BUCKETS);
    family(b, "kiln_inference_request_duration_us", "histogram", "End-to-end time from request arrival to response");
    for (int i = 0; i < n; i++)
        histogram(b, "kiln_inference_request_duration_us", &a[i], &a[i].m.request_us, hist_us_bounds, HIST_US_BUCKETS);
    family(b, "kiln_inference_batch_size", "histogram", "Rows per executed batch (before padding)");
    for (int i = 0; i < n; i++)
        histogram(b, "kiln_inference_batch_size", &a[i], &a[i].m.batch_size, hist_bs_bounds, HIST_BS_BUCKETS);
    family(b, "kiln_instance_busy_us_total", "counter", "Time each instance spent executing");
    for (int i = 0; i < n; i++)
        for (int32_t k = 0; k < a[i].n_inst; k++) {
            sb_puts(b, "kiln_instance_busy_us_total");
            labels(b, &a[i]);
            sb_printf(b, ",instance=\"%d\"} %llu\n", (int)k, (unsigned long long)(a[i].busy_ns[k] / 1000));
        }
    family(b, "kiln_instance_cores", "gauge", "Cores pinned to each instance");
    for (int i = 0; i < n; i++)
        for (int32_t k = 0; k < a[i].n_inst; k++) {
            sb_puts(b, "kiln_instance_cores");
            labels(b, &a[i]);
            sb_printf(b, ",instance=\"%d\"} %d\n", (int)k, (int)a[i].n_cpus[k]);
        }
    family(b, "kiln_instance_arena_bytes", "gauge", "Activation memory held by each instance's session");
    for (int i = 0; i < n; i++)
        for (int32_t k = 0; k < a[i].n_inst; k++) {
            sb_puts(b, "kiln_instance_arena_bytes");
            labels(b, &a[i]);
            sb_printf(b, ",instance=\"%d\"} %llu\n", (int)k, (unsigned long long)a[i].arena[k]);
        }
    family(b, "kiln_model_weight_bytes", "gauge", "Weight bytes, one copy shared by all instances");
    for (int i = 0; i < n; i++) counter(b, "kiln_model_weight_bytes", &a[i], a[i].weight_bytes);
    family(b, "kiln_server_active_requests", "gauge", "HTTP requests accepted and not yet answered");
    sb_printf(b, "kiln_server_active_requests %d\n", atomic_load(&s->active));
    free(a);
}

static void stat_pair(struct sbuf *b, const char *name, uint64_t count, uint64_t ns, bool comma) {
    sb_printf(b, "%s\"%s\":{\"count\":%llu,\"ns\":%llu}", comma ? "," : "", name, (unsigned long long)count,
              (unsigned long long)ns);
}

int metrics_stats_json(struct kiln_server *s, const char *name, int64_t version, struct sbuf *b,
                       char *msg, size_t msg_size) {
    if (name) {
        /* same errors as the other per-model endpoints */
        int status = 0;
        struct srv_version *v = repo_acquire(s, name, version, &status, msg, msg_size);
        if (!v) return status;
        repo_release(v);
    }
    struct snap *a = NULL;
    int n = snapshot(s, name, &a);
    sb_puts(b, "{\"model_stats\":[");
    for (int i = 0; i < n; i++) {
        const struct srv_metrics *m = &a[i].m;
        uint64_t fails = 0;
        for (int r = 0; r < FAIL_N; r++) fails += m->fail[r];
        sb_puts(b, i ? ",{\"name\":" : "{\"name\":");
        sb_json_str(b, a[i].name);
        sb_printf(b, ",\"version\":\"%lld\",\"last_inference\":%lld,\"inference_count\":%llu,\"execution_count\":%llu,"
                     "\"inference_stats\":{",
                  (long long)a[i].version, (long long)m->last_inference_ms,
                  (unsigned long long)m->inference_count, (unsigned long long)m->exec_count);
        stat_pair(b, "success", m->success, m->request_ns, false);
        stat_pair(b, "fail", fails, 0, true);
        stat_pair(b, "queue", m->success, m->queue_ns, true);
        stat_pair(b, "compute_input", 0, 0, true);
        stat_pair(b, "compute_infer", m->success, m->compute_ns, true);
        stat_pair(b, "compute_output", 0, 0, true);
        sb_puts(b, "},\"failure_reasons\":{");
        for (int r = 0; r < FAIL_N; r++)
            sb_printf(b, "%s\"%s\":%llu", r ? "," : "", fail_reason_name[r], (unsigned long long)m->fail[r]);
        sb_puts(b, "},\"batch_stats\":[");
        bool first = true;
        for (int32_t k = 0; k < a[i].n_run_sizes; k++) {
            if (!m->bs_exec[k]) continue;
            sb_printf(b, "%s{\"batch_size\":%lld", first ? "" : ",", (long long)a[i].run_sizes[k]);
            stat_pair(b, "compute_infer", m->bs_exec[k], m->bs_ns[k], true);
            sb_puts(b, "}");
            first = false;
        }
        sb_puts(b, "]}");
    }
    sb_puts(b, "]}");
    free(a);
    return 200;
}
