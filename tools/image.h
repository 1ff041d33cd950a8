/* image.h — PNG/JPEG decoding (libpng, libjpeg) and conversion to a float
 * tensor: bilinear resize, RGB/BGR/grey, per-channel normalization. */
#ifndef KILN_TOOLS_IMAGE_H
#define KILN_TOOLS_IMAGE_H

#include "kiln.h"

#include <stdint.h>

/* Largest image decoded (pixels); keeps a hostile header from asking for GBs. */
#define IMAGE_MAX_PIXELS (100ll * 1000 * 1000)

struct image {
    int32_t w, h;
    uint8_t *rgb;   /* h * w * 3, row-major, interleaved RGB */
};

/* True when the file starts with a PNG or JPEG signature. */
int image_sniff(const char *path);
/* Decodes PNG (any bit depth, grey, palette, alpha composited on black) or
 * JPEG (grey, RGB, YCbCr) into 8-bit RGB. */
kiln_status image_load(const char *path, struct image *img, kiln_error *err);
void image_free(struct image *img);

/* value = (pixel * scale - mean[c]) / std[c], with pixel in 0..255 and c in
 * the model's channel order (RGB, or BGR with bgr = 1). */
struct image_norm {
    double scale;
    double mean[3], std[3];
    int bgr;
};

/* Writes one image of C (1 or 3) channels at H x W into dst (float32),
 * NCHW (nhwc = 0) or NHWC; resizing is bilinear with half-pixel centres. */
void image_to_tensor(const struct image *img, int C, int64_t H, int64_t W, int nhwc,
                     const struct image_norm *norm, float *dst);

#endif
