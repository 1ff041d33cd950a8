/* rnn.c — op family 'rnn': LSTM, GRU, RNN (see op.h for the contract).
 *
 * One reference implementation for the three cells: forward, reverse and
 * bidirectional; sequence_lens (steps past a sequence's length give zeros in
 * Y and leave the state alone); initial states; LSTM peepholes and
 * input_forget; GRU linear_before_reset; clip; the activation list with its
 * alpha/beta values; layout 0 ([seq, batch, ...]) and 1 ([batch, seq, ...]).
 * The math is done in double from float inputs; batches run in parallel,
 * each on its own sequence, so results are deterministic.
 */
#include "ops/op.h"

#include <math.h>
#include <stdlib.h>
#include <string.h>
#include <strings.h>

/* kiln_op_check_arity plus: inputs below min_in are present (not omitted). */
static kiln_status arity(const struct kiln_node *n, const struct kiln_value *const *in, int n_in,
                         int min_in, int max_in, kiln_error *err) {
    kiln_status st = kiln_op_check_arity(n, n_in, min_in, max_in, err);
    if (st) return st;
    for (int i = 0; i < min_in; i++)
        if (!in[i]) return kiln_op_fail(err, KILN_ERR_BAD_MODEL, n, "input %d is required", i);
    return KILN_OK;
}

enum cell { CELL_RNN, CELL_GRU, CELL_LSTM };

enum act_kind {
    ACT_SIGMOID, ACT_TANH, ACT_RELU, ACT_AFFINE, ACT_LEAKYRELU, ACT_THRESHOLDEDRELU,
    ACT_SCALEDTANH, ACT_HARDSIGMOID, ACT_ELU, ACT_SOFTSIGN, ACT_SOFTPLUS
};

struct act {
    enum act_kind k;
    double alpha, beta;
};

static double act_apply(const struct act *a, double x) {
    switch (a->k) {
    case ACT_SIGMOID: return 1.0 / (1.0 + exp(-x));
    case ACT_TANH: return tanh(x);
    case ACT_RELU: return x > 0 ? x : 0;
    case ACT_AFFINE: return a->alpha * x + a->beta;
    case ACT_LEAKYRELU: return x >= 0 ? x : a->alpha * x;
    case ACT_THRESHOLDEDRELU: return x > a->alpha ? x : 0;
    case ACT_SCALEDTANH: return a->alpha * tanh(a->beta * x);
    case ACT_HARDSIGMOID: {
        double v = a->alpha * x + a->beta;
        return v < 0 ? 0 : v > 1 ? 1 : v;
    }
    case ACT_ELU: return x >= 0 ? x : a->alpha * (exp(x) - 1);
    case ACT_SOFTSIGN: return x / (1 + fabs(x));
    case ACT_SOFTPLUS: return log1p(exp(x));
    }
    return x;
}

struct rnn_cfg {
    enum cell cell;
    int      G;                 /* gates: 1, 3, 4 */
    int      nd;                /* directions */
    int      reverse_only;
    int      layout;
    int64_t  T, B, I, H;
    double   clip;              /* 0 = none */
    int      input_forget, lbr;
    struct act acts[2][3];      /* per direction: f, g, h */
};

static const char *const cell_default_acts[3][3] = {
    {"Tanh", NULL, NULL}, {"Sigmoid", "Tanh", NULL}, {"Sigmoid", "Tanh", "Tanh"}};

static kiln_status parse_act(const struct kiln_node *n, const char *name, const float *alphas,
                             int64_t n_alpha, int64_t *ia, const float *betas, int64_t n_beta,
                             int64_t *ib, struct act *a, kiln_error *err) {
    static const struct {
        const char *name;
        enum act_kind k;
        int n_params;   /* 0, 1 (alpha), 2 (alpha, beta) */
        double da, db;
    } table[] = {
        {"Sigmoid", ACT_SIGMOID, 0, 0, 0},       {"Tanh", ACT_TANH, 0, 0, 0},
        {"Relu", ACT_RELU, 0, 0, 0},             {"Affine", ACT_AFFINE, 2, 1.0, 0.0},
        {"LeakyRelu", ACT_LEAKYRELU, 1, 0.01, 0}, {"ThresholdedRelu", ACT_THRESHOLDEDRELU, 1, 1.0, 0},
        {"ScaledTanh", ACT_SCALEDTANH, 2, 1.0, 1.0}, {"HardSigmoid", ACT_HARDSIGMOID, 2, 0.2, 0.5},
        {"Elu", ACT_ELU, 1, 1.0, 0},             {"Softsign", ACT_SOFTSIGN, 0, 0, 0},
        {"Softplus", ACT_SOFTPLUS, 0, 0, 0},
    };
    for (size_t i = 0; i < sizeof table / sizeof table[0]; i++) {
        if (strcasecmp(name, table[i].name) != 0) continue;
        a->k = table[i].k;
        a->alpha = table[i].da;
        a->beta = table[i].db;
        if (table[i].n_params >= 1 && *ia < n_alpha) a->alpha = alphas[(*ia)++];
        if (table[i].n_params >= 2 && *ib < n_beta) a->beta = betas[(*ib)++];
        return KILN_OK;
    }
    return kiln_op_fail(err, KILN_ERR_UNSUPPORTED, n, "activation '%s' is not supported", name);
}

static kiln_status rnn_config(const struct kiln_node *n, enum cell cell,
                              const struct kiln_value *const *in, int n_in, struct rnn_cfg *c,
                              kiln_error *err) {
    memset(c, 0, sizeof *c);
    c->cell = cell;
    c->G = cell == CELL_LSTM ? 4 : cell == CELL_GRU ? 3 : 1;
    int max_in = cell == CELL_LSTM ? 8 : 6;
    kiln_status st = arity(n, in, n_in, 3, max_in, err);
    if (st) return st;
    const struct kiln_value *X = in[0], *W = in[1], *R = in[2];
    kiln_dtype dt = X->dtype;
    if (!kiln_dtype_is_float(dt) || W->dtype != dt || R->dtype != dt)
        return kiln_op_fail(err, KILN_ERR_SHAPE, n,
                            "expected X, W, R of one float type, got %s, %s, %s",
                            kiln_dtype_name(X->dtype), kiln_dtype_name(W->dtype),
                            kiln_dtype_name(R->dtype));
    if (X->rank != 3 || W->rank != 3 || R->rank != 3)
        return kiln_op_fail(err, KILN_ERR_SHAPE, n, "expected 3-D X, W and R, got rank %d, %d, %d",
                            X->rank, W->rank, R->rank);
    const char *dir = kiln_attr_string(n, "direction", "forward");
    if (strcmp(dir, "forward") == 0) c->nd = 1;
    else if (strcmp(dir, "reverse") == 0) c->nd = 1, c->reverse_only = 1;
    else if (strcmp(dir, "bidirectional") == 0) c->nd = 2;
    else return kiln_op_fail(err, KILN_ERR_BAD_MODEL, n, "unknown direction '%s'", dir);
    c->layout = n->opset >= 14 ? (int)kiln_attr_int(n, "layout", 0) : 0;
    if (c->layout != 0 && c->layout != 1)
        return kiln_op_fail(err, KILN_ERR_BAD_MODEL, n, "layout must be 0 or 1, got %d", c->layout);
    c->T = c->layout ? X->dims[1] : X->dims[0];
    c->B = c->layout ? X->dims[0] : X->dims[1];
    c->I = X->dims[2];
    c->H = R->dims[2];
    int64_t hs = kiln_attr_int(n, "hidden_size", c->H);
    if (hs != c->H || c->H <= 0)
        return kiln_op_fail(err, KILN_ERR_SHAPE, n, "hidden_size %lld does not match R's last dim %lld",
                            (long long)hs, (long long)c->H);
    int64_t GH = c->G * c->H;
    if (W->dims[0] != c->nd || W->dims[1] != GH || W->dims[2] != c->I)
        return kiln_op_fail(err, KILN_ERR_SHAPE, n, "expected W [%d,%lld,%lld], got [%lld,%lld,%lld]",
                            c->nd, (long long)GH, (long long)c->I, (long long)W->dims[0],
                            (long long)W->dims[1], (long long)W->dims[2]);
    if (R->dims[0] != c->nd || R->dims[1] != GH)
        return kiln_op_fail(err, KILN_ERR_SHAPE, n, "expected R [%d,%lld,%lld]", c->nd,
                            (long long)GH, (long long)c->H);
    const struct kiln_value *Bv = n_in > 3 ? in[3] : NULL, *SL = n_in > 4 ? in[4] : NULL;
    const struct kiln_value *H0 = n_in > 5 ? in[5] : NULL;
    if (Bv && (Bv->dtype != dt || Bv->rank != 2 || Bv->dims[0] != c->nd || Bv->dims[1] != 2 * GH))
        return kiln_op_fail(err, KILN_ERR_SHAPE, n, "expected B [%d,%lld] of X's type", c->nd,
                            (long long)(2 * GH));
    if (SL && (!kiln_dtype_is_int(SL->dtype) || SL->rank != 1 || SL->dims[0] != c->B))
        return kiln_op_fail(err, KILN_ERR_SHAPE, n, "expected int32 sequence_lens [%lld]",
                            (long long)c->B);
    int64_t sd0 = c->layout ? c->B : c->nd, sd1 = c->layout ? c->nd : c->B;
    for (int k = 5; k < (cell == CELL_LSTM ? 7 : 6) && k < n_in; k++) {
        const struct kiln_value *s = in[k];
        if (s && (s->dtype != dt || s->rank != 3 || s->dims[0] != sd0 || s->dims[1] != sd1 ||
                  s->dims[2] != c->H))
            return kiln_op_fail(err, KILN_ERR_SHAPE, n, "expected initial state %d [%lld,%lld,%lld]",
                                k, (long long)sd0, (long long)sd1, (long long)c->H);
    }
    (void)H0;
    if (cell == CELL_LSTM && n_in > 7 && in[7] &&
        (in[7]->dtype != dt || in[7]->rank != 2 || in[7]->dims[0] != c->nd ||
         in[7]->dims[1] != 3 * c->H))
        return kiln_op_fail(err, KILN_ERR_SHAPE, n, "expected P [%d,%lld]", c->nd,
                            (long long)(3 * c->H));
    const struct kiln_attr *clip = kiln_attr_find(n, "clip");
    c->clip = clip ? kiln_attr_float(n, "clip", 0) : 0;
    if (clip && !(c->clip > 0))
        return kiln_op_fail(err, KILN_ERR_BAD_MODEL, n, "clip must be positive");
    c->input_forget = cell == CELL_LSTM && kiln_attr_int(n, "input_forget", 0) != 0;
    c->lbr = cell == CELL_GRU && kiln_attr_int(n, "linear_before_reset", 0) != 0;

    int n_act = cell == CELL_LSTM ? 3 : cell == CELL_GRU ? 2 : 1;
    const struct kiln_attr *acts = kiln_attr_find(n, "activations");
    int64_t n_alpha, n_beta, ia = 0, ib = 0;
    const float *alphas = kiln_attr_floats(n, "activation_alpha", &n_alpha);
    const float *betas = kiln_attr_floats(n, "activation_beta", &n_beta);
    if (acts && acts->type == KILN_ATTR_STRINGS && acts->n > 0 && acts->n != n_act * c->nd)
        return kiln_op_fail(err, KILN_ERR_BAD_MODEL, n, "expected %d activations, got %lld",
                            n_act * c->nd, (long long)acts->n);
    for (int d = 0; d < c->nd; d++)
        for (int a = 0; a < n_act; a++) {
            const char *name = acts && acts->type == KILN_ATTR_STRINGS && acts->n > 0
                                   ? acts->strings[d * n_act + a]
                                   : cell_default_acts[cell][a];
            if ((st = parse_act(n, name, alphas, n_alpha, &ia, betas, n_beta, &ib,
                                &c->acts[d][a], err)))
                return st;
        }
    int64_t p = 1;
    int64_t ydims[4] = {c->T, c->nd, c->B, c->H};
    for (int i = 0; i < 4; i++)
        if (ydims[i] < 0 || __builtin_mul_overflow(p, ydims[i], &p))
            return kiln_op_fail(err, KILN_ERR_LIMIT, n, "output size overflows");
    return KILN_OK;
}

static kiln_status rnn_infer_common(const struct kiln_node *n, enum cell cell,
                                    const struct kiln_value *const *in, int n_in,
                                    struct kiln_value *const *out, int n_out, kiln_error *err) {
    struct rnn_cfg c;
    kiln_status st = rnn_config(n, cell, in, n_in, &c, err);
    if (st) return st;
    kiln_dtype dt = in[0]->dtype;
    int64_t y[4], s[3];
    if (c.layout) {
        y[0] = c.B, y[1] = c.T, y[2] = c.nd, y[3] = c.H;
        s[0] = c.B, s[1] = c.nd, s[2] = c.H;
    } else {
        y[0] = c.T, y[1] = c.nd, y[2] = c.B, y[3] = c.H;
        s[0] = c.nd, s[1] = c.B, s[2] = c.H;
    }
    if (n_out > 0 && out[0]) kiln_value_set_shape(out[0], dt, 4, y);
    if (n_out > 1 && out[1]) kiln_value_set_shape(out[1], dt, 3, s);
    if (cell == CELL_LSTM && n_out > 2 && out[2]) kiln_value_set_shape(out[2], dt, 3, s);
    return KILN_OK;
}

static double *load_f64(const struct kiln_value *v) {
    if (!v) return NULL;
    int64_t cnt = kiln_value_numel(v);
    double *d = malloc((size_t)(cnt > 0 ? cnt : 1) * sizeof *d);
    if (!d) return NULL;
    for (int64_t i = 0; i < cnt; i++) d[i] = kiln_value_get_f64(v, i);
    return d;
}

static inline double clipv(double x, double c) {
    if (c > 0) {
        if (x > c) return c;
        if (x < -c) return -c;
    }
    return x;
}

static kiln_status rnn_exec_common(const struct kiln_node *n, enum cell cell,
                                   const struct kiln_value *const *in, int n_in,
                                   struct kiln_value *const *out, int n_out, kiln_error *err) {
    struct rnn_cfg c;
    kiln_status st = rnn_config(n, cell, in, n_in, &c, err);
    if (st) return st;
    const int64_t T = c.T, B = c.B, I = c.I, H = c.H, G = c.G, GH = G * H;
    const struct kiln_value *SLv = n_in > 4 ? in[4] : NULL;
    const struct kiln_value *H0v = n_in > 5 ? in[5] : NULL;
    const struct kiln_value *C0v = cell == CELL_LSTM && n_in > 6 ? in[6] : NULL;
    const struct kiln_value *Pv = cell == CELL_LSTM && n_in > 7 ? in[7] : NULL;
    double *X = load_f64(in[0]), *W = load_f64(in[1]), *R = load_f64(in[2]);
    double *Bb = n_in > 3 ? load_f64(in[3]) : NULL;
    double *H0 = load_f64(H0v), *C0 = load_f64(C0v), *P = load_f64(Pv);
    struct kiln_value *Y = n_out > 0 ? out[0] : NULL, *Yh = n_out > 1 ? out[1] : NULL;
    struct kiln_value *Yc = cell == CELL_LSTM && n_out > 2 ? out[2] : NULL;
    bool ok = X && W && R && (n_in <= 3 || !in[3] || Bb) && (!H0v || H0) && (!C0v || C0) &&
              (!Pv || P);
    if (!ok) goto oom;
    if (Y) {
        int64_t cnt = kiln_value_numel(Y);
        for (int64_t i = 0; i < cnt; i++) kiln_value_set_f64(Y, i, 0.0);
    }

    int64_t jobs = (int64_t)c.nd * B;
    int failed = 0;
#pragma omp parallel for schedule(dynamic) if (jobs > 1)
    for (int64_t job = 0; job < jobs; job++) {
        int d = (int)(job / B);
        int64_t b = job % B;
        bool rev = c.reverse_only || d == 1;
        const struct act *A = c.acts[d];
        double *h = calloc((size_t)H, sizeof *h), *cs = calloc((size_t)H, sizeof *cs);
        double *g = malloc((size_t)GH * sizeof *g);
        double *hn = malloc((size_t)H * sizeof *hn);
        if (!h || !cs || !g || !hn) {
#pragma omp atomic write
            failed = 1;
            free(h); free(cs); free(g); free(hn);
            continue;
        }
        /* state layout: layout 0 [nd, B, H], layout 1 [B, nd, H] */
        int64_t so = (c.layout ? b * c.nd + d : (int64_t)d * B + b) * H;
        if (H0) memcpy(h, H0 + so, (size_t)H * sizeof *h);
        if (C0) memcpy(cs, C0 + so, (size_t)H * sizeof *cs);
        int64_t len = SLv ? kiln_value_get_int(SLv, b) : T;
        if (len < 0) len = 0;
        if (len > T) len = T;
        const double *Wd = W + (int64_t)d * GH * I, *Rd = R + (int64_t)d * GH * H;
        const double *Wb = Bb ? Bb + (int64_t)d * 2 * GH : NULL, *Rb = Wb ? Wb + GH : NULL;
        const double *Pd = P ? P + (int64_t)d * 3 * H : NULL;
        for (int64_t step = 0; step < len; step++) {
            int64_t t = rev ? len - 1 - step : step;
            const double *x = X + (c.layout ? b * T + t : t * B + b) * I;
            /* g = x W^T + Wb (+ h R^T + Rb, except GRU's h gate) */
            for (int64_t r = 0; r < GH; r++) {
                const double *w = Wd + r * I;
                double s = Wb ? Wb[r] : 0.0;
                for (int64_t k = 0; k < I; k++) s += x[k] * w[k];
                g[r] = s;
            }
            if (cell == CELL_GRU) {
                for (int64_t r = 0; r < 2 * H; r++) {   /* z, r gates */
                    const double *w = Rd + r * H;
                    double s = Rb ? Rb[r] : 0.0;
                    for (int64_t k = 0; k < H; k++) s += h[k] * w[k];
                    g[r] += s;
                }
                for (int64_t j = 0; j < H; j++) {
                    g[j] = act_apply(&A[0], clipv(g[j], c.clip));           /* z */
                    g[H + j] = act_apply(&A[0], clipv(g[H + j], c.clip));   /* r */
                }
                for (int64_t j = 0; j < H; j++) {
                    const double *w = Rd + (2 * H + j) * H;
                    double rb = Rb ? Rb[2 * H + j] : 0.0, s = 0.0;
                    if (c.lbr) {
                        for (int64_t k = 0; k < H; k++) s += h[k] * w[k];
                        s = g[H + j] * (s + rb);
                    } else {
                        for (int64_t k = 0; k < H; k++) s += g[H + k] * h[k] * w[k];
                        s += rb;
                    }
                    double ht = act_apply(&A[1], clipv(g[2 * H + j] + s, c.clip));
                    hn[j] = (1.0 - g[j]) * ht + g[j] * h[j];
                }
                memcpy(h, hn, (size_t)H * sizeof *h);
            } else {
                for (int64_t r = 0; r < GH; r++) {
                    const double *w = Rd + r * H;
                    double s = Rb ? Rb[r] : 0.0;
                    for (int64_t k = 0; k < H; k++) s += h[k] * w[k];
                    g[r] += s;
                }
                if (cell == CELL_RNN) {
                    for (int64_t j = 0; j < H; j++) h[j] = act_apply(&A[0], clipv(g[j], c.clip));
                } else { /* LSTM, gates i o f c */
                    for (int64_t j = 0; j < H; j++) {
                        double gi = g[j], go = g[H + j], gf = g[2 * H + j], gc = g[3 * H + j];
                        if (Pd) {
                            gi += Pd[j] * cs[j];
                            gf += Pd[2 * H + j] * cs[j];
                        }
                        double it = act_apply(&A[0], clipv(gi, c.clip));
                        double ft = c.input_forget ? 1.0 - it : act_apply(&A[0], clipv(gf, c.clip));
                        double ct = act_apply(&A[1], clipv(gc, c.clip));
                        double cn = ft * cs[j] + it * ct;
                        if (Pd) go += Pd[H + j] * cn;
                        double ot = act_apply(&A[0], clipv(go, c.clip));
                        cs[j] = cn;
                        h[j] = ot * act_apply(&A[2], cn);
                    }
                }
            }
            if (Y) {
                int64_t yo = (c.layout ? (b * T + t) * c.nd + d : (t * c.nd + d) * B + b) * H;
                for (int64_t j = 0; j < H; j++) kiln_value_set_f64(Y, yo + j, h[j]);
            }
        }
        if (Yh)
            for (int64_t j = 0; j < H; j++) kiln_value_set_f64(Yh, so + j, h[j]);
        if (Yc)
            for (int64_t j = 0; j < H; j++) kiln_value_set_f64(Yc, so + j, cs[j]);
        free(h); free(cs); free(g); free(hn);
    }
    if (failed) goto oom;
    free(X); free(W); free(R); free(Bb); free(H0); free(C0); free(P);
    return KILN_OK;
oom:
    free(X); free(W); free(R); free(Bb); free(H0); free(C0); free(P);
    return kiln_op_fail(err, KILN_ERR_NO_MEMORY, n, "out of memory for recurrent state");
}

#define DEFINE_CELL(name, cell)                                                                  \
    static kiln_status name##_infer(const struct kiln_node *n, const struct kiln_value *const *in, \
                                    int n_in, struct kiln_value *const *out, int n_out,          \
                                    kiln_error *err) {                                           \
        return rnn_infer_common(n, cell, in, n_in, out, n_out, err);                             \
    }                                                                                            \
    static kiln_status name##_exec(const struct kiln_node *n, struct kiln_exec_ctx *ctx,         \
                                   const struct kiln_value *const *in, int n_in,                 \
                                   struct kiln_value *const *out, int n_out, kiln_error *err) {  \
        return rnn_exec_common(n, cell, in, n_in, out, n_out, err);                              \
    }

DEFINE_CELL(rnn, CELL_RNN)
DEFINE_CELL(gru, CELL_GRU)
DEFINE_CELL(lstm, CELL_LSTM)

static double rnn_flops(const struct kiln_node *n, const struct kiln_value *const *in, int n_in,
                        struct kiln_value *const *out, int n_out) {
    if (n_in < 3 || in[0]->rank != 3 || in[1]->rank != 3 || in[2]->rank != 3) return 0;
    double T = (double)in[0]->dims[0] * (double)in[0]->dims[1];   /* steps x batch */
    double nd = (double)in[1]->dims[0], GH = (double)in[1]->dims[1];
    double I = (double)in[1]->dims[2], H = (double)in[2]->dims[2];
    return 2.0 * T * nd * GH * (I + H);
}

const struct kiln_op_def kiln_ops_rnn[] = {
    {"RNN", NULL, 1, 0, rnn_infer, rnn_exec, NULL, rnn_flops},
    {"GRU", NULL, 1, 0, gru_infer, gru_exec, NULL, rnn_flops},
    {"LSTM", NULL, 1, 0, lstm_infer, lstm_exec, NULL, rnn_flops},
    {0},
};
