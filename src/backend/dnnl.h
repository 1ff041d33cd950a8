/* dnnl.h — the shared oneDNN engine, and status names. Only files under
 * src/backend/ include oneDNN headers. */
#ifndef KILN_BACKEND_DNNL_H
#define KILN_BACKEND_DNNL_H

#include <oneapi/dnnl/dnnl.h>

/* The process-wide CPU engine, created once (thread-safe); NULL if oneDNN
 * cannot create one, in which case callers fall back to reference kernels. */
dnnl_engine_t kiln_dnnl_engine(void);
const char   *kiln_dnnl_status_str(dnnl_status_t s);

#endif
