/* rnn.c — op family 'rnn' (see op.h for the contract). */
#include "ops/op.h"

const struct kiln_op_def kiln_ops_rnn[] = {
    {0},
};
