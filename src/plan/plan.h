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

/* Copies float32 data between plain (N, C, spatial) and v->layout. */
void kiln_layout_to_plain(const struct kiln_value *v, const float *src, float *dst);
void kiln_layout_from_plain(const struct kiln_value *v, const float *src, float *dst);

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
