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

kiln_status kiln_pass_dce(struct kiln_graph *g, struct kiln_pass_stats *st, kiln_error *err);
kiln_status kiln_pass_fold_batchnorm(struct kiln_graph *g, struct kiln_pass_stats *st,
                                     kiln_error *err);
kiln_status kiln_pass_fuse_activation(struct kiln_graph *g, struct kiln_pass_stats *st,
                                      kiln_error *err);

#endif
