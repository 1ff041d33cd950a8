/*
 * import.c — ONNX ModelProto → kiln IR.
 *
 * The file is untrusted: every dim, count, offset and length is checked
 * before it sizes an allocation or an access, and every failure names the
 * model, the graph element and what was expected versus found.
 *
 * Ownership: initializer raw_data buffers are taken over from the parsed
 * protobuf message (no copy); typed-field data are converted into new
 * buffers. The IR owns all of them once import succeeds.
 */
#include "onnx/import.h"
#include "base/status.h"
#include "onnx.pb-c.h"
#include "ops/op.h"

#include <errno.h>
#include <fcntl.h>
#include <limits.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/stat.h>
#include <unistd.h>

#define KILN_MAX_GRAPH_DEPTH 32

struct import_ctx {
    const char *label;
    const char *dir;
    const struct kiln_import_limits *lim;
    const KilnOnnx__ModelProto *model;
    int depth;
};

kiln_status kiln_read_file(const char *path, uint64_t max_bytes, uint8_t **out, size_t *len,
                           kiln_error *err) {
    *out = NULL;
    *len = 0;
    int fd = open(path, O_RDONLY | O_CLOEXEC);
    if (fd < 0) return kiln_fail(err, KILN_ERR_IO, "%s: cannot open: %s", path, strerror(errno));
    struct stat st;
    if (fstat(fd, &st) != 0 || !S_ISREG(st.st_mode)) {
        close(fd);
        return kiln_fail(err, KILN_ERR_IO, "%s: not a regular file", path);
    }
    if ((uint64_t)st.st_size > max_bytes) {
        close(fd);
        return kiln_fail(err, KILN_ERR_LIMIT, "%s: file is %lld bytes, limit is %llu", path,
                         (long long)st.st_size, (unsigned long long)max_bytes);
    }
    size_t n = (size_t)st.st_size;
    uint8_t *buf = malloc(n ? n : 1);
    if (!buf) {
        close(fd);
        return kiln_fail(err, KILN_ERR_NO_MEMORY, "%s: cannot allocate %zu bytes", path, n);
    }
    size_t got = 0;
    while (got < n) {
        ssize_t r = read(fd, buf + got, n - got);
        if (r < 0 && errno == EINTR) continue;
        if (r <= 0) {
            free(buf);
            close(fd);
            return kiln_fail(err, KILN_ERR_IO, "%s: read failed after %zu of %zu bytes", path,
                             got, n);
        }
        got += (size_t)r;
    }
    close(fd);
    *out = buf;
    *len = n;
    return KILN_OK;
}

static bool dtype_supported(int32_t t) {
    return kiln_dtype_size((kiln_dtype)t) != 0;
}

/* Resolves an external-data location beside the model, refusing anything
 * that could leave the model's folder (absolute paths, "..", symlinks out). */
static kiln_status external_path(const struct import_ctx *c, const char *tname,
                                 const char *location, char *out, size_t out_len,
                                 kiln_error *err) {
    if (!c->dir)
        return kiln_fail(err, KILN_ERR_BAD_MODEL,
                         "%s: tensor '%s' uses external data '%s', but the model was loaded "
                         "from memory (no folder to resolve it against)",
                         c->label, tname, location);
    if (!*location || location[0] == '/' || strstr(location, "..") || strchr(location, '\\'))
        return kiln_fail(err, KILN_ERR_BAD_MODEL,
                         "%s: tensor '%s': external data location '%s' is outside the model's "
                         "folder",
                         c->label, tname, location);
    char joined[PATH_MAX], real_dir[PATH_MAX];
    if ((size_t)snprintf(joined, sizeof joined, "%s/%s", c->dir, location) >= sizeof joined)
        return kiln_fail(err, KILN_ERR_BAD_MODEL, "%s: tensor '%s': external path too long",
                         c->label, tname);
    if (!realpath(c->dir, real_dir) || !realpath(joined, out))
        return kiln_fail(err, KILN_ERR_IO, "%s: tensor '%s': external data file '%s': %s",
                         c->label, tname, joined, strerror(errno));
    size_t dl = strlen(real_dir);
    if (strncmp(out, real_dir, dl) != 0 || out[dl] != '/')
        return kiln_fail(err, KILN_ERR_BAD_MODEL,
                         "%s: tensor '%s': external data location '%s' resolves outside the "
                         "model's folder",
                         c->label, tname, location);
    (void)out_len;
    return KILN_OK;
}

static kiln_status read_external(const struct import_ctx *c, const KilnOnnx__TensorProto *t,
                                 const char *tname, size_t want, void *dst, kiln_error *err) {
    const char *location = NULL;
    uint64_t offset = 0, length = UINT64_MAX;
    for (size_t i = 0; i < t->n_external_data; i++) {
        const KilnOnnx__StringStringEntryProto *e = t->external_data[i];
        if (!e->key || !e->value) continue;
        char *end = NULL;
        if (!strcmp(e->key, "location")) location = e->value;
        else if (!strcmp(e->key, "offset")) offset = strtoull(e->value, &end, 10);
        else if (!strcmp(e->key, "length")) length = strtoull(e->value, &end, 10);
        if (end && *end)
            return kiln_fail(err, KILN_ERR_BAD_MODEL, "%s: tensor '%s': external data %s '%s' "
                             "is not a number", c->label, tname, e->key, e->value);
    }
    if (!location)
        return kiln_fail(err, KILN_ERR_BAD_MODEL,
                         "%s: tensor '%s': external data has no location", c->label, tname);
    if (length != UINT64_MAX && length != want)
        return kiln_fail(err, KILN_ERR_BAD_MODEL,
                         "%s: tensor '%s': external data length %llu, expected %zu bytes",
                         c->label, tname, (unsigned long long)length, want);
    char path[PATH_MAX];
    kiln_status s = external_path(c, tname, location, path, sizeof path, err);
    if (s) return s;
    int fd = open(path, O_RDONLY | O_CLOEXEC);
    if (fd < 0)
        return kiln_fail(err, KILN_ERR_IO, "%s: tensor '%s': cannot open '%s': %s", c->label,
                         tname, path, strerror(errno));
    struct stat st;
    uint64_t end_off;
    if (fstat(fd, &st) != 0 || kiln_add_overflow_u64(offset, want, &end_off) ||
        end_off > (uint64_t)st.st_size) {
        close(fd);
        return kiln_fail(err, KILN_ERR_BAD_MODEL,
                         "%s: tensor '%s': external data [%llu, +%zu) lies beyond the end of "
                         "'%s' (%lld bytes)",
                         c->label, tname, (unsigned long long)offset, want, location,
                         (long long)st.st_size);
    }
    size_t got = 0;
    while (got < want) {
        ssize_t r = pread(fd, (char *)dst + got, want - got, (off_t)(offset + got));
        if (r < 0 && errno == EINTR) continue;
        if (r <= 0) break;
        got += (size_t)r;
    }
    close(fd);
    if (got != want)
        return kiln_fail(err, KILN_ERR_IO, "%s: tensor '%s': short read from '%s'", c->label,
                         tname, location);
    return KILN_OK;
}

/* TensorProto → value. Takes over t->raw_data when it can. */
static kiln_status tensor_to_value(const struct import_ctx *c, KilnOnnx__TensorProto *t,
                                   const char *what, struct kiln_value *v, kiln_error *err) {
    const char *tname = t->name && *t->name ? t->name : what;
    memset(v, 0, sizeof *v);
    if (!t->has_data_type || t->data_type == KILN_DTYPE_UNDEFINED)
        return kiln_fail(err, KILN_ERR_BAD_MODEL, "%s: tensor '%s' has no data_type", c->label,
                         tname);
    if (!dtype_supported(t->data_type))
        return kiln_fail(err, KILN_ERR_UNSUPPORTED,
                         "%s: tensor '%s': data type %d is not supported (kiln reads float32, "
                         "float16, bfloat16, float64, int2-64, uint2-64, bool, float8, float4)",
                         c->label, tname, (int)t->data_type);
    if (t->n_dims > KILN_MAX_RANK)
        return kiln_fail(err, KILN_ERR_UNSUPPORTED, "%s: tensor '%s' has rank %zu, max is %d",
                         c->label, tname, t->n_dims, KILN_MAX_RANK);
    v->dtype = (kiln_dtype)t->data_type;
    v->rank = (int32_t)t->n_dims;
    uint64_t numel = 1;
    for (size_t i = 0; i < t->n_dims; i++) {
        if (t->dims[i] < 0)
            return kiln_fail(err, KILN_ERR_BAD_MODEL, "%s: tensor '%s': dim %zu is %lld",
                             c->label, tname, i, (long long)t->dims[i]);
        v->dims[i] = t->dims[i];
        if (kiln_mul_overflow_u64(numel, (uint64_t)t->dims[i], &numel))
            return kiln_fail(err, KILN_ERR_BAD_MODEL, "%s: tensor '%s': element count overflows",
                             c->label, tname);
    }
    size_t esz = kiln_dtype_size(v->dtype);
    uint64_t bytes;
    if (kiln_mul_overflow_u64(numel, esz, &bytes) || bytes > c->lim->max_tensor_bytes)
        return kiln_fail(err, KILN_ERR_LIMIT,
                         "%s: tensor '%s': %llu elements exceed the tensor size limit of %llu "
                         "bytes",
                         c->label, tname, (unsigned long long)numel,
                         (unsigned long long)c->lim->max_tensor_bytes);
    v->nbytes = (size_t)bytes;

    if (t->has_data_location && t->data_location == 1) {
        v->data = malloc(v->nbytes ? v->nbytes : 1);
        if (!v->data) return kiln_fail(err, KILN_ERR_NO_MEMORY, "%s: tensor '%s'", c->label, tname);
        kiln_status s = read_external(c, t, tname, v->nbytes, v->data, err);
        if (s) {
            free(v->data);
            v->data = NULL;
        }
        return s;
    }
    int bits = kiln_dtype_bits(v->dtype);
    if (bits < 8) { /* int4/uint4/float4 (2 per byte), int2/uint2 (4 per byte): unpack */
        size_t packed = (size_t)((numel * (uint64_t)bits + 7) / 8);
        const uint8_t *src = NULL;
        uint8_t *tmp = NULL;
        if (t->has_raw_data) {
            if (t->raw_data.len != packed)
                return kiln_fail(err, KILN_ERR_BAD_MODEL,
                                 "%s: tensor '%s': raw_data has %zu bytes, expected %zu for %llu "
                                 "%s values",
                                 c->label, tname, t->raw_data.len, packed,
                                 (unsigned long long)numel, kiln_dtype_name(v->dtype));
            src = t->raw_data.data;
        } else if (t->n_int32_data == packed || t->n_int32_data == numel) {
            tmp = malloc(t->n_int32_data ? t->n_int32_data : 1);
            if (!tmp) return kiln_fail(err, KILN_ERR_NO_MEMORY, "%s: tensor '%s'", c->label, tname);
            for (size_t i = 0; i < t->n_int32_data; i++) tmp[i] = (uint8_t)t->int32_data[i];
            src = tmp;
            if (t->n_int32_data != packed) bits = 8; /* one element per int32 */
        } else {
            return kiln_fail(err, KILN_ERR_BAD_MODEL, "%s: tensor '%s': has %zu int32_data values, "
                             "expected %zu (packed) for %llu %s values", c->label, tname,
                             t->n_int32_data, packed, (unsigned long long)numel,
                             kiln_dtype_name(v->dtype));
        }
        v->data = malloc(v->nbytes ? v->nbytes : 1);
        if (!v->data) {
            free(tmp);
            return kiln_fail(err, KILN_ERR_NO_MEMORY, "%s: tensor '%s'", c->label, tname);
        }
        int per = 8 / bits, mask = (1 << bits) - 1;
        bool sign = v->dtype == KILN_DTYPE_INT4 || v->dtype == KILN_DTYPE_INT2;
        for (uint64_t i = 0; i < numel; i++) {
            int code = bits == 8 ? src[i] : (src[i / (uint64_t)per] >> ((i % (uint64_t)per) * (uint64_t)bits)) & mask;
            if (bits == 8) code &= (1 << kiln_dtype_bits(v->dtype)) - 1;
            int width = kiln_dtype_bits(v->dtype);
            if (sign && (code & (1 << (width - 1)))) code -= 1 << width;
            ((int8_t *)v->data)[i] = (int8_t)code;
        }
        free(tmp);
        return KILN_OK;
    }
    if (t->has_raw_data) {
        if (t->raw_data.len != v->nbytes)
            return kiln_fail(err, KILN_ERR_BAD_MODEL,
                             "%s: tensor '%s': raw_data has %zu bytes, expected %zu for %s %s",
                             c->label, tname, t->raw_data.len, v->nbytes,
                             kiln_dtype_name(v->dtype), "of its dims");
        if (v->nbytes) {
            v->data = t->raw_data.data; /* take ownership: protobuf-c malloc'ed it */
            t->raw_data.data = NULL;
            t->raw_data.len = 0;
            t->has_raw_data = 0;
        } else {
            v->data = malloc(1);
        }
        return v->data ? KILN_OK : kiln_fail(err, KILN_ERR_NO_MEMORY, "%s", c->label);
    }
    /* typed fields */
    size_t have;
    switch (v->dtype) {
    case KILN_DTYPE_FLOAT: have = t->n_float_data; break;
    case KILN_DTYPE_DOUBLE: have = t->n_double_data; break;
    case KILN_DTYPE_INT64: have = t->n_int64_data; break;
    case KILN_DTYPE_UINT32: case KILN_DTYPE_UINT64: have = t->n_uint64_data; break;
    default: have = t->n_int32_data; break;
    }
    if (have != numel)
        return kiln_fail(err, KILN_ERR_BAD_MODEL,
                         "%s: tensor '%s': has %zu %s values, expected %llu", c->label, tname,
                         have, kiln_dtype_name(v->dtype), (unsigned long long)numel);
    v->data = malloc(v->nbytes ? v->nbytes : 1);
    if (!v->data) return kiln_fail(err, KILN_ERR_NO_MEMORY, "%s: tensor '%s'", c->label, tname);
    for (size_t i = 0; i < numel; i++) {
        switch (v->dtype) {
        case KILN_DTYPE_FLOAT: ((float *)v->data)[i] = t->float_data[i]; break;
        case KILN_DTYPE_DOUBLE: ((double *)v->data)[i] = t->double_data[i]; break;
        case KILN_DTYPE_INT64: ((int64_t *)v->data)[i] = t->int64_data[i]; break;
        case KILN_DTYPE_UINT32: ((uint32_t *)v->data)[i] = (uint32_t)t->uint64_data[i]; break;
        case KILN_DTYPE_UINT64: ((uint64_t *)v->data)[i] = t->uint64_data[i]; break;
        case KILN_DTYPE_INT32: ((int32_t *)v->data)[i] = t->int32_data[i]; break;
        case KILN_DTYPE_INT16: ((int16_t *)v->data)[i] = (int16_t)t->int32_data[i]; break;
        case KILN_DTYPE_UINT16: case KILN_DTYPE_FLOAT16: case KILN_DTYPE_BFLOAT16:
            ((uint16_t *)v->data)[i] = (uint16_t)t->int32_data[i];
            break;
        case KILN_DTYPE_INT8: ((int8_t *)v->data)[i] = (int8_t)t->int32_data[i]; break;
        case KILN_DTYPE_UINT8: case KILN_DTYPE_FLOAT8E4M3FN: case KILN_DTYPE_FLOAT8E4M3FNUZ:
        case KILN_DTYPE_FLOAT8E5M2: case KILN_DTYPE_FLOAT8E5M2FNUZ: case KILN_DTYPE_FLOAT8E8M0:
            ((uint8_t *)v->data)[i] = (uint8_t)t->int32_data[i];
            break;
        case KILN_DTYPE_BOOL: ((uint8_t *)v->data)[i] = t->int32_data[i] != 0; break;
        default: break;
        }
    }
    return KILN_OK;
}

static char *xstrdup(const char *s) { return strdup(s ? s : ""); }

/* Declared type of a graph input/output. Non-tensor types keep dtype
 * UNDEFINED; sessions reject them by name. */
static kiln_status read_value_info(const struct import_ctx *c, const KilnOnnx__ValueInfoProto *vi,
                                   struct kiln_value_info *v, kiln_error *err) {
    const KilnOnnx__TypeProto *tp = vi->type;
    if (tp && tp->value_case != KILN_ONNX__TYPE_PROTO__VALUE_TENSOR_TYPE) v->non_tensor = true;
    if (!tp || tp->value_case != KILN_ONNX__TYPE_PROTO__VALUE_TENSOR_TYPE) return KILN_OK;
    const KilnOnnx__TypeProto__Tensor *tt = tp->tensor_type;
    if (tt->has_elem_type && dtype_supported(tt->elem_type)) v->v.dtype = (kiln_dtype)tt->elem_type;
    if (!tt->shape) return KILN_OK;
    if (tt->shape->n_dim > KILN_MAX_RANK)
        return kiln_fail(err, KILN_ERR_UNSUPPORTED, "%s: value '%s' has rank %zu, max is %d",
                         c->label, v->name, tt->shape->n_dim, KILN_MAX_RANK);
    v->has_shape = true;
    v->v.rank = (int32_t)tt->shape->n_dim;
    for (size_t i = 0; i < tt->shape->n_dim; i++) {
        const KilnOnnx__TensorShapeProto__Dimension *d = tt->shape->dim[i];
        v->v.dims[i] = -1;
        if (d->value_case == KILN_ONNX__TENSOR_SHAPE_PROTO__DIMENSION__VALUE_DIM_VALUE) {
            if (d->dim_value < 0)
                return kiln_fail(err, KILN_ERR_BAD_MODEL, "%s: value '%s': dim %zu is %lld",
                                 c->label, v->name, i, (long long)d->dim_value);
            v->v.dims[i] = d->dim_value;
        } else if (d->value_case == KILN_ONNX__TENSOR_SHAPE_PROTO__DIMENSION__VALUE_DIM_PARAM &&
                   d->dim_param && *d->dim_param) {
            v->dim_names[i] = xstrdup(d->dim_param);
        }
    }
    return KILN_OK;
}

static int64_t opset_for(const KilnOnnx__ModelProto *m, const char *domain, bool *found) {
    const char *d = domain ? domain : "";
    if (!strcmp(d, "ai.onnx")) d = "";
    for (size_t i = 0; i < m->n_opset_import; i++) {
        const char *od = m->opset_import[i]->domain ? m->opset_import[i]->domain : "";
        if (!strcmp(od, "ai.onnx")) od = "";
        if (!strcmp(od, d)) {
            *found = true;
            return m->opset_import[i]->version;
        }
    }
    *found = false;
    return 0;
}

static bool known_domain(const char *d) {
    static const char *const known[] = {"", "ai.onnx", "ai.onnx.ml", "ai.onnx.preview.training",
                                        "ai.onnx.preview"};
    for (size_t i = 0; i < KILN_ARRAY_LEN(known); i++)
        if (!strcmp(d, known[i])) return true;
    return false;
}

static kiln_status import_graph(struct import_ctx *c, KilnOnnx__GraphProto *gp,
                                struct kiln_graph *parent, struct kiln_graph **out,
                                kiln_error *err);

/* Finds name in g, else through enclosing graphs, adding an outer reference
 * in each graph crossed. Returns -1 when undefined. */
static int32_t resolve(struct kiln_graph *g, const char *name) {
    int32_t id = kiln_graph_find(g, name);
    if (id >= 0 || !g->parent) return id;
    int32_t pid = resolve(g->parent, name);
    if (pid < 0) return -1;
    id = kiln_graph_add_value(g, name);
    if (id < 0) return -1;
    struct kiln_value_info *pv = &g->parent->values[pid];
    g->values[id].outer = pid;
    g->values[id].v.dtype = pv->v.dtype;
    return id;
}

static kiln_status import_attr(struct import_ctx *c, struct kiln_graph *g, const char *node_name,
                               KilnOnnx__AttributeProto *ap, struct kiln_attr *a,
                               kiln_error *err) {
    a->name = xstrdup(ap->name);
    if (!a->name) return kiln_fail(err, KILN_ERR_NO_MEMORY, "%s", c->label);
    if (ap->ref_attr_name)
        return kiln_fail(err, KILN_ERR_UNSUPPORTED,
                         "%s: node '%s': attribute '%s' refers to a function attribute",
                         c->label, node_name, a->name);
    int32_t type = ap->has_type ? ap->type : 0;
    if (!type) { /* IR < 3 files may omit the type; infer it from the set field */
        if (ap->g) type = KILN_ATTR_GRAPH;
        else if (ap->t) type = KILN_ATTR_TENSOR;
        else if (ap->n_ints) type = KILN_ATTR_INTS;
        else if (ap->n_floats) type = KILN_ATTR_FLOATS;
        else if (ap->n_strings) type = KILN_ATTR_STRINGS;
        else if (ap->has_s) type = KILN_ATTR_STRING;
        else if (ap->has_f) type = KILN_ATTR_FLOAT;
        else type = KILN_ATTR_INT;
    }
    a->type = (kiln_attr_type)type;
    switch (type) {
    case KILN_ATTR_FLOAT: a->f = ap->f; break;
    case KILN_ATTR_INT: a->i = ap->i; break;
    case KILN_ATTR_STRING:
        a->s = malloc(ap->s.len + 1);
        if (!a->s) return kiln_fail(err, KILN_ERR_NO_MEMORY, "%s", c->label);
        if (ap->s.len) memcpy(a->s, ap->s.data, ap->s.len);
        a->s[ap->s.len] = '\0';
        a->s_len = ap->s.len;
        break;
    case KILN_ATTR_TENSOR:
        if (!ap->t)
            return kiln_fail(err, KILN_ERR_BAD_MODEL, "%s: node '%s': attribute '%s' has no tensor",
                             c->label, node_name, a->name);
        return tensor_to_value(c, ap->t, a->name, &a->t, err);
    case KILN_ATTR_GRAPH:
        if (!ap->g)
            return kiln_fail(err, KILN_ERR_BAD_MODEL, "%s: node '%s': attribute '%s' has no graph",
                             c->label, node_name, a->name);
        return import_graph(c, ap->g, g, &a->g, err);
    case KILN_ATTR_FLOATS:
        a->n = (int64_t)ap->n_floats;
        a->floats = malloc(ap->n_floats ? ap->n_floats * sizeof(float) : 1);
        if (!a->floats) return kiln_fail(err, KILN_ERR_NO_MEMORY, "%s", c->label);
        if (ap->n_floats) memcpy(a->floats, ap->floats, ap->n_floats * sizeof(float));
        break;
    case KILN_ATTR_INTS:
        a->n = (int64_t)ap->n_ints;
        a->ints = malloc(ap->n_ints ? ap->n_ints * sizeof(int64_t) : 1);
        if (!a->ints) return kiln_fail(err, KILN_ERR_NO_MEMORY, "%s", c->label);
        if (ap->n_ints) memcpy(a->ints, ap->ints, ap->n_ints * sizeof(int64_t));
        break;
    case KILN_ATTR_STRINGS:
        a->strings = calloc(ap->n_strings ? ap->n_strings : 1, sizeof(char *));
        if (!a->strings) return kiln_fail(err, KILN_ERR_NO_MEMORY, "%s", c->label);
        a->n = (int64_t)ap->n_strings;
        for (size_t i = 0; i < ap->n_strings; i++) {
            a->strings[i] = malloc(ap->strings[i].len + 1);
            if (!a->strings[i]) return kiln_fail(err, KILN_ERR_NO_MEMORY, "%s", c->label);
            if (ap->strings[i].len) memcpy(a->strings[i], ap->strings[i].data, ap->strings[i].len);
            a->strings[i][ap->strings[i].len] = '\0';
        }
        break;
    default:
        /* tensors/graphs/sparse/type-proto lists: keep the kind so an op can
         * reject it by name; no op kiln implements reads them. */
        break;
    }
    return KILN_OK;
}

/* A Constant node whose value is a plain tensor (or scalar/list) becomes a
 * constant value; returns false (leaving the node to the op) otherwise. */
static bool constant_attr_value(const struct kiln_attr *a, struct kiln_value *v) {
    memset(v, 0, sizeof *v);
    if (!strcmp(a->name, "value") && a->type == KILN_ATTR_TENSOR) {
        *v = a->t;
        return true;
    }
    size_t esz;
    const void *src;
    if (!strcmp(a->name, "value_float") && a->type == KILN_ATTR_FLOAT) {
        v->dtype = KILN_DTYPE_FLOAT, esz = 4, src = &a->f;
    } else if (!strcmp(a->name, "value_int") && a->type == KILN_ATTR_INT) {
        v->dtype = KILN_DTYPE_INT64, esz = 8, src = &a->i;
    } else if (!strcmp(a->name, "value_floats") && a->type == KILN_ATTR_FLOATS) {
        v->dtype = KILN_DTYPE_FLOAT, esz = 4, src = a->floats, v->rank = 1, v->dims[0] = a->n;
    } else if (!strcmp(a->name, "value_ints") && a->type == KILN_ATTR_INTS) {
        v->dtype = KILN_DTYPE_INT64, esz = 8, src = a->ints, v->rank = 1, v->dims[0] = a->n;
    } else {
        return false;
    }
    v->nbytes = esz * (size_t)(v->rank ? v->dims[0] : 1);
    v->data = malloc(v->nbytes ? v->nbytes : 1);
    if (!v->data) return false;
    if (v->nbytes) memcpy(v->data, src, v->nbytes);
    return true;
}

static kiln_status import_node(struct import_ctx *c, struct kiln_graph *g, KilnOnnx__NodeProto *np,
                               size_t index, kiln_error *err) {
    char auto_name[96];
    const char *op_type = np->op_type ? np->op_type : "";
    const char *nname = np->name && *np->name ? np->name : NULL;
    if (!nname) {
        snprintf(auto_name, sizeof auto_name, "%.48s_%zu", op_type, index);
        nname = auto_name;
    }
    if (!*op_type)
        return kiln_fail(err, KILN_ERR_BAD_MODEL, "%s: node '%s' has no op_type", c->label, nname);
    const char *domain = np->domain ? np->domain : "";
    if (!known_domain(domain)) {
        bool is_function = false;
        for (size_t i = 0; i < c->model->n_functions; i++) {
            const KilnOnnx__FunctionProto *f = c->model->functions[i];
            if (f->domain && !strcmp(f->domain, domain) && f->name && !strcmp(f->name, op_type))
                is_function = true;
        }
        if (!is_function)
            return kiln_fail(err, KILN_ERR_UNSUPPORTED,
                             "%s: node '%s' (%s) uses unknown opset domain '%s'", c->label, nname,
                             op_type, domain);
    }
    bool found;
    int64_t opset = opset_for(c->model, domain, &found);
    if (!found)
        return kiln_fail(err, KILN_ERR_BAD_MODEL,
                         "%s: node '%s' (%s) uses domain '%s', which the model does not import",
                         c->label, nname, op_type, *domain ? domain : "ai.onnx");
    if (np->n_input > 4096 || np->n_output > 4096)
        return kiln_fail(err, KILN_ERR_LIMIT, "%s: node '%s' has %zu inputs and %zu outputs",
                         c->label, nname, np->n_input, np->n_output);

    struct kiln_node *n = kiln_graph_add_node(g);
    if (!n) return kiln_fail(err, KILN_ERR_NO_MEMORY, "%s", c->label);
    n->name = xstrdup(nname);
    n->op_type = xstrdup(op_type);
    n->domain = xstrdup(domain);
    n->opset = opset;
    n->inputs = malloc((np->n_input ? np->n_input : 1) * sizeof(int32_t));
    n->outputs = malloc((np->n_output ? np->n_output : 1) * sizeof(int32_t));
    n->attrs = calloc(np->n_attribute ? np->n_attribute : 1, sizeof(struct kiln_attr));
    if (!n->name || !n->op_type || !n->domain || !n->inputs || !n->outputs || !n->attrs)
        return kiln_fail(err, KILN_ERR_NO_MEMORY, "%s", c->label);
    int32_t node_index = n->index;

    /* inputs resolve before outputs are defined: no self-loops */
    for (size_t i = 0; i < np->n_input; i++) {
        const char *in = np->input[i];
        int32_t id = -1;
        if (in && *in) {
            id = resolve(g, in);
            if (id < 0)
                return kiln_fail(err, KILN_ERR_BAD_MODEL,
                                 "%s: node '%s' (%s) input %zu '%s' is not defined before use "
                                 "(undefined name, or the graph is not topologically sorted)",
                                 c->label, nname, op_type, i, in);
        }
        g->nodes[node_index].inputs[i] = id;
        g->nodes[node_index].n_inputs = (int32_t)i + 1;
    }
    /* trailing omitted inputs do not count */
    n = &g->nodes[node_index];
    while (n->n_inputs > 0 && n->inputs[n->n_inputs - 1] < 0) n->n_inputs--;

    for (size_t i = 0; i < np->n_attribute; i++) {
        kiln_status s = import_attr(c, g, nname, np->attribute[i], &g->nodes[node_index].attrs[i], err);
        g->nodes[node_index].n_attrs = (int32_t)i + 1;
        /* name the outermost node only: a deep chain of prefixes would push
         * the actual reason out of the message */
        if (s) return err && strstr(err->msg, "node '") ? s : kiln_fail_prefix(err, s, "node '%s' (%s)", nname, op_type);
    }
    n = &g->nodes[node_index]; /* subgraph import may not move g->nodes, but be safe */

    bool is_const = !strcmp(op_type, "Constant") && !*domain && np->n_output == 1 &&
                    n->n_attrs == 1 && n->n_inputs == 0;
    struct kiln_value cv;
    if (is_const && constant_attr_value(&n->attrs[0], &cv)) {
        /* fold into a constant: the value takes the tensor from the attribute */
        if (cv.data == n->attrs[0].t.data) memset(&n->attrs[0].t, 0, sizeof n->attrs[0].t);
        const char *out = np->output[0] ? np->output[0] : "";
        if (kiln_graph_find(g, out) >= 0) {
            free(cv.data);
            return kiln_fail(err, KILN_ERR_BAD_MODEL, "%s: value '%s' is defined twice", c->label,
                             out);
        }
        int32_t id = kiln_graph_add_value(g, out);
        if (id < 0) {
            free(cv.data);
            return kiln_fail(err, KILN_ERR_NO_MEMORY, "%s", c->label);
        }
        g->values[id].v = cv;
        g->values[id].is_const = true;
        g->values[id].has_shape = true;
        /* drop the node: free its storage and pop it */
        struct kiln_node *dn = &g->nodes[node_index];
        free(dn->name); free(dn->op_type); free(dn->domain); free(dn->inputs); free(dn->outputs);
        for (int32_t a = 0; a < dn->n_attrs; a++) {
            free(dn->attrs[a].name); free(dn->attrs[a].s); free(dn->attrs[a].t.data);
            free(dn->attrs[a].floats); free(dn->attrs[a].ints);
        }
        free(dn->attrs);
        g->n_nodes--;
        return KILN_OK;
    }

    for (size_t i = 0; i < np->n_output; i++) {
        const char *out = np->output[i];
        int32_t id = -1;
        if (out && *out) {
            if (kiln_graph_find(g, out) >= 0)
                return kiln_fail(err, KILN_ERR_BAD_MODEL,
                                 "%s: node '%s' (%s) output %zu '%s' is already defined", c->label,
                                 nname, op_type, i, out);
            id = kiln_graph_add_value(g, out);
            if (id < 0) return kiln_fail(err, KILN_ERR_NO_MEMORY, "%s", c->label);
            g->values[id].producer = node_index;
        }
        g->nodes[node_index].outputs[i] = id;
        g->nodes[node_index].n_outputs = (int32_t)i + 1;
    }
    n = &g->nodes[node_index];
    n->op = kiln_op_lookup(domain, op_type, opset);
    return KILN_OK;
}

static kiln_status import_graph(struct import_ctx *c, KilnOnnx__GraphProto *gp,
                                struct kiln_graph *parent, struct kiln_graph **out,
                                kiln_error *err) {
    *out = NULL;
    if (++c->depth > KILN_MAX_GRAPH_DEPTH) {
        c->depth--;
        return kiln_fail(err, KILN_ERR_LIMIT, "%s: subgraphs nested deeper than %d", c->label,
                         KILN_MAX_GRAPH_DEPTH);
    }
    kiln_status s = KILN_OK;
    struct kiln_graph *g = kiln_graph_new(gp->name, parent);
    if (!g) {
        c->depth--;
        return kiln_fail(err, KILN_ERR_NO_MEMORY, "%s", c->label);
    }
    if (gp->n_sparse_initializer) {
        s = kiln_fail(err, KILN_ERR_UNSUPPORTED,
                      "%s: graph '%s' has sparse_initializer '%s'; sparse tensors are not "
                      "supported",
                      c->label, g->name,
                      gp->sparse_initializer[0]->values && gp->sparse_initializer[0]->values->name
                          ? gp->sparse_initializer[0]->values->name
                          : "?");
        goto fail;
    }
    for (size_t i = 0; i < gp->n_initializer; i++) {
        KilnOnnx__TensorProto *t = gp->initializer[i];
        const char *name = t->name ? t->name : "";
        if (!*name) {
            s = kiln_fail(err, KILN_ERR_BAD_MODEL, "%s: initializer %zu has no name", c->label, i);
            goto fail;
        }
        if (kiln_graph_find(g, name) >= 0) {
            s = kiln_fail(err, KILN_ERR_BAD_MODEL, "%s: initializer '%s' is defined twice",
                          c->label, name);
            goto fail;
        }
        int32_t id = kiln_graph_add_value(g, name);
        if (id < 0) {
            s = kiln_fail(err, KILN_ERR_NO_MEMORY, "%s", c->label);
            goto fail;
        }
        g->values[id].is_const = true;
        g->values[id].has_shape = true;
        s = tensor_to_value(c, t, name, &g->values[id].v, err);
        if (s) goto fail;
    }
    g->inputs = malloc((gp->n_input ? gp->n_input : 1) * sizeof(int32_t));
    g->outputs = malloc((gp->n_output ? gp->n_output : 1) * sizeof(int32_t));
    if (!g->inputs || !g->outputs) {
        s = kiln_fail(err, KILN_ERR_NO_MEMORY, "%s", c->label);
        goto fail;
    }
    for (size_t i = 0; i < gp->n_input; i++) {
        const KilnOnnx__ValueInfoProto *vi = gp->input[i];
        const char *name = vi->name ? vi->name : "";
        /* IR < 4: initializers are listed as inputs too; they stay constants */
        int32_t prev = kiln_graph_find(g, name);
        if (prev >= 0 && g->values[prev].is_const) continue;
        if (prev >= 0) {
            s = kiln_fail(err, KILN_ERR_BAD_MODEL, "%s: graph '%s' input '%s' is declared twice",
                          c->label, g->name, name);
            goto fail;
        }
        int32_t id = kiln_graph_add_value(g, name);
        if (id < 0) {
            s = kiln_fail(err, KILN_ERR_NO_MEMORY, "%s", c->label);
            goto fail;
        }
        g->values[id].is_input = true;
        s = read_value_info(c, vi, &g->values[id], err);
        if (s) goto fail;
        g->inputs[g->n_inputs++] = id;
    }
    for (size_t i = 0; i < gp->n_node; i++) {
        s = import_node(c, g, gp->node[i], i, err);
        if (s) goto fail;
    }
    for (size_t i = 0; i < gp->n_output; i++) {
        const char *name = gp->output[i]->name ? gp->output[i]->name : "";
        int32_t id = resolve(g, name);
        if (id < 0) {
            s = kiln_fail(err, KILN_ERR_BAD_MODEL,
                          "%s: graph '%s' output '%s' is not produced by any node", c->label,
                          g->name, name);
            goto fail;
        }
        g->outputs[g->n_outputs++] = id;
        /* declared output type: keep dims/names for describe() when no node sets them */
        struct kiln_value_info tmp = {.name = g->values[id].name};
        s = read_value_info(c, gp->output[i], &tmp, err);
        if (s) goto fail;
        g->values[id].non_tensor |= tmp.non_tensor;
        if (!g->values[id].is_const && !g->values[id].is_input && !g->values[id].has_shape) {
            g->values[id].v.dtype = tmp.v.dtype;
            g->values[id].v.rank = tmp.v.rank;
            memcpy(g->values[id].v.dims, tmp.v.dims, sizeof tmp.v.dims);
            g->values[id].has_shape = tmp.has_shape;
            memcpy(g->values[id].dim_names, tmp.dim_names, sizeof tmp.dim_names);
        } else {
            for (int r = 0; r < KILN_MAX_RANK; r++) free(tmp.dim_names[r]);
        }
        if (!g->values[id].v.dtype) g->values[id].v.dtype = tmp.v.dtype;
    }
    /* consumer counts drive liveness in the planner */
    kiln_graph_recount(g);
    c->depth--;
    *out = g;
    return KILN_OK;
fail:
    c->depth--;
    kiln_graph_free(g);
    return s;
}

kiln_status kiln_onnx_import(const uint8_t *buf, size_t len, const char *dir, const char *label,
                             const struct kiln_import_limits *lim, struct kiln_onnx_model *out,
                             kiln_error *err) {
    memset(out, 0, sizeof *out);
    if (!kiln_pb_nesting_ok(buf, len, KILN_PB_ROOT_MODEL, KILN_PB_MAX_DEPTH))
        return kiln_fail(err, KILN_ERR_LIMIT,
                         "%s: messages nested deeper than %d levels (graphs within graphs or "
                         "types within types)",
                         label, KILN_PB_MAX_DEPTH);
    KilnOnnx__ModelProto *mp = kiln_onnx__model_proto__unpack(NULL, len, buf);
    if (!mp)
        return kiln_fail(err, KILN_ERR_BAD_MODEL,
                         "%s: not a valid ONNX model (protobuf parse failed: truncated or "
                         "corrupt file, %zu bytes)",
                         label, len);
    kiln_status s = KILN_OK;
    if (!mp->graph) {
        s = kiln_fail(err, KILN_ERR_BAD_MODEL, "%s: model has no graph", label);
        goto done;
    }
    if (mp->n_opset_import == 0 && mp->has_ir_version && mp->ir_version >= 3) {
        s = kiln_fail(err, KILN_ERR_BAD_MODEL, "%s: model imports no opset", label);
        goto done;
    }
    for (size_t i = 0; i < mp->n_opset_import; i++) {
        const char *d = mp->opset_import[i]->domain ? mp->opset_import[i]->domain : "";
        int64_t v = mp->opset_import[i]->version;
        if (!*d || !strcmp(d, "ai.onnx")) {
            if (v < 1 || v > 28) {
                s = kiln_fail(err, KILN_ERR_UNSUPPORTED,
                              "%s: default-domain opset %lld is not supported (1-28)", label,
                              (long long)v);
                goto done;
            }
        }
    }
    struct import_ctx c = {.label = label, .dir = dir, .lim = lim, .model = mp};
    s = import_graph(&c, mp->graph, NULL, &out->graph, err);
    if (s) goto done;
    out->ir_version = mp->has_ir_version ? mp->ir_version : 0;
    out->producer = xstrdup(mp->producer_name);
    out->opsets = calloc(mp->n_opset_import ? mp->n_opset_import : 1, sizeof *out->opsets);
    if (!out->opsets || !out->producer) {
        s = kiln_fail(err, KILN_ERR_NO_MEMORY, "%s", label);
        goto done;
    }
    for (size_t i = 0; i < mp->n_opset_import; i++) {
        out->opsets[i].domain = xstrdup(mp->opset_import[i]->domain);
        out->opsets[i].version = mp->opset_import[i]->version;
        out->n_opsets++;
    }
done:
    kiln_onnx__model_proto__free_unpacked(mp, NULL);
    if (s) kiln_onnx_model_clear(out);
    return s;
}

void kiln_onnx_model_clear(struct kiln_onnx_model *m) {
    kiln_graph_free(m->graph);
    for (int32_t i = 0; i < m->n_opsets; i++) free(m->opsets[i].domain);
    free(m->opsets);
    free(m->producer);
    memset(m, 0, sizeof *m);
}

kiln_status kiln_onnx_read_tensor(const uint8_t *buf, size_t len, const char *label,
                                  const struct kiln_import_limits *lim, struct kiln_value *v,
                                  char **name, kiln_error *err) {
    if (name) *name = NULL;
    KilnOnnx__TensorProto *t = kiln_onnx__tensor_proto__unpack(NULL, len, buf);
    if (!t)
        return kiln_fail(err, KILN_ERR_BAD_MODEL, "%s: not a valid TensorProto (parse failed)",
                         label);
    struct import_ctx c = {.label = label, .lim = lim};
    kiln_status s = tensor_to_value(&c, t, "tensor", v, err);
    if (!s && name) {
        *name = xstrdup(t->name);
        if (!*name) s = kiln_fail(err, KILN_ERR_NO_MEMORY, "%s", label);
    }
    if (s) {
        free(v->data);
        v->data = NULL;
    }
    kiln_onnx__tensor_proto__free_unpacked(t, NULL);
    return s;
}
