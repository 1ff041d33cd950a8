/*
 * batcher.c — one dynamic batcher per served version: a FIFO of suspended
 * calls and one worker thread per instance.
 *
 * A worker takes the oldest call and every later call whose non-batch dims
 * equal it, up to max_batch_size rows. It dispatches at once when the batch
 * is full or reaches a preferred size; otherwise it waits until the oldest
 * call has waited max_queue_delay_us. It then keeps only its share of the
 * queue (1/instances of the queued rows). Calls with other shapes stay queued in order. A
 * batch is trimmed to the largest warmed run size it fills; only when no
 * prefix fills one is it zero-padded up to the next. It runs on the
 * instance's session, and each call gets its own rows back.
 */
#include "serve/internal.h"
#include "base/status.h"

#include <errno.h>
#include <microhttpd.h>
#include <sched.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/socket.h>
#include <time.h>

static void q_unlink(struct srv_version *v, struct srv_call *c) {
    if (c->qprev) c->qprev->qnext = c->qnext; else v->qhead = c->qnext;
    if (c->qnext) c->qnext->qprev = c->qprev; else v->qtail = c->qprev;
    c->qnext = c->qprev = NULL;
    v->qlen--;
}

static void queue_full_msg(struct srv_version *v, char *msg, size_t msg_size) {
    snprintf(msg, msg_size, "model '%s' is overloaded: queue is full (%lld requests waiting); retry later",
             v->name, (long long)v->cfg.max_queue_size);
}

int batcher_refuse_if_full(struct srv_version *v, char *msg, size_t msg_size) {
    pthread_mutex_lock(&v->qlock);
    /* a closing version is left to the enqueue path, which retries on its successor */
    bool full = !v->closing && v->qlen >= v->cfg.max_queue_size;
    if (full) v->m.fail[FAIL_REJECTED]++;
    pthread_mutex_unlock(&v->qlock);
    if (!full) return 0;
    queue_full_msg(v, msg, msg_size);
    return 503;
}

int batcher_enqueue(struct srv_version *v, struct srv_call *c, char *msg, size_t msg_size) {
    pthread_mutex_lock(&v->qlock);
    if (v->closing) {
        pthread_mutex_unlock(&v->qlock);
        snprintf(msg, msg_size, "model '%s' version %lld is being unloaded", v->name, (long long)v->version);
        return 503;
    }
    if (v->qlen >= v->cfg.max_queue_size) {
        v->m.fail[FAIL_REJECTED]++;
        pthread_mutex_unlock(&v->qlock);
        queue_full_msg(v, msg, msg_size);
        return 503;
    }
    c->t_enqueue = now_ns();
    int64_t to = c->req->timeout_us ? c->req->timeout_us : v->cfg.default_timeout_us;
    c->deadline = to ? c->t_enqueue + to * 1000 : 0;
    c->state = CALL_QUEUED;
    /* suspend before the call becomes visible to workers, which resume it */
    MHD_suspend_connection(c->conn);
    c->qprev = v->qtail;
    c->qnext = NULL;
    if (v->qtail) v->qtail->qnext = c; else v->qhead = c;
    v->qtail = c;
    v->qlen++;
    pthread_cond_broadcast(&v->qcond);
    pthread_mutex_unlock(&v->qlock);
    return 0;
}

static bool same_shape(const struct kiln_serve_infer *a, const struct kiln_serve_infer *b) {
    for (int32_t i = 0; i < a->n_in; i++) {
        if (a->in[i].rank != b->in[i].rank) return false;
        for (int32_t d = 1; d < a->in[i].rank; d++)
            if (a->in[i].dims[d] != b->in[i].dims[d]) return false;
    }
    return true;
}

static int64_t run_size_for(const struct srv_config *c, int64_t rows);

/* (declared in internal.h) Two rules keep the tail short when compute time
 * grows about linearly with the batch, as on CPUs
 * (bench/serve/queue_model.py simulates the alternatives): a worker takes at
 * most its share of the queue, 1/n_inst of the queued rows, so batches grow
 * only once the queue is longer than the instances and the rest is left to
 * the next instance to free up; and a batch that is not a run size is trimmed
 * to the largest run size it fills, leaving the rest queued, rather than
 * padded up (5 rows padded to 8 cost 8 rows of compute). When to dispatch is
 * decided as before the cap: a full batch, a preferred size, or the delay. */
int batcher_form_batch(struct srv_version *v, int64_t now, struct srv_call **out, int64_t *rows_out,
                       int64_t *wait_until) {
    struct srv_call *head = v->qhead;
    int64_t mb = v->cfg.sig.max_batch_size;
    if (mb <= 0) {
        out[0] = head;
        *rows_out = 1;
        return 1;
    }
    int n = 0;
    int64_t rows = 0, queued_rows = 0;
    int64_t prefix_rows[4096 + 1];
    bool more_fit = false;
    for (struct srv_call *c = head; c && n < 4096; c = c->qnext) {
        if (c != head && !same_shape(head->req, c->req)) continue;
        queued_rows += c->req->batch;
        if (rows + c->req->batch > mb) { more_fit = true; continue; }
        if (more_fit) continue;                 /* keep counting the queue, take nothing more */
        out[n++] = c;
        rows += c->req->batch;
        prefix_rows[n] = rows;
        if (queued_rows >= mb * v->n_inst) break;
    }
    bool go = rows == mb || more_fit || v->closing || v->cfg.max_queue_delay_us == 0 ||
              now >= head->t_enqueue + v->cfg.max_queue_delay_us * 1000;
    if (!go && v->cfg.n_preferred) {
        /* the largest preferred size that a prefix of the batch fills exactly */
        for (int k = n; k >= 1 && !go; k--)
            for (int32_t p = 0; p < v->cfg.n_preferred; p++)
                if (prefix_rows[k] == v->cfg.preferred[p]) { n = k; rows = prefix_rows[k]; go = true; break; }
    }
    if (!go) {
        *wait_until = head->t_enqueue + v->cfg.max_queue_delay_us * 1000;
        return 0;
    }
    int64_t share = v->n_inst > 1 ? (queued_rows + v->n_inst - 1) / v->n_inst : mb;
    while (n > 1 && prefix_rows[n] > share) n--;   /* the head goes whole, even above the share */
    rows = prefix_rows[n];
    if (run_size_for(&v->cfg, rows) != rows)
        for (int k = n - 1; k >= 1; k--)
            if (run_size_for(&v->cfg, prefix_rows[k]) == prefix_rows[k]) {
                n = k;
                rows = prefix_rows[k];
                break;
            }
    *rows_out = rows;
    return n;
}

static int64_t run_size_for(const struct srv_config *c, int64_t rows) {
    for (int32_t i = 0; i < c->n_run_sizes; i++)
        if (c->run_sizes[i] >= rows) return c->run_sizes[i];
    return rows;
}

/* Scratch input i of at least `need` bytes, 64-byte aligned like kiln's own
 * buffers (contents are not kept). */
static void *grow(struct srv_instance *in, int i, size_t need) {
    if (in->scratch_cap[i] >= need) return in->scratch[i];
    need = (need + 63) & ~(size_t)63;
    void *p = aligned_alloc(64, need);
    if (!p) return NULL;
    free(in->scratch[i]);
    in->scratch[i] = p;
    in->scratch_cap[i] = need;
    return p;
}

static void execute(struct srv_instance *in, struct srv_call **calls, int n, int64_t rows) {
    struct srv_version *v = in->ver;
    const struct srv_config *cfg = &v->cfg;
    kiln_tensor ins[SRV_MAX_IO], outs[SRV_MAX_IO];
    kiln_error err = {0};
    int64_t t0 = now_ns();
    int64_t R = 1;
    kiln_status st = KILN_OK;
    if (cfg->sig.max_batch_size > 0) {
        R = run_size_for(cfg, rows);
        const struct kiln_serve_infer *h = calls[0]->req;
        for (int32_t i = 0; i < h->n_in && !st; i++) {
            ins[i] = h->in[i];
            size_t row_bytes = h->in[i].nbytes / (size_t)h->batch;
            uint8_t *buf = grow(in, i, row_bytes * (size_t)R + 1);
            if (!buf) { st = kiln_fail(&err, KILN_ERR_NO_MEMORY, "batch buffer"); break; }
            size_t off = 0;
            for (int k = 0; k < n; k++) {
                memcpy(buf + off, calls[k]->req->in[i].data, calls[k]->req->in[i].nbytes);
                off += calls[k]->req->in[i].nbytes;
            }
            memset(buf + off, 0, row_bytes * (size_t)R - off);
            ins[i].dims[0] = R;
            ins[i].data = buf;
            ins[i].nbytes = row_bytes * (size_t)R;
        }
    } else {
        const struct kiln_serve_infer *h = calls[0]->req;
        memcpy(ins, h->in, sizeof(kiln_tensor) * (size_t)h->n_in);
        /* binary tensors point into the body at any offset: align them */
        for (int32_t i = 0; i < h->n_in && !st; i++)
            if ((uintptr_t)ins[i].data % 64) {
                void *buf = grow(in, i, ins[i].nbytes + 1);
                if (!buf) { st = kiln_fail(&err, KILN_ERR_NO_MEMORY, "input buffer"); break; }
                memcpy(buf, ins[i].data, ins[i].nbytes);
                ins[i].data = buf;
            }
    }
    if (!st) st = kiln_session_run(in->sess, ins, cfg->sig.n_in, outs, cfg->sig.n_out, &err);
    if (st && n > 1) {
        /* a data-dependent failure must not fail the requests batched with
         * it: run each alone so only the offending one gets the error */
        for (int k = 0; k < n; k++) execute(in, &calls[k], 1, calls[k]->req->batch);
        return;
    }
    int64_t t1 = now_ns();
    int status[4096];
    int64_t row = 0;
    for (int k = 0; k < n; k++) {
        if (st) {
            status[k] = st == KILN_ERR_SHAPE || st == KILN_ERR_INVALID_ARG ? 400 : 500;
            call_set_error(calls[k], status[k], "inference failed: %s", err.msg);
        } else {
            status[k] = build_infer_response(v, calls[k], outs, row);
        }
        row += calls[k]->req->batch;
    }
    int64_t t2 = now_ns();
    uint64_t arena = kiln_session_arena_bytes(in->sess);
    pthread_mutex_lock(&v->qlock);
    struct srv_metrics *m = &v->m;
    in->busy_ns += (uint64_t)(t2 - t0);
    in->arena_bytes = arena;
    m->exec_count++;
    for (int32_t i = 0; i < cfg->n_run_sizes; i++)
        if (cfg->run_sizes[i] == R) { m->bs_exec[i]++; m->bs_ns[i] += (uint64_t)(t1 - t0); }
    hist_add(&m->batch_size, hist_bs_bounds, HIST_BS_BUCKETS, (double)rows);
    hist_add(&m->compute_us, hist_us_bounds, HIST_US_BUCKETS, (double)(t1 - t0) / 1e3);
    for (int k = 0; k < n; k++) {
        struct srv_call *c = calls[k];
        if (status[k] == 200) {
            m->success++;
            m->inference_count += (uint64_t)c->req->batch;
            m->queue_ns += (uint64_t)(t0 - c->t_enqueue);
            m->compute_ns += (uint64_t)(t1 - t0);
            m->request_ns += (uint64_t)(t2 - c->t_arrive);
            hist_add(&m->queue_us, hist_us_bounds, HIST_US_BUCKETS, (double)(t0 - c->t_enqueue) / 1e3);
            hist_add(&m->request_us, hist_us_bounds, HIST_US_BUCKETS, (double)(t2 - c->t_arrive) / 1e3);
        } else {
            m->fail[status[k] == 400 ? FAIL_INVALID : FAIL_BACKEND]++;
        }
    }
    struct timespec wall;
    clock_gettime(CLOCK_REALTIME, &wall);
    m->last_inference_ms = (int64_t)wall.tv_sec * 1000 + wall.tv_nsec / 1000000;
    v->executing -= n;
    pthread_mutex_unlock(&v->qlock);
    for (int k = 0; k < n; k++) call_resume(calls[k]);
}

static void *worker_main(void *arg) {
    struct srv_instance *in = arg;
    struct srv_version *v = in->ver;
    if (in->n_cpus > 0) {
        cpu_set_t set;
        CPU_ZERO(&set);
        for (int32_t i = 0; i < in->n_cpus; i++) CPU_SET(in->cpus[i], &set);
        pthread_setaffinity_np(pthread_self(), sizeof set, &set);
    }
    static __thread struct srv_call *calls[4096];
    pthread_mutex_lock(&v->qlock);
    for (;;) {
        while (!v->qhead && !v->closing) pthread_cond_wait(&v->qcond, &v->qlock);
        if (!v->qhead) break;    /* closing and drained */
        int64_t rows = 0, wait_until = 0;
        int n = batcher_form_batch(v, now_ns(), calls, &rows, &wait_until);
        if (!n) {
            struct timespec ts = {(time_t)(wait_until / 1000000000), (long)(wait_until % 1000000000)};
            pthread_cond_timedwait(&v->qcond, &v->qlock, &ts);
            continue;
        }
        for (int k = 0; k < n; k++) q_unlink(v, calls[k]);
        v->executing += n;
        /* what this batch left behind is for the other idle workers */
        if (v->qhead) pthread_cond_broadcast(&v->qcond);
        pthread_mutex_unlock(&v->qlock);
        execute(in, calls, n, rows);
        pthread_mutex_lock(&v->qlock);
    }
    pthread_mutex_unlock(&v->qlock);
    return NULL;
}

kiln_status batcher_start(struct srv_version *v, kiln_error *err) {
    for (int32_t i = 0; i < v->n_inst; i++) {
        if (pthread_create(&v->inst[i].thread, NULL, worker_main, &v->inst[i]))
            return kiln_fail(err, KILN_ERR_INTERNAL, "%s: cannot start worker thread %d", v->name, (int)i);
        v->inst[i].started = true;
    }
    return KILN_OK;
}

void batcher_stop(struct srv_version *v) {
    pthread_mutex_lock(&v->qlock);
    v->closing = true;
    pthread_cond_broadcast(&v->qcond);
    pthread_mutex_unlock(&v->qlock);
    for (int32_t i = 0; i < v->n_inst; i++)
        if (v->inst[i].started) {
            pthread_join(v->inst[i].thread, NULL);
            v->inst[i].started = false;
        }
}

/* A peer that closed its end reads as EOF; data or EAGAIN mean it is alive. */
static bool client_gone(int fd) {
    if (fd < 0) return false;
    char b;
    ssize_t r = recv(fd, &b, 1, MSG_PEEK | MSG_DONTWAIT);
    if (r == 0) return true;
    return r < 0 && errno != EAGAIN && errno != EWOULDBLOCK && errno != EINTR;
}

void batcher_sweep(struct srv_version *v, int64_t now, bool check_clients) {
    struct srv_call *done = NULL;
    pthread_mutex_lock(&v->qlock);
    for (struct srv_call *c = v->qhead, *next; c; c = next) {
        next = c->qnext;
        if (c->deadline && now >= c->deadline) {
            q_unlink(v, c);
            v->m.fail[FAIL_TIMEOUT]++;
            call_set_error(c, 504, "request timed out after %lld us in the queue of model '%s'",
                           (long long)((now - c->t_enqueue) / 1000), v->name);
        } else if (check_clients && client_gone(c->sock)) {
            q_unlink(v, c);
            v->m.fail[FAIL_CANCELED]++;
            call_set_error(c, 400, "client closed the connection");
        } else {
            continue;
        }
        c->qnext = done;
        done = c;
    }
    if (done) pthread_cond_broadcast(&v->qcond);   /* a waiting worker re-forms its batch */
    pthread_mutex_unlock(&v->qlock);
    while (done) {
        struct srv_call *next = done->qnext;
        done->qnext = NULL;
        call_resume(done);
        done = next;
    }
}
