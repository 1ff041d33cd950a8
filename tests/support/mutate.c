/* mutate.c — see mutate.h. */
#include "mutate.h"

#include <stdlib.h>
#include <string.h>

static uint64_t next(uint64_t *s) { /* splitmix64 */
    uint64_t z = (*s += 0x9e3779b97f4a7c15ull);
    z = (z ^ (z >> 30)) * 0xbf58476d1ce4e5b9ull;
    z = (z ^ (z >> 27)) * 0x94d049bb133111ebull;
    return z ^ (z >> 31);
}

static size_t below(uint64_t *s, size_t n) { return n ? (size_t)(next(s) % n) : 0; }

uint8_t *kt_mutate(const uint8_t *in, size_t len, uint64_t seed, size_t *out_len) {
    uint64_t s = seed * 0x2545f4914f6cdd1dull + len;
    size_t cap = len + 64;
    uint8_t *b = malloc(cap);
    if (!b) abort();
    memcpy(b, in, len);
    size_t n = len;
    int rounds = 1 + (int)below(&s, 3);
    for (int r = 0; r < rounds; r++) {
        switch (below(&s, 8)) {
        case 0: { /* flip 1-4 bits */
            int k = 1 + (int)below(&s, 4);
            for (int i = 0; i < k && n; i++) b[below(&s, n)] ^= (uint8_t)(1u << below(&s, 8));
            break;
        }
        case 1: { /* an interesting byte */
            static const uint8_t v[] = {0x00, 0x01, 0x7f, 0x80, 0xff, 0x08, 0x10, 0x12, 0x3a};
            if (n) b[below(&s, n)] = v[below(&s, sizeof v)];
            break;
        }
        case 2: /* truncate (keep at least one byte when there is one) */
            if (n > 1) n = 1 + below(&s, n - 1);
            break;
        case 3: { /* delete a chunk */
            if (n < 2) break;
            size_t at = below(&s, n), k = 1 + below(&s, 16);
            if (at + k > n) k = n - at;
            memmove(b + at, b + at + k, n - at - k);
            n -= k;
            break;
        }
        case 4: { /* insert random bytes */
            size_t k = 1 + below(&s, 16), at = below(&s, n + 1);
            if (n + k > cap) break;
            memmove(b + at + k, b + at, n - at);
            for (size_t i = 0; i < k; i++) b[at + i] = (uint8_t)next(&s);
            n += k;
            break;
        }
        case 5: { /* overwrite with a chunk from elsewhere */
            if (n < 4) break;
            size_t k = 1 + below(&s, n < 32 ? n / 2 : 16);
            size_t from = below(&s, n - k + 1), to = below(&s, n - k + 1);
            memmove(b + to, b + from, k);
            break;
        }
        case 6: { /* an extreme varint in place of whatever was there */
            static const uint64_t v[] = {0, 1, 0x7fffffffull, 0x80000000ull, 0xffffffffull,
                                         0x7fffffffffffffffull, 0xffffffffffffffffull,
                                         1ull << 40};
            uint64_t x = v[below(&s, sizeof v / sizeof v[0])];
            uint8_t tmp[10];
            size_t k = 0;
            do {
                tmp[k] = (uint8_t)(x & 0x7f);
                x >>= 7;
                if (x) tmp[k] |= 0x80;
                k++;
            } while (x);
            if (n < k) break;
            memcpy(b + below(&s, n - k + 1), tmp, k);
            break;
        }
        default: { /* swap two chunks */
            if (n < 8) break;
            size_t k = 1 + below(&s, 8);
            size_t a = below(&s, n - k + 1), c = below(&s, n - k + 1);
            uint8_t tmp[8];
            memcpy(tmp, b + a, k);
            memmove(b + a, b + c, k);
            memcpy(b + c, tmp, k);
            break;
        }
        }
    }
    *out_len = n;
    return b;
}
