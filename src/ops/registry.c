/* registry.c — finds the implementation of (domain, op_type, opset).
 * Each op family file exports a {0}-terminated table; this file lists them. */
#include "ops/op.h"

#include <string.h>

#define KILN_OP_FAMILIES(X) \
    X(elementwise) X(unary) X(shape) X(index) X(reduce) X(norm) X(conv) X(resize) \
    X(matmul) X(attention) X(quant) X(rnn) X(detect) X(control)

#define X(fam) extern const struct kiln_op_def kiln_ops_##fam[];
KILN_OP_FAMILIES(X)
#undef X

static const struct kiln_op_def *const families[] = {
#define X(fam) kiln_ops_##fam,
    KILN_OP_FAMILIES(X)
#undef X
};

static bool domain_eq(const char *a, const char *b) {
    if (!a || !*a || strcmp(a, "ai.onnx") == 0) a = "";
    if (!b || !*b || strcmp(b, "ai.onnx") == 0) b = "";
    return strcmp(a, b) == 0;
}

/* Picks the entry with the highest `since` not above opset: an op file may
 * register several entries when versions differ enough to deserve their own. */
const struct kiln_op_def *kiln_op_lookup(const char *domain, const char *op_type, int64_t opset) {
    const struct kiln_op_def *best = NULL;
    for (size_t f = 0; f < sizeof families / sizeof families[0]; f++)
        for (const struct kiln_op_def *op = families[f]; op->name; op++)
            if (strcmp(op->name, op_type) == 0 && domain_eq(op->domain, domain) &&
                op->since <= opset && (!best || op->since > best->since))
                best = op;
    return best;
}

void kiln_op_foreach(void (*fn)(const struct kiln_op_def *op, void *user), void *user) {
    for (size_t f = 0; f < sizeof families / sizeof families[0]; f++)
        for (const struct kiln_op_def *op = families[f]; op->name; op++) fn(op, user);
}
