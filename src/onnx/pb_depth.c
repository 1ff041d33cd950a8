/* pb_depth.c — bounds the nesting of an ONNX protobuf before protobuf-c
 * parses it. protobuf-c recurses once per nested message and has no limit,
 * so a few kilobytes of nested graphs or types would overflow the stack.
 * This walker follows only the message-typed fields of kiln's onnx.proto
 * subset (the only ones protobuf-c recurses into) with an explicit depth, and
 * rejects a file nested deeper than the limit. Everything else is skipped. */
#include "onnx/import.h"

#include <stdbool.h>
#include <stdint.h>

enum msg {
    M_LEAF = 0,
    M_MODEL,
    M_GRAPH,
    M_NODE,
    M_ATTR,
    M_VALUEINFO,
    M_TYPE,
    M_TYPE_TENSOR,   /* TypeProto.Tensor and TypeProto.SparseTensor */
    M_TYPE_ELEM,     /* TypeProto.Sequence and TypeProto.Optional */
    M_SHAPE,
    M_TENSOR,
    M_SPARSE,
    M_SEQUENCE,      /* onnx-data SequenceProto */
};

/* The message type of field `f` inside a message of type `m`. */
static enum msg child(enum msg m, uint32_t f) {
    switch (m) {
    case M_MODEL: return f == 7 ? M_GRAPH : M_LEAF;
    case M_GRAPH:
        return f == 1 ? M_NODE : f == 5 ? M_TENSOR : f == 15 ? M_SPARSE
             : (f == 11 || f == 12 || f == 13) ? M_VALUEINFO : M_LEAF;
    case M_NODE: return f == 5 ? M_ATTR : M_LEAF;
    case M_ATTR:
        return (f == 5 || f == 10) ? M_TENSOR : (f == 6 || f == 11) ? M_GRAPH
             : (f == 22 || f == 23) ? M_SPARSE : M_LEAF;
    case M_VALUEINFO: return f == 2 ? M_TYPE : M_LEAF;
    case M_TYPE: return (f == 1 || f == 8) ? M_TYPE_TENSOR : (f == 4 || f == 9) ? M_TYPE_ELEM : M_LEAF;
    case M_TYPE_TENSOR: return f == 2 ? M_SHAPE : M_LEAF;
    case M_TYPE_ELEM: return f == 1 ? M_TYPE : M_LEAF;
    case M_SPARSE: return (f == 1 || f == 2) ? M_TENSOR : M_LEAF;
    case M_SEQUENCE: return f == 3 ? M_TENSOR : f == 5 ? M_SEQUENCE : M_LEAF;
    default: return M_LEAF; /* tensors and shapes nest only leaf messages */
    }
}

static bool varint(const uint8_t **p, const uint8_t *end, uint64_t *v) {
    *v = 0;
    for (int s = 0; s < 64 && *p < end; s += 7) {
        uint8_t b = *(*p)++;
        *v |= (uint64_t)(b & 0x7f) << s;
        if (!(b & 0x80)) return true;
    }
    return false;
}

struct frame {
    const uint8_t *end;
    enum msg type;
};

bool kiln_pb_nesting_ok(const uint8_t *buf, size_t len, int root, int max_depth) {
    struct frame stack[128];
    if (max_depth > 128) max_depth = 128;
    int depth = 0;
    const uint8_t *p = buf;
    stack[0] = (struct frame){buf + len, (enum msg)root};
    while (depth >= 0) {
        struct frame *top = &stack[depth];
        if (p >= top->end) { /* end of this message: back to its parent */
            p = top->end;
            depth--;
            continue;
        }
        uint64_t key, n;
        if (!varint(&p, top->end, &key)) return true; /* malformed: protobuf-c rejects it */
        uint32_t field = (uint32_t)(key >> 3);
        switch (key & 7) {
        case 0:
            if (!varint(&p, top->end, &n)) return true;
            break;
        case 1:
            if (top->end - p < 8) return true;
            p += 8;
            break;
        case 5:
            if (top->end - p < 4) return true;
            p += 4;
            break;
        case 2: {
            if (!varint(&p, top->end, &n) || n > (uint64_t)(top->end - p)) return true;
            enum msg c = child(top->type, field);
            if (c == M_LEAF) {
                p += n;
                break;
            }
            if (depth + 1 >= max_depth) return false;
            stack[++depth] = (struct frame){p + n, c};
            break;
        }
        default: return true; /* groups: protobuf-c rejects them */
        }
    }
    return true;
}
