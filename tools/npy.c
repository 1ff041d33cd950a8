/* npy.c — see npy.h. Format reference: numpy/lib/format.py (NEP 1). */
#include "npy.h"

#include "base/status.h"
#include "onnx/import.h"

#include <errno.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

/* NumPy refuses headers over 10000 bytes by default; allow a little more. */
#define NPY_MAX_HEADER 65536

static const struct {
    const char *code;   /* descr without the byte-order character */
    kiln_dtype dtype;
} descrs[] = {
    {"f4", KILN_DTYPE_FLOAT},  {"f8", KILN_DTYPE_DOUBLE}, {"f2", KILN_DTYPE_FLOAT16},
    {"i8", KILN_DTYPE_INT64},  {"i4", KILN_DTYPE_INT32},  {"i2", KILN_DTYPE_INT16},
    {"i1", KILN_DTYPE_INT8},   {"u8", KILN_DTYPE_UINT64}, {"u4", KILN_DTYPE_UINT32},
    {"u2", KILN_DTYPE_UINT16}, {"u1", KILN_DTYPE_UINT8},  {"b1", KILN_DTYPE_BOOL},
};

struct cur {
    const char *p, *end;
};

static void skip_ws(struct cur *c) {
    while (c->p < c->end && (*c->p == ' ' || *c->p == '\t')) c->p++;
}

static int eat(struct cur *c, char ch) {
    skip_ws(c);
    if (c->p < c->end && *c->p == ch) {
        c->p++;
        return 1;
    }
    return 0;
}

/* A quoted Python string without escapes (all that .npy headers use). */
static int parse_str(struct cur *c, char *out, size_t n) {
    skip_ws(c);
    if (c->p >= c->end || (*c->p != '\'' && *c->p != '"')) return -1;
    char q = *c->p++;
    size_t o = 0;
    while (c->p < c->end && *c->p != q) {
        if (*c->p == '\\' || o + 1 >= n) return -1;
        out[o++] = *c->p++;
    }
    if (c->p >= c->end) return -1;
    c->p++;
    out[o] = '\0';
    return 0;
}

static int parse_word(struct cur *c, const char *w) {
    skip_ws(c);
    size_t n = strlen(w);
    if ((size_t)(c->end - c->p) < n || memcmp(c->p, w, n)) return 0;
    c->p += n;
    return 1;
}

static int parse_shape(struct cur *c, int32_t *rank, int64_t *dims, char *why, size_t why_n) {
    if (!eat(c, '(')) return snprintf(why, why_n, "'shape' is not a tuple"), -1;
    *rank = 0;
    for (;;) {
        skip_ws(c);
        if (eat(c, ')')) return 0;
        if (c->p >= c->end || *c->p < '0' || *c->p > '9')
            return snprintf(why, why_n, "'shape' holds something other than a non-negative integer"), -1;
        int64_t v = 0;
        while (c->p < c->end && *c->p >= '0' && *c->p <= '9') {
            if (v > (INT64_MAX - 9) / 10) return snprintf(why, why_n, "a dim in 'shape' overflows 64 bits"), -1;
            v = v * 10 + (*c->p++ - '0');
        }
        if (c->p < c->end && *c->p == 'L') c->p++;   /* Python 2 longs */
        if (*rank >= KILN_MAX_RANK)
            return snprintf(why, why_n, "'shape' has more than %d dims", KILN_MAX_RANK), -1;
        dims[(*rank)++] = v;
        if (eat(c, ',')) continue;
        if (eat(c, ')')) return 0;
        return snprintf(why, why_n, "'shape' is not a well-formed tuple"), -1;
    }
}

kiln_status npy_parse(const uint8_t *buf, size_t len, const char *label, uint64_t max_bytes,
                      kiln_tensor *out, kiln_error *err) {
    if (len < 6 || memcmp(buf, "\x93NUMPY", 6))
        return kiln_fail(err, KILN_ERR_BAD_MODEL, "%s: not a .npy file (no \\x93NUMPY magic)", label);
    if (len < 10) return kiln_fail(err, KILN_ERR_BAD_MODEL, "%s: truncated .npy header", label);
    unsigned major = buf[6];
    size_t hlen, hstart;
    if (major == 1) {
        hlen = (size_t)buf[8] | (size_t)buf[9] << 8;
        hstart = 10;
    } else if (major == 2 || major == 3) {
        if (len < 12) return kiln_fail(err, KILN_ERR_BAD_MODEL, "%s: truncated .npy header", label);
        hlen = (size_t)buf[8] | (size_t)buf[9] << 8 | (size_t)buf[10] << 16 | (size_t)buf[11] << 24;
        hstart = 12;
    } else {
        return kiln_fail(err, KILN_ERR_UNSUPPORTED, "%s: .npy format version %u.%u is not supported",
                         label, major, buf[7]);
    }
    if (hlen > NPY_MAX_HEADER)
        return kiln_fail(err, KILN_ERR_LIMIT, "%s: .npy header is %zu bytes, limit %d", label, hlen,
                         NPY_MAX_HEADER);
    if (hlen > len - hstart)
        return kiln_fail(err, KILN_ERR_BAD_MODEL, "%s: .npy header claims %zu bytes but the file has %zu",
                         label, hlen, len - hstart);
    const char *h = (const char *)buf + hstart;
    for (size_t i = 0; i < hlen; i++)
        if ((unsigned char)h[i] >= 0x80 || (h[i] < 0x20 && h[i] != '\n' && h[i] != '\t'))
            return kiln_fail(err, KILN_ERR_BAD_MODEL, "%s: .npy header has a non-ASCII byte at %zu", label, i);

    struct cur c = {h, h + hlen};
    char descr[32] = "", why[160] = "";
    int have_descr = 0, have_fortran = 0, have_shape = 0, fortran = 0;
    int32_t rank = 0;
    int64_t dims[KILN_MAX_RANK] = {0};
    if (!eat(&c, '{')) return kiln_fail(err, KILN_ERR_BAD_MODEL, "%s: .npy header is not a dict", label);
    for (;;) {
        if (eat(&c, '}')) break;
        char key[32];
        if (parse_str(&c, key, sizeof key) || !eat(&c, ':')) {
            snprintf(why, sizeof why, "malformed key");
            goto bad;
        }
        if (!strcmp(key, "descr")) {
            if (have_descr++ || parse_str(&c, descr, sizeof descr)) {
                snprintf(why, sizeof why, "bad or repeated 'descr'");
                goto bad;
            }
        } else if (!strcmp(key, "fortran_order")) {
            if (have_fortran++) {
                snprintf(why, sizeof why, "repeated 'fortran_order'");
                goto bad;
            }
            if (parse_word(&c, "True")) fortran = 1;
            else if (!parse_word(&c, "False")) {
                snprintf(why, sizeof why, "'fortran_order' is not True or False");
                goto bad;
            }
        } else if (!strcmp(key, "shape")) {
            if (have_shape++) {
                snprintf(why, sizeof why, "repeated 'shape'");
                goto bad;
            }
            if (parse_shape(&c, &rank, dims, why, sizeof why)) goto bad;
        } else {
            snprintf(why, sizeof why, "unknown key '%s'", key);
            goto bad;
        }
        if (eat(&c, ',')) continue;
        if (eat(&c, '}')) break;
        snprintf(why, sizeof why, "expected ',' or '}'");
        goto bad;
    }
    /* only padding may follow the dict */
    while (c.p < c.end && (*c.p == ' ' || *c.p == '\n' || *c.p == '\t')) c.p++;
    if (c.p != c.end) {
        snprintf(why, sizeof why, "text after the dict");
        goto bad;
    }
    if (!have_descr || !have_fortran || !have_shape) {
        snprintf(why, sizeof why, "missing key '%s'", !have_descr ? "descr" : !have_fortran ? "fortran_order" : "shape");
        goto bad;
    }
    if (fortran)
        return kiln_fail(err, KILN_ERR_UNSUPPORTED,
                         "%s: Fortran-order arrays are not supported; save with np.ascontiguousarray(a)", label);

    kiln_dtype dt = KILN_DTYPE_UNDEFINED;
    if (strlen(descr) == 3)
        for (size_t i = 0; i < KILN_ARRAY_LEN(descrs); i++)
            if (!strcmp(descr + 1, descrs[i].code)) dt = descrs[i].dtype;
    if (dt == KILN_DTYPE_UNDEFINED)
        return kiln_fail(err, KILN_ERR_UNSUPPORTED,
                         "%s: .npy dtype '%s' is not supported (want float32/float64/float16, "
                         "int8..int64, uint8..uint64 or bool)", label, descr);
    size_t es = kiln_dtype_size(dt);
    char order = descr[0];
    if (order == '>' && es > 1)
        return kiln_fail(err, KILN_ERR_UNSUPPORTED,
                         "%s: big-endian .npy ('%s') is not supported; save with a.astype('<%s')",
                         label, descr, descr + 1);
    /* NumPy writes '<' for multi-byte types and '|' for single bytes */
    if (order != '<' && !(es == 1 && (order == '|' || order == '>')))
        return kiln_fail(err, KILN_ERR_BAD_MODEL, "%s: bad byte order in .npy dtype '%s'", label, descr);

    uint64_t bytes = es;
    for (int32_t r = 0; r < rank; r++)
        if (kiln_mul_overflow_u64(bytes, (uint64_t)dims[r], &bytes))
            return kiln_fail(err, KILN_ERR_LIMIT, "%s: .npy shape overflows a 64-bit size", label);
    if (bytes > max_bytes)
        return kiln_fail(err, KILN_ERR_LIMIT, "%s: .npy array needs %llu bytes, over the limit of %llu",
                         label, (unsigned long long)bytes, (unsigned long long)max_bytes);
    size_t have = len - hstart - hlen;
    if (have != bytes)
        return kiln_fail(err, KILN_ERR_BAD_MODEL,
                         "%s: .npy shape and dtype need %llu data bytes but the file holds %zu", label,
                         (unsigned long long)bytes, have);
    void *data = malloc(bytes ? (size_t)bytes : 1);
    if (!data) return kiln_fail(err, KILN_ERR_NO_MEMORY, "%s: cannot allocate %llu bytes", label,
                                (unsigned long long)bytes);
    memcpy(data, buf + hstart + hlen, (size_t)bytes);
    if (dt == KILN_DTYPE_BOOL)   /* kiln bools are 0 or 1 */
        for (size_t i = 0; i < bytes; i++) ((uint8_t *)data)[i] = ((uint8_t *)data)[i] != 0;
    out->dtype = dt;
    out->rank = rank;
    memset(out->dims, 0, sizeof out->dims);
    for (int32_t r = 0; r < rank; r++) out->dims[r] = dims[r];
    out->data = data;
    out->nbytes = (size_t)bytes;
    return KILN_OK;
bad:
    return kiln_fail(err, KILN_ERR_BAD_MODEL, "%s: malformed .npy header: %s", label, why);
}

kiln_status npy_read(const char *path, uint64_t max_bytes, kiln_tensor *out, kiln_error *err) {
    uint8_t *buf;
    size_t len;
    kiln_status s = kiln_read_file(path, max_bytes + NPY_MAX_HEADER + 16, &buf, &len, err);
    if (s) return s;
    s = npy_parse(buf, len, path, max_bytes, out, err);
    free(buf);
    return s;
}

static const char *descr_of(kiln_dtype dt) {
    switch (dt) {
    case KILN_DTYPE_FLOAT: case KILN_DTYPE_BFLOAT16: return "<f4";
    case KILN_DTYPE_DOUBLE: return "<f8";
    case KILN_DTYPE_FLOAT16: return "<f2";
    case KILN_DTYPE_INT64: return "<i8";
    case KILN_DTYPE_INT32: return "<i4";
    case KILN_DTYPE_INT16: return "<i2";
    case KILN_DTYPE_INT8: return "|i1";
    case KILN_DTYPE_UINT64: return "<u8";
    case KILN_DTYPE_UINT32: return "<u4";
    case KILN_DTYPE_UINT16: return "<u2";
    case KILN_DTYPE_UINT8: return "|u1";
    case KILN_DTYPE_BOOL: return "|b1";
    default: return NULL;
    }
}

kiln_status npy_write(const char *path, const kiln_tensor *t, kiln_error *err) {
    const char *descr = descr_of(t->dtype);
    if (!descr)
        return kiln_fail(err, KILN_ERR_UNSUPPORTED, "%s: cannot write dtype %s as .npy", path,
                         kiln_dtype_name(t->dtype));
    char h[512];
    int n = snprintf(h, sizeof h, "{'descr': '%s', 'fortran_order': False, 'shape': (", descr);
    for (int32_t r = 0; r < t->rank; r++)
        n += snprintf(h + n, sizeof h - (size_t)n, "%lld%s", (long long)t->dims[r],
                      t->rank == 1 ? "," : r + 1 < t->rank ? ", " : "");
    n += snprintf(h + n, sizeof h - (size_t)n, "), }");
    /* pad with spaces + '\n' so the data starts 64-byte aligned, as NumPy does */
    size_t total = 10 + (size_t)n + 1;
    size_t pad = (64 - total % 64) % 64;
    if ((size_t)n + pad + 1 >= sizeof h) return kiln_fail(err, KILN_ERR_INTERNAL, "%s: header too long", path);
    memset(h + n, ' ', pad);
    h[(size_t)n + pad] = '\n';
    size_t hlen = (size_t)n + pad + 1;
    uint8_t pre[10] = {0x93, 'N', 'U', 'M', 'P', 'Y', 1, 0, (uint8_t)(hlen & 0xff), (uint8_t)(hlen >> 8)};

    FILE *f = fopen(path, "wb");
    if (!f) return kiln_fail(err, KILN_ERR_IO, "%s: cannot create: %s", path, strerror(errno));
    int ok = fwrite(pre, 1, sizeof pre, f) == sizeof pre && fwrite(h, 1, hlen, f) == hlen;
    if (ok && t->dtype == KILN_DTYPE_BFLOAT16) {
        size_t ne = t->nbytes / 2;
        for (size_t i = 0; ok && i < ne; i++) {
            uint32_t bits = (uint32_t)((const uint16_t *)t->data)[i] << 16;
            ok = fwrite(&bits, 4, 1, f) == 1;
        }
    } else if (ok && t->nbytes) {
        ok = fwrite(t->data, 1, t->nbytes, f) == t->nbytes;
    }
    if (fclose(f)) ok = 0;
    if (!ok) return kiln_fail(err, KILN_ERR_IO, "%s: write failed: %s", path, strerror(errno));
    return KILN_OK;
}
