/*
 * cmd_serve.c — `kiln serve`: runs the KServe v2 inference server over a
 * model repository until SIGTERM/SIGINT, then drains accepted work and exits 0.
 *
 * Signals are blocked in every thread (the mask is set before any thread
 * starts) and taken synchronously here with sigtimedwait, so no handler runs
 * inside library code.
 */
#define _GNU_SOURCE
#include "cmd.h"
#include "serve/serve.h"

#include <pthread.h>
#include <signal.h>
#include <stdbool.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/resource.h>
#include <time.h>

static void usage(FILE *f) {
    fprintf(f,
            "usage: kiln serve --model-repository DIR [options]\n"
            "  --http-port N          port (default 8000; 0 = any free port, printed)\n"
            "  --host ADDR            bind address (default 127.0.0.1)\n"
            "  --http-threads N       HTTP thread pool size (default 4)\n"
            "  --max-body-mb N        largest request body (default 64)\n"
            "  --max-tensor-elems N   largest tensor in a request (default 67108864)\n"
            "  --max-connections N    concurrent connections (default 1024)\n"
            "  --cpus N               cores to use (default: affinity mask and cgroup quota)\n"
            "  --grace S              seconds to finish accepted requests on shutdown (default 30)\n"
            "  --quiet                no model load/unload log lines\n");
}

static bool num_arg(const char *s, long long lo, long long hi, long long *out) {
    char *end;
    long long v = strtoll(s, &end, 10);
    if (!*s || *end || v < lo || v > hi) return false;
    *out = v;
    return true;
}

int kiln_cmd_serve(int argc, char **argv) {
    struct kiln_server_options o;
    kiln_server_options_init(&o);
    o.port = 8000;
    double grace = 30;
    for (int i = 1; i < argc; i++) {
        const char *a = argv[i];
        const char *v = i + 1 < argc ? argv[i + 1] : NULL;
        long long x = 0;
        if (!strcmp(a, "-h") || !strcmp(a, "--help")) { usage(stdout); return 0; }
        if (!strcmp(a, "--quiet")) { o.quiet = 1; continue; }
        if (!v) { fprintf(stderr, "kiln serve: %s needs a value\n", a); usage(stderr); return 2; }
        i++;
        if (!strcmp(a, "--model-repository")) o.repo_dir = v;
        else if (!strcmp(a, "--host")) o.host = v;
        else if (!strcmp(a, "--http-port") && num_arg(v, 0, 65535, &x)) o.port = (int)x;
        else if (!strcmp(a, "--http-threads") && num_arg(v, 1, 256, &x)) o.http_threads = (int)x;
        else if (!strcmp(a, "--max-body-mb") && num_arg(v, 1, 1 << 20, &x)) o.max_body_bytes = (uint64_t)x << 20;
        else if (!strcmp(a, "--max-tensor-elems") && num_arg(v, 1, 1LL << 40, &x)) o.max_tensor_elems = (uint64_t)x;
        else if (!strcmp(a, "--max-connections") && num_arg(v, 1, 1 << 20, &x)) o.max_connections = (unsigned)x;
        else if (!strcmp(a, "--cpus") && num_arg(v, 1, 1 << 16, &x)) o.cpu_limit = (int)x;
        else if (!strcmp(a, "--grace") && num_arg(v, 0, 86400, &x)) grace = (double)x;
        else {
            fprintf(stderr, "kiln serve: bad option or value: %s %s\n", a, v);
            usage(stderr);
            return 2;
        }
    }
    if (!o.repo_dir) {
        fprintf(stderr, "kiln serve: --model-repository is required\n");
        usage(stderr);
        return 2;
    }
    sigset_t set;
    sigemptyset(&set);
    sigaddset(&set, SIGTERM);
    sigaddset(&set, SIGINT);
    pthread_sigmask(SIG_BLOCK, &set, NULL);
    signal(SIGPIPE, SIG_IGN);   /* a client that hangs up must not kill the server */
    /* --max-connections sockets plus models and logs: lift the soft descriptor
     * limit (often 1024) to the hard one, so accept never fails for lack of fds */
    struct rlimit rl;
    if (getrlimit(RLIMIT_NOFILE, &rl) == 0 && rl.rlim_cur < rl.rlim_max) {
        rl.rlim_cur = rl.rlim_max;
        setrlimit(RLIMIT_NOFILE, &rl);
    }

    struct kiln_server *s = NULL;
    kiln_error err = {0};
    if (kiln_server_start(&o, &s, &err)) {
        fprintf(stderr, "kiln serve: %s\n", err.msg);
        return 1;
    }
    printf("kiln serve: listening on %s:%d\n", o.host ? o.host : "127.0.0.1", kiln_server_port(s));
    fflush(stdout);
    bool ready_said = false;
    int sig = 0;
    for (;;) {
        struct timespec ts = {0, 50000000};
        sig = sigtimedwait(&set, NULL, &ts);
        if (sig > 0) break;
        if (!ready_said && kiln_server_initial_load_done(s)) {
            printf("kiln serve: ready\n");
            fflush(stdout);
            ready_said = true;
        }
    }
    fprintf(stderr, "kiln serve: %s received, draining\n", sig == SIGINT ? "SIGINT" : "SIGTERM");
    struct kiln_server_totals t;
    int left = kiln_server_shutdown_totals(s, grace, &t);
    /* the totals let a load test check that no accepted request was lost */
    fprintf(stderr, "kiln serve: %d request(s) in progress at %s; inference responses: %llu ok (200), "
                    "%llu rejected (503), %llu other or undelivered\n",
            t.active_at_stop, sig == SIGINT ? "SIGINT" : "SIGTERM", (unsigned long long)t.infer_ok,
            (unsigned long long)t.infer_rejected, (unsigned long long)t.infer_other);
    if (left) fprintf(stderr, "kiln serve: %d request(s) still running after %.0f s grace\n", left, grace);
    else fprintf(stderr, "kiln serve: stopped cleanly\n");
    return left ? 1 : 0;
}
