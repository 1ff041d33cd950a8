/* layout_ops.c — kernels that run directly on activations in the planner's
 * channels-last or blocked (nChw8c) layouts, so that the ops between
 * convolutions do not force a reorder to plain and back (see assign_layouts
 * in plan.c): Concat along channels, binary ops with a per-channel operand
 * (squeeze-excitation scales, biases), and the helpers for blocked values
 * whose channel count is not a multiple of 8 (the last block is padded with
 * zeros, as oneDNN's nChw8c is).
 *
 * dims stay in ONNX order (N, C, spatial...); kiln_layout_index maps a plain
 * coordinate to its position in a value's layout. */
#include "plan/plan.h"
#include "ops/op.h"

#include <stdio.h>
#include <string.h>

static void split(const struct kiln_value *v, int64_t *N, int64_t *C, int64_t *S) {
    *N = v->rank > 0 ? v->dims[0] : 1;
    *C = v->rank > 1 ? v->dims[1] : 1;
    *S = 1;
    for (int32_t r = 2; r < v->rank; r++) *S *= v->dims[r];
}

int64_t kiln_layout_channels(const struct kiln_value *v) {
    int64_t C = v->rank > 1 ? v->dims[1] : 1;
    return v->layout == KILN_LAYOUT_BLOCKED8 ? (C + 7) / 8 * 8 : C;
}

int64_t kiln_layout_storage_numel(const struct kiln_value *v) {
    int64_t N, C, S;
    if (v->layout != KILN_LAYOUT_BLOCKED8) return kiln_value_numel(v);
    split(v, &N, &C, &S);
    return N * kiln_layout_channels(v) * S;
}

/* Writes zeros into the padding lanes of a blocked value's last channel block:
 * oneDNN reads them (against zero weights), so they must stay finite. */
void kiln_layout_zero_pad(const struct kiln_value *v) {
    int64_t N, C, S;
    if (v->layout != KILN_LAYOUT_BLOCKED8 || !v->data) return;
    split(v, &N, &C, &S);
    if (C % 8 == 0) return;
    const int64_t Cb = (C + 7) / 8, lane0 = C % 8;
    float *d = v->data;
    for (int64_t n = 0; n < N; n++) {
        float *blk = d + ((n * Cb + Cb - 1) * S) * 8;
        for (int64_t s = 0; s < S; s++)
            for (int64_t l = lane0; l < 8; l++) blk[s * 8 + l] = 0.0f;
    }
}

/* A view of a blocked value with padded channels as one flat run of floats,
 * for elementwise kernels over operands of one shape and layout. Values with
 * one element become rank-0 scalars so they broadcast over the run. */
const struct kiln_value *kiln_layout_flat_view(const struct kiln_value *v, struct kiln_value *tmp) {
    if (!v) return NULL;
    *tmp = *v;
    if (kiln_value_numel(v) == 1) {   /* element 0 comes first in every layout */
        tmp->rank = 0;
        tmp->layout = KILN_LAYOUT_PLAIN;
        return tmp;
    }
    tmp->dims[0] = kiln_layout_storage_numel(v);
    tmp->rank = 1;
    tmp->layout = KILN_LAYOUT_PLAIN;
    return tmp;
}

static inline int64_t lidx(int32_t l, int64_t C, int64_t Cp, int64_t S, int64_t n, int64_t c,
                           int64_t s) {
    if (l == KILN_LAYOUT_CHANNELS_LAST) return (n * S + s) * C + c;
    if (l == KILN_LAYOUT_BLOCKED8) return ((n * (Cp / 8) + c / 8) * S + s) * 8 + c % 8;
    return (n * C + c) * S + s;
}

int64_t kiln_layout_index(const struct kiln_value *v, int64_t n, int64_t c, int64_t s) {
    int64_t N, C, S;
    split(v, &N, &C, &S);
    return lidx(v->layout, C, kiln_layout_channels(v), S, n, c, s);
}

/* Blocked output, any inputs: each output block of 8 channels gathers its
 * lanes from wherever they live (a lane's source is base + n * nstride +
 * s * sstride in every layout). */
static void concat_gather_blocked(const struct kiln_value *const *in, int n_in,
                                  const struct kiln_value *out) {
    int64_t N, Co, S;
    split(out, &N, &Co, &S);
    const int64_t Cb = kiln_layout_channels(out) / 8;
    float *y = out->data;
#pragma omp parallel for if (N * Cb * S * 8 > (1 << 16))
    for (int64_t ob = 0; ob < Cb; ob++) {
        const float *base[8];
        int64_t ns[8], ss[8], ch[8];
        int src[8] = {-1, -1, -1, -1, -1, -1, -1, -1};
        int nl = 0;
        for (int64_t k = 0; k < 8 && ob * 8 + k < Co; k++, nl++) {
            int64_t c = ob * 8 + k;
            int i = 0;
            for (; i < n_in; i++) {
                if (!in[i]) continue;
                if (c < in[i]->dims[1]) break;
                c -= in[i]->dims[1];
            }
            const struct kiln_value *x = in[i];
            const int64_t Ci = x->dims[1], Cpi = kiln_layout_channels(x);
            src[k] = i;
            ch[k] = c;
            base[k] = (const float *)x->data + lidx(x->layout, Ci, Cpi, S, 0, c, 0);
            ns[k] = x->layout == KILN_LAYOUT_BLOCKED8 ? Cpi * S : Ci * S;
            ss[k] = x->layout == KILN_LAYOUT_BLOCKED8 ? 8 : x->layout == KILN_LAYOUT_CHANNELS_LAST ? Ci : 1;
        }
        /* the whole block is one block of a blocked input (with its padding
         * when the output's last block is that input's last) */
        bool whole = src[0] >= 0 && in[src[0]]->layout == KILN_LAYOUT_BLOCKED8 && ch[0] % 8 == 0 &&
                     (nl == 8 ? ch[0] + 8 <= in[src[0]]->dims[1] : ch[0] + nl == in[src[0]]->dims[1]);
        for (int k = 1; whole && k < nl; k++) whole = src[k] == src[0];
        for (int64_t n = 0; n < N; n++) {
            float *yp = y + ((n * Cb + ob) * S) * 8;
            if (whole) {
                memcpy(yp, base[0] + n * ns[0], (size_t)(S * 8) * sizeof(float));
                continue;
            }
            for (int64_t s = 0; s < S; s++) {
                int k = 0;
                for (; k < nl; k++) yp[s * 8 + k] = base[k][n * ns[k] + s * ss[k]];
                for (; k < 8; k++) yp[s * 8 + k] = 0.0f;
            }
        }
    }
}

/* Concat along axis 1; inputs and output in any of the layouts (float32). */
void kiln_layout_concat(const struct kiln_value *const *in, int n_in, const struct kiln_value *out) {
    int64_t N, Co, S;
    split(out, &N, &Co, &S);
    const int64_t Cpo = kiln_layout_channels(out);
    float *y = out->data;
    bool padded_written = false, aligned = out->layout == KILN_LAYOUT_BLOCKED8;
    int64_t off = 0;
    for (int i = 0; i < n_in; i++) {
        if (!in[i] || !in[i]->dims[1]) continue;
        if (in[i]->layout != KILN_LAYOUT_BLOCKED8 || off % 8 ||
            (in[i]->dims[1] % 8 && off + in[i]->dims[1] != Co))
            aligned = false;
        off += in[i]->dims[1];
    }
    if (out->layout == KILN_LAYOUT_BLOCKED8 && !aligned) {
        concat_gather_blocked(in, n_in, out);
        return;
    }
    off = 0;
    for (int i = 0; i < n_in; i++) {
        const struct kiln_value *x = in[i];
        if (!x) continue;
        const int64_t Ci = x->dims[1], Cpi = kiln_layout_channels(x);
        const float *xs = x->data;
        if (Ci == 0) continue;
        if (x->layout == KILN_LAYOUT_BLOCKED8 && out->layout == KILN_LAYOUT_BLOCKED8 &&
            off % 8 == 0 && (Ci % 8 == 0 || off + Ci == Co)) {
            /* whole blocks: the input's zero padding lands on the output's */
            const int64_t nb = Cpi / 8;
            for (int64_t n = 0; n < N; n++)
                memcpy(y + ((n * (Cpo / 8) + off / 8) * S) * 8, xs + (n * nb * S) * 8,
                       (size_t)(nb * S * 8) * sizeof(float));
            if (off + Ci == Co) padded_written = true;
        } else if (x->layout == KILN_LAYOUT_CHANNELS_LAST && out->layout == KILN_LAYOUT_CHANNELS_LAST) {
            for (int64_t ns = 0; ns < N * S; ns++)
                memcpy(y + ns * Co + off, xs + ns * Ci, (size_t)Ci * sizeof(float));
        } else {
#pragma omp parallel for collapse(2) if (N * Ci * S > (1 << 16))
            for (int64_t n = 0; n < N; n++)
                for (int64_t c = 0; c < Ci; c++)
                    for (int64_t s = 0; s < S; s++)
                        y[lidx(out->layout, Co, Cpo, S, n, off + c, s)] =
                            xs[lidx(x->layout, Ci, Cpi, S, n, c, s)];
        }
        off += Ci;
    }
    if (!padded_written) kiln_layout_zero_pad(out);
}

void kiln_layout_pad(const struct kiln_value *x, const int64_t *pads, float value,
                     const struct kiln_value *out) {
    int64_t N, Ci, Si, No, Co, So;
    split(x, &N, &Ci, &Si);
    split(out, &No, &Co, &So);
    const int32_t r = x->rank, nsp = r - 2;
    const int64_t Cpi = kiln_layout_channels(x), Cpo = kiln_layout_channels(out);
    float *y = out->data;
    const float *xs = x->data;
    /* everything the constant, then the input's window */
    const int64_t total = kiln_layout_storage_numel(out);
    for (int64_t i = 0; i < total; i++) y[i] = value;
    int64_t ostr[KILN_MAX_RANK], off = 0;
    ostr[nsp - 1] = 1;
    for (int32_t i = nsp - 2; i >= 0; i--) ostr[i] = ostr[i + 1] * out->dims[3 + i];
    for (int32_t i = 0; i < nsp; i++) off += pads[2 + i] * ostr[i];
    const int64_t cb = pads[1];
#pragma omp parallel for collapse(2) if (N * Ci * Si > (1 << 16))
    for (int64_t n = 0; n < N; n++)
        for (int64_t c = 0; c < Ci; c++) {
            int64_t coord[KILN_MAX_RANK] = {0};
            for (int64_t s = 0; s < Si; s++) {
                int64_t so = off;
                for (int32_t i = 0; i < nsp; i++) so += coord[i] * ostr[i];
                y[lidx(out->layout, Co, Cpo, So, n, c + cb, so)] = xs[lidx(x->layout, Ci, Cpi, Si, n, c, s)];
                for (int32_t i = nsp - 1; i >= 0 && ++coord[i] == x->dims[2 + i]; i--) coord[i] = 0;
            }
        }
    kiln_layout_zero_pad(out);
}

void kiln_layout_nhwc(bool to_nhwc, const struct kiln_value *x, const struct kiln_value *out) {
    const struct kiln_value *a = to_nhwc ? x : out;   /* the activation */
    int64_t N, C, S;
    split(a, &N, &C, &S);
    const int64_t Cp = kiln_layout_channels(a);
    float *ad = a->data;
    float *hd = to_nhwc ? out->data : x->data;        /* the NHWC side */
#pragma omp parallel for collapse(2) if (N * C * S > (1 << 16))
    for (int64_t n = 0; n < N; n++)
        for (int64_t s = 0; s < S; s++)
            for (int64_t c = 0; c < C; c++) {
                int64_t ai = lidx(a->layout, C, Cp, S, n, c, s), hi = (n * S + s) * C + c;
                if (to_nhwc) hd[hi] = ad[ai];
                else ad[ai] = hd[hi];
            }
    if (!to_nhwc) kiln_layout_zero_pad(out);
}

static inline float bin(int op, float a, float b) {
    switch (op) {
    case KILN_LBIN_ADD: return a + b;
    case KILN_LBIN_SUB: return a - b;
    case KILN_LBIN_MUL: return a * b;
    default: return a / b;
    }
}

/* out = big op small (or small op big when !big_first), where big has out's
 * shape and layout and small holds one value per channel (per batch item
 * when its batch dim is N): shape [C], [C,1..], [1|N, C, 1...]. */
void kiln_layout_chan_binary(int op, bool big_first, const struct kiln_value *big,
                             const struct kiln_value *small, const struct kiln_value *out) {
    int64_t N, C, S;
    split(out, &N, &C, &S);
    const int64_t Cp = kiln_layout_channels(out);
    /* small's rank is right-aligned against out's: its channel dim sits at
     * rank - (out rank - 1); batch only when ranks are equal */
    const int32_t cdim = small->rank - (out->rank - 1);
    const int64_t sN = cdim == 1 ? small->dims[0] : 1;
    const int64_t sCp = small->rank == out->rank ? kiln_layout_channels(small) : C;
    const float *a = big->data, *b = small->data;
    float *y = out->data;
    const int32_t l = out->layout;
    for (int64_t n = 0; n < N; n++) {
        const float *bn = b + (sN > 1 ? n : 0) * sCp;
        if (l == KILN_LAYOUT_BLOCKED8) {
            const int64_t Cb = Cp / 8;
#pragma omp parallel for if (Cb * S > 4096)
            for (int64_t cb = 0; cb < Cb; cb++) {
                float w[8];
                for (int64_t k = 0; k < 8; k++) {
                    int64_t c = cb * 8 + k;
                    /* padding lanes: a neutral operand keeps them finite */
                    w[k] = c < C ? bn[c] : (op == KILN_LBIN_DIV || op == KILN_LBIN_MUL ? 1.0f : 0.0f);
                }
                const float *ap = a + ((n * Cb + cb) * S) * 8;
                float *yp = y + ((n * Cb + cb) * S) * 8;
                /* one loop per operation so that each vectorizes */
#define CHAN_LOOP(EXPR)                                                   \
    for (int64_t s = 0; s < S; s++)                                       \
        for (int64_t k = 0; k < 8; k++) {                                 \
            const float x = ap[s * 8 + k];                                \
            yp[s * 8 + k] = (EXPR);                                       \
        }
                switch (op * 2 + (big_first ? 0 : 1)) {
                case KILN_LBIN_ADD * 2:
                case KILN_LBIN_ADD * 2 + 1: CHAN_LOOP(x + w[k]) break;
                case KILN_LBIN_MUL * 2:
                case KILN_LBIN_MUL * 2 + 1: CHAN_LOOP(x * w[k]) break;
                case KILN_LBIN_SUB * 2: CHAN_LOOP(x - w[k]) break;
                case KILN_LBIN_SUB * 2 + 1: CHAN_LOOP(w[k] - x) break;
                case KILN_LBIN_DIV * 2: CHAN_LOOP(x / w[k]) break;
                default: CHAN_LOOP(w[k] / x) break;
                }
#undef CHAN_LOOP
            }
        } else if (l == KILN_LAYOUT_CHANNELS_LAST) {
#pragma omp parallel for if (S * C > 32768)
            for (int64_t s = 0; s < S; s++) {
                const float *ap = a + (n * S + s) * C;
                float *yp = y + (n * S + s) * C;
                for (int64_t c = 0; c < C; c++)
                    yp[c] = big_first ? bin(op, ap[c], bn[c]) : bin(op, bn[c], ap[c]);
            }
        } else {
#pragma omp parallel for if (S * C > 32768)
            for (int64_t c = 0; c < C; c++) {
                const float *ap = a + (n * C + c) * S;
                float *yp = y + (n * C + c) * S;
                const float w = bn[c];
                for (int64_t s = 0; s < S; s++) yp[s] = big_first ? bin(op, ap[s], w) : bin(op, w, ap[s]);
            }
        }
    }
    kiln_layout_zero_pad(out);
}

kiln_status kiln_layout_activation(const struct kiln_node *n, struct kiln_value *v, kiln_error *err) {
    if (v->layout != KILN_LAYOUT_BLOCKED8) return kiln_activation_apply(n, v, err);
    struct kiln_value flat;
    kiln_layout_flat_view(v, &flat);
    kiln_status s = kiln_activation_apply(n, &flat, err);
    kiln_layout_zero_pad(v);
    return s;
}

kiln_status kiln_layout_run_step(struct kiln_plan *p, const struct kiln_step *st,
                                 const struct kiln_node *n, struct kiln_exec_ctx *ctx,
                                 kiln_error *err) {
    const int ni = n->n_inputs, no = n->n_outputs;
    const struct kiln_value **in = p->io_in;
    struct kiln_value **outv = p->io_out;
    struct kiln_value *local = p->io_vals;   /* 2 * max_io */
    kiln_status rs = KILN_OK;
    for (int j = 0; j < ni; j++) in[j] = n->inputs[j] >= 0 ? &p->vals[n->inputs[j]] : NULL;
    for (int j = 0; j < no; j++) outv[j] = n->outputs[j] >= 0 ? &p->vals[n->outputs[j]] : NULL;
    switch (st->lop) {
    case KILN_LOP_FLAT:
        for (int j = 0; j < ni; j++) in[j] = kiln_layout_flat_view(in[j], &local[j]);
        for (int j = 0; j < no; j++)
            if (outv[j]) {
                kiln_layout_flat_view(outv[j], &local[ni + j]);
                outv[j] = &local[ni + j];
            }
        rs = st->kernel.run ? st->kernel.run(n, ctx, st->kernel.state, in, ni, outv, no, err)
                            : n->op->exec(n, ctx, in, ni, outv, no, err);
        if (!rs && n->act.kind && !(st->kernel.run && st->kernel.fused_activation))
            rs = kiln_activation_apply(n, outv[0], err);
        for (int j = 0; j < no; j++)
            if (n->outputs[j] >= 0) kiln_layout_zero_pad(&p->vals[n->outputs[j]]);
        return rs;
    case KILN_LOP_CONCAT:
        kiln_layout_concat(in, ni, outv[0]);
        break;
    case KILN_LOP_PAD: {
        int64_t pads[2 * KILN_MAX_RANK];
        const int32_t r = in[0]->rank;
        for (int32_t i = 0; i < 2 * r; i++) pads[i] = kiln_value_get_int(in[1], i);
        float value = ni > 2 && in[2] ? ((const float *)in[2]->data)[0] : 0.0f;
        kiln_layout_pad(in[0], pads, value, outv[0]);
        break;
    }
    case KILN_LOP_NHWC:
        kiln_layout_nhwc(st->lop_arg == 1, in[0], outv[0]);
        break;
    case KILN_LOP_CHAN_BINARY:
        kiln_layout_chan_binary(st->lop_arg, st->lop_big == 0, in[st->lop_big], in[1 - st->lop_big],
                                outv[0]);
        break;
    default:
        return kiln_fail(err, KILN_ERR_INTERNAL, "node '%s': unknown layout step", n->name);
    }
    if (n->act.kind) rs = kiln_layout_activation(n, outv[0], err);
    return rs;
}
