/* fold_batchnorm.c — a per-channel affine after a Conv becomes part of the
 * Conv's weights and bias:
 *     W'[o] = W[o] * s[o],   B'[o] = B[o] * s[o] + t[o].
 * fold-batchnorm: inference BatchNormalization, s[o] = gamma[o] /
 *     sqrt(var[o] + eps), t[o] = beta[o] - mean[o] * s[o].
 * fold-conv-affine: Mul / Div / Add / Sub of the Conv output by a float32
 *     constant that is one value or one per output channel ([C,1,1],
 *     [1,C,1,1], ...), as PaddlePaddle exports its learnable affine blocks
 *     and TF exporters their scales; Mul then Add fold one after the other.
 * Only when every operand is a float32 constant and the Conv output has no
 * other reader, no fused activation and no residual. New constants are
 * added; the old ones are freed by dce. */
#include "passes/passes.h"
#include "base/status.h"

#include <math.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

static const struct kiln_value *const_f32(const struct kiln_graph *g, const struct kiln_node *n,
                                          int32_t idx, int64_t want_numel) {
    const struct kiln_value *v = kiln_node_const_f32(g, n, idx);
    if (!v || (want_numel >= 0 && kiln_value_numel(v) != want_numel)) return NULL;
    return v;
}

/* The Conv node that alone produces value x and may take a folded affine
 * (float32 constant weights of rank >= 3, constant or no bias), or -1. */
static int32_t foldable_conv(const struct kiln_graph *g, int32_t x, const bool *dead) {
    if (x < 0) return -1;
    int32_t pi = g->values[x].producer;
    /* graph outputs count as consumers, so a Conv output that is one never folds */
    if (pi < 0 || dead[pi] || g->values[x].n_consumers != 1) return -1;
    const struct kiln_node *cv = &g->nodes[pi];
    if (strcmp(cv->op_type, "Conv") || *cv->domain || cv->n_outputs != 1 || cv->act.kind || cv->sum_input)
        return -1;
    const struct kiln_value *w = const_f32(g, cv, 1, -1);
    if (!w || w->rank < 3) return -1;
    if (cv->n_inputs > 2 && cv->inputs[2] >= 0 && !const_f32(g, cv, 2, w->dims[0])) return -1;
    return pi;
}

/* Rewrites Conv pi to W[o]*s[o], B[o]*s[o]+t[o] writing value `out`. */
static kiln_status fold_into_conv(struct kiln_graph *g, int32_t pi, const double *s, const double *t,
                                  int32_t out, const char *tag, kiln_error *err) {
    struct kiln_node *cv = &g->nodes[pi];
    const struct kiln_value *w = const_f32(g, cv, 1, -1);
    int64_t oc = w->dims[0];
    const struct kiln_value *b = cv->n_inputs > 2 ? const_f32(g, cv, 2, oc) : NULL;
    struct kiln_value nw = *w, nb = {.dtype = KILN_DTYPE_FLOAT, .rank = 1, .dims = {oc}};
    nw.data = malloc(w->nbytes);
    nb.nbytes = (size_t)oc * sizeof(float);
    nb.data = malloc(nb.nbytes);
    if (!nw.data || !nb.data) {
        free(nw.data);
        free(nb.data);
        return kiln_fail(err, KILN_ERR_NO_MEMORY, "%s", tag);
    }
    int64_t per = kiln_value_numel(w) / (oc ? oc : 1);
    for (int64_t o = 0; o < oc; o++) {
        /* double keeps the folded weights as close to the unfused result as float allows */
        for (int64_t k = 0; k < per; k++)
            ((float *)nw.data)[o * per + k] = (float)(((const float *)w->data)[o * per + k] * s[o]);
        double bias = b ? ((const float *)b->data)[o] : 0.0;
        ((float *)nb.data)[o] = (float)(bias * s[o] + t[o]);
    }
    char name[512];
    snprintf(name, sizeof name, "%s.W_%s", cv->name, tag);
    int32_t wid = kiln_graph_add_const(g, name, nw);
    snprintf(name, sizeof name, "%s.B_%s", cv->name, tag);
    int32_t bid = wid >= 0 ? kiln_graph_add_const(g, name, nb) : -1;
    if (wid < 0 || bid < 0) {
        if (wid < 0) free(nw.data);
        free(nb.data);
        return kiln_fail(err, KILN_ERR_NO_MEMORY, "%s", tag);
    }
    cv = &g->nodes[pi];
    if (cv->n_inputs < 3) {
        int32_t *ni = realloc(cv->inputs, 3 * sizeof *ni);
        if (!ni) return kiln_fail(err, KILN_ERR_NO_MEMORY, "%s", tag);
        cv->inputs = ni;
        cv->n_inputs = 3;
    }
    cv->inputs[1] = wid;
    cv->inputs[2] = bid;
    cv->outputs[0] = out;   /* the Conv now writes what the folded node wrote */
    g->values[out].producer = pi;
    return KILN_OK;
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
        int32_t pi = foldable_conv(g, bn->inputs[0], dead);
        if (pi < 0) continue;
        int64_t oc = const_f32(g, &g->nodes[pi], 1, -1)->dims[0];
        const struct kiln_value *gam = const_f32(g, bn, 1, oc), *bet = const_f32(g, bn, 2, oc),
                                *mean = const_f32(g, bn, 3, oc), *var = const_f32(g, bn, 4, oc);
        if (!gam || !bet || !mean || !var) continue;
        float eps = kiln_attr_float(bn, "epsilon", 1e-5f);
        double *sc = malloc((size_t)(oc ? oc : 1) * 2 * sizeof *sc);
        if (!sc) {
            free(dead);
            return kiln_fail(err, KILN_ERR_NO_MEMORY, "fold-batchnorm");
        }
        for (int64_t o = 0; o < oc; o++) {
            sc[o] = ((const float *)gam->data)[o] / sqrt((double)((const float *)var->data)[o] + eps);
            sc[oc + o] = ((const float *)bet->data)[o] - ((const float *)mean->data)[o] * sc[o];
        }
        kiln_status fs = fold_into_conv(g, pi, sc, sc + oc, bn->outputs[0], "bnfolded", err);
        free(sc);
        if (fs) {
            free(dead);
            return fs;
        }
        bn = &g->nodes[i];
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

/* The per-channel values of constant c for a Conv output with oc channels
 * and rank `rank` ([N, C, spatial...]): 1 value, or oc values along axis 1
 * only (any rank <= the output's, right-aligned). NULL otherwise. */
static const float *channel_const(const struct kiln_value *c, int64_t oc, int32_t rank, int64_t *n) {
    if (!c || c->rank > rank) return NULL;
    int64_t numel = kiln_value_numel(c);
    if (numel == 1) { *n = 1; return c->data; }
    if (numel != oc) return NULL;
    for (int32_t d = 0; d < c->rank; d++) {
        int32_t axis = rank - c->rank + d;
        if (axis != 1 && c->dims[d] != 1) return NULL;
    }
    *n = oc;
    return c->data;
}

kiln_status kiln_pass_fold_conv_affine(struct kiln_graph *g, struct kiln_pass_stats *st, kiln_error *err) {
    kiln_graph_recount(g);
    bool *dead = calloc((size_t)(g->n_nodes ? g->n_nodes : 1), sizeof *dead);
    if (!dead) return kiln_fail(err, KILN_ERR_NO_MEMORY, "fold-conv-affine");
    for (int32_t i = 0; i < g->n_nodes; i++) {
        struct kiln_node *a = &g->nodes[i];
        if (*a->domain || a->n_inputs != 2 || a->n_outputs != 1 || a->outputs[0] < 0) continue;
        bool mul = !strcmp(a->op_type, "Mul"), add = !strcmp(a->op_type, "Add");
        bool div = !strcmp(a->op_type, "Div"), sub = !strcmp(a->op_type, "Sub");
        if (!mul && !add && !div && !sub) continue;
        /* the Conv output is input 0 or, for the commutative ops, either */
        int side = -1;
        for (int k = 0; k < 2 && side < 0; k++) {
            if (k == 1 && (div || sub)) break;
            if (foldable_conv(g, a->inputs[k], dead) >= 0 && const_f32(g, a, 1 - k, -1)) side = k;
        }
        if (side < 0) continue;
        int32_t pi = foldable_conv(g, a->inputs[side], dead);
        const struct kiln_value *w = const_f32(g, &g->nodes[pi], 1, -1);
        int64_t oc = w->dims[0], n = 0;
        /* the Conv output's rank equals its weights' rank */
        const float *c = channel_const(const_f32(g, a, 1 - side, -1), oc, w->rank, &n);
        if (!c) continue;
        double *sc = malloc((size_t)(oc ? oc : 1) * 2 * sizeof *sc);
        if (!sc) {
            free(dead);
            return kiln_fail(err, KILN_ERR_NO_MEMORY, "fold-conv-affine");
        }
        bool ok = true;
        for (int64_t o = 0; o < oc; o++) {
            double v = c[n == 1 ? 0 : o];
            sc[o] = mul ? v : div ? 1.0 / v : 1.0;
            sc[oc + o] = add ? v : sub ? -v : 0.0;
            if (div && (v == 0.0 || !isfinite(1.0 / v))) ok = false;   /* keep x/0 as the model says */
        }
        kiln_status fs = ok ? fold_into_conv(g, pi, sc, sc + oc, a->outputs[0], "affine", err) : KILN_OK;
        free(sc);
        if (fs) {
            free(dead);
            return fs;
        }
        if (!ok) continue;
        kiln_node_detach(&g->nodes[i]);
        dead[i] = true;
        st->rewrites++;
        kiln_graph_recount(g);
    }
    kiln_graph_compact(g, dead);
    free(dead);
    st->nodes_after = g->n_nodes;
    return KILN_OK;
}
