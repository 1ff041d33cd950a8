/*
 * repo.c — the model repository: scanning, loading (config, instances, core
 * placement, warmup), hot reload and unload, and the control thread that does
 * all of these one at a time off the network threads.
 *
 * Versions are swapped under repo_lock; the old version is closed, its
 * workers drain what was already queued, and it is freed once no call holds
 * it, so in-flight requests finish on the version that accepted them.
 */
#include "serve/internal.h"
#include "base/status.h"
#include "backend/dnnl_qconv.h"
#include "passes/quantize.h"
#include "runtime/model.h"

#include <ctype.h>
#include <dirent.h>
#include <errno.h>
#include <stdarg.h>
#include <microhttpd.h>
#include <sched.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/stat.h>
#include <time.h>
#include <unistd.h>

static void logf_(struct kiln_server *s, const char *fmt, ...) __attribute__((format(printf, 2, 3)));
static void logf_(struct kiln_server *s, const char *fmt, ...) {
    if (s->opt.quiet) return;
    va_list ap;
    va_start(ap, fmt);
    fprintf(stderr, "kiln serve: ");
    vfprintf(stderr, fmt, ap);
    fputc('\n', stderr);
    va_end(ap);
}

/* ---- cores ------------------------------------------------------------------- */

/* cgroup v2 quota: "max 100000" (none) or "QUOTA PERIOD"; rounded up. */
static int cgroup_cpu_limit(void) {
    FILE *f = fopen("/sys/fs/cgroup/cpu.max", "r");
    if (!f) return 0;
    char q[32] = {0};
    long long period = 0;
    int n = fscanf(f, "%31s %lld", q, &period);
    fclose(f);
    if (n != 2 || !strcmp(q, "max") || period <= 0) return 0;
    long long quota = atoll(q);
    if (quota <= 0) return 0;
    return (int)((quota + period - 1) / period);
}

static kiln_status init_cpus(struct kiln_server *s, kiln_error *err) {
    cpu_set_t set;
    CPU_ZERO(&set);
    int total = 0;
    int32_t ids[CPU_SETSIZE];
    if (sched_getaffinity(0, sizeof set, &set) == 0) {
        for (int i = 0; i < CPU_SETSIZE; i++)
            if (CPU_ISSET(i, &set)) ids[total++] = i;
    }
    if (!total) {
        int n = kiln_cpu_count();
        for (int i = 0; i < n && i < CPU_SETSIZE; i++) ids[total++] = i;
    }
    int limit = cgroup_cpu_limit();
    if (limit > 0 && limit < total) total = limit;
    if (s->opt.cpu_limit > 0 && s->opt.cpu_limit < total) total = s->opt.cpu_limit;
    s->cpus = malloc(sizeof(int32_t) * (size_t)total);
    s->cpu_use = calloc((size_t)total, sizeof(int32_t));
    if (!s->cpus || !s->cpu_use) return kiln_fail(err, KILN_ERR_NO_MEMORY, "serve: cpu table");
    memcpy(s->cpus, ids, sizeof(int32_t) * (size_t)total);
    s->n_cpus = total;
    return KILN_OK;
}

/* Takes the n least used cores, so instances get disjoint sets while cores
 * last and share the least loaded ones after. */
static void alloc_cpus(struct kiln_server *s, int n, int32_t *out) {
    pthread_mutex_lock(&s->cpu_lock);
    for (int k = 0; k < n; k++) {
        int best = -1;
        for (int i = 0; i < s->n_cpus; i++) {
            bool taken = false;
            for (int j = 0; j < k; j++) if (out[j] == s->cpus[i]) taken = true;
            if (!taken && (best < 0 || s->cpu_use[i] < s->cpu_use[best])) best = i;
        }
        if (best < 0) best = k % s->n_cpus;
        s->cpu_use[best]++;
        out[k] = s->cpus[best];
    }
    pthread_mutex_unlock(&s->cpu_lock);
}

static void free_cpus(struct kiln_server *s, int n, const int32_t *ids) {
    pthread_mutex_lock(&s->cpu_lock);
    for (int k = 0; k < n; k++)
        for (int i = 0; i < s->n_cpus; i++)
            if (s->cpus[i] == ids[k] && s->cpu_use[i] > 0) { s->cpu_use[i]--; break; }
    pthread_mutex_unlock(&s->cpu_lock);
}

/* ---- versions ------------------------------------------------------------------ */

static void version_free(struct srv_version *v) {
    if (!v) return;
    batcher_stop(v);
    /* calls between acquire and enqueue hold a reference for microseconds */
    while (atomic_load(&v->refs) > 0) {
        struct timespec ts = {0, 1000000};
        nanosleep(&ts, NULL);
    }
    for (int32_t i = 0; i < v->n_inst; i++) {
        struct srv_instance *in = &v->inst[i];
        kiln_session_free(in->sess);
        for (int k = 0; k < SRV_MAX_IO; k++) free(in->scratch[k]);
        free_cpus(v->srv, in->n_cpus, in->cpus);
    }
    free(v->inst);
    srv_config_free(&v->cfg);
    kiln_model_free(v->model);
    pthread_mutex_destroy(&v->qlock);
    pthread_cond_destroy(&v->qcond);
    free(v->name);
    free(v);
}

static kiln_status warm(struct srv_version *v, struct srv_instance *in, kiln_error *err) {
    const struct srv_config *c = &v->cfg;
    int32_t n_sizes = c->sig.max_batch_size > 0 ? c->n_run_sizes : 1;
    kiln_tensor ins[SRV_MAX_IO], outs[SRV_MAX_IO];
    void *bufs[SRV_MAX_IO] = {0};
    kiln_status st = KILN_OK;
    for (int32_t k = 0; k < n_sizes && !st; k++) {
        for (int32_t i = 0; i < c->sig.n_in && !st; i++) {
            const struct srv_io *io = &c->sig.in[i];
            kiln_tensor *t = &ins[i];
            memset(t, 0, sizeof *t);
            t->name = io->name;
            t->dtype = io->dtype;
            t->rank = io->rank;
            uint64_t elems = 1;
            for (int32_t d = 0; d < io->rank; d++) {
                t->dims[d] = io->dims[d] >= 0 ? io->dims[d] : 1;   /* free dims warm at 1 */
                if (d == 0 && c->sig.max_batch_size > 0) t->dims[0] = c->run_sizes[k];
                elems *= (uint64_t)t->dims[d];
            }
            t->nbytes = (size_t)(elems * kiln_dtype_size(io->dtype));
            free(bufs[i]);
            bufs[i] = calloc(1, t->nbytes + 1);
            if (!bufs[i]) st = kiln_fail(err, KILN_ERR_NO_MEMORY, "warmup input");
            t->data = bufs[i];
        }
        for (int32_t it = 0; it < c->warmup_iters && !st; it++) {
            st = kiln_session_run(in->sess, ins, c->sig.n_in, outs, c->sig.n_out, err);
            if (st)
                kiln_fail_prefix(err, st, "warmup of instance %d at batch size %lld", (int)in->index,
                                 (long long)(c->sig.max_batch_size > 0 ? c->run_sizes[k] : 0));
        }
    }
    for (int32_t i = 0; i < SRV_MAX_IO; i++) free(bufs[i]);
    if (!st) in->arena_bytes = kiln_session_arena_bytes(in->sess);
    return st;
}

/* Highest numeric version directory holding model.kiln or model.onnx; -1 if none. */
static int64_t pick_version(const char *dir, char *path, size_t path_size) {
    DIR *d = opendir(dir);
    if (!d) return -1;
    int64_t best = -1;
    struct dirent *e;
    while ((e = readdir(d))) {
        const char *n = e->d_name;
        if (!*n || strlen(n) > 18) continue;
        bool digits = true;
        for (const char *p = n; *p; p++) if (!isdigit((unsigned char)*p)) digits = false;
        if (!digits) continue;
        int64_t v = atoll(n);
        char p[4096];
        struct stat st;
        if (v <= best) continue;
        /* a compiled plan wins over the ONNX file it was made from */
        static const char *const files[] = {"model.kiln", "model.onnx"};
        for (int k = 0; k < 2; k++) {
            snprintf(p, sizeof p, "%s/%s/%s", dir, n, files[k]);
            if (stat(p, &st) == 0 && S_ISREG(st.st_mode)) {
                best = v;
                snprintf(path, path_size, "%s", p);
                break;
            }
        }
    }
    closedir(d);
    return best;
}

static kiln_status apply_precision(struct kiln_server *s, struct srv_version *v, const char *model_path,
                                   const char *cfg_path, kiln_error *err);

static kiln_status load_version(struct kiln_server *s, const char *name, struct srv_version **out,
                                kiln_error *err) {
    char dir[4096], model_path[4096], cfg_path[4200];
    snprintf(dir, sizeof dir, "%s/%s", s->repo_dir, name);
    struct stat sb;
    if (stat(dir, &sb) != 0 || !S_ISDIR(sb.st_mode))
        return kiln_fail(err, KILN_ERR_IO, "%s: no such model directory", dir);
    int64_t ver = pick_version(dir, model_path, sizeof model_path);
    if (ver < 0)
        return kiln_fail(err, KILN_ERR_IO, "%s: no version directory <N>/model.onnx (or model.kiln)", dir);
    snprintf(cfg_path, sizeof cfg_path, "%s/config.json", dir);

    struct srv_version *v = calloc(1, sizeof *v);
    if (!v) return kiln_fail(err, KILN_ERR_NO_MEMORY, "%s: version", dir);
    v->srv = s;
    v->name = strdup(name);
    v->version = ver;
    pthread_mutex_init(&v->qlock, NULL);
    pthread_condattr_t ca;
    pthread_condattr_init(&ca);
    pthread_condattr_setclock(&ca, CLOCK_MONOTONIC);   /* deadlines come from now_ns() */
    pthread_cond_init(&v->qcond, &ca);
    pthread_condattr_destroy(&ca);
    kiln_status st = kiln_model_load(model_path, NULL, &v->model, err);
    if (st) goto fail;
    st = srv_config_load(cfg_path, v->model, s->n_models_seen, s->n_cpus, &v->cfg, err);
    if (st) goto fail;
    st = apply_precision(s, v, model_path, cfg_path, err);
    if (st) goto fail;
    kiln_model_stats ms;
    if (kiln_model_stats_get(v->model, &ms) == KILN_OK) v->weight_bytes = (uint64_t)ms.param_bytes;
    v->n_inst = v->cfg.instance_count;
    v->inst = calloc((size_t)v->n_inst, sizeof *v->inst);
    if (!v->inst) { st = kiln_fail(err, KILN_ERR_NO_MEMORY, "%s: instances", dir); goto fail; }
    for (int32_t i = 0; i < v->n_inst; i++) {
        struct srv_instance *in = &v->inst[i];
        in->ver = v;
        in->index = i;
        in->n_cpus = v->cfg.cores_per_instance;
        alloc_cpus(s, in->n_cpus, in->cpus);
        kiln_session_options so = kiln_session_options_default();
        so.n_threads = in->n_cpus;   /* one thread per own core: no oversubscription */
        so.n_pin_cpus = in->n_cpus;
        memcpy(so.pin_cpus, in->cpus, sizeof(int32_t) * (size_t)in->n_cpus);
        st = kiln_session_create(v->model, &so, &in->sess, err);
        if (st) goto fail;
        st = warm(v, in, err);
        if (st) goto fail;
    }
    st = batcher_start(v, err);
    if (st) goto fail;
    *out = v;
    return KILN_OK;
fail:
    version_free(v);
    return st;
}

/* The config's precision against the model: a .kiln's precision was fixed by
 * kiln compile and must match (or be "auto"); an .onnx is served fp32, or
 * converted to bf16 here as kiln compile would (fp32 with a warning on a CPU
 * without bf16). int8 needs calibration data, so only a compiled plan. On
 * success cfg.precision holds what is actually served. */
static kiln_status apply_precision(struct kiln_server *s, struct srv_version *v, const char *model_path,
                                   const char *cfg_path, kiln_error *err) {
    char *want = v->cfg.precision;
    struct kiln_model *m = v->model;
    if (kiln_model_is_plan(m)) {
        const char *have = m->art.header.precision[0] ? m->art.header.precision : "fp32";
        if (strcmp(want, "auto") && strcmp(want, have))
            return kiln_fail(err, KILN_ERR_BAD_MODEL,
                             "%s: field 'precision': '%s', but %s was compiled at %s (a plan's precision "
                             "is fixed by kiln compile; use \"auto\" or recompile)",
                             cfg_path, want, model_path, have);
        snprintf(want, sizeof v->cfg.precision, "%s", have);
        return KILN_OK;
    }
    if (!strcmp(want, "auto") || !strcmp(want, "fp32")) {
        snprintf(want, sizeof v->cfg.precision, "fp32");
        return KILN_OK;
    }
    if (!strcmp(want, "int8"))
        return kiln_fail(err, KILN_ERR_BAD_MODEL,
                         "%s: field 'precision': int8 needs calibration: serve a plan made with "
                         "'kiln compile %s -o model.kiln --precision int8 --calibrate DIR' as "
                         "<version>/model.kiln",
                         cfg_path, model_path);
    if (!kiln_cpu_has_bf16()) {
        logf_(s, "%s: warning: bf16 is not supported on this CPU (%s): serving fp32", v->name,
              kiln_cpu_features_str());
        snprintf(want, sizeof v->cfg.precision, "fp32");
        return KILN_OK;
    }
    struct kiln_quant_stats qs;
    kiln_status st = kiln_convert_bf16(m->onnx.graph, &qs, err);
    if (st) return st;
    /* no session has packed a weight yet, so the weight cache needs no reset */
    logf_(s, "%s: bf16: %d Conv and %d Gemm/MatMul with bf16 weights", v->name, qs.convs, qs.matmuls);
    return KILN_OK;
}

/* ---- model table ------------------------------------------------------------------ */

static struct srv_model *find_model(struct kiln_server *s, const char *name) {
    for (struct srv_model *m = s->models; m; m = m->next)
        if (!strcmp(m->name, name)) return m;
    return NULL;
}

/* Caller holds repo_lock. */
static struct srv_model *get_model(struct kiln_server *s, const char *name) {
    struct srv_model *m = find_model(s, name);
    if (m) return m;
    m = calloc(1, sizeof *m);
    if (!m) return NULL;
    m->name = strdup(name);
    if (!m->name) { free(m); return NULL; }
    /* keep the list sorted by name: the index is stable */
    struct srv_model **pp = &s->models;
    while (*pp && strcmp((*pp)->name, name) < 0) pp = &(*pp)->next;
    m->next = *pp;
    *pp = m;
    return m;
}

struct srv_version *repo_acquire(struct kiln_server *s, const char *name, int64_t version,
                                 int *status, char *msg, size_t msg_size) {
    pthread_mutex_lock(&s->repo_lock);
    struct srv_model *m = find_model(s, name);
    struct srv_version *v = m ? m->live : NULL;
    if (!m) {
        *status = 404;
        snprintf(msg, msg_size, "unknown model '%s'", name);
    } else if (!v) {
        *status = 503;
        snprintf(msg, msg_size, "model '%s' is not ready (%s)%s%s", name,
                 m->state == MS_LOADING ? "loading" : "unavailable", m->reason[0] ? ": " : "", m->reason);
    } else if (version >= 0 && version != v->version) {
        *status = 404;
        snprintf(msg, msg_size, "model '%s' has no version %lld (serving version %lld)", name,
                 (long long)version, (long long)v->version);
        v = NULL;
    } else {
        atomic_fetch_add(&v->refs, 1);
    }
    pthread_mutex_unlock(&s->repo_lock);
    return v;
}

void repo_release(struct srv_version *v) { atomic_fetch_sub(&v->refs, 1); }

bool repo_all_ready(struct kiln_server *s) {
    bool ok = true;
    pthread_mutex_lock(&s->repo_lock);
    for (struct srv_model *m = s->models; m; m = m->next)
        if (!m->live) ok = false;
    pthread_mutex_unlock(&s->repo_lock);
    return ok;
}

static const char *state_name(enum model_state st) {
    switch (st) {
    case MS_LOADING: return "LOADING";
    case MS_READY: return "READY";
    case MS_UNAVAILABLE: return "UNAVAILABLE";
    default: return "UNKNOWN";
    }
}

void repo_index_json(struct kiln_server *s, bool ready_only, struct sbuf *b) {
    sb_puts(b, "[");
    bool first = true;
    pthread_mutex_lock(&s->repo_lock);
    for (struct srv_model *m = s->models; m; m = m->next) {
        if (ready_only && !m->live) continue;
        sb_puts(b, first ? "{\"name\":" : ",{\"name\":");
        first = false;
        sb_json_str(b, m->name);
        if (m->live) sb_printf(b, ",\"version\":\"%lld\"", (long long)m->live->version);
        sb_printf(b, ",\"state\":\"%s\",\"reason\":", m->live ? "READY" : state_name(m->state));
        sb_json_str(b, m->reason);
        sb_puts(b, "}");
    }
    pthread_mutex_unlock(&s->repo_lock);
    sb_puts(b, "]");
}

/* ---- control thread ------------------------------------------------------------------ */

static void finish_job(struct srv_job *j, int status, const char *msg) {
    if (j->call) {
        if (status == 200) call_set_response(j->call, 200, NULL, 0, 0);
        else call_set_error(j->call, status, "%s", msg);
        call_resume(j->call);
    }
    free(j->name);
    free(j);
}

static void do_load(struct kiln_server *s, struct srv_job *j) {
    char dir[4096];
    struct stat sb;
    snprintf(dir, sizeof dir, "%s/%s", s->repo_dir, j->name);
    if (stat(dir, &sb) != 0 || !S_ISDIR(sb.st_mode)) {
        /* no entry is made for a name the repository does not hold */
        char msg[4200];
        snprintf(msg, sizeof msg, "%s: no such model directory", dir);
        finish_job(j, 404, msg);
        return;
    }
    pthread_mutex_lock(&s->repo_lock);
    struct srv_model *m = get_model(s, j->name);
    if (m && !m->live) m->state = MS_LOADING;
    pthread_mutex_unlock(&s->repo_lock);
    if (!m) { finish_job(j, 500, "out of memory"); return; }
    kiln_error err = {0};
    struct srv_version *v = NULL;
    kiln_status st = load_version(s, j->name, &v, &err);
    struct srv_version *old = NULL;
    pthread_mutex_lock(&s->repo_lock);
    if (st) {
        /* a failed reload leaves the served version in place */
        if (!m->live) m->state = MS_UNAVAILABLE;
        snprintf(m->reason, sizeof m->reason, "%s", err.msg);
    } else {
        old = m->live;
        m->live = v;
        m->state = MS_READY;
        m->reason[0] = '\0';
    }
    pthread_mutex_unlock(&s->repo_lock);
    if (st) {
        logf_(s, "model '%s' failed to load: %s", j->name, err.msg);
        finish_job(j, st == KILN_ERR_IO && strstr(err.msg, "no such model directory") ? 404 : 400, err.msg);
        return;
    }
    logf_(s, "model '%s' version %lld ready (max_batch_size %lld, %d instance(s) x %d core(s))", j->name,
          (long long)v->version, (long long)v->cfg.sig.max_batch_size, v->n_inst, v->cfg.cores_per_instance);
    finish_job(j, 200, NULL);
    if (old) {
        logf_(s, "model '%s' version %lld retired", old->name, (long long)old->version);
        version_free(old);   /* drains its queue first */
    }
}

static void do_unload(struct kiln_server *s, struct srv_job *j) {
    pthread_mutex_lock(&s->repo_lock);
    struct srv_model *m = find_model(s, j->name);
    struct srv_version *old = m ? m->live : NULL;
    if (m) {
        m->live = NULL;
        m->state = MS_UNAVAILABLE;
        snprintf(m->reason, sizeof m->reason, "unloaded");
    }
    pthread_mutex_unlock(&s->repo_lock);
    if (!m) {
        char msg[256];
        snprintf(msg, sizeof msg, "unknown model '%s'", j->name);
        finish_job(j, 404, msg);
        return;
    }
    /* drain before answering: when unload returns, the old version is gone */
    version_free(old);
    logf_(s, "model '%s' unloaded", j->name);
    finish_job(j, 200, NULL);
}

static void *ctl_main(void *arg) {
    struct kiln_server *s = arg;
    pthread_mutex_lock(&s->job_lock);
    for (;;) {
        while (!s->jobs && !s->ctl_stop) pthread_cond_wait(&s->job_cond, &s->job_lock);
        if (s->ctl_stop) break;
        struct srv_job *j = s->jobs;
        s->jobs = j->next;
        pthread_mutex_unlock(&s->job_lock);
        if (j->kind == JOB_INITIAL) {
            atomic_store(&s->initial_done, 1);
            logf_(s, "initial repository load done");
            finish_job(j, 200, NULL);
        } else if (j->kind == JOB_LOAD) {
            do_load(s, j);
        } else {
            do_unload(s, j);
        }
        pthread_mutex_lock(&s->job_lock);
    }
    pthread_mutex_unlock(&s->job_lock);
    return NULL;
}

int repo_submit(struct kiln_server *s, enum job_kind k, const char *name, struct srv_call *c) {
    struct srv_job *j = calloc(1, sizeof *j);
    if (!j) return 500;
    j->kind = k;
    j->name = name ? strdup(name) : NULL;
    j->call = c;
    pthread_mutex_lock(&s->job_lock);
    if (s->ctl_stop || (c && atomic_load(&s->stopping))) {
        pthread_mutex_unlock(&s->job_lock);
        free(j->name);
        free(j);
        return 503;
    }
    if (c) MHD_suspend_connection(c->conn);   /* resumed by finish_job */
    struct srv_job **pp = &s->jobs;
    while (*pp) pp = &(*pp)->next;
    *pp = j;
    pthread_cond_signal(&s->job_cond);
    pthread_mutex_unlock(&s->job_lock);
    return 0;
}

void *cron_main(void *arg) {
    struct kiln_server *s = arg;
    unsigned tick = 0;
    while (!atomic_load(&s->cron_stop)) {
        struct timespec ts = {0, 5000000};
        nanosleep(&ts, NULL);
        int64_t now = now_ns();
        bool check_clients = (++tick % 10) == 0;   /* recv per queued call: every 50 ms */
        pthread_mutex_lock(&s->repo_lock);
        for (struct srv_model *m = s->models; m; m = m->next)
            if (m->live) batcher_sweep(m->live, now, check_clients);
        pthread_mutex_unlock(&s->repo_lock);
    }
    return NULL;
}

static int cmp_str(const void *a, const void *b) { return strcmp(*(char *const *)a, *(char *const *)b); }

kiln_status repo_start(struct kiln_server *s, kiln_error *err) {
    kiln_status st = init_cpus(s, err);
    if (st) return st;
    DIR *d = opendir(s->repo_dir);
    if (!d) return kiln_fail(err, KILN_ERR_IO, "%s: cannot open model repository: %s", s->repo_dir, strerror(errno));
    char *names[4096];
    int n = 0;
    struct dirent *e;
    while ((e = readdir(d)) && n < 4096) {
        if (e->d_name[0] == '.') continue;
        char p[4096];
        struct stat sb;
        snprintf(p, sizeof p, "%s/%s", s->repo_dir, e->d_name);
        if (stat(p, &sb) || !S_ISDIR(sb.st_mode)) continue;
        names[n] = strdup(e->d_name);
        if (names[n]) n++;
    }
    closedir(d);
    qsort(names, (size_t)n, sizeof names[0], cmp_str);
    s->n_models_seen = n;
    pthread_mutex_lock(&s->repo_lock);
    for (int i = 0; i < n; i++) {
        struct srv_model *m = get_model(s, names[i]);
        if (m) m->state = MS_LOADING;
    }
    pthread_mutex_unlock(&s->repo_lock);
    for (int i = 0; i < n; i++) {
        repo_submit(s, JOB_LOAD, names[i], NULL);
        free(names[i]);
    }
    repo_submit(s, JOB_INITIAL, NULL, NULL);
    if (pthread_create(&s->ctl_thread, NULL, ctl_main, s))
        return kiln_fail(err, KILN_ERR_INTERNAL, "serve: cannot start the control thread");
    if (pthread_create(&s->cron_thread, NULL, cron_main, s)) {
        pthread_mutex_lock(&s->job_lock);
        s->ctl_stop = true;
        pthread_cond_signal(&s->job_cond);
        pthread_mutex_unlock(&s->job_lock);
        pthread_join(s->ctl_thread, NULL);
        s->ctl_thread = 0;
        return kiln_fail(err, KILN_ERR_INTERNAL, "serve: cannot start the cron thread");
    }
    s->threads_started = true;
    return KILN_OK;
}

void repo_stop(struct kiln_server *s) {
    pthread_mutex_lock(&s->job_lock);
    s->ctl_stop = true;
    pthread_cond_signal(&s->job_cond);
    pthread_mutex_unlock(&s->job_lock);
    if (s->threads_started) {
        pthread_join(s->ctl_thread, NULL);
        atomic_store(&s->cron_stop, 1);
        pthread_join(s->cron_thread, NULL);
    }
    /* jobs never started: answer their callers */
    while (s->jobs) {
        struct srv_job *j = s->jobs;
        s->jobs = j->next;
        finish_job(j, 503, "server is shutting down");
    }
    pthread_mutex_lock(&s->repo_lock);
    struct srv_model *m = s->models;
    s->models = NULL;
    pthread_mutex_unlock(&s->repo_lock);
    while (m) {
        struct srv_model *next = m->next;
        version_free(m->live);
        free(m->name);
        free(m);
        m = next;
    }
}
