/* matmul.c — op family 'matmul' (see op.h for the contract). */
#include "ops/op.h"

const struct kiln_op_def kiln_ops_matmul[] = {
    {0},
};
