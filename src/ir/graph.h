/*
 * graph.h — kiln's intermediate representation.
 *
 * A graph is an array of values (tensors, by id) and an array of nodes in
 * topological order. The importer builds it once from ONNX; after that a
 * model's graph is read-only and shared by every session.
 *
 * Values:
 *   - graph inputs: shape may hold symbolic dims (dims[i] = -1, dim_names[i])
 *   - constants: initializers and Constant nodes; `data` points into model memory
 *   - outer references (subgraphs of If/Loop/Scan only): `outer` is the id of
 *     the value in the enclosing graph that the name resolves to
 *   - everything else is produced by exactly one node.
 */
#ifndef KILN_IR_GRAPH_H
#define KILN_IR_GRAPH_H

#include "kiln.h"
#include <stdbool.h>

struct kiln_graph;
struct kiln_op_def;

typedef enum kiln_attr_type {
    KILN_ATTR_UNDEFINED = 0,
    KILN_ATTR_FLOAT     = 1,
    KILN_ATTR_INT       = 2,
    KILN_ATTR_STRING    = 3,
    KILN_ATTR_TENSOR    = 4,
    KILN_ATTR_GRAPH     = 5,
    KILN_ATTR_FLOATS    = 6,
    KILN_ATTR_INTS      = 7,
    KILN_ATTR_STRINGS   = 8,
    KILN_ATTR_TENSORS   = 9,
    KILN_ATTR_GRAPHS    = 10,
    KILN_ATTR_SPARSE_TENSOR = 11,
    KILN_ATTR_SPARSE_TENSORS = 12,
    KILN_ATTR_TYPE_PROTO = 13,
    KILN_ATTR_TYPE_PROTOS = 14,
} kiln_attr_type;

/* A tensor value: dtype + shape + (maybe) data. Used for constants in the
 * graph and for every runtime value. `data` may be NULL when only the shape
 * is known (planning). */
/* Memory order of a value's bytes. dims are always in ONNX order (N, C, spatial...);
 * KILN_LAYOUT_CHANNELS_LAST stores them N, spatial..., C (NHWC for 4-D), and
 * KILN_LAYOUT_BLOCKED8 as N, C/8, spatial..., 8. The planner chooses one of them
 * between oneDNN convolutions and pools (and elementwise ops between them) so
 * activations are not reordered around every op: blocked on AVX2, where oneDNN's
 * direct convolutions want it, channels-last on AVX-512 and AMX. */
enum kiln_layout {
    KILN_LAYOUT_PLAIN = 0,
    KILN_LAYOUT_CHANNELS_LAST = 1,
    KILN_LAYOUT_BLOCKED8 = 2,    /* N, C/8, spatial..., 8 (oneDNN nChw8c); only when C % 8 == 0 */
};

struct kiln_value {
    kiln_dtype dtype;
    int32_t    rank;
    int64_t    dims[KILN_MAX_RANK];
    void      *data;
    size_t     nbytes;
    uint8_t    layout;           /* enum kiln_layout */
};

struct kiln_attr {
    char          *name;
    kiln_attr_type type;
    float          f;
    int64_t        i;
    char          *s;          /* NUL-terminated; s_len holds the true length */
    size_t         s_len;
    struct kiln_value t;       /* TENSOR */
    struct kiln_graph *g;      /* GRAPH */
    int64_t        n;          /* element count of the list kinds below */
    float         *floats;
    int64_t       *ints;
    char         **strings;
};

/* An elementwise activation fused into the node that produces its input
 * (set by the fuse-activation pass). The executor applies it to output 0
 * unless the node's kernel reports that it already did (a oneDNN post-op). */
enum kiln_act_kind {
    KILN_ACT_NONE = 0,
    KILN_ACT_RELU,
    KILN_ACT_CLIP,          /* alpha = min, beta = max */
    KILN_ACT_LEAKY_RELU,    /* alpha */
    KILN_ACT_SIGMOID,
    KILN_ACT_HARD_SIGMOID,  /* alpha * x + beta, clipped to [0, 1] */
    KILN_ACT_HARD_SWISH,
    KILN_ACT_TANH,
    KILN_ACT_GELU_ERF,      /* 0.5 x (1 + erf(x / sqrt 2)) */
    KILN_ACT_GELU_TANH,     /* 0.5 x (1 + tanh(sqrt(2/pi) (x + 0.044715 x^3))) */
    KILN_ACT_SILU,          /* x * sigmoid(alpha * x) (Swish; alpha = 1: SiLU) */
};
#define KILN_ACT_LAST KILN_ACT_SILU   /* highest valid kind (.kiln readers check it) */

struct kiln_activation {
    enum kiln_act_kind kind;
    float alpha, beta;
};

struct kiln_node {
    char    *name;             /* ONNX node name, or "<op>_<index>" when empty */
    char    *op_type;
    char    *domain;           /* "" for the default domain */
    int64_t  opset;            /* opset version the model imports for this domain */
    int32_t  n_inputs, n_outputs;
    int32_t *inputs;           /* value ids; -1 for an omitted optional input */
    int32_t *outputs;          /* value ids; -1 for an omitted optional output */
    int32_t  n_attrs;
    struct kiln_attr *attrs;
    const struct kiln_op_def *op;   /* NULL when unsupported */
    struct kiln_activation act;     /* fused activation on output 0 */
    /* Residual sum fused into a Conv (fuse-residual pass): 0 = none, else the
     * index of the input added to the result before `act` (always 3:
     * Conv(X, W, B?, R) = act(conv + R)). Inputs 0..2 keep their ONNX meaning. */
    int32_t  sum_input;
    int32_t  index;            /* position in graph->nodes */
};

struct kiln_value_info {
    char   *name;
    struct kiln_value v;       /* dtype + declared shape (+ data for constants) */
    char   *dim_names[KILN_MAX_RANK];
    bool    has_shape;         /* false when the model declares no shape */
    bool    non_tensor;        /* declared as a sequence, optional, map or sparse type */
    bool    borrowed;          /* constant data lives in a mapped plan file: not freed */
    bool    is_const;          /* initializer or Constant-node output */
    bool    is_input;          /* graph input fed by the caller */
    int32_t outer;             /* id in the enclosing graph, or -1 */
    int32_t producer;          /* node index, or -1 */
    int32_t n_consumers;       /* uses by nodes (+1 when it is a graph output) */
};

struct kiln_graph {
    char    *name;
    int32_t  n_values, cap_values;
    struct kiln_value_info *values;
    int32_t  n_nodes, cap_nodes;
    struct kiln_node *nodes;
    int32_t  n_inputs;         /* caller-fed inputs (excludes initializers) */
    int32_t *inputs;
    int32_t  n_outputs;
    int32_t *outputs;
    struct kiln_graph *parent; /* enclosing graph for subgraphs */
};

/* ---- attributes (NULL-safe; `def` is returned when absent) ---- */
const struct kiln_attr *kiln_attr_find(const struct kiln_node *n, const char *name);
int64_t      kiln_attr_int(const struct kiln_node *n, const char *name, int64_t def);
float        kiln_attr_float(const struct kiln_node *n, const char *name, float def);
const char  *kiln_attr_string(const struct kiln_node *n, const char *name, const char *def);
/* Returns the list and sets *count; NULL and *count = 0 when absent. */
const int64_t *kiln_attr_ints(const struct kiln_node *n, const char *name, int64_t *count);
const float   *kiln_attr_floats(const struct kiln_node *n, const char *name, int64_t *count);
const struct kiln_graph *kiln_attr_graph(const struct kiln_node *n, const char *name);

/* ---- values ---- */
int64_t kiln_value_numel(const struct kiln_value *v);     /* product of dims; 1 for rank 0 */
/* numel * dtype size, with overflow checks; returns false on overflow. */
bool    kiln_value_bytes(const struct kiln_value *v, size_t *bytes);
void    kiln_shape_str(const struct kiln_value *v, char *buf, size_t n);   /* "[1,3,224,224]" */

/* ---- graph construction (importer and passes) ---- */
struct kiln_graph *kiln_graph_new(const char *name, struct kiln_graph *parent);
void    kiln_graph_free(struct kiln_graph *g);
/* Finds a value by name in this graph only; -1 if absent. */
int32_t kiln_graph_find(const struct kiln_graph *g, const char *name);
int32_t kiln_graph_add_value(struct kiln_graph *g, const char *name);   /* -1 on OOM */
struct kiln_node *kiln_graph_add_node(struct kiln_graph *g);            /* NULL on OOM */
/* Recomputes producers and consumer counts. A value that a node's subgraph
 * reads from this graph (an outer reference) counts as a use by that node. */
void    kiln_graph_recount(struct kiln_graph *g);

#endif
