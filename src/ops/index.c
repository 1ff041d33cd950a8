/* index.c — op family 'index' (see op.h for the contract). */
#include "ops/op.h"

const struct kiln_op_def kiln_ops_index[] = {
    {0},
};
