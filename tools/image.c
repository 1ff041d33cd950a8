/* image.c — see image.h. */
#include "image.h"

#include "base/status.h"

#include <errno.h>
#include <math.h>
#include <setjmp.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

#include <jpeglib.h>
#include <png.h>

enum { FMT_UNKNOWN, FMT_PNG, FMT_JPEG };

static int sniff(const char *path) {
    FILE *f = fopen(path, "rb");
    if (!f) return FMT_UNKNOWN;
    unsigned char b[8] = {0};
    size_t n = fread(b, 1, sizeof b, f);
    fclose(f);
    if (n >= 8 && !memcmp(b, "\x89PNG\r\n\x1a\n", 8)) return FMT_PNG;
    if (n >= 3 && b[0] == 0xff && b[1] == 0xd8 && b[2] == 0xff) return FMT_JPEG;
    return FMT_UNKNOWN;
}

int image_sniff(const char *path) { return sniff(path) != FMT_UNKNOWN; }

static kiln_status check_size(const char *path, int64_t w, int64_t h, kiln_error *err) {
    if (w <= 0 || h <= 0 || w > IMAGE_MAX_PIXELS / h)
        return kiln_fail(err, KILN_ERR_LIMIT, "%s: image is %lldx%lld; at most %lld pixels are decoded",
                         path, (long long)w, (long long)h, (long long)IMAGE_MAX_PIXELS);
    return KILN_OK;
}

static kiln_status load_png(const char *path, struct image *img, kiln_error *err) {
    png_image pi;
    memset(&pi, 0, sizeof pi);
    pi.version = PNG_IMAGE_VERSION;
    if (!png_image_begin_read_from_file(&pi, path))
        return kiln_fail(err, KILN_ERR_BAD_MODEL, "%s: cannot read PNG: %s", path, pi.message);
    kiln_status s = check_size(path, pi.width, pi.height, err);
    if (s) {
        png_image_free(&pi);
        return s;
    }
    pi.format = PNG_FORMAT_RGB;
    size_t bytes = (size_t)pi.width * pi.height * 3;
    uint8_t *buf = malloc(bytes);
    if (!buf) {
        png_image_free(&pi);
        return kiln_fail(err, KILN_ERR_NO_MEMORY, "%s: cannot allocate %zu bytes", path, bytes);
    }
    /* transparent pixels composite onto white: documents and icons look right */
    png_color white = {255, 255, 255};
    if (!png_image_finish_read(&pi, &white, buf, 0, NULL)) {
        free(buf);
        return kiln_fail(err, KILN_ERR_BAD_MODEL, "%s: cannot decode PNG: %s", path, pi.message);
    }
    img->w = (int32_t)pi.width;
    img->h = (int32_t)pi.height;
    img->rgb = buf;
    return KILN_OK;
}

struct jpeg_err {
    struct jpeg_error_mgr mgr;
    jmp_buf jmp;
    char msg[JMSG_LENGTH_MAX];
};

static void jpeg_fail(j_common_ptr cinfo) {
    struct jpeg_err *je = (struct jpeg_err *)cinfo->err;
    (*cinfo->err->format_message)(cinfo, je->msg);
    longjmp(je->jmp, 1);
}

/* Warnings (level -1: corrupt or truncated data) fail the decode: a partly
 * grey picture would give plausible-looking but wrong results. */
static void jpeg_warn(j_common_ptr cinfo, int level) {
    if (level < 0) jpeg_fail(cinfo);
}

static kiln_status load_jpeg(const char *path, struct image *img, kiln_error *err) {
    FILE *f = fopen(path, "rb");
    if (!f) return kiln_fail(err, KILN_ERR_IO, "%s: cannot open: %s", path, strerror(errno));
    struct jpeg_decompress_struct cinfo;
    struct jpeg_err je;
    /* volatile: these change between setjmp and a possible longjmp */
    uint8_t *volatile buf = NULL;
    cinfo.err = jpeg_std_error(&je.mgr);
    je.mgr.error_exit = jpeg_fail;
    je.mgr.emit_message = jpeg_warn;
    if (setjmp(je.jmp)) {
        jpeg_destroy_decompress(&cinfo);
        fclose(f);
        free(buf);
        return kiln_fail(err, KILN_ERR_BAD_MODEL, "%s: cannot decode JPEG: %s", path, je.msg);
    }
    jpeg_create_decompress(&cinfo);
    jpeg_stdio_src(&cinfo, f);
    jpeg_read_header(&cinfo, TRUE);
    kiln_status s = check_size(path, cinfo.image_width, cinfo.image_height, err);
    if (!s && cinfo.jpeg_color_space != JCS_GRAYSCALE && cinfo.jpeg_color_space != JCS_RGB &&
        cinfo.jpeg_color_space != JCS_YCbCr)
        s = kiln_fail(err, KILN_ERR_UNSUPPORTED, "%s: JPEG colour space %d (CMYK?) is not supported",
                      path, (int)cinfo.jpeg_color_space);
    if (s) {
        jpeg_destroy_decompress(&cinfo);
        fclose(f);
        return s;
    }
    cinfo.out_color_space = JCS_RGB;
    jpeg_start_decompress(&cinfo);
    size_t w = cinfo.output_width, h = cinfo.output_height;
    if (cinfo.output_components != 3) {
        jpeg_destroy_decompress(&cinfo);
        fclose(f);
        return kiln_fail(err, KILN_ERR_UNSUPPORTED, "%s: JPEG decodes to %d components, not RGB",
                         path, cinfo.output_components);
    }
    buf = malloc(w * h * 3);
    if (!buf) {
        jpeg_destroy_decompress(&cinfo);
        fclose(f);
        return kiln_fail(err, KILN_ERR_NO_MEMORY, "%s: cannot allocate %zu bytes", path, w * h * 3);
    }
    while (cinfo.output_scanline < cinfo.output_height) {
        JSAMPROW row = buf + (size_t)cinfo.output_scanline * w * 3;
        jpeg_read_scanlines(&cinfo, &row, 1);
    }
    jpeg_finish_decompress(&cinfo);
    jpeg_destroy_decompress(&cinfo);
    fclose(f);
    img->w = (int32_t)w;
    img->h = (int32_t)h;
    img->rgb = buf;
    return KILN_OK;
}

kiln_status image_load(const char *path, struct image *img, kiln_error *err) {
    memset(img, 0, sizeof *img);
    switch (sniff(path)) {
    case FMT_PNG: return load_png(path, img, err);
    case FMT_JPEG: return load_jpeg(path, img, err);
    default: {
        FILE *f = fopen(path, "rb");
        if (!f) return kiln_fail(err, KILN_ERR_IO, "%s: cannot open: %s", path, strerror(errno));
        fclose(f);
        return kiln_fail(err, KILN_ERR_UNSUPPORTED, "%s: not a PNG or JPEG file", path);
    }
    }
}

void image_free(struct image *img) {
    if (!img) return;
    free(img->rgb);
    img->rgb = NULL;
}

/* Source coordinate for destination index d (half-pixel centres, as
 * OpenCV's INTER_LINEAR and ONNX Resize's default), clamped at the borders. */
static void src_coord(int64_t d, int64_t out_n, int32_t in_n, int32_t *i0, int32_t *i1, float *t) {
    double x = ((double)d + 0.5) * (double)in_n / (double)out_n - 0.5;
    if (x < 0) x = 0;
    if (x > in_n - 1) x = in_n - 1;
    int32_t a = (int32_t)x;
    *i0 = a;
    *i1 = a + 1 < in_n ? a + 1 : a;
    *t = (float)(x - a);
}

void image_to_tensor(const struct image *img, int C, int64_t H, int64_t W, int nhwc,
                     const struct image_norm *n, float *dst) {
    for (int64_t y = 0; y < H; y++) {
        int32_t y0, y1;
        float ty;
        src_coord(y, H, img->h, &y0, &y1, &ty);
        for (int64_t x = 0; x < W; x++) {
            int32_t x0, x1;
            float tx;
            src_coord(x, W, img->w, &x0, &x1, &tx);
            float px[3];
            for (int c = 0; c < 3; c++) {
                const uint8_t *r0 = img->rgb + (size_t)y0 * (size_t)img->w * 3;
                const uint8_t *r1 = img->rgb + (size_t)y1 * (size_t)img->w * 3;
                float a = r0[x0 * 3 + c] + tx * (float)(r0[x1 * 3 + c] - r0[x0 * 3 + c]);
                float b = r1[x0 * 3 + c] + tx * (float)(r1[x1 * 3 + c] - r1[x0 * 3 + c]);
                px[c] = a + ty * (b - a);
            }
            for (int c = 0; c < C; c++) {
                double v;
                if (C == 1) v = 0.299 * px[0] + 0.587 * px[1] + 0.114 * px[2];   /* BT.601 luma */
                else v = px[n->bgr ? 2 - c : c];
                v = (v * n->scale - n->mean[c]) / n->std[c];
                size_t idx = nhwc ? ((size_t)y * (size_t)W + (size_t)x) * (size_t)C + (size_t)c
                                  : ((size_t)c * (size_t)H + (size_t)y) * (size_t)W + (size_t)x;
                dst[idx] = (float)v;
            }
        }
    }
}
