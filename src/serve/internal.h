/*
 * internal.h — structures shared by the server's files.
 *
 * Ownership and locking, in one place:
 *  - server->repo_lock guards the list of models and each model's `live`
 *    version pointer. A request takes a reference on the version it resolved
 *    (ver->refs) and drops it once its response bytes are built; a retired
 *    version is freed by the control thread only after its workers have
 *    drained its queue and refs reached zero.
 *  - ver->qlock guards the version's queue and its metrics.
 *  - An HTTP call (struct srv_call) is owned by its connection; while it waits
 *    in a queue the connection is suspended and the call belongs to the
 *    batcher, which fills the response and resumes the connection.
 */
#ifndef KILN_SERVE_INTERNAL_H
#define KILN_SERVE_INTERNAL_H

#define _GNU_SOURCE
#include "serve/serve.h"

#include <pthread.h>
#include <stdatomic.h>
#include <stdbool.h>
#include <stddef.h>
#include <stdint.h>

struct MHD_Connection;
struct MHD_Daemon;

/* ---- strings ---------------------------------------------------------------- */

struct sbuf {                 /* growable byte buffer; oom sticks until freed */
    char  *p;
    size_t len, cap;
    bool   oom;
};
void sb_put(struct sbuf *b, const void *data, size_t n);
void sb_puts(struct sbuf *b, const char *s);
void sb_printf(struct sbuf *b, const char *fmt, ...) __attribute__((format(printf, 2, 3)));
void sb_json_str(struct sbuf *b, const char *s);   /* quoted, escaped */
void sb_free(struct sbuf *b);

/* ---- datatypes ---------------------------------------------------------------- */

const char *v2_dtype_name(kiln_dtype t);            /* "FP32"...; NULL if none */
kiln_dtype  v2_dtype_parse(const char *s);          /* KILN_DTYPE_UNDEFINED if unknown */
uint16_t    f32_to_f16(float f);
float       f16_to_f32(uint16_t h);
uint16_t    f32_to_bf16(float f);
float       bf16_to_f32(uint16_t h);
int64_t     now_ns(void);                           /* CLOCK_MONOTONIC */

/* ---- model signature and config ---------------------------------------------- */

struct srv_io {
    char      *name;
    kiln_dtype dtype;
    int32_t    rank;                  /* full rank (batch dim included when batched) */
    int64_t    dims[KILN_MAX_RANK];   /* -1: variable; dims[0] = -1 when batched */
};

#define SRV_MAX_RUN_SIZES 8           /* session plan cache holds 8 shapes */

struct kiln_serve_sig {
    int32_t        n_in, n_out;
    struct srv_io *in, *out;
    int64_t        max_batch_size;    /* 0: model does not batch; shapes are full */
};

struct srv_config {
    struct kiln_serve_sig sig;
    int64_t max_queue_delay_us;
    int64_t preferred[SRV_MAX_RUN_SIZES];
    int32_t n_preferred;
    int64_t max_queue_size;
    int64_t default_timeout_us;       /* 0: none */
    int32_t instance_count;
    int32_t cores_per_instance;       /* 0: share the cores left evenly */
    int32_t warmup_iters;             /* runs per batch size before ready; 0 = none */
    char    precision[16];
    /* batch sizes actually executed: a formed batch is zero-padded up to the
     * next one, so every executed shape has been warmed and stays cached */
    int64_t run_sizes[SRV_MAX_RUN_SIZES];
    int32_t n_run_sizes;
};

/* Reads dir/config.json (may be absent) and derives the rest from the model.
 * Errors name the file and the field. */
kiln_status srv_config_load(const char *config_path, const kiln_model *m, int n_models,
                            int usable_cores, struct srv_config *c, kiln_error *err);
void        srv_config_free(struct srv_config *c);
void        srv_sig_free_fields(struct kiln_serve_sig *s);
/* JSON text of the effective config (GET .../config). */
void        srv_config_json(const struct srv_config *c, const char *name, struct sbuf *b);

/* ---- parsed inference request -------------------------------------------------- */

struct srv_out_req {
    int32_t idx;                      /* index in sig.out */
    bool    binary;
};

struct kiln_serve_infer {
    char   *id;                       /* NULL if absent */
    int64_t batch;                    /* rows along dim 0; 1 for unbatched models */
    int64_t timeout_us;               /* 0: config default */
    kiln_tensor in[KILN_MAX_RANK * 4];/* model input order; data owned or into body */
    void   *owned[KILN_MAX_RANK * 4];
    int32_t n_in;
    struct srv_out_req out[KILN_MAX_RANK * 4];
    int32_t n_out;
};
#define SRV_MAX_IO (KILN_MAX_RANK * 4)

/* ---- metrics ---------------------------------------------------------------------- */

#define HIST_US_BUCKETS 18
#define HIST_BS_BUCKETS 10
struct hist {
    uint64_t count;
    double   sum;
    uint64_t b[HIST_US_BUCKETS + 1];  /* cumulative counts are made at render time */
};
extern const double hist_us_bounds[HIST_US_BUCKETS];
extern const double hist_bs_bounds[HIST_BS_BUCKETS];

enum fail_reason { FAIL_REJECTED, FAIL_TIMEOUT, FAIL_CANCELED, FAIL_BACKEND, FAIL_INVALID, FAIL_N };
extern const char *const fail_reason_name[FAIL_N];

struct srv_metrics {                  /* guarded by ver->qlock */
    uint64_t success, fail[FAIL_N];
    uint64_t inference_count, exec_count;
    uint64_t queue_ns, compute_ns, request_ns;     /* sums over successful requests */
    struct hist queue_us, compute_us, request_us, batch_size;
    uint64_t bs_exec[SRV_MAX_RUN_SIZES];          /* executions per run size */
    uint64_t bs_ns[SRV_MAX_RUN_SIZES];
    int64_t  last_inference_ms;                   /* wall clock */
};
void hist_add(struct hist *h, const double *bounds, int nb, double v);

/* ---- versions, instances, calls ---------------------------------------------------- */

struct srv_version;
struct srv_call;

struct srv_instance {
    struct srv_version *ver;
    int32_t       index;
    kiln_session *sess;
    pthread_t     thread;
    bool          started;
    int32_t       n_cpus;
    int32_t       cpus[KILN_MAX_PIN_CPUS];
    uint64_t      busy_ns;           /* guarded by ver->qlock */
    uint64_t      arena_bytes;
    /* scratch for batched inputs, grown as needed */
    void         *scratch[SRV_MAX_IO];
    size_t        scratch_cap[SRV_MAX_IO];
};

struct srv_version {
    struct kiln_server *srv;
    char          *name;
    int64_t        version;
    kiln_model    *model;
    struct srv_config cfg;
    uint64_t       weight_bytes;
    atomic_int     refs;             /* calls holding this version */
    pthread_mutex_t qlock;
    pthread_cond_t  qcond;
    struct srv_call *qhead, *qtail;  /* FIFO of waiting calls */
    int64_t        qlen;
    int64_t        executing;        /* calls taken by a worker, not yet answered */
    bool           closing;          /* no new calls; workers drain then exit */
    struct srv_instance *inst;
    int32_t        n_inst;
    struct srv_metrics m;
};

/* state of one HTTP request */
enum call_state { CALL_READING, CALL_QUEUED, CALL_DONE };

struct srv_call {
    struct kiln_server    *srv;
    struct MHD_Connection *conn;
    enum call_state        state;
    int                    route;
    char                   model[128];        /* from the URL */
    int64_t                version;           /* from the URL; -1 = latest */
    char                  *body;
    size_t                 body_len, body_cap, body_limit;
    bool                   too_big;
    /* inference */
    struct srv_version    *ver;      /* holds a reference while set */
    struct kiln_serve_infer *req;
    struct srv_call       *qnext, *qprev;
    int64_t                t_arrive, t_enqueue, deadline;   /* ns, monotonic */
    int                    sock;
    /* response */
    int                    status;
    char                  *resp;
    size_t                 resp_len;
    size_t                 resp_header_len;   /* > 0: binary response */
    bool                   counted;   /* registered in srv->active */
};

/* Picks the queued calls (out[], at most 4096) for one execution by the
 * calling worker and their row count, or returns 0 and the time (ns) to wait
 * until. Caller holds v->qlock; the calls stay queued (batcher.c). */
int batcher_form_batch(struct srv_version *v, int64_t now, struct srv_call **out,
                       int64_t *rows_out, int64_t *wait_until);

/* Store a response in the call (resp is malloc'ed and taken over). */
void call_set_response(struct srv_call *c, int status, char *resp, size_t len, size_t header_len);
void call_set_error(struct srv_call *c, int status, const char *fmt, ...)
    __attribute__((format(printf, 3, 4)));
/* Drops the call's version reference and resumes its suspended connection;
 * the call must not be touched afterwards (any thread). */
void call_resume(struct srv_call *c);

/* ---- batcher ---------------------------------------------------------------------- */

/* Suspends the call's connection and enqueues it; returns 0, or an HTTP
 * status (503) with msg filled when the call was not queued (and the
 * connection was not suspended). */
int  batcher_enqueue(struct srv_version *v, struct srv_call *c, char *msg, size_t msg_size);
/* 503 with msg filled (and the rejection counted) when the queue is full
 * now, else 0: lets a request be refused before its body is read. */
int  batcher_refuse_if_full(struct srv_version *v, char *msg, size_t msg_size);
kiln_status batcher_start(struct srv_version *v, kiln_error *err);
/* Closes the queue, lets workers drain it, joins them. */
void batcher_stop(struct srv_version *v);
/* Expires calls past their deadline and drops calls whose client went away. */
void batcher_sweep(struct srv_version *v, int64_t now, bool check_clients);
/* Stores the answer to an inference from the outputs of a run (rows
 * [row0, row0 + batch) of each); returns the HTTP status stored. */
int  build_infer_response(struct srv_version *v, struct srv_call *c, const kiln_tensor *outs,
                          int64_t row0);

/* ---- repository ---------------------------------------------------------------- */

enum model_state { MS_UNKNOWN, MS_LOADING, MS_READY, MS_UNAVAILABLE };

struct srv_model {
    char              *name;
    struct srv_version *live;       /* NULL when not served */
    enum model_state   state;
    char               reason[KILN_ERROR_MSG_MAX];
    struct srv_model  *next;
};

enum job_kind { JOB_LOAD, JOB_UNLOAD, JOB_INITIAL };
struct srv_job {
    enum job_kind     kind;
    char             *name;
    struct srv_call  *call;           /* resumed when done; NULL for initial loads */
    struct srv_job   *next;
};

struct kiln_server {
    struct kiln_server_options opt;
    char              *repo_dir;
    char              *host;
    struct MHD_Daemon *mhd;
    int                port;
    pthread_mutex_t    repo_lock;
    struct srv_model  *models;
    int                n_models_seen;
    /* cores */
    pthread_mutex_t    cpu_lock;
    int32_t            n_cpus;
    int32_t           *cpus;          /* usable cpu ids */
    int32_t           *cpu_use;       /* instances pinned on each */
    /* control thread: loads and unloads, one at a time */
    pthread_t          ctl_thread;
    pthread_mutex_t    job_lock;
    pthread_cond_t     job_cond;
    struct srv_job    *jobs;
    bool               ctl_stop;
    atomic_int         initial_done;
    /* cron thread: deadlines and dropped clients */
    pthread_t          cron_thread;
    /* accepted calls not yet completed; shutdown waits for zero */
    atomic_int         active;
    /* inference responses by outcome (struct kiln_server_totals) */
    atomic_uint_least64_t infer_ok, infer_rejected, infer_other;
    atomic_int         stopping;
    atomic_int         cron_stop;
    bool               threads_started;
};

/* Resolves name (and version, -1 = latest) to a live version holding a
 * reference; NULL with an HTTP status and message otherwise. */
struct srv_version *repo_acquire(struct kiln_server *s, const char *name, int64_t version,
                                 int *status, char *msg, size_t msg_size);
void repo_release(struct srv_version *v);
int  repo_submit(struct kiln_server *s, enum job_kind k, const char *name, struct srv_call *c);
void repo_index_json(struct kiln_server *s, bool ready_only, struct sbuf *b);
kiln_status repo_start(struct kiln_server *s, kiln_error *err);
void repo_stop(struct kiln_server *s);
bool repo_all_ready(struct kiln_server *s);
void *cron_main(void *arg);

/* ---- metrics rendering -------------------------------------------------------- */

void metrics_prometheus(struct kiln_server *s, struct sbuf *b);
/* JSON statistics for one model (name non-NULL) or all; returns HTTP status. */
int  metrics_stats_json(struct kiln_server *s, const char *name, int64_t version,
                        struct sbuf *b, char *msg, size_t msg_size);
void metrics_record_fail(struct srv_version *v, enum fail_reason r);

#endif
