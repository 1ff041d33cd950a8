/* cmd_run.c — `kiln run MODEL --input NAME=FILE ...`: one inference on inputs
 * read from .pb / .npy / image files (or seeded random ones), printing a
 * summary of each output and optionally saving them as .npy. Every failure is
 * a message and exit status 1 (2 for bad usage). */
#include "cmd.h"
#include "image.h"
#include "kiln.h"
#include "npy.h"
#include "tensor_file.h"
#include "precision.h"

#include <errno.h>
#include <math.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <strings.h>

static const char USAGE[] =
    "usage: kiln run MODEL [--input NAME=FILE]... [options]\n"
    "  --input NAME=FILE   FILE is .pb (TensorProto), .npy, or .png/.jpg for image inputs;\n"
    "                      with a one-input model, NAME= may be left out\n"
    "  --random            fill inputs not given with seeded random values\n"
    "  --seed S            seed for --random (default 1)\n"
    "  --int-range LO,HI   integer random inputs in [LO,HI) (default 0,100)\n"
    "  --dim NAME=VALUE    value of a symbolic dim (NAME or INPUT:INDEX; default 1)\n"
    "  --output DIR        write each output to DIR/<name>.npy\n"
    "  --threads T         intra-op threads (default: all cores of the affinity mask)\n"
    "  --top K             rows of the top-K listing for classifier outputs (default 5)\n"
    "  --reference         portable reference kernels only\n"
    "  --precision fp32|bf16|int8  compile an .onnx at this precision first (as kiln compile)\n"
    "  --calibrate DIR     calibration inputs for --precision int8\n"
    "image inputs: value = (pixel * scale - mean[c]) / std[c], pixel in 0..255\n"
    "  --scale S           default 1/255 for float inputs (so [0,1]), 1 for integer inputs\n"
    "  --mean R,G,B        default 0,0,0   (ImageNet: 0.485,0.456,0.406)\n"
    "  --std R,G,B         default 1,1,1   (ImageNet: 0.229,0.224,0.225)\n"
    "  --bgr               channels in B,G,R order (mean/std are given in the model's order)\n"
    "  --layout nchw|nhwc  override the layout guessed from the declared shape\n";

#define MAX_INPUT_ARGS 256

struct run_opts {
    const char *model;
    const char *input_args[MAX_INPUT_ARGS];
    int n_input_args;
    const char *out_dir;
    int threads, random, reference, top;
    uint64_t seed;
    int64_t int_lo, int_hi;
    struct tf_dims dims;
    struct image_norm norm;
    int have_scale;
    int layout;   /* 0 auto, 1 nchw, 2 nhwc */
    const char *precision, *calib_dir;   /* compile an .onnx on the fly */
};

/* A list of 1 or 3 numbers (one value applies to every channel). */
static int parse_triplet(const char *s, double *out, const char *opt) {
    double v[3];
    int n = tf_parse_f64_list(s, v, 3);
    if (n == 1) v[1] = v[2] = v[0];
    if (n != 1 && n != 3) {
        fprintf(stderr, "kiln run: bad %s '%s' (want R,G,B or one number)\n", opt, s);
        return -1;
    }
    memcpy(out, v, sizeof v);
    return 0;
}

static int parse_args(int argc, char **argv, struct run_opts *o) {
    for (int i = 1; i < argc; i++) {
        const char *a = argv[i];
        /* options taking a value accept both "--opt V" and "--opt=V" */
        const char *val = NULL;
        char key[32] = "";
        if (!strncmp(a, "--", 2)) {
            const char *eq = strchr(a, '=');
            if (eq && (size_t)(eq - a) < sizeof key) {
                snprintf(key, sizeof key, "%.*s", (int)(eq - a), a);
                val = eq + 1;
            } else snprintf(key, sizeof key, "%s", a);
        }
        static const char *with_value[] = {"--input", "--output", "--threads", "--dim", "--seed", "--int-range",
                                           "--mean", "--std", "--scale", "--layout", "--top",
                                           "--precision", "--calibrate"};
        int needs = 0;
        for (size_t k = 0; k < sizeof with_value / sizeof *with_value; k++) needs |= !strcmp(key, with_value[k]);
        if (needs && !val) {
            if (i + 1 >= argc) {
                fprintf(stderr, "kiln run: %s needs a value\n", key);
                return -1;
            }
            val = argv[++i];
        }
        int64_t iv;
        if (!strcmp(a, "-h") || !strcmp(a, "--help")) {
            fputs(USAGE, stdout);
            exit(0);
        } else if (!strcmp(key, "--input")) {
            if (o->n_input_args >= MAX_INPUT_ARGS) {
                fprintf(stderr, "kiln run: too many --input options\n");
                return -1;
            }
            o->input_args[o->n_input_args++] = val;
        } else if (!strcmp(key, "--output")) o->out_dir = val;
        else if (!strcmp(key, "--precision")) o->precision = val;
        else if (!strcmp(key, "--calibrate")) o->calib_dir = val;
        else if (!strcmp(key, "--threads")) {
            if (tf_parse_i64(val, &iv) || iv < 0 || iv > 4096) {
                fprintf(stderr, "kiln run: bad --threads '%s' (want 0..4096; 0 = all cores)\n", val);
                return -1;
            }
            o->threads = (int)iv;
        } else if (!strcmp(key, "--top")) {
            if (tf_parse_i64(val, &iv) || iv < 0 || iv > 1000) {
                fprintf(stderr, "kiln run: bad --top '%s' (want 0..1000)\n", val);
                return -1;
            }
            o->top = (int)iv;
        } else if (!strcmp(key, "--dim")) {
            if (tf_dims_add(&o->dims, val, "kiln run")) return -1;
        } else if (!strcmp(key, "--seed")) {
            if (tf_parse_i64(val, &iv) || iv < 0) {
                fprintf(stderr, "kiln run: bad --seed '%s'\n", val);
                return -1;
            }
            o->seed = (uint64_t)iv;
        } else if (!strcmp(key, "--int-range")) {
            int64_t r[2];
            if (tf_parse_i64_list(val, r, 2) != 2 || r[1] <= r[0]) {
                fprintf(stderr, "kiln run: bad --int-range '%s' (want LO,HI with LO < HI)\n", val);
                return -1;
            }
            o->int_lo = r[0], o->int_hi = r[1];
        } else if (!strcmp(key, "--mean")) {
            if (parse_triplet(val, o->norm.mean, "--mean")) return -1;
        } else if (!strcmp(key, "--std")) {
            if (parse_triplet(val, o->norm.std, "--std")) return -1;
            for (int c = 0; c < 3; c++)
                if (o->norm.std[c] == 0) {
                    fprintf(stderr, "kiln run: --std must not be 0\n");
                    return -1;
                }
        } else if (!strcmp(key, "--scale")) {
            if (tf_parse_f64(val, &o->norm.scale)) {
                fprintf(stderr, "kiln run: bad --scale '%s'\n", val);
                return -1;
            }
            o->have_scale = 1;
        } else if (!strcmp(key, "--layout")) {
            if (!strcasecmp(val, "nchw")) o->layout = 1;
            else if (!strcasecmp(val, "nhwc")) o->layout = 2;
            else {
                fprintf(stderr, "kiln run: bad --layout '%s' (want nchw or nhwc)\n", val);
                return -1;
            }
        } else if (!strcmp(a, "--random")) o->random = 1;
        else if (!strcmp(a, "--bgr")) o->norm.bgr = 1;
        else if (!strcmp(a, "--reference")) o->reference = 1;
        else if (a[0] == '-' && a[1]) {
            fprintf(stderr, "kiln run: unknown option '%s'\n", a);
            return -1;
        } else if (!o->model) o->model = a;
        else {
            fprintf(stderr, "kiln run: unexpected argument '%s' (inputs go with --input NAME=FILE)\n", a);
            return -1;
        }
    }
    if (!o->model) {
        fprintf(stderr, "kiln run: no model given\n");
        return -1;
    }
    return 0;
}

static int has_ext(const char *path, const char *ext) {
    size_t n = strlen(path), e = strlen(ext);
    return n >= e && !strcasecmp(path + n - e, ext);
}

static int is_npy(const char *path) {
    if (has_ext(path, ".npy")) return 1;
    FILE *f = fopen(path, "rb");
    if (!f) return 0;
    char b[6] = {0};
    size_t n = fread(b, 1, sizeof b, f);
    fclose(f);
    return n == 6 && !memcmp(b, "\x93NUMPY", 6);
}

/* Fills `t` (already named) from an image for input `ti`. */
static kiln_status load_image_input(const struct run_opts *o, const kiln_tensor_info *ti,
                                    const char *path, kiln_tensor *t, kiln_error *err) {
    char shape[512];
    tf_shape_str(ti->rank, ti->dims, ti->dim_names, shape, sizeof shape);
    if (ti->rank != 4) {
        snprintf(err->msg, sizeof err->msg,
                 "input '%s' is %s, not a 4-D image tensor: pass a .npy or .pb file instead", ti->name, shape);
        return err->code = KILN_ERR_SHAPE;
    }
    if (!tf_dtype_numeric(ti->dtype)) {
        snprintf(err->msg, sizeof err->msg, "input '%s' is %s, cannot hold an image", ti->name,
                 kiln_dtype_name(ti->dtype));
        return err->code = KILN_ERR_SHAPE;
    }
    int nhwc;
    if (o->layout) nhwc = o->layout == 2;
    else if (ti->dims[1] == 3 || ti->dims[1] == 1) nhwc = 0;
    else if (ti->dims[3] == 3 || ti->dims[3] == 1) nhwc = 1;
    else {
        snprintf(err->msg, sizeof err->msg,
                 "input '%s' is %s: cannot tell NCHW from NHWC (no channel dim of 1 or 3); pass --layout",
                 ti->name, shape);
        return err->code = KILN_ERR_SHAPE;
    }
    int cdim = nhwc ? 3 : 1, hdim = nhwc ? 1 : 2, wdim = nhwc ? 2 : 3;
    int64_t C = ti->dims[cdim] >= 0 ? ti->dims[cdim] : tf_dims_lookup(&o->dims, ti->dim_names[cdim], ti->name, cdim);
    if (C < 0) C = 3;
    if (C != 1 && C != 3) {
        snprintf(err->msg, sizeof err->msg, "input '%s' is %s (%s): %lld channels; images give 1 or 3",
                 ti->name, shape, nhwc ? "NHWC" : "NCHW", (long long)C);
        return err->code = KILN_ERR_SHAPE;
    }
    struct image img;
    kiln_status s = image_load(path, &img, err);
    if (s) return s;
    int64_t H = ti->dims[hdim] >= 0 ? ti->dims[hdim] : tf_dims_lookup(&o->dims, ti->dim_names[hdim], ti->name, hdim);
    int64_t W = ti->dims[wdim] >= 0 ? ti->dims[wdim] : tf_dims_lookup(&o->dims, ti->dim_names[wdim], ti->name, wdim);
    /* one open side follows the image's aspect ratio; two open sides take the image's size */
    if (H < 0 && W < 0) H = img.h, W = img.w;
    else if (H < 0) H = (int64_t)((double)W * img.h / img.w + 0.5);
    else if (W < 0) W = (int64_t)((double)H * img.w / img.h + 0.5);
    if (H < 1) H = 1;
    if (W < 1) W = 1;
    int64_t N = ti->dims[0] >= 0 ? ti->dims[0] : tf_dims_lookup(&o->dims, ti->dim_names[0], ti->name, 0);
    if (N < 1) N = 1;
    int64_t dims[4] = {N, nhwc ? H : C, nhwc ? W : H, nhwc ? C : W};
    s = tf_alloc(t, KILN_DTYPE_FLOAT, 4, dims, err);
    if (s) {
        image_free(&img);
        return s;
    }
    struct image_norm norm = o->norm;
    if (!o->have_scale) norm.scale = tf_dtype_is_float(ti->dtype) ? 1.0 / 255.0 : 1.0;
    size_t per = (size_t)(H * W * C);
    image_to_tensor(&img, (int)C, H, W, nhwc, &norm, t->data);
    for (int64_t n = 1; n < N; n++)   /* the same picture in every batch slot */
        memcpy((float *)t->data + (size_t)n * per, t->data, per * sizeof(float));
    char got[128];
    tf_shape_str(4, dims, NULL, got, sizeof got);
    printf("input  %-24s %s %s <- %s (%dx%d image, %s, %s, scale %.6g, mean %g,%g,%g, std %g,%g,%g)\n",
           ti->name, kiln_dtype_name(ti->dtype), got, path, img.w, img.h, nhwc ? "NHWC" : "NCHW",
           C == 1 ? "grey" : norm.bgr ? "BGR" : "RGB", norm.scale, norm.mean[0], norm.mean[1],
           norm.mean[2], norm.std[0], norm.std[1], norm.std[2]);
    image_free(&img);
    if (ti->dtype != KILN_DTYPE_FLOAT && !tf_dtype_is_float(ti->dtype)) {
        /* integer inputs (uint8 pixels): round, since conversion truncates */
        float *f = t->data;
        for (size_t k = 0; k < (size_t)N * per; k++) f[k] = roundf(f[k]);
    }
    if (ti->dtype != KILN_DTYPE_FLOAT) return tf_convert(t, ti->dtype, err);
    return KILN_OK;
}

static kiln_status load_file_input(const struct run_opts *o, const kiln_tensor_info *ti,
                                   const char *path, kiln_tensor *t, kiln_error *err) {
    kiln_status s;
    const char *kind;
    if (image_sniff(path) || has_ext(path, ".png") || has_ext(path, ".jpg") || has_ext(path, ".jpeg"))
        return load_image_input(o, ti, path, t, err);
    if (is_npy(path)) {
        s = npy_read(path, TF_MAX_TENSOR_BYTES, t, err);
        kind = "npy";
    } else {
        s = tf_read_pb(path, t, err);
        kind = "TensorProto";
    }
    if (s) return s;
    char got[256];
    tf_shape_str(t->rank, t->dims, NULL, got, sizeof got);
    printf("input  %-24s %s %s <- %s (%s)\n", ti->name, kiln_dtype_name(t->dtype), got, path, kind);
    if (t->dtype != ti->dtype && ti->dtype != KILN_DTYPE_UNDEFINED) {
        if (!tf_dtype_numeric(t->dtype) || !tf_dtype_numeric(ti->dtype)) {
            snprintf(err->msg, sizeof err->msg, "%s: holds %s but input '%s' is %s", path,
                     kiln_dtype_name(t->dtype), ti->name, kiln_dtype_name(ti->dtype));
            return err->code = KILN_ERR_SHAPE;
        }
        fprintf(stderr, "kiln run: note: converting %s from %s to %s, the type of input '%s'\n", path,
                kiln_dtype_name(t->dtype), kiln_dtype_name(ti->dtype), ti->name);
        return tf_convert(t, ti->dtype, err);
    }
    return KILN_OK;
}

static int cmp_desc(const void *a, const void *b) {
    const double *x = a, *y = b;
    return x[0] < y[0] ? 1 : x[0] > y[0] ? -1 : (x[1] > y[1]) - (x[1] < y[1]);
}

static void summarize(const kiln_tensor *t, int top) {
    char shape[256];
    tf_shape_str(t->rank, t->dims, NULL, shape, sizeof shape);
    printf("output %-24s %s %s\n", t->name ? t->name : "?", kiln_dtype_name(t->dtype), shape);
    if (!tf_dtype_numeric(t->dtype) || !t->data) return;
    int64_t n = tf_numel(t), bad = 0;
    if (!n) {
        printf("       (empty)\n");
        return;
    }
    double mn = INFINITY, mx = -INFINITY, sum = 0;
    int64_t finite = 0;
    for (int64_t i = 0; i < n; i++) {
        double v = tf_get_f64(t, i);
        if (!isfinite(v)) {
            bad++;
            continue;
        }
        mn = v < mn ? v : mn;
        mx = v > mx ? v : mx;
        sum += v;
        finite++;
    }
    if (finite) printf("       min %.6g  max %.6g  mean %.6g", mn, mx, sum / (double)finite);
    else printf("       no finite values");
    if (bad) printf("  (%lld NaN/inf)", (long long)bad);
    printf("\n");
    /* a classifier's scores: [N] or [1, N] with N >= 10 */
    int64_t classes = t->rank == 1 ? t->dims[0] : t->rank == 2 && t->dims[0] == 1 ? t->dims[1] : 0;
    if (classes < 10 || top <= 0) return;
    double *pairs = malloc((size_t)classes * 2 * sizeof *pairs);
    if (!pairs) return;
    for (int64_t i = 0; i < classes; i++) {
        double v = tf_get_f64(t, i);
        pairs[2 * i] = isnan(v) ? -INFINITY : v;
        pairs[2 * i + 1] = (double)i;
    }
    qsort(pairs, (size_t)classes, 2 * sizeof *pairs, cmp_desc);
    printf("       top-%d:", top < classes ? top : (int)classes);
    for (int64_t k = 0; k < top && k < classes; k++)
        printf(" [%lld] %.6g%s", (long long)pairs[2 * k + 1], pairs[2 * k], k + 1 < top && k + 1 < classes ? "," : "");
    printf("\n");
    free(pairs);
}

/* Which model input an --input argument names: the longest input name that
 * is followed by '='; a bare FILE goes to the only input of a one-input model. */
static int match_input(const kiln_model *m, const char *arg, const char **file) {
    int32_t n = kiln_model_n_inputs(m);
    int best = -1;
    size_t best_len = 0;
    for (int32_t i = 0; i < n; i++) {
        kiln_tensor_info ti;
        kiln_model_input(m, i, &ti);
        size_t len = strlen(ti.name);
        if (!strncmp(arg, ti.name, len) && arg[len] == '=' && (best < 0 || len > best_len)) {
            best = i;
            best_len = len;
        }
    }
    if (best >= 0) {
        *file = arg + best_len + 1;
        return best;
    }
    if (n == 1 && !strchr(arg, '=')) {
        *file = arg;
        return 0;
    }
    return -1;
}

static void list_inputs(const kiln_model *m) {
    fprintf(stderr, "the model's inputs are:\n");
    for (int32_t i = 0; i < kiln_model_n_inputs(m); i++) {
        kiln_tensor_info ti;
        kiln_model_input(m, i, &ti);
        char shape[512];
        tf_shape_str(ti.rank, ti.dims, ti.dim_names, shape, sizeof shape);
        fprintf(stderr, "  %s %s %s\n", ti.name, kiln_dtype_name(ti.dtype), shape);
    }
}

static int write_outputs(const char *dir, const kiln_tensor *outs, int32_t n) {
    if (tf_mkdirs(dir)) {
        fprintf(stderr, "kiln run: cannot create output folder '%s': %s\n", dir, strerror(errno));
        return -1;
    }
    char (*used)[256] = calloc((size_t)(n ? n : 1), sizeof *used);
    if (!used) return -1;
    int rc = 0;
    for (int32_t i = 0; i < n && !rc; i++) {
        char base[200], name[256];
        tf_sanitize(outs[i].name ? outs[i].name : "output", base, sizeof base);
        snprintf(name, sizeof name, "%s", base);
        /* two names may sanitize alike ("a:0", "a_0"): keep files distinct */
        for (int k = 2, clash = 1; clash; k++) {
            clash = 0;
            for (int32_t j = 0; j < i; j++) clash |= !strcmp(used[j], name);
            if (clash) snprintf(name, sizeof name, "%s_%d", base, k);
        }
        snprintf(used[i], sizeof used[i], "%s", name);
        char path[4400];
        snprintf(path, sizeof path, "%s/%s.npy", dir, name);
        kiln_error err;
        if (npy_write(path, &outs[i], &err)) {
            fprintf(stderr, "kiln run: %s\n", err.msg);
            rc = -1;
        } else {
            printf("wrote  %s\n", path);
        }
    }
    free(used);
    return rc;
}

int kiln_cmd_run(int argc, char **argv) {
    static struct run_opts o;   /* large (dims table): static, one run per process */
    memset(&o, 0, sizeof o);
    setvbuf(stdout, NULL, _IOLBF, 0);   /* keep stdout and stderr lines in order */
    o.seed = 1;
    o.int_lo = 0, o.int_hi = 100;
    o.top = 5;
    o.norm.std[0] = o.norm.std[1] = o.norm.std[2] = 1;
    if (parse_args(argc, argv, &o)) {
        fprintf(stderr, "see 'kiln run --help'\n");
        return 2;
    }

    kiln_error err;
    kiln_model *m = NULL;
    char path[4096];
    if (tf_precision_check("run", o.model, o.precision, o.calib_dir)) return 2;
    /* calibration images get the normalization this run gives its inputs */
    char mean[96], stdv[96], scale[32];
    snprintf(mean, sizeof mean, "%.9g,%.9g,%.9g", o.norm.mean[0], o.norm.mean[1], o.norm.mean[2]);
    snprintf(stdv, sizeof stdv, "%.9g,%.9g,%.9g", o.norm.std[0], o.norm.std[1], o.norm.std[2]);
    snprintf(scale, sizeof scale, "%.9g", o.have_scale ? o.norm.scale : 1.0 / 255.0);
    const char *norm_args[] = {"--mean", mean, "--std", stdv, "--scale", scale, NULL};
    if (tf_precision_compile("run", o.model, o.precision, o.calib_dir, norm_args, path, sizeof path)) return 1;
    kiln_status lst = kiln_model_load(path, NULL, &m, &err);
    tf_precision_done(o.model, path);
    if (lst) {
        fprintf(stderr, "kiln run: cannot load model: %s\n", err.msg);
        return 1;
    }
    int rc = 1;
    int32_t n_in = kiln_model_n_inputs(m), n_out = kiln_model_n_outputs(m);
    kiln_tensor *ins = calloc((size_t)n_in + 1, sizeof *ins);
    kiln_tensor *outs = calloc((size_t)n_out + 1, sizeof *outs);
    kiln_session *s = NULL;
    struct tf_resolve res = {.dims = &o.dims};
    if (!ins || !outs) {
        fprintf(stderr, "kiln run: out of memory\n");
        goto done;
    }

    for (int k = 0; k < o.n_input_args; k++) {
        const char *file = NULL;
        int i = match_input(m, o.input_args[k], &file);
        if (i < 0) {
            fprintf(stderr, "kiln run: --input '%s' names no input of the model\n", o.input_args[k]);
            list_inputs(m);
            goto done;
        }
        kiln_tensor_info ti;
        kiln_model_input(m, i, &ti);
        if (ins[i].data) {
            fprintf(stderr, "kiln run: input '%s' is given twice\n", ti.name);
            goto done;
        }
        memset(&err, 0, sizeof err);
        if (load_file_input(&o, &ti, file, &ins[i], &err)) {
            fprintf(stderr, "kiln run: input '%s': %s\n", ti.name, err.msg);
            goto done;
        }
        ins[i].name = ti.name;
        /* symbolic dims seen in files size the random inputs consistently */
        for (int32_t d = 0; d < ti.rank && d < ins[i].rank; d++)
            if (ti.dims[d] < 0) tf_resolve_bind(&res, ti.dim_names[d], ins[i].dims[d]);
    }

    int missing = 0;
    for (int32_t i = 0; i < n_in; i++) missing += !ins[i].data;
    if (missing && !o.random) {
        fprintf(stderr, "kiln run: %d input%s not given:", missing, missing > 1 ? "s" : "");
        for (int32_t i = 0; i < n_in; i++) {
            kiln_tensor_info ti;
            kiln_model_input(m, i, &ti);
            if (!ins[i].data) fprintf(stderr, " '%s'", ti.name);
        }
        fprintf(stderr, "\n  pass --input NAME=FILE for each, or --random for seeded random values\n");
        list_inputs(m);
        goto done;
    }
    uint64_t rng = o.seed;
    for (int32_t i = 0; i < n_in; i++) {
        if (ins[i].data) continue;
        kiln_tensor_info ti;
        kiln_model_input(m, i, &ti);
        if (ti.rank < 0) {
            fprintf(stderr, "kiln run: input '%s' declares no shape; give it with --input\n", ti.name);
            goto done;
        }
        int64_t dims[KILN_MAX_RANK];
        tf_resolve_shape(&ti, i, &res, dims, NULL);
        if (tf_alloc(&ins[i], ti.dtype, ti.rank, dims, &err)) {
            fprintf(stderr, "kiln run: input '%s': %s\n", ti.name, err.msg);
            goto done;
        }
        ins[i].name = ti.name;
        for (int32_t d = 0; d < ti.rank; d++)
            if (ti.dims[d] < 0) tf_resolve_bind(&res, ti.dim_names[d], dims[d]);
        tf_fill_random(&ins[i], &rng, 0.0, 1.0, o.int_lo, o.int_hi);
        char shape[256];
        tf_shape_str(ti.rank, dims, NULL, shape, sizeof shape);
        printf("input  %-24s %s %s <- random (seed %llu, %s)\n", ti.name, kiln_dtype_name(ti.dtype), shape,
               (unsigned long long)o.seed, tf_dtype_is_float(ti.dtype) ? "uniform [0,1)" : "integers");
    }

    kiln_session_options so = kiln_session_options_default();
    so.n_threads = o.threads;
    so.reference_kernels = o.reference;
    if (kiln_session_create(m, &so, &s, &err)) {
        fprintf(stderr, "kiln run: cannot create a session: %s\n", err.msg);
        goto done;
    }
    double t0 = tf_now_ms();
    if (kiln_session_run(s, ins, n_in, outs, n_out, &err)) {
        fprintf(stderr, "kiln run: inference failed: %s\n", err.msg);
        goto done;
    }
    double t1 = tf_now_ms();
    printf("ran in %.3f ms (first run, including planning)\n", t1 - t0);
    for (int32_t i = 0; i < n_out; i++) summarize(&outs[i], o.top);
    if (o.out_dir && write_outputs(o.out_dir, outs, n_out)) goto done;
    rc = 0;
done:
    for (int32_t i = 0; ins && i < n_in; i++) tf_free(&ins[i]);
    free(ins);
    free(outs);
    kiln_session_free(s);
    kiln_model_free(m);
    return rc;
}
