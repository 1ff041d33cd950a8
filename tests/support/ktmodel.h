/* ktmodel.h — test helpers over loaded models: load a buffer with or
 * without the graph passes, load an onnxgen model both ways, count and find
 * ops in the optimized graph. Shared by the pass tests (test_passes,
 * test_attention, test_fuse_patterns). */
#ifndef KILN_TESTS_KTMODEL_H
#define KILN_TESTS_KTMODEL_H

#include "kiln.h"
#include "support/onnxgen.h"

#include <stddef.h>
#include <stdint.h>

struct kiln_node;

/* The model in buf, with no_optimize as given; NULL (and a failed check) on error. */
kiln_model *kt_load(const uint8_t *buf, size_t len, int no_optimize, const char *label);

/* One model loaded unoptimized (raw) and optimized (opt). */
struct kt_pair {
    kiln_model *raw, *opt;
};

/* Packs om (and frees it), then loads it both ways. */
struct kt_pair kt_load_pair(og_model *om, const char *label);
void           kt_pair_free(struct kt_pair *p);

/* Nodes of op type `op` in m's graph (-1 when m is NULL). */
int kt_count_op(const kiln_model *m, const char *op);
/* Nodes in m's graph (-1 when m is NULL). */
int kt_n_nodes(const kiln_model *m);
/* The first node of op type `op`, or NULL (also when m is NULL). */
const struct kiln_node *kt_find_op(const kiln_model *m, const char *op);

#endif
