/* quantize.h — compile-time precision changes (docs/precision.md).
 *
 * int8 post-training static quantization runs in two steps:
 *   kiln_calibrate      runs the float model over calibration inputs and
 *                       records the range of every activation that feeds a
 *                       quantizable Conv / Gemm / MatMul;
 *   kiln_quantize_int8  rewrites those nodes into kiln.QConv / kiln.QMatMul
 *                       (ops/quant.c): int8 weights with one symmetric scale
 *                       per output channel, u8 activations with the
 *                       calibrated per-tensor scale and zero point.
 * kiln_convert_bf16 rewrites the same nodes into kiln.Bf16Conv /
 * kiln.Bf16MatMul with bf16 weights.
 */
#ifndef KILN_PASSES_QUANTIZE_H
#define KILN_PASSES_QUANTIZE_H

#include "ir/graph.h"

struct kiln_model;

enum kiln_calibrator {
    KILN_CALIB_MINMAX = 0,
    KILN_CALIB_PERCENTILE = 1,   /* clip each side at a percentile of a histogram */
};

struct kiln_calib_options {
    int32_t method;              /* enum kiln_calibrator */
    double  percentile;          /* e.g. 99.99 (percentile only) */
    int32_t n_threads;           /* 0: all cores */
    /* called before each calibration run (may be NULL): for a progress line */
    void  (*progress)(void *user, const char *stage, int32_t done, int32_t total);
    void   *progress_user;
};

/* Observed float range of one value; lo > hi when it was never observed.
 * mean: the mean of each channel (axis 1 for a convolution's input, the last
 * axis for a Gemm/MatMul's), n_mean values, for bias correction. */
struct kiln_calib_range {
    float lo, hi;
    int64_t n_mean;
    float *mean;
};

/* Frees what kiln_calibrate returned (n_values = the graph's value count then). */
void kiln_calib_free(struct kiln_calib_range *r, int32_t n_values);

/* True for a node the rewrites handle: Conv with constant float weights (and
 * bias), Gemm (transA 0, alpha 1, beta 1, constant 2-D B, constant bias of N
 * values or none), MatMul with a constant 2-D float B. */
bool kiln_quant_candidate(const struct kiln_graph *g, const struct kiln_node *n);

/* Runs m (a float model, optimized) once per input set: sets[s] holds
 * kiln_model_n_inputs(m) tensors in input order. *ranges (malloc'ed, one per
 * value id of m's graph; free with kiln_calib_free) receives the range and
 * channel means of input 0 of every candidate.
 * The model's graph is borrowed while it runs and left as it was. */
kiln_status kiln_calibrate(struct kiln_model *m, const kiln_tensor *const *sets, int32_t n_sets,
                           const struct kiln_calib_options *o, struct kiln_calib_range **ranges,
                           kiln_error *err);

struct kiln_quant_stats {
    int32_t convs, matmuls;      /* nodes rewritten */
    int32_t skipped;             /* candidates left in float (no range observed, non-float input) */
    int32_t excluded;            /* candidates kept in float on request (exclude, skip_depthwise) */
};

struct kiln_quant_options {
    int32_t weight_max;          /* 127, or 64 for CPUs without VNNI (see backend/dnnl_qconv.h) */
    int32_t act_max;             /* activations in [0, act_max]: 255 (0 means 255), or 127 */
    int32_t matmuls;             /* 1: also Gemm / MatMul (0: convolutions only) */
    int32_t skip_depthwise;      /* 1: depthwise convolutions stay float */
    const char *const *exclude;  /* node names that stay float (NULL-terminated), or NULL */
    int32_t no_bias_correction;  /* 1: keep the float bias as is (see quantize.c) */
    /* kiln_int8_choose: called before each variant it evaluates (may be NULL) */
    void  (*progress)(void *user, const char *stage, int32_t done, int32_t total);
    void   *progress_user;
};

/* Mixed precision: which candidates to keep in float so that the int8
 * model's outputs stay within cosine `target` of m's on the given sets (a few
 * calibration sets). When quantizing everything falls short, measures each
 * candidate alone (1 - cosine when only it is int8), keeps the most harmful
 * ones in float until the sum of the rest fits, and checks again.
 * *exclude receives a NULL-terminated, malloc'ed list of node names (free with
 * kiln_names_free), *cosine the worst cosine of the final choice; *n_tried
 * counts the models evaluated. m's graph is not modified. */
kiln_status kiln_int8_choose(struct kiln_model *m, const struct kiln_calib_range *ranges,
                             const struct kiln_quant_options *o, const kiln_tensor *const *sets,
                             int32_t n_sets, double target, char ***exclude, double *cosine,
                             int32_t *n_tried, kiln_error *err);
void kiln_names_free(char **names);

kiln_status kiln_quantize_int8(struct kiln_graph *g, const struct kiln_calib_range *ranges,
                               const struct kiln_quant_options *o, struct kiln_quant_stats *st,
                               kiln_error *err);
kiln_status kiln_convert_bf16(struct kiln_graph *g, struct kiln_quant_stats *st, kiln_error *err);

#endif
