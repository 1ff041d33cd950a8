/* exercise.c — see exercise.h. */
#include "exercise.h"
#include "kiln.h"

#include <stdio.h>
#include <stdlib.h>
#include <string.h>

/* Fuzzing limits: small enough that a mutated shape cannot eat the machine. */
#define MAX_TENSOR KT_EXERCISE_MAX_TENSOR
#define MAX_ARENA KT_EXERCISE_MAX_ARENA
#define MAX_INPUT_BYTES (1u << 20)

static int violation(struct kt_exercise_stats *st, const char *what, kiln_status s,
                     const kiln_error *err) {
    fprintf(stderr, "contract violation: %s: status %d, err.code %d, msg \"%s\"\n", what, (int)s,
            (int)err->code, err->msg);
    if (st) st->contract_violations++;
    return -1;
}

/* A failing call must say why, with the code it returned. */
static int check_status(struct kt_exercise_stats *st, const char *what, kiln_status s,
                        const kiln_error *err) {
    if (s == KILN_OK) return 0;
    if ((int)s < 0 || s >= KILN_STATUS_COUNT || err->code != s || !err->msg[0] ||
        !memchr(err->msg, '\0', sizeof err->msg))
        return violation(st, what, s, err);
    if (s == KILN_ERR_INTERNAL) return violation(st, what, s, err); /* a kiln bug by definition */
    return 0;
}

static void fill_input(kiln_tensor *t, uint64_t seed) {
    size_t es = kiln_dtype_size(t->dtype);
    size_t n = es ? t->nbytes / es : 0;
    for (size_t i = 0; i < n; i++) {
        uint8_t *p = (uint8_t *)t->data + i * es;
        switch (t->dtype) {
        case KILN_DTYPE_FLOAT: {
            float v = (float)((int)((i * 2654435761u + seed) % 17) - 8) / 4.0f;
            memcpy(p, &v, 4);
            break;
        }
        case KILN_DTYPE_DOUBLE: {
            double v = (double)((int)(i % 13) - 6) / 3.0;
            memcpy(p, &v, 8);
            break;
        }
        case KILN_DTYPE_BOOL: *p = (uint8_t)(i & 1); break;
        default:
            /* small non-negative integers: valid indices for most ops */
            memset(p, 0, es);
            *p = (uint8_t)(i % 2);
            break;
        }
    }
}

int kt_exercise_model(const uint8_t *data, size_t size, int run, struct kt_exercise_stats *st) {
    kiln_error err;
    kiln_model *m = NULL;
    kiln_load_options lo = kiln_load_options_default();
    lo.max_tensor_bytes = MAX_TENSOR;
    lo.max_arena_bytes = MAX_ARENA;
    kiln_status s = kiln_model_load_buffer(data, size, "fuzz", &lo, &m, &err);
    if (s != KILN_OK) {
        if (m) return violation(st, "failed load set *out", s, &err);
        return check_status(st, "load", s, &err);
    }
    if (st) st->loaded++;
    int rc = kt_exercise_loaded(m, run, st);
    kiln_model_free(m);
    return rc;
}

int kt_exercise_loaded(const kiln_model *m, int run, struct kt_exercise_stats *st) {
    kiln_error err;
    kiln_status s;
    int rc = 0;
    /* describe it, as inspect would */
    kiln_model_stats ms;
    kiln_model_stats_get(m, &ms);
    kiln_model_opset(m);
    int32_t n_in = kiln_model_n_inputs(m), n_out = kiln_model_n_outputs(m);
    for (int32_t i = 0; i < n_out; i++) {
        kiln_tensor_info info;
        if (kiln_model_output(m, i, &info) != KILN_OK || !info.name) {
            fprintf(stderr, "contract violation: output %d has no info\n", i);
            rc = -1;
        }
    }
    if (!run || n_in > 64 || n_out > 256) goto done;

    kiln_tensor in[64];
    memset(in, 0, sizeof in);
    int ok = 1;
    for (int32_t i = 0; i < n_in && ok; i++) {
        kiln_tensor_info info;
        if (kiln_model_input(m, i, &info) != KILN_OK || !info.name) {
            fprintf(stderr, "contract violation: input %d has no info\n", i);
            rc = -1;
            ok = 0;
            break;
        }
        size_t es = kiln_dtype_size(info.dtype);
        if (!es || info.rank < 0 || info.rank > KILN_MAX_RANK) {
            ok = 0;
            break;
        }
        in[i].name = info.name;
        in[i].dtype = info.dtype;
        in[i].rank = info.rank;
        uint64_t bytes = es;
        for (int32_t r = 0; r < info.rank; r++) {
            int64_t d = info.dims[r] < 0 ? 1 : info.dims[r];
            in[i].dims[r] = d;
            if (__builtin_mul_overflow(bytes, (uint64_t)d, &bytes) || bytes > MAX_INPUT_BYTES) {
                ok = 0;
                break;
            }
        }
        if (!ok) break;
        in[i].nbytes = (size_t)bytes;
        in[i].data = malloc(bytes ? bytes : 1);
        if (!in[i].data) {
            ok = 0;
            break;
        }
        fill_input(&in[i], (uint64_t)i);
    }
    kiln_tensor *out = calloc((size_t)(n_out ? n_out : 1), sizeof *out);
    for (int ref = 0; ok && out && ref < 2; ref++) {
        kiln_session_options so = kiln_session_options_default();
        so.n_threads = 1;
        so.reference_kernels = ref;
        kiln_session *sess = NULL;
        s = kiln_session_create(m, &so, &sess, &err);
        if (s != KILN_OK) {
            if (check_status(st, "session_create", s, &err)) rc = -1;
            break;
        }
        if (st) st->sessions++;
        s = kiln_session_run(sess, in, n_in, out, n_out, &err);
        if (s != KILN_OK) {
            if (check_status(st, "run", s, &err)) rc = -1;
        } else {
            if (st) st->runs_ok++;
            for (int32_t i = 0; i < n_out; i++) {
                uint64_t want = kiln_dtype_size(out[i].dtype);
                for (int32_t r = 0; r < out[i].rank; r++) want *= (uint64_t)out[i].dims[r];
                if (out[i].rank < 0 || out[i].rank > KILN_MAX_RANK || want != out[i].nbytes ||
                    (want && !out[i].data)) {
                    fprintf(stderr, "contract violation: output %d: rank %d, %zu bytes for "
                            "%llu expected\n", i, out[i].rank, out[i].nbytes,
                            (unsigned long long)want);
                    rc = -1;
                    break;
                }
                /* touch every byte: ASan flags an output that points at freed memory */
                volatile uint8_t sink = 0;
                for (size_t b = 0; b < out[i].nbytes; b++) sink ^= ((const uint8_t *)out[i].data)[b];
                (void)sink;
            }
        }
        kiln_session_free(sess);
    }
    free(out);
    for (int32_t i = 0; i < n_in; i++) free(in[i].data);
done:
    return rc;
}
