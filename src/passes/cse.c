/* cse.c — common subexpression elimination: two nodes with the same op
 * (type, domain, opset), the same attributes, the same fused activation and
 * residual, and the same inputs compute the same outputs, so the later one
 * is dropped and its readers read the earlier one's outputs. Exporters
 * repeat such nodes often (BERT from PyTorch calls Shape(x) three times per
 * layer).
 *
 * Inputs are the same when they are the same value, or two constants of the
 * same dtype, shape and bytes: exporters emit one Constant node per use of
 * 2.0 or of an axes list, and tied weights (an embedding reused as the output
 * projection, shared layers exported twice) arrive as separate initializers
 * with equal bytes. Readers of a duplicated constant are pointed at its first
 * copy; dce frees the rest, so the weights are stored, packed and mapped once.
 *
 * Left alone: nodes with graph attributes (If/Loop/Scan bodies are not
 * compared), unsupported ops and ops flagged KILN_OP_NO_FOLD (random ops
 * differ per node even with equal inputs), and nodes writing a graph output
 * (its name is part of the interface). No ONNX op kiln runs has side effects. */
#include "passes/passes.h"
#include "base/status.h"
#include "ops/op.h"

#include <stdlib.h>
#include <string.h>

#define CSE_CONST_HASH_BYTES 4096   /* constants hashed whole up to this size */

static uint64_t fnv(uint64_t h, const void *p, size_t n) {
    const uint8_t *b = p;
    for (size_t i = 0; i < n; i++) h = (h ^ b[i]) * 1099511628211ull;
    return h;
}

static bool same_value(const struct kiln_value *a, const struct kiln_value *b) {
    if (a->dtype != b->dtype || a->rank != b->rank || a->nbytes != b->nbytes) return false;
    for (int32_t r = 0; r < a->rank; r++)
        if (a->dims[r] != b->dims[r]) return false;
    if (!a->nbytes) return true;
    return a->data && b->data && !memcmp(a->data, b->data, a->nbytes);
}

static bool same_attr(const struct kiln_attr *a, const struct kiln_attr *b) {
    if (a->type != b->type || strcmp(a->name, b->name)) return false;
    switch (a->type) {
    case KILN_ATTR_FLOAT: return !memcmp(&a->f, &b->f, sizeof a->f);
    case KILN_ATTR_INT: return a->i == b->i;
    case KILN_ATTR_STRING:
        return a->s_len == b->s_len && (!a->s_len || !memcmp(a->s, b->s, a->s_len));
    case KILN_ATTR_TENSOR: return same_value(&a->t, &b->t);
    case KILN_ATTR_FLOATS:
        return a->n == b->n && (!a->n || !memcmp(a->floats, b->floats, (size_t)a->n * sizeof(float)));
    case KILN_ATTR_INTS:
        return a->n == b->n && (!a->n || !memcmp(a->ints, b->ints, (size_t)a->n * sizeof(int64_t)));
    case KILN_ATTR_STRINGS:
        if (a->n != b->n) return false;
        for (int64_t i = 0; i < a->n; i++)
            if (strcmp(a->strings[i], b->strings[i])) return false;
        return true;
    default: return false;   /* graphs, sparse tensors, type protos: never merged */
    }
}

static bool same_node(const struct kiln_node *a, const struct kiln_node *b) {
    if (strcmp(a->op_type, b->op_type) || strcmp(a->domain, b->domain) || a->opset != b->opset ||
        a->op != b->op || a->n_inputs != b->n_inputs || a->n_outputs != b->n_outputs ||
        a->n_attrs != b->n_attrs || a->sum_input != b->sum_input || a->act.kind != b->act.kind ||
        memcmp(&a->act.alpha, &b->act.alpha, sizeof(float)) ||
        memcmp(&a->act.beta, &b->act.beta, sizeof(float)))
        return false;
    for (int32_t j = 0; j < a->n_inputs; j++)
        if (a->inputs[j] != b->inputs[j]) return false;
    for (int32_t j = 0; j < a->n_outputs; j++)
        if ((a->outputs[j] < 0) != (b->outputs[j] < 0)) return false;
    for (int32_t k = 0; k < a->n_attrs; k++) {   /* attribute order may differ */
        bool found = false;
        for (int32_t m = 0; m < b->n_attrs && !found; m++)
            if (!strcmp(a->attrs[k].name, b->attrs[m].name)) {
                if (!same_attr(&a->attrs[k], &b->attrs[m])) return false;
                found = true;
            }
        if (!found) return false;
    }
    return true;
}

static bool eligible(const struct kiln_graph *g, const struct kiln_node *n) {
    if (!n->op || (n->op->flags & KILN_OP_NO_FOLD) || kiln_node_has_subgraph(n) || n->n_outputs < 1)
        return false;
    for (int32_t j = 0; j < n->n_outputs; j++)
        if (n->outputs[j] >= 0 && kiln_graph_is_output(g, n->outputs[j])) return false;
    return true;
}

static uint64_t node_hash(const struct kiln_node *n) {
    uint64_t h = 1469598103934665603ull;
    h = fnv(h, n->op_type, strlen(n->op_type) + 1);
    h = fnv(h, n->domain, strlen(n->domain) + 1);
    h = fnv(h, &n->n_inputs, sizeof n->n_inputs);
    h = fnv(h, n->inputs, (size_t)n->n_inputs * sizeof *n->inputs);
    return h;
}

/* Content hash of a constant: whole up to CSE_CONST_HASH_BYTES; of a larger
 * one, its head, its tail and 256 evenly spread 8-byte samples, so hashing
 * the weights of a big model costs nothing next to loading them. Equal hashes
 * are then compared in full (same_value). */
static uint64_t const_hash(const struct kiln_value *v) {
    uint64_t h = fnv(1469598103934665603ull, &v->dtype, sizeof v->dtype);
    h = fnv(h, v->dims, (size_t)v->rank * sizeof v->dims[0]);
    h = fnv(h, &v->nbytes, sizeof v->nbytes);
    if (!v->nbytes) return h;
    const uint8_t *p = v->data;
    if (v->nbytes <= CSE_CONST_HASH_BYTES) return fnv(h, p, v->nbytes);
    h = fnv(h, p, 512);
    h = fnv(h, p + v->nbytes - 512, 512);
    size_t step = (v->nbytes - 8) / 256;
    for (size_t k = 0; k < 256; k++) h = fnv(h, p + k * step, 8);
    return h;
}

/* Points readers of constants at the first constant with equal contents. */
static kiln_status canon_constants(struct kiln_graph *g, int32_t *canon, kiln_error *err) {
    int32_t n_small = 0;
    int32_t *small = malloc((size_t)(g->n_values ? g->n_values : 1) * sizeof *small);
    uint64_t *hash = malloc((size_t)(g->n_values ? g->n_values : 1) * sizeof *hash);
    if (!small || !hash) {
        free(small);
        free(hash);
        return kiln_fail(err, KILN_ERR_NO_MEMORY, "cse");
    }
    for (int32_t v = 0; v < g->n_values; v++) {
        canon[v] = v;
        const struct kiln_value_info *vi = &g->values[v];
        if (!vi->is_const || vi->outer >= 0 || (vi->v.nbytes && !vi->v.data)) continue;
        uint64_t h = const_hash(&vi->v);
        for (int32_t k = 0; k < n_small; k++)
            if (hash[k] == h && same_value(&g->values[small[k]].v, &vi->v)) {
                canon[v] = small[k];
                break;
            }
        if (canon[v] == v) {
            hash[n_small] = h;
            small[n_small++] = v;
        }
    }
    free(small);
    free(hash);
    for (int32_t i = 0; i < g->n_nodes; i++)
        for (int32_t j = 0; j < g->nodes[i].n_inputs; j++)
            if (g->nodes[i].inputs[j] >= 0) g->nodes[i].inputs[j] = canon[g->nodes[i].inputs[j]];
    return KILN_OK;
}

/* Readers of a value replaced by CSE, including subgraphs that name it. */
static void remap_subgraph_refs(struct kiln_node *n, const int32_t *map, int32_t n_values) {
    for (int32_t a = 0; a < n->n_attrs; a++) {
        struct kiln_graph *sub = n->attrs[a].g;
        for (int32_t v = 0; sub && v < sub->n_values; v++)
            if (sub->values[v].outer >= 0 && sub->values[v].outer < n_values)
                sub->values[v].outer = map[sub->values[v].outer];
    }
}

kiln_status kiln_pass_cse(struct kiln_graph *g, struct kiln_pass_stats *st, kiln_error *err) {
    kiln_graph_recount(g);
    size_t cap = 64;
    while (cap < (size_t)g->n_nodes * 2) cap *= 2;
    int32_t *map = malloc((size_t)(g->n_values ? g->n_values : 1) * sizeof *map);
    int32_t *table = malloc(cap * sizeof *table);
    uint64_t *hashes = malloc((size_t)(g->n_nodes ? g->n_nodes : 1) * sizeof *hashes);
    bool *dead = calloc((size_t)(g->n_nodes ? g->n_nodes : 1), sizeof *dead);
    kiln_status s = KILN_OK;
    if (!map || !table || !hashes || !dead) {
        s = kiln_fail(err, KILN_ERR_NO_MEMORY, "cse");
        goto done;
    }
    if ((s = canon_constants(g, map, err))) goto done;
    for (int32_t v = 0; v < g->n_values; v++) map[v] = v;
    for (size_t k = 0; k < cap; k++) table[k] = -1;
    for (int32_t i = 0; i < g->n_nodes; i++) {
        struct kiln_node *n = &g->nodes[i];
        /* nodes are in topological order: a reader's inputs are final by now */
        for (int32_t j = 0; j < n->n_inputs; j++)
            if (n->inputs[j] >= 0) n->inputs[j] = map[n->inputs[j]];
        remap_subgraph_refs(n, map, g->n_values);
        if (!eligible(g, n)) continue;
        uint64_t h = node_hash(n);
        hashes[i] = h;
        size_t slot = (size_t)h & (cap - 1);
        int32_t twin = -1;
        for (; table[slot] >= 0; slot = (slot + 1) & (cap - 1))
            if (hashes[table[slot]] == h && same_node(&g->nodes[table[slot]], n)) {
                twin = table[slot];
                break;
            }
        if (twin < 0) {
            table[slot] = i;
            continue;
        }
        for (int32_t j = 0; j < n->n_outputs; j++)
            if (n->outputs[j] >= 0) map[n->outputs[j]] = g->nodes[twin].outputs[j];
        kiln_node_detach(n);
        dead[i] = true;
        st->rewrites++;
    }
    kiln_graph_compact(g, dead);
done:
    free(map);
    free(table);
    free(hashes);
    free(dead);
    st->nodes_after = g->n_nodes;
    return s;
}
