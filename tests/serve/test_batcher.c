/*
 * test_batcher.c — the dynamic batcher's batch forming alone, on hand-built
 * queues (no server, no model): which calls one free worker takes, given the
 * queue, the idle instances, the run sizes and the queue delay.
 */
#include "serve/internal.h"

#include <stdio.h>
#include <stdlib.h>
#include <string.h>

static int failures;
#define CHECK(cond, ...) do { if (!(cond)) { failures++; printf("FAIL %s:%d: ", __FILE__, __LINE__); \
    printf(__VA_ARGS__); printf("\n"); } } while (0)

#define MAXQ 32
static struct srv_call calls[MAXQ];
static struct kiln_serve_infer reqs[MAXQ];

/* a queue of n calls with the given rows each (and width w of input 0 dim 1) */
static void make_queue(struct srv_version *v, int n, const int64_t *rows, const int64_t *width) {
    v->qhead = v->qtail = NULL;
    v->qlen = 0;
    for (int i = 0; i < n; i++) {
        memset(&calls[i], 0, sizeof calls[i]);
        memset(&reqs[i], 0, sizeof reqs[i]);
        reqs[i].batch = rows[i];
        reqs[i].n_in = 1;
        reqs[i].in[0].rank = 2;
        reqs[i].in[0].dims[0] = rows[i];
        reqs[i].in[0].dims[1] = width ? width[i] : 4;
        calls[i].req = &reqs[i];
        calls[i].t_enqueue = 1000 * (int64_t)i;      /* ns */
        calls[i].qprev = v->qtail;
        if (v->qtail) v->qtail->qnext = &calls[i]; else v->qhead = &calls[i];
        v->qtail = &calls[i];
        v->qlen++;
    }
}

static void config(struct srv_version *v, int n_inst, int64_t delay_us) {
    memset(&v->cfg, 0, sizeof v->cfg);
    v->cfg.sig.max_batch_size = 8;
    v->cfg.max_queue_delay_us = delay_us;
    int64_t sizes[] = {1, 2, 4, 8};
    memcpy(v->cfg.run_sizes, sizes, sizeof sizes);
    v->cfg.n_run_sizes = 4;
    v->n_inst = n_inst;
    v->closing = false;
}

int main(void) {
    struct srv_version v;
    memset(&v, 0, sizeof v);
    struct srv_call *out[4096];
    int64_t rows, until;
    const int64_t ones[MAXQ] = {1, 1, 1, 1, 1, 1, 1, 1, 1, 1, 1, 1, 1, 1, 1, 1};
    const int64_t far = 1000000000000LL;   /* every delay has passed */

    /* one instance, 5 single-row calls, delay passed: 4 go (a run size), 1 stays */
    config(&v, 1, 100);
    make_queue(&v, 5, ones, NULL);
    int n = batcher_form_batch(&v, far, out, &rows, &until);
    CHECK(n == 4 && rows == 4 && out[0] == &calls[0] && out[3] == &calls[3],
          "5 queued, 1 instance: took %d calls (%lld rows), want the oldest 4", n, (long long)rows);

    /* a full batch goes before the delay */
    make_queue(&v, 10, ones, NULL);
    n = batcher_form_batch(&v, 0, out, &rows, &until);
    CHECK(n == 8 && rows == 8, "10 queued: took %d, want 8 at once", n);

    /* a partial batch waits for the delay of the oldest call */
    make_queue(&v, 3, ones, NULL);
    n = batcher_form_batch(&v, 0, out, &rows, &until);
    CHECK(n == 0 && until == 100 * 1000, "3 queued before the delay: took %d, wait until %lld", n,
          (long long)until);

    /* two instances, 2 queued: the delay still applies, then each takes one */
    config(&v, 2, 100);
    make_queue(&v, 2, ones, NULL);
    n = batcher_form_batch(&v, 0, out, &rows, &until);
    CHECK(n == 0, "2 queued, 2 instances, before the delay: took %d, want a wait", n);
    n = batcher_form_batch(&v, far, out, &rows, &until);
    CHECK(n == 1 && rows == 1 && out[0] == &calls[0], "2 queued, 2 instances: took %d, want 1", n);

    /* two instances, 6 queued: a share of 3 trims to the run size 2 */
    make_queue(&v, 6, ones, NULL);
    n = batcher_form_batch(&v, far, out, &rows, &until);
    CHECK(n == 2 && rows == 2, "6 queued, 2 instances: took %d, want 2", n);

    /* two instances, 20 queued: a full batch at once, the share does not cut it */
    make_queue(&v, 20, ones, NULL);
    n = batcher_form_batch(&v, 0, out, &rows, &until);
    CHECK(n == 8 && rows == 8, "20 queued, 2 instances: took %d, want 8 at once", n);

    /* other shapes are skipped, keeping order */
    config(&v, 1, 0);
    const int64_t w[] = {4, 5, 4, 4, 5};
    make_queue(&v, 5, ones, w);
    n = batcher_form_batch(&v, 0, out, &rows, &until);
    CHECK(n == 2 && out[0] == &calls[0] && out[1] == &calls[2],
          "mixed shapes: took %d (want calls 0 and 2; 3 would make 3 rows, not a run size)", n);

    /* calls of several rows that fill no run size exactly are padded, not split */
    const int64_t three[] = {3, 3};
    make_queue(&v, 2, three, NULL);
    n = batcher_form_batch(&v, far, out, &rows, &until);
    CHECK(n == 2 && rows == 6, "3+3 rows: took %d calls, %lld rows; want both (6 rows, padded to 8)", n,
          (long long)rows);

    /* a call larger than the fair share still goes whole */
    config(&v, 2, 0);
    const int64_t big[] = {6, 1};
    make_queue(&v, 2, big, NULL);
    n = batcher_form_batch(&v, 0, out, &rows, &until);
    CHECK(n == 1 && rows == 6, "6-row call with share 4: took %d calls, %lld rows", n, (long long)rows);

    /* a preferred size that a prefix fills goes at once */
    config(&v, 1, 100);
    v.cfg.preferred[0] = 2;
    v.cfg.n_preferred = 1;
    make_queue(&v, 3, ones, NULL);
    n = batcher_form_batch(&v, 0, out, &rows, &until);
    CHECK(n == 2 && rows == 2, "preferred 2 with 3 queued: took %d", n);

    if (failures) { printf("%d failures\n", failures); return 1; }
    printf("batcher: all checks passed\n");
    return 0;
}
