/* input_sets.c — see input_sets.h. */
#include "input_sets.h"
#include "npy.h"
#include "tensor_file.h"

#include "base/status.h"
#include "onnx/import.h"

#include <dirent.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <strings.h>
#include <sys/stat.h>

#define MAX_SETS 100000

static int has_ext(const char *path, const char *ext) {
    size_t n = strlen(path), e = strlen(ext);
    return n >= e && !strcasecmp(path + n - e, ext);
}

static int cmp_str(const void *a, const void *b) {
    return strcmp(*(char *const *)a, *(char *const *)b);
}

/* Sorted names in dir (no dot files); want_dirs selects folders or files. */
static char **list_dir(const char *dir, int want_dirs, const char *prefix, int32_t *count) {
    *count = 0;
    DIR *d = opendir(dir);
    if (!d) return NULL;
    char **names = NULL;
    int32_t cap = 0;
    struct dirent *e;
    while ((e = readdir(d))) {
        if (e->d_name[0] == '.') continue;
        if (prefix && strncmp(e->d_name, prefix, strlen(prefix))) continue;
        char p[4200];
        snprintf(p, sizeof p, "%s/%s", dir, e->d_name);
        struct stat st;
        if (stat(p, &st) || (want_dirs ? !S_ISDIR(st.st_mode) : !S_ISREG(st.st_mode))) continue;
        if (*count == cap) {
            cap = cap ? cap * 2 : 64;
            char **nn = cap <= MAX_SETS ? realloc(names, (size_t)cap * sizeof *nn) : NULL;
            if (!nn) break;
            names = nn;
        }
        if (!(names[*count] = strdup(e->d_name))) break;
        (*count)++;
    }
    closedir(d);
    if (*count) qsort(names, (size_t)*count, sizeof *names, cmp_str);
    return names;
}

static void free_names(char **names, int32_t n) {
    for (int32_t i = 0; i < n; i++) free(names[i]);
    free(names);
}

static kiln_status read_pb_named(const char *path, kiln_tensor *t, char **name, kiln_error *err) {
    memset(t, 0, sizeof *t);
    uint8_t *buf;
    size_t len;
    kiln_status s = kiln_read_file(path, TF_MAX_TENSOR_BYTES + (1u << 20), &buf, &len, err);
    if (s) return s;
    struct kiln_import_limits lim = {.max_tensor_bytes = TF_MAX_TENSOR_BYTES};
    struct kiln_value v;
    memset(&v, 0, sizeof v);
    s = kiln_onnx_read_tensor(buf, len, path, &lim, &v, name, err);
    free(buf);
    if (s) return s;
    t->dtype = v.dtype;
    t->rank = v.rank;
    memcpy(t->dims, v.dims, sizeof t->dims);
    t->data = v.data;
    t->nbytes = v.nbytes;
    return KILN_OK;
}

static kiln_status read_image(const char *path, const kiln_tensor_info *ti,
                              const struct image_norm *norm, kiln_tensor *t, kiln_error *err) {
    if (ti->rank != 4)
        return kiln_fail(err, KILN_ERR_SHAPE, "%s: input '%s' is not a 4-D image tensor", path,
                         ti->name);
    int nhwc = !(ti->dims[1] == 3 || ti->dims[1] == 1) && (ti->dims[3] == 3 || ti->dims[3] == 1);
    int64_t C = nhwc ? ti->dims[3] : ti->dims[1];
    if (C != 1 && C != 3) C = 3;
    struct image img;
    kiln_status s = image_load(path, &img, err);
    if (s) return s;
    int64_t H = ti->dims[nhwc ? 1 : 2], W = ti->dims[nhwc ? 2 : 3];
    if (H < 1) H = img.h;
    if (W < 1) W = img.w;
    int64_t dims[4] = {1, nhwc ? H : C, nhwc ? W : H, nhwc ? C : W};
    s = tf_alloc(t, KILN_DTYPE_FLOAT, 4, dims, err);
    if (!s) image_to_tensor(&img, (int)C, H, W, nhwc, norm, t->data);
    image_free(&img);
    return s;
}

/* One file into input i, converted to the input's dtype. */
static kiln_status read_file(const char *path, const kiln_tensor_info *ti,
                             const struct image_norm *norm, kiln_tensor *t, kiln_error *err) {
    kiln_status s;
    if (image_sniff(path)) s = read_image(path, ti, norm, t, err);
    else if (has_ext(path, ".npy")) s = npy_read(path, TF_MAX_TENSOR_BYTES, t, err);
    else s = read_pb_named(path, t, NULL, err);
    if (s) return s;
    if (ti->dtype != KILN_DTYPE_UNDEFINED && t->dtype != ti->dtype) {
        if (!tf_dtype_numeric(t->dtype) || !tf_dtype_numeric(ti->dtype))
            return kiln_fail(err, KILN_ERR_SHAPE, "%s: holds %s but input '%s' is %s", path,
                             kiln_dtype_name(t->dtype), ti->name, kiln_dtype_name(ti->dtype));
        return tf_convert(t, ti->dtype, err);
    }
    return KILN_OK;
}

void input_sets_free(struct input_sets *s) {
    for (int32_t i = 0; s->sets && i < s->n_sets; i++) {
        for (int32_t k = 0; s->sets[i] && k < s->n_inputs; k++) tf_free(&s->sets[i][k]);
        free(s->sets[i]);
        free(s->labels[i]);
    }
    free(s->sets);
    free(s->labels);
    memset(s, 0, sizeof *s);
}

static kiln_status add_set(struct input_sets *s, const char *label, kiln_error *err) {
    kiln_tensor **ns = realloc(s->sets, (size_t)(s->n_sets + 1) * sizeof *ns);
    if (ns) s->sets = ns;
    char **nl = ns ? realloc(s->labels, (size_t)(s->n_sets + 1) * sizeof *nl) : NULL;
    if (nl) s->labels = nl;
    if (!ns || !nl) return kiln_fail(err, KILN_ERR_NO_MEMORY, "input sets: out of memory");
    s->sets[s->n_sets] = calloc((size_t)s->n_inputs + 1, sizeof **ns);
    s->labels[s->n_sets] = strdup(label);
    s->n_sets++;
    if (!s->sets[s->n_sets - 1] || !s->labels[s->n_sets - 1])
        return kiln_fail(err, KILN_ERR_NO_MEMORY, "input sets: out of memory");
    return KILN_OK;
}

/* test_data_set_N/input_K.pb: K-th input, or the one the tensor names */
static kiln_status load_case(const kiln_model *m, const char *dir, const struct image_norm *norm,
                             kiln_tensor *set, kiln_error *err) {
    int32_t n_in = kiln_model_n_inputs(m);
    for (int32_t k = 0; k < n_in; k++) {
        char p[4400];
        snprintf(p, sizeof p, "%s/input_%d.pb", dir, k);
        kiln_tensor t;
        char *name = NULL;
        kiln_status s = read_pb_named(p, &t, &name, err);
        if (s) return s;
        int32_t idx = k;
        for (int32_t i = 0; name && *name && i < n_in; i++) {
            kiln_tensor_info ti;
            kiln_model_input(m, i, &ti);
            if (!strcmp(ti.name, name)) idx = i;
        }
        free(name);
        if (set[idx].data) {
            tf_free(&t);
            return kiln_fail(err, KILN_ERR_BAD_MODEL, "%s: input %d given twice", dir, idx);
        }
        set[idx] = t;
        kiln_tensor_info ti;
        kiln_model_input(m, idx, &ti);
        set[idx].name = ti.name;
        if (ti.dtype != KILN_DTYPE_UNDEFINED && t.dtype != ti.dtype &&
            (s = tf_convert(&set[idx], ti.dtype, err)))
            return s;
        (void)norm;
    }
    return KILN_OK;
}

kiln_status input_sets_load(const kiln_model *m, const char *dir, int32_t max,
                            const struct image_norm *norm, struct input_sets *out,
                            kiln_error *err) {
    memset(out, 0, sizeof *out);
    out->n_inputs = kiln_model_n_inputs(m);
    if (max <= 0 || max > MAX_SETS) max = MAX_SETS;
    struct stat st;
    if (stat(dir, &st) || !S_ISDIR(st.st_mode))
        return kiln_fail(err, KILN_ERR_IO, "%s: not a folder", dir);
    kiln_status s = KILN_OK;
    int32_t n;
    char **names = list_dir(dir, 1, "test_data_set_", &n);
    if (n > 0) {
        for (int32_t i = 0; i < n && out->n_sets < max && !s; i++) {
            char p[4200];
            snprintf(p, sizeof p, "%s/%s", dir, names[i]);
            if (!(s = add_set(out, names[i], err)))
                s = load_case(m, p, norm, out->sets[out->n_sets - 1], err);
        }
        free_names(names, n);
        if (s) input_sets_free(out);
        return s;
    }
    free_names(names, n);
    /* DIR may be one test_data_set_N itself: input_K.pb are one set, and its
     * output_K.pb (reference outputs) are not inputs */
    char first[4200];
    snprintf(first, sizeof first, "%s/input_0.pb", dir);
    if (!stat(first, &st)) {
        if (!(s = add_set(out, dir, err))) s = load_case(m, dir, norm, out->sets[0], err);
        if (s) input_sets_free(out);
        return s;
    }
    names = list_dir(dir, 0, NULL, &n);
    if (out->n_inputs == 1) {
        kiln_tensor_info ti;
        kiln_model_input(m, 0, &ti);
        for (int32_t i = 0; i < n && out->n_sets < max && !s; i++) {
            char p[4200];
            snprintf(p, sizeof p, "%s/%s", dir, names[i]);
            if (!image_sniff(p) && !has_ext(names[i], ".pb") && !has_ext(names[i], ".npy"))
                continue;
            if (!(s = add_set(out, names[i], err))) {
                kiln_tensor *t = &out->sets[out->n_sets - 1][0];
                s = read_file(p, &ti, norm, t, err);
                t->name = ti.name;
            }
        }
    } else {
        /* one set: INPUT.npy / INPUT.pb for every input */
        if (!(s = add_set(out, dir, err)))
            for (int32_t k = 0; k < out->n_inputs && !s; k++) {
                kiln_tensor_info ti;
                kiln_model_input(m, k, &ti);
                char p[4400];
                snprintf(p, sizeof p, "%s/%s.npy", dir, ti.name);
                if (stat(p, &st)) snprintf(p, sizeof p, "%s/%s.pb", dir, ti.name);
                if (stat(p, &st)) {
                    s = kiln_fail(err, KILN_ERR_IO,
                                  "%s: no test_data_set_* folders, and no %s.npy or %s.pb for input "
                                  "'%s' of this %d-input model",
                                  dir, ti.name, ti.name, ti.name, out->n_inputs);
                    break;
                }
                kiln_tensor *t = &out->sets[0][k];
                s = read_file(p, &ti, norm, t, err);
                t->name = ti.name;
            }
    }
    free_names(names, n);
    if (!s && out->n_sets == 0)
        s = kiln_fail(err, KILN_ERR_IO, "%s: no inputs found (.pb, .npy, .png, .jpg or test_data_set_*)", dir);
    if (s) input_sets_free(out);
    return s;
}
