/*
 * http.c — the libmicrohttpd front end: routes, request bodies, responses,
 * server start and shutdown.
 *
 * The daemon runs an internal epoll thread pool with suspend/resume. An
 * access-handler call does bounded work only: route, check sizes, parse and
 * validate, then either answer at once or hand the call to a batcher (or the
 * control thread) and suspend the connection. Whoever finishes the call
 * stores the response and resumes it; MHD then calls the handler again and
 * the stored response is queued. No thread waits per request.
 */
#include "serve/internal.h"
#include "base/status.h"

#include <arpa/inet.h>
#include <microhttpd.h>
#include <json-c/json.h>
#include <stdarg.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <time.h>
#include <unistd.h>

#define SMALL_BODY_LIMIT (1u << 20)   /* control endpoints */

enum route {
    R_NONE, R_LIVE, R_READY, R_SERVER_META, R_MODEL_META, R_MODEL_READY, R_INFER, R_STATS,
    R_ALL_STATS, R_CONFIG, R_REPO_INDEX, R_REPO_LOAD, R_REPO_UNLOAD, R_METRICS,
};

void kiln_server_options_init(struct kiln_server_options *o) {
    memset(o, 0, sizeof *o);
}

/* ---- responses ------------------------------------------------------------ */

void call_set_response(struct srv_call *c, int status, char *resp, size_t len, size_t header_len) {
    free(c->resp);
    c->status = status;
    c->resp = resp;
    c->resp_len = len;
    c->resp_header_len = header_len;
}

void call_set_error(struct srv_call *c, int status, const char *fmt, ...) {
    char msg[KILN_ERROR_MSG_MAX + 128];
    va_list ap;
    va_start(ap, fmt);
    vsnprintf(msg, sizeof msg, fmt, ap);
    va_end(ap);
    struct sbuf b = {0};
    sb_puts(&b, "{\"error\":");
    sb_json_str(&b, msg);
    sb_puts(&b, "}");
    if (b.oom) { sb_free(&b); call_set_response(c, status, NULL, 0, 0); return; }
    call_set_response(c, status, b.p, b.len, 0);
}

void call_resume(struct srv_call *c) {
    if (c->ver) {
        repo_release(c->ver);
        c->ver = NULL;
    }
    c->state = CALL_DONE;
    MHD_resume_connection(c->conn);
}

static void set_json(struct srv_call *c, int status, struct sbuf *b) {
    if (b->oom) { sb_free(b); call_set_error(c, 500, "out of memory"); return; }
    call_set_response(c, status, b->p, b->len, 0);
    b->p = NULL;
    b->len = b->cap = 0;
}

static enum MHD_Result send_stored(struct srv_call *c) {
    struct MHD_Response *r;
    if (c->resp_len) {
        r = MHD_create_response_from_buffer(c->resp_len, c->resp, MHD_RESPMEM_MUST_FREE);
        if (r) c->resp = NULL;
    } else {
        r = MHD_create_response_from_buffer(0, (void *)"", MHD_RESPMEM_PERSISTENT);
    }
    if (!r) return MHD_NO;
    if (c->route == R_METRICS && c->status == 200)
        MHD_add_response_header(r, MHD_HTTP_HEADER_CONTENT_TYPE, "text/plain; version=0.0.4");
    else if (c->resp_header_len) {
        char n[32];
        snprintf(n, sizeof n, "%zu", c->resp_header_len);
        MHD_add_response_header(r, "Inference-Header-Content-Length", n);
        MHD_add_response_header(r, MHD_HTTP_HEADER_CONTENT_TYPE, "application/octet-stream");
    } else if (c->resp_len)
        MHD_add_response_header(r, MHD_HTTP_HEADER_CONTENT_TYPE, "application/json");
    if (c->status == 405)
        MHD_add_response_header(r, MHD_HTTP_HEADER_ALLOW,
                                c->route == R_INFER || c->route >= R_REPO_INDEX ? "POST" : "GET");
    /* during shutdown a kept-alive connection must not carry new requests */
    if (atomic_load(&c->srv->stopping) || c->too_big)
        MHD_add_response_header(r, MHD_HTTP_HEADER_CONNECTION, "close");
    enum MHD_Result ret = MHD_queue_response(c->conn, (unsigned)c->status, r);
    MHD_destroy_response(r);
    return ret;
}

/* ---- routing ------------------------------------------------------------------ */

static bool valid_name(const char *s, size_t n) {
    if (n == 0 || n >= 128 || (n == 1 && s[0] == '.') || (n == 2 && s[0] == '.' && s[1] == '.'))
        return false;
    for (size_t i = 0; i < n; i++) {
        char ch = s[i];
        if (!((ch >= 'a' && ch <= 'z') || (ch >= 'A' && ch <= 'Z') || (ch >= '0' && ch <= '9') ||
              ch == '_' || ch == '-' || ch == '.'))
            return false;
    }
    return true;
}

/* Splits url into at most 8 segments; returns the count or -1. */
static int split(const char *url, const char **seg, size_t *len) {
    int n = 0;
    const char *p = url;
    while (*p == '/') p++;
    while (*p) {
        if (n == 8) return -1;
        const char *q = strchr(p, '/');
        size_t l = q ? (size_t)(q - p) : strlen(p);
        seg[n] = p;
        len[n++] = l;
        p += l;
        while (*p == '/') p++;
    }
    return n;
}

static bool seg_is(const char *s, size_t n, const char *lit) { return strlen(lit) == n && !memcmp(s, lit, n); }

/* Sets c->route and the model/version; returns 0, 404 or 405, with the
 * error stored in the call. */
static int route(struct srv_call *c, const char *url, const char *method) {
    const char *seg[8];
    size_t len[8];
    int n = split(url, seg, len);
    bool get = !strcmp(method, "GET") || !strcmp(method, "HEAD"), post = !strcmp(method, "POST");
    int want_post = 0;
    c->version = -1;
    if (n == 1 && seg_is(seg[0], len[0], "metrics")) c->route = R_METRICS;
    else if (n >= 1 && seg_is(seg[0], len[0], "v2")) {
        if (n == 1) c->route = R_SERVER_META;
        else if (n == 3 && seg_is(seg[1], len[1], "health")) {
            if (seg_is(seg[2], len[2], "live")) c->route = R_LIVE;
            else if (seg_is(seg[2], len[2], "ready")) c->route = R_READY;
        } else if (n == 3 && seg_is(seg[1], len[1], "repository") && seg_is(seg[2], len[2], "index")) {
            c->route = R_REPO_INDEX; want_post = 1;
        } else if (n == 5 && seg_is(seg[1], len[1], "repository") && seg_is(seg[2], len[2], "models")) {
            if (!valid_name(seg[3], len[3])) goto bad_name;
            memcpy(c->model, seg[3], len[3]);
            c->model[len[3]] = '\0';
            if (seg_is(seg[4], len[4], "load")) c->route = R_REPO_LOAD;
            else if (seg_is(seg[4], len[4], "unload")) c->route = R_REPO_UNLOAD;
            want_post = 1;
        } else if (n == 3 && seg_is(seg[1], len[1], "models") && seg_is(seg[2], len[2], "stats")) {
            c->route = R_ALL_STATS;
        } else if (n >= 3 && seg_is(seg[1], len[1], "models")) {
            if (!valid_name(seg[2], len[2])) goto bad_name;
            memcpy(c->model, seg[2], len[2]);
            c->model[len[2]] = '\0';
            int k = 3;
            if (n >= 5 && seg_is(seg[3], len[3], "versions")) {
                char tmp[24];
                if (len[4] == 0 || len[4] > 18) goto bad_version;
                memcpy(tmp, seg[4], len[4]);
                tmp[len[4]] = '\0';
                char *end;
                long long v = strtoll(tmp, &end, 10);
                if (*end || v < 0 || tmp[0] == '-' || tmp[0] == '+') goto bad_version;
                c->version = v;
                k = 5;
            }
            if (n == k) c->route = R_MODEL_META;
            else if (n == k + 1) {
                if (seg_is(seg[k], len[k], "ready")) c->route = R_MODEL_READY;
                else if (seg_is(seg[k], len[k], "infer")) { c->route = R_INFER; want_post = 1; }
                else if (seg_is(seg[k], len[k], "stats")) c->route = R_STATS;
                else if (seg_is(seg[k], len[k], "config")) c->route = R_CONFIG;
            }
        }
    }
    if (c->route == R_NONE) {
        call_set_error(c, 404, "unknown endpoint %s %s", method, url);
        return 404;
    }
    if ((want_post && !post) || (!want_post && !get)) {
        call_set_error(c, 405, "%s is not allowed on %s", method, url);
        return 405;
    }
    return 0;
bad_name:
    call_set_error(c, 400, "invalid model name in %s (letters, digits, '_', '-', '.')", url);
    return 400;
bad_version:
    call_set_error(c, 400, "invalid model version in %s: versions are non-negative integers", url);
    return 400;
}

/* ---- handlers ------------------------------------------------------------------- */

static void do_model_meta(struct srv_call *c, struct srv_version *v) {
    struct sbuf b = {0};
    sb_puts(&b, "{\"name\":");
    sb_json_str(&b, v->name);
    sb_printf(&b, ",\"versions\":[\"%lld\"],\"platform\":\"onnx_onnxv1\"", (long long)v->version);
    const struct kiln_serve_sig *sig = &v->cfg.sig;
    for (int k = 0; k < 2; k++) {
        const struct srv_io *ios = k ? sig->out : sig->in;
        int32_t n = k ? sig->n_out : sig->n_in;
        sb_puts(&b, k ? ",\"outputs\":[" : ",\"inputs\":[");
        for (int32_t i = 0; i < n; i++) {
            const char *dt = v2_dtype_name(ios[i].dtype);
            sb_puts(&b, i ? ",{\"name\":" : "{\"name\":");
            sb_json_str(&b, ios[i].name);
            sb_printf(&b, ",\"datatype\":\"%s\",\"shape\":[", dt ? dt : "UNSUPPORTED");
            if (ios[i].rank < 0) sb_puts(&b, "-1");
            for (int32_t d = 0; d < ios[i].rank; d++)
                sb_printf(&b, "%s%lld", d ? "," : "", (long long)ios[i].dims[d]);
            sb_puts(&b, "]}");
        }
        sb_puts(&b, "]");
    }
    sb_puts(&b, "}");
    set_json(c, 200, &b);
}

/* Returns true when the call was handed off (connection suspended). */
static bool do_infer(struct srv_call *c) {
    struct kiln_server *s = c->srv;
    char msg[KILN_ERROR_MSG_MAX];
    int status = 0;
    struct srv_version *v = repo_acquire(s, c->model, c->version, &status, msg, sizeof msg);
    if (!v) { call_set_error(c, status, "%s", msg); return false; }
    size_t header_len = c->body_len;
    const char *hl = MHD_lookup_connection_value(c->conn, MHD_HEADER_KIND, "Inference-Header-Content-Length");
    if (hl) {
        char *end;
        unsigned long long x = strtoull(hl, &end, 10);
        if (*end || !*hl || hl[0] == '-' || x > c->body_len) {
            repo_release(v);
            call_set_error(c, 400, "Inference-Header-Content-Length '%s' is not a length within the %zu-byte body",
                           hl, c->body_len);
            return false;
        }
        header_len = (size_t)x;
    }
    status = kiln_serve_parse_infer(&v->cfg.sig, c->body ? c->body : "", c->body_len, header_len,
                                    s->opt.max_tensor_elems, &c->req, msg, sizeof msg);
    if (status != 200) {
        metrics_record_fail(v, FAIL_INVALID);
        repo_release(v);
        call_set_error(c, status, "%s", msg);
        return false;
    }
    const union MHD_ConnectionInfo *ci = MHD_get_connection_info(c->conn, MHD_CONNECTION_INFO_CONNECTION_FD);
    c->sock = ci ? ci->connect_fd : -1;
    /* a reload may retire the version between acquire and enqueue: retry on the new one */
    for (int attempt = 0;; attempt++) {
        c->ver = v;
        status = batcher_enqueue(v, c, msg, sizeof msg);   /* suspends on success */
        if (!status) return true;
        c->ver = NULL;
        bool closing = status == 503 && v->closing;
        repo_release(v);
        if (!closing || attempt) break;
        v = repo_acquire(s, c->model, c->version, &status, msg, sizeof msg);
        if (!v) break;
    }
    call_set_error(c, status, "%s", msg);
    return false;
}

/* Answers the call now, or hands it off; true when handed off. */
static bool dispatch(struct srv_call *c) {
    struct kiln_server *s = c->srv;
    struct sbuf b = {0};
    char msg[KILN_ERROR_MSG_MAX];
    int status = 0;
    switch (c->route) {
    case R_LIVE:
        sb_puts(&b, "{\"live\":true}");
        set_json(c, 200, &b);
        return false;
    case R_READY: {
        bool ready = atomic_load(&s->initial_done) && !atomic_load(&s->stopping);
        sb_printf(&b, "{\"ready\":%s}", ready ? "true" : "false");
        set_json(c, ready ? 200 : 503, &b);
        return false;
    }
    case R_SERVER_META:
        sb_printf(&b, "{\"name\":\"kiln\",\"version\":\"%s\",\"extensions\":[\"binary_tensor_data\","
                      "\"model_repository\",\"statistics\",\"schedule_policy\",\"model_configuration\"]}",
                  kiln_version());
        set_json(c, 200, &b);
        return false;
    case R_MODEL_META:
    case R_CONFIG:
    case R_MODEL_READY: {
        struct srv_version *v = repo_acquire(s, c->model, c->version, &status, msg, sizeof msg);
        if (c->route == R_MODEL_READY && (v || status == 503)) {
            sb_puts(&b, "{\"name\":");
            sb_json_str(&b, c->model);
            sb_printf(&b, ",\"ready\":%s}", v ? "true" : "false");
            set_json(c, v ? 200 : 503, &b);
        } else if (!v) {
            call_set_error(c, status, "%s", msg);
        } else if (c->route == R_CONFIG) {
            srv_config_json(&v->cfg, v->name, &b);
            set_json(c, 200, &b);
        } else {
            do_model_meta(c, v);
        }
        if (v) repo_release(v);
        return false;
    }
    case R_INFER:
        return do_infer(c);
    case R_STATS:
    case R_ALL_STATS:
        status = metrics_stats_json(s, c->route == R_STATS ? c->model : NULL, c->version, &b, msg, sizeof msg);
        if (status == 200) set_json(c, 200, &b);
        else { sb_free(&b); call_set_error(c, status, "%s", msg); }
        return false;
    case R_METRICS:
        metrics_prometheus(s, &b);
        set_json(c, 200, &b);
        return false;
    case R_REPO_INDEX: {
        bool ready_only = false;
        if (c->body_len) {
            json_tokener *tok = json_tokener_new();
            json_object *o = tok ? json_tokener_parse_ex(tok, c->body, (int)c->body_len) : NULL;
            bool ok = o && json_tokener_get_error(tok) == json_tokener_success &&
                      json_object_is_type(o, json_type_object);
            json_object *r = NULL;
            if (ok && json_object_object_get_ex(o, "ready", &r)) {
                if (json_object_is_type(r, json_type_boolean)) ready_only = json_object_get_boolean(r);
                else ok = false;
            }
            json_object_put(o);
            if (tok) json_tokener_free(tok);
            if (!ok) {
                call_set_error(c, 400, "repository index body must be a JSON object like {\"ready\": true}");
                return false;
            }
        }
        repo_index_json(s, ready_only, &b);
        set_json(c, 200, &b);
        return false;
    }
    case R_REPO_LOAD:
    case R_REPO_UNLOAD:
        status = repo_submit(s, c->route == R_REPO_LOAD ? JOB_LOAD : JOB_UNLOAD, c->model, c);
        if (!status) return true;   /* suspended */
        call_set_error(c, status, "cannot %s '%s' now: the server is shutting down",
                       c->route == R_REPO_LOAD ? "load" : "unload", c->model);
        return false;
    default:
        call_set_error(c, 500, "unrouted request");
        return false;
    }
}

/* Before the body is read: an inference for an unknown or unready model, or
 * one whose queue is full, is answered now. The body is then read and
 * dropped as it arrives (never stored or parsed), so refusing costs little
 * under overload and the connection stays usable. */
static bool infer_refused_early(struct srv_call *c) {
    char msg[KILN_ERROR_MSG_MAX];
    int status = 0;
    struct srv_version *v = repo_acquire(c->srv, c->model, c->version, &status, msg, sizeof msg);
    if (v) {
        status = batcher_refuse_if_full(v, msg, sizeof msg);
        repo_release(v);
    }
    if (!status) return false;
    call_set_error(c, status, "%s", msg);
    return true;
}

static enum MHD_Result on_request(void *cls, struct MHD_Connection *conn, const char *url,
                                  const char *method, const char *version, const char *upload,
                                  size_t *upload_size, void **con_cls) {
    struct kiln_server *s = cls;
    struct srv_call *c = *con_cls;
    if (!c) {
        c = calloc(1, sizeof *c);
        if (!c) return MHD_NO;
        c->srv = s;
        c->conn = conn;
        c->sock = -1;
        c->t_arrive = now_ns();
        c->counted = true;
        atomic_fetch_add(&s->active, 1);
        *con_cls = c;
        if (route(c, url, method)) return MHD_YES;
        if (atomic_load(&s->stopping)) {
            /* the route is kept: an inference refused here counts as rejected */
            call_set_error(c, 503, "server is shutting down");
            return MHD_YES;
        }
        c->body_limit = c->route == R_INFER ? s->opt.max_body_bytes : SMALL_BODY_LIMIT;
        const char *cl = MHD_lookup_connection_value(conn, MHD_HEADER_KIND, MHD_HTTP_HEADER_CONTENT_LENGTH);
        if (cl) {
            unsigned long long n = strtoull(cl, NULL, 10);
            if (n > c->body_limit) {
                /* refuse before reading a byte of it */
                c->too_big = true;
                call_set_error(c, 413, "request body of %llu bytes exceeds the limit of %zu bytes", n, c->body_limit);
                return send_stored(c);
            }
        }
        if (c->route == R_INFER && infer_refused_early(c)) return MHD_YES;
        if (cl) {
            unsigned long long n = strtoull(cl, NULL, 10);
            size_t first = n < (1u << 20) ? (size_t)n : (1u << 20);
            c->body = malloc(first + 1);
            if (!c->body) return MHD_NO;
            c->body_cap = first + 1;
        }
        return MHD_YES;
    }
    if (*upload_size) {
        size_t n = *upload_size;
        *upload_size = 0;
        if (c->status || c->too_big) return MHD_YES;   /* answered already: discard */
        if (n > c->body_limit - c->body_len) {
            c->too_big = true;
            call_set_error(c, 413, "request body exceeds the limit of %zu bytes", c->body_limit);
            return MHD_YES;
        }
        if (c->body_len + n + 1 > c->body_cap) {
            size_t cap = c->body_cap ? c->body_cap : 4096;
            while (cap < c->body_len + n + 1) cap *= 2;
            char *p = realloc(c->body, cap);
            if (!p) { call_set_error(c, 500, "out of memory reading the body"); return MHD_YES; }
            c->body = p;
            c->body_cap = cap;
        }
        memcpy(c->body + c->body_len, upload, n);
        c->body_len += n;
        return MHD_YES;
    }
    if (c->state == CALL_QUEUED) return MHD_YES;   /* spurious: still waiting */
    if (c->state == CALL_DONE || c->status) return send_stored(c);
    if (dispatch(c)) return MHD_YES;
    return send_stored(c);
}

static void on_completed(void *cls, struct MHD_Connection *conn, void **con_cls,
                         enum MHD_RequestTerminationCode toe) {
    struct kiln_server *s = cls;
    struct srv_call *c = *con_cls;
    if (!c) return;
    *con_cls = NULL;
    if (c->route == R_INFER) {
        bool sent = toe == MHD_REQUEST_TERMINATED_COMPLETED_OK;
        atomic_uint_least64_t *n = !sent ? &s->infer_other
                                   : c->status == 200 ? &s->infer_ok
                                   : c->status == 503 ? &s->infer_rejected : &s->infer_other;
        atomic_fetch_add(n, 1);
    }
    kiln_serve_infer_free(c->req);
    free(c->body);
    free(c->resp);
    if (c->counted) atomic_fetch_sub(&s->active, 1);
    free(c);
}

/* ---- lifecycle ------------------------------------------------------------------ */

kiln_status kiln_server_start(const struct kiln_server_options *o, struct kiln_server **out,
                              kiln_error *err) {
    *out = NULL;
    if (!o || !o->repo_dir) return kiln_fail(err, KILN_ERR_INVALID_ARG, "serve: no model repository");
    struct kiln_server *s = calloc(1, sizeof *s);
    if (!s) return kiln_fail(err, KILN_ERR_NO_MEMORY, "serve: server");
    s->opt = *o;
    if (!s->opt.http_threads) s->opt.http_threads = 4;
    if (!s->opt.max_body_bytes) s->opt.max_body_bytes = 64u << 20;
    if (!s->opt.max_tensor_elems) s->opt.max_tensor_elems = 1u << 26;
    if (!s->opt.max_connections) s->opt.max_connections = 1024;
    if (!s->opt.conn_timeout_s) s->opt.conn_timeout_s = 60;
    s->repo_dir = strdup(o->repo_dir);
    s->host = strdup(o->host ? o->host : "127.0.0.1");
    pthread_mutex_init(&s->repo_lock, NULL);
    pthread_mutex_init(&s->cpu_lock, NULL);
    pthread_mutex_init(&s->job_lock, NULL);
    pthread_cond_init(&s->job_cond, NULL);
    kiln_status st = repo_start(s, err);
    if (st) {
        kiln_server_shutdown(s, 0);
        return st;
    }
    struct sockaddr_storage ss;
    memset(&ss, 0, sizeof ss);
    unsigned flags = MHD_USE_EPOLL_INTERNAL_THREAD | MHD_ALLOW_SUSPEND_RESUME;
    if (strchr(s->host, ':')) {
        struct sockaddr_in6 *a = (struct sockaddr_in6 *)&ss;
        a->sin6_family = AF_INET6;
        a->sin6_port = htons((uint16_t)o->port);
        if (inet_pton(AF_INET6, s->host, &a->sin6_addr) != 1) goto bad_host;
        flags |= MHD_USE_IPv6;
    } else {
        struct sockaddr_in *a = (struct sockaddr_in *)&ss;
        a->sin_family = AF_INET;
        a->sin_port = htons((uint16_t)o->port);
        if (inet_pton(AF_INET, s->host, &a->sin_addr) != 1) goto bad_host;
    }
    s->mhd = MHD_start_daemon(flags, (uint16_t)o->port, NULL, NULL, on_request, s,
                              MHD_OPTION_SOCK_ADDR, (struct sockaddr *)&ss,
                              MHD_OPTION_THREAD_POOL_SIZE, (unsigned)s->opt.http_threads,
                              MHD_OPTION_CONNECTION_LIMIT, s->opt.max_connections,
                              MHD_OPTION_CONNECTION_TIMEOUT, s->opt.conn_timeout_s,
                              MHD_OPTION_CONNECTION_MEMORY_LIMIT, (size_t)(64u << 10),
                              MHD_OPTION_NOTIFY_COMPLETED, on_completed, s,
                              MHD_OPTION_END);
    if (!s->mhd) {
        kiln_server_shutdown(s, 0);
        return kiln_fail(err, KILN_ERR_IO, "serve: cannot listen on %s:%d (port in use?)",
                         o->host ? o->host : "127.0.0.1", o->port);
    }
    const union MHD_DaemonInfo *di = MHD_get_daemon_info(s->mhd, MHD_DAEMON_INFO_BIND_PORT);
    s->port = di ? di->port : o->port;
    *out = s;
    return KILN_OK;
bad_host:
    kiln_server_shutdown(s, 0);
    return kiln_fail(err, KILN_ERR_INVALID_ARG, "serve: --host '%s' is not an IPv4 or IPv6 address",
                     o->host);
}

int kiln_server_port(const struct kiln_server *s) { return s->port; }
int kiln_server_initial_load_done(struct kiln_server *s) { return atomic_load(&s->initial_done); }

int kiln_server_shutdown(struct kiln_server *s, double grace_s) {
    return kiln_server_shutdown_totals(s, grace_s, NULL);
}

int kiln_server_shutdown_totals(struct kiln_server *s, double grace_s, struct kiln_server_totals *t) {
    if (t) memset(t, 0, sizeof *t);
    if (!s) return 0;
    int active0 = atomic_load(&s->active);
    atomic_store(&s->stopping, 1);
    if (s->mhd) {
        MHD_socket ls = MHD_quiesce_daemon(s->mhd);
        if (ls != MHD_INVALID_SOCKET) close(ls);
    }
    int64_t deadline = now_ns() + (int64_t)(grace_s * 1e9);
    while (atomic_load(&s->active) > 0 && now_ns() < deadline) {
        struct timespec ts = {0, 2000000};
        nanosleep(&ts, NULL);
    }
    int left = atomic_load(&s->active);
    if (t) {
        t->infer_ok = atomic_load(&s->infer_ok);
        t->infer_rejected = atomic_load(&s->infer_rejected);
        t->infer_other = atomic_load(&s->infer_other);
        t->active_at_stop = active0;
    }
    /* workers finish whatever is still queued, so no suspended connection remains */
    repo_stop(s);
    if (s->mhd) MHD_stop_daemon(s->mhd);
    pthread_mutex_destroy(&s->repo_lock);
    pthread_mutex_destroy(&s->cpu_lock);
    pthread_mutex_destroy(&s->job_lock);
    pthread_cond_destroy(&s->job_cond);
    free(s->cpus);
    free(s->cpu_use);
    free(s->repo_dir);
    free(s->host);
    free(s);
    return left;
}
