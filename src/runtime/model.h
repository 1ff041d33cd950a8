/* model.h — the loaded, immutable model shared by sessions. */
#ifndef KILN_RUNTIME_MODEL_H
#define KILN_RUNTIME_MODEL_H

#include "kiln.h"
#include "onnx/import.h"
#include "plan/artifact.h"

struct kiln_model {
    struct kiln_onnx_model onnx;   /* graph owns every weight: one copy per model */
    char  *label;                  /* path or caller label, for messages */
    kiln_load_options opts;
    int64_t opset;                 /* default-domain opset */
    struct kiln_artifact art;      /* set when loaded from a .kiln plan (mmap) */
    struct kiln_wcache *wcache;    /* packed weights shared by all sessions */
    bool   from_plan;
    bool   plans_foreign;          /* the .kiln was compiled for other CPU features: its
                                      stored plans are not used (re-planned at first run) */
    char  *warning;                /* kiln_model_warning */
    bool   from_buffer;            /* loaded from memory: no source file to hash */
};

/* kiln_model_save_plan recording `precision` ("fp32", "int8", "bf16") in the
 * header: for `kiln compile --precision`, which rewrites the graph first. */
kiln_status kiln_model_save_plan_precision(const kiln_model *m, const char *path,
                                           const int32_t *batch_sizes, int32_t n_batch_sizes,
                                           const char *precision, kiln_error *err);

/* What kiln_model_save_plan_ex did, and how to follow it. */
struct kiln_save_plan_opts {
    const char *precision;         /* "fp32" (NULL), "int8", "bf16" */
    /* called before each batch size is planned (done of total), and once at the end */
    void (*progress)(void *user, int32_t done, int32_t total);
    void *user;
    /* out: the plans stored, one per distinct input shape */
    int32_t  n_planned;
    int32_t  batch[KILN_ARTIFACT_MAX_PLANS];
    uint64_t arena_bytes[KILN_ARTIFACT_MAX_PLANS];
    double   flops[KILN_ARTIFACT_MAX_PLANS];
};
kiln_status kiln_model_save_plan_ex(const kiln_model *m, const char *path, const int32_t *batch_sizes,
                                    int32_t n_batch_sizes, struct kiln_save_plan_opts *o,
                                    kiln_error *err);

#endif
