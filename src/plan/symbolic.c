/* symbolic.c — shapes of every value in terms of the inputs' symbolic dims.
 *
 * Shape inference in kiln is concrete (each op's infer sees numbers), so the
 * symbolic form is recovered by probing: the graph is planned once with every
 * symbol at a base value and once more per symbol with only that symbol moved.
 * A dim that never moves is a constant; one that moves with exactly one symbol
 * by a whole multiple is the affine expression a*sym+b of it; anything else
 * (a product of symbols, a data-dependent size) is reported as "?". Probing
 * uses the real shape functions, so it can never disagree with a run. */
#include "plan/symbolic.h"
#include "base/status.h"
#include "plan/plan.h"

#include <stdio.h>
#include <stdlib.h>
#include <string.h>

#define MAX_SYMS 16
#define BASE_VALUE 64     /* probe sizes: multiples of 32, as strided models expect */
#define MOVED_VALUE 96

struct probe {
    struct kiln_plan *plan;   /* NULL if planning failed */
};

static int32_t collect_symbols(const struct kiln_graph *g, const char **names) {
    int32_t n = 0;
    for (int32_t i = 0; i < g->n_inputs; i++) {
        const struct kiln_value_info *vi = &g->values[g->inputs[i]];
        for (int32_t r = 0; r < vi->v.rank; r++) {
            if (vi->v.dims[r] >= 0) continue;
            const char *s = vi->dim_names[r] ? vi->dim_names[r] : "?";
            int32_t k;
            for (k = 0; k < n; k++)
                if (!strcmp(names[k], s)) break;
            if (k == n && n < MAX_SYMS) names[n++] = s;
        }
    }
    return n;
}

static struct kiln_plan *probe(const struct kiln_graph *g, const char **syms, int32_t n_syms,
                               int32_t moved, uint64_t max_tensor) {
    struct kiln_value in[256];
    if (g->n_inputs > 256) return NULL;
    for (int32_t i = 0; i < g->n_inputs; i++) {
        const struct kiln_value_info *vi = &g->values[g->inputs[i]];
        memset(&in[i], 0, sizeof in[i]);
        in[i].dtype = vi->v.dtype;
        in[i].rank = vi->has_shape ? vi->v.rank : 0;
        for (int32_t r = 0; r < in[i].rank; r++) {
            in[i].dims[r] = vi->v.dims[r];
            if (in[i].dims[r] >= 0) continue;
            const char *s = vi->dim_names[r] ? vi->dim_names[r] : "?";
            in[i].dims[r] = BASE_VALUE;
            if (moved >= 0 && !strcmp(syms[moved], s)) in[i].dims[r] = MOVED_VALUE;
        }
    }
    struct kiln_exec_ctx ctx = {.n_threads = 1, .reference_only = 1, .model_label = "probe"};
    struct kiln_plan_options po = {.prepare = 0, .max_arena_bytes = UINT64_MAX,
                                   .max_tensor_bytes = max_tensor, .label = "probe"};
    struct kiln_plan *p = NULL;
    kiln_error err;
    if (kiln_plan_build(g, in, &po, &ctx, &p, &err) != KILN_OK) return NULL;
    (void)n_syms;
    return p;
}

/* Whether value v's shape was determined by the probe: a dynamic plan stops
 * at the first node whose output shape needs data, and later values stay unknown. */
static bool known(const struct kiln_plan *p, const struct kiln_graph *g, int32_t v) {
    if (!p || v < 0) return false;
    const struct kiln_value_info *vi = &g->values[v];
    return vi->is_const || vi->is_input || p->kind[v] != KILN_VK_NONE || !p->dynamic;
}

kiln_status kiln_symbolic_shape(const struct kiln_graph *g, int32_t value, char *buf, size_t n,
                                kiln_error *err) {
    const char *syms[MAX_SYMS];
    int32_t n_syms = collect_symbols(g, syms);
    struct kiln_plan *base = probe(g, syms, n_syms, -1, 1ull << 40);
    if (!base || !known(base, g, value)) {
        kiln_plan_free(base);
        snprintf(buf, n, "?");
        return KILN_OK;
    }
    struct kiln_plan *moved[MAX_SYMS] = {0};
    for (int32_t s = 0; s < n_syms; s++) moved[s] = probe(g, syms, n_syms, s, 1ull << 40);
    const struct kiln_value *bv = &base->vals[value];
    size_t off = (size_t)snprintf(buf, n, "[");
    for (int32_t r = 0; r < bv->rank && off < n; r++) {
        int64_t d0 = bv->dims[r];
        int32_t which = -1, n_moving = 0;
        int64_t delta = 0;
        bool unknown = false;
        for (int32_t s = 0; s < n_syms; s++) {
            if (!moved[s] || !known(moved[s], g, value) || moved[s]->vals[value].rank != bv->rank) {
                unknown = true;
                continue;
            }
            int64_t d1 = moved[s]->vals[value].dims[r];
            if (d1 != d0) {
                n_moving++;
                which = s;
                delta = d1 - d0;
            }
        }
        char dim[96];
        int64_t step = MOVED_VALUE - BASE_VALUE;
        if (n_moving == 0 && !unknown) snprintf(dim, sizeof dim, "%lld", (long long)d0);
        else if (n_moving == 1 && delta % step == 0) {
            int64_t a = delta / step, b = d0 - a * BASE_VALUE;
            int k = a == 1 ? snprintf(dim, sizeof dim, "%s", syms[which])
                           : snprintf(dim, sizeof dim, "%lld*%s", (long long)a, syms[which]);
            if (b) snprintf(dim + k, sizeof dim - (size_t)k, "%+lld", (long long)b);
        } else if (n_moving == 1 && step % delta == 0) {
            int64_t q = step / delta;   /* floor(sym / q) for strided dims */
            snprintf(dim, sizeof dim, "%s/%lld", syms[which], (long long)q);
        } else {
            snprintf(dim, sizeof dim, "?");
        }
        off += (size_t)snprintf(buf + off, n - off, "%s%s", r ? "," : "", dim);
    }
    if (off < n) snprintf(buf + off, n - off, "]");
    for (int32_t s = 0; s < n_syms; s++) kiln_plan_free(moved[s]);
    kiln_plan_free(base);
    (void)err;
    return KILN_OK;
}
