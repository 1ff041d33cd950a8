/* fuse_attention.c — scaled dot-product attention as exporters spell it,
 *
 *   s = MatMul(Q, Kt)                       Q [..., Sq, D], Kt [..., D, Skv]
 *   s = Div(s, c) | Mul(s, c) | Mul(c, s)   (zero or more; c a float32 scalar)
 *   s = Add(s, mask) | Add(mask, s)         (optional)
 *   p = Softmax(s, axis=-1)
 *   o = MatMul(p, V)
 *   o = Transpose(o, perm)                  (optional)
 *
 * becomes one kiln.Attention node (src/ops/attention.c) that never writes the
 * score tensor. Q, Kt and V are traced back through Transposes (their perms
 * become the op's q_perm / kt_perm / v_perm: the kernel reads strided) and,
 * on the Q and K side, through scalar Mul/Div (folded into `scale`). Those
 * nodes are left for their other readers, if any, and dce frees the rest.
 *
 * Proof obligations (docs/passes.md):
 *  - s, the scaled and masked scores, p and (with an absorbed output
 *    Transpose) o have no reader outside the pattern and are no graph output;
 *  - at least one scale constant is float32, so every operand is float32
 *    (Mul, Div, Add and MatMul take one dtype);
 *  - the ranks of Q, Kt and V are known (from a Transpose perm, a Reshape's
 *    constant shape, or a declared graph input or constant) and within 2..4,
 *    so that the numpy-matmul batch broadcasting the op does is MatMul's;
 *  - Softmax normalizes the last axis only: axis -1, or rank - 1 when the
 *    scores' rank is known (before opset 13 the flattened tail at the last
 *    axis is that axis);
 *  - a scale constant has one element and rank <= 2 (never widens the
 *    scores); a scale on Q or K has rank <= 1, and the mask is any tensor
 *    (the op broadcasts it as Add does). */
#include "passes/passes.h"
#include "base/status.h"
#include "ops/op.h"

#include <stdlib.h>
#include <string.h>

#define FA_R 4

static bool is_op(const struct kiln_node *n, const char *op, int32_t n_in) {
    return !strcmp(n->op_type, op) && !*n->domain && n->n_inputs == n_in && n->n_outputs == 1 &&
           n->outputs[0] >= 0 && !n->act.kind && !n->sum_input;
}

/* MatMul or kiln.MatMul (transA/transB from simplify-transpose). */
static bool is_matmul(const struct kiln_node *n, int t[2]) {
    if (strcmp(n->op_type, "MatMul") || n->n_inputs != 2 || n->n_outputs != 1 ||
        n->outputs[0] < 0 || n->act.kind || n->sum_input || n->inputs[0] < 0 || n->inputs[1] < 0)
        return false;
    bool k = !strcmp(n->domain, "kiln");
    if (*n->domain && !k) return false;
    t[0] = k && kiln_attr_int(n, "transA", 0);
    t[1] = k && kiln_attr_int(n, "transB", 0);
    return true;
}

/* The node that reads v, when it is v's only use (and v is no graph output). */
static int32_t sole_reader(const struct kiln_graph *g, int32_t v, int32_t from) {
    int32_t r;
    if (v < 0 || g->values[v].n_consumers != 1 || kiln_graph_readers(g, v, from, &r, 1) != 1)
        return -1;
    return r;
}

/* A float32 constant with one element and rank <= max_rank. */
static bool scalar_f32(const struct kiln_graph *g, int32_t v, int32_t max_rank, float *out) {
    if (v < 0 || g->values[v].v.rank > max_rank) return false;
    return kiln_graph_scalar_f32(g, v, out);
}

/* Scale step: Div(x, c), Mul(x, c) or Mul(c, x). Sets *x and multiplies *scale. */
static bool scale_step(const struct kiln_graph *g, const struct kiln_node *n, int32_t max_rank,
                       int32_t *x, double *scale) {
    float c;
    if (is_op(n, "Div", 2) && scalar_f32(g, n->inputs[1], max_rank, &c) && c != 0.0f) {
        *x = n->inputs[0];
        *scale /= c;
        return *x >= 0;
    }
    if (!is_op(n, "Mul", 2)) return false;
    for (int j = 0; j < 2; j++)
        if (scalar_f32(g, n->inputs[1 - j], max_rank, &c)) {
            *x = n->inputs[j];
            *scale *= c;
            return *x >= 0;
        }
    return false;
}

/* Explicit valid perm of a Transpose of rank <= 4, or NULL. */
static const int64_t *perm_of(const struct kiln_node *n, int64_t *cnt) {
    if (!is_op(n, "Transpose", 1) || n->inputs[0] < 0) return NULL;
    const int64_t *p = kiln_attr_ints(n, "perm", cnt);
    if (!p || *cnt < 1 || *cnt > FA_R) return NULL;
    bool seen[FA_R] = {false};
    for (int64_t i = 0; i < *cnt; i++) {
        if (p[i] < 0 || p[i] >= *cnt || seen[p[i]]) return NULL;
        seen[p[i]] = true;
    }
    return p;
}

/* Number of entries of a Squeeze/Unsqueeze axes list (attribute before
 * opset 13, constant input from 13), or -1. */
static int64_t n_axes(const struct kiln_graph *g, const struct kiln_node *p) {
    if (p->opset < 13) {
        int64_t cnt;
        return kiln_attr_ints(p, "axes", &cnt) ? cnt : -1;
    }
    if (p->n_inputs != 2 || p->inputs[1] < 0) return -1;
    const struct kiln_value_info *ai = &g->values[p->inputs[1]];
    if (!ai->is_const || ai->v.rank != 1 || !kiln_dtype_is_int(ai->v.dtype)) return -1;
    return ai->v.dims[0];
}

/* The rank of v when the graph proves it, else -1: declared graph inputs
 * and constants, Transpose perms, Reshape with a constant shape, and Slice,
 * Squeeze and Unsqueeze (explicit axes) and Gather (constant indices) of a
 * value whose rank is known. */
static int32_t known_rank_d(const struct kiln_graph *g, int32_t v, int depth) {
    const struct kiln_value_info *vi = &g->values[v];
    if ((vi->is_input || vi->is_const) && vi->has_shape && !vi->non_tensor) return vi->v.rank;
    if (vi->producer < 0 || depth > 8) return -1;
    const struct kiln_node *p = &g->nodes[vi->producer];
    int64_t cnt;
    if (is_op(p, "Transpose", 1) && kiln_attr_ints(p, "perm", &cnt))
        return cnt >= 1 && cnt <= KILN_MAX_RANK ? (int32_t)cnt : -1;
    if (is_op(p, "Reshape", 2) && p->inputs[1] >= 0) {
        const struct kiln_value_info *si = &g->values[p->inputs[1]];
        if (si->is_const && si->v.rank == 1 && si->v.dtype == KILN_DTYPE_INT64)
            return (int32_t)si->v.dims[0];
        return -1;
    }
    if (is_op(p, "Gather", 2) && p->inputs[0] >= 0 && p->inputs[1] >= 0 &&
        g->values[p->inputs[1]].is_const) {   /* qkv[0]: rank r + rank(indices) - 1 */
        int32_t r = known_rank_d(g, p->inputs[0], depth + 1);
        int32_t ri = g->values[p->inputs[1]].v.rank;
        return r < 1 || r + ri - 1 > KILN_MAX_RANK ? -1 : r + ri - 1;
    }
    bool sl = !strcmp(p->op_type, "Slice"), sq = !strcmp(p->op_type, "Squeeze"),
         usq = !strcmp(p->op_type, "Unsqueeze");
    if (*p->domain || (!sl && !sq && !usq) || p->n_outputs != 1 || p->n_inputs < 1 ||
        p->inputs[0] < 0)
        return -1;
    int32_t r = known_rank_d(g, p->inputs[0], depth + 1);
    if (r < 0 || sl) return r;
    int64_t na = n_axes(g, p);
    if (na < 0) return -1;
    r = sq ? r - (int32_t)na : r + (int32_t)na;
    return r >= 0 && r <= KILN_MAX_RANK ? r : -1;
}

static int32_t known_rank(const struct kiln_graph *g, int32_t v) { return known_rank_d(g, v, 0); }

/* An operand read through Transposes (and, with scale != NULL, scalar
 * Mul/Div): the value to read, its perm (logical = Transpose(value, perm)),
 * and its rank. `swap` adds a last-two-dims swap on top (kiln.MatMul trans). */
struct operand {
    int32_t v, rank;
    int64_t perm[FA_R];
    bool    has_perm;
};

static bool trace(const struct kiln_graph *g, int32_t v, bool swap, double *scale,
                  struct operand *o) {
    int64_t cur[FA_R];
    int32_t rank = -1;
    bool has = false;
    if (swap) {
        rank = known_rank(g, v);
        if (rank < 2 || rank > FA_R) return false;
        for (int32_t i = 0; i < rank; i++) cur[i] = i;
        cur[rank - 2] = rank - 1;
        cur[rank - 1] = rank - 2;
        has = true;
    }
    for (int steps = 0; steps < 8; steps++) {
        int32_t pi = g->values[v].producer;
        if (pi < 0) break;
        const struct kiln_node *p = &g->nodes[pi];
        int64_t cnt;
        const int64_t *pp = perm_of(p, &cnt);
        if (pp) {
            if (has && cnt != rank) return false;
            if (!has) {
                rank = (int32_t)cnt;
                for (int32_t i = 0; i < rank; i++) cur[i] = i;
            }
            /* logical = T(T(u, pp), cur) = T(u, pp[cur[k]]) */
            int64_t c[FA_R];
            for (int32_t k = 0; k < rank; k++) c[k] = pp[cur[k]];
            memcpy(cur, c, sizeof c);
            has = true;
            v = p->inputs[0];
            continue;
        }
        int32_t x;
        if (scale && scale_step(g, p, 1, &x, scale)) {
            v = x;
            continue;
        }
        break;
    }
    if (!has) rank = known_rank(g, v);
    if (rank < 2 || rank > FA_R) return false;
    o->v = v;
    o->rank = rank;
    o->has_perm = false;
    for (int32_t i = 0; i < rank; i++) {
        o->perm[i] = has ? cur[i] : i;
        o->has_perm |= o->perm[i] != i;
    }
    return true;
}

struct match {
    int32_t dead[8], n_dead;       /* pattern nodes that go away */
    int32_t last;                  /* becomes the fused node */
    struct operand q, kt, v;
    int32_t mask;
    double  scale;
    bool    has_out_perm;
    int64_t out_perm[FA_R];
    int32_t out_rank;
};

static bool softmax_last_axis(const struct kiln_node *sm, int32_t scores_rank) {
    const struct kiln_attr *a = kiln_attr_find(sm, "axis");
    int64_t axis = a ? a->i : sm->opset >= 13 ? -1 : 1;
    if (axis == -1) return true;
    return scores_rank > 0 && axis == scores_rank - 1;
}

static bool match_at(const struct kiln_graph *g, int32_t si, struct match *mt) {
    const struct kiln_node *sm = &g->nodes[si];
    if (!is_op(sm, "Softmax", 1) || sm->inputs[0] < 0) return false;
    memset(mt, 0, sizeof *mt);
    mt->mask = -1;
    mt->scale = 1.0;
    bool any_scale = false;
    /* forward: p -> MatMul(p, V) */
    int t[2];
    int32_t pv = sole_reader(g, sm->outputs[0], si + 1);
    if (pv < 0 || !is_matmul(&g->nodes[pv], t) || t[0] || g->nodes[pv].inputs[0] != sm->outputs[0] ||
        g->nodes[pv].inputs[1] == sm->outputs[0])
        return false;
    if (!trace(g, g->nodes[pv].inputs[1], t[1], NULL, &mt->v)) return false;
    /* backward from the softmax input: Add(mask)? then scales, then MatMul(Q, Kt) */
    int32_t s = sm->inputs[0];
    int32_t pi = g->values[s].producer;
    if (pi < 0 || sole_reader(g, s, pi + 1) != si) return false;
    const struct kiln_node *p = &g->nodes[pi];
    if (is_op(p, "Add", 2) && p->inputs[0] >= 0 && p->inputs[1] >= 0 &&
        p->inputs[0] != p->inputs[1]) {
        /* the score side is the operand that reaches the product */
        for (int j = 0; j < 2 && mt->mask < 0; j++) {
            int32_t c = p->inputs[j], qi = g->values[c].producer;
            int tt[2];
            while (qi >= 0 && !is_matmul(&g->nodes[qi], tt)) {
                int32_t x;
                double dummy = 1.0;
                if (!scale_step(g, &g->nodes[qi], 2, &x, &dummy)) break;
                qi = g->values[x].producer;
            }
            if (qi >= 0 && is_matmul(&g->nodes[qi], tt)) {
                mt->mask = p->inputs[1 - j];
                s = c;
            }
        }
        if (mt->mask < 0) return false;
        mt->dead[mt->n_dead++] = pi;
        pi = g->values[s].producer;
        if (pi < 0 || sole_reader(g, s, pi + 1) != p->index) return false;
        p = &g->nodes[pi];
    }
    for (int steps = 0; steps < 4; steps++) {
        int32_t x;
        if (!scale_step(g, p, 2, &x, &mt->scale)) break;
        any_scale = true;
        mt->dead[mt->n_dead++] = pi;
        pi = g->values[x].producer;
        if (pi < 0 || sole_reader(g, x, pi + 1) != p->index) return false;
        p = &g->nodes[pi];
    }
    if (!is_matmul(p, t)) return false;
    mt->dead[mt->n_dead++] = pi;
    mt->dead[mt->n_dead++] = si;
    double qs = 1.0;
    if (!trace(g, p->inputs[0], t[0], &qs, &mt->q) || !trace(g, p->inputs[1], t[1], &qs, &mt->kt))
        return false;
    if (qs != 1.0) any_scale = true;
    mt->scale *= qs;
    if (!any_scale) return false;   /* no float32 constant proves the dtype */
    int32_t rank = mt->q.rank > mt->kt.rank ? mt->q.rank : mt->kt.rank;
    int32_t mrank = mt->mask >= 0 ? known_rank(g, mt->mask) : 0;
    int32_t srank = mrank < 0 ? -1 : mrank > rank ? mrank : rank;
    if (!softmax_last_axis(sm, srank)) return false;
    /* output Transpose, when the output rank is known */
    mt->last = pv;
    mt->out_rank = srank < 0 ? -1 : srank > mt->v.rank ? srank : mt->v.rank;
    int32_t ti = sole_reader(g, g->nodes[pv].outputs[0], pv + 1);
    int64_t cnt;
    const int64_t *op = ti >= 0 ? perm_of(&g->nodes[ti], &cnt) : NULL;
    if (op && mt->out_rank > 0 && cnt == mt->out_rank) {
        mt->dead[mt->n_dead++] = pv;
        mt->last = ti;
        mt->has_out_perm = true;
        memcpy(mt->out_perm, op, (size_t)cnt * sizeof *op);
    }
    return true;
}

static struct kiln_attr *add_attr(struct kiln_node *n, const char *name) {
    struct kiln_attr *na = realloc(n->attrs, (size_t)(n->n_attrs + 1) * sizeof *na);
    if (!na) return NULL;
    n->attrs = na;
    struct kiln_attr *a = &na[n->n_attrs];
    memset(a, 0, sizeof *a);
    if (!(a->name = strdup(name))) return NULL;
    n->n_attrs++;
    return a;
}

static bool add_ints(struct kiln_node *n, const char *name, const int64_t *v, int32_t cnt) {
    struct kiln_attr *a = add_attr(n, name);
    if (!a) return false;
    a->type = KILN_ATTR_INTS;
    if (!(a->ints = malloc((size_t)cnt * sizeof *a->ints))) return false;
    memcpy(a->ints, v, (size_t)cnt * sizeof *v);
    a->n = cnt;
    return true;
}

/* Rewrites the final node into kiln.Attention; false on OOM. */
static bool rewrite(struct kiln_node *last, const struct match *mt,
                    const struct kiln_op_def *op) {
    int32_t *ins = malloc(4 * sizeof *ins);
    char *type = strdup("Attention"), *dom = strdup("kiln");
    if (!ins || !type || !dom) {
        free(ins);
        free(type);
        free(dom);
        return false;
    }
    ins[0] = mt->q.v;
    ins[1] = mt->kt.v;
    ins[2] = mt->v.v;
    ins[3] = mt->mask;
    free(last->inputs);
    last->inputs = ins;
    last->n_inputs = mt->mask >= 0 ? 4 : 3;
    free(last->op_type);
    last->op_type = type;
    free(last->domain);
    last->domain = dom;
    last->opset = 1;
    last->op = op;
    kiln_node_free_attrs(last);
    struct kiln_attr *a = add_attr(last, "scale");
    if (!a) return false;
    a->type = KILN_ATTR_FLOAT;
    a->f = (float)mt->scale;
    if (mt->q.has_perm && !add_ints(last, "q_perm", mt->q.perm, mt->q.rank)) return false;
    if (mt->kt.has_perm && !add_ints(last, "kt_perm", mt->kt.perm, mt->kt.rank)) return false;
    if (mt->v.has_perm && !add_ints(last, "v_perm", mt->v.perm, mt->v.rank)) return false;
    if (mt->has_out_perm && !add_ints(last, "out_perm", mt->out_perm, mt->out_rank)) return false;
    return true;
}

kiln_status kiln_pass_fuse_attention(struct kiln_graph *g, struct kiln_pass_stats *st,
                                     kiln_error *err) {
    kiln_graph_recount(g);
    const struct kiln_op_def *op = kiln_op_lookup("kiln", "Attention", 1);
    bool *dead = calloc((size_t)(g->n_nodes ? g->n_nodes : 1), sizeof *dead);
    if (!dead) return kiln_fail(err, KILN_ERR_NO_MEMORY, "fuse-attention");
    for (int32_t i = 0; op && i < g->n_nodes; i++) {
        struct match mt;
        if (dead[i] || !match_at(g, i, &mt)) continue;
        bool any_dead = dead[mt.last];
        for (int32_t k = 0; k < mt.n_dead; k++) any_dead |= dead[mt.dead[k]];
        if (any_dead) continue;
        if (!rewrite(&g->nodes[mt.last], &mt, op)) {
            free(dead);
            return kiln_fail(err, KILN_ERR_NO_MEMORY, "fuse-attention");
        }
        for (int32_t k = 0; k < mt.n_dead; k++) {
            kiln_node_detach(&g->nodes[mt.dead[k]]);
            dead[mt.dead[k]] = true;
        }
        st->rewrites++;
        kiln_graph_recount(g);
    }
    kiln_graph_compact(g, dead);
    free(dead);
    st->nodes_after = g->n_nodes;
    return KILN_OK;
}
