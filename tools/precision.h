/* precision.h — `--precision` of kiln bench and kiln run: an .onnx is
 * compiled at that precision on the fly, by the same code as kiln compile. */
#ifndef KILN_TOOLS_PRECISION_H
#define KILN_TOOLS_PRECISION_H

#include <stddef.h>

/* Checks the --precision / --calibrate pair for `tool` (fp32, bf16 or int8;
 * int8 needs a calibration dir). Prints the problem and returns -1. */
int tf_precision_check(const char *tool, const char *model, const char *precision, const char *calib_dir);

/* Compiles model (.onnx) at precision into a temporary .kiln by running
 * `kiln compile` (this executable) and writes that file's path to out. The
 * caller loads it and removes it (tf_precision_done). extra_args (NULL or
 * NULL-terminated) go to kiln compile too, e.g. the image normalization the
 * calibration images need. fp32 / NULL: nothing to
 * do, out gets model. Returns 0 or -1 after printing why. */
int tf_precision_compile(const char *tool, const char *model, const char *precision, const char *calib_dir,
                         const char *const *extra_args, char *out, size_t out_size);

/* Removes the temporary file made by tf_precision_compile, if any (a loaded
 * .kiln stays mapped after its file is gone). */
void tf_precision_done(const char *model, const char *compiled);

#endif
