/* util.c — growable buffers, v2 datatype names, half-precision conversion. */
#include "serve/internal.h"

#include <stdarg.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <time.h>

static bool sb_reserve(struct sbuf *b, size_t extra) {
    if (b->oom) return false;
    if (b->len + extra + 1 <= b->cap) return true;
    size_t cap = b->cap ? b->cap : 256;
    while (cap < b->len + extra + 1) {
        if (cap > SIZE_MAX / 2) { b->oom = true; return false; }
        cap *= 2;
    }
    char *p = realloc(b->p, cap);
    if (!p) { b->oom = true; return false; }
    b->p = p;
    b->cap = cap;
    return true;
}

void sb_put(struct sbuf *b, const void *data, size_t n) {
    if (!sb_reserve(b, n)) return;
    if (n) memcpy(b->p + b->len, data, n);
    b->len += n;
    b->p[b->len] = '\0';
}

void sb_puts(struct sbuf *b, const char *s) { sb_put(b, s, strlen(s)); }

void sb_printf(struct sbuf *b, const char *fmt, ...) {
    va_list ap;
    va_start(ap, fmt);
    char tmp[256];
    int n = vsnprintf(tmp, sizeof tmp, fmt, ap);
    va_end(ap);
    if (n < 0) return;
    if ((size_t)n < sizeof tmp) { sb_put(b, tmp, (size_t)n); return; }
    if (!sb_reserve(b, (size_t)n)) return;
    va_start(ap, fmt);
    vsnprintf(b->p + b->len, (size_t)n + 1, fmt, ap);
    va_end(ap);
    b->len += (size_t)n;
}

void sb_json_str(struct sbuf *b, const char *s) {
    sb_put(b, "\"", 1);
    for (const unsigned char *p = (const unsigned char *)s; *p; p++) {
        if (*p == '"' || *p == '\\') { char e[2] = {'\\', (char)*p}; sb_put(b, e, 2); }
        else if (*p < 0x20) sb_printf(b, "\\u%04x", *p);
        else sb_put(b, p, 1);
    }
    sb_put(b, "\"", 1);
}

void sb_free(struct sbuf *b) {
    free(b->p);
    memset(b, 0, sizeof *b);
}

static const struct { const char *name; kiln_dtype t; } v2_types[] = {
    {"BOOL", KILN_DTYPE_BOOL},     {"UINT8", KILN_DTYPE_UINT8},   {"UINT16", KILN_DTYPE_UINT16},
    {"UINT32", KILN_DTYPE_UINT32}, {"UINT64", KILN_DTYPE_UINT64}, {"INT8", KILN_DTYPE_INT8},
    {"INT16", KILN_DTYPE_INT16},   {"INT32", KILN_DTYPE_INT32},   {"INT64", KILN_DTYPE_INT64},
    {"FP16", KILN_DTYPE_FLOAT16},  {"FP32", KILN_DTYPE_FLOAT},    {"FP64", KILN_DTYPE_DOUBLE},
    {"BF16", KILN_DTYPE_BFLOAT16}, {"BYTES", KILN_DTYPE_STRING},
};

const char *v2_dtype_name(kiln_dtype t) {
    for (size_t i = 0; i < sizeof v2_types / sizeof v2_types[0]; i++)
        if (v2_types[i].t == t) return v2_types[i].name;
    return NULL;
}

kiln_dtype v2_dtype_parse(const char *s) {
    for (size_t i = 0; s && i < sizeof v2_types / sizeof v2_types[0]; i++)
        if (!strcmp(v2_types[i].name, s)) return v2_types[i].t;
    return KILN_DTYPE_UNDEFINED;
}

static uint32_t f2u(float f) { uint32_t u; memcpy(&u, &f, 4); return u; }
static float u2f(uint32_t u) { float f; memcpy(&f, &u, 4); return f; }

/* Round to nearest even, with overflow to inf, subnormals and NaN kept. */
uint16_t f32_to_f16(float f) {
    uint32_t x = f2u(f);
    uint16_t sign = (uint16_t)((x >> 16) & 0x8000);
    uint32_t ax = x & 0x7fffffffu;
    if (ax >= 0x7f800000u) return sign | (ax > 0x7f800000u ? 0x7e00 : 0x7c00);
    if (ax >= 0x477ff000u) return sign | 0x7c00;           /* >= 65520 rounds to inf */
    if (ax < 0x38800000u) {                                /* subnormal half */
        float a = u2f(ax) * 16777216.0f;                   /* scale by 2^24: integer units */
        uint32_t m = (uint32_t)a;
        float r = a - (float)m;
        if (r > 0.5f || (r == 0.5f && (m & 1))) m++;
        return sign | (uint16_t)m;
    }
    uint32_t e = ((ax >> 23) - 112) << 10;
    uint32_t m = (ax >> 13) & 0x3ff;
    uint32_t rest = ax & 0x1fff;
    uint32_t h = e | m;
    if (rest > 0x1000 || (rest == 0x1000 && (h & 1))) h++;
    return sign | (uint16_t)h;
}

float f16_to_f32(uint16_t h) {
    uint32_t sign = (uint32_t)(h & 0x8000) << 16;
    uint32_t e = (h >> 10) & 0x1f, m = h & 0x3ff;
    if (e == 0) {
        float v = (float)m / 16777216.0f;
        return sign ? -v : v;
    }
    if (e == 31) return u2f(sign | 0x7f800000u | (m << 13));
    return u2f(sign | ((e + 112) << 23) | (m << 13));
}

uint16_t f32_to_bf16(float f) {
    uint32_t x = f2u(f);
    if ((x & 0x7fffffffu) > 0x7f800000u) return (uint16_t)((x >> 16) | 0x40);
    x += 0x7fffu + ((x >> 16) & 1);
    return (uint16_t)(x >> 16);
}

float bf16_to_f32(uint16_t h) { return u2f((uint32_t)h << 16); }

int64_t now_ns(void) {
    struct timespec ts;
    clock_gettime(CLOCK_MONOTONIC, &ts);
    return (int64_t)ts.tv_sec * 1000000000 + ts.tv_nsec;
}
