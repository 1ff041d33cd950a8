/* detect.c — op family 'detect' (see op.h for the contract). */
#include "ops/op.h"

const struct kiln_op_def kiln_ops_detect[] = {
    {0},
};
