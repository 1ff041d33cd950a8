/* model.c — loading a model and describing it. */
#include "runtime/model.h"
#include "base/status.h"
#include "ops/op.h"
#include "passes/passes.h"
#include "base/wcache.h"
#include "plan/symbolic.h"
#include "plan/plan.h"

#include <libgen.h>
#include <limits.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

#define KILN_DEFAULT_MAX_TENSOR (4ull << 30)
#define KILN_DEFAULT_MAX_ARENA (16ull << 30)
#define KILN_MAX_MODEL_FILE (8ull << 30)

kiln_load_options kiln_load_options_default(void) {
    kiln_load_options o = {.size = sizeof o,
                           .max_tensor_bytes = KILN_DEFAULT_MAX_TENSOR,
                           .max_arena_bytes = KILN_DEFAULT_MAX_ARENA};
    return o;
}

static kiln_load_options resolve_opts(const kiln_load_options *opts) {
    kiln_load_options o = kiln_load_options_default();
    if (opts) {
        if (opts->max_tensor_bytes) o.max_tensor_bytes = opts->max_tensor_bytes;
        if (opts->max_arena_bytes) o.max_arena_bytes = opts->max_arena_bytes;
        o.no_optimize = opts->no_optimize;
    }
    return o;
}

/* Declared input shapes are checked now, so an impossible model fails at load. */
static kiln_status check_inputs(const struct kiln_model *m, kiln_error *err) {
    const struct kiln_graph *g = m->onnx.graph;
    for (int32_t i = 0; i < g->n_inputs; i++) {
        const struct kiln_value_info *vi = &g->values[g->inputs[i]];
        if (!vi->has_shape || vi->v.dtype == KILN_DTYPE_UNDEFINED) continue;
        uint64_t bytes = kiln_dtype_size(vi->v.dtype);
        for (int32_t r = 0; r < vi->v.rank; r++) {
            if (vi->v.dims[r] < 0) continue;
            if (kiln_mul_overflow_u64(bytes, (uint64_t)vi->v.dims[r], &bytes))
                return kiln_fail(err, KILN_ERR_LIMIT,
                                 "%s: input '%s': declared shape overflows a 64-bit size",
                                 m->label, vi->name);
        }
        if (bytes > m->opts.max_tensor_bytes)
            return kiln_fail(err, KILN_ERR_LIMIT,
                             "%s: input '%s': declared shape needs %llu bytes, over the limit of "
                             "%llu",
                             m->label, vi->name, (unsigned long long)bytes,
                             (unsigned long long)m->opts.max_tensor_bytes);
    }
    return KILN_OK;
}

static kiln_status load_common(const uint8_t *buf, size_t len, const char *dir, const char *label,
                               const kiln_load_options *opts, kiln_model **out, kiln_error *err) {
    struct kiln_model *m = calloc(1, sizeof *m);
    if (!m) return kiln_fail(err, KILN_ERR_NO_MEMORY, "%s: model", label);
    m->opts = resolve_opts(opts);
    m->label = strdup(label);
    if (!m->label) {
        free(m);
        return kiln_fail(err, KILN_ERR_NO_MEMORY, "%s", label);
    }
    struct kiln_import_limits lim = {.max_tensor_bytes = m->opts.max_tensor_bytes};
    kiln_status s = kiln_onnx_import(buf, len, dir, label, &lim, &m->onnx, err);
    if (!s) s = check_inputs(m, err);
    if (!s && !m->opts.no_optimize) s = kiln_passes_run(m->onnx.graph, err);
    if (s) {
        kiln_model_free(m);
        return s;
    }
    for (int32_t i = 0; i < m->onnx.n_opsets; i++) {
        const char *d = m->onnx.opsets[i].domain;
        if (!*d || !strcmp(d, "ai.onnx")) m->opset = m->onnx.opsets[i].version;
    }
    if (!(m->wcache = kiln_wcache_new())) {
        kiln_model_free(m);
        return kiln_fail(err, KILN_ERR_NO_MEMORY, "%s: model", label);
    }
    *out = m;
    return KILN_OK;
}

static kiln_status load_plan(const char *path, const kiln_load_options *opts, kiln_model **out,
                             kiln_error *err) {
    struct kiln_model *m = calloc(1, sizeof *m);
    if (!m || !(m->label = strdup(path))) {
        free(m);
        return kiln_fail(err, KILN_ERR_NO_MEMORY, "%s: model", path);
    }
    m->opts = resolve_opts(opts);
    kiln_status s = kiln_artifact_map(path, &m->art, err);
    if (s) {
        kiln_model_free(m);
        return s;
    }
    m->from_plan = true;
    m->onnx.graph = m->art.graph;
    m->art.graph = NULL;
    s = check_inputs(m, err);
    if (s) {
        kiln_model_free(m);
        return s;
    }
    /* the default-domain opset is the highest any node records */
    for (int32_t i = 0; i < m->onnx.graph->n_nodes; i++)
        if (!*m->onnx.graph->nodes[i].domain && m->onnx.graph->nodes[i].opset > m->opset)
            m->opset = m->onnx.graph->nodes[i].opset;
    if (!(m->wcache = kiln_wcache_new())) {
        kiln_model_free(m);
        return kiln_fail(err, KILN_ERR_NO_MEMORY, "%s: model", path);
    }
    /* stored plans and packed weights fit the CPU features they were compiled
     * for: on another CPU the plans are rebuilt at first run (layouts differ)
     * and kernels that want other weight layouts pack their own copies */
    const char *here = kiln_cpu_features_str();
    if (strcmp(m->art.header.cpu_features, here) && (m->art.n_plans || m->art.n_packed)) {
        m->plans_foreign = true;
        size_t wl = strlen(path) + strlen(here) + sizeof m->art.header.cpu_features + 200;
        char was[sizeof m->art.header.cpu_features];
        /* the file's bytes, shown printable */
        for (size_t i = 0; i < sizeof was; i++) {
            char c = m->art.header.cpu_features[i];
            was[i] = c && (c < 32 || c > 126) ? '?' : c;
        }
        char plans[64] = "";
        if (m->art.n_plans)
            snprintf(plans, sizeof plans, "%d stored plan%s re-planned at first run, ", m->art.n_plans,
                     m->art.n_plans == 1 ? "" : "s");
        if ((m->warning = malloc(wl)))
            snprintf(m->warning, wl,
                     "%s: compiled for CPU features '%s', this CPU has '%s': %sweights re-packed where "
                     "kernels need it",
                     path, was, here, plans);
        if (m->warning) fprintf(stderr, "kiln: warning: %s\n", m->warning);
    }
    /* pre-packed weights are used straight from the mapping: every process
     * shares them through the page cache. A kernel that wants another layout
     * (another CPU) misses the cache and packs its own copy. */
    for (int32_t i = 0; i < m->art.n_packed; i++) {
        const struct kiln_artifact_packed *pk = &m->art.packed[i];
        if (kiln_wcache_put_borrowed(m->wcache, m->onnx.graph->values[pk->value].v.data, pk->key,
                                     pk->key_len, (void *)pk->data, pk->bytes)) {
            kiln_model_free(m);
            return kiln_fail(err, KILN_ERR_NO_MEMORY, "%s: packed weights", path);
        }
    }
    *out = m;
    return KILN_OK;
}

int32_t kiln_model_is_plan(const kiln_model *m) { return m && m->from_plan; }

const char *kiln_model_warning(const kiln_model *m) { return m ? m->warning : NULL; }

struct packed_list {
    const struct kiln_graph *g;
    struct kiln_artifact_packed *e;
    int32_t n, cap;
    bool oom;
};

static void collect_packed(const void *src, const void *key, size_t key_len, const void *buf,
                           size_t bytes, void *user) {
    struct packed_list *l = user;
    int32_t value = -1;
    for (int32_t v = 0; v < l->g->n_values && value < 0; v++)
        if (l->g->values[v].is_const && l->g->values[v].v.data == src) value = v;
    if (value < 0 || l->oom) return; /* packed from a subgraph or folded constant: not stored */
    if (l->n == l->cap) {
        int32_t nc = l->cap ? l->cap * 2 : 64;
        struct kiln_artifact_packed *ne = realloc(l->e, (size_t)nc * sizeof *ne);
        if (!ne) {
            l->oom = true;
            return;
        }
        l->e = ne;
        l->cap = nc;
    }
    l->e[l->n++] = (struct kiln_artifact_packed){value, key, key_len, buf, bytes};
}

/* Plans the model at each batch size: its kernels pack their weights into the
 * model's cache, and the plans are stored in the file. Skipped when an input
 * has an open dim other than the leading batch dim (no shape to plan for).
 * Batch sizes that give the same input shapes (a static batch dim) plan once. */
static int32_t plan_batches(const struct kiln_model *m, const int32_t *batches, int32_t n,
                            struct kiln_plan **plans, int32_t *planned_batch,
                            struct kiln_save_plan_opts *o) {
    const struct kiln_graph *g = m->onnx.graph;
    int32_t one = 1, np = 0;
    if (!batches || n <= 0) batches = &one, n = 1;
    if (g->n_inputs > 256) return 0;
    for (int32_t b = 0; b < n && np < KILN_ARTIFACT_MAX_PLANS; b++) {
        if (o && o->progress) o->progress(o->user, b, n);
        struct kiln_value in[256];
        for (int32_t i = 0; i < g->n_inputs; i++) {
            const struct kiln_value_info *vi = &g->values[g->inputs[i]];
            memset(&in[i], 0, sizeof in[i]);
            in[i].dtype = vi->v.dtype;
            in[i].rank = vi->v.rank;
            for (int32_t r = 0; r < vi->v.rank; r++) {
                in[i].dims[r] = vi->v.dims[r] >= 0 ? vi->v.dims[r] : r == 0 ? batches[b] : -1;
                if (in[i].dims[r] < 0 || !vi->has_shape) return np;
            }
        }
        struct kiln_exec_ctx ctx = {.n_threads = 1, .model_label = m->label, .wcache = m->wcache};
        struct kiln_plan_options po = {.prepare = 1, .max_arena_bytes = m->opts.max_arena_bytes,
                                       .max_tensor_bytes = m->opts.max_tensor_bytes, .label = m->label};
        struct kiln_plan *p = NULL;
        kiln_error perr;
        if (kiln_plan_build(g, in, &po, &ctx, &p, &perr) != KILN_OK) continue;
        bool dup = p->dynamic;
        for (int32_t k = 0; k < np && !dup; k++) dup = !strcmp(plans[k]->key, p->key);
        if (dup) {
            kiln_plan_free(p);
            continue;
        }
        plans[np] = p;
        planned_batch[np++] = g->n_inputs && in[0].rank ? (int32_t)in[0].dims[0] : batches[b];
    }
    if (o && o->progress) o->progress(o->user, n, n);
    return np;
}

kiln_status kiln_model_save_plan(const kiln_model *m, const char *path, const int32_t *batch_sizes,
                                 int32_t n_batch_sizes, kiln_error *err) {
    return kiln_model_save_plan_ex(m, path, batch_sizes, n_batch_sizes, NULL, err);
}

kiln_status kiln_model_save_plan_precision(const kiln_model *m, const char *path,
                                           const int32_t *batch_sizes, int32_t n_batch_sizes,
                                           const char *precision, kiln_error *err) {
    struct kiln_save_plan_opts o = {.precision = precision};
    return kiln_model_save_plan_ex(m, path, batch_sizes, n_batch_sizes, &o, err);
}

kiln_status kiln_model_save_plan_ex(const kiln_model *m, const char *path, const int32_t *batch_sizes,
                                    int32_t n_batch_sizes, struct kiln_save_plan_opts *o,
                                    kiln_error *err) {
    kiln_error_clear(err);
    if (!m || !path) return kiln_fail(err, KILN_ERR_INVALID_ARG, "kiln_model_save_plan: NULL argument");
    struct kiln_plan *plans[KILN_ARTIFACT_MAX_PLANS];
    int32_t planned[KILN_ARTIFACT_MAX_PLANS];
    int32_t np = plan_batches(m, batch_sizes, n_batch_sizes, plans, planned, o);
    if (o) {
        o->n_planned = np;
        for (int32_t i = 0; i < np; i++) {
            o->batch[i] = planned[i];
            o->arena_bytes[i] = plans[i]->arena_bytes;
            o->flops[i] = plans[i]->flops;
        }
    }
    struct packed_list pl = {.g = m->onnx.graph};
    kiln_wcache_visit(m->wcache, collect_packed, &pl);
    kiln_status s;
    if (pl.oom) {
        s = kiln_fail(err, KILN_ERR_NO_MEMORY, "%s: packed weights", path);
    } else {
        struct kiln_artifact_info info = {.precision = o && o->precision ? o->precision : "fp32",
                                          .n_batch_sizes = batch_sizes ? n_batch_sizes : 0,
                                          .batch_sizes = batch_sizes,
                                          .n_packed = pl.n,
                                          .packed = pl.e,
                                          .n_plans = np,
                                          .plans = (const struct kiln_plan *const *)plans,
                                          .plan_batches = planned};
        const char *src = m->from_plan || m->from_buffer ? NULL : m->label;
        s = kiln_artifact_write(m->onnx.graph, src, &info, path, err);
    }
    free(pl.e);
    for (int32_t i = 0; i < np; i++) kiln_plan_free(plans[i]);
    return s;
}

kiln_status kiln_model_load(const char *path, const kiln_load_options *opts, kiln_model **out,
                            kiln_error *err) {
    kiln_error_clear(err);
    if (!path || !out) return kiln_fail(err, KILN_ERR_INVALID_ARG, "kiln_model_load: NULL argument");
    *out = NULL;
    {
        /* a compiled plan starts with its magic; it is mapped, not read */
        FILE *f = fopen(path, "rb");
        uint8_t magic[8];
        if (f && fread(magic, 1, 8, f) == 8 && kiln_artifact_is_plan(magic, 8)) {
            fclose(f);
            return load_plan(path, opts, out, err);
        }
        if (f) fclose(f);
    }
    uint8_t *buf;
    size_t len;
    kiln_status s = kiln_read_file(path, KILN_MAX_MODEL_FILE, &buf, &len, err);
    if (s) return s;
    char tmp[PATH_MAX];
    snprintf(tmp, sizeof tmp, "%s", path);
    s = load_common(buf, len, dirname(tmp), path, opts, out, err);
    free(buf);
    return s;
}

kiln_status kiln_model_load_buffer(const void *data, size_t size, const char *label,
                                   const kiln_load_options *opts, kiln_model **out,
                                   kiln_error *err) {
    kiln_error_clear(err);
    if (!data || !out) return kiln_fail(err, KILN_ERR_INVALID_ARG, "kiln_model_load_buffer: NULL argument");
    *out = NULL;
    kiln_status s = load_common(data, size, NULL, label ? label : "<memory>", opts, out, err);
    if (!s) (*out)->from_buffer = true;
    return s;
}

void kiln_model_free(kiln_model *m) {
    if (!m) return;
    kiln_onnx_model_clear(&m->onnx);
    kiln_wcache_free(m->wcache);
    kiln_graph_free(m->art.graph);
    kiln_artifact_unmap(&m->art);
    free(m->warning);
    free(m->label);
    free(m);
}

int32_t kiln_model_n_inputs(const kiln_model *m) { return m ? m->onnx.graph->n_inputs : 0; }
int32_t kiln_model_n_outputs(const kiln_model *m) { return m ? m->onnx.graph->n_outputs : 0; }
int64_t kiln_model_opset(const kiln_model *m) { return m ? m->opset : 0; }

static void fill_info(const struct kiln_value_info *vi, kiln_tensor_info *info) {
    memset(info, 0, sizeof *info);
    info->name = vi->name;
    info->dtype = vi->v.dtype;
    info->rank = vi->has_shape ? vi->v.rank : -1;
    for (int32_t r = 0; r < vi->v.rank && r < KILN_MAX_RANK; r++) {
        info->dims[r] = vi->v.dims[r];
        info->dim_names[r] = vi->dim_names[r];
    }
}

kiln_status kiln_model_input(const kiln_model *m, int32_t i, kiln_tensor_info *info) {
    if (!m || !info || i < 0 || i >= m->onnx.graph->n_inputs) return KILN_ERR_INVALID_ARG;
    fill_info(&m->onnx.graph->values[m->onnx.graph->inputs[i]], info);
    return KILN_OK;
}

kiln_status kiln_model_output(const kiln_model *m, int32_t i, kiln_tensor_info *info) {
    if (!m || !info || i < 0 || i >= m->onnx.graph->n_outputs) return KILN_ERR_INVALID_ARG;
    fill_info(&m->onnx.graph->values[m->onnx.graph->outputs[i]], info);
    return KILN_OK;
}

static void graph_stats(const struct kiln_graph *g, kiln_model_stats *st) {
    for (int32_t i = 0; i < g->n_values; i++)
        if (g->values[i].is_const) {
            st->n_params += kiln_value_numel(&g->values[i].v);
            st->param_bytes += (int64_t)g->values[i].v.nbytes;
        }
    for (int32_t i = 0; i < g->n_nodes; i++) {
        st->n_nodes++;
        if (!g->nodes[i].op) st->n_unsupported++;
        for (int32_t a = 0; a < g->nodes[i].n_attrs; a++)
            if (g->nodes[i].attrs[a].g) graph_stats(g->nodes[i].attrs[a].g, st);
    }
}

kiln_status kiln_model_stats_get(const kiln_model *m, kiln_model_stats *st) {
    if (!m || !st) return KILN_ERR_INVALID_ARG;
    memset(st, 0, sizeof *st);
    graph_stats(m->onnx.graph, st);
    return KILN_OK;
}

struct hist_entry {
    const char *domain, *op;
    int64_t count;
    int supported;
};

static void hist_collect(const struct kiln_graph *g, struct hist_entry **h, int *n, int *cap) {
    for (int32_t i = 0; i < g->n_nodes; i++) {
        const struct kiln_node *nd = &g->nodes[i];
        int j;
        for (j = 0; j < *n; j++)
            if (!strcmp((*h)[j].op, nd->op_type) && !strcmp((*h)[j].domain, nd->domain)) break;
        if (j == *n) {
            if (*n == *cap) {
                int nc = *cap ? *cap * 2 : 32;
                struct hist_entry *nh = realloc(*h, (size_t)nc * sizeof *nh);
                if (!nh) return;
                *h = nh;
                *cap = nc;
            }
            (*h)[j] = (struct hist_entry){nd->domain, nd->op_type, 0, nd->op != NULL};
            (*n)++;
        }
        (*h)[j].count++;
        for (int32_t a = 0; a < nd->n_attrs; a++)
            if (nd->attrs[a].g) hist_collect(nd->attrs[a].g, h, n, cap);
    }
}

void kiln_model_op_histogram(const kiln_model *m, kiln_op_count_fn fn, void *user) {
    if (!m || !fn) return;
    struct hist_entry *h = NULL;
    int n = 0, cap = 0;
    hist_collect(m->onnx.graph, &h, &n, &cap);
    for (int i = 0; i < n; i++) fn(h[i].domain, h[i].op, h[i].count, h[i].supported, user);
    free(h);
}

static void unsupported_walk(const struct kiln_graph *g, kiln_unsupported_fn fn, void *user) {
    for (int32_t i = 0; i < g->n_nodes; i++) {
        const struct kiln_node *nd = &g->nodes[i];
        if (!nd->op) fn(nd->name, nd->domain, nd->op_type, nd->opset, user);
        for (int32_t a = 0; a < nd->n_attrs; a++)
            if (nd->attrs[a].g) unsupported_walk(nd->attrs[a].g, fn, user);
    }
}

void kiln_model_unsupported(const kiln_model *m, kiln_unsupported_fn fn, void *user) {
    if (m && fn) unsupported_walk(m->onnx.graph, fn, user);
}

kiln_status kiln_model_output_shape_symbolic(const kiln_model *m, int32_t i, char *buf, size_t n,
                                             kiln_error *err) {
    kiln_error_clear(err);
    if (!m || !buf || !n || i < 0 || i >= m->onnx.graph->n_outputs)
        return kiln_fail(err, KILN_ERR_INVALID_ARG, "kiln_model_output_shape_symbolic: bad argument");
    return kiln_symbolic_shape(m->onnx.graph, m->onnx.graph->outputs[i], buf, n, err);
}
