/* norm.c — op family 'norm' (see op.h for the contract). */
#include "ops/op.h"

const struct kiln_op_def kiln_ops_norm[] = {
    {0},
};
