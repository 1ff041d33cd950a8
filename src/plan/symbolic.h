/* symbolic.h — shapes in terms of the inputs' symbolic dims (see symbolic.c). */
#ifndef KILN_PLAN_SYMBOLIC_H
#define KILN_PLAN_SYMBOLIC_H

#include "ir/graph.h"

/* Writes value's shape as "[batch,3,2*seq+1,?]" into buf. */
kiln_status kiln_symbolic_shape(const struct kiln_graph *g, int32_t value, char *buf, size_t n,
                                kiln_error *err);

#endif
