/* control.c — op family 'control' (see op.h for the contract). */
#include "ops/op.h"

const struct kiln_op_def kiln_ops_control[] = {
    {0},
};
