/* wcache.h — buffers derived from a model's constant weights (e.g. weights
 * reordered into a kernel's blocked layout), built once and shared by every
 * session of the model. Thread-safe; freed with the model. */
#ifndef KILN_BASE_WCACHE_H
#define KILN_BASE_WCACHE_H

#include "kiln.h"
#include <stddef.h>

struct kiln_wcache;

struct kiln_wcache *kiln_wcache_new(void);
void kiln_wcache_free(struct kiln_wcache *c);

/* Returns the buffer derived from `src` under `key` (key_len bytes that say
 * how it was derived), creating it with fill(dst, arg) the first time; other
 * threads asking for the same entry wait for it. NULL on failure (err set). */
void *kiln_wcache_get(struct kiln_wcache *c, const void *src, const void *key, size_t key_len,
                      size_t bytes, kiln_status (*fill)(void *dst, void *arg, kiln_error *err),
                      void *arg, kiln_error *err);

/* Adds an entry whose buffer lives elsewhere (pre-packed weights in a mapped
 * plan file): returned by kiln_wcache_get, never freed by the cache. */
kiln_status kiln_wcache_put_borrowed(struct kiln_wcache *c, const void *src, const void *key,
                                     size_t key_len, void *buf, size_t bytes);

/* Calls fn for every entry (to write them into a plan file). */
void kiln_wcache_visit(const struct kiln_wcache *c,
                       void (*fn)(const void *src, const void *key, size_t key_len,
                                  const void *buf, size_t bytes, void *user),
                       void *user);

/* Bytes held (for reports and memory accounting). */
size_t kiln_wcache_bytes(const struct kiln_wcache *c);

#endif
