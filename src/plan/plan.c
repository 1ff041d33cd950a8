/* plan.c — shape inference, plan-time folding, liveness and arena layout
 * for one set of concrete input shapes (see plan.h). */
#include "plan/plan.h"
#include "base/status.h"

#include <stdio.h>
#include <stdlib.h>
#include <string.h>

#define KILN_ALIGN 64

void *kiln_aligned_alloc(size_t bytes) {
    void *p = NULL;
    size_t n = (bytes + KILN_ALIGN - 1) / KILN_ALIGN * KILN_ALIGN;
    if (posix_memalign(&p, KILN_ALIGN, n ? n : KILN_ALIGN) != 0) return NULL;
    return p;
}

int32_t kiln_graph_max_io(const struct kiln_graph *g) {
    int32_t m = 1;
    for (int32_t i = 0; i < g->n_nodes; i++) {
        if (g->nodes[i].n_inputs > m) m = g->nodes[i].n_inputs;
        if (g->nodes[i].n_outputs > m) m = g->nodes[i].n_outputs;
    }
    return m;
}

void kiln_plan_free(struct kiln_plan *p) {
    if (!p) return;
    free(p->io_in);
    free(p->io_out);
    free(p->io_vals);
    for (int32_t i = 0; i < p->n_steps; i++) {
        if (p->steps[i].kernel.release) p->steps[i].kernel.release(p->steps[i].kernel.state);
        if (p->steps[i].cl_tmp) {
            int32_t n = p->max_io * 2;
            for (int32_t j = 0; j < n; j++) free(p->steps[i].cl_tmp[j]);
            free(p->steps[i].cl_tmp);
        }
    }
    if (p->vals)
        for (int32_t i = 0; i < p->n_values; i++)
            if (p->kind[i] == KILN_VK_FOLDED) free(p->vals[i].data);
    free(p->vals);
    free(p->kind);
    free(p->alias);
    free(p->offset);
    free(p->steps);
    free(p->key);
    free(p);
}

static int32_t root_of(const struct kiln_plan *p, int32_t v) {
    while (p->kind[v] == KILN_VK_ALIAS) v = p->alias[v];
    return v;
}

static bool data_known(const struct kiln_plan *p, int32_t v) {
    return p->kind[v] == KILN_VK_CONST || p->kind[v] == KILN_VK_FOLDED;
}

/* Places arena buffers: largest first, each at the lowest offset that does
 * not overlap a placed buffer whose lifetime intersects its own. */
struct buf {
    int32_t value;
    int32_t first, last;   /* step indices */
    size_t  size;
    size_t  offset;
};

static int cmp_buf_size(const void *a, const void *b) {
    const struct buf *x = a, *y = b;
    if (x->size != y->size) return x->size < y->size ? 1 : -1;
    return x->value - y->value;
}

static size_t align_up(size_t x) { return (x + KILN_ALIGN - 1) / KILN_ALIGN * KILN_ALIGN; }

static kiln_status layout_arena(struct kiln_plan *p, const struct kiln_graph *g,
                                const struct kiln_plan_options *o, kiln_error *err) {
    int32_t *first = malloc((size_t)p->n_values * sizeof *first);
    int32_t *last = malloc((size_t)p->n_values * sizeof *last);
    struct buf *bufs = malloc((size_t)(p->n_values ? p->n_values : 1) * sizeof *bufs);
    kiln_status s = KILN_OK;
    if (!first || !last || !bufs) {
        s = kiln_fail(err, KILN_ERR_NO_MEMORY, "%s: planning", o->label);
        goto done;
    }
    for (int32_t v = 0; v < p->n_values; v++) first[v] = last[v] = -1;
    for (int32_t si = 0; si < p->n_steps; si++) {
        const struct kiln_node *n = &g->nodes[p->steps[si].node];
        for (int32_t j = 0; j < n->n_outputs; j++)
            if (n->outputs[j] >= 0) {
                int32_t r = root_of(p, n->outputs[j]);
                if (first[r] < 0) first[r] = si;
                if (last[r] < si) last[r] = si;
            }
        for (int32_t j = 0; j < n->n_inputs; j++)
            if (n->inputs[j] >= 0) {
                int32_t r = root_of(p, n->inputs[j]);
                if (last[r] < si) last[r] = si;
            }
    }
    for (int32_t j = 0; j < g->n_outputs; j++) last[root_of(p, g->outputs[j])] = p->n_steps;
    int32_t nb = 0;
    for (int32_t v = 0; v < p->n_values; v++)
        if (p->kind[v] == KILN_VK_ARENA) {
            if (first[v] < 0) first[v] = 0;
            if (last[v] < first[v]) last[v] = first[v];
            bufs[nb++] = (struct buf){v, first[v], last[v], align_up(p->vals[v].nbytes), 0};
        }
    qsort(bufs, (size_t)nb, sizeof *bufs, cmp_buf_size);
    size_t total = 0;
    for (int32_t i = 0; i < nb; i++) {
        size_t off = 0;
        bool moved = true;
        while (moved) { /* first fit: bump past every overlapping placed buffer */
            moved = false;
            for (int32_t j = 0; j < i; j++) {
                if (bufs[j].last < bufs[i].first || bufs[i].last < bufs[j].first) continue;
                if (off < bufs[j].offset + bufs[j].size && bufs[j].offset < off + bufs[i].size) {
                    off = bufs[j].offset + bufs[j].size;
                    moved = true;
                }
            }
        }
        bufs[i].offset = off;
        p->offset[bufs[i].value] = off;
        if (off + bufs[i].size > total) total = off + bufs[i].size;
    }
    p->arena_bytes = total;
    if (total > o->max_arena_bytes)
        s = kiln_fail(err, KILN_ERR_LIMIT,
                      "%s: activations need %zu bytes at these input shapes, over the memory "
                      "limit of %llu bytes",
                      o->label, total, (unsigned long long)o->max_arena_bytes);
done:
    free(first);
    free(last);
    free(bufs);
    return s;
}

/* ---- layouts ----------------------------------------------------------------
 * Float32 activations produced by convolutions, pools and the ops between them
 * are kept in the layout oneDNN's convolutions want (blocked nChw8c on AVX2,
 * channels-last on AVX-512), so they are not reordered around every op. Ops
 * that can run on such values: convolutions and pools (oneDNN, any layout),
 * elementwise ops over operands of one shape (layout-agnostic), binary ops
 * with a per-channel operand and Concat along channels (layout_ops.c). Every
 * other reader gets a plain copy made just before it runs (a converted step,
 * "+reorders" in profiles); a value that no reader wants laid out, and every
 * graph output, stays plain. Blocked values whose C is not a multiple of 8 pad
 * the last block with zeros, as oneDNN does. */

enum layout_kind { LK_OTHER, LK_CL, LK_ELT, LK_CHAN, LK_CONCAT, LK_PAD, LK_TO_NHWC, LK_FROM_NHWC };

static bool is_cl_op(const struct kiln_node *n) {
    static const char *const ops[] = {"Conv", "ConvTranspose", "MaxPool", "AveragePool",
                                      "GlobalAveragePool"};
    /* the low-precision convolutions kiln's compiler writes (ops/quant.c) */
    if (!strcmp(n->domain, "kiln"))
        return !strcmp(n->op_type, "QConv") || !strcmp(n->op_type, "Bf16Conv");
    if (*n->domain) return false;
    for (size_t i = 0; i < KILN_ARRAY_LEN(ops); i++)
        if (!strcmp(n->op_type, ops[i])) return true;
    return false;
}

static bool is_eltwise_name(const struct kiln_node *n) {
    static const char *const ops[] = {
        "Add", "Sub", "Mul", "Div", "Relu", "Clip", "Sigmoid", "HardSigmoid", "HardSwish",
        "LeakyRelu", "Tanh", "Elu", "Selu", "Softplus", "Neg", "Abs", "Exp", "Log", "Sqrt",
        "Erf", "Gelu", "Mish", "Swish", "Max", "Min", "Sum", "Pow", "Reciprocal", "Identity"};
    if (!strcmp(n->domain, "com.microsoft")) return !strcmp(n->op_type, "Gelu");
    if (*n->domain) return false;
    for (size_t i = 0; i < KILN_ARRAY_LEN(ops); i++)
        if (!strcmp(n->op_type, ops[i])) return true;
    return false;
}

static bool same_shape(const struct kiln_value *a, const struct kiln_value *b) {
    if (a->rank != b->rank || a->dtype != b->dtype) return false;
    for (int32_t r = 0; r < a->rank; r++)
        if (a->dims[r] != b->dims[r]) return false;
    return true;
}

/* Elementwise over operands of one shape (scalars aside): any layout works. */
static bool eltwise_agnostic(const struct kiln_plan *p, const struct kiln_node *n) {
    if (!is_eltwise_name(n) || n->n_outputs != 1 || n->outputs[0] < 0) return false;
    const struct kiln_value *o = &p->vals[n->outputs[0]];
    for (int32_t j = 0; j < n->n_inputs; j++) {
        if (n->inputs[j] < 0) continue;
        const struct kiln_value *v = &p->vals[n->inputs[j]];
        if (kiln_value_numel(v) == 1) continue;
        if (!same_shape(v, o)) return false;
    }
    return true;
}

/* A float32 activation the layouts apply to: N, C, 1 to 3 spatial dims. */
static bool is_act_value(const struct kiln_value *v) {
    return v->dtype == KILN_DTYPE_FLOAT && v->rank >= 3 && v->rank <= 5;
}

/* Add/Sub/Mul/Div of an activation and a per-channel operand ([C,1,...],
 * [1|N, C, 1...]; squeeze-excitation scales, biases). *big: the input with
 * the output's shape; *op: enum kiln_layout_binary. */
static bool chan_binary(const struct kiln_plan *p, const struct kiln_node *n, int *big, int *op) {
    static const char *const ops[] = {"Add", "Sub", "Mul", "Div"};
    if (*n->domain || n->n_inputs != 2 || n->n_outputs != 1 || n->outputs[0] < 0 ||
        n->inputs[0] < 0 || n->inputs[1] < 0 || n->act.kind != KILN_ACT_NONE)
        return false;
    *op = -1;
    for (int i = 0; i < 4; i++)
        if (!strcmp(n->op_type, ops[i])) *op = i;
    const struct kiln_value *o = &p->vals[n->outputs[0]];
    if (*op < 0 || !is_act_value(o)) return false;
    for (int b = 0; b < 2; b++) {
        const struct kiln_value *x = &p->vals[n->inputs[b]], *y = &p->vals[n->inputs[1 - b]];
        if (!same_shape(x, o) || y->dtype != KILN_DTYPE_FLOAT || kiln_value_numel(y) <= 1 ||
            y->rank < o->rank - 1 || y->rank > o->rank)
            continue;
        bool ok = true;
        for (int32_t k = 0; ok && k < y->rank; k++) {
            int32_t od = k + o->rank - y->rank;
            int64_t d = y->dims[k];
            ok = od == 1 ? d == o->dims[1] : od == 0 ? (d == 1 || d == o->dims[0]) : d == 1;
        }
        if (ok) {
            *big = b;
            return true;
        }
    }
    return false;
}

static bool concat_channels(const struct kiln_plan *p, const struct kiln_node *n) {
    if (*n->domain || strcmp(n->op_type, "Concat") || n->n_outputs != 1 || n->outputs[0] < 0)
        return false;
    const struct kiln_value *o = &p->vals[n->outputs[0]];
    if (!is_act_value(o)) return false;
    int64_t axis = kiln_attr_int(n, "axis", 1);
    if (axis != 1 && axis != 1 - o->rank) return false;
    for (int32_t j = 0; j < n->n_inputs; j++)
        if (n->inputs[j] < 0 || p->vals[n->inputs[j]].dtype != KILN_DTYPE_FLOAT ||
            p->vals[n->inputs[j]].rank != o->rank)
            return false;
    return true;
}

/* Constant-mode Pad (opset 11+) of an activation with non-negative pads
 * known at plan time, none on the batch dim (blazeface pads channels). */
static bool pad_simple(const struct kiln_plan *p, const struct kiln_node *n) {
    if (*n->domain || strcmp(n->op_type, "Pad") || n->opset < 11 || n->n_inputs < 2 ||
        n->n_inputs > 3 || n->n_outputs != 1 || n->outputs[0] < 0 || n->inputs[0] < 0 ||
        n->inputs[1] < 0 || strcmp(kiln_attr_string(n, "mode", "constant"), "constant"))
        return false;
    const struct kiln_value *x = &p->vals[n->inputs[0]], *pads = &p->vals[n->inputs[1]];
    if (!is_act_value(x) || !data_known(p, n->inputs[1]) || kiln_value_numel(pads) != 2 * x->rank)
        return false;
    for (int32_t i = 0; i < 2 * x->rank; i++)
        if (kiln_value_get_int(pads, i) < 0 || (i % x->rank == 0 && kiln_value_get_int(pads, i)))
            return false;
    if (n->n_inputs == 3 && n->inputs[2] >= 0 &&
        (!data_known(p, n->inputs[2]) || p->vals[n->inputs[2]].dtype != KILN_DTYPE_FLOAT ||
         kiln_value_numel(&p->vals[n->inputs[2]]) != 1))
        return false;
    return true;
}

/* Transpose between NCHW and NHWC (4-D float): perm (0,2,3,1) reads an
 * activation into a plain NHWC value, (0,3,1,2) makes one from NHWC (models
 * converted from TensorFlow have one at each end). 1: to NHWC, 2: from. */
static int nhwc_transpose(const struct kiln_plan *p, const struct kiln_node *n) {
    if (*n->domain || strcmp(n->op_type, "Transpose") || n->n_inputs != 1 || n->n_outputs != 1 ||
        n->inputs[0] < 0 || n->outputs[0] < 0)
        return 0;
    const struct kiln_value *x = &p->vals[n->inputs[0]];
    int64_t cnt = 0;
    const int64_t *perm = kiln_attr_ints(n, "perm", &cnt);
    if (x->dtype != KILN_DTYPE_FLOAT || x->rank != 4 || !perm || cnt != 4 || perm[0] != 0) return 0;
    if (perm[1] == 2 && perm[2] == 3 && perm[3] == 1) return 1;
    if (perm[1] == 3 && perm[2] == 1 && perm[3] == 2) return 2;
    return 0;
}

static enum layout_kind layout_kind(const struct kiln_plan *p, const struct kiln_node *n) {
    int big, op;
    if (is_cl_op(n)) return LK_CL;
    if (eltwise_agnostic(p, n)) return LK_ELT;
    if (chan_binary(p, n, &big, &op)) return LK_CHAN;
    if (concat_channels(p, n)) return LK_CONCAT;
    if (pad_simple(p, n)) return LK_PAD;
    int t = nhwc_transpose(p, n);
    if (t) return t == 1 ? LK_TO_NHWC : LK_FROM_NHWC;
    return LK_OTHER;
}

static void demote(uint8_t *L, int32_t v, bool *changed) {
    if (v >= 0 && L[v]) {
        L[v] = 0;
        *changed = true;
    }
}

/* The activation layout for this CPU: oneDNN's direct fp32 convolutions on
 * AVX2 are written for nChw8c; on AVX-512 (and AMX, for bf16/int8) its brgemm
 * convolutions want NHWC. */
static enum kiln_layout preferred_layout(int32_t requested) {
    switch (requested) {
    case 1: return KILN_LAYOUT_PLAIN;
    case 2: return KILN_LAYOUT_CHANNELS_LAST;
    case 3: return KILN_LAYOUT_BLOCKED8;
    default: break;
    }
#if defined(__x86_64__) || defined(__i386__)
    if (!__builtin_cpu_supports("avx512f")) return KILN_LAYOUT_BLOCKED8;
#endif
    return KILN_LAYOUT_CHANNELS_LAST;
}

static void assign_step_layout_ops(struct kiln_plan *p, const struct kiln_graph *g);

/* Runs before the arena is laid out: blocked values with padded channels
 * take more bytes, and views of laid-out values read by plain-only ops get
 * buffers of their own. */
static kiln_status assign_layouts(struct kiln_plan *p, const struct kiln_graph *g,
                                  int32_t requested, const struct kiln_plan_options *o,
                                  kiln_error *err) {
    enum kiln_layout want = preferred_layout(requested);
    /* oneDNN's int8 convolutions run in NHWC only (ops/quant.c): an int8 graph
     * keeps its activations there */
    for (int32_t i = 0; requested == 0 && i < g->n_nodes; i++)
        if (!strcmp(g->nodes[i].domain, "kiln") && !strcmp(g->nodes[i].op_type, "QConv"))
            want = KILN_LAYOUT_CHANNELS_LAST;
    if (want == KILN_LAYOUT_PLAIN) return KILN_OK;
    size_t nv = (size_t)(p->n_values ? p->n_values : 1);
    uint8_t *L = calloc(nv, 1), *cap = calloc(nv, 1), *unalias = calloc(nv, 1);
    uint8_t *pk = calloc(nv, 1);   /* layout kind of each value's producer */
    uint8_t *kinds = calloc((size_t)(p->n_steps ? p->n_steps : 1), 1);
    int32_t *cl_src = calloc(nv, sizeof *cl_src);   /* a conv/pool output's input 0 */
    if (!L || !cap || !unalias || !pk || !kinds || !cl_src) {
        free(L); free(cap); free(unalias); free(pk); free(kinds); free(cl_src);
        return kiln_fail(err, KILN_ERR_NO_MEMORY, "%s: planning", o->label);
    }
    for (int32_t si = 0; si < p->n_steps; si++) {
        const struct kiln_node *n = &g->nodes[p->steps[si].node];
        kinds[si] = (uint8_t)layout_kind(p, n);
        for (int32_t j = 0; j < n->n_outputs; j++)
            if (n->outputs[j] >= 0) {
                pk[n->outputs[j]] = kinds[si];
                cl_src[n->outputs[j]] = kinds[si] == LK_CL && n->inputs[0] >= 0 ? n->inputs[0] : 0;
            }
        if (kinds[si] == LK_OTHER || n->n_outputs < 1 || n->outputs[0] < 0) continue;
        const struct kiln_value *ov = &p->vals[n->outputs[0]];
        int64_t S = 1;
        for (int32_t r = 2; r < ov->rank; r++) S *= ov->dims[r];
        /* padded blocks only where the padding is a small part of the data,
         * or a convolution writes them (oneDNN pads its own blocked outputs) */
        if (is_act_value(ov) && (want != KILN_LAYOUT_BLOCKED8 || ov->dims[1] % 8 == 0 ||
                                 ov->dims[1] > 8 || S == 1 || kinds[si] == LK_CL))
            L[n->outputs[0]] = 1;
    }
    bool changed = true;
    while (changed) {
        changed = false;
        memset(cap, 0, nv);
        for (int32_t si = 0; si < p->n_steps; si++) {
            const struct kiln_node *n = &g->nodes[p->steps[si].node];
            int big, op;
            switch (kinds[si]) {
            case LK_CL:
                if (n->inputs[0] >= 0) cap[n->inputs[0]] = 1;
                /* oneDNN pools only keep a layout (from plain into blocked is its
                 * reference kernel): a plain input gives a plain output */
                if (strstr(n->op_type, "Pool") && n->inputs[0] >= 0 && !L[n->inputs[0]])
                    demote(L, n->outputs[0], &changed);
                for (int32_t j = 1; j < n->n_inputs; j++)
                    if (j != n->sum_input) demote(L, n->inputs[j], &changed);
                for (int32_t j = 1; j < n->n_outputs; j++) demote(L, n->outputs[j], &changed);
                if (n->sum_input) {
                    /* a fused residual is summed into the output in place, so it must
                     * share the output's shape and layout, else both go plain */
                    int32_t r = n->inputs[n->sum_input], ov = n->outputs[0];
                    cap[r] = 1;
                    if (!same_shape(&p->vals[r], &p->vals[ov])) demote(L, r, &changed);
                    if (L[r] != L[ov]) {
                        demote(L, r, &changed);
                        demote(L, ov, &changed);
                    }
                }
                break;
            case LK_ELT: {
                bool all = L[n->outputs[0]];
                for (int32_t j = 0; j < n->n_inputs; j++)
                    if (n->inputs[j] >= 0 && kiln_value_numel(&p->vals[n->inputs[j]]) != 1 &&
                        !L[n->inputs[j]])
                        all = false;
                if (!all) {
                    demote(L, n->outputs[0], &changed);
                    for (int32_t j = 0; j < n->n_inputs; j++) demote(L, n->inputs[j], &changed);
                } else {
                    for (int32_t j = 0; j < n->n_inputs; j++)
                        if (n->inputs[j] >= 0) cap[n->inputs[j]] = 1;
                }
                break;
            }
            case LK_CHAN:
                chan_binary(p, n, &big, &op);
                if (L[n->inputs[big]] != L[n->outputs[0]]) {
                    demote(L, n->inputs[big], &changed);
                    demote(L, n->outputs[0], &changed);
                }
                /* the per-channel operand may be in either layout */
                cap[n->inputs[0]] = cap[n->inputs[1]] = 1;
                break;
            case LK_CONCAT:   /* reads and writes any mix of layouts */
                for (int32_t j = 0; j < n->n_inputs; j++) cap[n->inputs[j]] = 1;
                break;
            case LK_PAD:
                cap[n->inputs[0]] = 1;
                break;
            case LK_TO_NHWC:  /* reads a laid-out activation, writes plain NHWC */
                cap[n->inputs[0]] = 1;
                demote(L, n->outputs[0], &changed);
                break;
            case LK_FROM_NHWC:  /* the input is NHWC data, never laid out itself */
                demote(L, n->inputs[0], &changed);
                break;
            default:          /* reads plain copies; writes plain */
                for (int32_t j = 0; j < n->n_outputs; j++) demote(L, n->outputs[j], &changed);
                break;
            }
        }
        for (int32_t j = 0; j < g->n_outputs; j++) demote(L, g->outputs[j], &changed);
        /* an alias shares its root's bytes, so it shares its layout; a view that
         * a plain-only op makes of a laid-out value becomes a plain copy instead */
        for (int32_t v = 0; v < p->n_values; v++) {
            unalias[v] = 0;
            if (p->kind[v] != KILN_VK_ALIAS || L[v] == L[p->alias[v]]) continue;
            if (L[p->alias[v]] && pk[v] == LK_OTHER) {
                unalias[v] = 1;
                continue;
            }
            demote(L, v, &changed);
            demote(L, p->alias[v], &changed);
        }
        /* laid out for nobody: write it plain to begin with, unless a
         * convolution or pool reading a laid-out input makes it (oneDNN has
         * few kernels from blocked to plain; the reader converts instead) */
        for (int32_t v = 0; v < p->n_values; v++)
            if (L[v] && !cap[v] && !(pk[v] == LK_CL && L[cl_src[v]])) demote(L, v, &changed);
    }
    for (int32_t v = 0; v < p->n_values; v++) {
        if (unalias[v]) {
            p->kind[v] = KILN_VK_ARENA;
            p->alias[v] = -1;
        }
        p->vals[v].layout = L[v] ? (uint8_t)want : KILN_LAYOUT_PLAIN;
        if (L[v]) p->vals[v].nbytes = (size_t)kiln_layout_storage_numel(&p->vals[v]) * sizeof(float);
    }
    free(L); free(cap); free(unalias); free(pk); free(kinds); free(cl_src);
    assign_step_layout_ops(p, g);
    return KILN_OK;
}

/* Which steps run on laid-out operands themselves (st->lop), from the values'
 * layouts: after assign_layouts, and for a stored plan, whose layouts come
 * from the file. */
static void assign_step_layout_ops(struct kiln_plan *p, const struct kiln_graph *g) {
    for (int32_t si = 0; si < p->n_steps; si++) {
        struct kiln_step *st = &p->steps[si];
        const struct kiln_node *n = &g->nodes[st->node];
        int kind = layout_kind(p, n);
        bool any = false;
        for (int32_t j = 0; j < n->n_inputs; j++) any |= n->inputs[j] >= 0 && p->vals[n->inputs[j]].layout;
        for (int32_t j = 0; j < n->n_outputs; j++) any |= n->outputs[j] >= 0 && p->vals[n->outputs[j]].layout;
        int big = 0, op = 0;
        if (!any) continue;
        if (kind == LK_ELT) {
            const struct kiln_value *ov = &p->vals[n->outputs[0]];
            if (ov->layout == KILN_LAYOUT_BLOCKED8 && ov->dims[1] % 8) st->lop = KILN_LOP_FLAT;
        } else if (kind == LK_CHAN && chan_binary(p, n, &big, &op)) {
            st->lop = KILN_LOP_CHAN_BINARY;
            st->lop_arg = (int8_t)op;
            st->lop_big = (int8_t)big;
        } else if (kind == LK_CONCAT) {
            st->lop = KILN_LOP_CONCAT;
        } else if (kind == LK_PAD) {
            st->lop = KILN_LOP_PAD;
        } else if (kind == LK_TO_NHWC || kind == LK_FROM_NHWC) {
            st->lop = KILN_LOP_NHWC;
            st->lop_arg = kind == LK_TO_NHWC;
        }
    }
}

static void cl_split(const struct kiln_value *v, int64_t *N, int64_t *C, int64_t *S) {
    *N = v->dims[0];
    *C = v->dims[1];
    *S = 1;
    for (int32_t r = 2; r < v->rank; r++) *S *= v->dims[r];
}

/* Index of plain element (n, c, s) in v's layout (Cp: C as stored). */
static inline int64_t layout_index(enum kiln_layout l, int64_t C, int64_t Cp, int64_t S, int64_t n,
                                   int64_t c, int64_t s) {
    if (l == KILN_LAYOUT_CHANNELS_LAST) return (n * S + s) * C + c;
    if (l == KILN_LAYOUT_BLOCKED8) return ((n * (Cp / 8) + c / 8) * S + s) * 8 + c % 8;
    return (n * C + c) * S + s;
}

void kiln_layout_to_plain(const struct kiln_value *v, const float *src, float *dst) {
    int64_t N, C, S;
    cl_split(v, &N, &C, &S);
    const int64_t Cp = kiln_layout_channels(v);
    enum kiln_layout l = (enum kiln_layout)v->layout;
#pragma omp parallel for collapse(2) if (N * C * S > (1 << 16))
    for (int64_t n = 0; n < N; n++)
        for (int64_t c = 0; c < C; c++)
            for (int64_t s = 0; s < S; s++) dst[(n * C + c) * S + s] = src[layout_index(l, C, Cp, S, n, c, s)];
}

void kiln_layout_from_plain(const struct kiln_value *v, const float *src, float *dst) {
    int64_t N, C, S;
    cl_split(v, &N, &C, &S);
    const int64_t Cp = kiln_layout_channels(v);
    enum kiln_layout l = (enum kiln_layout)v->layout;
#pragma omp parallel for collapse(2) if (N * C * S > (1 << 16))
    for (int64_t n = 0; n < N; n++)
        for (int64_t c = 0; c < C; c++)
            for (int64_t s = 0; s < S; s++) dst[layout_index(l, C, Cp, S, n, c, s)] = src[(n * C + c) * S + s];
    struct kiln_value d = *v;
    d.data = dst;
    kiln_layout_zero_pad(&d);
}

/* Steps whose kernel is the plain reference get plain scratch copies. */
static kiln_status plan_conversions(struct kiln_plan *p, const struct kiln_graph *g,
                                    const struct kiln_plan_options *o, kiln_error *err) {
    for (int32_t si = 0; si < p->n_steps; si++) {
        struct kiln_step *st = &p->steps[si];
        const struct kiln_node *n = &g->nodes[st->node];
        if (st->lop || (st->kernel.run && !st->kernel_plain) || eltwise_agnostic(p, n)) continue;
        bool any = false;
        for (int32_t j = 0; j < n->n_inputs; j++)
            if (n->inputs[j] >= 0 && p->vals[n->inputs[j]].layout) any = true;
        for (int32_t j = 0; j < n->n_outputs; j++)
            if (n->outputs[j] >= 0 && p->vals[n->outputs[j]].layout) any = true;
        if (!any) continue;
        st->convert = true;
        st->cl_tmp = calloc((size_t)p->max_io * 2, sizeof *st->cl_tmp);
        if (!st->cl_tmp) return kiln_fail(err, KILN_ERR_NO_MEMORY, "%s: planning", o->label);
        for (int32_t j = 0; j < n->n_inputs + n->n_outputs; j++) {
            int32_t v = j < n->n_inputs ? n->inputs[j] : n->outputs[j - n->n_inputs];
            if (v < 0 || !p->vals[v].layout) continue;
            st->cl_tmp[j] = kiln_aligned_alloc(p->vals[v].nbytes);
            if (!st->cl_tmp[j]) return kiln_fail(err, KILN_ERR_NO_MEMORY, "%s: planning", o->label);
        }
    }
    return KILN_OK;
}

/* v as its plain counterpart (no padding bytes). */
static void set_plain(struct kiln_value *v) {
    v->layout = KILN_LAYOUT_PLAIN;
    size_t b;
    if (kiln_value_bytes(v, &b)) v->nbytes = b;
}

/* Builds fast kernels for the concrete shapes. Only constant inputs carry
 * data here; everything else is bound at run time. */
static kiln_status prepare_steps(struct kiln_plan *p, const struct kiln_graph *g,
                                 const struct kiln_plan_options *o, struct kiln_exec_ctx *ctx,
                                 kiln_error *err) {
    struct kiln_value *inv = calloc((size_t)p->max_io, sizeof *inv);
    struct kiln_value *outvv = calloc((size_t)p->max_io, sizeof *outvv);
    const struct kiln_value **in = p->io_in;
    struct kiln_value **outv = p->io_out;
    kiln_status s = KILN_OK;
    if (!inv || !outvv) {
        s = kiln_fail(err, KILN_ERR_NO_MEMORY, "%s: planning", o->label);
        goto done;
    }
    for (int32_t si = 0; si < p->n_steps; si++) {
        const struct kiln_node *n = &g->nodes[p->steps[si].node];
        const uint8_t lop = p->steps[si].lop;
        if (!n->op->prepare || (lop && lop != KILN_LOP_FLAT)) continue;
        struct kiln_value flat;
        for (int32_t j = 0; j < n->n_inputs; j++) {
            int32_t v = n->inputs[j];
            in[j] = NULL;
            if (v < 0) continue;
            inv[j] = lop == KILN_LOP_FLAT ? *kiln_layout_flat_view(&p->vals[v], &flat) : p->vals[v];
            if (!data_known(p, root_of(p, v))) inv[j].data = NULL;
            in[j] = &inv[j];
        }
        for (int32_t j = 0; j < n->n_outputs; j++) {
            outv[j] = NULL;
            if (n->outputs[j] < 0) continue;
            int32_t v = n->outputs[j];
            outvv[j] = lop == KILN_LOP_FLAT ? *kiln_layout_flat_view(&p->vals[v], &flat) : p->vals[v];
            outvv[j].data = NULL;
            outv[j] = &outvv[j];
        }
        bool any_cl = false;
        for (int32_t j = 0; j < n->n_inputs; j++) any_cl |= in[j] && in[j]->layout;
        for (int32_t j = 0; j < n->n_outputs; j++) any_cl |= outv[j] && outv[j]->layout;
        /* ops that do not know the layouts get plain operands (converted steps) */
        bool plain_only = any_cl && layout_kind(p, n) == LK_OTHER;
        if (plain_only) {
            for (int32_t j = 0; j < n->n_inputs; j++)
                if (in[j]) set_plain(&inv[j]);
            for (int32_t j = 0; j < n->n_outputs; j++)
                if (outv[j]) set_plain(&outvv[j]);
        }
        s = n->op->prepare(n, ctx, in, n->n_inputs, outv, n->n_outputs, &p->steps[si].kernel, err);
        if (plain_only) p->steps[si].kernel_plain = p->steps[si].kernel.run != NULL;
        if (!s && !p->steps[si].kernel.run && any_cl && !plain_only) {
            /* no channels-last kernel for this problem: a plain one plus reorders
             * beats the reference kernel */
            for (int32_t j = 0; j < n->n_inputs; j++)
                if (in[j]) set_plain(&inv[j]);
            for (int32_t j = 0; j < n->n_outputs; j++)
                if (outv[j]) set_plain(&outvv[j]);
            s = n->op->prepare(n, ctx, in, n->n_inputs, outv, n->n_outputs, &p->steps[si].kernel, err);
            p->steps[si].kernel_plain = p->steps[si].kernel.run != NULL;
        }
        if (s) {
            if (err && !strstr(err->msg, o->label)) kiln_fail_prefix(err, s, "%s", o->label);
            goto done;
        }
    }
done:
    free(inv);
    free(outvv);
    return s;
}

static void shape_key_append(char **key, size_t *len, size_t *cap, const struct kiln_value *v) {
    char tmp[32 + 24 * KILN_MAX_RANK];
    int k = snprintf(tmp, sizeof tmp, "%d:", (int)v->dtype);
    for (int32_t r = 0; r < v->rank; r++) k += snprintf(tmp + k, sizeof tmp - (size_t)k, "%lld,", (long long)v->dims[r]);
    k += snprintf(tmp + k, sizeof tmp - (size_t)k, ";");
    if (*len + (size_t)k + 1 > *cap) {
        size_t nc = (*cap + (size_t)k + 1) * 2;
        char *nk = realloc(*key, nc);
        if (!nk) return;
        *key = nk;
        *cap = nc;
    }
    memcpy(*key + *len, tmp, (size_t)k + 1);
    *len += (size_t)k;
}

kiln_status kiln_plan_build(const struct kiln_graph *g, const struct kiln_value *inputs,
                            const struct kiln_plan_options *o, struct kiln_exec_ctx *ctx,
                            struct kiln_plan **out, kiln_error *err) {
    *out = NULL;
    struct kiln_plan *p = calloc(1, sizeof *p);
    if (!p) return kiln_fail(err, KILN_ERR_NO_MEMORY, "%s: plan", o->label);
    kiln_status s = KILN_OK;
    int32_t nv = g->n_values;
    p->n_values = nv;
    p->vals = calloc((size_t)(nv ? nv : 1), sizeof *p->vals);
    p->kind = calloc((size_t)(nv ? nv : 1), 1);
    p->alias = malloc((size_t)(nv ? nv : 1) * sizeof *p->alias);
    p->offset = calloc((size_t)(nv ? nv : 1), sizeof *p->offset);
    p->steps = calloc((size_t)(g->n_nodes ? g->n_nodes : 1), sizeof *p->steps);
    int32_t *remaining = calloc((size_t)(nv ? nv : 1), sizeof *remaining);
    p->max_io = kiln_graph_max_io(g);
    p->activation_layout = o->activation_layout;
    p->io_in = calloc((size_t)p->max_io, sizeof *p->io_in);
    p->io_out = calloc((size_t)p->max_io, sizeof *p->io_out);
    p->io_vals = calloc((size_t)p->max_io * 2, sizeof *p->io_vals);
    size_t klen = 0, kcap = 0;
    if (!p->vals || !p->kind || !p->alias || !p->offset || !p->steps || !remaining || !p->io_in ||
        !p->io_out || !p->io_vals) {
        s = kiln_fail(err, KILN_ERR_NO_MEMORY, "%s: plan", o->label);
        goto fail;
    }
    for (int32_t v = 0; v < nv; v++) {
        p->alias[v] = -1;
        remaining[v] = g->values[v].n_consumers;
        if (g->values[v].is_const) {
            p->vals[v] = g->values[v].v;
            p->kind[v] = KILN_VK_CONST;
        }
    }
    for (int32_t i = 0; i < g->n_inputs; i++) {
        int32_t v = g->inputs[i];
        p->vals[v] = inputs[i];
        p->vals[v].data = NULL;
        p->kind[v] = KILN_VK_INPUT;
        shape_key_append(&p->key, &klen, &kcap, &inputs[i]);
    }

    for (int32_t ni = 0; ni < g->n_nodes; ni++) {
        const struct kiln_node *n = &g->nodes[ni];
        if (!n->op) {
            s = kiln_fail(err, KILN_ERR_UNSUPPORTED,
                          "%s: node '%s': op %s%s%s (opset %lld) is not implemented", o->label,
                          n->name, *n->domain ? n->domain : "", *n->domain ? "." : "",
                          n->op_type, (long long)n->opset);
            goto fail;
        }
        if (n->op->flags & KILN_OP_SUBGRAPH) {
            p->dynamic = true;
            break;
        }
        const struct kiln_value **in = p->io_in;
        struct kiln_value **outv = p->io_out;
        /* Shape and Size need only shapes, which planning always knows: this is
         * what folds Shape -> Gather -> Concat -> Reshape chains */
        bool all_known = true, shape_only = n->op->flags & KILN_OP_SHAPE_ONLY;
        for (int32_t j = 0; j < n->n_inputs; j++) {
            int32_t v = n->inputs[j];
            in[j] = v >= 0 ? &p->vals[v] : NULL;
            if (v >= 0 && !data_known(p, v) && !shape_only) all_known = false;
        }
        for (int32_t j = 0; j < n->n_outputs; j++)
            outv[j] = n->outputs[j] >= 0 ? &p->vals[n->outputs[j]] : NULL;
        s = n->op->infer(n, in, n->n_inputs, outv, n->n_outputs, err);
        if (s == KILN_DYNAMIC) {
            kiln_error_clear(err);
            s = KILN_OK;
            p->dynamic = true;
            break;
        }
        if (s) {
            if (err && !strstr(err->msg, o->label)) kiln_fail_prefix(err, s, "%s", o->label);
            goto fail;
        }
        for (int32_t j = 0; j < n->n_outputs; j++) {
            if (!outv[j]) continue;
            size_t bytes;
            if (!kiln_value_bytes(outv[j], &bytes) || bytes > o->max_tensor_bytes) {
                char sh[256];
                kiln_shape_str(outv[j], sh, sizeof sh);
                s = kiln_fail(err, KILN_ERR_LIMIT,
                              "%s: node '%s' (%s) output %d has shape %s, over the tensor size "
                              "limit of %llu bytes",
                              o->label, n->name, n->op_type, j, sh,
                              (unsigned long long)o->max_tensor_bytes);
                goto fail;
            }
            outv[j]->nbytes = bytes;
        }
        for (int32_t j = 0; j < n->n_inputs; j++)
            if (n->inputs[j] >= 0) remaining[root_of(p, n->inputs[j])]--;

        if (all_known && !(n->op->flags & KILN_OP_NO_FOLD)) {
            /* fold: evaluate now with the reference kernel */
            for (int32_t j = 0; j < n->n_outputs; j++) {
                if (!outv[j]) continue;
                outv[j]->data = kiln_aligned_alloc(outv[j]->nbytes);
                if (!outv[j]->data) {
                    s = kiln_fail(err, KILN_ERR_NO_MEMORY, "%s: folding node '%s'", o->label, n->name);
                    goto fail;
                }
                p->kind[n->outputs[j]] = KILN_VK_FOLDED;
            }
            s = n->op->exec(n, ctx, in, n->n_inputs, outv, n->n_outputs, err);
            if (!s) s = kiln_activation_apply(n, outv[0], err);
            if (s) goto fail;
            continue;
        }

        struct kiln_step *st = &p->steps[p->n_steps++];
        st->node = ni;
        for (int32_t j = 0; j < n->n_outputs; j++) {
            int32_t v = n->outputs[j];
            if (v < 0) continue;
            p->kind[v] = KILN_VK_ARENA;
            remaining[v] = g->values[v].n_consumers;
        }
        int32_t v0 = n->n_outputs > 0 ? n->outputs[0] : -1;
        int32_t i0 = n->n_inputs > 0 ? n->inputs[0] : -1;
        if (v0 >= 0 && i0 >= 0) {
            int32_t r = root_of(p, i0);
            bool inputs_distinct = true;
            for (int32_t j = 1; j < n->n_inputs; j++)
                if (n->inputs[j] >= 0 && root_of(p, n->inputs[j]) == r) inputs_distinct = false;
            if ((n->op->flags & KILN_OP_VIEW) && p->vals[v0].nbytes == p->vals[i0].nbytes &&
                p->kind[r] != KILN_VK_NONE) {
                /* a view: same bytes, new shape; its uses extend the root's life */
                p->kind[v0] = KILN_VK_ALIAS;
                p->alias[v0] = i0;
                remaining[r] += g->values[v0].n_consumers;
            } else if ((n->op->flags & KILN_OP_INPLACE) && p->kind[r] == KILN_VK_ARENA &&
                       remaining[r] == 0 && inputs_distinct &&
                       p->vals[v0].nbytes == p->vals[r].nbytes &&
                       p->vals[v0].dtype == p->vals[i0].dtype) {
                p->kind[v0] = KILN_VK_ALIAS;
                p->alias[v0] = i0;
                remaining[r] += g->values[v0].n_consumers;
            }
        }
        if (n->op->flops) p->flops += n->op->flops(n, in, n->n_inputs, outv, n->n_outputs);
    }
    if (!p->dynamic) {
        if (o->prepare && (s = assign_layouts(p, g, o->activation_layout, o, err))) goto fail;
        s = layout_arena(p, g, o, err);
        if (s) goto fail;
        if (o->prepare) {
            s = prepare_steps(p, g, o, ctx, err);
            if (!s) s = plan_conversions(p, g, o, err);
            if (s) goto fail;
        }
        for (int32_t si = 0; si < p->n_steps; si++) {
            struct kiln_step *st = &p->steps[si];
            const char *impl = st->kernel.impl ? st->kernel.impl : "ref";
            if (st->lop && st->lop != KILN_LOP_FLAT) impl = "kiln:layout";
            /* reorders: the plain copies a converted step makes */
            snprintf(st->impl, sizeof st->impl, "%s%s", impl, st->convert ? "+reorders" : "");
        }
    } else {
        /* dynamic plans keep only the key; release folded data */
        for (int32_t v = 0; v < nv; v++)
            if (p->kind[v] == KILN_VK_FOLDED) {
                free(p->vals[v].data);
                p->vals[v].data = NULL;
                p->kind[v] = KILN_VK_NONE;
            }
        p->n_steps = 0;
    }
    if (!p->key) p->key = strdup("");
    free(remaining);
    *out = p;
    return KILN_OK;
fail:
    free(remaining);
    kiln_plan_free(p);
    return s;
}

/* ---- stored plans (.kiln) ----------------------------------------------------- */

void kiln_stored_plan_clear(struct kiln_stored_plan *sp) {
    if (!sp) return;
    free(sp->key);
    free(sp->vals);
    free(sp->kind);
    free(sp->alias);
    free(sp->offset);
    free(sp->steps);
    memset(sp, 0, sizeof *sp);
}

#define BAD(...) do { s = kiln_fail(err, KILN_ERR_BAD_MODEL, __VA_ARGS__); goto done; } while (0)

kiln_status kiln_plan_check_stored(const struct kiln_graph *g, struct kiln_stored_plan *sp,
                                   const char *label, kiln_error *err) {
    const int32_t nv = g->n_values, b = sp->batch;
    kiln_status s = KILN_OK;
    int32_t *prod = NULL, *first = NULL, *last = NULL, *arena_v = NULL;
    bool *is_step = NULL;
    struct kiln_value *tin = NULL, *tout = NULL;
    const struct kiln_value **in = NULL;
    struct kiln_value **outv = NULL;
    int32_t max_io = kiln_graph_max_io(g);
    if (sp->n_values != nv)
        return kiln_fail(err, KILN_ERR_BAD_MODEL,
                         "%s: corrupt plan (stored plan for batch %d: n_values %d, the graph has %d)",
                         label, b, sp->n_values, nv);
    if (sp->activation_layout < 0 || sp->activation_layout > 3)
        return kiln_fail(err, KILN_ERR_BAD_MODEL,
                         "%s: corrupt plan (stored plan for batch %d: activation_layout %d)", label, b,
                         sp->activation_layout);
    if (sp->n_steps < 0 || sp->n_steps > g->n_nodes)
        return kiln_fail(err, KILN_ERR_BAD_MODEL,
                         "%s: corrupt plan (stored plan for batch %d: n_steps %d, the graph has %d nodes)",
                         label, b, sp->n_steps, g->n_nodes);
    if (!(sp->flops >= 0) || sp->flops > 1e30)
        return kiln_fail(err, KILN_ERR_BAD_MODEL, "%s: corrupt plan (stored plan for batch %d: flops %g)",
                         label, b, sp->flops);
    size_t n1 = (size_t)(nv ? nv : 1), nn1 = (size_t)(g->n_nodes ? g->n_nodes : 1);
    prod = malloc(n1 * sizeof *prod);
    first = malloc(n1 * sizeof *first);
    last = malloc(n1 * sizeof *last);
    arena_v = malloc(n1 * sizeof *arena_v);
    is_step = calloc(nn1, sizeof *is_step);
    tin = calloc((size_t)max_io, sizeof *tin);
    tout = calloc((size_t)max_io, sizeof *tout);
    in = calloc((size_t)max_io, sizeof *in);
    outv = calloc((size_t)max_io, sizeof *outv);
    if (!prod || !first || !last || !arena_v || !is_step || !tin || !tout || !in || !outv) {
        s = kiln_fail(err, KILN_ERR_NO_MEMORY, "%s: stored plan", label);
        goto done;
    }
    /* steps: unfolded nodes in graph order */
    for (int32_t i = 0; i < sp->n_steps; i++) {
        int32_t ni = sp->steps[i];
        if (ni < 0 || ni >= g->n_nodes || (i && ni <= sp->steps[i - 1]))
            BAD("%s: corrupt plan (stored plan for batch %d: step %d names node %d)", label, b, i, ni);
        is_step[ni] = true;
    }
    for (int32_t v = 0; v < nv; v++) prod[v] = -1;
    for (int32_t ni = 0; ni < g->n_nodes; ni++) {
        const struct kiln_node *n = &g->nodes[ni];
        if (!n->op || (n->op->flags & KILN_OP_SUBGRAPH))
            BAD("%s: corrupt plan (stored plan for batch %d: node '%s' cannot be planned)", label, b, n->name);
        for (int32_t j = 0; j < n->n_outputs; j++)
            if (n->outputs[j] >= 0) prod[n->outputs[j]] = ni;
    }
    /* each value: its kind follows from its role; bytes from its shape */
    for (int32_t v = 0; v < nv; v++) {
        const struct kiln_value_info *vi = &g->values[v];
        struct kiln_value *pv = &sp->vals[v];
        int k = sp->kind[v];
        int want = vi->is_const ? KILN_VK_CONST : vi->is_input ? KILN_VK_INPUT
                 : prod[v] < 0 ? KILN_VK_NONE : is_step[prod[v]] ? KILN_VK_ARENA : KILN_VK_FOLDED;
        if (k != want && !(want == KILN_VK_ARENA && k == KILN_VK_ALIAS))
            BAD("%s: corrupt plan (stored plan for batch %d: value %d '%s' has kind %d, want %d)",
                label, b, v, vi->name, k, want);
        if (pv->layout > KILN_LAYOUT_BLOCKED8 ||
            (pv->layout && (k == KILN_VK_CONST || k == KILN_VK_INPUT || k == KILN_VK_FOLDED ||
                            pv->dtype != KILN_DTYPE_FLOAT || pv->rank < 3 || pv->rank > 5)))
            BAD("%s: corrupt plan (stored plan for batch %d: value %d '%s' layout %d)", label, b, v,
                vi->name, pv->layout);
        if (k == KILN_VK_NONE) continue;
        size_t bytes;
        if (!kiln_value_bytes(pv, &bytes) || (k == KILN_VK_FOLDED && bytes != pv->nbytes) ||
            (pv->layout && bytes > SIZE_MAX / 2))
            BAD("%s: corrupt plan (stored plan for batch %d: value %d '%s' shape or byte count)", label,
                b, v, vi->name);
        /* blocked values pad their channels to whole blocks (at most 7 more per
         * C channels, so at most twice the bytes: checked above) */
        if (pv->layout) bytes = (size_t)kiln_layout_storage_numel(pv) * sizeof(float);
        pv->nbytes = bytes;
        if (k == KILN_VK_CONST) {
            if (!same_shape(pv, &vi->v))
                BAD("%s: corrupt plan (stored plan for batch %d: constant %d '%s' shape differs from "
                    "the graph's)", label, b, v, vi->name);
            pv->data = vi->v.data;
        }
        if (k == KILN_VK_INPUT) {
            bool ok = pv->dtype == vi->v.dtype && (!vi->has_shape || pv->rank == vi->v.rank);
            for (int32_t r = 0; ok && vi->has_shape && r < pv->rank; r++)
                if (vi->v.dims[r] >= 0 && vi->v.dims[r] != pv->dims[r]) ok = false;
            if (!ok)
                BAD("%s: corrupt plan (stored plan for batch %d: input '%s' shape differs from the "
                    "declared one)", label, b, vi->name);
        }
        if (k == KILN_VK_ARENA && sp->offset[v] % KILN_ALIGN)
            BAD("%s: corrupt plan (stored plan for batch %d: value %d '%s' offset %llu not %d-byte "
                "aligned)", label, b, v, vi->name, (unsigned long long)sp->offset[v], KILN_ALIGN);
        if (k == KILN_VK_ARENA &&
            (sp->offset[v] > sp->arena_bytes || bytes > sp->arena_bytes - sp->offset[v]))
            BAD("%s: corrupt plan (stored plan for batch %d: value %d '%s' at offset %llu + %zu bytes "
                "outside the %llu-byte arena)", label, b, v, vi->name,
                (unsigned long long)sp->offset[v], bytes, (unsigned long long)sp->arena_bytes);
    }
    for (int32_t j = 0; j < g->n_outputs; j++) {
        int32_t v = g->outputs[j];
        if (sp->kind[v] == KILN_VK_NONE || sp->vals[v].layout)
            BAD("%s: corrupt plan (stored plan for batch %d: graph output '%s' kind or layout)", label,
                b, g->values[v].name);
    }
    /* aliases: the planner's two rules (views; in place over a dying input) */
    for (int32_t v = 0; v < nv; v++) {
        if (sp->kind[v] != KILN_VK_ALIAS) continue;
        const struct kiln_node *n = &g->nodes[prod[v]];
        int32_t i0 = n->n_inputs > 0 ? n->inputs[0] : -1;
        bool ok = n->outputs[0] == v && i0 >= 0 && sp->alias[v] == i0 &&
                  sp->vals[v].layout == sp->vals[i0].layout;
        int32_t r = i0, hops = 0;
        while (ok && r >= 0 && sp->kind[r] == KILN_VK_ALIAS && hops++ <= nv) r = sp->alias[r];
        ok = ok && r >= 0 && r < nv && sp->kind[r] != KILN_VK_ALIAS;
        bool distinct = true;
        for (int32_t j = 1; ok && j < n->n_inputs; j++)
            if (n->inputs[j] >= 0) {
                int32_t q = n->inputs[j], h = 0;
                while (sp->kind[q] == KILN_VK_ALIAS && h++ <= nv) q = sp->alias[q];
                if (q == r) distinct = false;
            }
        if (ok)
            ok = ((n->op->flags & KILN_OP_VIEW) && sp->vals[v].nbytes == sp->vals[i0].nbytes &&
                  sp->kind[r] != KILN_VK_NONE) ||
                 ((n->op->flags & KILN_OP_INPLACE) && sp->kind[r] == KILN_VK_ARENA && distinct &&
                  sp->vals[v].nbytes == sp->vals[r].nbytes && sp->vals[v].dtype == sp->vals[i0].dtype);
        if (!ok)
            BAD("%s: corrupt plan (stored plan for batch %d: value %d '%s' alias %d breaks the "
                "planner's rules)", label, b, v, g->values[v].name, sp->alias[v]);
    }
    /* shapes: what shape inference says, node by node, with the stored folded data */
    for (int32_t ni = 0; ni < g->n_nodes; ni++) {
        const struct kiln_node *n = &g->nodes[ni];
        for (int32_t j = 0; j < n->n_inputs; j++) {
            int32_t v = n->inputs[j];
            in[j] = NULL;
            if (v < 0) continue;
            tin[j] = sp->vals[v];
            if (sp->kind[v] != KILN_VK_CONST && sp->kind[v] != KILN_VK_FOLDED) tin[j].data = NULL;
            in[j] = &tin[j];
        }
        for (int32_t j = 0; j < n->n_outputs; j++) {
            memset(&tout[j], 0, sizeof tout[j]);
            outv[j] = n->outputs[j] >= 0 ? &tout[j] : NULL;
        }
        kiln_error ierr;
        kiln_status is = n->op->infer(n, in, n->n_inputs, outv, n->n_outputs, &ierr);
        bool ok = is == KILN_OK;
        for (int32_t j = 0; ok && j < n->n_outputs; j++)
            if (outv[j] && !same_shape(outv[j], &sp->vals[n->outputs[j]])) ok = false;
        if (!ok)
            BAD("%s: corrupt plan (stored plan for batch %d: node '%s' output shapes disagree with "
                "shape inference)", label, b, n->name);
    }
    /* liveness: buffers that live at the same time do not share bytes */
    for (int32_t v = 0; v < nv; v++) first[v] = last[v] = -1;
    for (int32_t si = 0; si < sp->n_steps; si++) {
        const struct kiln_node *n = &g->nodes[sp->steps[si]];
        for (int32_t j = 0; j < n->n_inputs + n->n_outputs; j++) {
            int32_t v = j < n->n_inputs ? n->inputs[j] : n->outputs[j - n->n_inputs], h = 0;
            if (v < 0) continue;
            while (sp->kind[v] == KILN_VK_ALIAS && h++ <= nv) v = sp->alias[v];
            if (j >= n->n_inputs && first[v] < 0) first[v] = si;
            if (last[v] < si) last[v] = si;
        }
    }
    int32_t na = 0;
    for (int32_t v = 0; v < nv; v++)
        if (sp->kind[v] == KILN_VK_ARENA && sp->vals[v].nbytes) arena_v[na++] = v;
    for (int32_t j = 0; j < g->n_outputs; j++) {
        int32_t v = g->outputs[j], h = 0;
        while (sp->kind[v] == KILN_VK_ALIAS && h++ <= nv) v = sp->alias[v];
        last[v] = sp->n_steps;
    }
    for (int32_t x = 0; x < na; x++)
        for (int32_t y = x + 1; y < na; y++) {
            int32_t u = arena_v[x], w = arena_v[y];
            if (last[u] < first[w] || last[w] < first[u]) continue;
            if (sp->offset[u] < sp->offset[w] + sp->vals[w].nbytes &&
                sp->offset[w] < sp->offset[u] + sp->vals[u].nbytes)
                BAD("%s: corrupt plan (stored plan for batch %d: values '%s' and '%s' are live at "
                    "once and overlap in the arena)", label, b, g->values[u].name, g->values[w].name);
        }
    /* the signature a session looks it up by */
    size_t klen = 0, kcap = 0;
    free(sp->key);
    sp->key = NULL;
    for (int32_t i = 0; i < g->n_inputs; i++) shape_key_append(&sp->key, &klen, &kcap, &sp->vals[g->inputs[i]]);
    if (!sp->key && !(sp->key = strdup(""))) s = kiln_fail(err, KILN_ERR_NO_MEMORY, "%s: stored plan", label);
done:
    free(prod);
    free(first);
    free(last);
    free(arena_v);
    free(is_step);
    free(tin);
    free(tout);
    free(in);
    free(outv);
    return s;
}
#undef BAD

kiln_status kiln_plan_from_stored(const struct kiln_graph *g, const struct kiln_stored_plan *sp,
                                  const struct kiln_plan_options *o, struct kiln_exec_ctx *ctx,
                                  struct kiln_plan **out, kiln_error *err) {
    *out = NULL;
    if (sp->arena_bytes > o->max_arena_bytes)
        return kiln_fail(err, KILN_ERR_LIMIT,
                         "%s: activations need %llu bytes at these input shapes, over the memory "
                         "limit of %llu bytes",
                         o->label, (unsigned long long)sp->arena_bytes,
                         (unsigned long long)o->max_arena_bytes);
    for (int32_t v = 0; v < sp->n_values; v++)
        if (sp->kind[v] != KILN_VK_NONE && sp->vals[v].nbytes > o->max_tensor_bytes)
            return kiln_fail(err, KILN_ERR_LIMIT,
                             "%s: value '%s' has %zu bytes, over the tensor size limit of %llu bytes",
                             o->label, g->values[v].name, sp->vals[v].nbytes,
                             (unsigned long long)o->max_tensor_bytes);
    struct kiln_plan *p = calloc(1, sizeof *p);
    if (!p) return kiln_fail(err, KILN_ERR_NO_MEMORY, "%s: plan", o->label);
    int32_t nv = sp->n_values;
    size_t n1 = (size_t)(nv ? nv : 1);
    p->n_values = nv;
    p->vals = malloc(n1 * sizeof *p->vals);
    p->kind = malloc(n1);
    p->alias = malloc(n1 * sizeof *p->alias);
    p->offset = malloc(n1 * sizeof *p->offset);
    p->steps = calloc((size_t)(sp->n_steps ? sp->n_steps : 1), sizeof *p->steps);
    p->max_io = kiln_graph_max_io(g);
    p->io_in = calloc((size_t)p->max_io, sizeof *p->io_in);
    p->io_out = calloc((size_t)p->max_io, sizeof *p->io_out);
    p->io_vals = calloc((size_t)p->max_io * 2, sizeof *p->io_vals);
    p->key = strdup(sp->key ? sp->key : "");
    kiln_status s = KILN_OK;
    if (!p->vals || !p->kind || !p->alias || !p->offset || !p->steps || !p->io_in || !p->io_out ||
        !p->io_vals || !p->key) {
        s = kiln_fail(err, KILN_ERR_NO_MEMORY, "%s: plan", o->label);
        goto fail;
    }
    if (nv) memcpy(p->kind, sp->kind, (size_t)nv);
    for (int32_t v = 0; v < nv; v++) {
        p->vals[v] = sp->vals[v];
        p->alias[v] = sp->alias[v];
        p->offset[v] = (size_t)sp->offset[v];
        if (p->kind[v] != KILN_VK_CONST) p->vals[v].data = NULL;
    }
    for (int32_t v = 0; v < nv; v++) {
        if (p->kind[v] != KILN_VK_FOLDED) continue;
        /* the plan owns its folded data (kiln_plan_free) */
        if (!(p->vals[v].data = kiln_aligned_alloc(p->vals[v].nbytes))) {
            s = kiln_fail(err, KILN_ERR_NO_MEMORY, "%s: plan", o->label);
            goto fail;
        }
        if (p->vals[v].nbytes) memcpy(p->vals[v].data, sp->vals[v].data, p->vals[v].nbytes);
    }
    p->n_steps = sp->n_steps;
    for (int32_t i = 0; i < sp->n_steps; i++) p->steps[i].node = sp->steps[i];
    p->arena_bytes = (size_t)sp->arena_bytes;
    p->flops = sp->flops;
    p->activation_layout = sp->activation_layout;
    p->stored = true;
    assign_step_layout_ops(p, g);
    if (o->prepare) {
        s = prepare_steps(p, g, o, ctx, err);
        if (!s) s = plan_conversions(p, g, o, err);
        if (s) goto fail;
    }
    *out = p;
    return KILN_OK;
fail:
    kiln_plan_free(p);
    return s;
}
