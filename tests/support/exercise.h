/*
 * exercise.h — what the fuzz target and the fuzz replay test do with one
 * model buffer: load it; if it loads, describe it, create a session and run it
 * once on synthesized inputs (every declared input with a known, small shape;
 * symbolic dims are 1), both with the fast and the reference kernels.
 * Any outcome is fine except a crash, a sanitizer report, or a status/message
 * that breaks the API contract (checked here: non-OK status must come with a
 * non-empty message and the same code in err->code; outputs must be sized as
 * their dtype and shape say).
 */
#ifndef KILN_TESTS_EXERCISE_H
#define KILN_TESTS_EXERCISE_H

#include <stddef.h>
#include <stdint.h>

struct kt_exercise_stats {
    long loaded, sessions, runs_ok, contract_violations;
};

/* Returns 0, or -1 on an API contract violation (described on stderr). */
int kt_exercise_model(const uint8_t *data, size_t size, int run, struct kt_exercise_stats *st);

/* The same for a model already loaded (e.g. a .kiln plan, which loads from a
 * file); the model stays the caller's. Load limits for fuzzing: */
#define KT_EXERCISE_MAX_TENSOR (64ull << 20)
#define KT_EXERCISE_MAX_ARENA (256ull << 20)
struct kiln_model;
int kt_exercise_loaded(const struct kiln_model *m, int run, struct kt_exercise_stats *st);

#endif
