/* import.h — ONNX (protobuf) → kiln IR. Every size, index and name from the
 * file is checked here, before anything is allocated from it. */
#ifndef KILN_ONNX_IMPORT_H
#define KILN_ONNX_IMPORT_H

#include "ir/graph.h"
#include <stdint.h>

struct kiln_opset_import {
    char   *domain;
    int64_t version;
};

struct kiln_onnx_model {
    struct kiln_graph *graph;
    int64_t ir_version;
    int32_t n_opsets;
    struct kiln_opset_import *opsets;
    char   *producer;
};

struct kiln_import_limits {
    uint64_t max_tensor_bytes;
};

/* Parses an ONNX ModelProto. `dir` (may be NULL) is the folder external data
 * is resolved against; `label` names the model in messages. */
kiln_status kiln_onnx_import(const uint8_t *buf, size_t len, const char *dir, const char *label,
                             const struct kiln_import_limits *lim, struct kiln_onnx_model *out,
                             kiln_error *err);
void kiln_onnx_model_clear(struct kiln_onnx_model *m);

/* Reads a serialized TensorProto (e.g. test_data_set_0/input_0.pb). The value
 * owns malloc'ed data; *name (may be NULL) receives a malloc'ed copy of its name. */
kiln_status kiln_onnx_read_tensor(const uint8_t *buf, size_t len, const char *label,
                                  const struct kiln_import_limits *lim, struct kiln_value *v,
                                  char **name, kiln_error *err);

/* False when the protobuf nests messages deeper than max_depth (at most 128)
 * along the fields protobuf-c recurses into (src/onnx/pb_depth.c). */
#define KILN_PB_ROOT_MODEL 1
#define KILN_PB_MAX_DEPTH 64
bool kiln_pb_nesting_ok(const uint8_t *buf, size_t len, int root, int max_depth);

/* Reads a whole file with a size limit. *out is malloc'ed. */
kiln_status kiln_read_file(const char *path, uint64_t max_bytes, uint8_t **out, size_t *len,
                           kiln_error *err);

#endif
