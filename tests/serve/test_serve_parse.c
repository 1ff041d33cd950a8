/*
 * test_serve_parse.c — the inference-request parser alone: accepted bodies
 * produce the right tensors; malformed ones produce the right status; none
 * crash. Then replays every file of the fuzz corpus (argv[1], e.g.
 * tests/fuzz/corpus/infer_request) through the fuzz target itself, whose
 * outcome is "no crash, no leak, invariants hold".
 */
#include "kiln.h"
#include "serve/internal.h"

#include <dirent.h>
#include <stdint.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

int LLVMFuzzerTestOneInput(const uint8_t *data, size_t size);

static int replay(const char *dir) {
    DIR *d = opendir(dir);
    if (!d) { printf("note: no corpus at %s\n", dir); return 0; }
    int n = 0;
    struct dirent *e;
    while ((e = readdir(d))) {
        if (e->d_name[0] == '.') continue;
        char p[1024];
        snprintf(p, sizeof p, "%s/%s", dir, e->d_name);
        FILE *f = fopen(p, "rb");
        if (!f) continue;
        static uint8_t buf[1 << 20];
        size_t len = fread(buf, 1, sizeof buf, f);
        fclose(f);
        LLVMFuzzerTestOneInput(buf, len);
        /* and every prefix: truncated bodies are the common real-world fault */
        for (size_t k = 0; k < len; k += 7) LLVMFuzzerTestOneInput(buf, k);
        n++;
    }
    closedir(d);
    return n;
}

static int n_pass, n_fail;
#define CHECK(cond, ...)                                                \
    do {                                                                \
        if (cond) n_pass++;                                             \
        else {                                                          \
            n_fail++;                                                   \
            printf("FAIL %s:%d: ", __FILE__, __LINE__);                 \
            printf(__VA_ARGS__);                                        \
            printf("\n");                                               \
        }                                                               \
    } while (0)

static int parse(const struct kiln_serve_sig *sig, const char *body, size_t len, size_t hl,
                 struct kiln_serve_infer **r, char *msg) {
    return kiln_serve_parse_infer(sig, body, len, hl, 1u << 20, r, msg, 256);
}

int main(int argc, char **argv) {
    int64_t dims[2] = {-1, 3};
    struct kiln_serve_sig *sig = kiln_serve_sig_new_simple(1, 1, KILN_DTYPE_FLOAT, 2, dims, 4);
    char msg[256];
    struct kiln_serve_infer *r = NULL;

    const char *ok = "{\"id\":\"q\",\"inputs\":[{\"name\":\"x0\",\"shape\":[2,3],\"datatype\":\"FP32\","
                     "\"data\":[[1,2,3],[4,5,6.5]]}],\"outputs\":[{\"name\":\"y0\",\"parameters\":{\"binary_data\":true}}]}";
    int st = parse(sig, ok, strlen(ok), strlen(ok), &r, msg);
    CHECK(st == 200, "ok body: %d %s", st, msg);
    if (st == 200) {
        float x[6];
        memcpy(x, r->in[0].data, sizeof x);
        CHECK(r->batch == 2 && r->in[0].dims[0] == 2 && r->in[0].dims[1] == 3 && r->in[0].nbytes == 24,
              "tensor shape");
        CHECK(x[0] == 1 && x[5] == 6.5f, "tensor data");
        CHECK(r->id && !strcmp(r->id, "q"), "id");
        CHECK(r->n_out == 1 && r->out[0].binary, "binary output requested");
        kiln_serve_infer_free(r);
    }

    /* binary input: header then 12 bytes */
    char body[256];
    const char *h = "{\"inputs\":[{\"name\":\"x0\",\"shape\":[1,3],\"datatype\":\"FP32\",\"parameters\":{\"binary_data_size\":12}}]}";
    size_t hl = strlen(h);
    float v[3] = {7, 8, 9};
    memcpy(body, h, hl);
    memcpy(body + hl, v, 12);
    st = parse(sig, body, hl + 12, hl, &r, msg);
    float got[3] = {0};
    if (st == 200) memcpy(got, r->in[0].data, 12);   /* binary data lies at any offset */
    CHECK(st == 200 && got[2] == 9, "binary body: %d %s", st, msg);
    if (st == 200) kiln_serve_infer_free(r);

    static const struct { const char *body; int status; const char *sub; } bad[] = {
        {"", 400, "empty"},
        {"{", 400, "invalid JSON"},
        {"nul\x01l", 400, "invalid JSON"},
        {"{\"inputs\":{}}", 400, "'inputs' array"},
        {"{\"inputs\":[1]}", 400, "must be an object"},
        {"{\"inputs\":[{\"name\":\"x0\",\"shape\":[1,3],\"datatype\":\"FP32\",\"data\":[[[[[[[[[[1]]]]]]]]]]}]}", 400, "nested deeper"},
        {"{\"inputs\":[{\"name\":\"x0\",\"shape\":[5,3],\"datatype\":\"FP32\",\"data\":[]}]}", 400, "batch size 5"},
        {"{\"inputs\":[{\"name\":\"x0\",\"shape\":[1,99999999999999],\"datatype\":\"FP32\",\"data\":[]}]}", 400, "does not match"},
        {"{\"inputs\":[{\"name\":\"x0\",\"shape\":[1,3],\"datatype\":\"FP32\",\"parameters\":{\"binary_data_size\":-1}}]}", 400, "non-negative"},
        {"{\"inputs\":[{\"name\":\"x0\",\"shape\":[1,3],\"datatype\":\"FP32\",\"parameters\":{\"binary_data_size\":12}}]}", 400, "runs past"},
        {"{\"inputs\":[{\"name\":\"x0\",\"shape\":[1,3],\"datatype\":\"FP32\",\"data\":[1,2,3]}],\"outputs\":[{\"name\":\"y0\",\"parameters\":{\"classification\":2}}]}", 400, "classification"},
        {"{\"parameters\":{\"timeout\":-5},\"inputs\":[]}", 400, "timeout"},
        {"{\"parameters\":{\"a\":[1]},\"inputs\":[]}", 400, "parameter 'a'"},
    };
    for (size_t i = 0; i < sizeof bad / sizeof bad[0]; i++) {
        size_t len = strlen(bad[i].body);
        st = parse(sig, bad[i].body, len, len, &r, msg);
        CHECK(st == bad[i].status && strstr(msg, bad[i].sub), "bad[%zu]: %d %s", i, st, msg);
        if (st == 200) kiln_serve_infer_free(r);
    }
    /* every prefix of a valid body fails cleanly (no over-read, no crash) */
    for (size_t len = 0; len < strlen(ok); len++) {
        st = parse(sig, ok, len, len, &r, msg);
        CHECK(st == 400, "prefix %zu accepted", len);
        if (st == 200) kiln_serve_infer_free(r);
    }
    kiln_serve_sig_free(sig);
    if (argc > 1) {
        int n = replay(argv[1]);
        CHECK(n >= 0, "corpus");
        printf("replayed %d corpus files\n", n);
    }
    printf("%d passed, %d failed\n", n_pass, n_fail);
    return n_fail ? 1 : 0;
}
