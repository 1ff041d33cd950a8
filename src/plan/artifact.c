/*
 * artifact.c — the compiled plan file (.kiln): writing it, and loading it by
 * mmap so that every session and every process that loads the same file
 * reads the same physical weight pages. Layout in docs/kiln-format.md.
 *
 * The file is untrusted on load: every count, length and offset is checked
 * against the bytes that remain before it is used.
 */
#include "plan/artifact.h"
#include "base/status.h"
#include "ops/op.h"
#include "passes/passes.h"
#include "plan/plan.h"

#include <errno.h>
#include <fcntl.h>
#include <openssl/evp.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/mman.h>
#include <sys/stat.h>
#include <unistd.h>

#define PAGE 4096u
#define WALIGN 64u
#define MAX_COUNT (1u << 24)
#define MAX_STR (1u << 20)

/* ---- writer ---------------------------------------------------------------- */

struct wbuf {
    uint8_t *p;
    size_t len, cap;
    bool oom;
};

static void w_bytes(struct wbuf *b, const void *d, size_t n) {
    if (b->oom) return;
    if (b->len + n > b->cap) {
        size_t nc = (b->cap + n) * 2;
        uint8_t *np = realloc(b->p, nc);
        if (!np) {
            b->oom = true;
            return;
        }
        b->p = np;
        b->cap = nc;
    }
    if (n) memcpy(b->p + b->len, d, n);
    b->len += n;
}
static void w_u32(struct wbuf *b, uint32_t v) { w_bytes(b, &v, 4); }
static void w_i32(struct wbuf *b, int32_t v) { w_bytes(b, &v, 4); }
static void w_i64(struct wbuf *b, int64_t v) { w_bytes(b, &v, 8); }
static void w_u64(struct wbuf *b, uint64_t v) { w_bytes(b, &v, 8); }
static void w_f32(struct wbuf *b, float v) { w_bytes(b, &v, 4); }
static void w_str(struct wbuf *b, const char *s) {
    uint32_t n = s ? (uint32_t)strlen(s) : 0;
    w_u32(b, n);
    w_bytes(b, s, n);
}
static void w_strn(struct wbuf *b, const char *s, size_t n) {
    w_u32(b, (uint32_t)n);
    w_bytes(b, s, n);
}

static void w_graph(struct wbuf *m, struct wbuf *wts, const struct kiln_graph *g);

static void w_tensor_inline(struct wbuf *m, const struct kiln_value *v) {
    w_i32(m, v->dtype);
    w_i32(m, v->rank);
    for (int32_t r = 0; r < v->rank; r++) w_i64(m, v->dims[r]);
    w_u64(m, v->nbytes);
    w_bytes(m, v->data, v->nbytes);
}

static void w_graph(struct wbuf *m, struct wbuf *wts, const struct kiln_graph *g) {
    w_str(m, g->name);
    w_u32(m, (uint32_t)g->n_values);
    for (int32_t i = 0; i < g->n_values; i++) {
        const struct kiln_value_info *vi = &g->values[i];
        uint32_t flags = (vi->is_const ? 1u : 0) | (vi->is_input ? 2u : 0) |
                         (vi->has_shape ? 4u : 0) | (vi->non_tensor ? 8u : 0);
        w_str(m, vi->name);
        w_u32(m, flags);
        w_i32(m, vi->v.dtype);
        w_i32(m, vi->v.rank);
        for (int32_t r = 0; r < vi->v.rank; r++) {
            w_i64(m, vi->v.dims[r]);
            w_str(m, vi->dim_names[r]);
        }
        w_i32(m, vi->outer);
        if (vi->is_const) {
            /* weights: 64-byte aligned inside the page-aligned weight section */
            size_t pad = (WALIGN - wts->len % WALIGN) % WALIGN;
            static const uint8_t zeros[WALIGN];
            w_bytes(wts, zeros, pad);
            w_u64(m, wts->len);
            w_u64(m, vi->v.nbytes);
            w_bytes(wts, vi->v.data, vi->v.nbytes);
        }
    }
    w_u32(m, (uint32_t)g->n_inputs);
    for (int32_t i = 0; i < g->n_inputs; i++) w_i32(m, g->inputs[i]);
    w_u32(m, (uint32_t)g->n_outputs);
    for (int32_t i = 0; i < g->n_outputs; i++) w_i32(m, g->outputs[i]);
    w_u32(m, (uint32_t)g->n_nodes);
    for (int32_t i = 0; i < g->n_nodes; i++) {
        const struct kiln_node *n = &g->nodes[i];
        w_str(m, n->name);
        w_str(m, n->op_type);
        w_str(m, n->domain);
        w_i64(m, n->opset);
        w_u32(m, (uint32_t)n->n_inputs);
        for (int32_t j = 0; j < n->n_inputs; j++) w_i32(m, n->inputs[j]);
        w_u32(m, (uint32_t)n->n_outputs);
        for (int32_t j = 0; j < n->n_outputs; j++) w_i32(m, n->outputs[j]);
        w_i32(m, n->act.kind);
        w_f32(m, n->act.alpha);
        w_f32(m, n->act.beta);
        w_i32(m, n->sum_input);   /* since version 2 */
        w_u32(m, (uint32_t)n->n_attrs);
        for (int32_t a = 0; a < n->n_attrs; a++) {
            const struct kiln_attr *at = &n->attrs[a];
            w_str(m, at->name);
            w_i32(m, at->type);
            switch (at->type) {
            case KILN_ATTR_FLOAT: w_f32(m, at->f); break;
            case KILN_ATTR_INT: w_i64(m, at->i); break;
            case KILN_ATTR_STRING: w_strn(m, at->s ? at->s : "", at->s ? at->s_len : 0); break;
            case KILN_ATTR_TENSOR: w_tensor_inline(m, &at->t); break;
            case KILN_ATTR_GRAPH: w_graph(m, wts, at->g); break;
            case KILN_ATTR_FLOATS: w_i64(m, at->n); w_bytes(m, at->floats, (size_t)at->n * 4); break;
            case KILN_ATTR_INTS: w_i64(m, at->n); w_bytes(m, at->ints, (size_t)at->n * 8); break;
            case KILN_ATTR_STRINGS:
                w_i64(m, at->n);
                for (int64_t k = 0; k < at->n; k++) w_str(m, at->strings[k]);
                break;
            default: break; /* kinds no op reads: kept as a bare type tag */
            }
        }
    }
}

/* One stored plan (docs/kiln-format.md, "Stored plans"). */
static void w_plan(struct wbuf *b, const struct kiln_plan *p, int32_t batch) {
    uint64_t flops_bits;
    memcpy(&flops_bits, &p->flops, 8);
    w_i32(b, batch);
    w_i32(b, p->activation_layout);
    w_u64(b, p->arena_bytes);
    w_u64(b, flops_bits);
    w_u32(b, (uint32_t)p->n_values);
    for (int32_t v = 0; v < p->n_values; v++) {
        const struct kiln_value *pv = &p->vals[v];
        uint8_t kl[4] = {p->kind[v], pv->layout, 0, 0};
        w_bytes(b, kl, 4);
        w_i32(b, pv->dtype);
        w_i32(b, pv->rank);
        for (int32_t r = 0; r < pv->rank; r++) w_i64(b, pv->dims[r]);
        w_i32(b, p->alias[v]);
        w_u64(b, p->kind[v] == KILN_VK_ARENA ? p->offset[v] : 0);
        if (p->kind[v] == KILN_VK_FOLDED) {
            /* data 64-byte aligned in the section (which is 64-byte aligned in the
             * file): shape inference reads it in place when the file is checked */
            static const uint8_t zeros[WALIGN];
            w_u64(b, pv->nbytes);
            w_bytes(b, zeros, (WALIGN - b->len % WALIGN) % WALIGN);
            w_bytes(b, pv->data, pv->nbytes);
        }
    }
    w_u32(b, (uint32_t)p->n_steps);
    for (int32_t i = 0; i < p->n_steps; i++) w_i32(b, p->steps[i].node);
}

static kiln_status sha256_file(const char *path, uint8_t out[32], kiln_error *err) {
    FILE *f = fopen(path, "rb");
    if (!f) return kiln_fail(err, KILN_ERR_IO, "%s: cannot open: %s", path, strerror(errno));
    EVP_MD_CTX *ctx = EVP_MD_CTX_new();
    kiln_status s = KILN_OK;
    if (!ctx || EVP_DigestInit_ex(ctx, EVP_sha256(), NULL) != 1) {
        s = kiln_fail(err, KILN_ERR_INTERNAL, "sha256: init failed");
    } else {
        static __thread uint8_t buf[1 << 16];
        size_t n;
        while ((n = fread(buf, 1, sizeof buf, f)) > 0) EVP_DigestUpdate(ctx, buf, n);
        unsigned len = 32;
        if (ferror(f)) s = kiln_fail(err, KILN_ERR_IO, "%s: read error", path);
        else EVP_DigestFinal_ex(ctx, out, &len);
    }
    EVP_MD_CTX_free(ctx);
    fclose(f);
    return s;
}

kiln_status kiln_artifact_write(const struct kiln_graph *g, const char *source_path,
                                const struct kiln_artifact_info *info, const char *out_path,
                                kiln_error *err) {
    struct kiln_artifact_header h;
    memset(&h, 0, sizeof h);
    memcpy(h.magic, KILN_ARTIFACT_MAGIC, 8);
    h.format_version = KILN_ARTIFACT_VERSION;
    h.endian_check = 0x01020304u;
    h.header_size = sizeof h;
    snprintf(h.cpu_features, sizeof h.cpu_features, "%s", kiln_cpu_features_str());
    snprintf(h.precision, sizeof h.precision, "%s", info && info->precision ? info->precision : "fp32");
    if (info)
        for (int i = 0; i < info->n_batch_sizes && i < KILN_ARTIFACT_MAX_BATCHES; i++)
            h.batch_sizes[h.n_batch_sizes++] = info->batch_sizes[i];
    kiln_status s = KILN_OK;
    if (source_path) {
        s = sha256_file(source_path, h.source_sha256, err);
        if (s) return s;
    }
    struct wbuf meta = {0}, wts = {0};
    w_graph(&meta, &wts, g);
    if (meta.oom || wts.oom) {
        free(meta.p);
        free(wts.p);
        return kiln_fail(err, KILN_ERR_NO_MEMORY, "%s: serializing the plan", out_path);
    }
    h.meta_off = sizeof h;
    h.meta_len = meta.len;
    h.weights_off = (h.meta_off + h.meta_len + PAGE - 1) / PAGE * PAGE;
    h.weights_len = wts.len;
    h.file_size = h.weights_off + h.weights_len;

    /* pre-packed weights: an index, the keys, then page-aligned blocks, so a
     * loading process maps the packed bytes instead of packing its own copy */
    struct wbuf pk = {0};
    int32_t np = info && info->packed ? info->n_packed : 0;
    if (np > 0) {
        size_t index_len = (size_t)np * 32, keys_len = 0;
        for (int32_t i = 0; i < np; i++) keys_len += info->packed[i].key_len;
        uint64_t data_at = (index_len + keys_len + PAGE - 1) / PAGE * PAGE;
        uint64_t key_at = index_len;
        for (int32_t i = 0; i < np; i++) {
            const struct kiln_artifact_packed *e = &info->packed[i];
            w_u32(&pk, (uint32_t)e->value);
            w_u32(&pk, (uint32_t)e->key_len);
            w_u64(&pk, e->bytes);
            w_u64(&pk, data_at);
            w_u64(&pk, key_at);
            key_at += e->key_len;
            data_at = (data_at + e->bytes + PAGE - 1) / PAGE * PAGE;
        }
        for (int32_t i = 0; i < np; i++) w_bytes(&pk, info->packed[i].key, info->packed[i].key_len);
        for (int32_t i = 0; i < np; i++) {
            static const uint8_t zpad[PAGE];
            w_bytes(&pk, zpad, (PAGE - pk.len % PAGE) % PAGE);
            w_bytes(&pk, info->packed[i].data, info->packed[i].bytes);
        }
        if (pk.oom) {
            free(meta.p);
            free(wts.p);
            free(pk.p);
            return kiln_fail(err, KILN_ERR_NO_MEMORY, "%s: serializing packed weights", out_path);
        }
        h.n_packed = (uint32_t)np;
        h.packed_off = (h.file_size + PAGE - 1) / PAGE * PAGE;
        h.packed_len = pk.len;
        h.file_size = h.packed_off + h.packed_len;
    }

    /* stored plans: after everything else, 64-byte aligned */
    struct wbuf pl = {0};
    for (int32_t i = 0; info && info->plans && i < info->n_plans && h.n_plans < KILN_ARTIFACT_MAX_PLANS; i++) {
        if (!info->plans[i] || info->plans[i]->dynamic) continue;
        w_plan(&pl, info->plans[i], info->plan_batches ? info->plan_batches[i] : 0);
        h.n_plans++;
    }
    if (pl.oom) {
        free(meta.p);
        free(wts.p);
        free(pk.p);
        free(pl.p);
        return kiln_fail(err, KILN_ERR_NO_MEMORY, "%s: serializing stored plans", out_path);
    }
    uint64_t before_plans = h.file_size;
    if (h.n_plans) {
        h.plans_off = (h.file_size + WALIGN - 1) / WALIGN * WALIGN;
        h.plans_len = pl.len;
        h.file_size = h.plans_off + h.plans_len;
    }

    char tmp[4096];
    snprintf(tmp, sizeof tmp, "%s.tmp%d", out_path, (int)getpid());
    FILE *f = fopen(tmp, "wb");
    if (!f) {
        s = kiln_fail(err, KILN_ERR_IO, "%s: cannot create: %s", tmp, strerror(errno));
        goto done;
    }
    static const uint8_t zeros[PAGE];
    /* an empty section's buffer may be NULL, which fwrite must not get */
#define WRITE_ALL(p, n) ((n) == 0 || fwrite((p), 1, (n), f) == (n))
    size_t pad = (size_t)(h.weights_off - h.meta_off - h.meta_len);
    bool ok = fwrite(&h, sizeof h, 1, f) == 1 && WRITE_ALL(meta.p, meta.len) && WRITE_ALL(zeros, pad) &&
              WRITE_ALL(wts.p, wts.len);
    if (ok && np > 0) {
        size_t pad2 = (size_t)(h.packed_off - h.weights_off - h.weights_len);
        ok = WRITE_ALL(zeros, pad2) && WRITE_ALL(pk.p, pk.len);
    }
    if (ok && h.n_plans) {
        size_t pad3 = (size_t)(h.plans_off - before_plans);
        ok = WRITE_ALL(zeros, pad3) && WRITE_ALL(pl.p, pl.len);
    }
#undef WRITE_ALL
    ok = (fclose(f) == 0) && ok;
    /* write-then-rename: a crash never leaves a half-written plan under the real name */
    if (!ok || rename(tmp, out_path) != 0) {
        unlink(tmp);
        s = kiln_fail(err, KILN_ERR_IO, "%s: write failed: %s", out_path, strerror(errno));
    }
done:
    free(meta.p);
    free(wts.p);
    free(pk.p);
    free(pl.p);
    return s;
}

/* ---- reader ---------------------------------------------------------------- */

struct rbuf {
    const uint8_t *p;
    size_t len, off;
    const uint8_t *weights;
    size_t weights_len;
    const char *label;
    int depth;
};

static bool r_bytes(struct rbuf *b, void *d, size_t n) {
    if (n > b->len - b->off) return false;
    if (n) memcpy(d, b->p + b->off, n);
    b->off += n;
    return true;
}
#define R(T, name)                                                        \
    static bool r_##name(struct rbuf *b, T *v) { return r_bytes(b, v, sizeof *v); }
R(uint32_t, u32)
R(int32_t, i32)
R(int64_t, i64)
R(uint64_t, u64)
R(float, f32)

/* Reads a length-prefixed string into a new NUL-terminated buffer. */
static bool r_str(struct rbuf *b, char **out, size_t *out_len) {
    uint32_t n;
    *out = NULL;
    if (!r_u32(b, &n) || n > MAX_STR || n > b->len - b->off) return false;
    char *s = malloc((size_t)n + 1);
    if (!s) return false;
    memcpy(s, b->p + b->off, n);
    s[n] = '\0';
    b->off += n;
    *out = s;
    if (out_len) *out_len = n;
    return true;
}

static bool r_graph(struct rbuf *b, struct kiln_graph *parent, struct kiln_graph **out);

static bool r_tensor_inline(struct rbuf *b, struct kiln_value *v) {
    uint64_t nbytes;
    if (!r_i32(b, (int32_t *)&v->dtype) || !r_i32(b, &v->rank) || v->rank < 0 ||
        v->rank > KILN_MAX_RANK)
        return false;
    for (int32_t r = 0; r < v->rank; r++)
        if (!r_i64(b, &v->dims[r]) || v->dims[r] < 0) return false;
    size_t want;
    if (!r_u64(b, &nbytes) || !kiln_value_bytes(v, &want) || want != nbytes ||
        nbytes > b->len - b->off)
        return false;
    v->data = malloc(nbytes ? nbytes : 1);
    if (!v->data) return false;
    memcpy(v->data, b->p + b->off, nbytes);
    b->off += nbytes;
    v->nbytes = nbytes;
    return true;
}

static bool valid_id(const struct kiln_graph *g, int32_t id, bool optional) {
    return (optional && id == -1) || (id >= 0 && id < g->n_values);
}

/* What the ONNX importer guarantees and the planner relies on, checked again
 * because a plan file is untrusted: a value is at most one of constant, graph
 * input or outer reference; the input list holds each input value exactly
 * once; nodes come in topological order, each value is written by at most one
 * node and never one that is a constant, input or outer reference; a value is
 * defined before any node (or subgraph of a node) reads it; graph outputs are
 * defined. */
static bool valid_structure(const struct kiln_graph *g) {
    uint8_t *def = calloc((size_t)g->n_values + 1, 1);   /* 1: defined, 2: listed input */
    if (!def) return false;
    bool ok = false;
    int32_t n_flagged = 0;
    for (int32_t v = 0; v < g->n_values; v++) {
        const struct kiln_value_info *vi = &g->values[v];
        if ((vi->is_const ? 1 : 0) + (vi->is_input ? 1 : 0) + (vi->outer >= 0 ? 1 : 0) > 1) goto done;
        if (vi->is_const || vi->outer >= 0) def[v] = 1;
        n_flagged += vi->is_input;
    }
    for (int32_t i = 0; i < g->n_inputs; i++) {
        int32_t v = g->inputs[i];
        if (!g->values[v].is_input || def[v]) goto done;
        def[v] = 2;
    }
    if (n_flagged != g->n_inputs) goto done;
    for (int32_t i = 0; i < g->n_nodes; i++) {
        const struct kiln_node *n = &g->nodes[i];
        for (int32_t j = 0; j < n->n_inputs; j++)
            if (n->inputs[j] >= 0 && !def[n->inputs[j]]) goto done;
        for (int32_t a = 0; a < n->n_attrs; a++) {
            const struct kiln_graph *sg = n->attrs[a].type == KILN_ATTR_GRAPH ? n->attrs[a].g : NULL;
            for (int32_t v = 0; sg && v < sg->n_values; v++)
                if (sg->values[v].outer >= 0 && !def[sg->values[v].outer]) goto done;
        }
        for (int32_t j = 0; j < n->n_outputs; j++) {
            int32_t v = n->outputs[j];
            if (v < 0) continue;
            if (def[v]) goto done;
            def[v] = 1;
        }
    }
    for (int32_t i = 0; i < g->n_outputs; i++)
        if (!def[g->outputs[i]]) goto done;
    ok = true;
done:
    free(def);
    return ok;
}

static bool r_graph(struct rbuf *b, struct kiln_graph *parent, struct kiln_graph **out) {
    *out = NULL;
    if (++b->depth > 32) return false;
    char *name;
    if (!r_str(b, &name, NULL)) return false;
    struct kiln_graph *g = kiln_graph_new(name, parent);
    free(name);
    if (!g) return false;
    uint32_t nv, cnt;
    if (!r_u32(b, &nv) || nv > MAX_COUNT) goto fail;
    for (uint32_t i = 0; i < nv; i++) {
        char *vn;
        uint32_t flags;
        if (!r_str(b, &vn, NULL)) goto fail;
        int32_t id = kiln_graph_add_value(g, vn);
        free(vn);
        if (id < 0) goto fail;
        struct kiln_value_info *vi = &g->values[id];
        if (!r_u32(b, &flags) || !r_i32(b, (int32_t *)&vi->v.dtype) || !r_i32(b, &vi->v.rank) ||
            vi->v.rank < 0 || vi->v.rank > KILN_MAX_RANK)
            goto fail;
        vi->is_const = flags & 1u;
        vi->is_input = flags & 2u;
        vi->has_shape = flags & 4u;
        vi->non_tensor = flags & 8u;
        for (int32_t r = 0; r < vi->v.rank; r++) {
            size_t dl;
            if (!r_i64(b, &vi->v.dims[r]) || !r_str(b, &vi->dim_names[r], &dl)) goto fail;
            if (!dl) {
                free(vi->dim_names[r]);
                vi->dim_names[r] = NULL;
            }
        }
        if (!r_i32(b, &vi->outer)) goto fail;
        if (vi->outer != -1 && (!parent || vi->outer < 0 || vi->outer >= parent->n_values)) goto fail;
        if (vi->is_const) {
            uint64_t off, nbytes;
            size_t want;
            if (!r_u64(b, &off) || !r_u64(b, &nbytes)) goto fail;
            if (off % WALIGN || off > b->weights_len || nbytes > b->weights_len - off) goto fail;
            for (int32_t r = 0; r < vi->v.rank; r++)
                if (vi->v.dims[r] < 0) goto fail;
            if (!kiln_value_bytes(&vi->v, &want) || want != nbytes) goto fail;
            vi->v.data = (void *)(b->weights + off);   /* borrowed from the mapping */
            vi->v.nbytes = nbytes;
            vi->borrowed = true;
        }
    }
    if (!r_u32(b, &cnt) || cnt > nv) goto fail;
    g->inputs = malloc((cnt ? cnt : 1) * sizeof(int32_t));
    if (!g->inputs) goto fail;
    for (uint32_t i = 0; i < cnt; i++) {
        if (!r_i32(b, &g->inputs[i]) || !valid_id(g, g->inputs[i], false)) goto fail;
        g->n_inputs++;
    }
    if (!r_u32(b, &cnt) || cnt > nv) goto fail;
    g->outputs = malloc((cnt ? cnt : 1) * sizeof(int32_t));
    if (!g->outputs) goto fail;
    for (uint32_t i = 0; i < cnt; i++) {
        if (!r_i32(b, &g->outputs[i]) || !valid_id(g, g->outputs[i], false)) goto fail;
        g->n_outputs++;
    }
    uint32_t nn;
    if (!r_u32(b, &nn) || nn > MAX_COUNT) goto fail;
    for (uint32_t i = 0; i < nn; i++) {
        struct kiln_node *n = kiln_graph_add_node(g);
        if (!n) goto fail;
        uint32_t ni, no, na;
        if (!r_str(b, &n->name, NULL) || !r_str(b, &n->op_type, NULL) ||
            !r_str(b, &n->domain, NULL) || !r_i64(b, &n->opset) || !r_u32(b, &ni) || ni > 4096)
            goto fail;
        n->inputs = malloc((ni ? ni : 1) * sizeof(int32_t));
        if (!n->inputs) goto fail;
        for (uint32_t j = 0; j < ni; j++) {
            if (!r_i32(b, &n->inputs[j]) || !valid_id(g, n->inputs[j], true)) goto fail;
            n->n_inputs++;
        }
        if (!r_u32(b, &no) || no > 4096) goto fail;
        n->outputs = malloc((no ? no : 1) * sizeof(int32_t));
        if (!n->outputs) goto fail;
        for (uint32_t j = 0; j < no; j++) {
            if (!r_i32(b, &n->outputs[j]) || !valid_id(g, n->outputs[j], true)) goto fail;
            n->n_outputs++;
        }
        int32_t ak;
        if (!r_i32(b, &ak) || ak < 0 || ak > KILN_ACT_LAST || !r_f32(b, &n->act.alpha) ||
            !r_f32(b, &n->act.beta) || !r_i32(b, &n->sum_input) || !r_u32(b, &na) || na > 4096)
            goto fail;
        /* a fused residual is input 3 of a Conv that has it (checked again by Conv's infer),
         * input 2 of a MatMul with a fused bias (fuse-matmul-bias), or input 4 of the int8
         * compiler's kiln.QConv */
        if (n->sum_input &&
            !(n->sum_input == 3 && n->n_inputs == 4 && n->inputs[3] >= 0 &&
              !strcmp(n->op_type, "Conv") && !*n->domain) &&
            !(n->sum_input == 2 && n->n_inputs == 3 && n->inputs[2] >= 0 &&
              !strcmp(n->op_type, "MatMul") && !*n->domain) &&
            !(n->sum_input == 4 && n->n_inputs == 5 && n->inputs[4] >= 0 &&
              !strcmp(n->op_type, "QConv") && !strcmp(n->domain, "kiln")))
            goto fail;
        n->act.kind = (enum kiln_act_kind)ak;
        n->attrs = calloc(na ? na : 1, sizeof *n->attrs);
        if (!n->attrs) goto fail;
        for (uint32_t a = 0; a < na; a++) {
            struct kiln_attr *at = &n->attrs[a];
            n->n_attrs++;
            int32_t type;
            if (!r_str(b, &at->name, NULL) || !r_i32(b, &type)) goto fail;
            at->type = (kiln_attr_type)type;
            int64_t cnt64;
            switch (type) {
            case KILN_ATTR_FLOAT: if (!r_f32(b, &at->f)) goto fail; break;
            case KILN_ATTR_INT: if (!r_i64(b, &at->i)) goto fail; break;
            case KILN_ATTR_STRING: if (!r_str(b, &at->s, &at->s_len)) goto fail; break;
            case KILN_ATTR_TENSOR: if (!r_tensor_inline(b, &at->t)) goto fail; break;
            case KILN_ATTR_GRAPH: if (!r_graph(b, g, &at->g)) goto fail; break;
            case KILN_ATTR_FLOATS:
            case KILN_ATTR_INTS: {
                size_t esz = type == KILN_ATTR_FLOATS ? 4 : 8;
                if (!r_i64(b, &cnt64) || cnt64 < 0 || (uint64_t)cnt64 > (b->len - b->off) / esz) goto fail;
                void *d = malloc(cnt64 ? (size_t)cnt64 * esz : 1);
                if (!d || !r_bytes(b, d, (size_t)cnt64 * esz)) {
                    free(d);
                    goto fail;
                }
                at->n = cnt64;
                if (type == KILN_ATTR_FLOATS) at->floats = d;
                else at->ints = d;
                break;
            }
            case KILN_ATTR_STRINGS:
                if (!r_i64(b, &cnt64) || cnt64 < 0 || (uint64_t)cnt64 > (b->len - b->off) / 4) goto fail;
                at->strings = calloc(cnt64 ? (size_t)cnt64 : 1, sizeof(char *));
                if (!at->strings) goto fail;
                at->n = cnt64;
                for (int64_t k = 0; k < cnt64; k++)
                    if (!r_str(b, &at->strings[k], NULL)) goto fail;
                break;
            default: break;
            }
        }
        n = &g->nodes[g->n_nodes - 1];
        n->op = kiln_op_lookup(n->domain, n->op_type, n->opset);
    }
    kiln_graph_recount(g);
    if (!valid_structure(g)) goto fail;
    b->depth--;
    *out = g;
    return true;
fail:
    b->depth--;
    kiln_graph_free(g);
    return false;
}

bool kiln_artifact_is_plan(const uint8_t *data, size_t len) {
    return len >= 8 && !memcmp(data, KILN_ARTIFACT_MAGIC, 8);
}

kiln_status kiln_artifact_map(const char *path, struct kiln_artifact *out, kiln_error *err) {
    memset(out, 0, sizeof *out);
    int fd = open(path, O_RDONLY | O_CLOEXEC);
    if (fd < 0) return kiln_fail(err, KILN_ERR_IO, "%s: cannot open: %s", path, strerror(errno));
    struct stat st;
    if (fstat(fd, &st) != 0 || st.st_size < (off_t)KILN_ARTIFACT_V3_HEADER_SIZE) {
        close(fd);
        return kiln_fail(err, KILN_ERR_BAD_MODEL, "%s: too short for a kiln plan", path);
    }
    /* read-only shared mapping: the page cache holds one copy for all processes */
    void *map = mmap(NULL, (size_t)st.st_size, PROT_READ, MAP_SHARED, fd, 0);
    close(fd);
    if (map == MAP_FAILED) return kiln_fail(err, KILN_ERR_IO, "%s: mmap failed: %s", path, strerror(errno));
    out->map = map;
    out->map_len = (size_t)st.st_size;
    kiln_status s = kiln_artifact_parse(map, (size_t)st.st_size, path, out, err);
    if (s) {
        munmap(map, (size_t)st.st_size);
        out->map = NULL;
    }
    return s;
}

/* Reads and checks the stored-plans section (sec, len bytes) against graph g. */
static kiln_status r_plans(const uint8_t *sec, size_t len, uint32_t n_plans, const struct kiln_graph *g,
                           const char *label, struct kiln_artifact *out, kiln_error *err) {
    out->plans = calloc(n_plans, sizeof *out->plans);
    if (!out->plans) return kiln_fail(err, KILN_ERR_NO_MEMORY, "%s: stored plans", label);
    struct rbuf b = {.p = sec, .len = len, .label = label};
    for (uint32_t i = 0; i < n_plans; i++) {
        struct kiln_stored_plan *sp = &out->plans[i];
        out->n_plans = (int32_t)i + 1;
        uint32_t nv, ns;
        uint64_t flops_bits;
        const char *field = "header";
        if (!r_i32(&b, &sp->batch) || !r_i32(&b, &sp->activation_layout) ||
            !r_u64(&b, &sp->arena_bytes) || !r_u64(&b, &flops_bits) || !r_u32(&b, &nv))
            goto bad;
        memcpy(&sp->flops, &flops_bits, 8);
        field = "n_values";
        if (nv != (uint32_t)g->n_values) goto bad;
        sp->n_values = (int32_t)nv;
        size_t n1 = nv ? nv : 1;
        sp->vals = calloc(n1, sizeof *sp->vals);
        sp->kind = calloc(n1, 1);
        sp->alias = calloc(n1, sizeof *sp->alias);
        sp->offset = calloc(n1, sizeof *sp->offset);
        if (!sp->vals || !sp->kind || !sp->alias || !sp->offset)
            return kiln_fail(err, KILN_ERR_NO_MEMORY, "%s: stored plans", label);
        for (uint32_t v = 0; v < nv; v++) {
            struct kiln_value *pv = &sp->vals[v];
            uint8_t kl[4];
            field = "value kind";
            if (!r_bytes(&b, kl, 4) || kl[0] > KILN_VK_ALIAS || kl[2] || kl[3]) goto bad;
            sp->kind[v] = kl[0];
            pv->layout = kl[1];
            field = "value shape";
            if (!r_i32(&b, (int32_t *)&pv->dtype) || !r_i32(&b, &pv->rank) || pv->rank < 0 ||
                pv->rank > KILN_MAX_RANK)
                goto bad;
            for (int32_t r = 0; r < pv->rank; r++)
                if (!r_i64(&b, &pv->dims[r]) || pv->dims[r] < 0) goto bad;
            field = "value alias";
            if (!r_i32(&b, &sp->alias[v]) || sp->alias[v] < -1 || sp->alias[v] >= (int32_t)nv ||
                (sp->kind[v] == KILN_VK_ALIAS) != (sp->alias[v] >= 0))
                goto bad;
            field = "value offset";
            if (!r_u64(&b, &sp->offset[v]) || (sp->kind[v] != KILN_VK_ARENA && sp->offset[v])) goto bad;
            if (sp->kind[v] == KILN_VK_FOLDED) {
                uint64_t nb;
                field = "folded data";
                if (!r_u64(&b, &nb)) goto bad;
                for (size_t pad = (WALIGN - b.off % WALIGN) % WALIGN; pad > 0; pad--)
                    if (b.off >= b.len || b.p[b.off++]) goto bad;
                if (nb > b.len - b.off) goto bad;
                pv->data = (void *)(b.p + b.off);   /* borrowed from the mapping */
                pv->nbytes = (size_t)nb;
                b.off += (size_t)nb;
            }
        }
        field = "steps";
        if (!r_u32(&b, &ns) || ns > (uint32_t)g->n_nodes || (size_t)ns * 4 > b.len - b.off) goto bad;
        sp->n_steps = (int32_t)ns;
        sp->steps = malloc((ns ? ns : 1) * sizeof *sp->steps);
        if (!sp->steps) return kiln_fail(err, KILN_ERR_NO_MEMORY, "%s: stored plans", label);
        for (uint32_t k = 0; k < ns; k++) r_i32(&b, &sp->steps[k]);
        kiln_status s = kiln_plan_check_stored(g, sp, label, err);
        if (s) return s;
        for (uint32_t k = 0; k < i; k++)
            if (!strcmp(out->plans[k].key, sp->key) && out->plans[k].activation_layout == sp->activation_layout)
                return kiln_fail(err, KILN_ERR_BAD_MODEL,
                                 "%s: corrupt plan (stored plans %u and %u are for the same input shapes)",
                                 label, k, i);
        continue;
    bad:
        return kiln_fail(err, KILN_ERR_BAD_MODEL, "%s: corrupt plan (stored plan %u: %s invalid near byte %zu of the section)",
                         label, i, field, b.off);
    }
    if (b.off != b.len)
        return kiln_fail(err, KILN_ERR_BAD_MODEL, "%s: corrupt plan (%zu stray bytes after the stored plans)",
                         label, b.len - b.off);
    return KILN_OK;
}

static void free_plans(struct kiln_artifact *a) {
    for (int32_t i = 0; i < a->n_plans; i++) kiln_stored_plan_clear(&a->plans[i]);
    free(a->plans);
    a->plans = NULL;
    a->n_plans = 0;
}

kiln_status kiln_artifact_parse(const uint8_t *data, size_t len, const char *label,
                                struct kiln_artifact *out, kiln_error *err) {
    struct kiln_artifact_header h;
    if (len < KILN_ARTIFACT_V3_HEADER_SIZE)
        return kiln_fail(err, KILN_ERR_BAD_MODEL, "%s: too short for a kiln plan", label);
    memset(&h, 0, sizeof h);
    memcpy(&h, data, KILN_ARTIFACT_V3_HEADER_SIZE);
    if (memcmp(h.magic, KILN_ARTIFACT_MAGIC, 8))
        return kiln_fail(err, KILN_ERR_BAD_MODEL, "%s: not a kiln plan (bad magic)", label);
    if (h.endian_check != 0x01020304u)
        return kiln_fail(err, KILN_ERR_UNSUPPORTED, "%s: plan was written on a machine of the other endianness", label);
    /* version 3 is version 4 without stored plans: its header ends before n_plans */
    if (h.format_version != KILN_ARTIFACT_VERSION && h.format_version != 3)
        return kiln_fail(err, KILN_ERR_UNSUPPORTED,
                         "%s: plan format version %u, this kiln reads versions 3 and %u: recompile it "
                         "with kiln compile",
                         label, h.format_version, KILN_ARTIFACT_VERSION);
    size_t hsize = h.format_version == 3 ? KILN_ARTIFACT_V3_HEADER_SIZE : sizeof h;
    if (len < hsize) return kiln_fail(err, KILN_ERR_BAD_MODEL, "%s: too short for a kiln plan", label);
    memcpy(&h, data, hsize);
    if (h.header_size != hsize || h.file_size != len || h.meta_off != hsize ||
        h.meta_len > len - h.meta_off || h.weights_off % PAGE || h.weights_off > len ||
        h.weights_len > len - h.weights_off || h.weights_off < h.meta_off + h.meta_len ||
        h.n_batch_sizes > KILN_ARTIFACT_MAX_BATCHES)
        return kiln_fail(err, KILN_ERR_BAD_MODEL,
                         "%s: corrupt plan header (sections do not fit the %zu-byte file)", label, len);
    /* optional sections follow in order: packed weights, stored plans; the last one ends the file */
    uint64_t end = h.weights_off + h.weights_len;
    if (h.n_packed > (1u << 16) ||
        (h.n_packed && (h.packed_off % PAGE || h.packed_off < end || h.packed_off > len ||
                        h.packed_len > len - h.packed_off)))
        return kiln_fail(err, KILN_ERR_BAD_MODEL,
                         "%s: corrupt plan header (packed-weights section does not fit)", label);
    if (h.n_packed) end = h.packed_off + h.packed_len;
    if (h.n_plans > KILN_ARTIFACT_MAX_PLANS || (!h.n_plans && (h.plans_off || h.plans_len)) ||
        (h.n_plans && (h.plans_off % WALIGN || h.plans_off < end || h.plans_off > len ||
                       h.plans_len > len - h.plans_off)))
        return kiln_fail(err, KILN_ERR_BAD_MODEL,
                         "%s: corrupt plan header (n_plans %u, plans_off or plans_len: stored-plans "
                         "section does not fit)",
                         label, h.n_plans);
    if (h.n_plans) end = h.plans_off + h.plans_len;
    if (end != len)
        return kiln_fail(err, KILN_ERR_BAD_MODEL,
                         "%s: corrupt plan header (the last section ends at byte %llu of the %zu-byte file)",
                         label, (unsigned long long)end, len);
    h.cpu_features[sizeof h.cpu_features - 1] = '\0';
    h.precision[sizeof h.precision - 1] = '\0';
    struct rbuf b = {.p = data + h.meta_off, .len = (size_t)h.meta_len,
                     .weights = data + h.weights_off, .weights_len = (size_t)h.weights_len,
                     .label = label};
    struct kiln_graph *g = NULL;
    if (!r_graph(&b, NULL, &g) || b.off != b.len) {
        kiln_graph_free(g);   /* a graph followed by stray bytes: parsed, then refused */
        return kiln_fail(err, KILN_ERR_BAD_MODEL, "%s: corrupt plan (graph section invalid near byte %zu)",
                         label, (size_t)h.meta_off + b.off);
    }
    out->n_packed = 0;
    out->packed = NULL;
    if (h.n_packed) {
        const uint8_t *sec = data + h.packed_off;
        size_t sl = (size_t)h.packed_len;
        out->packed = calloc(h.n_packed, sizeof *out->packed);
        if (!out->packed) {
            kiln_graph_free(g);
            return kiln_fail(err, KILN_ERR_NO_MEMORY, "%s: packed weights index", label);
        }
        if ((size_t)h.n_packed * 32 > sl) goto bad_packed;
        for (uint32_t i = 0; i < h.n_packed; i++) {
            uint32_t value, key_len;
            uint64_t bytes, data_off, key_off;
            memcpy(&value, sec + i * 32, 4);
            memcpy(&key_len, sec + i * 32 + 4, 4);
            memcpy(&bytes, sec + i * 32 + 8, 8);
            memcpy(&data_off, sec + i * 32 + 16, 8);
            memcpy(&key_off, sec + i * 32 + 24, 8);
            if (value >= (uint32_t)g->n_values || !g->values[value].is_const ||
                !g->values[value].v.data || key_len > 4096 || key_off > sl || key_len > sl - key_off ||
                data_off % PAGE || data_off > sl || bytes > sl - data_off)
                goto bad_packed;
            out->packed[i] = (struct kiln_artifact_packed){(int32_t)value, sec + key_off, key_len,
                                                           sec + data_off, (size_t)bytes};
        }
        out->n_packed = (int32_t)h.n_packed;
    }
    out->n_plans = 0;
    out->plans = NULL;
    if (h.n_plans) {
        kiln_status ps = r_plans(data + h.plans_off, (size_t)h.plans_len, h.n_plans, g, label, out, err);
        if (ps) {
            free_plans(out);
            free(out->packed);
            out->packed = NULL;
            out->n_packed = 0;
            kiln_graph_free(g);
            return ps;
        }
    }
    out->graph = g;
    out->header = h;
    return KILN_OK;
bad_packed:
    free(out->packed);
    out->packed = NULL;
    kiln_graph_free(g);
    return kiln_fail(err, KILN_ERR_BAD_MODEL, "%s: corrupt plan (packed-weights index invalid)", label);
}

void kiln_artifact_unmap(struct kiln_artifact *a) {
    if (a->map) munmap(a->map, a->map_len);
    a->map = NULL;
    free(a->packed);
    a->packed = NULL;
    a->n_packed = 0;
    free_plans(a);
}
