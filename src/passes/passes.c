/* passes.c — the pass pipeline and the graph-editing helpers passes share. */
#include "passes/passes.h"
#include "base/status.h"

#include <stdlib.h>
#include <string.h>

/* Order matters: folding first turns constant chains into constants that CSE
 * and the pattern passes can read; fuse-patterns and fuse-matmul-bias leave a
 * MatMul -> Gelu (say) for fuse-activation to take in; fuse-residual must run before
 * fuse-activation so that Conv -> Add -> Relu becomes act(conv + r), and
 * fuse-activation never sees an activation it could fuse too early.
 * fuse-attention runs before simplify-transpose and before anything that
 * could fold the scores' scale or mask into a MatMul; it reads Transposes
 * itself, and simplify-transpose then folds what is left (fuse-matmul-bias
 * before it takes only MatMuls with constant weights, never the scores). */
const struct kiln_pass kiln_default_passes[] = {
    {"fold-constants", kiln_pass_fold_constants},
    {"cse", kiln_pass_cse},
    {"fold-batchnorm", kiln_pass_fold_batchnorm},
    {"fold-conv-affine", kiln_pass_fold_conv_affine},
    {"fuse-layernorm", kiln_pass_fuse_layernorm},
    {"fuse-patterns", kiln_pass_fuse_patterns},
    {"fuse-matmul-bias", kiln_pass_fuse_matmul_bias},
    {"fuse-attention", kiln_pass_fuse_attention},
    {"simplify-transpose", kiln_pass_simplify_transpose},
    {"fuse-residual", kiln_pass_fuse_residual},
    {"fuse-activation", kiln_pass_fuse_activation},
    {"dce", kiln_pass_dce},
    {NULL, NULL},
};

void kiln_node_free_attrs(struct kiln_node *n) {
    for (int32_t a = 0; a < n->n_attrs; a++) {
        struct kiln_attr *at = &n->attrs[a];
        free(at->name);
        free(at->s);
        free(at->t.data);
        kiln_graph_free(at->g);
        free(at->floats);
        free(at->ints);
        if (at->strings)
            for (int64_t i = 0; i < at->n; i++) free(at->strings[i]);
        free(at->strings);
    }
    free(n->attrs);
    n->attrs = NULL;
    n->n_attrs = 0;
}

static void node_free(struct kiln_node *n) {
    free(n->name);
    free(n->op_type);
    free(n->domain);
    free(n->inputs);
    free(n->outputs);
    kiln_node_free_attrs(n);
}

void kiln_node_detach(struct kiln_node *n) {
    n->n_inputs = 0;
    n->n_outputs = 0;
}

int32_t kiln_graph_readers(const struct kiln_graph *g, int32_t v, int32_t from, int32_t *out,
                           int32_t max) {
    int32_t cnt = 0;
    for (int32_t i = from < 0 ? 0 : from; i < g->n_nodes; i++) {
        const struct kiln_node *n = &g->nodes[i];
        bool reads = false;
        for (int32_t j = 0; j < n->n_inputs && !reads; j++) reads = n->inputs[j] == v;
        if (!reads) continue;
        if (cnt < max) out[cnt] = i;
        cnt++;
    }
    return cnt;
}

bool kiln_node_has_subgraph(const struct kiln_node *n) {
    for (int32_t a = 0; a < n->n_attrs; a++)
        if (n->attrs[a].g || n->attrs[a].type == KILN_ATTR_GRAPH ||
            n->attrs[a].type == KILN_ATTR_GRAPHS)
            return true;
    return false;
}

bool kiln_graph_is_output(const struct kiln_graph *g, int32_t v) {
    for (int32_t i = 0; i < g->n_outputs; i++)
        if (g->outputs[i] == v) return true;
    return false;
}

const struct kiln_value *kiln_node_const_f32(const struct kiln_graph *g, const struct kiln_node *n,
                                             int32_t idx) {
    if (idx < 0 || idx >= n->n_inputs) return NULL;
    return kiln_graph_const_f32(g, n->inputs[idx]);
}

const struct kiln_value *kiln_graph_const_f32(const struct kiln_graph *g, int32_t v) {
    if (v < 0) return NULL;
    const struct kiln_value_info *vi = &g->values[v];
    if (!vi->is_const || vi->v.dtype != KILN_DTYPE_FLOAT || !vi->v.data) return NULL;
    return &vi->v;
}

bool kiln_graph_scalar_f32(const struct kiln_graph *g, int32_t v, float *out) {
    const struct kiln_value *c = kiln_graph_const_f32(g, v);
    if (!c || kiln_value_numel(c) != 1) return false;
    *out = *(const float *)c->data;
    return true;
}

void kiln_graph_compact(struct kiln_graph *g, const bool *dead_node) {
    int32_t w = 0;
    for (int32_t i = 0; i < g->n_nodes; i++) {
        if (dead_node[i]) {
            node_free(&g->nodes[i]);
            continue;
        }
        if (w != i) g->nodes[w] = g->nodes[i];
        w++;
    }
    g->n_nodes = w;
    kiln_graph_recount(g);
}

int32_t kiln_graph_add_const(struct kiln_graph *g, const char *name, struct kiln_value v) {
    int32_t id = kiln_graph_add_value(g, name);
    if (id < 0) return -1;
    g->values[id].v = v;
    g->values[id].is_const = true;
    g->values[id].has_shape = true;
    return id;
}

kiln_status kiln_passes_run(struct kiln_graph *g, kiln_error *err) {
    for (const struct kiln_pass *p = kiln_default_passes; p->name; p++) {
        struct kiln_pass_stats st = {.nodes_before = g->n_nodes};
        kiln_status s = p->run(g, &st, err);
        if (s) return kiln_fail_prefix(err, s, "pass %s", p->name);
    }
    return KILN_OK;
}
