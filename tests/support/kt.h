/*
 * kt.h — the few helpers kiln's C test programs share: checks that count and
 * report without stopping, expected-error checks, temp folders, files, and
 * where ../shared is.
 *
 * Environment (set by tests/CMakeLists.txt; each has a fallback):
 *   KILN_SHARED    the read-only data folder (../shared beside the repo root)
 *   KILN_CLI       the built `kiln` executable
 *   KILN_TEST_TMP  a scratch folder for this test (default: /tmp)
 *
 * A test program returns kt_finish(): 0 when every check passed, 1 otherwise,
 * and KT_SKIP (77, ctest's SKIP_RETURN_CODE) only when it needs ../shared and
 * ../shared is absent.
 */
#ifndef KILN_TESTS_KT_H
#define KILN_TESTS_KT_H

#include "kiln.h"

#include <stddef.h>
#include <stdint.h>
#include <stdio.h>

#define KT_SKIP 77

extern int kt_checks, kt_failures;

#define CHECK(cond, ...)                                                            \
    do {                                                                            \
        kt_checks++;                                                                \
        if (!(cond)) {                                                              \
            kt_failures++;                                                          \
            fprintf(stderr, "FAIL %s:%d: %s: ", __FILE__, __LINE__, #cond);          \
            fprintf(stderr, __VA_ARGS__);                                           \
            fputc('\n', stderr);                                                    \
        }                                                                           \
    } while (0)

/* Checks that `got` is `want` and that err->msg contains every substring in
 * the NULL-terminated list (case-sensitive). Returns 1 when all held. */
int kt_expect_(const char *file, int line, const char *what, kiln_status got,
               const kiln_error *err, kiln_status want, ...);
#define EXPECT_ERR(what, got, err, want, ...) \
    kt_expect_(__FILE__, __LINE__, what, got, err, want, __VA_ARGS__, (const char *)NULL)
#define EXPECT_OK(what, got, err) \
    kt_expect_(__FILE__, __LINE__, what, got, err, KILN_OK, (const char *)NULL)

/* Prints "<name>: N checks, M failed" and returns the exit status. */
int kt_finish(const char *name);

const char *kt_shared(void);              /* NULL when the folder is absent */
const char *kt_cli(void);                 /* path of the kiln executable */
/* Creates a fresh folder under KILN_TEST_TMP; returns its absolute path (malloc'ed). */
char *kt_mkdtemp(const char *tag);
void  kt_rm_rf(const char *path);
uint8_t *kt_read_file(const char *path, size_t *len);   /* NULL on failure */
int   kt_write_file(const char *path, const void *data, size_t len);
int   kt_path_exists(const char *path);

/* Runs argv (argv[0] = program) with stdout+stderr captured into *out
 * (malloc'ed, NUL-terminated). Returns the raw wait status, or -1. */
int kt_run_capture(char *const argv[], char **out);

#endif
