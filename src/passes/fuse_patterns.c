/* fuse_patterns.c — activations that exporters spell out as elementwise
 * chains become one standard op each, so they run as one vectorized pass (and
 * fuse-activation can then fold them into a Conv/MatMul/Gemm as a oneDNN
 * post-op):
 *
 *   GELU, erf form   x * 0.5 * (1 + Erf(x / 1.41421))      -> Gelu(x)
 *                    (or Erf(x * 0.707107); the 0.5 multiply on x, on the gate
 *                    or on the product; Div by 2 for * 0.5)
 *   GELU, tanh form  0.5 x (1 + Tanh(0.797885 (x + 0.044715 x^3)))
 *                    (x^3 as Pow(x, 3), x * (x * x) or (x * x) * x)
 *                                                           -> Gelu(x, approximate="tanh")
 *   HardSwish        x * Clip(x + 3, 0, 6) / 6 (or * 0.16666, the scale
 *                    anywhere in the product), x * HardSigmoid(x, 1/6, 0.5)
 *                                                           -> HardSwish(x)
 *   SiLU / Swish     x * Sigmoid(x), x * Sigmoid(x * a)    -> Swish(x, alpha=a)
 *
 * Every constant must be a float32 constant with one element whose rank is
 * no more than x's is known to be (so it cannot broadcast the result to a
 * bigger shape), within 1e-4 relative of the exact value (exporters print
 * 0.7071, 1.4142 or 0.16666). Every intermediate must have exactly one reader
 * (and not be a graph output), and Add/Mul may take their operands in either
 * order. Anything else is left as it was.
 *
 * Also here, fuse-matmul-bias: Add(MatMul(A, W), b) (either order) with W a
 * float32 constant [K, N] and b a float32 constant of N values along its last
 * dim (other dims 1, rank within the product's) becomes MatMul(A, W, b) with
 * node->sum_input = 2: oneDNN adds the bias in the matmul, and a following
 * activation (the GELU above) fuses too. */
#include "passes/passes.h"
#include "base/status.h"
#include "ops/op.h"

#include <math.h>
#include <stdlib.h>
#include <string.h>

/* ---- small matchers --------------------------------------------------- */

static bool is_op(const struct kiln_node *n, const char *op, int32_t n_in) {
    return !strcmp(n->op_type, op) && !*n->domain && n->n_inputs == n_in && n->n_outputs == 1 &&
           n->outputs[0] >= 0 && !n->act.kind && !n->sum_input;
}

/* The node producing v, or -1 (constant, input, absent). */
static int32_t producer(const struct kiln_graph *g, int32_t v) {
    return v < 0 || g->values[v].is_const ? -1 : g->values[v].producer;
}

/* The only node reading v (read once, by one node, not a graph output), or -1. */
static int32_t sole_reader(const struct kiln_graph *g, int32_t v) {
    int32_t r;
    if (v < 0 || g->values[v].n_consumers != 1 || kiln_graph_readers(g, v, 0, &r, 1) != 1)
        return -1;
    return r;
}

/* The producer of v when v's only reader is node `reader`, else -1. */
static int32_t private_producer(const struct kiln_graph *g, int32_t v, int32_t reader) {
    int32_t p = producer(g, v);
    return p >= 0 && sole_reader(g, v) == reader ? p : -1;
}

static int32_t other_input(const struct kiln_node *n, int32_t v) {
    return n->inputs[0] == v ? n->inputs[1] : n->inputs[1] == v ? n->inputs[0] : -1;
}

static bool in_list(const char *op, const char *const *list) {
    for (; *list; list++)
        if (!strcmp(op, *list)) return true;
    return false;
}

/* A lower bound on v's rank, from what is certain: constants, declared graph
 * inputs (checked when fed), and what each producer's op guarantees. */
static int32_t min_rank(const struct kiln_graph *g, int32_t v, int depth) {
    static const char *const same[] = {"Relu", "Sigmoid", "Tanh", "Erf", "Clip", "HardSigmoid",
                                       "HardSwish", "Gelu", "Swish", "LeakyRelu", "Neg", "Sqrt",
                                       "Exp", "Identity", "Softmax", "LayerNormalization",
                                       "BatchNormalization", NULL};
    static const char *const bcast[] = {"Add", "Sub", "Mul", "Div", "Pow", NULL};
    if (v < 0) return 0;
    const struct kiln_value_info *vi = &g->values[v];
    if (vi->is_const) return vi->v.rank;
    if (vi->is_input && vi->has_shape && !vi->non_tensor) return vi->v.rank;
    int32_t p = vi->producer;
    if (p < 0 || depth > 8) return 0;
    const struct kiln_node *n = &g->nodes[p];
    if (*n->domain || n->n_inputs < 1 || n->outputs[0] != v) return 0;
    if (!strcmp(n->op_type, "Conv") || !strcmp(n->op_type, "ConvTranspose")) return 3;
    if (!strcmp(n->op_type, "Gemm")) return 2;
    if (!strcmp(n->op_type, "MatMul") && n->n_inputs >= 2) {
        /* numpy matmul drops at most one dim of the longer operand */
        int32_t a = min_rank(g, n->inputs[0], depth + 1), b = min_rank(g, n->inputs[1], depth + 1);
        int32_t m = (a > b ? a : b) - 1;
        return m > 0 ? m : 0;
    }
    if (in_list(n->op_type, same)) return min_rank(g, n->inputs[0], depth + 1);
    if (in_list(n->op_type, bcast)) {
        int32_t m = 0;
        for (int32_t j = 0; j < n->n_inputs; j++) {
            int32_t r = min_rank(g, n->inputs[j], depth + 1);
            if (r > m) m = r;
        }
        return m;
    }
    return 0;
}

/* want within 1e-4 relative (exactly 0 for 0) */
static bool near(float v, double want) {
    if (want == 0.0) return v == 0.0f;
    return fabs((double)v - want) <= 1e-4 * fabs(want);
}

/* v is a one-element float32 constant near `want` that broadcasts into x's
 * shape without growing it. */
static bool const_near(const struct kiln_graph *g, int32_t v, double want, int32_t x) {
    float c;
    if (!kiln_graph_scalar_f32(g, v, &c) || !near(c, want)) return false;
    int32_t rank = g->values[v].v.rank;
    return rank == 0 || rank <= min_rank(g, x, 0);
}

/* ---- the patterns ----------------------------------------------------- */

struct match {
    int32_t nodes[12], n_nodes;
    int32_t x, last;
    float alpha;      /* Swish's alpha (x * Sigmoid(alpha * x)) */
};

static void take(struct match *m, int32_t i) {
    if (m->n_nodes < (int32_t)(sizeof m->nodes / sizeof m->nodes[0])) m->nodes[m->n_nodes++] = i;
}

/* n scales v by s: Mul(v, s), Mul(s, v), or Div(v, 1/s). */
static bool scales(const struct kiln_graph *g, const struct kiln_node *n, int32_t v, double s,
                   int32_t x) {
    if (is_op(n, "Mul", 2)) {
        int32_t o = other_input(n, v);
        return o >= 0 && o != v && const_near(g, o, s, x);
    }
    return is_op(n, "Div", 2) && n->inputs[0] == v && const_near(g, n->inputs[1], 1.0 / s, x);
}

/* The end of a gated activation: `gate` (read only here) times x times s, as
 *   Mul(x, gate) * s,   Mul(x * s, gate),   Mul(x, gate * s)
 * with either operand order and Div by 1/s for * s. s = 0 means no scale:
 * just Mul(x, gate). Adds the nodes to m and sets m->last. */
static bool gated_tail(const struct kiln_graph *g, int32_t gate, int32_t x, double s,
                       struct match *m) {
    int32_t r = sole_reader(g, gate);
    if (r < 0) return false;
    const struct kiln_node *rn = &g->nodes[r];
    if (s != 0.0 && scales(g, rn, gate, s, x)) {   /* Mul(x, gate * s) */
        int32_t r2 = sole_reader(g, rn->outputs[0]);
        if (r2 < 0 || !is_op(&g->nodes[r2], "Mul", 2) ||
            other_input(&g->nodes[r2], rn->outputs[0]) != x)
            return false;
        take(m, r);
        take(m, r2);
        m->last = r2;
        return true;
    }
    if (!is_op(rn, "Mul", 2)) return false;
    int32_t o = other_input(rn, gate);
    if (o < 0 || o == gate) return false;
    if (o == x) {
        take(m, r);
        m->last = r;
        if (s == 0.0) return true;
        int32_t r2 = sole_reader(g, rn->outputs[0]);   /* Mul(x, gate) * s */
        if (r2 < 0 || !scales(g, &g->nodes[r2], rn->outputs[0], s, x)) return false;
        take(m, r2);
        m->last = r2;
        return true;
    }
    if (s == 0.0) return false;
    int32_t q = private_producer(g, o, r);   /* Mul(x * s, gate) */
    if (q < 0 || !scales(g, &g->nodes[q], x, s, x)) return false;
    take(m, q);
    take(m, r);
    m->last = r;
    return true;
}

/* 1 + v, v read only by that Add: returns the Add's index or -1. */
static int32_t plus_one(const struct kiln_graph *g, int32_t v, int32_t x) {
    int32_t a = sole_reader(g, v);
    if (a < 0 || !is_op(&g->nodes[a], "Add", 2)) return -1;
    int32_t o = other_input(&g->nodes[a], v);
    return o >= 0 && o != v && const_near(g, o, 1.0, x) ? a : -1;
}

/* Erf(x / sqrt 2 | x * (1 / sqrt 2)) -> 1 + . -> gated tail with 0.5 */
static bool match_gelu_erf(const struct kiln_graph *g, int32_t i, struct match *m) {
    const struct kiln_node *e = &g->nodes[i];
    if (!is_op(e, "Erf", 1)) return false;
    int32_t t = private_producer(g, e->inputs[0], i);
    if (t < 0) return false;
    const struct kiln_node *tn = &g->nodes[t];
    int32_t x = -1;
    if (is_op(tn, "Div", 2) && const_near(g, tn->inputs[1], 1.4142135623730951, tn->inputs[0]))
        x = tn->inputs[0];
    for (int k = 0; k < 2 && x < 0 && is_op(tn, "Mul", 2); k++)
        if (const_near(g, tn->inputs[1 - k], 0.7071067811865476, tn->inputs[k])) x = tn->inputs[k];
    if (x < 0 || g->values[x].is_const) return false;
    int32_t a = plus_one(g, e->outputs[0], x);
    if (a < 0) return false;
    m->n_nodes = 0;
    take(m, t);
    take(m, i);
    take(m, a);
    m->x = x;
    return gated_tail(g, g->nodes[a].outputs[0], x, 0.5, m);
}

/* x^3, read only by node `reader`: Pow(x, 3), Mul(x, x * x) or Mul(x * x, x). */
static bool cube_of(const struct kiln_graph *g, int32_t v, int32_t x, int32_t reader,
                    struct match *m) {
    int32_t p = private_producer(g, v, reader);
    if (p < 0) return false;
    const struct kiln_node *pn = &g->nodes[p];
    if (is_op(pn, "Pow", 2) && pn->inputs[0] == x && const_near(g, pn->inputs[1], 3.0, x)) {
        take(m, p);
        return true;
    }
    if (!is_op(pn, "Mul", 2)) return false;
    int32_t sq = other_input(pn, x);
    if (sq < 0 || sq == x) return false;
    int32_t s = private_producer(g, sq, p);
    if (s < 0 || !is_op(&g->nodes[s], "Mul", 2) || g->nodes[s].inputs[0] != x ||
        g->nodes[s].inputs[1] != x)
        return false;
    take(m, s);
    take(m, p);
    return true;
}

/* Tanh(0.797885 * (x + 0.044715 * x^3)) -> 1 + . -> gated tail with 0.5 */
static bool match_gelu_tanh(const struct kiln_graph *g, int32_t i, struct match *m) {
    const struct kiln_node *th = &g->nodes[i];
    if (!is_op(th, "Tanh", 1)) return false;
    int32_t u = private_producer(g, th->inputs[0], i);
    if (u < 0 || !is_op(&g->nodes[u], "Mul", 2)) return false;
    const struct kiln_node *un = &g->nodes[u];
    for (int k = 0; k < 2; k++) {   /* which Mul operand is the sum */
        int32_t v = un->inputs[k];
        int32_t ad = private_producer(g, v, u);
        if (ad < 0 || !is_op(&g->nodes[ad], "Add", 2)) continue;
        const struct kiln_node *an = &g->nodes[ad];
        for (int j = 0; j < 2; j++) {   /* which Add operand is x */
            int32_t x = an->inputs[j], w = an->inputs[1 - j];
            if (x < 0 || x == w || g->values[x].is_const ||
                !const_near(g, un->inputs[1 - k], 0.7978845608028654, x))
                continue;
            int32_t c = private_producer(g, w, ad);
            if (c < 0 || !is_op(&g->nodes[c], "Mul", 2)) continue;
            const struct kiln_node *cn = &g->nodes[c];
            for (int q = 0; q < 2; q++) {   /* 0.044715 * x^3 */
                m->n_nodes = 0;
                if (!const_near(g, cn->inputs[1 - q], 0.044715, x) ||
                    !cube_of(g, cn->inputs[q], x, c, m))
                    continue;
                take(m, c);
                take(m, ad);
                take(m, u);
                take(m, i);
                int32_t a = plus_one(g, th->outputs[0], x);
                if (a < 0) return false;
                take(m, a);
                m->x = x;
                return gated_tail(g, g->nodes[a].outputs[0], x, 0.5, m);
            }
        }
    }
    return false;
}

/* The float bound of a Clip (attribute before opset 11, constant input after). */
static bool clip_bound(const struct kiln_graph *g, const struct kiln_node *c, int idx,
                       const char *attr, double want) {
    if (c->opset < 11) {
        const struct kiln_attr *a = kiln_attr_find(c, attr);
        return a && a->type == KILN_ATTR_FLOAT && near(a->f, want);
    }
    float v;
    return idx < c->n_inputs && kiln_graph_scalar_f32(g, c->inputs[idx], &v) && near(v, want);
}

/* Clip(x + 3, 0, 6) -> gated tail with 1/6; or x * HardSigmoid(x, 1/6, 0.5) */
static bool match_hard_swish(const struct kiln_graph *g, int32_t i, struct match *m) {
    const struct kiln_node *c = &g->nodes[i];
    m->n_nodes = 0;
    if (is_op(c, "HardSigmoid", 1)) {
        int32_t x = c->inputs[0];
        const struct kiln_attr *al = kiln_attr_find(c, "alpha"), *be = kiln_attr_find(c, "beta");
        /* absent attributes mean 0.2 and 0.5: not HardSwish's slope */
        if (x < 0 || g->values[x].is_const || !al || al->type != KILN_ATTR_FLOAT ||
            !near(al->f, 1.0 / 6.0) || !near(be && be->type == KILN_ATTR_FLOAT ? be->f : 0.5f, 0.5))
            return false;
        take(m, i);
        m->x = x;
        return gated_tail(g, c->outputs[0], x, 0.0, m);
    }
    if (strcmp(c->op_type, "Clip") || *c->domain || c->n_outputs != 1 || c->n_inputs < 1 ||
        c->act.kind || c->outputs[0] < 0)
        return false;
    if (c->opset >= 11 ? c->n_inputs != 3 : c->n_inputs != 1) return false;
    if (!clip_bound(g, c, 1, "min", 0.0) || !clip_bound(g, c, 2, "max", 6.0)) return false;
    int32_t a = private_producer(g, c->inputs[0], i);
    if (a < 0 || !is_op(&g->nodes[a], "Add", 2)) return false;
    const struct kiln_node *an = &g->nodes[a];
    for (int k = 0; k < 2; k++) {
        int32_t x = an->inputs[k];
        if (x < 0 || g->values[x].is_const || !const_near(g, an->inputs[1 - k], 3.0, x)) continue;
        m->n_nodes = 0;
        take(m, a);
        take(m, i);
        m->x = x;
        return gated_tail(g, c->outputs[0], x, 1.0 / 6.0, m);
    }
    return false;
}

/* x * Sigmoid(x), or x * Sigmoid(x * alpha) (Paddle's swish with beta) */
static bool match_silu(const struct kiln_graph *g, int32_t i, struct match *m) {
    const struct kiln_node *s = &g->nodes[i];
    if (!is_op(s, "Sigmoid", 1) || s->inputs[0] < 0 || g->values[s->inputs[0]].is_const)
        return false;
    m->n_nodes = 0;
    m->x = s->inputs[0];
    m->alpha = 1.0f;
    int32_t p = private_producer(g, s->inputs[0], i);
    if (p >= 0 && is_op(&g->nodes[p], "Mul", 2)) {
        const struct kiln_node *pn = &g->nodes[p];
        for (int k = 0; k < 2; k++) {
            int32_t x = pn->inputs[k], c = pn->inputs[1 - k];
            const struct kiln_value_info *ci = c >= 0 ? &g->values[c] : NULL;
            if (x < 0 || g->values[x].is_const || !ci || !ci->is_const ||
                ci->v.dtype != KILN_DTYPE_FLOAT || !ci->v.data || kiln_value_numel(&ci->v) != 1 ||
                !isfinite(*(const float *)ci->v.data) ||
                !(ci->v.rank == 0 || ci->v.rank <= min_rank(g, x, 0)))
                continue;
            struct match t = {.n_nodes = 0, .x = x, .last = -1,
                              .alpha = *(const float *)ci->v.data};
            take(&t, p);
            take(&t, i);
            if (gated_tail(g, s->outputs[0], x, 0.0, &t)) {
                *m = t;
                return true;
            }
        }
    }
    take(m, i);
    return gated_tail(g, s->outputs[0], m->x, 0.0, m);
}

/* ---- rewriting -------------------------------------------------------- */

/* Turns node n into op(x) at opset `opset`, with one attribute when attr is
 * given: a string when val is, else the float f. Returns false on allocation
 * failure. */
static bool become(struct kiln_node *n, const struct kiln_op_def *op, const char *type,
                   int64_t opset, int32_t x, const char *attr, const char *val, float f) {
    int32_t *ins = malloc(sizeof *ins);
    char *t = strdup(type), *dom = strdup("");
    struct kiln_attr *a = attr ? calloc(1, sizeof *a) : NULL;
    char *an = attr ? strdup(attr) : NULL, *av = val ? strdup(val) : NULL;
    if (!ins || !t || !dom || (attr && (!a || !an)) || (val && !av)) {
        free(ins);
        free(t);
        free(dom);
        free(a);
        free(an);
        free(av);
        return false;
    }
    ins[0] = x;
    free(n->inputs);
    n->inputs = ins;
    n->n_inputs = 1;
    free(n->op_type);
    n->op_type = t;
    free(n->domain);
    n->domain = dom;
    n->opset = opset;
    n->op = op;
    kiln_node_free_attrs(n);
    if (attr) {
        a->name = an;
        if (av) {
            a->type = KILN_ATTR_STRING;
            a->s = av;
            a->s_len = strlen(av);
        } else {
            a->type = KILN_ATTR_FLOAT;
            a->f = f;
        }
        n->attrs = a;
        n->n_attrs = 1;
    }
    return true;
}

kiln_status kiln_pass_fuse_patterns(struct kiln_graph *g, struct kiln_pass_stats *st,
                                    kiln_error *err) {
    static const struct {
        bool (*match)(const struct kiln_graph *, int32_t, struct match *);
        const char *op, *attr, *val;
        int64_t since;
    } pats[] = {
        {match_gelu_erf, "Gelu", NULL, NULL, 20},
        {match_gelu_tanh, "Gelu", "approximate", "tanh", 20},
        {match_hard_swish, "HardSwish", NULL, NULL, 14},
        {match_silu, "Swish", NULL, NULL, 24},
    };
    kiln_graph_recount(g);
    bool *dead = calloc((size_t)(g->n_nodes ? g->n_nodes : 1), sizeof *dead);
    if (!dead) return kiln_fail(err, KILN_ERR_NO_MEMORY, "fuse-patterns");
    for (int32_t i = 0; i < g->n_nodes; i++) {
        if (dead[i]) continue;
        for (size_t p = 0; p < sizeof pats / sizeof pats[0]; p++) {
            struct match m = {.n_nodes = 0, .x = -1, .last = -1, .alpha = 1.0f};
            if (!pats[p].match(g, i, &m) || m.last < 0) continue;
            bool any_dead = false;
            for (int32_t k = 0; k < m.n_nodes; k++) any_dead |= dead[m.nodes[k]];
            if (any_dead) continue;
            struct kiln_node *last = &g->nodes[m.last];
            int64_t opset = last->opset > pats[p].since ? last->opset : pats[p].since;
            const struct kiln_op_def *op = kiln_op_lookup("", pats[p].op, opset);
            if (!op) continue;
            /* Swish gets alpha only when it is not the default 1 */
            bool swish_alpha = pats[p].match == match_silu && m.alpha != 1.0f;
            if (!become(last, op, pats[p].op, opset, m.x, swish_alpha ? "alpha" : pats[p].attr,
                        pats[p].val, m.alpha)) {
                free(dead);
                return kiln_fail(err, KILN_ERR_NO_MEMORY, "fuse-patterns");
            }
            /* the last node reads only x, which is produced before every node of the
             * pattern: it stays where it is, the others go */
            for (int32_t k = 0; k < m.n_nodes; k++)
                if (m.nodes[k] != m.last) {
                    kiln_node_detach(&g->nodes[m.nodes[k]]);
                    dead[m.nodes[k]] = true;
                }
            st->rewrites++;
            kiln_graph_recount(g);
            break;
        }
    }
    kiln_graph_compact(g, dead);
    free(dead);
    st->nodes_after = g->n_nodes;
    return KILN_OK;
}

/* ---- fuse-matmul-bias -------------------------------------------------- */

/* b: float32 constant with N values along its last dim, other dims 1, rank
 * within the product's (so MatMul + b has the product's shape). */
static bool bias_vector(const struct kiln_graph *g, int32_t b, int64_t N, int32_t out) {
    const struct kiln_value *c = kiln_graph_const_f32(g, b);
    if (!c || c->rank < 1 || c->dims[c->rank - 1] != N) return false;
    for (int32_t i = 0; i + 1 < c->rank; i++)
        if (c->dims[i] != 1) return false;
    return c->rank == 1 || c->rank <= min_rank(g, out, 0);
}

kiln_status kiln_pass_fuse_matmul_bias(struct kiln_graph *g, struct kiln_pass_stats *st,
                                       kiln_error *err) {
    kiln_graph_recount(g);
    bool *dead = calloc((size_t)(g->n_nodes ? g->n_nodes : 1), sizeof *dead);
    if (!dead) return kiln_fail(err, KILN_ERR_NO_MEMORY, "fuse-matmul-bias");
    for (int32_t i = 0; i < g->n_nodes; i++) {
        struct kiln_node *a = &g->nodes[i];
        if (!is_op(a, "Add", 2) || a->opset < 7 || a->inputs[0] < 0 || a->inputs[1] < 0) continue;
        for (int k = 0; k < 2; k++) {
            int32_t mv = a->inputs[k], b = a->inputs[1 - k];
            int32_t pi = producer(g, mv);
            if (pi < 0 || dead[pi] || sole_reader(g, mv) != i) continue;
            struct kiln_node *mm = &g->nodes[pi];
            if (!is_op(mm, "MatMul", 2) || mm->inputs[0] < 0 || kiln_node_has_subgraph(mm))
                continue;
            const struct kiln_value *w = kiln_node_const_f32(g, mm, 1);
            if (!w || w->rank != 2 || !bias_vector(g, b, w->dims[1], mv)) continue;
            int32_t *ni = realloc(mm->inputs, 3 * sizeof *ni);
            if (!ni) {
                free(dead);
                return kiln_fail(err, KILN_ERR_NO_MEMORY, "fuse-matmul-bias");
            }
            mm->inputs = ni;
            ni[2] = b;
            mm->n_inputs = 3;
            mm->sum_input = 2;
            /* the MatMul keeps its place: it is before the Add, so before the Add's readers */
            mm->outputs[0] = a->outputs[0];
            kiln_node_detach(a);
            dead[i] = true;
            st->rewrites++;
            kiln_graph_recount(g);
            break;
        }
    }
    kiln_graph_compact(g, dead);
    free(dead);
    st->nodes_after = g->n_nodes;
    return KILN_OK;
}
