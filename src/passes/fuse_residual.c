/* fuse_residual.c — Add(Conv(x), r) becomes one Conv with a 4th input r and
 * node->sum_input = 3: the Conv kernel adds r to its result (on oneDNN a sum
 * post-op into a dst pre-filled with r), and a following activation is then
 * fused by fuse-activation as act(conv + r). ResNet's residual blocks end this
 * way; the Add's full pass over the activation tensor goes away.
 *
 * Matches: Add (opset >= 7, numpy broadcasting) with two distinct non-constant
 * operands, one of them the only use of a plain float32 Conv (constant
 * float32 weights, no fused activation or residual yet). The fused Conv keeps
 * Add's exact semantics whatever the shapes (Conv's infer broadcasts like
 * Add); the fast path needs r in the output's shape and layout, which the
 * planner arranges (plan.c assign_layouts).
 *
 * The fused node takes the Add's place in the node order: every input of the
 * Conv and r are produced before the Add, and only the Add read the Conv. */
#include "passes/passes.h"
#include "base/status.h"

#include <stdlib.h>
#include <string.h>

static bool plain_conv(const struct kiln_graph *g, const struct kiln_node *c, int32_t out) {
    if (strcmp(c->op_type, "Conv") || *c->domain || c->n_outputs != 1 || c->outputs[0] != out ||
        c->n_inputs < 2 || c->n_inputs > 3 || c->inputs[0] < 0 || c->act.kind || c->sum_input ||
        kiln_node_has_subgraph(c))
        return false;
    return kiln_node_const_f32(g, c, 1) != NULL && g->values[out].n_consumers == 1;
}

kiln_status kiln_pass_fuse_residual(struct kiln_graph *g, struct kiln_pass_stats *st,
                                    kiln_error *err) {
    kiln_graph_recount(g);
    bool *dead = calloc((size_t)(g->n_nodes ? g->n_nodes : 1), sizeof *dead);
    if (!dead) return kiln_fail(err, KILN_ERR_NO_MEMORY, "fuse-residual");
    for (int32_t i = 0; i < g->n_nodes; i++) {
        struct kiln_node *a = &g->nodes[i];
        if (strcmp(a->op_type, "Add") || *a->domain || a->opset < 7 || a->n_inputs != 2 ||
            a->n_outputs != 1 || a->outputs[0] < 0 || a->act.kind || a->inputs[0] < 0 ||
            a->inputs[1] < 0 || a->inputs[0] == a->inputs[1])
            continue;
        int32_t pick = -1, conv = -1;
        for (int32_t k = 0; k < 2 && pick < 0; k++) {
            int32_t c = a->inputs[k], r = a->inputs[1 - k];
            int32_t pi = g->values[c].producer;
            if (pi < 0 || dead[pi] || g->values[r].is_const) continue;
            if (!plain_conv(g, &g->nodes[pi], c)) continue;
            pick = k;
            conv = pi;
        }
        if (pick < 0) continue;
        struct kiln_node *c = &g->nodes[conv];
        int32_t *ni = realloc(c->inputs, 4 * sizeof *ni);
        if (!ni) {
            free(dead);
            return kiln_fail(err, KILN_ERR_NO_MEMORY, "fuse-residual");
        }
        c->inputs = ni;
        if (c->n_inputs < 3) ni[2] = -1;   /* no bias: an omitted optional input */
        ni[3] = a->inputs[1 - pick];
        c->n_inputs = 4;
        c->sum_input = 3;
        c->outputs[0] = a->outputs[0];
        /* the Conv moves to the Add's slot; the slot it leaves holds the dead Add */
        struct kiln_node tmp = *a;
        *a = *c;
        *c = tmp;
        kiln_node_detach(c);
        dead[conv] = true;
        st->rewrites++;
        kiln_graph_recount(g);
    }
    kiln_graph_compact(g, dead);
    free(dead);
    st->nodes_after = g->n_nodes;
    return KILN_OK;
}
