/*
 * kiln.h — the one public header of libkiln, an ONNX model compiler and
 * inference runtime for CPUs.
 *
 * Overview
 * --------
 *   kiln_model    an imported (or, later, compiled) model. Immutable once loaded:
 *                 one model may be shared by any number of sessions and threads,
 *                 and all of them read the same copy of the weights.
 *   kiln_session  an executable instance of a model: its own activation memory
 *                 (arena), its own plans (one per concrete input shape, cached),
 *                 its own thread count and CPU pinning. A session is used by one
 *                 thread at a time; run many sessions for data parallelism.
 *
 * Worked example
 * --------------
 *     kiln_error err;
 *     kiln_model *m = NULL;
 *     if (kiln_model_load("resnet50.onnx", NULL, &m, &err) != KILN_OK) {
 *         fprintf(stderr, "%s\n", err.msg);   // names file, node, tensor, expected vs got
 *         return 1;
 *     }
 *     kiln_session *s = NULL;
 *     kiln_session_options so = kiln_session_options_default();
 *     so.n_threads = 2;
 *     kiln_session_create(m, &so, &s, &err);
 *     kiln_tensor in = { .name = "input", .dtype = KILN_DTYPE_FLOAT, .rank = 4,
 *                        .dims = {1, 3, 224, 224}, .data = pixels,
 *                        .nbytes = 3 * 224 * 224 * sizeof(float) };
 *     kiln_tensor out[1];
 *     kiln_session_run(s, &in, 1, out, 1, &err);   // out[0].data valid until the next run
 *     kiln_session_free(s);
 *     kiln_model_free(m);
 *
 * Errors
 * ------
 * Every fallible call returns a kiln_status and, when `err` is not NULL, fills
 * err->msg with a one-line message: where (file, node name and op, input or
 * output index, tensor name), then what was expected and what was found.
 * Nothing in the library aborts or exits on bad input.
 *
 * Threads
 * -------
 * kiln_model_* functions taking a const model are safe from any thread.
 * A kiln_session must not be used by two threads at once.
 */
#ifndef KILN_H
#define KILN_H

#include <stddef.h>
#include <stdint.h>

#ifdef __cplusplus
extern "C" {
#endif

#define KILN_VERSION_STRING "0.1.0"

typedef enum kiln_status {
    KILN_OK = 0,
    KILN_ERR_INVALID_ARG,  /* caller misuse: NULL, index out of range            */
    KILN_ERR_BAD_MODEL,    /* malformed file or graph: parse, dangling name, attr */
    KILN_ERR_UNSUPPORTED,  /* valid ONNX that kiln does not implement            */
    KILN_ERR_SHAPE,        /* dtype or shape mismatch                            */
    KILN_ERR_LIMIT,        /* a configured size or count limit would be exceeded */
    KILN_ERR_NO_MEMORY,
    KILN_ERR_IO,
    KILN_ERR_BUSY,         /* queue full: retry later                           */
    KILN_ERR_TIMEOUT,
    KILN_ERR_CANCELLED,
    KILN_ERR_INTERNAL,     /* a bug in kiln; the message says where             */
    KILN_STATUS_COUNT
} kiln_status;

#define KILN_ERROR_MSG_MAX 512

typedef struct kiln_error {   /* caller-owned; every `err` argument may be NULL */
    kiln_status code;
    char        msg[KILN_ERROR_MSG_MAX];
} kiln_error;

const char *kiln_status_str(kiln_status s);
const char *kiln_version(void);

/* Element types; the numbers are ONNX's TensorProto.DataType values. */
typedef enum kiln_dtype {
    KILN_DTYPE_UNDEFINED = 0,
    KILN_DTYPE_FLOAT     = 1,
    KILN_DTYPE_UINT8     = 2,
    KILN_DTYPE_INT8      = 3,
    KILN_DTYPE_UINT16    = 4,
    KILN_DTYPE_INT16     = 5,
    KILN_DTYPE_INT32     = 6,
    KILN_DTYPE_INT64     = 7,
    KILN_DTYPE_STRING    = 8,   /* recognised, not computed on */
    KILN_DTYPE_BOOL      = 9,   /* one byte per element, 0 or 1 */
    KILN_DTYPE_FLOAT16   = 10,
    KILN_DTYPE_DOUBLE    = 11,
    KILN_DTYPE_UINT32    = 12,
    KILN_DTYPE_UINT64    = 13,
    KILN_DTYPE_BFLOAT16  = 16,
    /* Narrow types. In memory kiln keeps one element per byte: float8 and
     * float4 as their bit codes, int4/int2 sign-extended, uint4/uint2 as is.
     * Files pack 4-bit types two per byte and 2-bit types four per byte. */
    KILN_DTYPE_FLOAT8E4M3FN   = 17,
    KILN_DTYPE_FLOAT8E4M3FNUZ = 18,
    KILN_DTYPE_FLOAT8E5M2     = 19,
    KILN_DTYPE_FLOAT8E5M2FNUZ = 20,
    KILN_DTYPE_UINT4          = 21,
    KILN_DTYPE_INT4           = 22,
    KILN_DTYPE_FLOAT4E2M1     = 23,
    KILN_DTYPE_FLOAT8E8M0     = 24,
    KILN_DTYPE_UINT2          = 25,
    KILN_DTYPE_INT2           = 26,
} kiln_dtype;

const char *kiln_dtype_name(kiln_dtype t);   /* "float32", "int64", ...; "?" if unknown */
size_t      kiln_dtype_size(kiln_dtype t);   /* bytes per element; 0 if not a fixed-size type */

#define KILN_MAX_RANK 8

/* A tensor passed across the API: a view, kiln never frees `data` it did not
 * allocate. Data are dense, row-major (C order), little-endian. */
typedef struct kiln_tensor {
    const char *name;
    kiln_dtype  dtype;
    int32_t     rank;
    int64_t     dims[KILN_MAX_RANK];
    void       *data;
    size_t      nbytes;
} kiln_tensor;

/* Description of a model input or output. A dimension that the model leaves
 * open is -1 in dims[] and carries its symbolic name (e.g. "batch") in
 * dim_names[] (NULL when the model gives none). Strings belong to the model. */
typedef struct kiln_tensor_info {
    const char *name;
    kiln_dtype  dtype;
    int32_t     rank;       /* -1 when the model does not declare a shape */
    int64_t     dims[KILN_MAX_RANK];
    const char *dim_names[KILN_MAX_RANK];
} kiln_tensor_info;

/* ---- models -------------------------------------------------------------- */

typedef struct kiln_model kiln_model;

typedef struct kiln_load_options {
    uint32_t size;              /* sizeof(kiln_load_options): lets the struct grow */
    uint64_t max_tensor_bytes;  /* largest tensor a plan may hold (0 = default 4 GiB) */
    uint64_t max_arena_bytes;   /* memory limit for one session's activations (0 = 16 GiB) */
    int32_t  no_optimize;       /* 1: skip the graph passes (docs/passes.md) */
} kiln_load_options;

kiln_load_options kiln_load_options_default(void);

/* Load an ONNX model from a file. External data is resolved beside the file;
 * a location that escapes the model's folder is rejected. opts may be NULL. */
kiln_status kiln_model_load(const char *path, const kiln_load_options *opts,
                            kiln_model **out, kiln_error *err);
/* Load an ONNX model from memory (no external data). `label` names the model
 * in error messages. The buffer may be freed after the call. */
kiln_status kiln_model_load_buffer(const void *data, size_t size, const char *label,
                                   const kiln_load_options *opts, kiln_model **out,
                                   kiln_error *err);
void        kiln_model_free(kiln_model *m);   /* NULL is fine; no session may remain */

/* Writes the model's optimized graph and weights as a compiled plan (.kiln,
 * docs/kiln-format.md) that kiln_model_load maps read-only: every session and
 * every process loading the same plan shares its weight pages. batch_sizes
 * (may be NULL) records the batch sizes the plan is meant for. */
kiln_status kiln_model_save_plan(const kiln_model *m, const char *path, const int32_t *batch_sizes,
                                 int32_t n_batch_sizes, kiln_error *err);
/* 1 when the model was loaded from a .kiln plan. */
int32_t     kiln_model_is_plan(const kiln_model *m);
/* A warning from loading (e.g. a .kiln compiled for other CPU features, whose
 * stored plans are then rebuilt), also printed to stderr; NULL if none. */
const char *kiln_model_warning(const kiln_model *m);

int32_t     kiln_model_n_inputs(const kiln_model *m);
int32_t     kiln_model_n_outputs(const kiln_model *m);
kiln_status kiln_model_input(const kiln_model *m, int32_t i, kiln_tensor_info *info);
kiln_status kiln_model_output(const kiln_model *m, int32_t i, kiln_tensor_info *info);
/* Output i's shape inferred through the graph in terms of the inputs'
 * symbolic dims, e.g. "[batch,1000]" or "[N,1,H,W]"; a dim that is a product
 * of symbols or depends on data is "?". Written into buf (n bytes). */
kiln_status kiln_model_output_shape_symbolic(const kiln_model *m, int32_t i, char *buf, size_t n,
                                             kiln_error *err);
/* Default-domain opset the model imports (0 if none). */
int64_t     kiln_model_opset(const kiln_model *m);

/* Per-op statistics, for `kiln inspect`. */
typedef struct kiln_model_stats {
    int64_t n_nodes;
    int64_t n_params;           /* elements in initializers and Constant nodes */
    int64_t param_bytes;
    int64_t n_unsupported;      /* nodes whose op kiln does not implement */
} kiln_model_stats;
kiln_status kiln_model_stats_get(const kiln_model *m, kiln_model_stats *st);
/* Visit each op type with its count, and each unsupported node. */
typedef void (*kiln_op_count_fn)(const char *domain, const char *op_type, int64_t count,
                                 int supported, void *user);
typedef void (*kiln_unsupported_fn)(const char *node_name, const char *domain,
                                    const char *op_type, int64_t opset, void *user);
void kiln_model_op_histogram(const kiln_model *m, kiln_op_count_fn fn, void *user);
void kiln_model_unsupported(const kiln_model *m, kiln_unsupported_fn fn, void *user);

/* Estimated multiply-accumulate-based FLOPs (2 per MAC) for one inference at
 * the given input shapes (the same tensors one would pass to run; data may be
 * NULL). Uses the same shape inference as a real run. */
kiln_status kiln_model_estimate_flops(const kiln_model *m, const kiln_tensor *inputs,
                                      int32_t n_inputs, double *flops, kiln_error *err);

/* ---- sessions -------------------------------------------------------------- */

typedef struct kiln_session kiln_session;

#define KILN_MAX_PIN_CPUS 256

typedef struct kiln_session_options {
    uint32_t size;              /* sizeof(kiln_session_options) */
    int32_t  n_threads;         /* intra-op threads; 0 = all cores available to the process */
    int32_t  n_pin_cpus;        /* 0 = no pinning */
    int32_t  pin_cpus[KILN_MAX_PIN_CPUS];
    int32_t  reference_kernels; /* 1 = portable reference kernels only (test oracle) */
    int32_t  profile;           /* 1 = time every step (see kiln_session_profile) */
    int32_t  activation_layout; /* convolution activations: 0 = best for this CPU, 1 = plain
                                   NCHW, 2 = channels-last NHWC, 3 = blocked nChw8c */
} kiln_session_options;

kiln_session_options kiln_session_options_default(void);

kiln_status kiln_session_create(const kiln_model *m, const kiln_session_options *opts,
                                kiln_session **out, kiln_error *err);
/* Run with caller-provided inputs (matched by name, or by position when name
 * is NULL). Outputs are filled with views into session memory, valid until the
 * next run or kiln_session_free; n_outputs must equal kiln_model_n_outputs. */
kiln_status kiln_session_run(kiln_session *s, const kiln_tensor *inputs, int32_t n_inputs,
                             kiln_tensor *outputs, int32_t n_outputs, kiln_error *err);
void        kiln_session_free(kiln_session *s);

/* Per-step timings of the most recently used plan, accumulated over runs since
 * it was built (session option `profile`). Fills up to max entries in plan
 * order and returns how many steps the plan has. Strings belong to the model. */
typedef struct kiln_profile_entry {
    const char *node;
    const char *op_type;
    const char *impl;           /* "dnnl:jit:avx2", "ref", ... */
    double      total_ms;
    int64_t     calls;
} kiln_profile_entry;
int32_t     kiln_session_profile(const kiln_session *s, kiln_profile_entry *entries, int32_t max);

/* 1 when the most recently used plan was taken from the .kiln file's stored
 * plans (docs/kiln-format.md) instead of being planned at first run. */
int32_t     kiln_session_plan_stored(const kiln_session *s);

/* Bytes of activation memory the session holds for its cached plans. */
uint64_t    kiln_session_arena_bytes(const kiln_session *s);

/* ---- diagnostics ----------------------------------------------------------- */

/* Number of CPUs this process may run on (affinity mask). */
int32_t     kiln_cpu_count(void);
/* "avx2 fma avx512f ..." for the running CPU. */
const char *kiln_cpu_features_str(void);

#ifdef __cplusplus
}
#endif
#endif /* KILN_H */
