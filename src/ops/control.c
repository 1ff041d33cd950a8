/* control.c — If, Loop and Scan: ops that run subgraphs.
 *
 * These ops are KILN_OP_SUBGRAPH: the executor runs them in dynamic mode and
 * calls exec with unallocated outputs; exec fills each output with a
 * malloc'ed value (kiln_aligned_alloc) that the executor then owns. Their
 * output shapes are whatever the executed branch or body produces. */
#include "ops/op.h"
#include "plan/plan.h"

#include <stdlib.h>
#include <string.h>

static kiln_status infer_dynamic(const struct kiln_node *n, const struct kiln_value *const *in,
                                 int n_in, struct kiln_value *const *out, int n_out,
                                 kiln_error *err) {
    return KILN_DYNAMIC;
}

static void values_free(struct kiln_value *v, int n) {
    for (int i = 0; i < n; i++) {
        free(v[i].data);
        v[i].data = NULL;
    }
}

static bool scalar_true(const struct kiln_value *v) {
    return v && v->data && kiln_value_numel(v) >= 1 && kiln_value_get_int(v, 0) != 0;
}

static kiln_status if_exec(const struct kiln_node *n, struct kiln_exec_ctx *ctx,
                           const struct kiln_value *const *in, int n_in,
                           struct kiln_value *const *out, int n_out, kiln_error *err) {
    if (n_in < 1 || !in[0] || kiln_value_numel(in[0]) != 1)
        return kiln_op_fail(err, KILN_ERR_BAD_MODEL, n, "expected a one-element condition input");
    const struct kiln_graph *br =
        kiln_attr_graph(n, scalar_true(in[0]) ? "then_branch" : "else_branch");
    if (!br) return kiln_op_fail(err, KILN_ERR_BAD_MODEL, n, "missing then_branch/else_branch");
    if (br->n_outputs != n_out)
        return kiln_op_fail(err, KILN_ERR_BAD_MODEL, n, "branch has %d outputs, node has %d",
                            br->n_outputs, n_out);
    struct kiln_value *res = calloc((size_t)(n_out ? n_out : 1), sizeof *res);
    if (!res) return kiln_op_fail(err, KILN_ERR_NO_MEMORY, n, "outputs");
    kiln_status s = ctx->run_subgraph(ctx, br, NULL, 0, res, n_out, err);
    if (s) {
        free(res);
        return s;
    }
    for (int i = 0; i < n_out; i++) {
        if (out[i]) *out[i] = res[i];
        else free(res[i].data);
    }
    free(res);
    return KILN_OK;
}

/* Stacks n slices of equal shape along a new leading axis. */
static kiln_status stack(const struct kiln_node *n, struct kiln_value *slices, int64_t count,
                         const struct kiln_value *shape_if_empty, struct kiln_value *out,
                         kiln_error *err) {
    const struct kiln_value *first = count ? &slices[0] : shape_if_empty;
    if (first->rank + 1 > KILN_MAX_RANK)
        return kiln_op_fail(err, KILN_ERR_UNSUPPORTED, n, "scan output rank too large");
    memset(out, 0, sizeof *out);
    out->dtype = first->dtype;
    out->rank = first->rank + 1;
    out->dims[0] = count;
    for (int32_t r = 0; r < first->rank; r++) out->dims[r + 1] = count ? first->dims[r] : 0;
    size_t per = count ? slices[0].nbytes : 0;
    for (int64_t i = 0; i < count; i++) {
        bool same = slices[i].rank == first->rank && slices[i].dtype == first->dtype;
        for (int32_t r = 0; same && r < first->rank; r++) same = slices[i].dims[r] == first->dims[r];
        if (!same)
            return kiln_op_fail(err, KILN_ERR_SHAPE, n,
                                "scan output changes shape between iterations (iteration %lld)",
                                (long long)i);
    }
    out->nbytes = per * (size_t)count;
    out->data = kiln_aligned_alloc(out->nbytes);
    if (!out->data) return kiln_op_fail(err, KILN_ERR_NO_MEMORY, n, "scan output");
    for (int64_t i = 0; i < count; i++)
        if (per) memcpy((char *)out->data + per * (size_t)i, slices[i].data, per);
    return KILN_OK;
}

#define KILN_LOOP_MAX_ITERS (1ll << 20) /* a bound on runaway models: beyond it is an error, not a hang */

static kiln_status loop_exec(const struct kiln_node *n, struct kiln_exec_ctx *ctx,
                             const struct kiln_value *const *in, int n_in,
                             struct kiln_value *const *out, int n_out, kiln_error *err) {
    const struct kiln_graph *body = kiln_attr_graph(n, "body");
    if (!body) return kiln_op_fail(err, KILN_ERR_BAD_MODEL, n, "missing body");
    int n_carried = n_in - 2;
    if (n_carried < 0) n_carried = 0;
    int n_scan = body->n_outputs - 1 - n_carried;
    if (body->n_inputs != n_carried + 2 || n_scan < 0 || n_out != n_carried + n_scan)
        return kiln_op_fail(err, KILN_ERR_BAD_MODEL, n,
                            "body has %d inputs and %d outputs; node has %d loop-carried values "
                            "and %d outputs",
                            body->n_inputs, body->n_outputs, n_carried, n_out);
    int64_t max_trip = n_in > 0 && in[0] ? kiln_value_get_int(in[0], 0) : KILN_LOOP_MAX_ITERS;
    bool cond = n_in > 1 && in[1] ? scalar_true(in[1]) : true;
    if (max_trip > KILN_LOOP_MAX_ITERS)
        max_trip = KILN_LOOP_MAX_ITERS; /* bounds the run; beyond it is an error below */

    kiln_status s = KILN_OK;
    struct kiln_value *carried = calloc((size_t)n_carried + 1, sizeof *carried);
    struct kiln_value *res = calloc((size_t)body->n_outputs + 1, sizeof *res);
    struct kiln_value **scans = calloc((size_t)n_scan + 1, sizeof *scans);
    int64_t *scan_cap = calloc((size_t)n_scan + 1, sizeof *scan_cap);
    const struct kiln_value **bin = calloc((size_t)body->n_inputs + 1, sizeof *bin);
    int64_t iters = 0;
    if (!carried || !res || !scans || !scan_cap || !bin) {
        s = kiln_op_fail(err, KILN_ERR_NO_MEMORY, n, "loop state");
        goto done;
    }
    for (int i = 0; i < n_carried; i++) {
        if (!in[i + 2]) {
            s = kiln_op_fail(err, KILN_ERR_UNSUPPORTED, n, "loop-carried input %d is omitted", i);
            goto done;
        }
        carried[i] = *in[i + 2];
        carried[i].data = kiln_aligned_alloc(in[i + 2]->nbytes);
        if (!carried[i].data) {
            s = kiln_op_fail(err, KILN_ERR_NO_MEMORY, n, "loop state");
            goto done;
        }
        if (in[i + 2]->nbytes) memcpy(carried[i].data, in[i + 2]->data, in[i + 2]->nbytes);
    }
    while (cond && iters < max_trip) {
        int64_t it = iters;
        uint8_t cond_in = 1;
        struct kiln_value iv = {.dtype = KILN_DTYPE_INT64, .rank = 0, .data = &it, .nbytes = 8};
        struct kiln_value cv = {.dtype = KILN_DTYPE_BOOL, .rank = 0, .data = &cond_in, .nbytes = 1};
        bin[0] = &iv;
        bin[1] = &cv;
        for (int i = 0; i < n_carried; i++) bin[i + 2] = &carried[i];
        s = ctx->run_subgraph(ctx, body, bin, body->n_inputs, res, body->n_outputs, err);
        if (s) goto done;
        cond = scalar_true(&res[0]);
        free(res[0].data);
        for (int i = 0; i < n_carried; i++) {
            free(carried[i].data);
            carried[i] = res[1 + i];
        }
        for (int i = 0; i < n_scan; i++) {
            if (iters == scan_cap[i]) {
                int64_t nc = scan_cap[i] ? scan_cap[i] * 2 : 16;
                struct kiln_value *ns = realloc(scans[i], (size_t)nc * sizeof *ns);
                if (!ns) {
                    values_free(&res[1 + n_carried + i], n_scan - i);
                    s = kiln_op_fail(err, KILN_ERR_NO_MEMORY, n, "scan outputs");
                    goto done;
                }
                scans[i] = ns;
                scan_cap[i] = nc;
            }
            scans[i][iters] = res[1 + n_carried + i];
        }
        iters++;
    }
    if (cond && iters == KILN_LOOP_MAX_ITERS && (n_in < 1 || !in[0] || kiln_value_get_int(in[0], 0) > KILN_LOOP_MAX_ITERS)) {
        s = kiln_op_fail(err, KILN_ERR_LIMIT, n, "loop ran %lld iterations without stopping",
                         (long long)iters);
        goto done;
    }
    for (int i = 0; i < n_carried; i++) {
        if (out[i]) *out[i] = carried[i];
        else free(carried[i].data);
        carried[i].data = NULL;
    }
    for (int i = 0; i < n_scan; i++) {
        struct kiln_value empty = {.dtype = body->values[body->outputs[1 + n_carried + i]].v.dtype};
        struct kiln_value st;
        s = stack(n, scans[i], iters, &empty, &st, err);
        if (s) goto done;
        if (out[n_carried + i]) *out[n_carried + i] = st;
        else free(st.data);
    }
done:
    if (carried) values_free(carried, n_carried);
    for (int i = 0; scans && i < n_scan; i++) {
        if (scans[i]) values_free(scans[i], (int)iters);
        free(scans[i]);
    }
    free(carried);
    free(res);
    free(scans);
    free(scan_cap);
    free(bin);
    return s;
}

/* Scan (opset 9+): states are carried, scan inputs are sliced along their
 * axes, scan outputs are stacked along theirs. */
static kiln_status scan_exec(const struct kiln_node *n, struct kiln_exec_ctx *ctx,
                             const struct kiln_value *const *in, int n_in,
                             struct kiln_value *const *out, int n_out, kiln_error *err) {
    if (n->opset < 9)
        return kiln_op_fail(err, KILN_ERR_UNSUPPORTED, n, "Scan before opset 9 is not supported");
    const struct kiln_graph *body = kiln_attr_graph(n, "body");
    int64_t n_scan_in = kiln_attr_int(n, "num_scan_inputs", -1);
    if (!body || n_scan_in < 0 || n_scan_in > n_in)
        return kiln_op_fail(err, KILN_ERR_BAD_MODEL, n, "missing body or bad num_scan_inputs");
    int n_state = n_in - (int)n_scan_in;
    int n_scan_out = n_out - n_state;
    if (n_scan_out < 0 || body->n_inputs != n_in || body->n_outputs != n_out)
        return kiln_op_fail(err, KILN_ERR_BAD_MODEL, n, "body arity does not match the node");
    int64_t cnt;
    const int64_t *in_axes = kiln_attr_ints(n, "scan_input_axes", &cnt);
    if (in_axes && cnt != n_scan_in) return kiln_op_fail(err, KILN_ERR_BAD_MODEL, n, "scan_input_axes length");
    const int64_t *in_dirs = kiln_attr_ints(n, "scan_input_directions", &cnt);
    if (in_dirs && cnt != n_scan_in) return kiln_op_fail(err, KILN_ERR_BAD_MODEL, n, "scan_input_directions length");
    const int64_t *out_axes = kiln_attr_ints(n, "scan_output_axes", &cnt);
    if (out_axes && cnt != n_scan_out) return kiln_op_fail(err, KILN_ERR_BAD_MODEL, n, "scan_output_axes length");
    const int64_t *out_dirs = kiln_attr_ints(n, "scan_output_directions", &cnt);
    if (out_dirs && cnt != n_scan_out) return kiln_op_fail(err, KILN_ERR_BAD_MODEL, n, "scan_output_directions length");

    int64_t len = -1;
    int32_t axes[64];
    if (n_scan_in > 64) return kiln_op_fail(err, KILN_ERR_UNSUPPORTED, n, "too many scan inputs");
    for (int i = 0; i < n_scan_in; i++) {
        const struct kiln_value *v = in[n_state + i];
        if (!v) return kiln_op_fail(err, KILN_ERR_BAD_MODEL, n, "scan input %d omitted", i);
        kiln_status s = kiln_norm_axis(n, in_axes ? in_axes[i] : 0, v->rank, &axes[i], err);
        if (s) return s;
        if (len >= 0 && v->dims[axes[i]] != len)
            return kiln_op_fail(err, KILN_ERR_SHAPE, n, "scan inputs differ in sequence length");
        len = v->dims[axes[i]];
    }
    if (len < 0) len = 0;
    kiln_status s = KILN_OK;
    struct kiln_value *state = calloc((size_t)n_state + 1, sizeof *state);
    struct kiln_value *slices = calloc((size_t)n_scan_in + 1, sizeof *slices);
    struct kiln_value *res = calloc((size_t)n_out + 1, sizeof *res);
    struct kiln_value *scans = calloc((size_t)(n_scan_out * (len ? len : 1)) + 1, sizeof *scans);
    const struct kiln_value **bin = calloc((size_t)n_in + 1, sizeof *bin);
    int64_t done_iters = 0;
    if (!state || !slices || !res || !scans || !bin) {
        s = kiln_op_fail(err, KILN_ERR_NO_MEMORY, n, "scan state");
        goto done;
    }
    for (int i = 0; i < n_state; i++) {
        state[i] = *in[i];
        state[i].data = kiln_aligned_alloc(in[i]->nbytes);
        if (!state[i].data) { s = kiln_op_fail(err, KILN_ERR_NO_MEMORY, n, "state"); goto done; }
        if (in[i]->nbytes) memcpy(state[i].data, in[i]->data, in[i]->nbytes);
    }
    for (int i = 0; i < n_scan_in; i++) {
        const struct kiln_value *v = in[n_state + i];
        slices[i].dtype = v->dtype;
        slices[i].rank = v->rank - 1;
        for (int32_t r = 0, k = 0; r < v->rank; r++)
            if (r != axes[i]) slices[i].dims[k++] = v->dims[r];
        kiln_value_bytes(&slices[i], &slices[i].nbytes);
        slices[i].data = kiln_aligned_alloc(slices[i].nbytes);
        if (!slices[i].data) { s = kiln_op_fail(err, KILN_ERR_NO_MEMORY, n, "slice"); goto done; }
    }
    for (int64_t t = 0; t < len; t++) {
        for (int i = 0; i < n_scan_in; i++) {
            const struct kiln_value *v = in[n_state + i];
            int64_t idx = in_dirs && in_dirs[i] ? len - 1 - t : t;
            size_t esz = kiln_dtype_size(v->dtype);
            int64_t outer = 1, inner = 1;
            for (int32_t r = 0; r < axes[i]; r++) outer *= v->dims[r];
            for (int32_t r = axes[i] + 1; r < v->rank; r++) inner *= v->dims[r];
            for (int64_t o = 0; o < outer; o++)
                memcpy((char *)slices[i].data + (size_t)(o * inner) * esz,
                       (const char *)v->data + (size_t)((o * len + idx) * inner) * esz,
                       (size_t)inner * esz);
            bin[n_state + i] = &slices[i];
        }
        for (int i = 0; i < n_state; i++) bin[i] = &state[i];
        s = ctx->run_subgraph(ctx, body, bin, n_in, res, n_out, err);
        if (s) goto done;
        for (int i = 0; i < n_state; i++) {
            free(state[i].data);
            state[i] = res[i];
        }
        for (int i = 0; i < n_scan_out; i++) scans[(size_t)i * (size_t)len + (size_t)t] = res[n_state + i];
        done_iters = t + 1;
    }
    for (int i = 0; i < n_state; i++) {
        if (out[i]) *out[i] = state[i];
        else free(state[i].data);
        state[i].data = NULL;
    }
    for (int i = 0; i < n_scan_out; i++) {
        struct kiln_value *sl = &scans[(size_t)i * (size_t)len];
        if (out_dirs && out_dirs[i])
            for (int64_t a = 0, b = len - 1; a < b; a++, b--) {
                struct kiln_value t = sl[a];
                sl[a] = sl[b];
                sl[b] = t;
            }
        struct kiln_value empty = {.dtype = body->values[body->outputs[n_state + i]].v.dtype};
        struct kiln_value st;
        s = stack(n, sl, len, &empty, &st, err);
        if (s) goto done;
        int32_t oax = 0;
        if (out_axes) {
            s = kiln_norm_axis(n, out_axes[i], st.rank, &oax, err);
            if (s) { free(st.data); goto done; }
        }
        if (oax != 0) { /* move the stacked axis from 0 to oax */
            struct kiln_value moved = st;
            for (int32_t r = 0; r < oax; r++) moved.dims[r] = st.dims[r + 1];
            moved.dims[oax] = st.dims[0];
            moved.data = kiln_aligned_alloc(st.nbytes);
            if (!moved.data) { free(st.data); s = kiln_op_fail(err, KILN_ERR_NO_MEMORY, n, "scan output"); goto done; }
            size_t esz = kiln_dtype_size(st.dtype);
            int64_t outer = 1, inner = 1;
            for (int32_t r = 0; r < oax; r++) outer *= moved.dims[r];
            for (int32_t r = oax + 1; r < moved.rank; r++) inner *= moved.dims[r];
            for (int64_t t = 0; t < len; t++)
                for (int64_t o = 0; o < outer; o++)
                    memcpy((char *)moved.data + (size_t)((o * len + t) * inner) * esz,
                           (const char *)st.data + (size_t)((t * outer + o) * inner) * esz,
                           (size_t)inner * esz);
            free(st.data);
            st = moved;
        }
        if (out[n_state + i]) *out[n_state + i] = st;
        else free(st.data);
    }
done:
    if (state) values_free(state, n_state);
    if (slices) values_free(slices, (int)n_scan_in);
    for (int i = 0; scans && i < n_scan_out; i++) {
        for (int64_t t = 0; t < done_iters; t++) free(scans[(size_t)i * (size_t)len + (size_t)t].data);
    }
    free(state);
    free(slices);
    free(res);
    free(scans);
    free(bin);
    return s;
}

const struct kiln_op_def kiln_ops_control[] = {
    {"If", NULL, 1, KILN_OP_SUBGRAPH, infer_dynamic, if_exec},
    {"Loop", NULL, 1, KILN_OP_SUBGRAPH, infer_dynamic, loop_exec},
    {"Scan", NULL, 9, KILN_OP_SUBGRAPH, infer_dynamic, scan_exec},
    {0},
};
