/*
 * plan.h — a static execution plan for one concrete set of input shapes.
 *
 * Planning runs shape inference over the graph with the caller's shapes,
 * evaluates every node whose inputs are all known (constants, and shape
 * sub-graphs such as Shape→Gather→Concat→Reshape once input shapes are
 * known), and lays the remaining intermediate values out in one arena by
 * liveness: buffers whose lifetimes do not overlap share bytes, views
 * (Reshape/Flatten/Squeeze/Unsqueeze/Identity) take no bytes, and elementwise
 * ops write in place over an input that dies at that op.
 *
 * When a node's output shape depends on data only known at run time
 * (NonZero, NonMaxSuppression, ...) or a node runs subgraphs, the plan is
 * marked dynamic and the session executes node by node instead.
 */
#ifndef KILN_PLAN_PLAN_H
#define KILN_PLAN_PLAN_H

#include "ops/op.h"

enum kiln_value_kind {
    KILN_VK_NONE = 0,
    KILN_VK_CONST,    /* model constant: data in the graph */
    KILN_VK_FOLDED,   /* computed at plan time: data owned by the plan */
    KILN_VK_INPUT,    /* caller's input: bound per run */
    KILN_VK_ARENA,    /* intermediate: arena + offset */
    KILN_VK_ALIAS,    /* same bytes as value `alias` (views, in-place) */
};

struct kiln_step {
    int32_t node;
    struct kiln_kernel kernel;   /* run == NULL: the op's reference exec */
    /* A step whose kernel cannot read channels-last operands runs on plain
     * copies: cl_tmp[j] (inputs first, then outputs) is the plain buffer for
     * operand j, or NULL when that operand is already plain. */
    bool    convert;
    bool    kernel_plain;        /* the fast kernel was built for plain operands */
    uint8_t lop;                 /* enum kiln_layout_op: runs on laid-out operands itself */
    int8_t  lop_arg;             /* KILN_LOP_CHAN_BINARY: enum kiln_layout_binary; KILN_LOP_NHWC:
                                    1 to NHWC, 0 from; */
    int8_t  lop_big;             /*   and which input has the output's shape */
    char    impl[112];           /* kernel.impl with "+reorders" for converted steps */
    double  prof_ms;             /* accumulated time when the session profiles */
    int64_t prof_calls;
    void  **cl_tmp;
};

struct kiln_plan {
    char    *key;                /* input shape signature */
    bool     dynamic;            /* execute node by node (see above) */
    int32_t  n_values;
    struct kiln_value *vals;     /* dtype/shape of every value; data bound per run */
    uint8_t *kind;               /* enum kiln_value_kind per value */
    int32_t *alias;              /* KILN_VK_ALIAS: the value whose bytes it uses */
    size_t  *offset;             /* KILN_VK_ARENA: byte offset in the arena */
    int32_t  n_steps;
    struct kiln_step *steps;
    size_t   arena_bytes;
    double   flops;
    int32_t  max_io;             /* widest node's input or output count */
    const struct kiln_value **io_in;   /* scratch argument arrays of max_io entries, */
    struct kiln_value **io_out;        /* so running a plan allocates nothing */
    struct kiln_value *io_vals;        /* 2 * max_io: plain copies for converted steps */
    int32_t  activation_layout;  /* the layout request it was planned with */
    bool     stored;             /* taken from a .kiln file's stored plan, not planned */
};

/* Copies float32 data between plain (N, C, spatial) and v->layout
 * (from_plain zeroes a blocked value's padding lanes). */
void kiln_layout_to_plain(const struct kiln_value *v, const float *src, float *dst);
void kiln_layout_from_plain(const struct kiln_value *v, const float *src, float *dst);

/* How a step runs on operands in the planner's layouts (plan.c, layout_ops.c). */
enum kiln_layout_op {
    KILN_LOP_NONE = 0,      /* the op's kernel (plain operands, or layout-aware itself) */
    KILN_LOP_FLAT,          /* elementwise over padded blocked operands: flat views */
    KILN_LOP_CONCAT,        /* Concat along channels: kiln_layout_concat */
    KILN_LOP_CHAN_BINARY,   /* binary op with a per-channel operand: kiln_layout_chan_binary */
    KILN_LOP_PAD,           /* constant Pad, pads known, none on N: kiln_layout_pad */
    KILN_LOP_NHWC,          /* Transpose NCHW <-> NHWC as one reorder: kiln_layout_nhwc */
};
enum kiln_layout_binary { KILN_LBIN_ADD, KILN_LBIN_SUB, KILN_LBIN_MUL, KILN_LBIN_DIV };

/* Channel count as stored: rounded up to whole blocks for KILN_LAYOUT_BLOCKED8. */
int64_t kiln_layout_channels(const struct kiln_value *v);
/* Floats v occupies in its layout (padding included). */
int64_t kiln_layout_storage_numel(const struct kiln_value *v);
/* Position of plain element (n, c, flattened spatial s) in v's layout. */
int64_t kiln_layout_index(const struct kiln_value *v, int64_t n, int64_t c, int64_t s);
/* Zeroes the padding lanes of a blocked value whose C is not a multiple of 8. */
void kiln_layout_zero_pad(const struct kiln_value *v);
/* v as a rank-1 plain value over its whole storage (one-element values:
 * rank 0), written to *tmp. */
const struct kiln_value *kiln_layout_flat_view(const struct kiln_value *v, struct kiln_value *tmp);
/* Runs a step with st->lop set (inputs and outputs bound in p->vals). */
kiln_status kiln_layout_run_step(struct kiln_plan *p, const struct kiln_step *st,
                                 const struct kiln_node *n, struct kiln_exec_ctx *ctx,
                                 kiln_error *err);
/* kiln_activation_apply over v's whole storage; padding lanes stay zero. */
kiln_status kiln_layout_activation(const struct kiln_node *n, struct kiln_value *v, kiln_error *err);
/* Constant-mode Pad: pads (2 * rank, non-negative, none on dim 0) and value. */
void kiln_layout_pad(const struct kiln_value *x, const int64_t *pads, float value,
                     const struct kiln_value *out);
/* to_nhwc: out (plain [N,H,W,C]) from the activation x in any layout;
 * else out (activation, any layout) from x (plain [N,H,W,C]). */
void kiln_layout_nhwc(bool to_nhwc, const struct kiln_value *x, const struct kiln_value *out);
void kiln_layout_concat(const struct kiln_value *const *in, int n_in, const struct kiln_value *out);
void kiln_layout_chan_binary(int op, bool big_first, const struct kiln_value *big,
                             const struct kiln_value *small, const struct kiln_value *out);

/* Widest input or output list of any node in g (at least 1). */
int32_t kiln_graph_max_io(const struct kiln_graph *g);

struct kiln_plan_options {
    int32_t  prepare;            /* 1: build fast kernels (prepare) */
    int32_t  activation_layout;  /* kiln_session_options.activation_layout */
    uint64_t max_arena_bytes;
    uint64_t max_tensor_bytes;
    const char *label;
};

/* Builds a plan for graph g with the given input shapes (inputs[i] binds
 * g->inputs[i]; data is not read). On KILN_OK *out is set; a dynamic plan
 * has no steps. */
kiln_status kiln_plan_build(const struct kiln_graph *g, const struct kiln_value *inputs,
                            const struct kiln_plan_options *o, struct kiln_exec_ctx *ctx,
                            struct kiln_plan **out, kiln_error *err);
void kiln_plan_free(struct kiln_plan *p);

/* A plan stored in a .kiln file (plan/artifact.c, docs/kiln-format.md):
 * what kiln_plan_build computes before it builds kernels. Arrays are owned;
 * a folded value's data points into the file's mapping. */
struct kiln_stored_plan {
    int32_t   batch;
    int32_t   activation_layout;
    char     *key;               /* input shape signature (set by kiln_plan_check_stored) */
    int32_t   n_values;
    struct kiln_value *vals;     /* dtype, shape, layout, nbytes */
    uint8_t  *kind;
    int32_t  *alias;
    uint64_t *offset;
    int32_t   n_steps;
    int32_t  *steps;             /* node index of each step, in run order */
    uint64_t  arena_bytes;
    double    flops;
};

/* Checks an untrusted stored plan against graph g: value kinds match each
 * value's role, shapes agree with shape inference over the graph, steps are
 * the unfolded nodes in order, aliases follow the planner's rules, every
 * arena buffer lies inside the arena and no two live at once share bytes.
 * KILN_ERR_BAD_MODEL naming `label` and the field on failure. */
kiln_status kiln_plan_check_stored(const struct kiln_graph *g, struct kiln_stored_plan *sp,
                                   const char *label, kiln_error *err);
/* Builds a session plan from a checked stored plan: no shape inference,
 * folding or arena layout, only kernels (prepare). o->prepare must be 1 and
 * o->activation_layout equal to sp's. */
kiln_status kiln_plan_from_stored(const struct kiln_graph *g, const struct kiln_stored_plan *sp,
                                  const struct kiln_plan_options *o, struct kiln_exec_ctx *ctx,
                                  struct kiln_plan **out, kiln_error *err);
void kiln_stored_plan_clear(struct kiln_stored_plan *sp);

/* Allocates (64-byte aligned) storage for v->nbytes; NULL on failure. */
void *kiln_aligned_alloc(size_t bytes);

#endif
