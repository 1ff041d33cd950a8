/* fuse_activation.c — an elementwise activation (Relu, Clip, LeakyRelu,
 * Sigmoid, HardSigmoid, HardSwish, Tanh, Gelu, Swish) that is the only reader of a
 * Conv/ConvTranspose/Gemm/MatMul output is folded into that node
 * (node->act); the executor or the node's kernel applies it. Saves a full
 * pass over the activation tensor and, on oneDNN, becomes a post-op. */
#include "passes/passes.h"
#include "base/status.h"

#include <stdlib.h>
#include <string.h>

static bool is_producer_op(const struct kiln_node *n) {
    static const char *const ops[] = {"Conv", "ConvTranspose", "Gemm", "MatMul"};
    if (*n->domain || n->n_outputs < 1) return false;
    for (size_t i = 0; i < sizeof ops / sizeof ops[0]; i++)
        if (!strcmp(n->op_type, ops[i])) return true;
    return false;
}

/* float32 producers only: the weight (input 1) must be a float32 constant */
static bool float_weights(const struct kiln_graph *g, const struct kiln_node *n) {
    return n->n_inputs > 1 && n->inputs[1] >= 0 && g->values[n->inputs[1]].is_const &&
           g->values[n->inputs[1]].v.dtype == KILN_DTYPE_FLOAT;
}

static const float *scalar_const(const struct kiln_graph *g, const struct kiln_node *n, int idx) {
    const struct kiln_value *c = kiln_node_const_f32(g, n, idx);
    return c && kiln_value_numel(c) == 1 ? c->data : NULL;
}

static bool activation_of(const struct kiln_graph *g, const struct kiln_node *a,
                          struct kiln_activation *out) {
    memset(out, 0, sizeof *out);
    if (a->n_outputs != 1) return false;
    if (!strcmp(a->op_type, "Gelu") && a->n_inputs == 1 &&
        (!*a->domain || !strcmp(a->domain, "com.microsoft"))) {
        /* ONNX Gelu (opset 20, also what fuse-patterns writes) or ORT's erf-only contrib op */
        const char *ap = *a->domain ? "none" : kiln_attr_string(a, "approximate", "none");
        if (!strcmp(ap, "none")) out->kind = KILN_ACT_GELU_ERF;
        else if (!strcmp(ap, "tanh")) out->kind = KILN_ACT_GELU_TANH;
        return out->kind != KILN_ACT_NONE;
    }
    if (*a->domain) return false;
    if (!strcmp(a->op_type, "Relu") && a->n_inputs == 1) out->kind = KILN_ACT_RELU;
    else if (!strcmp(a->op_type, "Sigmoid") && a->n_inputs == 1) out->kind = KILN_ACT_SIGMOID;
    else if (!strcmp(a->op_type, "Tanh") && a->n_inputs == 1) out->kind = KILN_ACT_TANH;
    else if (!strcmp(a->op_type, "HardSwish") && a->n_inputs == 1) out->kind = KILN_ACT_HARD_SWISH;
    else if (!strcmp(a->op_type, "Swish") && a->n_inputs == 1) {
        out->kind = KILN_ACT_SILU;
        out->alpha = kiln_attr_float(a, "alpha", 1.0f);
    }
    else if (!strcmp(a->op_type, "LeakyRelu") && a->n_inputs == 1) {
        out->kind = KILN_ACT_LEAKY_RELU;
        out->alpha = kiln_attr_float(a, "alpha", 0.01f);
    } else if (!strcmp(a->op_type, "HardSigmoid") && a->n_inputs == 1) {
        out->kind = KILN_ACT_HARD_SIGMOID;
        out->alpha = kiln_attr_float(a, "alpha", 0.2f);
        out->beta = kiln_attr_float(a, "beta", 0.5f);
    } else if (!strcmp(a->op_type, "Clip")) {
        out->kind = KILN_ACT_CLIP;
        if (a->opset < 11) {
            out->alpha = kiln_attr_float(a, "min", -3.402823466e38f);
            out->beta = kiln_attr_float(a, "max", 3.402823466e38f);
        } else {
            const float *lo = scalar_const(g, a, 1), *hi = scalar_const(g, a, 2);
            if ((a->n_inputs > 1 && a->inputs[1] >= 0 && !lo) ||
                (a->n_inputs > 2 && a->inputs[2] >= 0 && !hi))
                return false;
            out->alpha = lo ? *lo : -3.402823466e38f;
            out->beta = hi ? *hi : 3.402823466e38f;
        }
    }
    return out->kind != KILN_ACT_NONE;
}

kiln_status kiln_pass_fuse_activation(struct kiln_graph *g, struct kiln_pass_stats *st,
                                      kiln_error *err) {
    kiln_graph_recount(g);
    bool *dead = calloc((size_t)(g->n_nodes ? g->n_nodes : 1), sizeof *dead);
    if (!dead) return kiln_fail(err, KILN_ERR_NO_MEMORY, "fuse-activation");
    for (int32_t i = 0; i < g->n_nodes; i++) {
        struct kiln_node *a = &g->nodes[i];
        struct kiln_activation act;
        if (a->n_inputs < 1 || a->inputs[0] < 0 || !activation_of(g, a, &act)) continue;
        int32_t x = a->inputs[0];
        int32_t pi = g->values[x].producer;
        if (pi < 0 || dead[pi] || g->values[x].n_consumers != 1) continue;
        struct kiln_node *p = &g->nodes[pi];
        if (!is_producer_op(p) || p->act.kind || !float_weights(g, p) || p->outputs[0] != x)
            continue;
        p->act = act;
        p->outputs[0] = a->outputs[0];
        dead[i] = true;
        st->rewrites++;
        kiln_graph_recount(g);
    }
    kiln_graph_compact(g, dead);
    free(dead);
    st->nodes_after = g->n_nodes;
    return KILN_OK;
}
