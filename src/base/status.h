/* status.h — filling caller-owned kiln_error messages; checked size arithmetic. */
#ifndef KILN_BASE_STATUS_H
#define KILN_BASE_STATUS_H

#include "kiln.h"
#include <stdbool.h>
#include <stddef.h>
#include <stdint.h>

/* Fills err (if not NULL) with code and a printf-style message; returns code. */
kiln_status kiln_fail(kiln_error *err, kiln_status code, const char *fmt, ...)
    __attribute__((format(printf, 3, 4)));
/* Prepends "prefix: " to an existing message (keeps the code). */
kiln_status kiln_fail_prefix(kiln_error *err, kiln_status code, const char *fmt, ...)
    __attribute__((format(printf, 3, 4)));
void kiln_error_clear(kiln_error *err);

static inline bool kiln_mul_overflow_u64(uint64_t a, uint64_t b, uint64_t *out) {
    return __builtin_mul_overflow(a, b, out);
}
static inline bool kiln_mul_overflow_i64(int64_t a, int64_t b, int64_t *out) {
    return __builtin_mul_overflow(a, b, out);
}
static inline bool kiln_add_overflow_u64(uint64_t a, uint64_t b, uint64_t *out) {
    return __builtin_add_overflow(a, b, out);
}

#define KILN_ARRAY_LEN(a) (sizeof(a) / sizeof((a)[0]))

#endif
