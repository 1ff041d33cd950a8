/* dump.c — the IR as text, one node per line; used by tests of passes and by
 * `kiln inspect --ir`:
 *     %3 = Conv(%0, %1, %2) {act=Relu}   # node name
 * A fused residual shows as {sum=%N} (the Conv's extra input N, added before act).
 */
#include "ir/graph.h"

#include <stdio.h>

static const char *const act_names[] = {"", "Relu", "Clip", "LeakyRelu", "Sigmoid",
                                        "HardSigmoid", "HardSwish", "Tanh", "GeluErf",
                                        "GeluTanh", "Swish"};



void kiln_graph_dump(const struct kiln_graph *g, FILE *f) {
    fprintf(f, "graph %s (%d nodes, %d values)\n", g->name, g->n_nodes, g->n_values);
    for (int32_t i = 0; i < g->n_inputs; i++)
        fprintf(f, "  input %%%d '%s'\n", g->inputs[i], g->values[g->inputs[i]].name);
    for (int32_t i = 0; i < g->n_nodes; i++) {
        const struct kiln_node *n = &g->nodes[i];
        fprintf(f, "  ");
        for (int32_t j = 0; j < n->n_outputs; j++) fprintf(f, "%s%%%d", j ? ", " : "", n->outputs[j]);
        fprintf(f, " = %s%s%s(", *n->domain ? n->domain : "", *n->domain ? "." : "", n->op_type);
        for (int32_t j = 0; j < n->n_inputs; j++) {
            int32_t v = n->inputs[j];
            fprintf(f, "%s%s%%%d", j ? ", " : "", v >= 0 && g->values[v].is_const ? "const " : "", v);
        }
        fprintf(f, ")");
        if (n->sum_input) fprintf(f, " {sum=%%%d}", n->inputs[n->sum_input]);
        if (n->act.kind) fprintf(f, " {act=%s}", act_names[n->act.kind]);
        fprintf(f, "  # %s\n", n->name);
    }
    for (int32_t i = 0; i < g->n_outputs; i++)
        fprintf(f, "  output %%%d '%s'\n", g->outputs[i], g->values[g->outputs[i]].name);
}
