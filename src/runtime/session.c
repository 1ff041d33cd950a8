/*
 * session.c — sessions: input checking, plan cache, static and dynamic
 * execution, and subgraph execution for If/Loop/Scan.
 *
 * Static path: a cached plan per input-shape signature; one arena per
 * session sized to the largest plan; a run binds data pointers and calls
 * the planned kernels in order, allocating nothing.
 * Dynamic path (data-dependent shapes, subgraphs): node by node, shapes
 * inferred from real data, buffers malloc'ed and freed by use count.
 */
#define _GNU_SOURCE
#include "base/status.h"
#include "plan/plan.h"
#include "runtime/model.h"

#include <omp.h>
#include <pthread.h>
#include <sched.h>
#include <stddef.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <time.h>
#include <unistd.h>

#define KILN_PLAN_CACHE 8

struct kiln_session {
    const struct kiln_model *model;
    kiln_session_options opts;
    int32_t n_threads;
    struct kiln_plan *plans[KILN_PLAN_CACHE];   /* most recently used first */
    int32_t n_plans;
    uint8_t *arena;
    size_t   arena_bytes;
    /* dynamic-run outputs handed to the caller, freed at the next run */
    struct kiln_value *dyn_out;
    int32_t n_dyn_out;
};

/* A frame holds one graph's runtime values in dynamic execution. */
struct frame {
    const struct kiln_graph *g;
    struct kiln_value *vals;
    uint8_t *owned;            /* 1: vals[i].data was malloc'ed by this frame */
    int32_t *uses;
    struct frame *parent;
    struct kiln_exec_ctx *ctx;
    const struct kiln_value **io_in;   /* argument arrays sized for the widest node */
    struct kiln_value **io_out;
};

int32_t kiln_cpu_count(void) {
    cpu_set_t set;
    if (sched_getaffinity(0, sizeof set, &set) == 0) {
        int n = CPU_COUNT(&set);
        if (n > 0) return n;
    }
    long n = sysconf(_SC_NPROCESSORS_ONLN);
    return n > 0 ? (int32_t)n : 1;
}

kiln_session_options kiln_session_options_default(void) {
    kiln_session_options o;
    memset(&o, 0, sizeof o);
    o.size = sizeof o;
    return o;
}

/* Unsupported ops and non-tensor values are reported at session creation,
 * by name, including those inside subgraphs. */
static kiln_status check_supported(const struct kiln_model *m, const struct kiln_graph *g,
                                   kiln_error *err) {
    for (int32_t i = 0; i < g->n_nodes; i++) {
        const struct kiln_node *n = &g->nodes[i];
        if (!n->op)
            return kiln_fail(err, KILN_ERR_UNSUPPORTED,
                             "%s: node '%s': op %s%s%s (opset %lld) is not implemented", m->label,
                             n->name, *n->domain ? n->domain : "", *n->domain ? "." : "",
                             n->op_type, (long long)n->opset);
        for (int32_t a = 0; a < n->n_attrs; a++)
            if (n->attrs[a].g) {
                kiln_status s = check_supported(m, n->attrs[a].g, err);
                if (s) return s;
            }
    }
    for (int32_t i = 0; i < g->n_values; i++) {
        const struct kiln_value_info *vi = &g->values[i];
        bool io = vi->is_input || vi->non_tensor;
        if (io && (vi->non_tensor || (vi->is_input && !g->parent && vi->v.dtype == KILN_DTYPE_UNDEFINED)))
            return kiln_fail(err, KILN_ERR_UNSUPPORTED,
                             "%s: value '%s' is not a tensor of a supported type (sequences, "
                             "optionals, maps and strings are not supported)",
                             m->label, vi->name);
    }
    return KILN_OK;
}

kiln_status kiln_session_create(const kiln_model *m, const kiln_session_options *opts,
                                kiln_session **out, kiln_error *err) {
    kiln_error_clear(err);
    if (!m || !out) return kiln_fail(err, KILN_ERR_INVALID_ARG, "kiln_session_create: NULL argument");
    *out = NULL;
    kiln_status st = check_supported(m, m->onnx.graph, err);
    if (st) return st;
    struct kiln_session *s = calloc(1, sizeof *s);
    if (!s) return kiln_fail(err, KILN_ERR_NO_MEMORY, "%s: session", m->label);
    s->model = m;
    s->opts = opts ? *opts : kiln_session_options_default();
    s->n_threads = s->opts.n_threads > 0 ? s->opts.n_threads : kiln_cpu_count();
    if (s->opts.n_pin_cpus < 0 || s->opts.n_pin_cpus > KILN_MAX_PIN_CPUS) {
        int32_t bad = s->opts.n_pin_cpus;
        free(s);
        return kiln_fail(err, KILN_ERR_INVALID_ARG, "session: n_pin_cpus %d out of range", bad);
    }
    *out = s;
    return KILN_OK;
}

static void free_dyn_out(struct kiln_session *s) {
    for (int32_t i = 0; i < s->n_dyn_out; i++) free(s->dyn_out[i].data);
    free(s->dyn_out);
    s->dyn_out = NULL;
    s->n_dyn_out = 0;
}

void kiln_session_free(kiln_session *s) {
    if (!s) return;
    for (int32_t i = 0; i < s->n_plans; i++) kiln_plan_free(s->plans[i]);
    free(s->arena);
    free_dyn_out(s);
    free(s);
}

uint64_t kiln_session_arena_bytes(const kiln_session *s) { return s ? s->arena_bytes : 0; }

int32_t kiln_session_plan_stored(const kiln_session *s) {
    return s && s->n_plans && s->plans[0]->stored;
}

/* The .kiln file's stored plan for these input shapes, when this session may
 * use it: same CPU features, same layout request, fast kernels. */
static const struct kiln_stored_plan *stored_plan_for(const struct kiln_session *s, const char *key) {
    const struct kiln_model *m = s->model;
    if (!m->from_plan || m->plans_foreign || s->opts.reference_kernels) return NULL;
    for (int32_t i = 0; i < m->art.n_plans; i++) {
        const struct kiln_stored_plan *sp = &m->art.plans[i];
        if (sp->activation_layout == s->opts.activation_layout && !strcmp(sp->key, key)) return sp;
    }
    return NULL;
}

int32_t kiln_session_profile(const kiln_session *s, kiln_profile_entry *entries, int32_t max) {
    if (!s || !s->n_plans) return 0;
    const struct kiln_plan *p = s->plans[0];
    const struct kiln_graph *g = s->model->onnx.graph;
    for (int32_t i = 0; i < p->n_steps && i < max && entries; i++) {
        const struct kiln_step *st = &p->steps[i];
        const struct kiln_node *n = &g->nodes[st->node];
        entries[i] = (kiln_profile_entry){n->name, n->op_type, st->impl[0] ? st->impl : st->kernel.impl ? st->kernel.impl : "ref",
                                          st->prof_ms, st->prof_calls};
    }
    return p->n_steps;
}

/* ---- input checking ---------------------------------------------------- */

static void declared_str(const struct kiln_value_info *vi, char *buf, size_t n) {
    size_t off = (size_t)snprintf(buf, n, "%s [", kiln_dtype_name(vi->v.dtype));
    for (int32_t r = 0; r < vi->v.rank && off < n; r++) {
        const char *sep = r ? "," : "";
        if (vi->v.dims[r] >= 0) off += (size_t)snprintf(buf + off, n - off, "%s%lld", sep, (long long)vi->v.dims[r]);
        else off += (size_t)snprintf(buf + off, n - off, "%s%s", sep, vi->dim_names[r] ? vi->dim_names[r] : "?");
    }
    if (off < n) snprintf(buf + off, n - off, "]");
}

static kiln_status bind_inputs(const struct kiln_session *s, const kiln_tensor *inputs,
                               int32_t n_inputs, struct kiln_value *bound, kiln_error *err) {
    const struct kiln_model *m = s->model;
    const struct kiln_graph *g = m->onnx.graph;
    if (n_inputs != g->n_inputs)
        return kiln_fail(err, KILN_ERR_INVALID_ARG, "%s: expected %d inputs, got %d", m->label,
                         g->n_inputs, n_inputs);
    /* symbolic dims must agree across inputs ("batch" is one number) */
    const char *sym_name[64];
    int64_t sym_val[64];
    int n_sym = 0;
    for (int32_t i = 0; i < g->n_inputs; i++) {
        const struct kiln_value_info *vi = &g->values[g->inputs[i]];
        const kiln_tensor *t = NULL;
        for (int32_t j = 0; j < n_inputs; j++)
            if (inputs[j].name && !strcmp(inputs[j].name, vi->name)) t = &inputs[j];
        if (!t && !inputs[i].name) t = &inputs[i];
        if (!t)
            return kiln_fail(err, KILN_ERR_INVALID_ARG, "%s: input '%s' is missing", m->label,
                             vi->name);
        char want[256], got[256];
        struct kiln_value gv = {.dtype = t->dtype, .rank = t->rank};
        if (t->rank < 0 || t->rank > KILN_MAX_RANK)
            return kiln_fail(err, KILN_ERR_SHAPE, "%s: input '%s': rank %d out of range",
                             m->label, vi->name, t->rank);
        for (int32_t r = 0; r < t->rank; r++) gv.dims[r] = t->dims[r];
        declared_str(vi, want, sizeof want);
        snprintf(got, sizeof got, "%s ", kiln_dtype_name(t->dtype));
        kiln_shape_str(&gv, got + strlen(got), sizeof got - strlen(got));
        bool ok = t->dtype == vi->v.dtype && (!vi->has_shape || t->rank == vi->v.rank);
        for (int32_t r = 0; ok && r < t->rank; r++) {
            if (t->dims[r] < 0) ok = false;
            else if (vi->has_shape && vi->v.dims[r] >= 0 && vi->v.dims[r] != t->dims[r]) ok = false;
            else if (vi->has_shape && vi->dim_names[r]) {
                int k;
                for (k = 0; k < n_sym; k++)
                    if (!strcmp(sym_name[k], vi->dim_names[r])) break;
                if (k < n_sym && sym_val[k] != t->dims[r])
                    return kiln_fail(err, KILN_ERR_SHAPE,
                                     "%s: input '%s': dim %d '%s' is %lld, but another input "
                                     "set it to %lld",
                                     m->label, vi->name, r, vi->dim_names[r],
                                     (long long)t->dims[r], (long long)sym_val[k]);
                if (k == n_sym && n_sym < 64) {
                    sym_name[n_sym] = vi->dim_names[r];
                    sym_val[n_sym++] = t->dims[r];
                }
            }
        }
        if (!ok)
            return kiln_fail(err, KILN_ERR_SHAPE, "%s: input '%s': expected %s, got %s", m->label,
                             vi->name, want, got);
        size_t bytes;
        if (!kiln_value_bytes(&gv, &bytes) || bytes > m->opts.max_tensor_bytes)
            return kiln_fail(err, KILN_ERR_LIMIT, "%s: input '%s': %s exceeds the tensor size limit",
                             m->label, vi->name, got);
        if (t->nbytes != bytes || (bytes && !t->data))
            return kiln_fail(err, KILN_ERR_SHAPE,
                             "%s: input '%s': shape %s needs %zu bytes of data, got %zu%s",
                             m->label, vi->name, got, bytes, t->nbytes,
                             t->data ? "" : " (data is NULL)");
        gv.data = t->data;
        gv.nbytes = bytes;
        bound[i] = gv;
    }
    return KILN_OK;
}

/* ---- dynamic execution --------------------------------------------------- */

static struct kiln_value *frame_lookup(struct frame *f, int32_t id) {
    while (f->g->values[id].outer >= 0 && f->parent) {
        id = f->g->values[id].outer;
        f = f->parent;
    }
    return &f->vals[id];
}

static void frame_release(struct frame *f, int32_t id) {
    if (f->owned[id] && --f->uses[id] <= 0) {
        if (f->ctx->live_bytes) *f->ctx->live_bytes -= f->vals[id].nbytes;
        free(f->vals[id].data);
        f->vals[id].data = NULL;
        f->owned[id] = 0;
    }
}

static kiln_status run_subgraph(struct kiln_exec_ctx *ctx, const struct kiln_graph *body,
                                const struct kiln_value *const *in, int n_in,
                                struct kiln_value *out, int n_out, kiln_error *err);

/* Runs graph g node by node. vals[] must hold constants and bound inputs. */
static kiln_status run_frame(struct frame *f, kiln_error *err) {
    const struct kiln_graph *g = f->g;
    struct kiln_exec_ctx *ctx = f->ctx;
    struct kiln_exec_ctx local = *ctx;
    local.frame = f;
    local.run_subgraph = run_subgraph;
    for (int32_t ni = 0; ni < g->n_nodes; ni++) {
        const struct kiln_node *n = &g->nodes[ni];
        if (!n->op)
            return kiln_fail(err, KILN_ERR_UNSUPPORTED,
                             "%s: node '%s': op %s (opset %lld) is not implemented",
                             ctx->model_label, n->name, n->op_type, (long long)n->opset);
        const struct kiln_value **in = f->io_in;
        struct kiln_value **outv = f->io_out;
        for (int32_t j = 0; j < n->n_inputs; j++) {
            in[j] = n->inputs[j] >= 0 ? frame_lookup(f, n->inputs[j]) : NULL;
            if (in[j] && !in[j]->data && in[j]->nbytes)
                return kiln_fail(err, KILN_ERR_INTERNAL, "node '%s': input %d has no data", n->name, j);
        }
        for (int32_t j = 0; j < n->n_outputs; j++)
            outv[j] = n->outputs[j] >= 0 ? &f->vals[n->outputs[j]] : NULL;
        kiln_status s;
        if (n->op->flags & KILN_OP_SUBGRAPH) {
            /* the op runs its subgraphs and hands back malloc'ed outputs */
            for (int32_t j = 0; j < n->n_outputs; j++)
                if (outv[j]) memset(outv[j], 0, sizeof *outv[j]);
            s = n->op->exec(n, &local, in, n->n_inputs, outv, n->n_outputs, err);
            if (s) {
                if (err && !strstr(err->msg, n->name)) kiln_fail_prefix(err, s, "node '%s' (%s)", n->name, n->op_type);
                return s;
            }
            for (int32_t j = 0; j < n->n_outputs; j++)
                if (outv[j]) {
                    f->owned[n->outputs[j]] = 1;
                    f->uses[n->outputs[j]] = g->values[n->outputs[j]].n_consumers;
                    if (ctx->live_bytes) *ctx->live_bytes += outv[j]->nbytes;
                }
            for (int32_t j = 0; j < n->n_inputs; j++)
                if (n->inputs[j] >= 0 && g->values[n->inputs[j]].outer < 0) frame_release(f, n->inputs[j]);
            /* values the subgraphs read from this frame were counted as uses of this node */
            for (int32_t a = 0; a < n->n_attrs; a++) {
                const struct kiln_graph *sub = n->attrs[a].g;
                for (int32_t v = 0; sub && v < sub->n_values; v++)
                    if (sub->values[v].outer >= 0 && g->values[sub->values[v].outer].outer < 0)
                        frame_release(f, sub->values[v].outer);
            }
            continue;
        }
        s = n->op->infer(n, in, n->n_inputs, outv, n->n_outputs, err);
        if (s == KILN_DYNAMIC)
            return kiln_fail(err, KILN_ERR_INTERNAL, "%s: node '%s' (%s): shape still unknown with all data present",
                             ctx->model_label, n->name, n->op_type);
        if (s) {
            if (err && !strstr(err->msg, ctx->model_label)) kiln_fail_prefix(err, s, "%s", ctx->model_label);
            return s;
        }
        for (int32_t j = 0; j < n->n_outputs; j++) {
            if (!outv[j]) continue;
            size_t bytes;
            bool fits = kiln_value_bytes(outv[j], &bytes);
            if (!fits || (ctx->max_tensor_bytes && bytes > ctx->max_tensor_bytes)) {
                char sh[256];
                kiln_shape_str(outv[j], sh, sizeof sh);
                return kiln_fail(err, KILN_ERR_LIMIT,
                                 "%s: node '%s' (%s) output %d has shape %s, over the tensor size "
                                 "limit of %llu bytes",
                                 ctx->model_label, n->name, n->op_type, j, sh,
                                 (unsigned long long)ctx->max_tensor_bytes);
            }
            if (ctx->max_live_bytes && ctx->live_bytes && *ctx->live_bytes + bytes > ctx->max_live_bytes)
                return kiln_fail(err, KILN_ERR_LIMIT,
                                 "%s: node '%s' (%s): live activations would reach %llu bytes, "
                                 "over the memory limit of %llu bytes",
                                 ctx->model_label, n->name, n->op_type,
                                 (unsigned long long)(*ctx->live_bytes + bytes),
                                 (unsigned long long)ctx->max_live_bytes);
            if (ctx->live_bytes) *ctx->live_bytes += bytes;
            outv[j]->nbytes = bytes;
            outv[j]->data = kiln_aligned_alloc(bytes);
            if (!outv[j]->data)
                return kiln_fail(err, KILN_ERR_NO_MEMORY, "%s: node '%s': %zu bytes",
                                 ctx->model_label, n->name, bytes);
            f->owned[n->outputs[j]] = 1;
            f->uses[n->outputs[j]] = g->values[n->outputs[j]].n_consumers;
        }
        struct kiln_kernel k = {0};
        if (n->op->prepare && !ctx->reference_only) {
            s = n->op->prepare(n, &local, in, n->n_inputs, outv, n->n_outputs, &k, err);
            if (s) return s;
        }
        if (k.run) s = k.run(n, &local, k.state, in, n->n_inputs, outv, n->n_outputs, err);
        else s = n->op->exec(n, &local, in, n->n_inputs, outv, n->n_outputs, err);
        if (!s && n->act.kind && !(k.run && k.fused_activation)) s = kiln_activation_apply(n, outv[0], err);
        if (k.release) k.release(k.state);
        if (s) {
            if (err && !strstr(err->msg, n->name)) kiln_fail_prefix(err, s, "node '%s' (%s)", n->name, n->op_type);
            return s;
        }
        for (int32_t j = 0; j < n->n_inputs; j++)
            if (n->inputs[j] >= 0 && g->values[n->inputs[j]].outer < 0) frame_release(f, n->inputs[j]);
    }
    return KILN_OK;
}

static void frame_free(struct frame *f) {
    if (f->vals)
        for (int32_t i = 0; i < f->g->n_values; i++)
            if (f->owned[i]) {
                if (f->ctx->live_bytes) *f->ctx->live_bytes -= f->vals[i].nbytes;
                free(f->vals[i].data);
            }
    free(f->vals);
    free(f->owned);
    free(f->uses);
    free(f->io_in);
    free(f->io_out);
}

static kiln_status frame_init(struct frame *f, const struct kiln_graph *g, struct frame *parent,
                              struct kiln_exec_ctx *ctx, kiln_error *err) {
    memset(f, 0, sizeof *f);
    f->g = g;
    f->parent = parent;
    f->ctx = ctx;
    size_t n = (size_t)(g->n_values ? g->n_values : 1);
    f->vals = calloc(n, sizeof *f->vals);
    f->owned = calloc(n, 1);
    f->uses = calloc(n, sizeof *f->uses);
    int32_t max_io = kiln_graph_max_io(g);
    f->io_in = calloc((size_t)max_io, sizeof *f->io_in);
    f->io_out = calloc((size_t)max_io, sizeof *f->io_out);
    if (!f->vals || !f->owned || !f->uses || !f->io_in || !f->io_out) {
        frame_free(f);
        return kiln_fail(err, KILN_ERR_NO_MEMORY, "frame");
    }
    for (int32_t i = 0; i < g->n_values; i++)
        if (g->values[i].is_const) f->vals[i] = g->values[i].v;
    return KILN_OK;
}

/* Copies value v into a fresh malloc'ed value. */
static kiln_status value_clone(const struct kiln_value *v, struct kiln_value *out, kiln_error *err) {
    *out = *v;
    out->data = kiln_aligned_alloc(v->nbytes);
    if (!out->data) return kiln_fail(err, KILN_ERR_NO_MEMORY, "output copy");
    if (v->nbytes) memcpy(out->data, v->data, v->nbytes);
    return KILN_OK;
}

static kiln_status run_subgraph(struct kiln_exec_ctx *ctx, const struct kiln_graph *body,
                                const struct kiln_value *const *in, int n_in,
                                struct kiln_value *out, int n_out, kiln_error *err) {
    if (n_in != body->n_inputs || n_out != body->n_outputs)
        return kiln_fail(err, KILN_ERR_BAD_MODEL,
                         "subgraph '%s': expected %d inputs and %d outputs, got %d and %d",
                         body->name, body->n_inputs, body->n_outputs, n_in, n_out);
    struct frame f;
    kiln_status s = frame_init(&f, body, (struct frame *)ctx->frame, ctx, err);
    if (s) return s;
    for (int i = 0; i < n_in; i++) f.vals[body->inputs[i]] = *in[i];
    s = run_frame(&f, err);
    int done = 0;
    for (; !s && done < n_out; done++) {
        s = value_clone(frame_lookup(&f, body->outputs[done]), &out[done], err);
        if (s) break;
    }
    if (s)
        for (int i = 0; i < done; i++) {
            free(out[i].data);
            out[i].data = NULL;
        }
    frame_free(&f);
    return s;
}

/* ---- static execution ----------------------------------------------------- */

static void bind_plan(struct kiln_plan *p, const struct kiln_graph *g, uint8_t *arena,
                      const struct kiln_value *inputs) {
    for (int32_t i = 0; i < g->n_inputs; i++) p->vals[g->inputs[i]].data = inputs[i].data;
    /* empty values get a valid address too: kernels may hand it to memcpy with size 0 */
    static const max_align_t empty_storage;
    for (int32_t v = 0; v < p->n_values; v++)
        if (p->kind[v] == KILN_VK_ARENA)
            p->vals[v].data = p->vals[v].nbytes ? arena + p->offset[v] : (void *)&empty_storage;
    for (int32_t v = 0; v < p->n_values; v++)
        if (p->kind[v] == KILN_VK_ALIAS) {
            int32_t r = v;
            while (p->kind[r] == KILN_VK_ALIAS) r = p->alias[r];
            p->vals[v].data = p->vals[r].data;
        }
}

/* Runs a reference kernel that only knows plain layouts on plain copies of
 * its channels-last operands (see plan_conversions). */
static kiln_status run_converted(struct kiln_session *s, struct kiln_plan *p,
                                 const struct kiln_step *st, const struct kiln_node *n,
                                 struct kiln_exec_ctx *ctx, kiln_error *err) {
    int32_t ni = n->n_inputs, no = n->n_outputs;
    struct kiln_value *local = p->io_vals;   /* sized 2 * max_io by the planner */
    memset(local, 0, (size_t)(ni + no) * sizeof *local);
    const struct kiln_value **in = p->io_in;
    struct kiln_value **outv = p->io_out;
    for (int32_t j = 0; j < ni + no; j++) {
        int32_t v = j < ni ? n->inputs[j] : n->outputs[j - ni];
        if (v < 0) continue;
        local[j] = p->vals[v];
        if (st->cl_tmp[j]) {
            local[j].data = st->cl_tmp[j];
            local[j].layout = KILN_LAYOUT_PLAIN;
            size_t b;
            if (kiln_value_bytes(&local[j], &b)) local[j].nbytes = b;   /* no padding */
            if (j < ni) kiln_layout_to_plain(&p->vals[v], p->vals[v].data, st->cl_tmp[j]);
        }
        if (j < ni) in[j] = &local[j];
        else outv[j - ni] = &local[j];
    }
    kiln_status rs = st->kernel.run ? st->kernel.run(n, ctx, st->kernel.state, in, ni, outv, no, err)
                                    : n->op->exec(n, ctx, in, ni, outv, no, err);
    if (!rs && n->act.kind && !(st->kernel.run && st->kernel.fused_activation))
        rs = kiln_activation_apply(n, outv[0], err);
    for (int32_t j = ni; !rs && j < ni + no; j++) {
        int32_t v = n->outputs[j - ni];
        if (v >= 0 && st->cl_tmp[j])
            kiln_layout_from_plain(&p->vals[v], st->cl_tmp[j], p->vals[v].data);
    }
    if (rs && err && !strstr(err->msg, n->name))
        kiln_fail_prefix(err, rs, "%s: node '%s' (%s)", s->model->label, n->name, n->op_type);
    return rs;
}

static kiln_status run_plan(struct kiln_session *s, struct kiln_plan *p, struct kiln_exec_ctx *ctx,
                            kiln_error *err) {
    const struct kiln_graph *g = s->model->onnx.graph;
    bool prof = s->opts.profile;
    struct timespec t0, t1;
    for (int32_t si = 0; si < p->n_steps; si++) {
        struct kiln_step *st = &p->steps[si];
        const struct kiln_node *n = &g->nodes[st->node];
        if (prof) clock_gettime(CLOCK_MONOTONIC, &t0);
        const struct kiln_value **in = p->io_in;
        struct kiln_value **outv = p->io_out;
        for (int32_t j = 0; j < n->n_inputs; j++) in[j] = n->inputs[j] >= 0 ? &p->vals[n->inputs[j]] : NULL;
        for (int32_t j = 0; j < n->n_outputs; j++) outv[j] = n->outputs[j] >= 0 ? &p->vals[n->outputs[j]] : NULL;
        kiln_status rs;
        if (st->lop) {
            rs = kiln_layout_run_step(p, st, n, ctx, err);
        } else if (st->convert) {
            rs = run_converted(s, p, st, n, ctx, err);
        } else {
            rs = st->kernel.run ? st->kernel.run(n, ctx, st->kernel.state, in, n->n_inputs, outv, n->n_outputs, err)
                                : n->op->exec(n, ctx, in, n->n_inputs, outv, n->n_outputs, err);
            if (!rs && n->act.kind && !st->kernel.fused_activation)
                rs = kiln_layout_activation(n, outv[0], err);
        }
        if (prof) {
            clock_gettime(CLOCK_MONOTONIC, &t1);
            st->prof_ms += (double)(t1.tv_sec - t0.tv_sec) * 1e3 + (double)(t1.tv_nsec - t0.tv_nsec) / 1e6;
            st->prof_calls++;
        }
        if (rs) {
            if (err && !strstr(err->msg, n->name))
                kiln_fail_prefix(err, rs, "%s: node '%s' (%s)", s->model->label, n->name, n->op_type);
            return rs;
        }
    }
    return KILN_OK;
}

static void pin_threads(const kiln_session_options *o, int32_t n_threads) {
    if (o->n_pin_cpus <= 0) return;
    cpu_set_t set;
    CPU_ZERO(&set);
    for (int32_t i = 0; i < o->n_pin_cpus; i++)
        if (o->pin_cpus[i] >= 0 && o->pin_cpus[i] < CPU_SETSIZE) CPU_SET(o->pin_cpus[i], &set);
    /* every OpenMP worker of this session runs only on the session's cores */
#pragma omp parallel num_threads(n_threads)
    pthread_setaffinity_np(pthread_self(), sizeof set, &set);
}

kiln_status kiln_session_run(kiln_session *s, const kiln_tensor *inputs, int32_t n_inputs,
                             kiln_tensor *outputs, int32_t n_outputs, kiln_error *err) {
    kiln_error_clear(err);
    if (!s || (n_inputs && !inputs) || (n_outputs && !outputs))
        return kiln_fail(err, KILN_ERR_INVALID_ARG, "kiln_session_run: NULL argument");
    const struct kiln_model *m = s->model;
    const struct kiln_graph *g = m->onnx.graph;
    if (n_outputs != g->n_outputs)
        return kiln_fail(err, KILN_ERR_INVALID_ARG, "%s: expected room for %d outputs, got %d",
                         m->label, g->n_outputs, n_outputs);
    struct kiln_value bound[256];
    if (g->n_inputs > 256)
        return kiln_fail(err, KILN_ERR_UNSUPPORTED, "%s: more than 256 inputs", m->label);
    kiln_status st = bind_inputs(s, inputs, n_inputs, bound, err);
    if (st) return st;
    free_dyn_out(s);

    omp_set_num_threads(s->n_threads);
    pin_threads(&s->opts, s->n_threads);
    uint64_t live_bytes = 0;
    struct kiln_exec_ctx ctx = {.n_threads = s->n_threads,
                                .reference_only = s->opts.reference_kernels,
                                .run_subgraph = run_subgraph,
                                .model_label = m->label,
                                .wcache = m->wcache,
                                .max_tensor_bytes = m->opts.max_tensor_bytes,
                                .max_live_bytes = m->opts.max_arena_bytes,
                                .live_bytes = &live_bytes};

    /* find or build the plan for these shapes */
    struct kiln_plan *p = NULL;
    char key[4096];
    size_t kl = 0;
    key[0] = '\0';
    for (int32_t i = 0; i < g->n_inputs && kl < sizeof key - 200; i++) {
        kl += (size_t)snprintf(key + kl, sizeof key - kl, "%d:", (int)bound[i].dtype);
        for (int32_t r = 0; r < bound[i].rank && kl < sizeof key - 40; r++)
            kl += (size_t)snprintf(key + kl, sizeof key - kl, "%lld,", (long long)bound[i].dims[r]);
        kl += (size_t)snprintf(key + kl, sizeof key - kl, ";");
    }
    int32_t hit = -1;
    for (int32_t i = 0; i < s->n_plans; i++)
        if (!strcmp(s->plans[i]->key, key)) hit = i;
    if (hit >= 0) {
        p = s->plans[hit];
        memmove(&s->plans[1], &s->plans[0], (size_t)hit * sizeof p);
        s->plans[0] = p;
    } else {
        struct kiln_plan_options po = {.prepare = !s->opts.reference_kernels,
                                       .activation_layout = s->opts.activation_layout,
                                       .max_arena_bytes = m->opts.max_arena_bytes,
                                       .max_tensor_bytes = m->opts.max_tensor_bytes,
                                       .label = m->label};
        const struct kiln_stored_plan *sp = stored_plan_for(s, key);
        st = sp ? kiln_plan_from_stored(g, sp, &po, &ctx, &p, err)
                : kiln_plan_build(g, bound, &po, &ctx, &p, err);
        if (st) return st;
        if (p->arena_bytes > s->arena_bytes) {
            void *na = kiln_aligned_alloc(p->arena_bytes);
            if (!na) {
                kiln_plan_free(p);
                return kiln_fail(err, KILN_ERR_NO_MEMORY, "%s: arena of %zu bytes", m->label, p->arena_bytes);
            }
            free(s->arena);
            s->arena = na;
            s->arena_bytes = p->arena_bytes;
        }
        if (s->n_plans == KILN_PLAN_CACHE) kiln_plan_free(s->plans[--s->n_plans]);
        memmove(&s->plans[1], &s->plans[0], (size_t)s->n_plans * sizeof p);
        s->plans[0] = p;
        s->n_plans++;
    }

    if (!p->dynamic) {
        bind_plan(p, g, s->arena, bound);
        st = run_plan(s, p, &ctx, err);
        if (st) return st;
        for (int32_t i = 0; i < n_outputs; i++) {
            const struct kiln_value *v = &p->vals[g->outputs[i]];
            kiln_tensor *o = &outputs[i];
            o->name = g->values[g->outputs[i]].name;
            o->dtype = v->dtype;
            o->rank = v->rank;
            memcpy(o->dims, v->dims, sizeof o->dims);
            o->data = v->data;
            o->nbytes = v->nbytes;
        }
        return KILN_OK;
    }

    struct frame f;
    st = frame_init(&f, g, NULL, &ctx, err);
    if (st) return st;
    for (int32_t i = 0; i < g->n_inputs; i++) f.vals[g->inputs[i]] = bound[i];
    st = run_frame(&f, err);
    if (!st) {
        s->dyn_out = calloc((size_t)(n_outputs ? n_outputs : 1), sizeof *s->dyn_out);
        if (!s->dyn_out) st = kiln_fail(err, KILN_ERR_NO_MEMORY, "outputs");
    }
    for (int32_t i = 0; !st && i < n_outputs; i++) {
        st = value_clone(&f.vals[g->outputs[i]], &s->dyn_out[i], err);
        if (st) break;
        s->n_dyn_out = i + 1;
        const struct kiln_value *v = &s->dyn_out[i];
        kiln_tensor *o = &outputs[i];
        o->name = g->values[g->outputs[i]].name;
        o->dtype = v->dtype;
        o->rank = v->rank;
        memcpy(o->dims, v->dims, sizeof o->dims);
        o->data = v->data;
        o->nbytes = v->nbytes;
    }
    frame_free(&f);
    return st;
}

kiln_status kiln_model_estimate_flops(const kiln_model *m, const kiln_tensor *inputs,
                                      int32_t n_inputs, double *flops, kiln_error *err) {
    kiln_error_clear(err);
    if (!m || !flops) return kiln_fail(err, KILN_ERR_INVALID_ARG, "estimate_flops: NULL argument");
    const struct kiln_graph *g = m->onnx.graph;
    if (n_inputs != g->n_inputs || g->n_inputs > 256)
        return kiln_fail(err, KILN_ERR_INVALID_ARG, "%s: expected %d inputs, got %d", m->label,
                         g->n_inputs, n_inputs);
    struct kiln_value bound[256];
    for (int32_t i = 0; i < n_inputs; i++) {
        memset(&bound[i], 0, sizeof bound[i]);
        bound[i].dtype = inputs[i].dtype;
        bound[i].rank = inputs[i].rank;
        memcpy(bound[i].dims, inputs[i].dims, sizeof bound[i].dims);
    }
    struct kiln_exec_ctx ctx = {.n_threads = 1, .reference_only = 1, .run_subgraph = run_subgraph,
                                .model_label = m->label};
    struct kiln_plan_options po = {.prepare = 0,
                                   .max_arena_bytes = m->opts.max_arena_bytes,
                                   .max_tensor_bytes = m->opts.max_tensor_bytes,
                                   .label = m->label};
    struct kiln_plan *p = NULL;
    kiln_status st = kiln_plan_build(g, bound, &po, &ctx, &p, err);
    if (st) return st;
    *flops = p->flops;
    kiln_plan_free(p);
    return KILN_OK;
}
