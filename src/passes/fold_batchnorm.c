/* fold_batchnorm.c — Conv followed by inference BatchNormalization becomes
 * one Conv with rescaled weights and bias:
 *     W'[o] = W[o] * s[o],   B'[o] = (B[o] - mean[o]) * s[o] + beta[o],
 *     s[o] = gamma[o] / sqrt(var[o] + eps).
 * Only when every operand is a float32 constant and the Conv output has no
 * other reader. New constants are added; the old ones are freed by dce. */
#include "passes/passes.h"
#include "base/status.h"

#include <math.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

static const struct kiln_value *const_f32(const struct kiln_graph *g, const struct kiln_node *n,
                                          int32_t idx, int64_t want_numel) {
    if (idx >= n->n_inputs || n->inputs[idx] < 0) return NULL;
    const struct kiln_value_info *vi = &g->values[n->inputs[idx]];
    if (!vi->is_const || vi->v.dtype != KILN_DTYPE_FLOAT || !vi->v.data) return NULL;
    if (want_numel >= 0 && kiln_value_numel(&vi->v) != want_numel) return NULL;
    return &vi->v;
}

kiln_status kiln_pass_fold_batchnorm(struct kiln_graph *g, struct kiln_pass_stats *st,
                                     kiln_error *err) {
    kiln_graph_recount(g);
    bool *dead = calloc((size_t)(g->n_nodes ? g->n_nodes : 1), sizeof *dead);
    if (!dead) return kiln_fail(err, KILN_ERR_NO_MEMORY, "fold-batchnorm");
    for (int32_t i = 0; i < g->n_nodes; i++) {
        struct kiln_node *bn = &g->nodes[i];
        if (strcmp(bn->op_type, "BatchNormalization") || *bn->domain || bn->n_inputs != 5 ||
            bn->inputs[0] < 0 || kiln_attr_int(bn, "training_mode", 0))
            continue;
        bool extra_out = false;
        for (int32_t j = 1; j < bn->n_outputs; j++)
            if (bn->outputs[j] >= 0 && g->values[bn->outputs[j]].n_consumers) extra_out = true;
        if (extra_out) continue;
        int32_t x = bn->inputs[0];
        int32_t pi = g->values[x].producer;
        if (pi < 0 || dead[pi] || g->values[x].n_consumers != 1) continue;
        struct kiln_node *cv = &g->nodes[pi];
        if (strcmp(cv->op_type, "Conv") || *cv->domain || cv->n_outputs != 1 || cv->act.kind)
            continue;
        const struct kiln_value *w = const_f32(g, cv, 1, -1);
        if (!w || w->rank < 3) continue;
        int64_t oc = w->dims[0];
        const struct kiln_value *b = cv->n_inputs > 2 ? const_f32(g, cv, 2, oc) : NULL;
        if (cv->n_inputs > 2 && cv->inputs[2] >= 0 && !b) continue;
        const struct kiln_value *gam = const_f32(g, bn, 1, oc), *bet = const_f32(g, bn, 2, oc),
                                *mean = const_f32(g, bn, 3, oc), *var = const_f32(g, bn, 4, oc);
        if (!gam || !bet || !mean || !var) continue;
        float eps = kiln_attr_float(bn, "epsilon", 1e-5f);

        struct kiln_value nw = *w, nb = {.dtype = KILN_DTYPE_FLOAT, .rank = 1, .dims = {oc}};
        nw.data = malloc(w->nbytes);
        nb.nbytes = (size_t)oc * sizeof(float);
        nb.data = malloc(nb.nbytes);
        if (!nw.data || !nb.data) {
            free(nw.data);
            free(nb.data);
            free(dead);
            return kiln_fail(err, KILN_ERR_NO_MEMORY, "fold-batchnorm");
        }
        int64_t per = kiln_value_numel(w) / (oc ? oc : 1);
        for (int64_t o = 0; o < oc; o++) {
            /* double keeps the folded weights as close to the unfused result as float allows */
            double s = ((const float *)gam->data)[o] / sqrt((double)((const float *)var->data)[o] + eps);
            for (int64_t k = 0; k < per; k++)
                ((float *)nw.data)[o * per + k] = (float)(((const float *)w->data)[o * per + k] * s);
            double bias = b ? ((const float *)b->data)[o] : 0.0;
            ((float *)nb.data)[o] = (float)((bias - ((const float *)mean->data)[o]) * s +
                                            ((const float *)bet->data)[o]);
        }
        char name[512];
        snprintf(name, sizeof name, "%s.W_bnfolded", cv->name);
        int32_t wid = kiln_graph_add_const(g, name, nw);
        snprintf(name, sizeof name, "%s.B_bnfolded", cv->name);
        int32_t bid = wid >= 0 ? kiln_graph_add_const(g, name, nb) : -1;
        if (wid < 0 || bid < 0) {
            if (wid < 0) free(nw.data);
            free(nb.data);
            free(dead);
            return kiln_fail(err, KILN_ERR_NO_MEMORY, "fold-batchnorm");
        }
        cv = &g->nodes[pi];
        bn = &g->nodes[i];
        if (cv->n_inputs < 3) {
            int32_t *ni = realloc(cv->inputs, 3 * sizeof *ni);
            if (!ni) {
                free(dead);
                return kiln_fail(err, KILN_ERR_NO_MEMORY, "fold-batchnorm");
            }
            cv->inputs = ni;
            cv->n_inputs = 3;
        }
        cv->inputs[1] = wid;
        cv->inputs[2] = bid;
        cv->outputs[0] = bn->outputs[0];   /* the Conv now writes what BN wrote */
        g->values[bn->outputs[0]].producer = pi;
        for (int32_t j = 1; j < bn->n_outputs; j++) bn->outputs[j] = -1;
        dead[i] = true;
        st->rewrites++;
        kiln_graph_recount(g);
    }
    kiln_graph_compact(g, dead);
    free(dead);
    st->nodes_after = g->n_nodes;
    return KILN_OK;
}
