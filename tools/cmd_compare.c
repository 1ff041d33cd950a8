/* cmd_compare.c — `kiln compare MODEL_A MODEL_B --inputs DIR`: runs two
 * models (.onnx or .kiln, e.g. fp32 and its int8 compilation) on the same
 * input sets and reports, per output, how far B is from A, aggregated over
 * every set:
 *   max_abs   max |a - b|
 *   max_rel   max |a - b| / max(|a|, 1e-3 * max|A|): elementwise, with a floor
 *             so that values near 0 do not dominate
 *   cosine    of the flattened outputs, the worst set and the mean over sets
 *   top-1     for classifier-shaped outputs ([C] or [N, C] with C >= 2): the
 *             share of rows whose argmax agrees
 * Exit status 0, or 1 on errors (or when --min-cosine is not met). */
#include "cmd.h"
#include "input_sets.h"
#include "kiln.h"
#include "tensor_file.h"
#include "runtime/model.h"

#include <math.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

static const char USAGE[] =
    "usage: kiln compare MODEL_A MODEL_B --inputs DIR [options]\n"
    "  --inputs DIR        test_data_set_* folders, or .pb/.npy/image files (one set each)\n"
    "  --max N             use at most N input sets\n"
    "  --threads T         intra-op threads (default: all cores)\n"
    "  --min-cosine C      exit 1 when an output's worst cosine similarity is below C\n"
    "  --mean R,G,B --std R,G,B --scale S   image normalization (as kiln run)\n";

struct out_stats {
    double max_abs, max_rel;
    double cos_min, cos_sum;
    int64_t top1_rows, top1_agree;
    int64_t elements;
    int classifier;
};

static int parse_triplet(const char *s, double *out) {
    double v[3];
    int n = tf_parse_f64_list(s, v, 3);
    if (n == 1) v[1] = v[2] = v[0];
    if (n != 1 && n != 3) return -1;
    memcpy(out, v, sizeof v);
    return 0;
}

static const char *precision_of(const kiln_model *m) {
    if (!kiln_model_is_plan(m)) return "onnx";
    const char *p = m->art.header.precision;
    return *p ? p : "fp32";
}

static int64_t argmax_row(const kiln_tensor *t, int64_t row, int64_t C) {
    int64_t best = 0;
    double bv = -INFINITY;
    for (int64_t c = 0; c < C; c++) {
        double v = tf_get_f64(t, row * C + c);
        if (v > bv) bv = v, best = c;
    }
    return best;
}

/* Adds one set's outputs a, b to st; -1 when their shapes differ. */
static int accumulate(struct out_stats *st, const kiln_tensor *a, const kiln_tensor *b) {
    if (a->rank != b->rank) return -1;
    for (int32_t r = 0; r < a->rank; r++)
        if (a->dims[r] != b->dims[r]) return -1;
    int64_t n = tf_numel(a);
    double amax = 0, dot = 0, na = 0, nb = 0;
    for (int64_t i = 0; i < n; i++) amax = fmax(amax, fabs(tf_get_f64(a, i)));
    double floor = 1e-3 * amax > 1e-12 ? 1e-3 * amax : 1e-12;
    for (int64_t i = 0; i < n; i++) {
        double x = tf_get_f64(a, i), y = tf_get_f64(b, i), d = fabs(x - y);
        if (isnan(d)) d = INFINITY;
        st->max_abs = fmax(st->max_abs, d);
        st->max_rel = fmax(st->max_rel, d / fmax(fabs(x), floor));
        dot += x * y;
        na += x * x;
        nb += y * y;
    }
    double cs = na > 0 && nb > 0 ? dot / sqrt(na * nb) : (na == nb ? 1.0 : 0.0);
    if (isnan(cs)) cs = 0;
    st->cos_min = fmin(st->cos_min, cs);
    st->cos_sum += cs;
    st->elements += n;
    int64_t C = a->rank == 1 ? a->dims[0] : a->rank == 2 ? a->dims[1] : 0;
    int64_t rows = a->rank == 1 ? 1 : a->rank == 2 ? a->dims[0] : 0;
    if (C >= 2 && tf_dtype_is_float(a->dtype)) {
        st->classifier = 1;
        for (int64_t r = 0; r < rows; r++) {
            st->top1_rows++;
            st->top1_agree += argmax_row(a, r, C) == argmax_row(b, r, C);
        }
    }
    return 0;
}

int kiln_cmd_compare(int argc, char **argv) {
    const char *pa = NULL, *pb = NULL, *dir = NULL;
    int64_t max_sets = 0, threads = 0;
    double min_cos = -2.0;
    struct image_norm norm = {.scale = 1.0 / 255.0, .std = {1, 1, 1}};
    for (int i = 1; i < argc; i++) {
        const char *a = argv[i];
        if (!strcmp(a, "-h") || !strcmp(a, "--help")) {
            fputs(USAGE, stdout);
            return 0;
        }
        int bad = 0;
        if (a[0] == '-' && i + 1 >= argc) bad = 1;
        else if (!strcmp(a, "--inputs")) dir = argv[++i];
        else if (!strcmp(a, "--max")) bad = tf_parse_i64(argv[++i], &max_sets) || max_sets < 1;
        else if (!strcmp(a, "--threads"))
            bad = tf_parse_i64(argv[++i], &threads) || threads < 0 || threads > 4096;
        else if (!strcmp(a, "--min-cosine")) bad = tf_parse_f64(argv[++i], &min_cos);
        else if (!strcmp(a, "--mean")) bad = parse_triplet(argv[++i], norm.mean);
        else if (!strcmp(a, "--std"))
            bad = parse_triplet(argv[++i], norm.std) || !norm.std[0] || !norm.std[1] || !norm.std[2];
        else if (!strcmp(a, "--scale")) bad = tf_parse_f64(argv[++i], &norm.scale);
        else if (a[0] == '-') bad = 1;
        else if (!pa) pa = a;
        else if (!pb) pb = a;
        else bad = 1;
        if (bad) {
            fprintf(stderr, "kiln compare: bad argument '%s'\n%s", a, USAGE);
            return 2;
        }
    }
    if (!pa || !pb || !dir) {
        fputs(USAGE, stderr);
        return 2;
    }
    setvbuf(stdout, NULL, _IOLBF, 0);
    kiln_error err;
    kiln_model *ma = NULL, *mb = NULL;
    kiln_session *sa = NULL, *sb = NULL;
    struct input_sets sets = {0};
    struct out_stats *st = NULL;
    kiln_tensor *oa = NULL, *ob = NULL;
    int rc = 1;
    if (kiln_model_load(pa, NULL, &ma, &err) || kiln_model_load(pb, NULL, &mb, &err)) {
        fprintf(stderr, "kiln compare: cannot load %s: %s\n", ma ? pb : pa, err.msg);
        goto done;
    }
    int32_t n_out = kiln_model_n_outputs(ma), n_in = kiln_model_n_inputs(ma);
    if (kiln_model_n_outputs(mb) != n_out || kiln_model_n_inputs(mb) != n_in) {
        fprintf(stderr, "kiln compare: the models differ in their inputs or outputs (%d/%d vs %d/%d)\n",
                n_in, n_out, kiln_model_n_inputs(mb), kiln_model_n_outputs(mb));
        goto done;
    }
    if (input_sets_load(ma, dir, (int32_t)max_sets, &norm, &sets, &err)) {
        fprintf(stderr, "kiln compare: %s\n", err.msg);
        goto done;
    }
    kiln_session_options so = kiln_session_options_default();
    so.n_threads = (int32_t)threads;
    if (kiln_session_create(ma, &so, &sa, &err) || kiln_session_create(mb, &so, &sb, &err)) {
        fprintf(stderr, "kiln compare: cannot create a session: %s\n", err.msg);
        goto done;
    }
    st = calloc((size_t)n_out + 1, sizeof *st);
    oa = calloc((size_t)n_out + 1, sizeof *oa);
    ob = calloc((size_t)n_out + 1, sizeof *ob);
    if (!st || !oa || !ob) {
        fprintf(stderr, "kiln compare: out of memory\n");
        goto done;
    }
    for (int32_t k = 0; k < n_out; k++) st[k].cos_min = INFINITY;
    printf("A %s (%s)\nB %s (%s)\n%d input set%s from %s\n", pa, precision_of(ma), pb,
           precision_of(mb), sets.n_sets, sets.n_sets == 1 ? "" : "s", dir);
    for (int32_t s = 0; s < sets.n_sets; s++) {
        if (kiln_session_run(sa, sets.sets[s], n_in, oa, n_out, &err)) {
            fprintf(stderr, "kiln compare: %s on %s: %s\n", pa, sets.labels[s], err.msg);
            goto done;
        }
        /* B's inputs are bound by A's names: rename if B calls them otherwise */
        for (int32_t i = 0; i < n_in; i++) {
            kiln_tensor_info ti;
            kiln_model_input(mb, i, &ti);
            sets.sets[s][i].name = ti.name;
        }
        /* A's outputs are views into its session: B runs in its own */
        if (kiln_session_run(sb, sets.sets[s], n_in, ob, n_out, &err)) {
            fprintf(stderr, "kiln compare: %s on %s: %s\n", pb, sets.labels[s], err.msg);
            goto done;
        }
        for (int32_t k = 0; k < n_out; k++) {
            if (!tf_dtype_numeric(oa[k].dtype) || !tf_dtype_numeric(ob[k].dtype)) continue;
            if (accumulate(&st[k], &oa[k], &ob[k])) {
                char sa_[128], sb_[128];
                tf_shape_str(oa[k].rank, oa[k].dims, NULL, sa_, sizeof sa_);
                tf_shape_str(ob[k].rank, ob[k].dims, NULL, sb_, sizeof sb_);
                fprintf(stderr, "kiln compare: output %d ('%s') has shape %s in A but %s in B (%s)\n",
                        k, oa[k].name ? oa[k].name : "?", sa_, sb_, sets.labels[s]);
                goto done;
            }
        }
        for (int32_t i = 0; i < n_in; i++) {
            kiln_tensor_info ti;
            kiln_model_input(ma, i, &ti);
            sets.sets[s][i].name = ti.name;
        }
    }
    rc = 0;
    printf("%-32s %12s %12s %12s %10s %10s  %s\n", "output", "elements", "max_abs", "max_rel",
           "cos_min", "cos_mean", "top-1 agreement");
    for (int32_t k = 0; k < n_out; k++) {
        kiln_tensor_info ti;
        kiln_model_output(ma, k, &ti);
        if (!st[k].elements) {
            printf("%-32s (not numeric: skipped)\n", ti.name);
            continue;
        }
        char top[64] = "-";
        if (st[k].classifier)
            snprintf(top, sizeof top, "%lld/%lld (%.1f%%)", (long long)st[k].top1_agree,
                     (long long)st[k].top1_rows,
                     100.0 * (double)st[k].top1_agree / (double)st[k].top1_rows);
        printf("%-32s %12lld %12.4g %12.4g %10.6f %10.6f  %s\n", ti.name, (long long)st[k].elements,
               st[k].max_abs, st[k].max_rel, st[k].cos_min, st[k].cos_sum / sets.n_sets, top);
        if (st[k].cos_min < min_cos) {
            fprintf(stderr, "kiln compare: output '%s': cosine similarity %.6f is below %.6f\n",
                    ti.name, st[k].cos_min, min_cos);
            rc = 1;
        }
    }
done:
    free(st);
    free(oa);
    free(ob);
    input_sets_free(&sets);
    kiln_session_free(sa);
    kiln_session_free(sb);
    kiln_model_free(ma);
    kiln_model_free(mb);
    return rc;
}
