/* fold_constants.c — a node whose inputs are all constants is evaluated once,
 * at load, with its op's reference kernel (infer + exec, then its fused
 * activation), and its outputs become constants of the graph. The planner
 * folds the same nodes at every plan build; doing it here once shares the
 * results across plans and sessions, and lets CSE and the pattern passes
 * see constants (e.g. weights transposed by a Transpose node).
 *
 * Left alone: ops flagged KILN_OP_NO_FOLD or KILN_OP_SUBGRAPH, nodes with
 * graph attributes, unsupported ops, nodes without any input, nodes writing a
 * graph output, and nodes whose outputs would take over 64 MB (a small
 * constant expanded into a huge one is better computed per run than kept).
 * A node whose infer or exec fails is left for the planner to report with
 * its usual context; the pass itself never fails on model data. */
#include "passes/passes.h"
#include "base/status.h"
#include "ops/op.h"
#include "plan/plan.h"

#include <stdlib.h>
#include <string.h>

#define FOLD_MAX_BYTES ((size_t)64 << 20)

static bool foldable(const struct kiln_graph *g, const struct kiln_node *n) {
    if (!n->op || (n->op->flags & (KILN_OP_NO_FOLD | KILN_OP_SUBGRAPH)) ||
        kiln_node_has_subgraph(n) || n->n_outputs < 1)
        return false;
    bool any = false;
    for (int32_t j = 0; j < n->n_inputs; j++) {
        int32_t v = n->inputs[j];
        if (v < 0) continue;
        const struct kiln_value_info *vi = &g->values[v];
        if (!vi->is_const || (!vi->v.data && vi->v.nbytes)) return false;
        any = true;
    }
    if (!any) return false;
    for (int32_t j = 0; j < n->n_outputs; j++)
        if (n->outputs[j] >= 0 && kiln_graph_is_output(g, n->outputs[j])) return false;
    return true;
}

/* Evaluates n into outv (n->n_outputs entries, data malloc'ed). false: leave n. */
static bool evaluate(const struct kiln_graph *g, const struct kiln_node *n,
                     const struct kiln_value **in, struct kiln_value *outv,
                     struct kiln_value **outp, bool *oom) {
    struct kiln_exec_ctx ctx = {.n_threads = 1, .reference_only = 1, .model_label = "fold"};
    kiln_error err;
    kiln_error_clear(&err);
    for (int32_t j = 0; j < n->n_inputs; j++)
        in[j] = n->inputs[j] >= 0 ? &g->values[n->inputs[j]].v : NULL;
    for (int32_t j = 0; j < n->n_outputs; j++) {
        memset(&outv[j], 0, sizeof outv[j]);
        outp[j] = n->outputs[j] >= 0 ? &outv[j] : NULL;
    }
    if (n->op->infer(n, in, n->n_inputs, outp, n->n_outputs, &err)) return false;
    size_t total = 0;
    for (int32_t j = 0; j < n->n_outputs; j++) {
        if (!outp[j]) continue;
        size_t bytes;
        if (!kiln_value_bytes(outp[j], &bytes) || bytes > FOLD_MAX_BYTES - total) return false;
        total += bytes;
        outp[j]->nbytes = bytes;
    }
    bool ok = true;
    for (int32_t j = 0; j < n->n_outputs && ok; j++) {
        if (!outp[j]) continue;
        outp[j]->data = kiln_aligned_alloc(outp[j]->nbytes);
        if (!outp[j]->data) *oom = true, ok = false;
    }
    if (ok) ok = n->op->exec(n, &ctx, in, n->n_inputs, outp, n->n_outputs, &err) == KILN_OK;
    if (ok && n->act.kind && outp[0]) ok = kiln_activation_apply(n, outp[0], &err) == KILN_OK;
    if (!ok)
        for (int32_t j = 0; j < n->n_outputs; j++)
            if (outp[j]) {
                free(outp[j]->data);
                outp[j]->data = NULL;
            }
    return ok;
}

kiln_status kiln_pass_fold_constants(struct kiln_graph *g, struct kiln_pass_stats *st,
                                     kiln_error *err) {
    kiln_graph_recount(g);
    int32_t max_io = kiln_graph_max_io(g);
    bool *dead = calloc((size_t)(g->n_nodes ? g->n_nodes : 1), sizeof *dead);
    const struct kiln_value **in = calloc((size_t)max_io, sizeof *in);
    struct kiln_value *outv = calloc((size_t)max_io, sizeof *outv);
    struct kiln_value **outp = calloc((size_t)max_io, sizeof *outp);
    kiln_status s = KILN_OK;
    if (!dead || !in || !outv || !outp) {
        s = kiln_fail(err, KILN_ERR_NO_MEMORY, "fold-constants");
        goto done;
    }
    for (int32_t i = 0; i < g->n_nodes; i++) {
        struct kiln_node *n = &g->nodes[i];
        if (!foldable(g, n)) continue;
        bool oom = false;
        if (!evaluate(g, n, in, outv, outp, &oom)) {
            if (oom) {
                s = kiln_fail(err, KILN_ERR_NO_MEMORY, "fold-constants: node '%s'", n->name);
                goto done;
            }
            continue;
        }
        for (int32_t j = 0; j < n->n_outputs; j++) {
            int32_t v = n->outputs[j];
            if (v < 0) continue;
            struct kiln_value_info *vi = &g->values[v];
            vi->v = outv[j];
            vi->v.layout = KILN_LAYOUT_PLAIN;
            vi->is_const = true;
            vi->has_shape = true;
            vi->borrowed = false;
            vi->producer = -1;
            for (int r = 0; r < KILN_MAX_RANK; r++) {   /* a constant's dims are all known */
                free(vi->dim_names[r]);
                vi->dim_names[r] = NULL;
            }
        }
        kiln_node_detach(n);
        dead[i] = true;
        st->rewrites++;
    }
    kiln_graph_compact(g, dead);
done:
    free(dead);
    free(in);
    free(outv);
    free(outp);
    st->nodes_after = g->n_nodes;
    return s;
}
