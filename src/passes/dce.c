/* dce.c — removes nodes whose outputs nobody reads, and frees constants
 * that no node reads any more (e.g. weights replaced by folded copies). */
#include "passes/passes.h"
#include "base/status.h"

#include <stdlib.h>

kiln_status kiln_pass_dce(struct kiln_graph *g, struct kiln_pass_stats *st, kiln_error *err) {
    kiln_graph_recount(g);
    bool *dead = calloc((size_t)(g->n_nodes ? g->n_nodes : 1), sizeof *dead);
    if (!dead) return kiln_fail(err, KILN_ERR_NO_MEMORY, "dce");
    bool changed = true;
    while (changed) { /* walk backwards so whole dead chains go in one sweep */
        changed = false;
        for (int32_t i = g->n_nodes - 1; i >= 0; i--) {
            struct kiln_node *n = &g->nodes[i];
            if (dead[i]) continue;
            bool used = false;
            for (int32_t j = 0; j < n->n_outputs; j++)
                if (n->outputs[j] >= 0 && g->values[n->outputs[j]].n_consumers > 0) used = true;
            if (used) continue;
            dead[i] = true;
            st->rewrites++;
            changed = true;
            for (int32_t j = 0; j < n->n_inputs; j++)
                if (n->inputs[j] >= 0) g->values[n->inputs[j]].n_consumers--;
        }
    }
    kiln_graph_compact(g, dead);
    free(dead);
    for (int32_t v = 0; v < g->n_values; v++) {
        struct kiln_value_info *vi = &g->values[v];
        if (vi->is_const && vi->n_consumers == 0 && vi->v.data) {
            if (!vi->borrowed) free(vi->v.data);
            vi->v.data = NULL;
            vi->v.nbytes = 0;
            vi->is_const = false;   /* now an orphan name: nothing reads or writes it */
        }
    }
    st->nodes_after = g->n_nodes;
    return KILN_OK;
}
