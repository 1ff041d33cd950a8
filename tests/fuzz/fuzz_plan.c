/*
 * fuzz_plan.c — libFuzzer target for the compiled-plan (.kiln) reader: any
 * byte string given to kiln_artifact_parse must give a graph or a clean
 * error (KILN_ERR_BAD_MODEL / KILN_ERR_UNSUPPORTED with a message), never a
 * crash or a sanitizer report. Bytes that parse are then loaded the way a
 * user loads a plan (written to a memfd, kiln_model_load on its /proc path:
 * mmap and all), described and run once on synthesized inputs with fast and
 * reference kernels (tests/support/exercise.c).
 *
 *   test_plan_file --write-seeds CORPUS_DIR     # seeds: plans of small generated models
 *   build-fuzz/tests/fuzz/fuzz_plan CORPUS_DIR -max_total_time=30
 */
#define _GNU_SOURCE   /* memfd_create */
#include "kiln.h"
#include "plan/artifact.h"
#include "support/exercise.h"

#include <stdint.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/mman.h>
#include <unistd.h>

int LLVMFuzzerTestOneInput(const uint8_t *data, size_t size);

static void contract(const char *what, kiln_status s, const kiln_error *err) {
    if (s == KILN_OK) return;
    if (err->code != s || !err->msg[0] || !memchr(err->msg, '\0', sizeof err->msg) ||
        s == KILN_ERR_INTERNAL || s == KILN_ERR_INVALID_ARG) {
        fprintf(stderr, "contract violation: %s: status %d, err.code %d, msg \"%s\"\n", what, (int)s,
                (int)err->code, err->msg);
        abort();
    }
}

int LLVMFuzzerTestOneInput(const uint8_t *data, size_t size) {
    /* the parser reads through a copy in 4096-aligned memory, as a mapping is */
    uint8_t *buf = aligned_alloc(4096, (size + 4095) / 4096 * 4096 + 4096);
    if (!buf) return 0;
    if (size) memcpy(buf, data, size);
    struct kiln_artifact a;
    memset(&a, 0, sizeof a);
    kiln_error err;
    kiln_status s = kiln_artifact_parse(buf, size, "fuzz.kiln", &a, &err);
    contract("parse", s, &err);
    if (s) {
        if (s != KILN_ERR_BAD_MODEL && s != KILN_ERR_UNSUPPORTED) abort();
        if (!strstr(err.msg, "fuzz.kiln")) abort();   /* the message names the file */
        free(buf);
        return 0;
    }
    kiln_graph_free(a.graph);
    kiln_artifact_unmap(&a);   /* a.map is NULL: frees only the packed-weights index */
    free(buf);

    /* it parses: load it as a file, and run it */
    int fd = memfd_create("fuzz_plan", MFD_CLOEXEC);
    if (fd < 0) return 0;
    if (write(fd, data, size) == (ssize_t)size) {
        char path[64];
        snprintf(path, sizeof path, "/proc/self/fd/%d", fd);
        kiln_load_options lo = kiln_load_options_default();
        lo.max_tensor_bytes = KT_EXERCISE_MAX_TENSOR;
        lo.max_arena_bytes = KT_EXERCISE_MAX_ARENA;
        kiln_model *m = NULL;
        s = kiln_model_load(path, &lo, &m, &err);
        contract("load", s, &err);
        if (!s) {
            if (kt_exercise_loaded(m, 1, NULL) != 0) abort();   /* API contract broken */
            kiln_model_free(m);
        }
    }
    close(fd);
    return 0;
}
