/*
 * passes.h — graph rewrites run once, at load, before any session plans.
 *
 * Each pass is one function over a kiln_graph that keeps it valid: values
 * keep their ids, removed nodes are compacted away by kiln_graph_compact,
 * and consumer counts are recomputed. Passes only rewrite what they can
 * prove equivalent (constants they can read, single consumers).
 */
#ifndef KILN_PASSES_PASSES_H
#define KILN_PASSES_PASSES_H

#include "ir/graph.h"

struct kiln_pass_stats {
    int32_t nodes_before, nodes_after;
    int32_t rewrites;              /* pass-specific count (folded BNs, fused ops, ...) */
};

typedef kiln_status (*kiln_pass_fn)(struct kiln_graph *g, struct kiln_pass_stats *st,
                                    kiln_error *err);

struct kiln_pass {
    const char  *name;
    kiln_pass_fn run;
};

/* The default pipeline, in order; {NULL} terminated. */
extern const struct kiln_pass kiln_default_passes[];

/* Runs the default pipeline on g (and subgraphs are left as they are). */
kiln_status kiln_passes_run(struct kiln_graph *g, kiln_error *err);

/* Text form of the IR (src/ir/dump.c). */
#include <stdio.h>
void kiln_graph_dump(const struct kiln_graph *g, FILE *f);

/* Shared utilities */
void    kiln_graph_compact(struct kiln_graph *g, const bool *dead_node);
int32_t kiln_graph_add_const(struct kiln_graph *g, const char *name, struct kiln_value v);

/* Frees n's attributes (n_attrs becomes 0). */
void    kiln_node_free_attrs(struct kiln_node *n);
/* Detaches a node about to be compacted away: it reads and writes nothing,
 * so recounts between a rewrite and the compaction stay exact. */
void    kiln_node_detach(struct kiln_node *n);
/* The distinct nodes (index >= from) that read value v, in order, into
 * out[0..max); returns how many there are (may exceed max). */
int32_t kiln_graph_readers(const struct kiln_graph *g, int32_t v, int32_t from, int32_t *out,
                           int32_t max);
/* True when any attribute of n is a graph (If/Loop/Scan bodies): passes that
 * compare or evaluate nodes leave those alone. */
bool    kiln_node_has_subgraph(const struct kiln_node *n);
/* True when v is one of g's outputs. */
bool    kiln_graph_is_output(const struct kiln_graph *g, int32_t v);
/* The float32 constant read by input idx of n, or NULL (absent, not constant,
 * not float32, no data). */
const struct kiln_value *kiln_node_const_f32(const struct kiln_graph *g, const struct kiln_node *n,
                                             int32_t idx);
/* Value v as a float32 constant with data, or NULL (v < 0, not constant, not
 * float32, no data). */
const struct kiln_value *kiln_graph_const_f32(const struct kiln_graph *g, int32_t v);
/* True when v is a float32 constant of one element; its value goes to *out. */
bool kiln_graph_scalar_f32(const struct kiln_graph *g, int32_t v, float *out);

kiln_status kiln_pass_dce(struct kiln_graph *g, struct kiln_pass_stats *st, kiln_error *err);
kiln_status kiln_pass_fold_conv_affine(struct kiln_graph *g, struct kiln_pass_stats *st,
                                       kiln_error *err);
kiln_status kiln_pass_fold_batchnorm(struct kiln_graph *g, struct kiln_pass_stats *st,
                                     kiln_error *err);
kiln_status kiln_pass_fuse_activation(struct kiln_graph *g, struct kiln_pass_stats *st,
                                      kiln_error *err);
kiln_status kiln_pass_fold_constants(struct kiln_graph *g, struct kiln_pass_stats *st,
                                     kiln_error *err);
kiln_status kiln_pass_cse(struct kiln_graph *g, struct kiln_pass_stats *st, kiln_error *err);
kiln_status kiln_pass_fuse_layernorm(struct kiln_graph *g, struct kiln_pass_stats *st,
                                     kiln_error *err);
kiln_status kiln_pass_fuse_patterns(struct kiln_graph *g, struct kiln_pass_stats *st,
                                    kiln_error *err);
kiln_status kiln_pass_fuse_matmul_bias(struct kiln_graph *g, struct kiln_pass_stats *st,
                                       kiln_error *err);
kiln_status kiln_pass_fuse_attention(struct kiln_graph *g, struct kiln_pass_stats *st,
                                     kiln_error *err);
kiln_status kiln_pass_simplify_transpose(struct kiln_graph *g, struct kiln_pass_stats *st,
                                         kiln_error *err);
kiln_status kiln_pass_fuse_residual(struct kiln_graph *g, struct kiln_pass_stats *st,
                                    kiln_error *err);

#endif
