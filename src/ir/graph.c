/* graph.c — IR construction, attribute access and value helpers. */
#include "ir/graph.h"
#include "base/status.h"

#include <stdio.h>
#include <stdlib.h>
#include <string.h>

const struct kiln_attr *kiln_attr_find(const struct kiln_node *n, const char *name) {
    if (!n) return NULL;
    for (int32_t i = 0; i < n->n_attrs; i++)
        if (strcmp(n->attrs[i].name, name) == 0) return &n->attrs[i];
    return NULL;
}

int64_t kiln_attr_int(const struct kiln_node *n, const char *name, int64_t def) {
    const struct kiln_attr *a = kiln_attr_find(n, name);
    if (!a) return def;
    if (a->type == KILN_ATTR_INT) return a->i;
    if (a->type == KILN_ATTR_FLOAT) return (int64_t)a->f;
    return def;
}

float kiln_attr_float(const struct kiln_node *n, const char *name, float def) {
    const struct kiln_attr *a = kiln_attr_find(n, name);
    if (!a) return def;
    if (a->type == KILN_ATTR_FLOAT) return a->f;
    if (a->type == KILN_ATTR_INT) return (float)a->i;
    return def;
}

const char *kiln_attr_string(const struct kiln_node *n, const char *name, const char *def) {
    const struct kiln_attr *a = kiln_attr_find(n, name);
    return (a && a->type == KILN_ATTR_STRING && a->s) ? a->s : def;
}

const int64_t *kiln_attr_ints(const struct kiln_node *n, const char *name, int64_t *count) {
    const struct kiln_attr *a = kiln_attr_find(n, name);
    if (!a || a->type != KILN_ATTR_INTS) {
        *count = 0;
        return NULL;
    }
    *count = a->n;
    return a->ints;
}

const float *kiln_attr_floats(const struct kiln_node *n, const char *name, int64_t *count) {
    const struct kiln_attr *a = kiln_attr_find(n, name);
    if (!a || a->type != KILN_ATTR_FLOATS) {
        *count = 0;
        return NULL;
    }
    *count = a->n;
    return a->floats;
}

const struct kiln_graph *kiln_attr_graph(const struct kiln_node *n, const char *name) {
    const struct kiln_attr *a = kiln_attr_find(n, name);
    return (a && a->type == KILN_ATTR_GRAPH) ? a->g : NULL;
}

int64_t kiln_value_numel(const struct kiln_value *v) {
    int64_t n = 1;
    for (int32_t i = 0; i < v->rank; i++) n *= v->dims[i];
    return n;
}

bool kiln_value_bytes(const struct kiln_value *v, size_t *bytes) {
    uint64_t n = kiln_dtype_size(v->dtype);
    for (int32_t i = 0; i < v->rank; i++) {
        if (v->dims[i] < 0) return false;
        if (kiln_mul_overflow_u64(n, (uint64_t)v->dims[i], &n)) return false;
    }
    if (n > (uint64_t)SIZE_MAX) return false;
    *bytes = (size_t)n;
    return true;
}

void kiln_shape_str(const struct kiln_value *v, char *buf, size_t n) {
    size_t off = 0;
    off += (size_t)snprintf(buf + off, n - off, "[");
    for (int32_t i = 0; i < v->rank && off < n; i++)
        off += (size_t)snprintf(buf + off, n - off, i ? ",%lld" : "%lld", (long long)v->dims[i]);
    if (off < n) snprintf(buf + off, n - off, "]");
}

struct kiln_graph *kiln_graph_new(const char *name, struct kiln_graph *parent) {
    struct kiln_graph *g = calloc(1, sizeof *g);
    if (!g) return NULL;
    g->name = strdup(name ? name : "");
    g->parent = parent;
    if (!g->name) {
        free(g);
        return NULL;
    }
    return g;
}

static void attr_free(struct kiln_attr *a) {
    free(a->name);
    free(a->s);
    free(a->t.data);
    kiln_graph_free(a->g);
    free(a->floats);
    free(a->ints);
    if (a->strings)
        for (int64_t i = 0; i < a->n; i++) free(a->strings[i]);
    free(a->strings);
}

void kiln_graph_free(struct kiln_graph *g) {
    if (!g) return;
    for (int32_t i = 0; i < g->n_nodes; i++) {
        struct kiln_node *n = &g->nodes[i];
        free(n->name);
        free(n->op_type);
        free(n->domain);
        free(n->inputs);
        free(n->outputs);
        for (int32_t a = 0; a < n->n_attrs; a++) attr_free(&n->attrs[a]);
        free(n->attrs);
    }
    for (int32_t i = 0; i < g->n_values; i++) {
        struct kiln_value_info *v = &g->values[i];
        free(v->name);
        for (int r = 0; r < KILN_MAX_RANK; r++) free(v->dim_names[r]);
        if (!v->borrowed) free(v->v.data); /* constants are owned by the graph */
    }
    free(g->values);
    free(g->nodes);
    free(g->inputs);
    free(g->outputs);
    free(g->name);
    free(g);
}

int32_t kiln_graph_find(const struct kiln_graph *g, const char *name) {
    /* Linear scan: graphs are imported once; the importer keeps its own hash. */
    for (int32_t i = g->n_values - 1; i >= 0; i--)
        if (strcmp(g->values[i].name, name) == 0) return i;
    return -1;
}

int32_t kiln_graph_add_value(struct kiln_graph *g, const char *name) {
    if (g->n_values == g->cap_values) {
        int32_t cap = g->cap_values ? g->cap_values * 2 : 64;
        struct kiln_value_info *nv = realloc(g->values, (size_t)cap * sizeof *nv);
        if (!nv) return -1;
        g->values = nv;
        g->cap_values = cap;
    }
    struct kiln_value_info *v = &g->values[g->n_values];
    memset(v, 0, sizeof *v);
    v->name = strdup(name ? name : "");
    if (!v->name) return -1;
    v->outer = -1;
    v->producer = -1;
    return g->n_values++;
}

struct kiln_node *kiln_graph_add_node(struct kiln_graph *g) {
    if (g->n_nodes == g->cap_nodes) {
        int32_t cap = g->cap_nodes ? g->cap_nodes * 2 : 64;
        struct kiln_node *nn = realloc(g->nodes, (size_t)cap * sizeof *nn);
        if (!nn) return NULL;
        g->nodes = nn;
        g->cap_nodes = cap;
    }
    struct kiln_node *n = &g->nodes[g->n_nodes];
    memset(n, 0, sizeof *n);
    n->index = g->n_nodes++;
    return n;
}

void kiln_graph_recount(struct kiln_graph *g) {
    for (int32_t v = 0; v < g->n_values; v++) {
        g->values[v].n_consumers = 0;
        g->values[v].producer = -1;
    }
    for (int32_t i = 0; i < g->n_nodes; i++) {
        struct kiln_node *n = &g->nodes[i];
        n->index = i;
        for (int32_t j = 0; j < n->n_inputs; j++)
            if (n->inputs[j] >= 0) g->values[n->inputs[j]].n_consumers++;
        for (int32_t j = 0; j < n->n_outputs; j++)
            if (n->outputs[j] >= 0) g->values[n->outputs[j]].producer = i;
        for (int32_t a = 0; a < n->n_attrs; a++) {
            const struct kiln_graph *sub = n->attrs[a].g;
            if (!sub) continue;
            for (int32_t v = 0; v < sub->n_values; v++)
                if (sub->values[v].outer >= 0 && sub->values[v].outer < g->n_values)
                    g->values[sub->values[v].outer].n_consumers++;
        }
    }
    for (int32_t i = 0; i < g->n_outputs; i++) g->values[g->outputs[i]].n_consumers++;
}
