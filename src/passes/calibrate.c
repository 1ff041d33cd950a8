/* calibrate.c — activation ranges for int8 quantization (see quantize.h).
 *
 * The values to observe (input 0 of every quantization candidate) are made
 * graph outputs for the duration of the runs, so an ordinary session returns
 * them; the graph's own outputs are restored afterwards. Graph inputs are
 * read straight from the input sets.
 *
 * minmax: the smallest and largest value seen over all sets.
 * percentile: a second pass fills a histogram of HBINS bins over [min, max]
 * per value; each side is clipped where the tail beyond it holds
 * (100 - p)% of the elements.
 * Both also record the mean of every channel, for bias correction.
 *
 * kiln_int8_choose (mixed precision) evaluates int8 variants of the model
 * against its float outputs; each variant is quantized from a fresh copy of
 * the float graph, mapped from a temporary plan file.
 */
#include "passes/quantize.h"
#include "base/status.h"
#include "plan/artifact.h"
#include "runtime/model.h"

#include <math.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <unistd.h>

#define HBINS 2048

struct observed {
    int32_t value;
    int32_t input_index;     /* >= 0: a graph input, read from the set */
    int32_t output_index;    /* else: position among the session's outputs */
    double lo, hi;
    uint64_t *hist;
    uint64_t count;
    int32_t axis_last;       /* channels on the last axis (Gemm/MatMul) or axis 1 (Conv) */
    int64_t n_ch;            /* 0 until the first observation */
    double *ch_sum;
    uint64_t ch_count;
};

/* Adds per-channel sums; a tensor whose channel count changes is not averaged. */
static bool observe_channels(struct observed *o, const kiln_tensor *t) {
    int32_t ax = o->axis_last ? t->rank - 1 : 1;
    if (t->rank < 1 || ax < 0 || ax >= t->rank) return true;
    int64_t C = t->dims[ax], inner = 1, outer = 1;
    for (int32_t d = ax + 1; d < t->rank; d++) inner *= t->dims[d];
    for (int32_t d = 0; d < ax; d++) outer *= t->dims[d];
    if (o->n_ch == 0) {
        if (C < 1 || !(o->ch_sum = calloc((size_t)C, sizeof *o->ch_sum))) return C < 1;
        o->n_ch = C;
    }
    if (C != o->n_ch) {
        o->n_ch = -1;   /* inconsistent: no means */
        return true;
    }
    const float *x = t->data;
    for (int64_t a = 0; a < outer; a++)
        for (int64_t c = 0; c < C; c++) {
            double s = 0;
            const float *p = x + (a * C + c) * inner;
            for (int64_t i = 0; i < inner; i++) s += isfinite(p[i]) ? p[i] : 0.0f;
            o->ch_sum[c] += s;
        }
    o->ch_count += (uint64_t)(outer * inner);
    return true;
}

void kiln_calib_free(struct kiln_calib_range *r, int32_t n_values) {
    for (int32_t v = 0; r && v < n_values; v++) free(r[v].mean);
    free(r);
}

static void observe_minmax(struct observed *o, const float *x, int64_t n) {
    double lo = o->lo, hi = o->hi;
    for (int64_t i = 0; i < n; i++) {
        double v = x[i];
        if (!isfinite(v)) continue;
        if (v < lo) lo = v;
        if (v > hi) hi = v;
    }
    o->lo = lo;
    o->hi = hi;
}

static void observe_hist(struct observed *o, const float *x, int64_t n) {
    double w = o->hi - o->lo;
    if (!(w > 0)) return;
    for (int64_t i = 0; i < n; i++) {
        double v = x[i];
        if (!isfinite(v)) continue;
        int64_t b = (int64_t)((v - o->lo) / w * HBINS);
        b = b < 0 ? 0 : b >= HBINS ? HBINS - 1 : b;
        o->hist[b]++;
        o->count++;
    }
}

/* The clipped range: the tail beyond each end holds at most (100-p)% of elements. */
static void percentile_range(const struct observed *o, double p, float *lo, float *hi) {
    *lo = (float)o->lo;
    *hi = (float)o->hi;
    if (!o->count || !(o->hi > o->lo)) return;
    double tail = (100.0 - p) / 100.0 * (double)o->count, w = (o->hi - o->lo) / HBINS;
    uint64_t c = 0;
    int32_t b;
    for (b = 0; b < HBINS; b++) {
        c += o->hist[b];
        if ((double)c > tail) break;
    }
    *lo = (float)(o->lo + b * w);
    c = 0;
    for (b = HBINS - 1; b >= 0; b--) {
        c += o->hist[b];
        if ((double)c > tail) break;
    }
    *hi = (float)(o->lo + (b + 1) * w);
}

static const kiln_tensor *find_tensor(const kiln_tensor *outs, const struct observed *o,
                                      const kiln_tensor *set) {
    return o->input_index >= 0 ? &set[o->input_index] : &outs[o->output_index];
}

kiln_status kiln_calibrate(struct kiln_model *m, const kiln_tensor *const *sets, int32_t n_sets,
                           const struct kiln_calib_options *opt, struct kiln_calib_range **ranges,
                           kiln_error *err) {
    kiln_error_clear(err);
    if (!m || !sets || n_sets < 1 || !opt || !ranges)
        return kiln_fail(err, KILN_ERR_INVALID_ARG, "kiln_calibrate: bad arguments");
    if (opt->method == KILN_CALIB_PERCENTILE && !(opt->percentile > 50.0 && opt->percentile <= 100.0))
        return kiln_fail(err, KILN_ERR_INVALID_ARG, "calibration: percentile must be in (50, 100]");
    *ranges = NULL;
    struct kiln_graph *g = m->onnx.graph;
    const int32_t n_in = g->n_inputs, n_out0 = g->n_outputs;
    int32_t *saved_outputs = g->outputs;
    struct observed *obs = calloc((size_t)g->n_nodes + 1, sizeof *obs);
    int32_t *outs_ids = malloc(((size_t)n_out0 + (size_t)g->n_nodes + 1) * sizeof *outs_ids);
    struct kiln_calib_range *r = calloc((size_t)(g->n_values ? g->n_values : 1), sizeof *r);
    kiln_tensor *outs = NULL;
    kiln_session *s = NULL;
    kiln_status st = KILN_OK;
    if (!obs || !outs_ids || !r) {
        st = kiln_fail(err, KILN_ERR_NO_MEMORY, "calibration: out of memory");
        goto done;
    }
    for (int32_t v = 0; v < g->n_values; v++) r[v] = (struct kiln_calib_range){1.0f, 0.0f, 0, NULL};

    /* which values to observe, and where each comes from */
    memcpy(outs_ids, saved_outputs, (size_t)n_out0 * sizeof *outs_ids);
    int32_t n_obs = 0, n_outs = n_out0;
    for (int32_t i = 0; i < g->n_nodes; i++) {
        const struct kiln_node *n = &g->nodes[i];
        if (!kiln_quant_candidate(g, n)) continue;
        int32_t v = n->inputs[0];
        bool seen = false;
        for (int32_t k = 0; k < n_obs; k++) seen |= obs[k].value == v;
        if (seen) continue;
        struct observed *o = &obs[n_obs++];
        o->value = v;
        o->input_index = -1;
        o->lo = INFINITY;
        o->hi = -INFINITY;
        o->axis_last = strcmp(n->op_type, "Conv") != 0;
        for (int32_t k = 0; k < n_in; k++)
            if (g->inputs[k] == v) o->input_index = k;
        if (o->input_index >= 0) continue;
        o->output_index = -1;
        for (int32_t k = 0; k < n_outs; k++)
            if (outs_ids[k] == v) o->output_index = k;
        if (o->output_index < 0) {
            o->output_index = n_outs;
            outs_ids[n_outs++] = v;
        }
    }
    outs = calloc((size_t)n_outs + 1, sizeof *outs);
    if (!outs) {
        st = kiln_fail(err, KILN_ERR_NO_MEMORY, "calibration: out of memory");
        goto done;
    }
    g->outputs = outs_ids;
    g->n_outputs = n_outs;
    kiln_graph_recount(g);
    kiln_session_options so = kiln_session_options_default();
    so.n_threads = opt->n_threads;
    if ((st = kiln_session_create(m, &so, &s, err))) goto done;

    int passes = opt->method == KILN_CALIB_PERCENTILE ? 2 : 1;
    for (int pass = 0; pass < passes; pass++) {
        if (pass == 1)
            for (int32_t k = 0; k < n_obs; k++)
                if (!(obs[k].hist = calloc(HBINS, sizeof *obs[k].hist))) {
                    st = kiln_fail(err, KILN_ERR_NO_MEMORY, "calibration: out of memory");
                    goto done;
                }
        for (int32_t si = 0; si < n_sets; si++) {
            if (opt->progress)
                opt->progress(opt->progress_user, passes == 2 && pass == 0 ? "calibrating (ranges)"
                              : passes == 2 ? "calibrating (histograms)" : "calibrating", si, n_sets);
            if ((st = kiln_session_run(s, sets[si], n_in, outs, n_outs, err))) {
                kiln_fail_prefix(err, st, "calibration input set %d", si);
                goto done;
            }
            for (int32_t k = 0; k < n_obs; k++) {
                const kiln_tensor *t = find_tensor(outs, &obs[k], sets[si]);
                if (t->dtype != KILN_DTYPE_FLOAT || !t->data) continue;
                int64_t cnt = 1;
                for (int32_t d = 0; d < t->rank; d++) cnt *= t->dims[d];
                if (pass == 1) {
                    observe_hist(&obs[k], t->data, cnt);
                    continue;
                }
                observe_minmax(&obs[k], t->data, cnt);
                if (!observe_channels(&obs[k], t)) {
                    st = kiln_fail(err, KILN_ERR_NO_MEMORY, "calibration: out of memory");
                    goto done;
                }
            }
        }
    }
    for (int32_t k = 0; k < n_obs; k++) {
        const struct observed *o = &obs[k];
        if (!(o->lo <= o->hi)) continue;   /* never a float tensor */
        struct kiln_calib_range x = {(float)o->lo, (float)o->hi};
        if (passes == 2) percentile_range(o, opt->percentile, &x.lo, &x.hi);
        if (o->n_ch > 0 && o->ch_count > 0 && (x.mean = malloc((size_t)o->n_ch * sizeof *x.mean))) {
            x.n_mean = o->n_ch;
            for (int64_t c = 0; c < o->n_ch; c++)
                x.mean[c] = (float)(o->ch_sum[c] / (double)o->ch_count);
        }
        r[o->value] = x;
    }
    *ranges = r;
    r = NULL;
done:
    kiln_session_free(s);
    g->outputs = saved_outputs;
    g->n_outputs = n_out0;
    kiln_graph_recount(g);
    for (int32_t k = 0; obs && k < g->n_nodes; k++) {
        free(obs[k].hist);
        free(obs[k].ch_sum);
    }
    free(obs);
    free(outs_ids);
    free(outs);
    kiln_calib_free(r, r ? g->n_values : 0);
    return st;
}

/* ---- mixed precision ------------------------------------------------------- */

void kiln_names_free(char **names) {
    for (char **p = names; p && *p; p++) free(*p);
    free(names);
}

struct ref_outputs {
    int32_t n_sets, n_out;
    float **data;        /* [set * n_out + k], NULL for non-float outputs */
    int64_t *count;
};

/* Worst 1 - cosine over sets of every float output of plan_path quantized with
 * `exclude` kept in float. */
static kiln_status eval_variant(const char *plan_path, const struct kiln_calib_range *ranges,
                                const struct kiln_quant_options *base, const char *const *exclude,
                                const kiln_tensor *const *sets, int32_t n_eval,
                                const struct ref_outputs *ref, double *noise, kiln_error *err) {
    kiln_model *q = NULL;
    kiln_session *s = NULL;
    kiln_tensor *outs = calloc((size_t)ref->n_out + 1, sizeof *outs);
    kiln_status st = outs ? kiln_model_load(plan_path, NULL, &q, err)
                          : kiln_fail(err, KILN_ERR_NO_MEMORY, "int8: out of memory");
    struct kiln_quant_options o = *base;
    o.exclude = exclude;
    struct kiln_quant_stats qs;
    if (!st) st = kiln_quantize_int8(q->onnx.graph, ranges, &o, &qs, err);
    kiln_session_options so = kiln_session_options_default();
    if (!st) st = kiln_session_create(q, &so, &s, err);
    *noise = 0;
    for (int32_t i = 0; !st && i < n_eval && i < ref->n_sets; i++) {
        if ((st = kiln_session_run(s, sets[i], q->onnx.graph->n_inputs, outs, ref->n_out, err))) break;
        double dot = 0, na = 0, nb = 0;
        for (int32_t k = 0; k < ref->n_out; k++) {
            const float *a = ref->data[i * ref->n_out + k], *b = outs[k].data;
            if (!a || outs[k].dtype != KILN_DTYPE_FLOAT ||
                (int64_t)(outs[k].nbytes / sizeof(float)) != ref->count[i * ref->n_out + k])
                continue;
            for (int64_t e = 0; e < ref->count[i * ref->n_out + k]; e++) {
                dot += (double)a[e] * b[e];
                na += (double)a[e] * a[e];
                nb += (double)b[e] * b[e];
            }
        }
        double c = na > 0 && nb > 0 ? dot / sqrt(na * nb) : 1.0;
        if (!(c == c)) c = 0;   /* NaN */
        if (1 - c > *noise) *noise = 1 - c;
    }
    kiln_session_free(s);
    kiln_model_free(q);
    free(outs);
    return st;
}

struct cand {
    const char *name;
    double noise;
};

static int cand_cmp(const void *a, const void *b) {
    double x = ((const struct cand *)a)->noise, y = ((const struct cand *)b)->noise;
    return x < y ? 1 : x > y ? -1 : 0;
}

kiln_status kiln_int8_choose(struct kiln_model *m, const struct kiln_calib_range *ranges,
                             const struct kiln_quant_options *o, const kiln_tensor *const *sets,
                             int32_t n_sets, double target, char ***exclude, double *cosine,
                             int32_t *n_tried, kiln_error *err) {
    kiln_error_clear(err);
    *exclude = NULL;
    *cosine = 0;
    *n_tried = 0;
    if (!m || !ranges || !o || !sets || n_sets < 1)
        return kiln_fail(err, KILN_ERR_INVALID_ARG, "kiln_int8_choose: bad arguments");
    struct kiln_graph *g = m->onnx.graph;
    int32_t n_out = g->n_outputs;
    /* each variant starts from a fresh copy of the float graph: its plan file */
    char path[64];
    snprintf(path, sizeof path, "/tmp/kiln-int8-XXXXXX");
    int fd = mkstemp(path);
    if (fd < 0) return kiln_fail(err, KILN_ERR_IO, "int8: cannot create a temporary file");
    close(fd);
    struct ref_outputs ref = {.n_sets = n_sets, .n_out = n_out};
    ref.data = calloc((size_t)(n_sets * n_out) + 1, sizeof *ref.data);
    ref.count = calloc((size_t)(n_sets * n_out) + 1, sizeof *ref.count);
    struct cand *cands = calloc((size_t)g->n_nodes + 1, sizeof *cands);
    const char **ex = calloc((size_t)g->n_nodes + 1, sizeof *ex);
    kiln_tensor *outs = calloc((size_t)n_out + 1, sizeof *outs);
    kiln_session *s = NULL;
    kiln_status st = KILN_OK;
    int32_t n_cand = 0, n_ex = 0;
    double noise = 1;
    if (!ref.data || !ref.count || !cands || !ex || !outs) {
        st = kiln_fail(err, KILN_ERR_NO_MEMORY, "int8: out of memory");
        goto done;
    }
    struct kiln_artifact_info info = {.precision = "fp32"};
    if ((st = kiln_artifact_write(g, NULL, &info, path, err))) goto done;
    kiln_session_options so = kiln_session_options_default();
    if ((st = kiln_session_create(m, &so, &s, err))) goto done;
    for (int32_t i = 0; i < n_sets; i++) {
        if ((st = kiln_session_run(s, sets[i], g->n_inputs, outs, n_out, err))) goto done;
        for (int32_t k = 0; k < n_out; k++) {
            if (outs[k].dtype != KILN_DTYPE_FLOAT) continue;
            float *c = malloc(outs[k].nbytes ? outs[k].nbytes : 1);
            if (!c) {
                st = kiln_fail(err, KILN_ERR_NO_MEMORY, "int8: out of memory");
                goto done;
            }
            memcpy(c, outs[k].data, outs[k].nbytes);
            ref.data[i * n_out + k] = c;
            ref.count[i * n_out + k] = (int64_t)(outs[k].nbytes / sizeof(float));
        }
    }
    kiln_session_free(s);
    s = NULL;
    for (int32_t i = 0; i < g->n_nodes; i++) {
        const struct kiln_node *n = &g->nodes[i];
        if (kiln_quant_candidate(g, n) && ranges[n->inputs[0]].lo <= ranges[n->inputs[0]].hi &&
            (o->matmuls || !strcmp(n->op_type, "Conv")))
            cands[n_cand++].name = n->name;
    }
    /* everything int8 first: often good enough */
    if (o->progress) o->progress(o->progress_user, "int8: checking the all-int8 model", 0, 1);
    if ((st = eval_variant(path, ranges, o, NULL, sets, n_sets, &ref, &noise, err))) goto done;
    ++*n_tried;
    if (1 - noise < target && n_cand > 0) {
        /* each candidate alone, on the first set: the ranking is what matters */
        for (int32_t c = 0; c < n_cand; c++) {
            int32_t k = 0;
            for (int32_t j = 0; j < n_cand; j++)
                if (j != c) ex[k++] = cands[j].name;
            ex[k] = NULL;
            if (o->progress) o->progress(o->progress_user, "int8: ranking layers", c + 1, n_cand);
            if ((st = eval_variant(path, ranges, o, ex, sets, 1, &ref, &cands[c].noise, err))) goto done;
            ++*n_tried;
        }
        qsort(cands, (size_t)n_cand, sizeof *cands, cand_cmp);
        /* keep the worst in float until the rest (summed) fits; then check,
         * and keep one more each time the check fails */
        double rest = 0;
        for (int32_t c = 0; c < n_cand; c++) rest += cands[c].noise;
        while (n_ex < n_cand && rest > 1 - target) rest -= cands[n_ex++].noise;
        for (;;) {
            for (int32_t c = 0; c < n_ex; c++) ex[c] = cands[c].name;
            ex[n_ex] = NULL;
            if (o->progress) o->progress(o->progress_user, "int8: checking with layers kept in fp32", n_ex, n_cand);
            if ((st = eval_variant(path, ranges, o, ex, sets, n_sets, &ref, &noise, err))) goto done;
            ++*n_tried;
            if (1 - noise >= target || n_ex == n_cand) break;
            n_ex++;
        }
    }
    *cosine = 1 - noise;
    char **names = calloc((size_t)n_ex + 1, sizeof *names);
    if (!names) {
        st = kiln_fail(err, KILN_ERR_NO_MEMORY, "int8: out of memory");
        goto done;
    }
    for (int32_t c = 0; c < n_ex; c++)
        if (!(names[c] = strdup(cands[c].name))) {
            kiln_names_free(names);
            st = kiln_fail(err, KILN_ERR_NO_MEMORY, "int8: out of memory");
            goto done;
        }
    *exclude = names;
done:
    kiln_session_free(s);
    unlink(path);
    for (int32_t i = 0; ref.data && i < n_sets * n_out; i++) free(ref.data[i]);
    free(ref.data);
    free(ref.count);
    free(cands);
    free(ex);
    free(outs);
    return st;
}
