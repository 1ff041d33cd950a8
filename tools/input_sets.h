/* input_sets.h — sets of model inputs read from a folder, for `kiln compare`
 * and `kiln compile --calibrate`. A folder holds either
 *   test_data_set_N folders      one set each, from input_K.pb (K-th input, or the
 *                                input the tensor is named after), or
 *   files                        .pb (TensorProto), .npy or .png/.jpg images;
 *                                one set per file for a one-input model; for a
 *                                model with several inputs, files named after
 *                                the inputs (INPUT.npy, ...) form one set.
 * Sets are sorted by file or folder name. Images are resized to the input's
 * declared H x W and normalized with `norm`. */
#ifndef KILN_TOOLS_INPUT_SETS_H
#define KILN_TOOLS_INPUT_SETS_H

#include "image.h"
#include "kiln.h"

struct input_sets {
    int32_t n_sets, n_inputs;
    kiln_tensor **sets;      /* sets[s][i] binds input i (names point into the model) */
    char **labels;           /* file or folder name of each set */
};

/* Loads at most max sets (max <= 0: all). Returns KILN_OK with n_sets >= 1,
 * or an error naming the file. */
kiln_status input_sets_load(const kiln_model *m, const char *dir, int32_t max,
                            const struct image_norm *norm, struct input_sets *out,
                            kiln_error *err);
void input_sets_free(struct input_sets *s);

#endif
