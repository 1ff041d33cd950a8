/* unary.c — op family 'unary' (see op.h for the contract). */
#include "ops/op.h"

const struct kiln_op_def kiln_ops_unary[] = {
    {0},
};
