/* gen_model.c — see gen_model.h. */
#include "gen_model.h"
#include "onnx.pb-c.h"

#include <math.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

/* every message part of one model, freed together once it is written */
static void *parts[1024];
static int n_parts;

static void *part(size_t n) {
    void *p = calloc(1, n);
    if (!p || n_parts == 1024) abort();
    parts[n_parts++] = p;
    return p;
}

/* [d0 or d0_sym, (rows,) width]: rows 0 leaves it out */
static KilnOnnx__ValueInfoProto *vinfo_w(const char *name, int32_t et, int64_t d0, const char *d0_sym,
                                         int64_t rows, int64_t width) {
    int rank = rows > 0 ? 3 : 2;
    KilnOnnx__TensorShapeProto__Dimension **dims = part((size_t)rank * sizeof *dims);
    for (int i = 0; i < rank; i++) {
        dims[i] = part(sizeof **dims);
        *dims[i] = (KilnOnnx__TensorShapeProto__Dimension)KILN_ONNX__TENSOR_SHAPE_PROTO__DIMENSION__INIT;
    }
    if (d0_sym) {
        dims[0]->value_case = KILN_ONNX__TENSOR_SHAPE_PROTO__DIMENSION__VALUE_DIM_PARAM;
        dims[0]->dim_param = (char *)d0_sym;
    } else {
        dims[0]->value_case = KILN_ONNX__TENSOR_SHAPE_PROTO__DIMENSION__VALUE_DIM_VALUE;
        dims[0]->dim_value = d0;
    }
    for (int i = 1; i < rank; i++) {
        dims[i]->value_case = KILN_ONNX__TENSOR_SHAPE_PROTO__DIMENSION__VALUE_DIM_VALUE;
        dims[i]->dim_value = i == rank - 1 ? width : rows;
    }
    KilnOnnx__TensorShapeProto *shape = part(sizeof *shape);
    *shape = (KilnOnnx__TensorShapeProto)KILN_ONNX__TENSOR_SHAPE_PROTO__INIT;
    shape->n_dim = (size_t)rank;
    shape->dim = dims;
    KilnOnnx__TypeProto__Tensor *tt = part(sizeof *tt);
    *tt = (KilnOnnx__TypeProto__Tensor)KILN_ONNX__TYPE_PROTO__TENSOR__INIT;
    tt->has_elem_type = 1;
    tt->elem_type = et;
    tt->shape = shape;
    KilnOnnx__TypeProto *tp = part(sizeof *tp);
    *tp = (KilnOnnx__TypeProto)KILN_ONNX__TYPE_PROTO__INIT;
    tp->value_case = KILN_ONNX__TYPE_PROTO__VALUE_TENSOR_TYPE;
    tp->tensor_type = tt;
    KilnOnnx__ValueInfoProto *vi = part(sizeof *vi);
    *vi = (KilnOnnx__ValueInfoProto)KILN_ONNX__VALUE_INFO_PROTO__INIT;
    vi->name = (char *)name;
    vi->type = tp;
    return vi;
}

static KilnOnnx__ValueInfoProto *vinfo(const char *name, int32_t et, int64_t d0, const char *d0_sym) {
    return vinfo_w(name, et, d0, d0_sym, 0, 4);
}

static KilnOnnx__TensorProto *scalar(const char *name, float v) {
    KilnOnnx__TensorProto *t = part(sizeof *t);
    *t = (KilnOnnx__TensorProto)KILN_ONNX__TENSOR_PROTO__INIT;
    t->name = (char *)name;
    t->has_data_type = 1;
    t->data_type = 1;
    t->n_float_data = 1;
    t->float_data = part(sizeof(float));
    t->float_data[0] = v;
    return t;
}

static KilnOnnx__NodeProto *node(const char *op, const char *a, const char *b, const char *out) {
    KilnOnnx__NodeProto *n = part(sizeof *n);
    *n = (KilnOnnx__NodeProto)KILN_ONNX__NODE_PROTO__INIT;
    n->op_type = (char *)op;
    n->name = (char *)out;
    n->n_input = 2;
    n->input = part(2 * sizeof(char *));
    n->input[0] = (char *)a;
    n->input[1] = (char *)b;
    n->n_output = 1;
    n->output = part(sizeof(char *));
    n->output[0] = (char *)out;
    return n;
}

static char *name_of(const char *prefix, int i) {
    char *s = part(32);
    snprintf(s, 32, "%s%d", prefix, i);
    return s;
}

static KilnOnnx__NodeProto *node1(const char *op, const char *a, const char *out) {
    KilnOnnx__NodeProto *n = node(op, a, a, out);
    n->n_input = 1;
    return n;
}

static int write_model(const char *path, KilnOnnx__GraphProto *g);

int gen_mlp(const char *path, int rows, int width, int layers) {
    if (rows < 0 || rows > 4096 || width < 1 || width > 4096 || layers < 1 || layers > 64) return 1;
    KilnOnnx__GraphProto *g = part(sizeof *g);
    *g = (KilnOnnx__GraphProto)KILN_ONNX__GRAPH_PROTO__INIT;
    g->name = (char *)"mlp";
    g->n_input = 1;
    g->input = part(sizeof *g->input);
    g->input[0] = vinfo_w("x", 1, 0, "batch", rows, width);
    g->n_output = 1;
    g->output = part(sizeof *g->output);
    g->output[0] = vinfo_w("y", 1, 0, "batch", rows, width);
    g->n_initializer = (size_t)layers;
    g->initializer = part((size_t)layers * sizeof *g->initializer);
    g->n_node = (size_t)(2 * layers - 1);
    g->node = part(g->n_node * sizeof *g->node);
    uint32_t seed = 7;
    const char *h = "x";
    for (int l = 0; l < layers; l++) {
        KilnOnnx__TensorProto *t = part(sizeof *t);
        *t = (KilnOnnx__TensorProto)KILN_ONNX__TENSOR_PROTO__INIT;
        t->name = name_of("w", l);
        t->has_data_type = 1;
        t->data_type = 1;
        t->n_dims = 2;
        t->dims = part(2 * sizeof(int64_t));
        t->dims[0] = t->dims[1] = width;
        t->n_float_data = (size_t)width * (size_t)width;
        t->float_data = part(t->n_float_data * sizeof(float));
        /* uniform in +-1/sqrt(width): activations keep their scale through the layers */
        float scale = 1.0f / sqrtf((float)width);
        for (size_t k = 0; k < t->n_float_data; k++) {
            seed = seed * 1664525u + 1013904223u;
            t->float_data[k] = ((float)(seed >> 8) / 8388608.0f - 1.0f) * scale;
        }
        g->initializer[l] = t;
        const char *m = l == layers - 1 ? "y" : name_of("m", l);
        g->node[2 * l] = node("MatMul", h, t->name, m);
        if (l < layers - 1) {
            h = name_of("h", l);
            g->node[2 * l + 1] = node1("Relu", m, h);
        }
    }
    return write_model(path, g);
}

int gen_model(const char *path, enum gen_kind kind, int32_t elem_type) {
    KilnOnnx__GraphProto *g = part(sizeof *g);
    *g = (KilnOnnx__GraphProto)KILN_ONNX__GRAPH_PROTO__INIT;
    g->name = (char *)"g";
    const char *bsym = kind == GEN_FIXED ? NULL : "batch";
    int64_t b = kind == GEN_FIXED ? 1 : 0;
    g->n_input = 1;
    g->input = part(sizeof *g->input);
    g->n_output = 1;
    g->output = part(sizeof *g->output);
    if (kind == GEN_IDENTITY) {
        g->input[0] = vinfo("x", elem_type, b, bsym);
        g->output[0] = vinfo("x", elem_type, b, bsym);
    } else {
        g->input[0] = vinfo("x", 1, b, bsym);
        g->output[0] = vinfo("y", 1, b, bsym);
        g->n_initializer = 2;
        g->initializer = part(2 * sizeof *g->initializer);
        g->initializer[0] = scalar("two", 2.0f);
        g->initializer[1] = scalar("one", 1.0f);
        g->n_node = 2;
        g->node = part(2 * sizeof *g->node);
        g->node[0] = node("Mul", "x", "two", "x2");
        g->node[1] = node("Add", "x2", "one", "y");
    }
    return write_model(path, g);
}

static int write_model(const char *path, KilnOnnx__GraphProto *g) {
    KilnOnnx__OperatorSetIdProto *ops = part(sizeof *ops);
    *ops = (KilnOnnx__OperatorSetIdProto)KILN_ONNX__OPERATOR_SET_ID_PROTO__INIT;
    ops->domain = (char *)"";
    ops->has_version = 1;
    ops->version = 17;
    KilnOnnx__ModelProto m = KILN_ONNX__MODEL_PROTO__INIT;
    m.has_ir_version = 1;
    m.ir_version = 8;
    m.n_opset_import = 1;
    m.opset_import = &ops;
    m.graph = g;
    size_t n = kiln_onnx__model_proto__get_packed_size(&m);
    uint8_t *buf = malloc(n);
    if (buf) kiln_onnx__model_proto__pack(&m, buf);
    while (n_parts) free(parts[--n_parts]);
    if (!buf) return 1;
    FILE *f = fopen(path, "wb");
    if (!f) { free(buf); return 1; }
    size_t w = fwrite(buf, 1, n, f);
    free(buf);
    return fclose(f) != 0 || w != n;
}
