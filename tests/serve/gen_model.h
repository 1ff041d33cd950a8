/* gen_model.h — tiny ONNX models written at test time with the protobuf-c
 * generated code, so the server tests need no files or Python. */
#ifndef KILN_TESTS_SERVE_GEN_MODEL_H
#define KILN_TESTS_SERVE_GEN_MODEL_H

#include <stdint.h>

enum gen_kind {
    GEN_AFFINE,     /* y = x * 2 + 1; x float32 [batch, 4] (Mul, Add) */
    GEN_IDENTITY,   /* y = x (a graph with no nodes); x [batch, 4] of elem_type */
    GEN_FIXED,      /* y = x * 2 + 1 with x float32 [1, 4]: not batchable */
};

/* Writes the model; elem_type is an ONNX TensorProto.DataType (GEN_IDENTITY
 * only; 1 = float). Returns 0 on success. */
int gen_model(const char *path, enum gen_kind kind, int32_t elem_type);

/* A compute-bound model for load tests: x float32 [batch, rows, width]
 * ([batch, width] when rows is 0), then `layers` MatMuls by fixed width x
 * width weights with Relu between; output y of x's shape. Compute per
 * request grows with rows while the file (the weights) does not. Returns 0
 * on success. */
int gen_mlp(const char *path, int rows, int width, int layers);

#endif
