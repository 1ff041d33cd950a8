/* artifact.h — the .kiln compiled-plan file format (see docs/kiln-format.md). */
#ifndef KILN_PLAN_ARTIFACT_H
#define KILN_PLAN_ARTIFACT_H

#include "ir/graph.h"

#include <stddef.h>

#define KILN_ARTIFACT_MAGIC "KILNPLAN"
#define KILN_ARTIFACT_VERSION 4u   /* 2: nodes carry sum_input; 3: pre-packed weights section;
                                      4: stored plans per batch size */
#define KILN_ARTIFACT_MAX_BATCHES 16

/* Fixed-size header at offset 0, little-endian. */
struct kiln_artifact_header {
    char     magic[8];             /* "KILNPLAN" */
    uint32_t format_version;
    uint32_t endian_check;         /* 0x01020304 as written */
    uint64_t header_size;          /* sizeof this struct */
    uint64_t file_size;
    uint64_t meta_off, meta_len;   /* serialized optimized graph */
    uint64_t weights_off;          /* page-aligned */
    uint64_t weights_len;
    uint8_t  source_sha256[32];    /* of the .onnx it was compiled from */
    char     cpu_features[128];    /* kiln_cpu_features_str() of the compiling machine */
    char     precision[16];        /* "fp32", "bf16", "int8" */
    uint32_t n_batch_sizes;
    int32_t  batch_sizes[KILN_ARTIFACT_MAX_BATCHES];
    uint32_t n_packed;             /* pre-packed weight blocks */
    uint64_t packed_off;           /* page-aligned; 0 when n_packed is 0 */
    uint64_t packed_len;
    /* since version 4 (a version 3 header ends here) */
    uint32_t n_plans;              /* stored plans, one per compiled input shape */
    uint32_t reserved;
    uint64_t plans_off;            /* 64-byte aligned; 0 when n_plans is 0 */
    uint64_t plans_len;
};
#define KILN_ARTIFACT_V3_HEADER_SIZE offsetof(struct kiln_artifact_header, n_plans)
#define KILN_ARTIFACT_MAX_PLANS 64

struct kiln_plan;
struct kiln_stored_plan;

/* One weight tensor pre-packed into a kernel's layout. In the file: an index
 * of these (value id, key length, bytes, data offset, key offset; offsets
 * relative to the packed section), the keys, then page-aligned data blocks. */
struct kiln_artifact_packed {
    int32_t     value;             /* constant in the main graph it was packed from */
    const void *key;               /* how it was packed (the kernel's layout descriptor) */
    size_t      key_len;
    const void *data;
    size_t      bytes;
};

struct kiln_artifact_info {
    const char *precision;
    int32_t n_batch_sizes;
    const int32_t *batch_sizes;
    int32_t n_packed;
    const struct kiln_artifact_packed *packed;
    int32_t n_plans;               /* plans to store (static ones; dynamic plans are skipped) */
    const struct kiln_plan *const *plans;
    const int32_t *plan_batches;
};

struct kiln_artifact {
    struct kiln_artifact_header header;
    struct kiln_graph *graph;      /* constants borrow from the mapping */
    int32_t n_packed;
    struct kiln_artifact_packed *packed;   /* point into the mapping; array owned */
    int32_t n_plans;
    struct kiln_stored_plan *plans;        /* checked against graph; folded data in the mapping */
    void  *map;
    size_t map_len;
};

kiln_status kiln_artifact_write(const struct kiln_graph *g, const char *source_path,
                                const struct kiln_artifact_info *info, const char *out_path,
                                kiln_error *err);
bool        kiln_artifact_is_plan(const uint8_t *data, size_t len);
kiln_status kiln_artifact_map(const char *path, struct kiln_artifact *out, kiln_error *err);
/* Parses a plan held in memory; constants point into `data`, which must outlive the graph. */
kiln_status kiln_artifact_parse(const uint8_t *data, size_t len, const char *label,
                                struct kiln_artifact *out, kiln_error *err);
void        kiln_artifact_unmap(struct kiln_artifact *a);

#endif
