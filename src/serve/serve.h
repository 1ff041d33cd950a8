/*
 * serve.h — the inference server behind `kiln serve` (internal API).
 *
 * A server owns: a model repository (DIR/<model>/[config.json], DIR/<model>/<N>/model.onnx),
 * one dynamic batcher per served model version, one worker thread and one
 * kiln_session per instance (all instances of a version share one kiln_model),
 * and a libmicrohttpd daemon speaking KServe v2 REST with Triton's binary
 * tensor extension. The HTTP threads parse, validate, enqueue and suspend the
 * connection; they never run a model. No global state: tests may start two
 * servers in one process.
 */
#ifndef KILN_SERVE_SERVE_H
#define KILN_SERVE_SERVE_H

#include "kiln.h"

#include <stdint.h>

struct kiln_server;

struct kiln_server_options {
    const char *repo_dir;          /* model repository (required) */
    const char *host;              /* bind address; NULL = 127.0.0.1 */
    int         port;              /* 0 = any free port (see kiln_server_port) */
    int         http_threads;      /* libmicrohttpd pool size; 0 = 2 */
    uint64_t    max_body_bytes;    /* largest request body; 0 = 64 MiB */
    uint64_t    max_tensor_elems;  /* largest tensor in a request; 0 = 2^26 */
    unsigned    max_connections;   /* 0 = 1024 */
    unsigned    conn_timeout_s;    /* idle connection timeout; 0 = 60 */
    int         cpu_limit;         /* cores to use; 0 = affinity mask and cgroup quota */
    int         quiet;             /* 1: no load/unload log lines on stderr */
};

void kiln_server_options_init(struct kiln_server_options *o);

/* Starts the HTTP daemon and begins loading every model of the repository in
 * the background; GET /v2/health/ready answers 200 once the initial loads are
 * done (a model that fails to load is reported in the index, and does not
 * stop the others). */
kiln_status kiln_server_start(const struct kiln_server_options *o, struct kiln_server **out,
                              kiln_error *err);
int  kiln_server_port(const struct kiln_server *s);
/* 1 once the initial repository load has finished. */
int  kiln_server_initial_load_done(struct kiln_server *s);
/* Stops accepting, finishes every accepted request (waiting at most grace_s
 * seconds), stops workers and frees everything. Returns the number of
 * accepted requests that were still unfinished at the deadline (0 = clean). */
int  kiln_server_shutdown(struct kiln_server *s, double grace_s);

/* What a server did, for the shutdown report: inference responses fully
 * sent, by outcome, and the requests in progress when shutdown began. */
struct kiln_server_totals {
    uint64_t infer_ok;          /* 200 responses to inference requests, delivered */
    uint64_t infer_rejected;    /* 503 responses to inference requests */
    uint64_t infer_other;       /* any other status, or a response that was not delivered */
    int      active_at_stop;    /* requests accepted and unfinished when shutdown began */
};
/* kiln_server_shutdown that also fills *t (when not NULL) once every
 * accepted request has finished or the grace time has passed. */
int  kiln_server_shutdown_totals(struct kiln_server *s, double grace_s, struct kiln_server_totals *t);

/* ---- request parsing, exposed for the fuzzer and unit tests --------------- */

struct kiln_serve_sig;      /* a model's served inputs/outputs and batching limit */
struct kiln_serve_infer;    /* a parsed inference request */

/* A signature for tests: n inputs/outputs of the given dtype and dims (dims[0]
 * = -1 when max_batch_size > 0). */
struct kiln_serve_sig *kiln_serve_sig_new_simple(int n_in, int n_out, kiln_dtype dt, int rank,
                                                 const int64_t *dims, int64_t max_batch_size);
void kiln_serve_sig_free(struct kiln_serve_sig *sig);

/* Parses a request body (JSON header of header_len bytes, then binary tensor
 * data; header_len == len when there is no binary data). Returns the HTTP
 * status: 200 with *out set, else 400 (or 413) with msg filled. */
int  kiln_serve_parse_infer(const struct kiln_serve_sig *sig, const char *body, size_t len,
                            size_t header_len, uint64_t max_tensor_elems,
                            struct kiln_serve_infer **out, char *msg, size_t msg_size);
void kiln_serve_infer_free(struct kiln_serve_infer *r);

#endif
