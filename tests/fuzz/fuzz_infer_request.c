/*
 * fuzz_infer_request.c — libFuzzer target for the KServe v2 inference
 * request parser (kiln_serve_parse_infer), JSON and binary bodies.
 *
 * Input layout: byte 0 picks the signature shape (bit 3 batched, bits 4-5
 * rank, bit 6 two inputs); byte 1 bit 0 says whether binary data follows the
 * JSON and bits 1-7 pick the dtype; bytes 2-3 give the JSON header length
 * (mod the body length); the rest is the body. The
 * outcome must be 200 with a request whose tensors lie inside the body or in
 * owned buffers of the stated size, or a 4xx/5xx with a message.
 */
#include "kiln.h"
#include "serve/internal.h"

#include <stdint.h>
#include <stdlib.h>
#include <string.h>

static const kiln_dtype types[] = {KILN_DTYPE_FLOAT,  KILN_DTYPE_UINT8,  KILN_DTYPE_INT8,   KILN_DTYPE_UINT16,
                                   KILN_DTYPE_INT16,  KILN_DTYPE_INT32,  KILN_DTYPE_INT64,  KILN_DTYPE_BOOL,
                                   KILN_DTYPE_FLOAT16, KILN_DTYPE_DOUBLE, KILN_DTYPE_UINT32, KILN_DTYPE_UINT64,
                                   KILN_DTYPE_BFLOAT16};

int LLVMFuzzerTestOneInput(const uint8_t *data, size_t size) {
    if (size < 4) return 0;
    uint8_t sel = data[0];
    kiln_dtype dt = types[(data[1] >> 1) % (sizeof types / sizeof types[0])];
    int rank = 1 + (sel >> 4) % 3;
    int64_t dims[3] = {-1, 3, 2};
    int64_t max_batch = (sel & 8) ? 4 : 0;
    if (!max_batch) dims[0] = 2;
    int n_in = 1 + ((sel >> 6) & 1);
    struct kiln_serve_sig *sig = kiln_serve_sig_new_simple(n_in, 2, dt, rank, dims, max_batch);
    if (!sig) return 0;
    const char *body = (const char *)data + 4;
    size_t len = size - 4;
    size_t header_len = len;
    if ((data[1] & 1) && len) header_len = ((size_t)data[2] | (size_t)data[3] << 8) % (len + 1);
    /* a private copy so reads past the end are caught by ASan */
    char *copy = malloc(len ? len : 1);
    if (len) memcpy(copy, body, len);
    struct kiln_serve_infer *r = NULL;
    char msg[512];
    int st = kiln_serve_parse_infer(sig, copy, len, header_len, 1u << 16, &r, msg, sizeof msg);
    if (st == 200) {
        if (!r) abort();
        for (int32_t i = 0; i < r->n_in; i++) {
            const kiln_tensor *t = &r->in[i];
            uint64_t elems = 1;
            for (int32_t d = 0; d < t->rank; d++) elems *= (uint64_t)t->dims[d];
            if (elems * kiln_dtype_size(t->dtype) != t->nbytes) abort();
            /* touch every byte: must be inside the body or an owned buffer */
            volatile uint8_t sum = 0;
            for (size_t k = 0; k < t->nbytes; k++) sum ^= ((const uint8_t *)t->data)[k];
            (void)sum;
        }
        kiln_serve_infer_free(r);
    } else if (r || !msg[0]) {
        abort();
    }
    free(copy);
    kiln_serve_sig_free(sig);
    return 0;
}
