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
    bool   from_buffer;            /* loaded from memory: no source file to hash */
};

/* kiln_model_save_plan recording `precision` ("fp32", "int8", "bf16") in the
 * header: for `kiln compile --precision`, which rewrites the graph first. */
kiln_status kiln_model_save_plan_precision(const kiln_model *m, const char *path,
                                           const int32_t *batch_sizes, int32_t n_batch_sizes,
                                           const char *precision, kiln_error *err);

#endif
