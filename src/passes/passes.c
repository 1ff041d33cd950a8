/* passes.c — the pass pipeline and the graph-editing helpers passes share. */
#include "passes/passes.h"
#include "base/status.h"

#include <stdlib.h>
#include <string.h>

const struct kiln_pass kiln_default_passes[] = {
    {"fold-batchnorm", kiln_pass_fold_batchnorm},
    {"fuse-activation", kiln_pass_fuse_activation},
    {"dce", kiln_pass_dce},
    {NULL, NULL},
};

static void node_free(struct kiln_node *n) {
    free(n->name);
    free(n->op_type);
    free(n->domain);
    free(n->inputs);
    free(n->outputs);
    for (int32_t a = 0; a < n->n_attrs; a++) {
        struct kiln_attr *at = &n->attrs[a];
        free(at->name);
        free(at->s);
        free(at->t.data);
        kiln_graph_free(at->g);
        free(at->floats);
        free(at->ints);
        if (at->strings)
            for (int64_t i = 0; i < at->n; i++) free(at->strings[i]);
        free(at->strings);
    }
    free(n->attrs);
}

void kiln_graph_compact(struct kiln_graph *g, const bool *dead_node) {
    int32_t w = 0;
    for (int32_t i = 0; i < g->n_nodes; i++) {
        if (dead_node[i]) {
            node_free(&g->nodes[i]);
            continue;
        }
        if (w != i) g->nodes[w] = g->nodes[i];
        w++;
    }
    g->n_nodes = w;
    kiln_graph_recount(g);
}

int32_t kiln_graph_add_const(struct kiln_graph *g, const char *name, struct kiln_value v) {
    int32_t id = kiln_graph_add_value(g, name);
    if (id < 0) return -1;
    g->values[id].v = v;
    g->values[id].is_const = true;
    g->values[id].has_shape = true;
    return id;
}

kiln_status kiln_passes_run(struct kiln_graph *g, kiln_error *err) {
    for (const struct kiln_pass *p = kiln_default_passes; p->name; p++) {
        struct kiln_pass_stats st = {.nodes_before = g->n_nodes};
        kiln_status s = p->run(g, &st, err);
        if (s) return kiln_fail_prefix(err, s, "pass %s", p->name);
    }
    return KILN_OK;
}
