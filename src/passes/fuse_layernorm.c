/* fuse_layernorm.c — the LayerNormalization that exporters before opset 17
 * spell out over the last axis,
 *     m = ReduceMean(x, axes=[-1]); d = Sub(x, m)
 *     v = ReduceMean(Pow(d, 2) or Mul(d, d), axes=[-1])
 *     y = Add(Mul(Div(d, Sqrt(Add(v, eps))), gamma), beta)
 * becomes one LayerNormalization(x, gamma, beta; axis=-1, epsilon=eps) node
 * (src/ops/norm.c), which makes one pass over each row instead of nine.
 *
 * Matches only when every intermediate has no other reader (and is no graph
 * output), both ReduceMeans keep dims and reduce the last axis only, eps and
 * the exponent 2 are float32 scalar constants, and gamma (and beta, which may
 * be absent) are rank-1 float32 constants: the operands float32 LayerNorm
 * reads. Add/Mul accept either operand order. The fused node is given opset
 * 17 at least (LayerNormalization's first version), whatever the model
 * imports, and takes the final node's place in the order. */
#include "passes/passes.h"
#include "base/status.h"
#include "ops/op.h"

#include <stdlib.h>
#include <string.h>

static bool is_op(const struct kiln_node *n, const char *op, int32_t n_in) {
    return !strcmp(n->op_type, op) && !*n->domain && n->n_inputs == n_in && n->n_outputs == 1 &&
           n->outputs[0] >= 0 && !n->act.kind && !n->sum_input;
}

static bool vector_f32(const struct kiln_graph *g, int32_t v) {
    const struct kiln_value *c = kiln_graph_const_f32(g, v);
    return c && c->rank == 1 && c->dims[0] >= 1;
}

/* ReduceMean of `in` over its last axis only, keeping dims; x (the pattern's
 * input, of in's shape) tells the rank when the axis is not written as -1. */
static bool mean_last_axis(const struct kiln_graph *g, const struct kiln_node *n, int32_t in,
                           int32_t x) {
    if (strcmp(n->op_type, "ReduceMean") || *n->domain || n->n_outputs != 1 || n->act.kind ||
        n->n_inputs < 1 || n->inputs[0] != in || kiln_attr_int(n, "keepdims", 1) != 1)
        return false;
    int64_t cnt = 0;
    const int64_t *axes = NULL;
    int64_t axis_in = 0;
    if (n->opset >= 18) {   /* axes became an input */
        if (n->n_inputs != 2 || n->inputs[1] < 0) return false;
        const struct kiln_value_info *ai = &g->values[n->inputs[1]];
        if (!ai->is_const || !ai->v.data || ai->v.dtype != KILN_DTYPE_INT64 ||
            kiln_value_numel(&ai->v) != 1)
            return false;
        axis_in = *(const int64_t *)ai->v.data;
        axes = &axis_in;
        cnt = 1;
    } else {
        if (n->n_inputs != 1) return false;
        axes = kiln_attr_ints(n, "axes", &cnt);
    }
    if (!axes || cnt != 1) return false;
    if (axes[0] == -1) return true;
    const struct kiln_value_info *xi = &g->values[x];
    return xi->has_shape && xi->v.rank >= 1 && axes[0] == xi->v.rank - 1;
}

/* The node that is the only reader of v (v read once, and not a graph output), or -1. */
static int32_t sole_reader(const struct kiln_graph *g, int32_t v, int32_t from) {
    int32_t r;
    if (v < 0 || g->values[v].n_consumers != 1 || kiln_graph_readers(g, v, from, &r, 1) != 1)
        return -1;
    return r;
}

/* Other input of a two-input node, given one of them. */
static int32_t other_input(const struct kiln_node *n, int32_t v) {
    return n->inputs[0] == v ? n->inputs[1] : n->inputs[1] == v ? n->inputs[0] : -1;
}

struct match {
    int32_t nodes[10], n_nodes;
    int32_t x, gamma, beta, last;
    float eps;
};

static bool match_at(const struct kiln_graph *g, int32_t i, struct match *mt) {
    const struct kiln_node *rm1 = &g->nodes[i];
    if (rm1->n_inputs < 1 || rm1->inputs[0] < 0) return false;
    int32_t x = rm1->inputs[0];
    if (!mean_last_axis(g, rm1, x, x) || rm1->outputs[0] < 0) return false;
    mt->n_nodes = 0;
    mt->nodes[mt->n_nodes++] = i;
    int32_t si = sole_reader(g, rm1->outputs[0], i + 1);
    if (si < 0) return false;
    const struct kiln_node *sub = &g->nodes[si];
    if (!is_op(sub, "Sub", 2) || sub->inputs[0] != x || sub->inputs[1] != rm1->outputs[0])
        return false;
    mt->nodes[mt->n_nodes++] = si;
    int32_t d = sub->outputs[0];
    /* d feeds the square and the Div, nothing else */
    int32_t rd[3];
    if (kiln_graph_readers(g, d, si + 1, rd, 3) != 2) return false;
    int32_t sq = -1, dv = -1;
    for (int k = 0; k < 2; k++) {
        const struct kiln_node *c = &g->nodes[rd[k]];
        float e;
        if (is_op(c, "Pow", 2) && c->inputs[0] == d && kiln_graph_scalar_f32(g, c->inputs[1], &e) && e == 2.0f)
            sq = rd[k];
        else if (is_op(c, "Mul", 2) && c->inputs[0] == d && c->inputs[1] == d)
            sq = rd[k];
        else if (is_op(c, "Div", 2) && c->inputs[0] == d && c->inputs[1] != d)
            dv = rd[k];
    }
    if (sq < 0 || dv < 0) return false;
    int32_t uses = g->nodes[sq].inputs[1] == d ? 3 : 2;   /* Mul(d, d) reads d twice */
    if (g->values[d].n_consumers != uses) return false;
    mt->nodes[mt->n_nodes++] = sq;
    int32_t ri = sole_reader(g, g->nodes[sq].outputs[0], sq + 1);
    if (ri < 0 || !mean_last_axis(g, &g->nodes[ri], g->nodes[sq].outputs[0], x)) return false;
    /* the second mean reduces d's last axis: d has x's shape */
    mt->nodes[mt->n_nodes++] = ri;
    int32_t ai = sole_reader(g, g->nodes[ri].outputs[0], ri + 1);
    if (ai < 0 || !is_op(&g->nodes[ai], "Add", 2) ||
        !kiln_graph_scalar_f32(g, other_input(&g->nodes[ai], g->nodes[ri].outputs[0]), &mt->eps) ||
        !(mt->eps >= 0.0f))
        return false;
    mt->nodes[mt->n_nodes++] = ai;
    int32_t qi = sole_reader(g, g->nodes[ai].outputs[0], ai + 1);
    if (qi < 0 || !is_op(&g->nodes[qi], "Sqrt", 1)) return false;
    mt->nodes[mt->n_nodes++] = qi;
    if (sole_reader(g, g->nodes[qi].outputs[0], qi + 1) != dv ||
        g->nodes[dv].inputs[1] != g->nodes[qi].outputs[0])
        return false;
    mt->nodes[mt->n_nodes++] = dv;
    int32_t mi = sole_reader(g, g->nodes[dv].outputs[0], dv + 1);
    if (mi < 0 || !is_op(&g->nodes[mi], "Mul", 2)) return false;
    mt->gamma = other_input(&g->nodes[mi], g->nodes[dv].outputs[0]);
    if (!vector_f32(g, mt->gamma)) return false;
    mt->nodes[mt->n_nodes++] = mi;
    mt->last = mi;
    mt->beta = -1;
    int32_t bi = sole_reader(g, g->nodes[mi].outputs[0], mi + 1);
    if (bi >= 0 && is_op(&g->nodes[bi], "Add", 2)) {
        int32_t b = other_input(&g->nodes[bi], g->nodes[mi].outputs[0]);
        if (vector_f32(g, b)) {
            mt->beta = b;
            mt->last = bi;
            mt->nodes[mt->n_nodes++] = bi;
        }
    }
    mt->x = x;
    return true;
}

static bool set_attrs(struct kiln_node *n, float eps) {
    struct kiln_attr *a = calloc(2, sizeof *a);
    if (!a) return false;
    a[0].name = strdup("axis");
    a[0].type = KILN_ATTR_INT;
    a[0].i = -1;
    a[1].name = strdup("epsilon");
    a[1].type = KILN_ATTR_FLOAT;
    a[1].f = eps;
    n->attrs = a;
    n->n_attrs = 2;
    return a[0].name && a[1].name;
}

kiln_status kiln_pass_fuse_layernorm(struct kiln_graph *g, struct kiln_pass_stats *st,
                                     kiln_error *err) {
    kiln_graph_recount(g);
    bool *dead = calloc((size_t)(g->n_nodes ? g->n_nodes : 1), sizeof *dead);
    if (!dead) return kiln_fail(err, KILN_ERR_NO_MEMORY, "fuse-layernorm");
    for (int32_t i = 0; i < g->n_nodes; i++) {
        if (dead[i]) continue;
        struct match mt;
        if (!match_at(g, i, &mt)) continue;
        bool any_dead = false;
        for (int32_t k = 0; k < mt.n_nodes; k++) any_dead |= dead[mt.nodes[k]];
        if (any_dead) continue;
        struct kiln_node *last = &g->nodes[mt.last];
        int64_t opset = last->opset > 17 ? last->opset : 17;
        const struct kiln_op_def *op = kiln_op_lookup("", "LayerNormalization", opset);
        if (!op) continue;
        int32_t n_in = mt.beta >= 0 ? 3 : 2;
        int32_t *ins = malloc(3 * sizeof *ins);
        char *type = strdup("LayerNormalization"), *dom = strdup("");
        if (!ins || !type || !dom) {
            free(ins);
            free(type);
            free(dom);
            free(dead);
            return kiln_fail(err, KILN_ERR_NO_MEMORY, "fuse-layernorm");
        }
        ins[0] = mt.x;
        ins[1] = mt.gamma;
        ins[2] = mt.beta;
        free(last->inputs);
        last->inputs = ins;
        last->n_inputs = n_in;
        free(last->op_type);
        last->op_type = type;
        free(last->domain);
        last->domain = dom;
        last->opset = opset;
        last->op = op;
        kiln_node_free_attrs(last);
        if (!set_attrs(last, mt.eps)) {
            free(dead);
            return kiln_fail(err, KILN_ERR_NO_MEMORY, "fuse-layernorm");
        }
        for (int32_t k = 0; k < mt.n_nodes; k++)
            if (mt.nodes[k] != mt.last) {
                kiln_node_detach(&g->nodes[mt.nodes[k]]);
                dead[mt.nodes[k]] = true;
            }
        st->rewrites++;
        kiln_graph_recount(g);
    }
    kiln_graph_compact(g, dead);
    free(dead);
    st->nodes_after = g->n_nodes;
    return KILN_OK;
}
