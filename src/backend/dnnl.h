/* dnnl.h — the shared oneDNN engine, and status names. Only files under
 * src/backend/ include oneDNN headers. */
#ifndef KILN_BACKEND_DNNL_H
#define KILN_BACKEND_DNNL_H

#include <oneapi/dnnl/dnnl.h>

#include "kiln.h"

#include <stdbool.h>
#include <stdint.h>

/* The process-wide CPU engine, created once (thread-safe); NULL if oneDNN
 * cannot create one, in which case callers fall back to reference kernels. */
dnnl_engine_t kiln_dnnl_engine(void);
const char   *kiln_dnnl_status_str(dnnl_status_t s);

struct kiln_wcache;

/* Constant weights `src` (described by user_md) reordered into `want`. With a
 * cache the buffer is the model's shared copy (never written after this) and
 * *owned is NULL; without one, *owned is a private buffer the caller frees.
 * Returns the buffer, or NULL with err set. */
void *kiln_dnnl_pack_weights(struct kiln_wcache *cache, const dnnl_memory_desc_t *user_md,
                             const void *src, const dnnl_memory_desc_t *want, void **owned,
                             kiln_error *err);

/* Appends kiln's fused activation (enum kiln_act_kind, ir/graph.h) to po as
 * eltwise post-ops: true for KILN_ACT_NONE (nothing to add), false for a kind
 * oneDNN cannot express (the caller then builds no fast path). Shared by the
 * fp32 and int8 convolutions. */
bool kiln_dnnl_append_activation(dnnl_post_ops_t po, int32_t act, float alpha, float beta);
/* 64-byte aligned memory for oneDNN buffers, size rounded up to 64 (at
 * least 64); free() releases it. */
void *kiln_dnnl_alloc(size_t n);
/* The user-managed scratchpad of pd: *buf (kiln_dnnl_alloc) wrapped in *mem. */
dnnl_status_t kiln_dnnl_make_scratch(dnnl_primitive_desc_t pd, dnnl_engine_t eng, void **buf,
                                     dnnl_memory_t *mem);
#endif
