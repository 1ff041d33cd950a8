/* tensor_file.h — helpers the `kiln` subcommands share: owned tensors, dtype
 * conversion, seeded random inputs, shape resolution from --dim, reading
 * input files (.pb, .npy, images), small formatting helpers. Tool code only:
 * the process-wide settings live in each command's option struct. */
#ifndef KILN_TOOLS_TENSOR_FILE_H
#define KILN_TOOLS_TENSOR_FILE_H

#include "kiln.h"

#include <stdint.h>
#include <stdio.h>

/* Largest tensor a tool allocates from a file or an argument. */
#define TF_MAX_TENSOR_BYTES (4ull << 30)

/* ---- numbers from arguments ---- */
/* Strict integer parse: whole string, no overflow. Returns 0 on success. */
int tf_parse_i64(const char *s, int64_t *out);
/* --layout auto|plain|nhwc|blocked -> kiln_session_options.activation_layout; -1 if unknown. */
int tf_parse_layout(const char *s);
int tf_parse_f64(const char *s, double *out);
/* "a,b,c" -> up to max doubles; returns the count or -1 on a bad number. */
int tf_parse_f64_list(const char *s, double *out, int max);
int tf_parse_i64_list(const char *s, int64_t *out, int max);

/* ---- --dim NAME=VALUE overrides ----
 * NAME is a symbolic dim name ("batch", "p2o.DynamicDimension.0") or
 * INPUT:INDEX for one dim of one input (the same forms as the ORT peer). */
#define TF_MAX_DIMS_OVERRIDES 64
struct tf_dims {
    int n;
    struct {
        const char *key;   /* points into argv */
        size_t key_len;
        int64_t value;
    } e[TF_MAX_DIMS_OVERRIDES];
};
/* Adds "NAME=VALUE"; on error writes a message to stderr and returns -1. */
int tf_dims_add(struct tf_dims *d, const char *arg, const char *cmd);
/* The override for dim `idx` of `input` (symbolic name `sym`, may be NULL); -1 if none. */
int64_t tf_dims_lookup(const struct tf_dims *d, const char *sym, const char *input, int idx);

/* ---- concrete shapes for declared inputs ----
 * Precedence for an open dim (dims[i] < 0) of input `info`:
 *   --dim SYM=V or --dim INPUT:I=V;
 *   a value already bound to the same symbolic name (`known`, e.g. from an input file);
 *   dim 0 when batch > 0;
 *   with case_model: the same dim of the matching test_data_set_0 input beside the model;
 *   with seq_heuristic: 128 for names that look like a sequence length;
 *   else 1 (and *defaulted is set so the caller can say so). */
struct tf_resolve {
    const struct tf_dims *dims;
    int64_t batch;               /* <= 0: no batch rule */
    const char *case_model;      /* NULL: do not look beside the model */
    int seq_heuristic;
    int n_known;
    const char *known_sym[64];
    int64_t known_val[64];
};
void tf_resolve_shape(const kiln_tensor_info *info, int index, const struct tf_resolve *r,
                      int64_t *dims, int *defaulted);
/* Remembers sym = v for later inputs (ignored when full or sym is NULL). */
void tf_resolve_bind(struct tf_resolve *r, const char *sym, int64_t v);

/* ---- owned tensors (data malloc'ed, name not owned) ---- */
kiln_status tf_alloc(kiln_tensor *t, kiln_dtype dt, int32_t rank, const int64_t *dims,
                     kiln_error *err);
void tf_free(kiln_tensor *t);
int64_t tf_numel(const kiln_tensor *t);
/* Element i as a double (any numeric dtype, f16/bf16 included). */
double tf_get_f64(const kiln_tensor *t, int64_t i);
int tf_dtype_is_float(kiln_dtype dt);
int tf_dtype_numeric(kiln_dtype dt);   /* convertible by tf_convert */
/* Converts in place to `to` (C-style casts; float->int truncates). */
kiln_status tf_convert(kiln_tensor *t, kiln_dtype to, kiln_error *err);

/* ---- seeded random fill ---- */
/* splitmix64: tiny, good enough for benchmark inputs, same on every machine. */
uint64_t tf_rand_u64(uint64_t *state);
/* floats uniform in [flo, fhi); integers uniform in [ilo, ihi); bool 0/1. */
void tf_fill_random(kiln_tensor *t, uint64_t *state, double flo, double fhi, int64_t ilo,
                    int64_t ihi);

/* ---- reading input files ---- */
/* A serialized onnx.TensorProto (test_data_set_N/input_K.pb). */
kiln_status tf_read_pb(const char *path, kiln_tensor *out, kiln_error *err);
/* The dims of input_K.pb in MODEL_DIR/test_data_set_0 whose tensor is named
 * `input` (or the K-th file when it has no name); 0 if there is none. */
int tf_case_shape(const char *model_path, const char *input, int index, int32_t *rank,
                  int64_t *dims);

/* ---- formatting ---- */
/* "[batch, 3, 224, 224]"; "(no shape)" when rank < 0. dim_names may be NULL. */
void tf_shape_str(int32_t rank, const int64_t *dims, const char *const *dim_names, char *buf,
                  size_t n);
/* "resnet50" for .../resnet50/model.onnx, else the file name without .onnx (as ORT's peer). */
void tf_model_label(const char *path, char *buf, size_t n);
void tf_json_str(FILE *f, const char *s);
/* A file-system-safe name: [A-Za-z0-9._-], no leading '.', never empty. */
void tf_sanitize(const char *name, char *buf, size_t n);
/* mkdir -p; returns 0 or -1 with errno set. */
int tf_mkdirs(const char *path);
/* "1.23 GFLOP", "0 FLOP", "21.62 MB": SI prefix then unit (may be ""). */
void tf_human(double v, const char *unit, char *buf, size_t n);
double tf_now_ms(void);   /* CLOCK_MONOTONIC */

#endif
