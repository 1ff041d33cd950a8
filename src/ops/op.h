/*
 * op.h — how an operator plugs into kiln.
 *
 * Each op family lives in one file (src/ops/<family>.c) and exports a table
 *     const struct kiln_op_def kiln_ops_<family>[] = { {...}, {...}, {0} };
 * that registry.c lists. An op provides:
 *
 *   infer   output dtypes and shapes from input dtypes/shapes (and, for ops
 *           such as Reshape, from input *values*). Called at plan time, when
 *           in[i]->data is known only for constants and folded shape
 *           sub-graphs, and again at run time in dynamic mode, when every
 *           in[i]->data is set. If the output shape depends on a value that is
 *           not known yet, return KILN_DYNAMIC (not an error: the executor
 *           switches to dynamic mode). Validates attributes and inputs and
 *           returns a clear error (kiln_fail) for anything malformed:
 *           never assert on model data.
 *   exec    the portable reference kernel, plain C. out[i]->data is already
 *           allocated (out[i]->nbytes bytes) with the inferred shape. Must be
 *           deterministic. May be called with numel == 0.
 *   prepare (optional) builds a fast kernel for the concrete shapes, e.g. a
 *           oneDNN primitive. Sets k->run (and k->state, k->release). Leaves
 *           k->run NULL to fall back to exec. Never called when the session
 *           asks for reference kernels.
 *
 * in[i] is NULL for an omitted optional input (and n_in counts up to the last
 * present input). out[i] is NULL for an omitted optional output.
 */
#ifndef KILN_OPS_OP_H
#define KILN_OPS_OP_H

#include "ir/graph.h"
#include "base/status.h"

/* Returned by infer when the output shape needs data not known at plan time. */
#define KILN_DYNAMIC ((kiln_status)1000)

struct kiln_exec_ctx;

typedef kiln_status (*kiln_infer_fn)(const struct kiln_node *n,
                                     const struct kiln_value *const *in, int n_in,
                                     struct kiln_value *const *out, int n_out,
                                     kiln_error *err);
typedef kiln_status (*kiln_exec_fn)(const struct kiln_node *n, struct kiln_exec_ctx *ctx,
                                    const struct kiln_value *const *in, int n_in,
                                    struct kiln_value *const *out, int n_out,
                                    kiln_error *err);

struct kiln_kernel {
    kiln_status (*run)(const struct kiln_node *n, struct kiln_exec_ctx *ctx, void *state,
                       const struct kiln_value *const *in, int n_in,
                       struct kiln_value *const *out, int n_out, kiln_error *err);
    void  *state;
    void (*release)(void *state);
    const char *impl;          /* "dnnl:jit:avx2", ... for reports */
    int32_t fused_activation;  /* 1: run() already applied n->act */
};

/* Applies n->act in place to out (float32); no-op for KILN_ACT_NONE. */
kiln_status kiln_activation_apply(const struct kiln_node *n, struct kiln_value *out,
                                  kiln_error *err);

typedef kiln_status (*kiln_prepare_fn)(const struct kiln_node *n, struct kiln_exec_ctx *ctx,
                                       const struct kiln_value *const *in, int n_in,
                                       struct kiln_value *const *out, int n_out,
                                       struct kiln_kernel *k, kiln_error *err);

enum kiln_op_flags {
    KILN_OP_VIEW        = 1 << 0,  /* output 0 is input 0's bytes with a new shape */
    KILN_OP_INPLACE     = 1 << 1,  /* output 0 may share input 0's buffer (same size, elementwise) */
    KILN_OP_NO_FOLD     = 1 << 2,  /* never evaluate at plan time (random, huge outputs) */
    KILN_OP_SUBGRAPH    = 1 << 3,  /* runs subgraphs (If/Loop/Scan): always dynamic */
    KILN_OP_SHAPE_ONLY  = 1 << 4,  /* reads only its inputs' shapes (Shape, Size): folds at
                                      plan time even when the input data are not known */
};

struct kiln_op_def {
    const char     *name;          /* ONNX op type */
    const char     *domain;        /* NULL or "" = default domain */
    int32_t         since;         /* lowest opset this implementation supports */
    uint32_t        flags;
    kiln_infer_fn   infer;
    kiln_exec_fn    exec;
    kiln_prepare_fn prepare;       /* optional */
    /* optional: FLOPs for one run at these shapes (for inspect/compile reports) */
    double        (*flops)(const struct kiln_node *n, const struct kiln_value *const *in,
                           int n_in, struct kiln_value *const *out, int n_out);
};

/* What a kernel may use while it runs. */
struct kiln_exec_ctx {
    int32_t n_threads;             /* intra-op threads (OpenMP) */
    int32_t reference_only;        /* 1: prepare() is not called */
    /* Runs a subgraph (If/Loop/Scan bodies). in[] binds body->inputs in order;
     * out[] receives freshly malloc'ed values (caller frees with kiln_value_free_data).
     * Outer-scope names resolve through the calling frame. */
    kiln_status (*run_subgraph)(struct kiln_exec_ctx *ctx, const struct kiln_graph *body,
                                const struct kiln_value *const *in, int n_in,
                                struct kiln_value *out, int n_out, kiln_error *err);
    void *frame;                   /* executor-private: the calling frame */
    const char *model_label;       /* for messages */
    /* Model-wide cache for buffers derived from constant weights (packed
     * layouts): every session of the model shares them. May be NULL. */
    struct kiln_wcache *wcache;
    /* Limits for dynamic execution, where sizes are only known as nodes run:
     * one tensor, and all live intermediate tensors together (0 = none). */
    uint64_t max_tensor_bytes, max_live_bytes;
    uint64_t *live_bytes;          /* executor-private: bytes held by dynamic frames (shared by copies) */
};

/* Registry */
const struct kiln_op_def *kiln_op_lookup(const char *domain, const char *op_type, int64_t opset);
/* Calls fn for every registered op (docs, tests). */
void kiln_op_foreach(void (*fn)(const struct kiln_op_def *op, void *user), void *user);

/* ---- helpers for op files (src/ops/op_util.c) ---- */

/* err message prefix: "node 'name' (OpType)" */
kiln_status kiln_op_fail(kiln_error *err, kiln_status code, const struct kiln_node *n,
                         const char *fmt, ...) __attribute__((format(printf, 4, 5)));
/* Checks n_in within [min,max] and that required inputs are present. */
kiln_status kiln_op_check_arity(const struct kiln_node *n, int n_in, int min_in, int max_in,
                                kiln_error *err);
/* Sets out's dtype and shape (rank, dims), clears data. */
void        kiln_value_set_shape(struct kiln_value *out, kiln_dtype dt, int32_t rank,
                                 const int64_t *dims);
/* Multidirectional (numpy) broadcast of a and b into out dims; error on mismatch. */
kiln_status kiln_broadcast_shape(const struct kiln_node *n, const struct kiln_value *a,
                                 const struct kiln_value *b, int32_t *rank, int64_t *dims,
                                 kiln_error *err);
/* Normalizes a possibly negative axis into [0, rank); error names the node. */
kiln_status kiln_norm_axis(const struct kiln_node *n, int64_t axis, int32_t rank,
                           int32_t *out_axis, kiln_error *err);
/* Reads element i of an integer tensor (any int dtype) as int64. */
int64_t     kiln_value_get_int(const struct kiln_value *v, int64_t i);
/* Reads element i of a numeric tensor as double (any dtype incl. f16/bf16). */
double      kiln_value_get_f64(const struct kiln_value *v, int64_t i);
/* Writes element i of a numeric tensor from double (saturating casts are the caller's job). */
void        kiln_value_set_f64(struct kiln_value *v, int64_t i, double x);
/* The standard widths only: ops that compute accept these. The narrow types
 * (float8, float4, int4, int2) are storage types that Cast, QuantizeLinear and
 * DequantizeLinear convert from and to; ops must opt in to them explicitly. */
bool        kiln_dtype_is_float(kiln_dtype t);    /* f16, bf16, f32, f64 */
bool        kiln_dtype_is_narrow_float(kiln_dtype t);  /* float8 kinds and float4e2m1 */
bool        kiln_dtype_is_narrow_int(kiln_dtype t);    /* int4, uint4, int2, uint2 */
int         kiln_dtype_bits(kiln_dtype t);        /* bits per element in files (4 for int4) */
/* Narrow floats (one code per byte in memory). saturate: out-of-range values
 * become the largest finite value instead of inf/NaN (ONNX Cast saturate=1). */
float       kiln_narrow_to_f32(kiln_dtype t, uint8_t code);
uint8_t     kiln_f32_to_narrow(kiln_dtype t, float x, bool saturate);
bool        kiln_dtype_is_int(kiln_dtype t);      /* 8- to 64-bit signed and unsigned ints (not bool) */
bool        kiln_dtype_is_signed(kiln_dtype t);
float       kiln_f16_to_f32(uint16_t h);
uint16_t    kiln_f32_to_f16(float f);             /* round to nearest even */
float       kiln_bf16_to_f32(uint16_t h);
uint16_t    kiln_f32_to_bf16(float f);            /* round to nearest even */
/* Intra-op threads a kernel may use (at least 1). */
int         kiln_op_threads(const struct kiln_exec_ctx *ctx);
/* Bytes per element of dt, or KILN_ERR_UNSUPPORTED naming the node for types
 * without a fixed size (strings). */
kiln_status kiln_op_elem_size(const struct kiln_node *n, kiln_dtype dt, size_t *es,
                              kiln_error *err);
/* Row-major strides (in elements) for dims. */
void        kiln_strides(int32_t rank, const int64_t *dims, int64_t *strides);

#endif
