/* onnxgen.c — see onnxgen.h. */
#include "onnxgen.h"

#include <stdio.h>
#include <stdlib.h>
#include <string.h>

static void *xrealloc(void *p, size_t n) {
    void *q = realloc(p, n ? n : 1);
    if (!q) {
        fprintf(stderr, "onnxgen: out of memory (%zu bytes)\n", n);
        abort();
    }
    return q;
}

void pb_init(pb *b) { memset(b, 0, sizeof *b); }

void pb_clear(pb *b) {
    free(b->d);
    memset(b, 0, sizeof *b);
}

void pb_raw(pb *b, const void *data, size_t len) {
    if (b->n + len > b->cap) {
        size_t nc = b->cap ? b->cap : 64;
        while (nc < b->n + len) nc *= 2;
        b->d = xrealloc(b->d, nc);
        b->cap = nc;
    }
    if (len) memcpy(b->d + b->n, data, len);
    b->n += len;
}

void pb_varint(pb *b, uint64_t v) {
    uint8_t tmp[10];
    size_t k = 0;
    do {
        uint8_t byte = v & 0x7f;
        v >>= 7;
        tmp[k++] = byte | (v ? 0x80 : 0);
    } while (v);
    pb_raw(b, tmp, k);
}

static void tag(pb *b, int field, int wt) { pb_varint(b, ((uint64_t)field << 3) | (uint64_t)wt); }

void pb_u64(pb *b, int field, uint64_t v) {
    tag(b, field, 0);
    pb_varint(b, v);
}

void pb_f32(pb *b, int field, float v) {
    tag(b, field, 5);
    uint8_t le[4];
    uint32_t u;
    memcpy(&u, &v, 4);
    for (int i = 0; i < 4; i++) le[i] = (uint8_t)(u >> (8 * i));
    pb_raw(b, le, 4);
}

void pb_bytes(pb *b, int field, const void *data, size_t len) {
    tag(b, field, 2);
    pb_varint(b, len);
    pb_raw(b, data, len);
}

void pb_str(pb *b, int field, const char *s) {
    if (s) pb_bytes(b, field, s, strlen(s));
}

void pb_msg(pb *b, int field, const pb *sub) { pb_bytes(b, field, sub->d, sub->n); }

/* ---- ONNX ------------------------------------------------------------- */

void og_value_info(pb *out, int field, const char *name, int dtype, int rank,
                   const int64_t *dims, const char *const *sym) {
    pb vi, tp, tt, shape;
    pb_init(&vi), pb_init(&tp), pb_init(&tt), pb_init(&shape);
    pb_u64(&tt, 1, (uint64_t)dtype);                  /* Tensor.elem_type */
    if (rank >= 0) {
        for (int i = 0; i < rank; i++) {
            pb dim;
            pb_init(&dim);
            if (dims[i] >= 0) pb_u64(&dim, 1, (uint64_t)dims[i]);   /* dim_value */
            else if (sym && sym[i]) pb_str(&dim, 2, sym[i]);        /* dim_param */
            pb_msg(&shape, 1, &dim);
            pb_clear(&dim);
        }
        tag(&tt, 2, 2);                               /* Tensor.shape (may be empty) */
        pb_varint(&tt, shape.n);
        pb_raw(&tt, shape.d, shape.n);
    }
    pb_msg(&tp, 1, &tt);                              /* TypeProto.tensor_type */
    pb_str(&vi, 1, name);
    pb_msg(&vi, 2, &tp);
    pb_msg(out, field, &vi);
    pb_clear(&vi), pb_clear(&tp), pb_clear(&tt), pb_clear(&shape);
}

void og_tensor_raw(pb *out, const char *name, int dtype, int rank, const int64_t *dims,
                   const void *raw, size_t len) {
    for (int i = 0; i < rank; i++) pb_u64(out, 1, (uint64_t)dims[i]);
    pb_u64(out, 2, (uint64_t)dtype);
    pb_str(out, 8, name);
    if (raw || len) pb_bytes(out, 9, raw, len);
}

struct og_node {
    pb body;
};

struct og_graph {
    char *name;
    pb body;            /* initializers, inputs, outputs */
    og_node **nodes;
    int n_nodes;
};

og_graph *og_graph_new(const char *name) {
    og_graph *g = xrealloc(NULL, sizeof *g);
    memset(g, 0, sizeof *g);
    g->name = strdup(name ? name : "g");
    if (!g->name) abort();
    return g;
}

void og_graph_free(og_graph *g) {
    if (!g) return;
    for (int i = 0; i < g->n_nodes; i++) {
        pb_clear(&g->nodes[i]->body);
        free(g->nodes[i]);
    }
    free(g->nodes);
    pb_clear(&g->body);
    free(g->name);
    free(g);
}

void og_input(og_graph *g, const char *name, int dtype, int rank, const int64_t *dims) {
    og_value_info(&g->body, 11, name, dtype, rank, dims, NULL);
}

void og_input_sym(og_graph *g, const char *name, int dtype, int rank, const int64_t *dims,
                  const char *const *sym) {
    og_value_info(&g->body, 11, name, dtype, rank, dims, sym);
}

void og_output(og_graph *g, const char *name, int dtype, int rank, const int64_t *dims) {
    og_value_info(&g->body, 12, name, dtype, rank, dims, NULL);
}

void og_init_msg(og_graph *g, const pb *tensor) { pb_msg(&g->body, 5, tensor); }

void og_init_raw(og_graph *g, const char *name, int dtype, int rank, const int64_t *dims,
                 const void *raw, size_t len) {
    pb t;
    pb_init(&t);
    og_tensor_raw(&t, name, dtype, rank, dims, raw, len);
    og_init_msg(g, &t);
    pb_clear(&t);
}

static size_t numel(int rank, const int64_t *dims) {
    size_t n = 1;
    for (int i = 0; i < rank; i++) n *= (size_t)dims[i];
    return n;
}

void og_init_f32(og_graph *g, const char *name, int rank, const int64_t *dims, const float *data) {
    og_init_raw(g, name, OG_FLOAT, rank, dims, data, numel(rank, dims) * sizeof(float));
}

void og_init_i64(og_graph *g, const char *name, int rank, const int64_t *dims,
                 const int64_t *data) {
    og_init_raw(g, name, OG_INT64, rank, dims, data, numel(rank, dims) * sizeof(int64_t));
}

static void add_names(pb *b, int field, const char *list) {
    if (!list || !*list) return;
    const char *p = list;
    for (;;) {
        size_t k = strcspn(p, ",");
        pb_bytes(b, field, p, k);
        if (!p[k]) break;
        p += k + 1;
    }
}

og_node *og_node_add(og_graph *g, const char *op_type, const char *ins, const char *outs) {
    og_node *n = xrealloc(NULL, sizeof *n);
    pb_init(&n->body);
    add_names(&n->body, 1, ins);
    add_names(&n->body, 2, outs);
    pb_str(&n->body, 4, op_type);
    g->nodes = xrealloc(g->nodes, (size_t)(g->n_nodes + 1) * sizeof *g->nodes);
    g->nodes[g->n_nodes++] = n;
    return n;
}

void og_node_name(og_node *n, const char *name) { pb_str(&n->body, 3, name); }
void og_node_domain(og_node *n, const char *domain) { pb_str(&n->body, 7, domain); }

static void attr_begin(pb *a, const char *name, int type) {
    pb_init(a);
    pb_str(a, 1, name);
    pb_u64(a, 20, (uint64_t)type);
}

static void attr_end(og_node *n, pb *a) {
    pb_msg(&n->body, 5, a);
    pb_clear(a);
}

void og_attr_int(og_node *n, const char *name, int64_t v) {
    pb a;
    attr_begin(&a, name, 2);
    pb_u64(&a, 3, (uint64_t)v);
    attr_end(n, &a);
}

void og_attr_float(og_node *n, const char *name, float v) {
    pb a;
    attr_begin(&a, name, 1);
    pb_f32(&a, 2, v);
    attr_end(n, &a);
}

void og_attr_ints(og_node *n, const char *name, const int64_t *v, int count) {
    pb a;
    attr_begin(&a, name, 7);
    for (int i = 0; i < count; i++) pb_u64(&a, 8, (uint64_t)v[i]);
    attr_end(n, &a);
}

void og_attr_string(og_node *n, const char *name, const char *s) {
    pb a;
    attr_begin(&a, name, 3);
    pb_str(&a, 4, s);
    attr_end(n, &a);
}

void og_attr_tensor(og_node *n, const char *name, const pb *tensor) {
    pb a;
    attr_begin(&a, name, 4);
    pb_msg(&a, 5, tensor);
    attr_end(n, &a);
}

void og_graph_encode(const og_graph *g, pb *out) {
    for (int i = 0; i < g->n_nodes; i++) pb_msg(out, 1, &g->nodes[i]->body);
    pb_str(out, 2, g->name);
    pb_raw(out, g->body.d, g->body.n);
}

void og_attr_graph(og_node *n, const char *name, const og_graph *sub) {
    pb a, gb;
    attr_begin(&a, name, 5);
    pb_init(&gb);
    og_graph_encode(sub, &gb);
    pb_msg(&a, 6, &gb);
    pb_clear(&gb);
    attr_end(n, &a);
}

struct og_model {
    int64_t ir_version;
    pb opsets;
    og_graph *graph;
};

og_model *og_model_new(int64_t opset) {
    og_model *m = xrealloc(NULL, sizeof *m);
    memset(m, 0, sizeof *m);
    m->ir_version = 8;
    m->graph = og_graph_new("test_graph");
    og_model_opset(m, "", opset);
    return m;
}

void og_model_free(og_model *m) {
    if (!m) return;
    og_graph_free(m->graph);
    pb_clear(&m->opsets);
    free(m);
}

og_graph *og_model_graph(og_model *m) { return m->graph; }

void og_model_opset(og_model *m, const char *domain, int64_t version) {
    pb o;
    pb_init(&o);
    pb_str(&o, 1, domain);
    pb_u64(&o, 2, (uint64_t)version);
    pb_msg(&m->opsets, 8, &o);
    pb_clear(&o);
}

void og_model_no_opsets(og_model *m) { pb_clear(&m->opsets); }
void og_model_ir_version(og_model *m, int64_t v) { m->ir_version = v; }

uint8_t *og_model_pack(const og_model *m, size_t *len) {
    pb b, gb;
    pb_init(&b);
    pb_init(&gb);
    pb_u64(&b, 1, (uint64_t)m->ir_version);
    pb_str(&b, 2, "kiln-tests");
    pb_raw(&b, m->opsets.d, m->opsets.n);
    og_graph_encode(m->graph, &gb);
    pb_msg(&b, 7, &gb);
    pb_clear(&gb);
    *len = b.n;
    if (!b.d) b.d = xrealloc(NULL, 1);
    return b.d;
}

int og_model_save(const og_model *m, const char *path) {
    size_t len;
    uint8_t *buf = og_model_pack(m, &len);
    FILE *f = fopen(path, "wb");
    int rc = -1;
    if (f) {
        rc = fwrite(buf, 1, len, f) == len ? 0 : -1;
        if (fclose(f) != 0) rc = -1;
    }
    free(buf);
    return rc;
}
