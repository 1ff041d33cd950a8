/* mutate.h — deterministic byte-level mutations of a model file (bit flips,
 * interesting bytes and varints, truncation, chunk deletion, insertion,
 * duplication and swaps). The same (input, seed) always gives the same output. */
#ifndef KILN_TESTS_MUTATE_H
#define KILN_TESTS_MUTATE_H

#include <stddef.h>
#include <stdint.h>

/* Returns a malloc'ed mutant of in[0..len) and its length in *out_len. */
uint8_t *kt_mutate(const uint8_t *in, size_t len, uint64_t seed, size_t *out_len);

#endif
