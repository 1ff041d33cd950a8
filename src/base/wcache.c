/* wcache.c — see wcache.h. A linear list: a model has at most a few hundred
 * weight tensors and lookups happen only while plans are built. */
#include "base/wcache.h"
#include "base/status.h"

#include <pthread.h>
#include <stdbool.h>
#include <stdlib.h>
#include <string.h>

struct entry {
    const void *src;
    void *key;
    size_t key_len;
    void *buf;
    size_t bytes;
    bool borrowed;     /* buf belongs to a mapped plan file */
};

struct kiln_wcache {
    pthread_mutex_t mu;
    struct entry *e;
    size_t n, cap;
    size_t bytes;
};

struct kiln_wcache *kiln_wcache_new(void) {
    struct kiln_wcache *c = calloc(1, sizeof *c);
    if (c && pthread_mutex_init(&c->mu, NULL) != 0) {
        free(c);
        return NULL;
    }
    return c;
}

void kiln_wcache_free(struct kiln_wcache *c) {
    if (!c) return;
    for (size_t i = 0; i < c->n; i++) {
        free(c->e[i].key);
        if (!c->e[i].borrowed) free(c->e[i].buf);
    }
    free(c->e);
    pthread_mutex_destroy(&c->mu);
    free(c);
}

size_t kiln_wcache_bytes(const struct kiln_wcache *c) { return c ? c->bytes : 0; }

void *kiln_wcache_get(struct kiln_wcache *c, const void *src, const void *key, size_t key_len,
                      size_t bytes, kiln_status (*fill)(void *dst, void *arg, kiln_error *err),
                      void *arg, kiln_error *err) {
    void *found = NULL;
    pthread_mutex_lock(&c->mu);
    for (size_t i = 0; i < c->n && !found; i++)
        if (c->e[i].src == src && c->e[i].key_len == key_len && c->e[i].bytes == bytes &&
            !memcmp(c->e[i].key, key, key_len))
            found = c->e[i].buf;
    if (!found) {
        /* filled under the lock: a second session must not pack the same weights again */
        size_t alloc = (bytes + 63) / 64 * 64;
        void *buf = aligned_alloc(64, alloc ? alloc : 64);
        void *k = malloc(key_len ? key_len : 1);
        struct entry *ne = c->n == c->cap ? realloc(c->e, (c->cap ? c->cap * 2 : 32) * sizeof *ne) : c->e;
        if (!buf || !k || !ne) {
            free(buf);
            free(k);
            if (ne) c->e = ne;
            pthread_mutex_unlock(&c->mu);
            kiln_fail(err, KILN_ERR_NO_MEMORY, "shared weights: %zu bytes", bytes);
            return NULL;
        }
        if (c->n == c->cap) c->cap = c->cap ? c->cap * 2 : 32;
        c->e = ne;
        if (fill(buf, arg, err) != KILN_OK) {
            free(buf);
            free(k);
            pthread_mutex_unlock(&c->mu);
            return NULL;
        }
        memcpy(k, key, key_len);
        c->e[c->n++] = (struct entry){src, k, key_len, buf, bytes, false};
        c->bytes += bytes;
        found = buf;
    }
    pthread_mutex_unlock(&c->mu);
    return found;
}

kiln_status kiln_wcache_put_borrowed(struct kiln_wcache *c, const void *src, const void *key,
                                     size_t key_len, void *buf, size_t bytes) {
    pthread_mutex_lock(&c->mu);
    void *k = malloc(key_len ? key_len : 1);
    struct entry *ne = c->n == c->cap ? realloc(c->e, (c->cap ? c->cap * 2 : 32) * sizeof *ne) : c->e;
    if (!k || !ne) {
        free(k);
        if (ne) c->e = ne;
        pthread_mutex_unlock(&c->mu);
        return KILN_ERR_NO_MEMORY;
    }
    if (c->n == c->cap) c->cap = c->cap ? c->cap * 2 : 32;
    c->e = ne;
    memcpy(k, key, key_len);
    c->e[c->n++] = (struct entry){src, k, key_len, buf, bytes, true};
    pthread_mutex_unlock(&c->mu);
    return KILN_OK;
}

void kiln_wcache_visit(const struct kiln_wcache *c,
                       void (*fn)(const void *src, const void *key, size_t key_len,
                                  const void *buf, size_t bytes, void *user),
                       void *user) {
    for (size_t i = 0; i < c->n; i++)
        fn(c->e[i].src, c->e[i].key, c->e[i].key_len, c->e[i].buf, c->e[i].bytes, user);
}
