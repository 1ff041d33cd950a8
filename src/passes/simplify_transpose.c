/* simplify_transpose.c — removes data movement that Transpose and Reshape
 * chains spell out but the math does not need (docs/passes.md):
 *
 *   Transpose(Transpose(x, p1), p2)  -> Transpose(x, c), c[k] = p1[p2[k]]
 *   Transpose(x, identity)           -> x
 *   Reshape(Reshape(x, s1), s2)      -> Reshape(x, s2)   (s2 constant, no 0 copy-dims)
 *   Reshape(x, s) with s = x's known static shape -> x
 *   MatMul(Transpose(a, swap last two), b) -> kiln.MatMul(a, b; transA=1)  (and for b)
 *
 * The last one only when every reader of the Transpose is a MatMul: the
 * kernel then reads the operand through swapped strides (oneDNN) and the copy
 * is gone. Transposes and Reshapes left without readers are freed by dce.
 * Perms must be written out (the default reversed perm needs a rank the pass
 * does not always know). Values that are graph outputs keep their producer:
 * their names are the model's interface. */
#include "passes/passes.h"
#include "base/status.h"
#include "ops/op.h"

#include <stdlib.h>
#include <string.h>

static bool is_op1(const struct kiln_node *n, const char *op) {
    return !strcmp(n->op_type, op) && !*n->domain && n->n_outputs == 1 && n->outputs[0] >= 0 &&
           !n->act.kind && !n->sum_input;
}

static const int64_t *perm_of(const struct kiln_node *n, int64_t *cnt) {
    if (!is_op1(n, "Transpose") || n->n_inputs != 1 || n->inputs[0] < 0) return NULL;
    const int64_t *p = kiln_attr_ints(n, "perm", cnt);
    if (!p || *cnt < 1 || *cnt > KILN_MAX_RANK) return NULL;
    bool seen[KILN_MAX_RANK] = {false};
    for (int64_t i = 0; i < *cnt; i++) {
        if (p[i] < 0 || p[i] >= *cnt || seen[p[i]]) return NULL;
        seen[p[i]] = true;
    }
    return p;
}

/* Points every reader of `from` (node inputs and subgraph outer references)
 * at `to`. */
static void replace_uses(struct kiln_graph *g, int32_t from, int32_t to) {
    for (int32_t i = 0; i < g->n_nodes; i++) {
        struct kiln_node *n = &g->nodes[i];
        for (int32_t j = 0; j < n->n_inputs; j++)
            if (n->inputs[j] == from) n->inputs[j] = to;
        for (int32_t a = 0; a < n->n_attrs; a++) {
            struct kiln_graph *sub = n->attrs[a].g;
            for (int32_t v = 0; sub && v < sub->n_values; v++)
                if (sub->values[v].outer == from) sub->values[v].outer = to;
        }
    }
}

/* The int64 constant shape operand of a Reshape, or NULL. */
static const struct kiln_value *const_shape(const struct kiln_graph *g, const struct kiln_node *n) {
    if (!is_op1(n, "Reshape") || n->n_inputs != 2 || n->inputs[0] < 0 || n->inputs[1] < 0)
        return NULL;
    const struct kiln_value_info *vi = &g->values[n->inputs[1]];
    if (!vi->is_const || !vi->v.data || vi->v.dtype != KILN_DTYPE_INT64 || vi->v.rank != 1)
        return NULL;
    return &vi->v;
}

/* Reshape(x, s) that gives x's shape back: x has a declared static shape
 * (graph input or constant) and s spells it, entry by entry, with 0 (copy,
 * when allowzero is 0) or a single -1 standing for the dim in its place.
 * Declared shapes of other values are not checked at run time: not trusted. */
static bool reshape_is_identity(const struct kiln_graph *g, const struct kiln_node *n,
                                const struct kiln_value *s) {
    const struct kiln_value_info *xi = &g->values[n->inputs[0]];
    /* only graph inputs (the session enforces their declared dims) and constants */
    if (!(xi->is_input || xi->is_const) || !xi->has_shape || xi->non_tensor ||
        xi->v.rank != s->dims[0])
        return false;
    bool allowzero = kiln_attr_int(n, "allowzero", 0) != 0;
    const int64_t *sv = s->data;
    int minus = 0;
    for (int32_t i = 0; i < xi->v.rank; i++) {
        int64_t d = xi->v.dims[i];
        if (d < 0 || xi->dim_names[i]) return false;   /* symbolic */
        if (sv[i] == d && !(d == 0 && !allowzero)) continue;
        if (sv[i] == 0 && !allowzero) continue;
        if (sv[i] == -1 && d > 0 && ++minus == 1) continue;
        return false;
    }
    return true;
}

/* Sets (or adds) an int attribute. */
static bool set_int_attr(struct kiln_node *n, const char *name, int64_t v) {
    for (int32_t a = 0; a < n->n_attrs; a++)
        if (!strcmp(n->attrs[a].name, name)) {
            n->attrs[a].type = KILN_ATTR_INT;
            n->attrs[a].i = v;
            return true;
        }
    struct kiln_attr *na = realloc(n->attrs, (size_t)(n->n_attrs + 1) * sizeof *na);
    if (!na) return false;
    n->attrs = na;
    memset(&na[n->n_attrs], 0, sizeof na[0]);
    if (!(na[n->n_attrs].name = strdup(name))) return false;
    na[n->n_attrs].type = KILN_ATTR_INT;
    na[n->n_attrs].i = v;
    n->n_attrs++;
    return true;
}

static bool is_matmul(const struct kiln_node *n) {
    return !strcmp(n->op_type, "MatMul") && (!*n->domain || !strcmp(n->domain, "kiln")) &&
           n->n_inputs == 2 && n->n_outputs == 1;
}

/* Folds Transpose t (swapping its last two dims) into the MatMuls that read
 * it, when they are its only readers. Returns false on OOM. */
static bool fold_into_matmuls(struct kiln_graph *g, int32_t ti, bool *changed) {
    const struct kiln_node *t = &g->nodes[ti];
    int32_t v = t->outputs[0], x = t->inputs[0];
    if (kiln_graph_is_output(g, v) || g->values[v].n_consumers < 1) return true;
    int32_t rd[16];
    int32_t nr = kiln_graph_readers(g, v, ti + 1, rd, 16);
    if (nr < 1 || nr > 16) return true;
    int32_t slots = 0;
    for (int32_t k = 0; k < nr; k++) {
        const struct kiln_node *m = &g->nodes[rd[k]];
        if (!is_matmul(m)) return true;
        slots += (m->inputs[0] == v) + (m->inputs[1] == v);
    }
    if (slots != g->values[v].n_consumers) return true;   /* a subgraph reads it too */
    const struct kiln_op_def *op = kiln_op_lookup("kiln", "MatMul", 1);
    if (!op) return true;
    for (int32_t k = 0; k < nr; k++) {
        struct kiln_node *m = &g->nodes[rd[k]];
        if (*m->domain == 0) {
            char *d = strdup("kiln");
            if (!d) return false;
            free(m->domain);
            m->domain = d;
            m->opset = 1;
            m->op = op;
        }
        static const char *const names[2] = {"transA", "transB"};
        for (int j = 0; j < 2; j++) {
            if (m->inputs[j] != v) continue;
            /* transposing a transposed operand gives it back */
            if (!set_int_attr(m, names[j], !kiln_attr_int(m, names[j], 0))) return false;
            m->inputs[j] = x;
        }
    }
    *changed = true;
    return true;
}

kiln_status kiln_pass_simplify_transpose(struct kiln_graph *g, struct kiln_pass_stats *st,
                                         kiln_error *err) {
    kiln_graph_recount(g);
    bool *dead = calloc((size_t)(g->n_nodes ? g->n_nodes : 1), sizeof *dead);
    if (!dead) return kiln_fail(err, KILN_ERR_NO_MEMORY, "simplify-transpose");
    for (int32_t i = 0; i < g->n_nodes; i++) {
        struct kiln_node *n = &g->nodes[i];
        if (dead[i]) continue;
        int64_t cnt;
        const int64_t *p2 = perm_of(n, &cnt);
        if (p2) {
            int32_t pi = g->values[n->inputs[0]].producer;
            int64_t c1;
            const int64_t *p1 = pi >= 0 ? perm_of(&g->nodes[pi], &c1) : NULL;
            if (p1 && c1 == cnt) {
                /* out[k] = inner[p2[k]] = x[p1[p2[k]]] */
                int64_t c[KILN_MAX_RANK];
                for (int64_t k = 0; k < cnt; k++) c[k] = p1[p2[k]];
                const struct kiln_attr *pa = kiln_attr_find(n, "perm");
                memcpy(pa->ints, c, (size_t)cnt * sizeof *c);
                n->inputs[0] = g->nodes[pi].inputs[0];
                st->rewrites++;
                kiln_graph_recount(g);
            }
            bool ident = true;
            for (int64_t k = 0; k < cnt; k++) ident &= p2[k] == k;
            int32_t out = n->outputs[0];
            if (ident && !kiln_graph_is_output(g, out)) {
                replace_uses(g, out, n->inputs[0]);
                kiln_node_detach(n);
                dead[i] = true;
                st->rewrites++;
                kiln_graph_recount(g);
                continue;
            }
            bool swap = cnt >= 2 && p2[cnt - 2] == cnt - 1 && p2[cnt - 1] == cnt - 2;
            for (int64_t k = 0; swap && k < cnt - 2; k++) swap = p2[k] == k;
            bool changed = false;
            if (swap && !fold_into_matmuls(g, i, &changed)) {
                free(dead);
                return kiln_fail(err, KILN_ERR_NO_MEMORY, "simplify-transpose");
            }
            if (changed) {
                st->rewrites++;
                kiln_graph_recount(g);
            }
            continue;
        }
        const struct kiln_value *s = const_shape(g, n);
        if (!s) continue;
        int32_t pi = g->values[n->inputs[0]].producer;
        if (pi >= 0 && is_op1(&g->nodes[pi], "Reshape") && g->nodes[pi].n_inputs == 2 &&
            g->nodes[pi].inputs[0] >= 0) {
            /* s's entries never refer to the inner result's dims: no 0 copies */
            bool zero = false;
            if (!kiln_attr_int(n, "allowzero", 0))
                for (int64_t k = 0; k < s->dims[0]; k++) zero |= ((const int64_t *)s->data)[k] == 0;
            if (!zero) {
                n->inputs[0] = g->nodes[pi].inputs[0];
                st->rewrites++;
                kiln_graph_recount(g);
            }
        }
        if (reshape_is_identity(g, n, s) && !kiln_graph_is_output(g, n->outputs[0])) {
            replace_uses(g, n->outputs[0], n->inputs[0]);
            kiln_node_detach(n);
            dead[i] = true;
            st->rewrites++;
            kiln_graph_recount(g);
        }
    }
    kiln_graph_compact(g, dead);
    free(dead);
    st->nodes_after = g->n_nodes;
    return KILN_OK;
}
