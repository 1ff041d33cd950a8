/*
 * infer.c — KServe v2 inference requests and responses, JSON and binary.
 *
 * Parsing is a pure function of (signature, body bytes): it touches no server
 * state, so the fuzzer drives it directly. Every size taken from a request is
 * checked (shape product overflow, element limit, binary sizes against the
 * bytes actually received) before anything is allocated from it.
 */
#include "serve/internal.h"

#include <json-c/json.h>
#include <math.h>
#include <stdarg.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

struct perr {
    char  *msg;
    size_t size;
};

static int bad(struct perr *e, int status, const char *fmt, ...) __attribute__((format(printf, 3, 4)));
static int bad(struct perr *e, int status, const char *fmt, ...) {
    va_list ap;
    va_start(ap, fmt);
    vsnprintf(e->msg, e->size, fmt, ap);
    va_end(ap);
    return status;
}

static void fmt_shape(char *buf, size_t n, const int64_t *dims, int32_t rank) {
    size_t o = (size_t)snprintf(buf, n, "[");
    for (int32_t i = 0; i < rank && o < n; i++)
        o += (size_t)snprintf(buf + o, n - o, "%s%lld", i ? "," : "", (long long)dims[i]);
    if (o < n) snprintf(buf + o, n - o, "]");
}

void kiln_serve_infer_free(struct kiln_serve_infer *r) {
    if (!r) return;
    for (int32_t i = 0; i < SRV_MAX_IO; i++) free(r->owned[i]);
    free(r->id);
    free(r);
}

/* Walks nested arrays, storing leaves in row-major order. */
struct fill {
    kiln_dtype t;
    uint8_t   *dst;
    uint64_t   n, cap;      /* leaves stored, leaves expected */
    const char *name;
    struct perr *e;
    int        status;
};

static bool put_leaf(struct fill *f, json_object *v) {
    if (f->n >= f->cap) {
        f->status = bad(f->e, 400, "input '%s': data has more elements than its shape", f->name);
        return false;
    }
    size_t es = kiln_dtype_size(f->t);
    uint8_t *p = f->dst + f->n * es;
    enum json_type jt = json_object_get_type(v);
    switch (f->t) {
    case KILN_DTYPE_BOOL:
        if (jt == json_type_boolean) *p = (uint8_t)json_object_get_boolean(v);
        else if (jt == json_type_int && (json_object_get_int64(v) == 0 || json_object_get_int64(v) == 1))
            *p = (uint8_t)json_object_get_int64(v);
        else goto type_err;
        break;
    case KILN_DTYPE_FLOAT: case KILN_DTYPE_DOUBLE: case KILN_DTYPE_FLOAT16: case KILN_DTYPE_BFLOAT16: {
        if (jt != json_type_double && jt != json_type_int) goto type_err;
        double d = json_object_get_double(v);
        if (f->t == KILN_DTYPE_DOUBLE) memcpy(p, &d, 8);
        else if (f->t == KILN_DTYPE_FLOAT) { float x = (float)d; memcpy(p, &x, 4); }
        else {
            uint16_t h = f->t == KILN_DTYPE_FLOAT16 ? f32_to_f16((float)d) : f32_to_bf16((float)d);
            memcpy(p, &h, 2);
        }
        break;
    }
    default: {
        if (jt != json_type_int) goto type_err;
        int64_t s = json_object_get_int64(v);
        uint64_t u = 0;
        bool neg = s < 0;
        if (s == INT64_MAX) u = json_object_get_uint64(v);   /* json-c saturates int64 */
        else if (!neg) u = (uint64_t)s;
        int64_t lo = 0; uint64_t hi = 0;
        switch (f->t) {
        case KILN_DTYPE_UINT8: hi = UINT8_MAX; break;
        case KILN_DTYPE_UINT16: hi = UINT16_MAX; break;
        case KILN_DTYPE_UINT32: hi = UINT32_MAX; break;
        case KILN_DTYPE_UINT64: hi = UINT64_MAX; break;
        case KILN_DTYPE_INT8: lo = INT8_MIN; hi = INT8_MAX; break;
        case KILN_DTYPE_INT16: lo = INT16_MIN; hi = INT16_MAX; break;
        case KILN_DTYPE_INT32: lo = INT32_MIN; hi = INT32_MAX; break;
        case KILN_DTYPE_INT64: lo = INT64_MIN; hi = INT64_MAX; break;
        default: goto type_err;
        }
        if ((neg && s < lo) || (!neg && u > hi)) {
            f->status = bad(f->e, 400, "input '%s': element %llu (%s) is out of range for %s", f->name,
                            (unsigned long long)f->n, json_object_to_json_string(v), v2_dtype_name(f->t));
            return false;
        }
        if (neg) memcpy(p, &s, es);     /* little-endian: low bytes of two's complement */
        else memcpy(p, &u, es);
        break;
    }
    }
    f->n++;
    return true;
type_err:
    f->status = bad(f->e, 400, "input '%s': element %llu is %s, not a %s value", f->name,
                    (unsigned long long)f->n, json_type_to_name(jt), v2_dtype_name(f->t));
    return false;
}

static bool walk(struct fill *f, json_object *v, int depth) {
    if (json_object_is_type(v, json_type_array)) {
        if (depth > KILN_MAX_RANK) {
            f->status = bad(f->e, 400, "input '%s': data nested deeper than %d", f->name, KILN_MAX_RANK);
            return false;
        }
        size_t n = json_object_array_length(v);
        for (size_t i = 0; i < n; i++)
            if (!walk(f, json_object_array_get_idx(v, i), depth + 1)) return false;
        return true;
    }
    return put_leaf(f, v);
}

static bool param_value_ok(json_object *v) {
    enum json_type t = json_object_get_type(v);
    return t == json_type_string || t == json_type_int || t == json_type_double || t == json_type_boolean;
}

int kiln_serve_parse_infer(const struct kiln_serve_sig *sig, const char *body, size_t len,
                           size_t header_len, uint64_t max_elems, struct kiln_serve_infer **out,
                           char *msg, size_t msg_size) {
    struct perr e = {msg, msg_size};
    *out = NULL;
    if (header_len > len) return bad(&e, 400, "Inference-Header-Content-Length %zu exceeds the body (%zu bytes)", header_len, len);
    if (header_len == 0) return bad(&e, 400, "empty request body");
    if (header_len > INT32_MAX) return bad(&e, 413, "JSON header too large");
    struct json_tokener *tok = json_tokener_new_ex(KILN_MAX_RANK + 8);
    if (!tok) return bad(&e, 500, "out of memory");
    json_object *root = json_tokener_parse_ex(tok, body, (int)header_len);
    enum json_tokener_error je = json_tokener_get_error(tok);
    size_t end = json_tokener_get_parse_end(tok);
    json_tokener_free(tok);
    int status = 200;
    struct kiln_serve_infer *r = NULL;
    if (!root || je != json_tokener_success) {
        status = bad(&e, 400, "invalid JSON in request: %s at byte %zu",
                     je == json_tokener_continue ? "unexpected end of data" : json_tokener_error_desc(je), end);
        goto done;
    }
    for (size_t i = end; i < header_len; i++)
        if (body[i] != ' ' && body[i] != '\n' && body[i] != '\r' && body[i] != '\t') {
            status = bad(&e, 400, "invalid JSON in request: trailing data at byte %zu%s", i,
                         header_len == len ? " (binary data needs Inference-Header-Content-Length)" : "");
            goto done;
        }
    if (!json_object_is_type(root, json_type_object)) {
        status = bad(&e, 400, "request must be a JSON object");
        goto done;
    }
    r = calloc(1, sizeof *r);
    if (!r) { status = bad(&e, 500, "out of memory"); goto done; }

    bool bin_out_all = false;
    json_object *jinputs = NULL, *joutputs = NULL;
    json_object_object_foreach(root, key, val) {
        if (!strcmp(key, "id")) {
            if (!json_object_is_type(val, json_type_string)) { status = bad(&e, 400, "'id' must be a string"); goto done; }
            r->id = strdup(json_object_get_string(val));
            if (!r->id) { status = bad(&e, 500, "out of memory"); goto done; }
        } else if (!strcmp(key, "parameters")) {
            if (!json_object_is_type(val, json_type_object)) { status = bad(&e, 400, "'parameters' must be an object"); goto done; }
            json_object_object_foreach(val, pk, pv) {
                if (!param_value_ok(pv)) { status = bad(&e, 400, "parameter '%s' must be a string, number or bool", pk); goto done; }
                if (!strcmp(pk, "binary_data_output")) {
                    if (!json_object_is_type(pv, json_type_boolean)) { status = bad(&e, 400, "parameter 'binary_data_output' must be a bool"); goto done; }
                    bin_out_all = json_object_get_boolean(pv);
                } else if (!strcmp(pk, "timeout")) {
                    if (!json_object_is_type(pv, json_type_int) || json_object_get_int64(pv) < 0) {
                        status = bad(&e, 400, "parameter 'timeout' must be a non-negative integer (microseconds)");
                        goto done;
                    }
                    r->timeout_us = json_object_get_int64(pv);
                    if (r->timeout_us > INT64_MAX / 1000) r->timeout_us = INT64_MAX / 1000;
                }
            }
        } else if (!strcmp(key, "inputs")) {
            jinputs = val;
        } else if (!strcmp(key, "outputs")) {
            joutputs = val;
        }
    }
    if (!jinputs || !json_object_is_type(jinputs, json_type_array)) {
        status = bad(&e, 400, "request needs an 'inputs' array");
        goto done;
    }
    size_t n_in = json_object_array_length(jinputs);
    bool batched = sig->max_batch_size > 0;
    int64_t batch = -1;
    uint64_t bin_off = 0;
    bool seen[SRV_MAX_IO] = {0};
    for (size_t k = 0; k < n_in; k++) {
        json_object *ji = json_object_array_get_idx(jinputs, k);
        if (!json_object_is_type(ji, json_type_object)) { status = bad(&e, 400, "inputs[%zu] must be an object", k); goto done; }
        json_object *jn = NULL, *js = NULL, *jt = NULL, *jd = NULL, *jp = NULL;
        json_object_object_get_ex(ji, "name", &jn);
        json_object_object_get_ex(ji, "shape", &js);
        json_object_object_get_ex(ji, "datatype", &jt);
        json_object_object_get_ex(ji, "data", &jd);
        json_object_object_get_ex(ji, "parameters", &jp);
        if (!jn || !json_object_is_type(jn, json_type_string)) { status = bad(&e, 400, "inputs[%zu] needs a string 'name'", k); goto done; }
        const char *name = json_object_get_string(jn);
        int32_t idx = -1;
        for (int32_t i = 0; i < sig->n_in; i++)
            if (!strcmp(sig->in[i].name, name)) idx = i;
        if (idx < 0) { status = bad(&e, 400, "unexpected input '%s': the model has no input of that name", name); goto done; }
        if (seen[idx]) { status = bad(&e, 400, "input '%s' is given twice", name); goto done; }
        seen[idx] = true;
        const struct srv_io *io = &sig->in[idx];
        if (!jt || !json_object_is_type(jt, json_type_string)) { status = bad(&e, 400, "input '%s' needs a string 'datatype'", name); goto done; }
        kiln_dtype dt = v2_dtype_parse(json_object_get_string(jt));
        if (dt == KILN_DTYPE_UNDEFINED) { status = bad(&e, 400, "input '%s': unknown datatype '%s'", name, json_object_get_string(jt)); goto done; }
        if (dt != io->dtype) {
            status = bad(&e, 400, "input '%s': datatype %s, but the model expects %s", name,
                         json_object_get_string(jt), v2_dtype_name(io->dtype));
            goto done;
        }
        if (dt == KILN_DTYPE_STRING) { status = bad(&e, 400, "input '%s': BYTES tensors are not supported by this model", name); goto done; }
        if (!js || !json_object_is_type(js, json_type_array)) { status = bad(&e, 400, "input '%s' needs a 'shape' array", name); goto done; }
        size_t rank = json_object_array_length(js);
        kiln_tensor *t = &r->in[idx];
        t->name = io->name;
        t->dtype = dt;
        char want[160], got[160];
        if ((int64_t)rank != io->rank || rank > KILN_MAX_RANK) {
            fmt_shape(want, sizeof want, io->dims, io->rank);
            status = bad(&e, 400, "input '%s': shape has %zu dims, expected %d %s%s", name, rank, io->rank, want,
                         batched ? " (the first is the batch dimension, -1 = any)" : " (-1 = any)");
            goto done;
        }
        t->rank = (int32_t)rank;
        uint64_t elems = 1;
        for (size_t d = 0; d < rank; d++) {
            json_object *jv = json_object_array_get_idx(js, d);
            if (!json_object_is_type(jv, json_type_int) || json_object_get_int64(jv) < 0) {
                status = bad(&e, 400, "input '%s': shape[%zu] must be a non-negative integer", name, d);
                goto done;
            }
            t->dims[d] = json_object_get_int64(jv);
            if (__builtin_mul_overflow(elems, (uint64_t)t->dims[d], &elems)) elems = UINT64_MAX;
        }
        bool shape_ok = true;
        for (size_t d = 0; d < rank; d++)
            if (io->dims[d] >= 0 && io->dims[d] != t->dims[d]) shape_ok = false;
        if (!shape_ok) {
            fmt_shape(want, sizeof want, io->dims, io->rank);
            fmt_shape(got, sizeof got, t->dims, t->rank);
            status = bad(&e, 400, "input '%s': shape %s does not match the model's %s%s", name, got, want,
                         batched ? " (the first dimension is the batch, -1 = any)" : " (-1 = any)");
            goto done;
        }
        if (batched) {
            if (t->dims[0] < 1 || t->dims[0] > sig->max_batch_size) {
                status = bad(&e, 400, "input '%s': batch size %lld is outside [1, %lld] (max_batch_size)", name,
                             (long long)t->dims[0], (long long)sig->max_batch_size);
                goto done;
            }
            if (batch >= 0 && batch != t->dims[0]) {
                status = bad(&e, 400, "input '%s': batch size %lld differs from other inputs' %lld", name,
                             (long long)t->dims[0], (long long)batch);
                goto done;
            }
            batch = t->dims[0];
        }
        if (elems > max_elems) {
            status = bad(&e, 400, "input '%s': %llu elements exceed the limit of %llu", name,
                         (unsigned long long)elems, (unsigned long long)max_elems);
            goto done;
        }
        size_t es = kiln_dtype_size(dt);
        uint64_t nbytes = elems * es;    /* no overflow: elems <= max_elems, far below 2^60 */
        json_object *jbs = NULL;
        if (jp) {
            if (!json_object_is_type(jp, json_type_object)) { status = bad(&e, 400, "input '%s': 'parameters' must be an object", name); goto done; }
            json_object_object_get_ex(jp, "binary_data_size", &jbs);
        }
        if (jbs) {
            if (jd) { status = bad(&e, 400, "input '%s' has both 'data' and binary_data_size", name); goto done; }
            if (!json_object_is_type(jbs, json_type_int) || json_object_get_int64(jbs) < 0) {
                status = bad(&e, 400, "input '%s': binary_data_size must be a non-negative integer", name);
                goto done;
            }
            uint64_t bs = (uint64_t)json_object_get_int64(jbs);
            if (bs != nbytes) {
                status = bad(&e, 400, "input '%s': binary_data_size %llu, but shape %s of %s needs %llu bytes",
                             name, (unsigned long long)bs, (fmt_shape(got, sizeof got, t->dims, t->rank), got),
                             v2_dtype_name(dt), (unsigned long long)nbytes);
                goto done;
            }
            if (bs > len - header_len - bin_off) {
                status = bad(&e, 400, "input '%s': binary_data_size %llu runs past the %zu bytes of binary data",
                             name, (unsigned long long)bs, len - header_len);
                goto done;
            }
            t->data = (void *)(body + header_len + bin_off);
            t->nbytes = (size_t)bs;
            bin_off += bs;
        } else {
            if (!jd) { status = bad(&e, 400, "input '%s' has neither 'data' nor binary_data_size", name); goto done; }
            r->owned[idx] = malloc(nbytes ? (size_t)nbytes : 1);
            if (!r->owned[idx]) { status = bad(&e, 500, "out of memory"); goto done; }
            struct fill f = {dt, r->owned[idx], 0, elems, name, &e, 200};
            if (!walk(&f, jd, 0)) { status = f.status; goto done; }
            if (f.n != elems) {
                fmt_shape(got, sizeof got, t->dims, t->rank);
                status = bad(&e, 400, "input '%s': shape %s has %llu elements, but data has %llu", name, got,
                             (unsigned long long)elems, (unsigned long long)f.n);
                goto done;
            }
            t->data = r->owned[idx];
            t->nbytes = (size_t)nbytes;
        }
    }
    if (bin_off != len - header_len) {
        status = bad(&e, 400, "binary data is %zu bytes, but inputs' binary_data_size add up to %llu",
                     len - header_len, (unsigned long long)bin_off);
        goto done;
    }
    for (int32_t i = 0; i < sig->n_in; i++)
        if (!seen[i]) { status = bad(&e, 400, "missing input '%s'", sig->in[i].name); goto done; }
    r->n_in = sig->n_in;
    r->batch = batched ? batch : 1;

    if (joutputs) {
        if (!json_object_is_type(joutputs, json_type_array)) { status = bad(&e, 400, "'outputs' must be an array"); goto done; }
        size_t n = json_object_array_length(joutputs);
        if (n > SRV_MAX_IO) { status = bad(&e, 400, "too many requested outputs"); goto done; }
        for (size_t k = 0; k < n; k++) {
            json_object *jo = json_object_array_get_idx(joutputs, k), *jn = NULL, *jp = NULL;
            if (!json_object_is_type(jo, json_type_object) || !json_object_object_get_ex(jo, "name", &jn) ||
                !json_object_is_type(jn, json_type_string)) {
                status = bad(&e, 400, "outputs[%zu] needs a string 'name'", k);
                goto done;
            }
            const char *name = json_object_get_string(jn);
            int32_t idx = -1;
            for (int32_t i = 0; i < sig->n_out; i++)
                if (!strcmp(sig->out[i].name, name)) idx = i;
            if (idx < 0) { status = bad(&e, 400, "unknown output '%s' requested", name); goto done; }
            for (int32_t i = 0; i < r->n_out; i++)
                if (r->out[i].idx == idx) { status = bad(&e, 400, "output '%s' is requested twice", name); goto done; }
            bool binary = bin_out_all;
            if (json_object_object_get_ex(jo, "parameters", &jp)) {
                if (!json_object_is_type(jp, json_type_object)) { status = bad(&e, 400, "output '%s': 'parameters' must be an object", name); goto done; }
                json_object_object_foreach(jp, pk, pv) {
                    if (!strcmp(pk, "binary_data")) {
                        if (!json_object_is_type(pv, json_type_boolean)) { status = bad(&e, 400, "output '%s': binary_data must be a bool", name); goto done; }
                        binary = json_object_get_boolean(pv);
                    } else if (!strcmp(pk, "classification")) {
                        status = bad(&e, 400, "output '%s': the classification extension is not supported", name);
                        goto done;
                    }
                }
            }
            r->out[r->n_out].idx = idx;
            r->out[r->n_out].binary = binary;
            r->n_out++;
        }
    } else {
        for (int32_t i = 0; i < sig->n_out; i++) r->out[r->n_out++] = (struct srv_out_req){i, bin_out_all};
    }
done:
    json_object_put(root);
    if (status != 200) {
        kiln_serve_infer_free(r);
        return status;
    }
    *out = r;
    return 200;
}

/* ---- responses ----------------------------------------------------------- */

static void put_number(struct sbuf *b, double d, bool is_f32) {
    if (!isfinite(d)) { sb_puts(b, "null"); return; }   /* JSON has no NaN/Inf: use binary */
    char tmp[40];
    int n = snprintf(tmp, sizeof tmp, is_f32 ? "%.9g" : "%.17g", d);
    sb_put(b, tmp, (size_t)n);
}

static void put_data_json(struct sbuf *b, kiln_dtype t, const uint8_t *p, uint64_t n) {
    size_t es = kiln_dtype_size(t);
    char tmp[32];
    sb_put(b, "[", 1);
    for (uint64_t i = 0; i < n && !b->oom; i++, p += es) {
        if (i) sb_put(b, ",", 1);
        int k = 0;
        switch (t) {
        case KILN_DTYPE_BOOL: sb_puts(b, *p ? "true" : "false"); break;
        case KILN_DTYPE_UINT8: k = snprintf(tmp, sizeof tmp, "%u", (unsigned)*p); break;
        case KILN_DTYPE_INT8: k = snprintf(tmp, sizeof tmp, "%d", (int)(int8_t)*p); break;
        case KILN_DTYPE_UINT16: { uint16_t v; memcpy(&v, p, 2); k = snprintf(tmp, sizeof tmp, "%u", (unsigned)v); break; }
        case KILN_DTYPE_INT16: { int16_t v; memcpy(&v, p, 2); k = snprintf(tmp, sizeof tmp, "%d", (int)v); break; }
        case KILN_DTYPE_UINT32: { uint32_t v; memcpy(&v, p, 4); k = snprintf(tmp, sizeof tmp, "%u", v); break; }
        case KILN_DTYPE_INT32: { int32_t v; memcpy(&v, p, 4); k = snprintf(tmp, sizeof tmp, "%d", v); break; }
        case KILN_DTYPE_UINT64: { uint64_t v; memcpy(&v, p, 8); k = snprintf(tmp, sizeof tmp, "%llu", (unsigned long long)v); break; }
        case KILN_DTYPE_INT64: { int64_t v; memcpy(&v, p, 8); k = snprintf(tmp, sizeof tmp, "%lld", (long long)v); break; }
        case KILN_DTYPE_FLOAT: { float v; memcpy(&v, p, 4); put_number(b, v, true); break; }
        case KILN_DTYPE_DOUBLE: { double v; memcpy(&v, p, 8); put_number(b, v, false); break; }
        case KILN_DTYPE_FLOAT16: { uint16_t v; memcpy(&v, p, 2); put_number(b, f16_to_f32(v), true); break; }
        case KILN_DTYPE_BFLOAT16: { uint16_t v; memcpy(&v, p, 2); put_number(b, bf16_to_f32(v), true); break; }
        default: sb_puts(b, "null"); break;
        }
        if (k > 0) sb_put(b, tmp, (size_t)k);
    }
    sb_put(b, "]", 1);
}

int build_infer_response(struct srv_version *v, struct srv_call *c, const kiln_tensor *outs,
                         int64_t row0) {
    const struct kiln_serve_infer *r = c->req;
    bool batched = v->cfg.sig.max_batch_size > 0;
    struct sbuf b = {0};
    sb_puts(&b, "{\"model_name\":");
    sb_json_str(&b, v->name);
    sb_printf(&b, ",\"model_version\":\"%lld\"", (long long)v->version);
    if (r->id) { sb_puts(&b, ",\"id\":"); sb_json_str(&b, r->id); }
    sb_puts(&b, ",\"outputs\":[");
    bool any_bin = false;
    const uint8_t *slice[SRV_MAX_IO];
    uint64_t slice_bytes[SRV_MAX_IO];
    for (int32_t k = 0; k < r->n_out; k++) {
        const kiln_tensor *t = &outs[r->out[k].idx];
        const char *dt = v2_dtype_name(t->dtype);
        if (!dt || t->dtype == KILN_DTYPE_STRING || (batched && (t->rank < 1 || t->dims[0] < row0 + r->batch))) {
            sb_free(&b);
            call_set_error(c, 500, "output '%s': %s", t->name ? t->name : "?",
                           !dt || t->dtype == KILN_DTYPE_STRING ? "its type cannot be returned"
                                                                : "it does not keep the batch dimension");
            return 500;
        }
        int64_t dims[KILN_MAX_RANK];
        memcpy(dims, t->dims, sizeof dims);
        uint64_t elems = 1;
        for (int32_t d = 0; d < t->rank; d++) elems *= (uint64_t)t->dims[d];
        const uint8_t *p = t->data;
        if (batched) {
            uint64_t row_elems = t->dims[0] ? elems / (uint64_t)t->dims[0] : 0;
            p += (uint64_t)row0 * row_elems * kiln_dtype_size(t->dtype);
            dims[0] = r->batch;
            elems = row_elems * (uint64_t)r->batch;
        }
        sb_puts(&b, k ? ",{\"name\":" : "{\"name\":");
        sb_json_str(&b, t->name ? t->name : v->cfg.sig.out[r->out[k].idx].name);
        sb_printf(&b, ",\"datatype\":\"%s\",\"shape\":[", dt);
        for (int32_t d = 0; d < t->rank; d++) sb_printf(&b, "%s%lld", d ? "," : "", (long long)dims[d]);
        sb_puts(&b, "]");
        slice[k] = p;
        slice_bytes[k] = elems * kiln_dtype_size(t->dtype);
        if (r->out[k].binary) {
            any_bin = true;
            sb_printf(&b, ",\"parameters\":{\"binary_data_size\":%llu}}", (unsigned long long)slice_bytes[k]);
        } else {
            sb_puts(&b, ",\"data\":");
            put_data_json(&b, t->dtype, p, elems);
            sb_puts(&b, "}");
        }
    }
    sb_puts(&b, "]}");
    size_t header_len = b.len;
    if (any_bin)
        for (int32_t k = 0; k < r->n_out; k++)
            if (r->out[k].binary) sb_put(&b, slice[k], slice_bytes[k]);
    if (b.oom) {
        sb_free(&b);
        call_set_error(c, 500, "out of memory building the response");
        return 500;
    }
    call_set_response(c, 200, b.p, b.len, any_bin ? header_len : 0);
    return 200;
}

/* ---- test signatures (fuzzer, unit tests) ------------------------------- */

struct kiln_serve_sig *kiln_serve_sig_new_simple(int n_in, int n_out, kiln_dtype dt, int rank,
                                                 const int64_t *dims, int64_t max_batch_size) {
    if (n_in < 1 || n_in > SRV_MAX_IO || n_out < 1 || n_out > SRV_MAX_IO || rank < 0 || rank > KILN_MAX_RANK)
        return NULL;
    struct kiln_serve_sig *s = calloc(1, sizeof *s);
    if (!s) return NULL;
    s->in = calloc((size_t)n_in, sizeof *s->in);
    s->out = calloc((size_t)n_out, sizeof *s->out);
    s->n_in = n_in;
    s->n_out = n_out;
    s->max_batch_size = max_batch_size;
    for (int k = 0; k < 2 && s->in && s->out; k++)
        for (int i = 0; i < (k ? n_out : n_in); i++) {
            struct srv_io *io = k ? &s->out[i] : &s->in[i];
            char nm[16];
            snprintf(nm, sizeof nm, "%s%d", k ? "y" : "x", i);
            io->name = strdup(nm);
            io->dtype = dt;
            io->rank = rank;
            for (int d = 0; d < rank; d++) io->dims[d] = dims[d];
        }
    return s;
}

void kiln_serve_sig_free(struct kiln_serve_sig *s) {
    if (!s) return;
    if (s->in && s->out) srv_sig_free_fields(s);
    else { free(s->in); free(s->out); }
    free(s);
}
