/* tensor_file.c — see tensor_file.h. */
#define _GNU_SOURCE   /* strcasestr */
#include "tensor_file.h"

#include "base/status.h"
#include "onnx/import.h"

#include <errno.h>
#include <math.h>
#include <stdlib.h>
#include <string.h>
#include <sys/stat.h>
#include <time.h>

/* ---- numbers ---- */

int tf_parse_i64(const char *s, int64_t *out) {
    if (!s || !*s) return -1;
    char *end;
    errno = 0;
    long long v = strtoll(s, &end, 10);
    if (errno || *end) return -1;
    *out = (int64_t)v;
    return 0;
}

int tf_parse_f64(const char *s, double *out) {
    if (!s || !*s) return -1;
    char *end;
    errno = 0;
    double v = strtod(s, &end);
    if (errno || *end || !isfinite(v)) return -1;
    *out = v;
    return 0;
}

/* Splits on ',' into a bounded scratch buffer so argv stays untouched. */
static int split_list(const char *s, int max, int (*one)(const char *, void *, int), void *out) {
    char tok[128];
    int n = 0;
    const char *p = s;
    for (;;) {
        size_t len = strcspn(p, ",");
        if (len >= sizeof tok || n >= max) return -1;
        memcpy(tok, p, len);
        tok[len] = '\0';
        if (one(tok, out, n)) return -1;
        n++;
        if (!p[len]) break;
        p += len + 1;
    }
    return n;
}

static int one_f64(const char *tok, void *out, int i) { return tf_parse_f64(tok, (double *)out + i); }
static int one_i64(const char *tok, void *out, int i) { return tf_parse_i64(tok, (int64_t *)out + i); }

int tf_parse_f64_list(const char *s, double *out, int max) { return split_list(s, max, one_f64, out); }
int tf_parse_i64_list(const char *s, int64_t *out, int max) { return split_list(s, max, one_i64, out); }

/* ---- --dim ---- */

int tf_dims_add(struct tf_dims *d, const char *arg, const char *cmd) {
    /* the last '=' splits, so names may hold anything but a trailing "=N" */
    const char *eq = strrchr(arg, '=');
    int64_t v;
    if (!eq || eq == arg || tf_parse_i64(eq + 1, &v) || v < 0) {
        fprintf(stderr, "%s: bad --dim '%s' (want NAME=VALUE with VALUE >= 0)\n", cmd, arg);
        return -1;
    }
    if (d->n >= TF_MAX_DIMS_OVERRIDES) {
        fprintf(stderr, "%s: too many --dim options (at most %d)\n", cmd, TF_MAX_DIMS_OVERRIDES);
        return -1;
    }
    d->e[d->n].key = arg;
    d->e[d->n].key_len = (size_t)(eq - arg);
    d->e[d->n].value = v;
    d->n++;
    return 0;
}

static int key_is(const struct tf_dims *d, int i, const char *s) {
    return strlen(s) == d->e[i].key_len && !memcmp(d->e[i].key, s, d->e[i].key_len);
}

int64_t tf_dims_lookup(const struct tf_dims *d, const char *sym, const char *input, int idx) {
    char ki[600];
    snprintf(ki, sizeof ki, "%s:%d", input ? input : "", idx);
    /* later options win, as with most command lines */
    for (int i = d->n - 1; i >= 0; i--)
        if (key_is(d, i, ki)) return d->e[i].value;
    if (sym)
        for (int i = d->n - 1; i >= 0; i--)
            if (key_is(d, i, sym)) return d->e[i].value;
    return -1;
}

/* ---- shapes ---- */

static int looks_like_seq(const char *s) {
    static const char *words[] = {"seq", "len", "token", "time"};
    if (!s) return 0;
    for (size_t i = 0; i < KILN_ARRAY_LEN(words); i++)
        if (strcasestr(s, words[i])) return 1;
    return 0;
}

void tf_resolve_bind(struct tf_resolve *r, const char *sym, int64_t v) {
    if (!sym || r->n_known >= 64) return;
    for (int k = 0; k < r->n_known; k++)
        if (!strcmp(r->known_sym[k], sym)) return;
    r->known_sym[r->n_known] = sym;
    r->known_val[r->n_known++] = v;
}

void tf_resolve_shape(const kiln_tensor_info *info, int index, const struct tf_resolve *r,
                      int64_t *dims, int *defaulted) {
    int32_t case_rank = -1;
    int64_t case_dims[KILN_MAX_RANK];
    int case_tried = 0;
    if (defaulted) *defaulted = 0;
    for (int32_t d = 0; d < info->rank; d++) {
        dims[d] = info->dims[d];
        if (dims[d] >= 0) continue;
        const char *sym = info->dim_names[d] && *info->dim_names[d] ? info->dim_names[d] : NULL;
        int64_t v = r->dims ? tf_dims_lookup(r->dims, sym, info->name, d) : -1;
        for (int k = 0; v < 0 && sym && k < r->n_known; k++)
            if (!strcmp(r->known_sym[k], sym)) v = r->known_val[k];
        if (v < 0 && d == 0 && r->batch > 0) v = r->batch;
        if (v < 0 && r->case_model) {
            if (!case_tried) {
                case_tried = 1;
                if (!tf_case_shape(r->case_model, info->name, index, &case_rank, case_dims)) case_rank = -1;
            }
            if (case_rank == info->rank) v = case_dims[d];
        }
        if (v < 0 && r->seq_heuristic && looks_like_seq(sym)) v = 128;
        if (v < 0) {
            v = 1;
            if (defaulted) *defaulted = 1;
        }
        dims[d] = v;
    }
}

/* ---- tensors ---- */

kiln_status tf_alloc(kiln_tensor *t, kiln_dtype dt, int32_t rank, const int64_t *dims,
                     kiln_error *err) {
    memset(t, 0, sizeof *t);
    size_t es = kiln_dtype_size(dt);
    if (!es) return kiln_fail(err, KILN_ERR_UNSUPPORTED, "dtype %s has no fixed size", kiln_dtype_name(dt));
    if (rank < 0 || rank > KILN_MAX_RANK)
        return kiln_fail(err, KILN_ERR_LIMIT, "rank %d is outside 0..%d", rank, KILN_MAX_RANK);
    uint64_t bytes = es;
    for (int32_t r = 0; r < rank; r++) {
        if (dims[r] < 0) return kiln_fail(err, KILN_ERR_SHAPE, "dim %d is negative (%lld)", r, (long long)dims[r]);
        if (kiln_mul_overflow_u64(bytes, (uint64_t)dims[r], &bytes))
            return kiln_fail(err, KILN_ERR_LIMIT, "tensor size overflows 64 bits");
    }
    if (bytes > TF_MAX_TENSOR_BYTES)
        return kiln_fail(err, KILN_ERR_LIMIT, "tensor needs %llu bytes, over the limit of %llu",
                         (unsigned long long)bytes, (unsigned long long)TF_MAX_TENSOR_BYTES);
    t->data = calloc(1, bytes ? (size_t)bytes : 1);
    if (!t->data) return kiln_fail(err, KILN_ERR_NO_MEMORY, "cannot allocate %llu bytes", (unsigned long long)bytes);
    t->dtype = dt;
    t->rank = rank;
    for (int32_t r = 0; r < rank; r++) t->dims[r] = dims[r];
    t->nbytes = (size_t)bytes;
    return KILN_OK;
}

void tf_free(kiln_tensor *t) {
    if (!t) return;
    free(t->data);
    t->data = NULL;
    t->nbytes = 0;
}

int64_t tf_numel(const kiln_tensor *t) {
    int64_t n = 1;
    for (int32_t r = 0; r < t->rank; r++) n *= t->dims[r];
    return n;
}

static float half_to_float(uint16_t h) {
    uint32_t sign = (uint32_t)(h >> 15) << 31, exp = (h >> 10) & 0x1f, man = h & 0x3ff, bits;
    if (exp == 0) {
        if (!man) bits = sign;
        else {   /* subnormal: renormalize */
            exp = 127 - 15 + 1;
            while (!(man & 0x400)) man <<= 1, exp--;
            bits = sign | (exp << 23) | ((man & 0x3ff) << 13);
        }
    } else if (exp == 31) bits = sign | 0x7f800000u | (man << 13);
    else bits = sign | ((exp - 15 + 127) << 23) | (man << 13);
    float f;
    memcpy(&f, &bits, sizeof f);
    return f;
}

int tf_dtype_is_float(kiln_dtype dt) {
    return dt == KILN_DTYPE_FLOAT || dt == KILN_DTYPE_DOUBLE || dt == KILN_DTYPE_FLOAT16 ||
           dt == KILN_DTYPE_BFLOAT16;
}

int tf_dtype_numeric(kiln_dtype dt) {
    switch (dt) {
    case KILN_DTYPE_FLOAT: case KILN_DTYPE_DOUBLE: case KILN_DTYPE_FLOAT16: case KILN_DTYPE_BFLOAT16:
    case KILN_DTYPE_UINT8: case KILN_DTYPE_INT8: case KILN_DTYPE_UINT16: case KILN_DTYPE_INT16:
    case KILN_DTYPE_INT32: case KILN_DTYPE_INT64: case KILN_DTYPE_UINT32: case KILN_DTYPE_UINT64:
    case KILN_DTYPE_BOOL:
        return 1;
    default:
        return 0;
    }
}

double tf_get_f64(const kiln_tensor *t, int64_t i) {
    const void *d = t->data;
    switch (t->dtype) {
    case KILN_DTYPE_FLOAT: return ((const float *)d)[i];
    case KILN_DTYPE_DOUBLE: return ((const double *)d)[i];
    case KILN_DTYPE_FLOAT16: return half_to_float(((const uint16_t *)d)[i]);
    case KILN_DTYPE_BFLOAT16: {
        uint32_t bits = (uint32_t)((const uint16_t *)d)[i] << 16;
        float f;
        memcpy(&f, &bits, sizeof f);
        return f;
    }
    case KILN_DTYPE_UINT8: return ((const uint8_t *)d)[i];
    case KILN_DTYPE_BOOL: return ((const uint8_t *)d)[i] != 0;
    case KILN_DTYPE_INT8: return ((const int8_t *)d)[i];
    case KILN_DTYPE_UINT16: return ((const uint16_t *)d)[i];
    case KILN_DTYPE_INT16: return ((const int16_t *)d)[i];
    case KILN_DTYPE_INT32: return ((const int32_t *)d)[i];
    case KILN_DTYPE_INT64: return (double)((const int64_t *)d)[i];
    case KILN_DTYPE_UINT32: return ((const uint32_t *)d)[i];
    case KILN_DTYPE_UINT64: return (double)((const uint64_t *)d)[i];
    default: return NAN;
    }
}

/* Integers go through int64 so that int64 <-> int32 stays exact. */
static int64_t get_i64(const kiln_tensor *t, int64_t i) {
    switch (t->dtype) {
    case KILN_DTYPE_INT64: return ((const int64_t *)t->data)[i];
    case KILN_DTYPE_UINT64: return (int64_t)((const uint64_t *)t->data)[i];
    default: {
        double v = tf_get_f64(t, i);
        if (isnan(v)) return 0;
        if (v >= 9.2e18) return INT64_MAX;
        if (v <= -9.2e18) return INT64_MIN;
        return (int64_t)v;
    }
    }
}

static uint16_t float_to_half(float f) {
    uint32_t x;
    memcpy(&x, &f, sizeof x);
    uint32_t sign = (x >> 16) & 0x8000;
    int32_t exp = (int32_t)((x >> 23) & 0xff) - 127 + 15;
    uint32_t man = x & 0x7fffff;
    if (((x >> 23) & 0xff) == 0xff) return (uint16_t)(sign | 0x7c00 | (man ? 0x200 : 0));
    if (exp >= 31) return (uint16_t)(sign | 0x7c00);
    if (exp <= 0) {
        if (exp < -10) return (uint16_t)sign;
        man |= 0x800000;
        uint32_t shift = (uint32_t)(14 - exp);
        uint32_t h = man >> shift;
        if ((man >> (shift - 1)) & 1) h++;   /* round half up: good enough for inputs */
        return (uint16_t)(sign | h);
    }
    uint32_t h = sign | ((uint32_t)exp << 10) | (man >> 13);
    if (man & 0x1000) h++;
    return (uint16_t)h;
}

static void set_i64(kiln_tensor *dst, int64_t i, int64_t v) {
    void *d = dst->data;
    switch (dst->dtype) {
    case KILN_DTYPE_UINT8: ((uint8_t *)d)[i] = (uint8_t)v; return;
    case KILN_DTYPE_BOOL: ((uint8_t *)d)[i] = v != 0; return;
    case KILN_DTYPE_INT8: ((int8_t *)d)[i] = (int8_t)v; return;
    case KILN_DTYPE_UINT16: ((uint16_t *)d)[i] = (uint16_t)v; return;
    case KILN_DTYPE_INT16: ((int16_t *)d)[i] = (int16_t)v; return;
    case KILN_DTYPE_INT32: ((int32_t *)d)[i] = (int32_t)v; return;
    case KILN_DTYPE_INT64: ((int64_t *)d)[i] = v; return;
    case KILN_DTYPE_UINT32: ((uint32_t *)d)[i] = (uint32_t)v; return;
    case KILN_DTYPE_UINT64: ((uint64_t *)d)[i] = (uint64_t)v; return;
    case KILN_DTYPE_FLOAT: ((float *)d)[i] = (float)v; return;
    case KILN_DTYPE_DOUBLE: ((double *)d)[i] = (double)v; return;
    case KILN_DTYPE_FLOAT16: ((uint16_t *)d)[i] = float_to_half((float)v); return;
    case KILN_DTYPE_BFLOAT16: {
        float f = (float)v;
        uint32_t b;
        memcpy(&b, &f, sizeof b);
        ((uint16_t *)d)[i] = (uint16_t)(b >> 16);
        return;
    }
    default: return;
    }
}

static void set_f64(kiln_tensor *dst, int64_t i, double v) {
    void *d = dst->data;
    switch (dst->dtype) {
    case KILN_DTYPE_FLOAT: ((float *)d)[i] = (float)v; return;
    case KILN_DTYPE_DOUBLE: ((double *)d)[i] = v; return;
    case KILN_DTYPE_FLOAT16: ((uint16_t *)d)[i] = float_to_half((float)v); return;
    case KILN_DTYPE_BFLOAT16: {
        float f = (float)v;
        uint32_t b;
        memcpy(&b, &f, sizeof b);
        ((uint16_t *)d)[i] = (uint16_t)(b >> 16);   /* truncation: inputs only */
        return;
    }
    case KILN_DTYPE_BOOL: ((uint8_t *)d)[i] = v != 0; return;
    default:   /* float -> integer truncates toward zero, saturating */
        set_i64(dst, i, isnan(v) ? 0 : v >= 9.2e18 ? INT64_MAX : v <= -9.2e18 ? INT64_MIN : (int64_t)v);
        return;
    }
}

static void set_from(kiln_tensor *dst, int64_t i, const kiln_tensor *src) {
    if (!tf_dtype_is_float(dst->dtype) && !tf_dtype_is_float(src->dtype)) set_i64(dst, i, get_i64(src, i));
    else set_f64(dst, i, tf_get_f64(src, i));
}

kiln_status tf_convert(kiln_tensor *t, kiln_dtype to, kiln_error *err) {
    if (t->dtype == to) return KILN_OK;
    if (!tf_dtype_numeric(t->dtype) || !tf_dtype_numeric(to))
        return kiln_fail(err, KILN_ERR_SHAPE, "cannot convert %s to %s", kiln_dtype_name(t->dtype),
                         kiln_dtype_name(to));
    kiln_tensor out;
    kiln_status s = tf_alloc(&out, to, t->rank, t->dims, err);
    if (s) return s;
    out.name = t->name;
    int64_t n = tf_numel(t);
    for (int64_t i = 0; i < n; i++) set_from(&out, i, t);
    tf_free(t);
    *t = out;
    return KILN_OK;
}

/* ---- random ---- */

uint64_t tf_rand_u64(uint64_t *state) {
    uint64_t z = (*state += 0x9e3779b97f4a7c15ull);
    z = (z ^ (z >> 30)) * 0xbf58476d1ce4e5b9ull;
    z = (z ^ (z >> 27)) * 0x94d049bb133111ebull;
    return z ^ (z >> 31);
}

void tf_fill_random(kiln_tensor *t, uint64_t *state, double flo, double fhi, int64_t ilo,
                    int64_t ihi) {
    int64_t n = tf_numel(t);
    uint64_t span = ihi > ilo ? (uint64_t)(ihi - ilo) : 1;
    for (int64_t i = 0; i < n; i++) {
        uint64_t r = tf_rand_u64(state);
        if (tf_dtype_is_float(t->dtype))
            set_f64(t, i, flo + (fhi - flo) * ((double)(r >> 11) * (1.0 / 9007199254740992.0)));
        else if (t->dtype == KILN_DTYPE_BOOL) set_i64(t, i, (int64_t)(r & 1));
        else set_i64(t, i, (int64_t)((uint64_t)ilo + r % span));
    }
}

/* ---- files ---- */

kiln_status tf_read_pb(const char *path, kiln_tensor *out, kiln_error *err) {
    memset(out, 0, sizeof *out);
    uint8_t *buf;
    size_t len;
    kiln_status s = kiln_read_file(path, TF_MAX_TENSOR_BYTES + (1u << 20), &buf, &len, err);
    if (s) return s;
    struct kiln_import_limits lim = {.max_tensor_bytes = TF_MAX_TENSOR_BYTES};
    struct kiln_value v;
    memset(&v, 0, sizeof v);
    s = kiln_onnx_read_tensor(buf, len, path, &lim, &v, NULL, err);
    free(buf);
    if (s) return s;
    out->dtype = v.dtype;
    out->rank = v.rank;
    memcpy(out->dims, v.dims, sizeof out->dims);
    out->data = v.data;
    out->nbytes = v.nbytes;
    return KILN_OK;
}

int tf_case_shape(const char *model_path, const char *input, int index, int32_t *rank,
                  int64_t *dims) {
    char dir[4096];
    snprintf(dir, sizeof dir, "%s", model_path);
    char *slash = strrchr(dir, '/');
    if (slash) *slash = '\0';
    else snprintf(dir, sizeof dir, ".");
    /* inputs are input_0.pb, input_1.pb, ...: match by the tensor's name */
    for (int k = 0; k < 64; k++) {
        char p[4200];
        snprintf(p, sizeof p, "%s/test_data_set_0/input_%d.pb", dir, k);
        struct stat st;
        if (stat(p, &st) != 0) break;
        uint8_t *buf;
        size_t len;
        if (kiln_read_file(p, TF_MAX_TENSOR_BYTES, &buf, &len, NULL)) continue;
        struct kiln_import_limits lim = {.max_tensor_bytes = TF_MAX_TENSOR_BYTES};
        struct kiln_value v;
        memset(&v, 0, sizeof v);
        char *name = NULL;
        kiln_status s = kiln_onnx_read_tensor(buf, len, p, &lim, &v, &name, NULL);
        free(buf);
        if (s) continue;
        int match = name && *name ? !strcmp(name, input) : k == index;
        free(name);
        free(v.data);
        if (match) {
            *rank = v.rank;
            memcpy(dims, v.dims, sizeof v.dims);
            return 1;
        }
    }
    return 0;
}

/* ---- formatting ---- */

void tf_shape_str(int32_t rank, const int64_t *dims, const char *const *dim_names, char *buf,
                  size_t n) {
    if (rank < 0) {
        snprintf(buf, n, "(no shape)");
        return;
    }
    size_t off = (size_t)snprintf(buf, n, "[");
    for (int32_t r = 0; r < rank && off < n; r++) {
        const char *sep = r ? ", " : "";
        if (dims[r] >= 0) off += (size_t)snprintf(buf + off, n - off, "%s%lld", sep, (long long)dims[r]);
        else off += (size_t)snprintf(buf + off, n - off, "%s%s", sep,
                                     dim_names && dim_names[r] ? dim_names[r] : "?");
    }
    if (off < n) snprintf(buf + off, n - off, "]");
}

void tf_model_label(const char *path, char *buf, size_t n) {
    const char *base = strrchr(path, '/');
    base = base ? base + 1 : path;
    if (!strcmp(base, "model.onnx")) {
        /* the folder name: .../resnet50/model.onnx -> resnet50 */
        const char *end = base - 1;
        if (end > path) {
            const char *start = end;
            while (start > path && start[-1] != '/') start--;
            snprintf(buf, n, "%.*s", (int)(end - start), start);
            if (*buf) return;
        }
    }
    size_t len = strlen(base);
    if (len > 5 && !strcmp(base + len - 5, ".onnx")) len -= 5;
    snprintf(buf, n, "%.*s", (int)len, base);
}

void tf_json_str(FILE *f, const char *s) {
    fputc('"', f);
    for (const unsigned char *p = (const unsigned char *)s; *p; p++) {
        if (*p == '"' || *p == '\\') fprintf(f, "\\%c", *p);
        else if (*p < 0x20) fprintf(f, "\\u%04x", *p);
        else fputc(*p, f);
    }
    fputc('"', f);
}

void tf_sanitize(const char *name, char *buf, size_t n) {
    size_t o = 0;
    if (!n) return;
    for (const char *p = name; *p && o + 1 < n; p++) {
        char c = *p;
        int ok = (c >= 'a' && c <= 'z') || (c >= 'A' && c <= 'Z') || (c >= '0' && c <= '9') ||
                 c == '_' || c == '-' || (c == '.' && o > 0);
        buf[o++] = ok ? c : '_';
    }
    if (!o && n > 1) buf[o++] = '_';
    buf[o] = '\0';
}

int tf_mkdirs(const char *path) {
    char tmp[4096];
    if (snprintf(tmp, sizeof tmp, "%s", path) >= (int)sizeof tmp) {
        errno = ENAMETOOLONG;
        return -1;
    }
    for (char *p = tmp + 1; *p; p++) {
        if (*p != '/') continue;
        *p = '\0';
        if (mkdir(tmp, 0777) && errno != EEXIST) return -1;
        *p = '/';
    }
    if (mkdir(tmp, 0777) && errno != EEXIST) return -1;
    struct stat st;
    if (stat(tmp, &st) || !S_ISDIR(st.st_mode)) {
        errno = ENOTDIR;
        return -1;
    }
    return 0;
}

void tf_human(double v, const char *unit, char *buf, size_t n) {
    static const char *prefixes[] = {"", "K", "M", "G", "T", "P"};
    int u = 0;
    while (fabs(v) >= 1000 && u < 5) v /= 1000, u++;
    if (u == 0) snprintf(buf, n, "%.0f%s%s", v, *unit ? " " : "", unit);
    else snprintf(buf, n, "%.2f %s%s", v, prefixes[u], unit);
}

double tf_now_ms(void) {
    struct timespec ts;
    clock_gettime(CLOCK_MONOTONIC, &ts);
    return (double)ts.tv_sec * 1e3 + (double)ts.tv_nsec / 1e6;
}

int tf_parse_layout(const char *s) {
    static const char *const names[] = {"auto", "plain", "nhwc", "blocked"};
    for (int i = 0; i < 4; i++)
        if (!strcmp(s, names[i])) return i;
    return -1;
}
