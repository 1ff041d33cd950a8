/*
 * onnxgen.h — writes small ONNX models from C, for tests.
 *
 * A hand-rolled protobuf encoder (varints and length-delimited fields only,
 * which is all ModelProto needs) plus a builder for graphs, nodes,
 * attributes and initializers. Nothing here validates: tests use it to make
 * both good and deliberately broken models, so no binary fixtures are kept
 * in the repository. Field numbers follow onnx.proto (src/onnx/onnx.proto).
 *
 * Every builder function aborts the test program on allocation failure.
 */
#ifndef KILN_TESTS_ONNXGEN_H
#define KILN_TESTS_ONNXGEN_H

#include <stddef.h>
#include <stdint.h>

/* ---- raw protobuf writer --------------------------------------------- */

typedef struct pb {
    uint8_t *d;
    size_t   n, cap;
} pb;

void pb_init(pb *b);
void pb_clear(pb *b);
void pb_raw(pb *b, const void *data, size_t len);
void pb_varint(pb *b, uint64_t v);                        /* bare varint */
void pb_u64(pb *b, int field, uint64_t v);                /* wire type 0 */
void pb_f32(pb *b, int field, float v);                   /* wire type 5 */
void pb_bytes(pb *b, int field, const void *data, size_t len); /* wire type 2 */
void pb_str(pb *b, int field, const char *s);             /* skipped when s is NULL */
void pb_msg(pb *b, int field, const pb *sub);             /* embeds sub */

/* ---- ONNX builder ------------------------------------------------------ */

typedef struct og_graph og_graph;
typedef struct og_node og_node;
typedef struct og_model og_model;

/* dims[i] < 0 means an unknown dim; sym (may be NULL, or sym[i] NULL) names it.
 * rank < 0 writes a tensor type without a shape. */
void og_value_info(pb *out, int field, const char *name, int dtype, int rank,
                   const int64_t *dims, const char *const *sym);
/* TensorProto with raw_data (raw may be NULL with len 0: no raw_data field). */
void og_tensor_raw(pb *out, const char *name, int dtype, int rank, const int64_t *dims,
                   const void *raw, size_t len);

og_graph *og_graph_new(const char *name);
void      og_graph_free(og_graph *g);
void      og_input(og_graph *g, const char *name, int dtype, int rank, const int64_t *dims);
void      og_input_sym(og_graph *g, const char *name, int dtype, int rank, const int64_t *dims,
                       const char *const *sym);
void      og_output(og_graph *g, const char *name, int dtype, int rank, const int64_t *dims);
void      og_init_raw(og_graph *g, const char *name, int dtype, int rank, const int64_t *dims,
                      const void *raw, size_t len);
void      og_init_f32(og_graph *g, const char *name, int rank, const int64_t *dims,
                      const float *data);
void      og_init_i64(og_graph *g, const char *name, int rank, const int64_t *dims,
                      const int64_t *data);
/* Appends a prepared TensorProto message as an initializer. */
void      og_init_msg(og_graph *g, const pb *tensor);
/* ins/outs: comma-separated names; an empty item ("a,,c") is an omitted input. */
og_node  *og_node_add(og_graph *g, const char *op_type, const char *ins, const char *outs);
void      og_node_name(og_node *n, const char *name);
void      og_node_domain(og_node *n, const char *domain);
void      og_attr_int(og_node *n, const char *name, int64_t v);
void      og_attr_float(og_node *n, const char *name, float v);
void      og_attr_ints(og_node *n, const char *name, const int64_t *v, int count);
void      og_attr_string(og_node *n, const char *name, const char *s);
void      og_attr_tensor(og_node *n, const char *name, const pb *tensor);
/* Serializes sub at the time of the call; sub stays owned by the caller. */
void      og_attr_graph(og_node *n, const char *name, const og_graph *sub);
/* Serializes g as a GraphProto into out (the message body). */
void      og_graph_encode(const og_graph *g, pb *out);

og_model *og_model_new(int64_t opset);        /* ir_version 8, imports ai.onnx@opset */
void      og_model_free(og_model *m);          /* frees its graph too */
og_graph *og_model_graph(og_model *m);
void      og_model_opset(og_model *m, const char *domain, int64_t version);
void      og_model_no_opsets(og_model *m);     /* drop every opset import */
void      og_model_ir_version(og_model *m, int64_t v);
/* Model bytes, graph written last (so any truncation cuts inside it).
 * Returns a malloc'ed buffer; *len is its size. */
uint8_t  *og_model_pack(const og_model *m, size_t *len);
/* Packs and writes to path; returns 0 on success. */
int       og_model_save(const og_model *m, const char *path);

/* ONNX TensorProto.DataType values used by tests */
enum { OG_FLOAT = 1, OG_UINT8 = 2, OG_INT8 = 3, OG_INT32 = 6, OG_INT64 = 7, OG_STRING = 8,
       OG_BOOL = 9, OG_FLOAT16 = 10, OG_DOUBLE = 11 };

#endif
