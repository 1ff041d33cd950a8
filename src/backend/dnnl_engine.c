/* dnnl_engine.c — one oneDNN CPU engine for the whole process. */
#include "backend/dnnl.h"
#include "base/status.h"
#include "base/wcache.h"
#include "ir/graph.h"

#include <stdlib.h>
#include <string.h>

#include <pthread.h>
#include <stddef.h>

static dnnl_engine_t engine;
static pthread_once_t engine_once = PTHREAD_ONCE_INIT;

static void engine_init(void) {
    if (dnnl_engine_create(&engine, dnnl_cpu, 0) != dnnl_success) engine = NULL;
}

dnnl_engine_t kiln_dnnl_engine(void) {
    pthread_once(&engine_once, engine_init);
    return engine;
}

const char *kiln_dnnl_status_str(dnnl_status_t s) {
    switch (s) {
    case dnnl_success: return "success";
    case dnnl_out_of_memory: return "out of memory";
    case dnnl_invalid_arguments: return "invalid arguments";
    case dnnl_unimplemented: return "unimplemented";
    case dnnl_iterator_ends: return "iterator ends";
    case dnnl_runtime_error: return "runtime error";
    case dnnl_not_required: return "not required";
    default: return "unknown dnnl status";
    }
}

struct pack_job {
    const dnnl_memory_desc_t *user_md, *want;
    const void *src;
};

static kiln_status pack_fill(void *dst, void *arg, kiln_error *err) {
    const struct pack_job *j = arg;
    dnnl_engine_t eng = kiln_dnnl_engine();
    dnnl_primitive_desc_t rpd = NULL;
    dnnl_primitive_t r = NULL;
    dnnl_memory_t from = NULL, to = NULL;
    dnnl_stream_t stream = NULL;
    dnnl_status_t st = dnnl_memory_create(&from, j->user_md, eng, (void *)j->src);
    if (st == dnnl_success) st = dnnl_memory_create(&to, j->want, eng, dst);
    if (st == dnnl_success) st = dnnl_reorder_primitive_desc_create(&rpd, j->user_md, eng, j->want, eng, NULL);
    if (st == dnnl_success) st = dnnl_primitive_create(&r, rpd);
    if (st == dnnl_success) st = dnnl_stream_create(&stream, eng, dnnl_stream_default_flags);
    if (st == dnnl_success) {
        dnnl_exec_arg_t args[2] = {{DNNL_ARG_FROM, from}, {DNNL_ARG_TO, to}};
        st = dnnl_primitive_execute(r, stream, 2, args);
    }
    if (st == dnnl_success) st = dnnl_stream_wait(stream);
    if (stream) dnnl_stream_destroy(stream);
    if (r) dnnl_primitive_destroy(r);
    if (rpd) dnnl_primitive_desc_destroy(rpd);
    if (from) dnnl_memory_destroy(from);
    if (to) dnnl_memory_destroy(to);
    if (st != dnnl_success)
        return kiln_fail(err, st == dnnl_out_of_memory ? KILN_ERR_NO_MEMORY : KILN_ERR_INTERNAL,
                         "oneDNN weights reorder: %s", kiln_dnnl_status_str(st));
    return KILN_OK;
}

void *kiln_dnnl_pack_weights(struct kiln_wcache *cache, const dnnl_memory_desc_t *user_md,
                             const void *src, const dnnl_memory_desc_t *want, void **owned,
                             kiln_error *err) {
    struct pack_job j = {user_md, want, src};
    size_t bytes = dnnl_memory_desc_get_size(want);
    *owned = NULL;
    if (cache) {
        /* the target descriptor says how the bytes were derived */
        dnnl_memory_desc_t key;
        memset(&key, 0, sizeof key);
        memcpy(&key, want, sizeof key);
        return kiln_wcache_get(cache, src, &key, sizeof key, bytes, pack_fill, &j, err);
    }
    size_t alloc = (bytes + 63) / 64 * 64;
    void *buf = aligned_alloc(64, alloc ? alloc : 64);
    if (!buf) {
        kiln_fail(err, KILN_ERR_NO_MEMORY, "oneDNN weights: %zu bytes", bytes);
        return NULL;
    }
    if (pack_fill(buf, &j, err) != KILN_OK) {
        free(buf);
        return NULL;
    }
    *owned = buf;
    return buf;
}

/* (dnnl.h) */
bool kiln_dnnl_append_activation(dnnl_post_ops_t po, int32_t act, float alpha, float beta) {
    switch (act) {
    case KILN_ACT_NONE: return true;
    case KILN_ACT_RELU: return !dnnl_post_ops_append_eltwise(po, 1.0f, dnnl_eltwise_relu, 0.0f, 0.0f);
    case KILN_ACT_LEAKY_RELU:
        return !dnnl_post_ops_append_eltwise(po, 1.0f, dnnl_eltwise_relu, alpha, 0.0f);
    case KILN_ACT_CLIP:
        return !dnnl_post_ops_append_eltwise(po, 1.0f, dnnl_eltwise_clip_v2, alpha, beta);
    case KILN_ACT_SIGMOID:
        return !dnnl_post_ops_append_eltwise(po, 1.0f, dnnl_eltwise_logistic, 0.0f, 0.0f);
    case KILN_ACT_TANH: return !dnnl_post_ops_append_eltwise(po, 1.0f, dnnl_eltwise_tanh, 0.0f, 0.0f);
    case KILN_ACT_HARD_SWISH:
        return !dnnl_post_ops_append_eltwise(po, 1.0f, dnnl_eltwise_hardswish, 0.0f, 0.0f);
    case KILN_ACT_GELU_ERF:
        return !dnnl_post_ops_append_eltwise(po, 1.0f, dnnl_eltwise_gelu_erf, 0.0f, 0.0f);
    case KILN_ACT_GELU_TANH:
        return !dnnl_post_ops_append_eltwise(po, 1.0f, dnnl_eltwise_gelu_tanh, 0.0f, 0.0f);
    case KILN_ACT_SILU:   /* x * sigmoid(alpha x) */
        return !dnnl_post_ops_append_eltwise(po, 1.0f, dnnl_eltwise_swish, alpha, 0.0f);
    case KILN_ACT_HARD_SIGMOID:
        return !dnnl_post_ops_append_eltwise(po, 1.0f, dnnl_eltwise_linear, alpha, beta) &&
               !dnnl_post_ops_append_eltwise(po, 1.0f, dnnl_eltwise_clip_v2, 0.0f, 1.0f);
    default: return false;
    }
}

/* (dnnl.h) */
void *kiln_dnnl_alloc(size_t n) {
    if (n == 0) n = 64;
    n = (n + 63) & ~(size_t)63;
    return aligned_alloc(64, n);
}

/* (dnnl.h) */
dnnl_status_t kiln_dnnl_make_scratch(dnnl_primitive_desc_t pd, dnnl_engine_t eng, void **buf,
                                     dnnl_memory_t *mem) {
    const dnnl_memory_desc_t *smd = dnnl_primitive_desc_query_md(pd, dnnl_query_scratchpad_md, 0);
    if (!smd) return dnnl_runtime_error;
    *buf = kiln_dnnl_alloc(dnnl_memory_desc_get_size(smd));
    if (!*buf) return dnnl_out_of_memory;
    return dnnl_memory_create(mem, smd, eng, *buf);
}
