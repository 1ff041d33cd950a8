/* ktmodel.c — see ktmodel.h. */
#include "support/ktmodel.h"
#include "runtime/model.h"
#include "support/kt.h"

#include <stdlib.h>
#include <string.h>

kiln_model *kt_load(const uint8_t *buf, size_t len, int no_optimize, const char *label) {
    kiln_load_options lo = kiln_load_options_default();
    lo.no_optimize = no_optimize;
    kiln_error err;
    kiln_model *m = NULL;
    if (!EXPECT_OK(label, kiln_model_load_buffer(buf, len, label, &lo, &m, &err), &err)) return NULL;
    return m;
}

struct kt_pair kt_load_pair(og_model *om, const char *label) {
    size_t len;
    uint8_t *buf = og_model_pack(om, &len);
    og_model_free(om);
    struct kt_pair p = {kt_load(buf, len, 1, label), kt_load(buf, len, 0, label)};
    free(buf);
    return p;
}

void kt_pair_free(struct kt_pair *p) {
    kiln_model_free(p->raw);
    kiln_model_free(p->opt);
}

int kt_count_op(const kiln_model *m, const char *op) {
    if (!m) return -1;
    const struct kiln_graph *g = m->onnx.graph;
    int c = 0;
    for (int32_t i = 0; i < g->n_nodes; i++) c += !strcmp(g->nodes[i].op_type, op);
    return c;
}

int kt_n_nodes(const kiln_model *m) { return m ? m->onnx.graph->n_nodes : -1; }

const struct kiln_node *kt_find_op(const kiln_model *m, const char *op) {
    if (!m) return NULL;
    const struct kiln_graph *g = m->onnx.graph;
    for (int32_t i = 0; i < g->n_nodes; i++)
        if (!strcmp(g->nodes[i].op_type, op)) return &g->nodes[i];
    return NULL;
}
