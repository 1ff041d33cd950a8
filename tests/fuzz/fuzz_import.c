/*
 * fuzz_import.c — libFuzzer target: any byte string given to
 * kiln_model_load_buffer must give a model or a clear error, never a crash or
 * a sanitizer report. When the bytes load, the model is described and run once
 * on synthesized inputs (tests/support/exercise.c), with fast and reference
 * kernels. Built with -DKILN_FUZZ=ON and clang (see tests/fuzz/CMakeLists.txt).
 *
 *   build-fuzz/tests/fuzz/fuzz_import CORPUS_DIR -max_total_time=60
 *   build-fuzz/tests/fuzz/fuzz_import crash-<sha1>      # replay one input
 */
#include "support/exercise.h"

#include <stdint.h>
#include <stdlib.h>

int LLVMFuzzerTestOneInput(const uint8_t *data, size_t size);

int LLVMFuzzerTestOneInput(const uint8_t *data, size_t size) {
    if (kt_exercise_model(data, size, 1, NULL) != 0) abort(); /* API contract broken */
    return 0;
}
