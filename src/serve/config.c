/*
 * config.c — DIR/<model>/config.json: parsing, validation against the model,
 * and the defaults derived from it.
 *
 * Every field is optional. Unknown fields are errors (a typo must not be
 * silently ignored), and every error names the file and the field.
 */
#include "serve/internal.h"
#include "base/status.h"

#include <json-c/json.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

#define MAX_BATCH_LIMIT 4096
#define DEFAULT_MAX_BATCH 8            /* sizes 1,2,4,8: all warm and cached */
#define DEFAULT_QUEUE_SIZE 1024

void srv_sig_free_fields(struct kiln_serve_sig *s) {
    for (int32_t i = 0; i < s->n_in; i++) free(s->in[i].name);
    for (int32_t i = 0; i < s->n_out; i++) free(s->out[i].name);
    free(s->in);
    free(s->out);
    s->in = s->out = NULL;
    s->n_in = s->n_out = 0;
}

void srv_config_free(struct srv_config *c) { srv_sig_free_fields(&c->sig); }

static bool get_int(json_object *o, const char *path, const char *field, int64_t lo, int64_t hi,
                    int64_t *out, kiln_error *err) {
    if (!json_object_is_type(o, json_type_int)) {
        kiln_fail(err, KILN_ERR_BAD_MODEL, "%s: field '%s': expected an integer", path, field);
        return false;
    }
    int64_t v = json_object_get_int64(o);
    if (v < lo || v > hi) {
        kiln_fail(err, KILN_ERR_BAD_MODEL, "%s: field '%s': %lld is out of range [%lld, %lld]",
                  path, field, (long long)v, (long long)lo, (long long)hi);
        return false;
    }
    *out = v;
    return true;
}

/* Applies a config "inputs"/"outputs" entry list onto the derived signature. */
static bool apply_io(json_object *arr, const char *path, const char *field, struct srv_io *ios,
                     int32_t n, bool batched, kiln_error *err) {
    if (!json_object_is_type(arr, json_type_array)) {
        kiln_fail(err, KILN_ERR_BAD_MODEL, "%s: field '%s': expected an array", path, field);
        return false;
    }
    size_t len = json_object_array_length(arr);
    for (size_t k = 0; k < len; k++) {
        json_object *e = json_object_array_get_idx(arr, k);
        char f[96];
        snprintf(f, sizeof f, "%s[%zu]", field, k);
        if (!json_object_is_type(e, json_type_object)) {
            kiln_fail(err, KILN_ERR_BAD_MODEL, "%s: field '%s': expected an object", path, f);
            return false;
        }
        json_object *jn = NULL, *jt = NULL, *jd = NULL;
        json_object_object_foreach(e, key, val) {
            if (!strcmp(key, "name")) jn = val;
            else if (!strcmp(key, "datatype") || !strcmp(key, "data_type")) jt = val;
            else if (!strcmp(key, "dims")) jd = val;
            else {
                kiln_fail(err, KILN_ERR_BAD_MODEL, "%s: field '%s.%s': unknown field", path, f, key);
                return false;
            }
        }
        if (!jn || !json_object_is_type(jn, json_type_string)) {
            kiln_fail(err, KILN_ERR_BAD_MODEL, "%s: field '%s.name': expected a string", path, f);
            return false;
        }
        const char *name = json_object_get_string(jn);
        struct srv_io *io = NULL;
        for (int32_t i = 0; i < n; i++)
            if (!strcmp(ios[i].name, name)) io = &ios[i];
        if (!io) {
            kiln_fail(err, KILN_ERR_BAD_MODEL, "%s: field '%s.name': the model has no %s named '%s'",
                      path, f, !strcmp(field, "inputs") ? "input" : "output", name);
            return false;
        }
        if (jt) {
            const char *ts = json_object_get_string(jt);
            kiln_dtype t = v2_dtype_parse(ts && !strncmp(ts, "TYPE_", 5) ? ts + 5 : ts);
            if (t == KILN_DTYPE_UNDEFINED && ts && !strcmp(ts, "TYPE_STRING")) t = KILN_DTYPE_STRING;
            if (t != io->dtype) {
                kiln_fail(err, KILN_ERR_BAD_MODEL,
                          "%s: field '%s.datatype': '%s' but the model's '%s' is %s", path, f,
                          ts ? ts : "?", name, v2_dtype_name(io->dtype) ? v2_dtype_name(io->dtype) : "?");
                return false;
            }
        }
        if (jd) {
            if (!json_object_is_type(jd, json_type_array)) {
                kiln_fail(err, KILN_ERR_BAD_MODEL, "%s: field '%s.dims': expected an array", path, f);
                return false;
            }
            int32_t off = batched ? 1 : 0;
            size_t nd = json_object_array_length(jd);
            if (io->rank >= 0 && (int64_t)nd + off != io->rank) {
                kiln_fail(err, KILN_ERR_BAD_MODEL,
                          "%s: field '%s.dims': %zu dims, but '%s' has rank %d%s", path, f, nd, name,
                          io->rank, batched ? " including the batch dimension (dims exclude it)" : "");
                return false;
            }
            if ((int64_t)nd + off > KILN_MAX_RANK) {
                kiln_fail(err, KILN_ERR_BAD_MODEL, "%s: field '%s.dims': rank above %d", path, f,
                          KILN_MAX_RANK);
                return false;
            }
            io->rank = (int32_t)nd + off;
            if (batched) io->dims[0] = -1;
            for (size_t d = 0; d < nd; d++) {
                int64_t v;
                char fd[128];
                snprintf(fd, sizeof fd, "%s.dims[%zu]", f, d);
                if (!get_int(json_object_array_get_idx(jd, d), path, fd, -1, INT32_MAX, &v, err))
                    return false;
                int64_t have = io->dims[d + off];
                if (have >= 0 && v >= 0 && have != v) {
                    kiln_fail(err, KILN_ERR_BAD_MODEL, "%s: field '%s': %lld, but the model has %lld",
                              path, fd, (long long)v, (long long)have);
                    return false;
                }
                if (v >= 0) io->dims[d + off] = v;
            }
        }
    }
    return true;
}

static bool derive_sig(const kiln_model *m, const char *label, struct kiln_serve_sig *s,
                       kiln_error *err) {
    s->n_in = kiln_model_n_inputs(m);
    s->n_out = kiln_model_n_outputs(m);
    if (s->n_in > SRV_MAX_IO || s->n_out > SRV_MAX_IO) {
        kiln_fail(err, KILN_ERR_UNSUPPORTED, "%s: more than %d inputs or outputs", label, SRV_MAX_IO);
        return false;
    }
    s->in = calloc((size_t)s->n_in + 1, sizeof *s->in);
    s->out = calloc((size_t)s->n_out + 1, sizeof *s->out);
    if (!s->in || !s->out) {
        kiln_fail(err, KILN_ERR_NO_MEMORY, "%s: signature", label);
        return false;
    }
    for (int32_t k = 0; k < 2; k++) {
        int32_t n = k ? s->n_out : s->n_in;
        for (int32_t i = 0; i < n; i++) {
            kiln_tensor_info ti;
            kiln_status st = k ? kiln_model_output(m, i, &ti) : kiln_model_input(m, i, &ti);
            if (st) {
                kiln_fail(err, st, "%s: cannot describe %s %d", label, k ? "output" : "input", i);
                return false;
            }
            struct srv_io *io = k ? &s->out[i] : &s->in[i];
            io->name = strdup(ti.name ? ti.name : "");
            io->dtype = ti.dtype;
            io->rank = ti.rank;
            for (int32_t d = 0; d < ti.rank && d < KILN_MAX_RANK; d++) io->dims[d] = ti.dims[d];
            if (!io->name) {
                kiln_fail(err, KILN_ERR_NO_MEMORY, "%s: signature", label);
                return false;
            }
        }
    }
    return true;
}

static void make_run_sizes(struct srv_config *c) {
    int64_t mb = c->sig.max_batch_size;
    c->n_run_sizes = 0;
    if (mb <= 0) return;
    int64_t tmp[64];
    int n = 0;
    if (c->n_preferred) {
        for (int32_t i = 0; i < c->n_preferred; i++) tmp[n++] = c->preferred[i];
    } else if (mb <= SRV_MAX_RUN_SIZES) {
        /* every size: a batch runs exactly as formed, never padded or trimmed */
        for (int64_t b = 1; b < mb; b++) tmp[n++] = b;
    } else {
        for (int64_t b = 1; b < mb && n < 62; b *= 2) tmp[n++] = b;
    }
    tmp[n++] = mb;
    /* sort, unique */
    for (int i = 1; i < n; i++)
        for (int j = i; j > 0 && tmp[j - 1] > tmp[j]; j--) {
            int64_t t = tmp[j]; tmp[j] = tmp[j - 1]; tmp[j - 1] = t;
        }
    int u = 0;
    for (int i = 0; i < n; i++)
        if (!u || tmp[u - 1] != tmp[i]) tmp[u++] = tmp[i];
    /* keep the largest: small batches pad up, the largest must stay exact */
    int first = u > SRV_MAX_RUN_SIZES ? u - SRV_MAX_RUN_SIZES : 0;
    for (int i = first; i < u; i++) c->run_sizes[c->n_run_sizes++] = tmp[i];
}

kiln_status srv_config_load(const char *path, const kiln_model *m, int n_models, int usable_cores,
                            struct srv_config *c, kiln_error *err) {
    memset(c, 0, sizeof *c);
    c->max_queue_size = DEFAULT_QUEUE_SIZE;
    c->instance_count = 1;
    c->warmup_iters = 1;
    snprintf(c->precision, sizeof c->precision, "auto");
    if (!derive_sig(m, path, &c->sig, err)) goto fail;

    json_object *root = NULL;
    FILE *f = fopen(path, "rb");
    if (f) {
        fclose(f);
        root = json_object_from_file(path);
        if (!root || !json_object_is_type(root, json_type_object)) {
            kiln_fail(err, KILN_ERR_BAD_MODEL, "%s: not a JSON object (%s)", path,
                      root ? "wrong type" : json_util_get_last_err() ? json_util_get_last_err() : "parse error");
            json_object_put(root);
            goto fail;
        }
    }

    /* can the model batch? every input and output must lead with a free dim */
    bool batchable = c->sig.n_in > 0;
    const char *why = NULL;    /* the first input or output that cannot batch */
    for (int32_t i = 0; i < c->sig.n_in; i++)
        if (c->sig.in[i].rank < 1 || c->sig.in[i].dims[0] != -1) {
            batchable = false;
            if (!why) why = c->sig.in[i].name;
        }
    for (int32_t i = 0; i < c->sig.n_out; i++)
        if (c->sig.out[i].rank == 0 || (c->sig.out[i].rank > 0 && c->sig.out[i].dims[0] >= 0)) {
            batchable = false;
            if (!why) why = c->sig.out[i].name;
        }
    if (!why) why = "(no inputs)";

    json_object *ji = NULL, *jo = NULL;
    bool have_mb = false;
    int64_t v;
    if (root) {
        json_object_object_foreach(root, key, val) {
            if (!strcmp(key, "max_batch_size")) {
                if (!get_int(val, path, key, 0, MAX_BATCH_LIMIT, &v, err)) goto fail_root;
                c->sig.max_batch_size = v;
                have_mb = true;
            } else if (!strcmp(key, "inputs") || !strcmp(key, "input")) {
                ji = val;
            } else if (!strcmp(key, "outputs") || !strcmp(key, "output")) {
                jo = val;
            } else if (!strcmp(key, "dynamic_batching")) {
                if (!json_object_is_type(val, json_type_object)) {
                    kiln_fail(err, KILN_ERR_BAD_MODEL, "%s: field '%s': expected an object", path, key);
                    goto fail_root;
                }
                json_object_object_foreach(val, k2, v2) {
                    char fn[96];
                    snprintf(fn, sizeof fn, "dynamic_batching.%s", k2);
                    if (!strcmp(k2, "max_queue_delay_us") || !strcmp(k2, "max_queue_delay_microseconds")) {
                        if (!get_int(v2, path, fn, 0, 10000000, &c->max_queue_delay_us, err)) goto fail_root;
                    } else if (!strcmp(k2, "max_queue_size")) {
                        if (!get_int(v2, path, fn, 1, 1000000, &c->max_queue_size, err)) goto fail_root;
                    } else if (!strcmp(k2, "default_timeout_us") || !strcmp(k2, "default_timeout_microseconds")) {
                        if (!get_int(v2, path, fn, 0, INT64_MAX / 1000, &c->default_timeout_us, err)) goto fail_root;
                    } else if (!strcmp(k2, "preferred_batch_sizes") || !strcmp(k2, "preferred_batch_size")) {
                        if (!json_object_is_type(v2, json_type_array)) {
                            kiln_fail(err, KILN_ERR_BAD_MODEL, "%s: field '%s': expected an array", path, fn);
                            goto fail_root;
                        }
                        size_t n = json_object_array_length(v2);
                        if (n > SRV_MAX_RUN_SIZES - 1) {
                            kiln_fail(err, KILN_ERR_BAD_MODEL, "%s: field '%s': at most %d sizes",
                                      path, fn, SRV_MAX_RUN_SIZES - 1);
                            goto fail_root;
                        }
                        for (size_t k = 0; k < n; k++) {
                            char fk[112];
                            snprintf(fk, sizeof fk, "%s[%zu]", fn, k);
                            if (!get_int(json_object_array_get_idx(v2, k), path, fk, 1, MAX_BATCH_LIMIT,
                                         &c->preferred[c->n_preferred++], err))
                                goto fail_root;
                        }
                    } else {
                        kiln_fail(err, KILN_ERR_BAD_MODEL, "%s: field '%s': unknown field", path, fn);
                        goto fail_root;
                    }
                }
            } else if (!strcmp(key, "instance_group")) {
                json_object *g = val;
                if (json_object_is_type(g, json_type_array) && json_object_array_length(g) == 1)
                    g = json_object_array_get_idx(g, 0);
                if (!json_object_is_type(g, json_type_object)) {
                    kiln_fail(err, KILN_ERR_BAD_MODEL, "%s: field '%s': expected an object", path, key);
                    goto fail_root;
                }
                json_object_object_foreach(g, k2, v2) {
                    char fn[96];
                    snprintf(fn, sizeof fn, "instance_group.%s", k2);
                    if (!strcmp(k2, "count")) {
                        if (!get_int(v2, path, fn, 1, 64, &v, err)) goto fail_root;
                        c->instance_count = (int32_t)v;
                    } else if (!strcmp(k2, "cores")) {
                        if (!get_int(v2, path, fn, 0, KILN_MAX_PIN_CPUS, &v, err)) goto fail_root;
                        c->cores_per_instance = (int32_t)v;
                    } else if (!strcmp(k2, "kind")) {
                        const char *s = json_object_get_string(v2);
                        if (!s || (strcmp(s, "KIND_CPU") && strcmp(s, "cpu"))) {
                            kiln_fail(err, KILN_ERR_BAD_MODEL, "%s: field '%s': only KIND_CPU is served",
                                      path, fn);
                            goto fail_root;
                        }
                    } else {
                        kiln_fail(err, KILN_ERR_BAD_MODEL, "%s: field '%s': unknown field", path, fn);
                        goto fail_root;
                    }
                }
            } else if (!strcmp(key, "precision")) {
                const char *s = json_object_is_type(val, json_type_string) ? json_object_get_string(val) : NULL;
                if (!s || (strcmp(s, "fp32") && strcmp(s, "auto") && strcmp(s, "bf16") && strcmp(s, "int8"))) {
                    kiln_fail(err, KILN_ERR_BAD_MODEL,
                              "%s: field 'precision': '%s' is not one of fp32, bf16, int8, auto", path,
                              s ? s : json_object_to_json_string(val));
                    goto fail_root;
                }
                /* checked against the model, and applied, by the repository (repo.c) */
                snprintf(c->precision, sizeof c->precision, "%s", s);
            } else if (!strcmp(key, "warmup")) {
                if (json_object_is_type(val, json_type_boolean)) c->warmup_iters = json_object_get_boolean(val);
                else {
                    if (!get_int(val, path, key, 0, 1000, &v, err)) goto fail_root;
                    c->warmup_iters = (int32_t)v;
                }
            } else if (!strcmp(key, "name") || !strcmp(key, "platform") || !strcmp(key, "backend")) {
                if (!json_object_is_type(val, json_type_string)) {
                    kiln_fail(err, KILN_ERR_BAD_MODEL, "%s: field '%s': expected a string", path, key);
                    goto fail_root;
                }
            } else {
                kiln_fail(err, KILN_ERR_BAD_MODEL, "%s: field '%s': unknown field", path, key);
                goto fail_root;
            }
        }
    }
    if (!have_mb) c->sig.max_batch_size = batchable ? DEFAULT_MAX_BATCH : 0;
    if (c->sig.max_batch_size > 0 && !batchable) {
        kiln_fail(err, KILN_ERR_BAD_MODEL,
                  "%s: field 'max_batch_size': %lld, but '%s' has no variable first (batch) dimension; "
                  "use max_batch_size 0", path, (long long)c->sig.max_batch_size, why);
        goto fail_root;
    }
    bool batched = c->sig.max_batch_size > 0;
    if (ji && !apply_io(ji, path, "inputs", c->sig.in, c->sig.n_in, batched, err)) goto fail_root;
    if (jo && !apply_io(jo, path, "outputs", c->sig.out, c->sig.n_out, batched, err)) goto fail_root;
    for (int32_t i = 0; i < c->sig.n_in; i++) {
        if (c->sig.in[i].rank < 0) {
            kiln_fail(err, KILN_ERR_BAD_MODEL,
                      "%s: input '%s' has no declared shape; give its dims in field 'inputs'", path,
                      c->sig.in[i].name);
            goto fail_root;
        }
        if (!v2_dtype_name(c->sig.in[i].dtype)) {
            kiln_fail(err, KILN_ERR_UNSUPPORTED, "%s: input '%s' has type %s, which v2 cannot carry",
                      path, c->sig.in[i].name, kiln_dtype_name(c->sig.in[i].dtype));
            goto fail_root;
        }
    }
    for (int32_t i = 0; i < c->n_preferred; i++)
        if (c->preferred[i] > c->sig.max_batch_size) {
            kiln_fail(err, KILN_ERR_BAD_MODEL,
                      "%s: field 'dynamic_batching.preferred_batch_sizes[%d]': %lld exceeds max_batch_size %lld",
                      path, (int)i, (long long)c->preferred[i], (long long)c->sig.max_batch_size);
            goto fail_root;
        }
    if (c->cores_per_instance > usable_cores) {
        kiln_fail(err, KILN_ERR_BAD_MODEL,
                  "%s: field 'instance_group.cores': %d, but only %d cores are usable by this process",
                  path, c->cores_per_instance, usable_cores);
        goto fail_root;
    }
    if (!c->cores_per_instance) {
        int per = usable_cores / ((n_models > 0 ? n_models : 1) * c->instance_count);
        c->cores_per_instance = per < 1 ? 1 : per > KILN_MAX_PIN_CPUS ? KILN_MAX_PIN_CPUS : per;
    }
    make_run_sizes(c);
    json_object_put(root);
    return KILN_OK;
fail_root:
    json_object_put(root);
fail:
    srv_config_free(c);
    return err ? err->code : KILN_ERR_BAD_MODEL;
}

void srv_config_json(const struct srv_config *c, const char *name, struct sbuf *b) {
    sb_puts(b, "{\"name\":");
    sb_json_str(b, name);
    sb_printf(b, ",\"platform\":\"onnx_onnxv1\",\"max_batch_size\":%lld", (long long)c->sig.max_batch_size);
    for (int k = 0; k < 2; k++) {
        const struct srv_io *ios = k ? c->sig.out : c->sig.in;
        int32_t n = k ? c->sig.n_out : c->sig.n_in;
        sb_puts(b, k ? ",\"outputs\":[" : ",\"inputs\":[");
        for (int32_t i = 0; i < n; i++) {
            const char *dt = v2_dtype_name(ios[i].dtype);
            sb_puts(b, i ? ",{\"name\":" : "{\"name\":");
            sb_json_str(b, ios[i].name);
            sb_printf(b, ",\"datatype\":\"%s\",\"dims\":[", dt ? dt : "UNSUPPORTED");
            for (int32_t d = c->sig.max_batch_size > 0 ? 1 : 0; d < ios[i].rank; d++)
                sb_printf(b, "%s%lld", d > (c->sig.max_batch_size > 0 ? 1 : 0) ? "," : "", (long long)ios[i].dims[d]);
            sb_puts(b, "]}");
        }
        sb_puts(b, "]");
    }
    sb_printf(b, ",\"dynamic_batching\":{\"max_queue_delay_us\":%lld,\"max_queue_size\":%lld,"
                 "\"default_timeout_us\":%lld,\"preferred_batch_sizes\":[",
              (long long)c->max_queue_delay_us, (long long)c->max_queue_size,
              (long long)c->default_timeout_us);
    for (int32_t i = 0; i < c->n_preferred; i++) sb_printf(b, "%s%lld", i ? "," : "", (long long)c->preferred[i]);
    sb_puts(b, "],\"run_batch_sizes\":[");
    for (int32_t i = 0; i < c->n_run_sizes; i++) sb_printf(b, "%s%lld", i ? "," : "", (long long)c->run_sizes[i]);
    sb_printf(b, "]},\"instance_group\":{\"count\":%d,\"cores\":%d},\"precision\":\"%s\",\"warmup\":%d}",
              c->instance_count, c->cores_per_instance, c->precision, c->warmup_iters);
}
