/* npy.h — NumPy .npy files (format 1.0/2.0/3.0): C order, little-endian,
 * float32/float64/float16/int8..int64/uint8..uint64/bool. Reading validates the
 * header strictly: every size comes from an untrusted file. */
#ifndef KILN_TOOLS_NPY_H
#define KILN_TOOLS_NPY_H

#include "kiln.h"

#include <stddef.h>
#include <stdint.h>

/* Parses a whole .npy image in memory; out->data is malloc'ed (out->name untouched). */
kiln_status npy_parse(const uint8_t *buf, size_t len, const char *label, uint64_t max_bytes,
                      kiln_tensor *out, kiln_error *err);
kiln_status npy_read(const char *path, uint64_t max_bytes, kiln_tensor *out, kiln_error *err);
/* Writes format 1.0 (bfloat16 is written as float32: NumPy has no bfloat16). */
kiln_status npy_write(const char *path, const kiln_tensor *t, kiln_error *err);

#endif
