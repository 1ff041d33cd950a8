/*
 * test_serve.c — end-to-end tests of `kiln serve`: a real server on
 * 127.0.0.1 port 0 over a generated model repository, driven with libcurl.
 *
 * Bodies and status codes are compared exactly. Load is bounded (at most a
 * few hundred requests on loopback) so the test runs in seconds.
 *
 * usage: test_serve PATH_TO_KILN   (the binary is used for the SIGTERM test)
 */
#define _GNU_SOURCE
#include "gen_model.h"
#include "kiln.h"
#include "serve/serve.h"
#include "backend/dnnl_qconv.h"

#include <curl/curl.h>
#include <arpa/inet.h>
#include <errno.h>
#include <math.h>
#include <signal.h>
#include <stdarg.h>
#include <stdbool.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/resource.h>
#include <sys/socket.h>
#include <sys/stat.h>
#include <sys/wait.h>
#include <time.h>
#include <unistd.h>

static int n_pass, n_fail;
#define CHECK(cond, ...)                                                     \
    do {                                                                     \
        if (cond) n_pass++;                                                  \
        else {                                                               \
            n_fail++;                                                        \
            printf("FAIL %s:%d: ", __FILE__, __LINE__);                      \
            printf(__VA_ARGS__);                                             \
            printf("\n");                                                    \
        }                                                                    \
    } while (0)

static char base[64];
static char repo[256];
static bool affine;      /* Mul/Add available: y = 2x + 1, else identity */

static double now_s(void) {
    struct timespec ts;
    clock_gettime(CLOCK_MONOTONIC, &ts);
    return (double)ts.tv_sec + ts.tv_nsec / 1e9;
}

/* ---- HTTP helpers ------------------------------------------------------------ */

struct resp {
    long   status;
    char  *body;
    size_t len;
    long   ihcl;        /* Inference-Header-Content-Length, -1 if absent */
    char   ctype[128];
};

static size_t on_body(char *p, size_t sz, size_t n, void *u) {
    struct resp *r = u;
    char *q = realloc(r->body, r->len + sz * n + 1);
    if (!q) return 0;
    r->body = q;
    memcpy(r->body + r->len, p, sz * n);
    r->len += sz * n;
    r->body[r->len] = '\0';
    return sz * n;
}

static size_t on_header(char *p, size_t sz, size_t n, void *u) {
    struct resp *r = u;
    size_t len = sz * n;
    if (len > 32 && !strncasecmp(p, "Inference-Header-Content-Length:", 32)) r->ihcl = atol(p + 32);
    if (len > 13 && !strncasecmp(p, "Content-Type:", 13)) {
        size_t k = len - 13;
        if (k >= sizeof r->ctype) k = sizeof r->ctype - 1;
        memcpy(r->ctype, p + 13, k);
        r->ctype[k] = '\0';
        char *e = r->ctype + strlen(r->ctype);
        while (e > r->ctype && (e[-1] == '\r' || e[-1] == '\n')) *--e = '\0';
    }
    return len;
}

struct req {
    CURL              *h;
    struct curl_slist *hdrs;
    struct resp        r;
    char              *body;
    size_t             body_len;
};

static void req_init(struct req *q, const char *method, const char *path, const void *body, size_t len,
                     long header_len) {
    memset(q, 0, sizeof *q);
    q->r.ihcl = -1;
    q->h = curl_easy_init();
    char url[512];
    snprintf(url, sizeof url, "%s%s", base, path);
    curl_easy_setopt(q->h, CURLOPT_URL, url);
    curl_easy_setopt(q->h, CURLOPT_WRITEFUNCTION, on_body);
    curl_easy_setopt(q->h, CURLOPT_WRITEDATA, &q->r);
    curl_easy_setopt(q->h, CURLOPT_HEADERFUNCTION, on_header);
    curl_easy_setopt(q->h, CURLOPT_HEADERDATA, &q->r);
    curl_easy_setopt(q->h, CURLOPT_TIMEOUT, 30L);
    curl_easy_setopt(q->h, CURLOPT_NOSIGNAL, 1L);
    q->hdrs = curl_slist_append(NULL, "Expect:");   /* no 100-continue round trip */
    if (header_len >= 0) {
        char h[80];
        snprintf(h, sizeof h, "Inference-Header-Content-Length: %ld", header_len);
        q->hdrs = curl_slist_append(q->hdrs, h);
        q->hdrs = curl_slist_append(q->hdrs, "Content-Type: application/octet-stream");
    }
    curl_easy_setopt(q->h, CURLOPT_HTTPHEADER, q->hdrs);
    if (body) {
        q->body = malloc(len + 1);
        memcpy(q->body, body, len);
        q->body_len = len;
        curl_easy_setopt(q->h, CURLOPT_POSTFIELDS, q->body);
        curl_easy_setopt(q->h, CURLOPT_POSTFIELDSIZE_LARGE, (curl_off_t)len);
    }
    curl_easy_setopt(q->h, CURLOPT_CUSTOMREQUEST, method);
    if (!strcmp(method, "HEAD")) curl_easy_setopt(q->h, CURLOPT_NOBODY, 1L);
}

static void req_done(struct req *q) {
    curl_easy_getinfo(q->h, CURLINFO_RESPONSE_CODE, &q->r.status);
}

static void req_free(struct req *q) {
    curl_easy_cleanup(q->h);
    curl_slist_free_all(q->hdrs);
    free(q->body);
    free(q->r.body);
}

static struct resp http(const char *method, const char *path, const char *body) {
    struct req q;
    req_init(&q, method, path, body, body ? strlen(body) : 0, -1);
    CURLcode rc = curl_easy_perform(q.h);
    req_done(&q);
    struct resp r = q.r;
    q.r.body = NULL;
    if (rc != CURLE_OK) r.status = -1;
    if (!r.body) r.body = calloc(1, 1);
    req_free(&q);
    return r;
}

static struct resp http_bin(const char *path, const void *body, size_t len, long header_len) {
    struct req q;
    req_init(&q, "POST", path, body, len, header_len);
    CURLcode rc = curl_easy_perform(q.h);
    req_done(&q);
    struct resp r = q.r;
    q.r.body = NULL;
    if (rc != CURLE_OK) r.status = -1;
    if (!r.body) r.body = calloc(1, 1);
    req_free(&q);
    return r;
}

/* Runs all requests concurrently (one connection each). */
static void run_all(struct req *qs, int n) {
    CURLM *m = curl_multi_init();
    curl_multi_setopt(m, CURLMOPT_MAX_TOTAL_CONNECTIONS, 0L);
    for (int i = 0; i < n; i++) curl_multi_add_handle(m, qs[i].h);
    int running = 1;
    while (running) {
        curl_multi_perform(m, &running);
        if (running) curl_multi_poll(m, NULL, 0, 100, NULL);
    }
    for (int i = 0; i < n; i++) {
        req_done(&qs[i]);
        curl_multi_remove_handle(m, qs[i].h);
    }
    curl_multi_cleanup(m);
}

#define EXPECT(r, st, want_body)                                                              \
    CHECK((r).status == (st) && !strcmp((r).body, (want_body)), "%s: got %ld %s, want %d %s", \
          #r, (r).status, (r).body, (st), (want_body))
#define EXPECT_SUB(r, st, sub)                                                                  \
    CHECK((r).status == (st) && strstr((r).body, (sub)), "got %ld %s, want %d containing '%s'", \
          (r).status, (r).body, (st), (sub))

/* ---- repository ----------------------------------------------------------------- */

static void write_file(const char *path, const char *text) {
    FILE *f = fopen(path, "w");
    if (f) { fputs(text, f); fclose(f); }
}

static void add_model(const char *name, int version, enum gen_kind kind, int32_t et, const char *config) {
    char p[512];
    snprintf(p, sizeof p, "%s/%s", repo, name);
    mkdir(p, 0755);
    snprintf(p, sizeof p, "%s/%s/%d", repo, name, version);
    mkdir(p, 0755);
    snprintf(p, sizeof p, "%s/%s/%d/model.onnx", repo, name, version);
    if (gen_model(p, kind, et)) { printf("cannot write %s\n", p); exit(1); }
    if (config) {
        snprintf(p, sizeof p, "%s/%s/config.json", repo, name);
        write_file(p, config);
    }
}

static int kiln_cpu_has_bf16_for_test(void) { return kiln_cpu_has_bf16(); }

static bool affine_supported(void) {
    char p[300];
    snprintf(p, sizeof p, "%s/probe.onnx", repo);
    gen_model(p, GEN_AFFINE, 1);
    kiln_model *m = NULL;
    kiln_session *s = NULL;
    bool ok = kiln_model_load(p, NULL, &m, NULL) == KILN_OK &&
              kiln_session_create(m, NULL, &s, NULL) == KILN_OK;
    kiln_session_free(s);
    kiln_model_free(m);
    unlink(p);
    return ok;
}

static float f(float x) { return affine ? x * 2 + 1 : x; }
static const char *out_name(void) { return affine ? "y" : "x"; }

static const struct { const char *v2; int32_t onnx; const char *data; const char *echo; } dtypes[] = {
    {"BOOL", 9, "[true,false,true,false]", "[true,false,true,false]"},
    {"UINT8", 2, "[0,1,200,255]", "[0,1,200,255]"},
    {"UINT16", 4, "[0,1,65535,7]", "[0,1,65535,7]"},
    {"UINT32", 12, "[0,1,4294967295,7]", "[0,1,4294967295,7]"},
    {"UINT64", 13, "[0,1,18446744073709551615,7]", "[0,1,18446744073709551615,7]"},
    {"INT8", 3, "[-128,127,0,-1]", "[-128,127,0,-1]"},
    {"INT16", 5, "[-32768,32767,0,-1]", "[-32768,32767,0,-1]"},
    {"INT32", 6, "[-2147483648,2147483647,0,-1]", "[-2147483648,2147483647,0,-1]"},
    {"INT64", 7, "[-9223372036854775808,9223372036854775807,0,-1]", "[-9223372036854775808,9223372036854775807,0,-1]"},
    {"FP16", 10, "[1,0.5,-2,65504]", "[1,0.5,-2,65504]"},
    {"BF16", 16, "[1,0.5,-2,256]", "[1,0.5,-2,256]"},
    {"FP32", 1, "[1.5,-0.25,3,1e+20]", "[1.5,-0.25,3,1.00000002e+20]"},
    {"FP64", 11, "[0.1,-2,3,1e+300]", "[0.10000000000000001,-2,3,1.0000000000000001e+300]"},
};
#define N_DTYPES (int)(sizeof dtypes / sizeof dtypes[0])

static void build_repo(void) {
    affine = affine_supported();
    if (!affine) printf("note: Mul/Add not implemented in this build; model 'm' is an identity model\n");
    /* m batches with a small delay so concurrent requests share executions */
    add_model("m", 1, affine ? GEN_AFFINE : GEN_IDENTITY, 1,
              "{\"max_batch_size\": 8, \"dynamic_batching\": {\"max_queue_delay_us\": 2000},"
              " \"instance_group\": {\"count\": 2, \"cores\": 1}}");
    for (int i = 0; i < N_DTYPES; i++) {
        char name[32];
        snprintf(name, sizeof name, "t_%s", dtypes[i].v2);
        add_model(name, 1, GEN_IDENTITY, dtypes[i].onnx, NULL);
    }
    if (affine) {
        add_model("fixed", 1, GEN_FIXED, 1, NULL);                         /* x [1,4]: no batching */
        add_model("fixed_bad", 1, GEN_FIXED, 1, "{\"max_batch_size\": 4}");
    }
    add_model("bad_cfg", 1, GEN_IDENTITY, 1, "{\"max_batch_size\": 8, \"dynamic_batching\": {\"max_queue_delay\": 5}}");
    add_model("bad_type", 1, GEN_IDENTITY, 1, "{\"max_batch_size\": \"eight\"}");
    add_model("bad_model", 1, GEN_IDENTITY, 1, NULL);
    char p[512];
    snprintf(p, sizeof p, "%s/bad_model/1/model.onnx", repo);
    write_file(p, "this is not a protobuf");
    /* precision: bf16 is served (fp32 with a warning where the CPU has no
     * bf16); int8 of an .onnx and a precision a plan was not compiled at are
     * refused with the field named */
    add_model("p_bf16", 1, GEN_IDENTITY, 1, "{\"precision\": \"bf16\"}");
    add_model("p_int8", 1, GEN_IDENTITY, 1, "{\"precision\": \"int8\"}");
    add_model("p_fp16", 1, GEN_IDENTITY, 1, "{\"precision\": \"fp16\"}");
    const char *plans[2][2] = {{"k_auto", "{\"precision\": \"auto\"}"}, {"k_int8", "{\"precision\": \"int8\"}"}};
    for (int k = 0; k < 2; k++) {
        add_model(plans[k][0], 1, GEN_IDENTITY, 1, plans[k][1]);
        char src[512], dst[512];
        snprintf(src, sizeof src, "%s/%s/1/model.onnx", repo, plans[k][0]);
        snprintf(dst, sizeof dst, "%s/%s/1/model.kiln", repo, plans[k][0]);
        kiln_model *pm = NULL;
        if (kiln_model_load(src, NULL, &pm, NULL) || kiln_model_save_plan(pm, dst, NULL, 0, NULL)) {
            printf("cannot compile %s\n", src);
            exit(1);
        }
        kiln_model_free(pm);
        unlink(src);
    }
    /* a batch never fills: calls wait the full delay, so the queue can be observed */
    add_model("slowq", 1, GEN_IDENTITY, 1,
              "{\"dynamic_batching\": {\"max_queue_delay_us\": 400000, \"max_queue_size\": 2}}");
    add_model("tmo", 1, GEN_IDENTITY, 1,
              "{\"dynamic_batching\": {\"max_queue_delay_us\": 3000000, \"default_timeout_us\": 100000}}");
}

/* ---- tests ------------------------------------------------------------------------ */

static void test_health_and_metadata(void) {
    struct resp r = http("GET", "/v2/health/live", NULL);
    EXPECT(r, 200, "{\"live\":true}");
    free(r.body);
    r = http("GET", "/v2/health/ready", NULL);
    EXPECT(r, 200, "{\"ready\":true}");
    free(r.body);
    r = http("POST", "/v2/health/live", "");
    CHECK(r.status == 405, "POST live: %ld", r.status);
    free(r.body);
    r = http("GET", "/v2", NULL);
    EXPECT(r, 200, "{\"name\":\"kiln\",\"version\":\"" KILN_VERSION_STRING "\",\"extensions\":[\"binary_tensor_data\","
                   "\"model_repository\",\"statistics\",\"schedule_policy\",\"model_configuration\"]}");
    CHECK(!strcmp(r.ctype, " application/json"), "content type '%s'", r.ctype);
    free(r.body);
    char want[512];
    snprintf(want, sizeof want,
             "{\"name\":\"m\",\"versions\":[\"1\"],\"platform\":\"onnx_onnxv1\",\"inputs\":[{\"name\":\"x\","
             "\"datatype\":\"FP32\",\"shape\":[-1,4]}],\"outputs\":[{\"name\":\"%s\",\"datatype\":\"FP32\",\"shape\":[-1,4]}]}",
             out_name());
    r = http("GET", "/v2/models/m", NULL);
    EXPECT(r, 200, want);
    free(r.body);
    r = http("GET", "/v2/models/m/versions/1", NULL);
    EXPECT(r, 200, want);
    free(r.body);
    r = http("GET", "/v2/models/m/ready", NULL);
    EXPECT(r, 200, "{\"name\":\"m\",\"ready\":true}");
    free(r.body);
    r = http("GET", "/v2/models/m/versions/1/ready", NULL);
    EXPECT(r, 200, "{\"name\":\"m\",\"ready\":true}");
    free(r.body);
    r = http("GET", "/v2/models/m/versions/2/ready", NULL);
    EXPECT(r, 404, "{\"error\":\"model 'm' has no version 2 (serving version 1)\"}");
    free(r.body);
    r = http("GET", "/v2/models/nope", NULL);
    EXPECT(r, 404, "{\"error\":\"unknown model 'nope'\"}");
    free(r.body);
    r = http("GET", "/v2/models/bad_cfg/ready", NULL);
    EXPECT(r, 503, "{\"name\":\"bad_cfg\",\"ready\":false}");
    free(r.body);
    r = http("GET", "/v2/nothing/here", NULL);
    EXPECT(r, 404, "{\"error\":\"unknown endpoint GET /v2/nothing/here\"}");
    free(r.body);
    r = http("GET", "/v2/models/m/config", NULL);
    EXPECT_SUB(r, 200, "\"max_batch_size\":8");
    EXPECT_SUB(r, 200, "\"instance_group\":{\"count\":2,\"cores\":1}");
    free(r.body);
}

static void test_infer_json(void) {
    char want[1024];
    struct resp r = http("POST", "/v2/models/m/infer",
                         "{\"id\":\"abc\",\"parameters\":{\"p\":1},\"inputs\":[{\"name\":\"x\",\"shape\":[2,4],"
                         "\"datatype\":\"FP32\",\"data\":[[1,2,0.5,-3],[4,5,6,7]]}]}");
    snprintf(want, sizeof want,
             "{\"model_name\":\"m\",\"model_version\":\"1\",\"id\":\"abc\",\"outputs\":[{\"name\":\"%s\","
             "\"datatype\":\"FP32\",\"shape\":[2,4],\"data\":[%g,%g,%g,%g,%g,%g,%g,%g]}]}",
             out_name(), f(1), f(2), f(0.5f), f(-3), f(4), f(5), f(6), f(7));
    EXPECT(r, 200, want);
    free(r.body);
    /* versioned path, flat data, no id */
    r = http("POST", "/v2/models/m/versions/1/infer",
             "{\"inputs\":[{\"name\":\"x\",\"shape\":[1,4],\"datatype\":\"FP32\",\"data\":[1,2,3,4]}],"
             "\"outputs\":[{\"name\":\"y\"},{\"name\":\"x\"}]}");
    /* only one of y/x exists: asking for both must fail cleanly */
    EXPECT_SUB(r, 400, "unknown output");
    free(r.body);
    char body[512];
    snprintf(body, sizeof body,
             "{\"inputs\":[{\"name\":\"x\",\"shape\":[1,4],\"datatype\":\"FP32\",\"data\":[1,2,3,4]}],"
             "\"outputs\":[{\"name\":\"%s\",\"parameters\":{\"binary_data\":true}}]}", out_name());
    r = http("POST", "/v2/models/m/versions/1/infer", body);
    CHECK(r.status == 200 && r.ihcl > 0 && (size_t)r.ihcl + 16 == r.len, "binary out: %ld ihcl %ld len %zu",
          r.status, r.ihcl, r.len);
    if (r.status == 200 && r.ihcl > 0 && (size_t)r.ihcl + 16 == r.len) {
        float y[4];
        memcpy(y, r.body + r.ihcl, 16);
        CHECK(y[0] == f(1) && y[1] == f(2) && y[2] == f(3) && y[3] == f(4), "binary values %g %g %g %g", y[0],
              y[1], y[2], y[3]);
        snprintf(want, sizeof want, "{\"model_name\":\"m\",\"model_version\":\"1\",\"outputs\":[{\"name\":\"%s\","
                 "\"datatype\":\"FP32\",\"shape\":[1,4],\"parameters\":{\"binary_data_size\":16}}]}", out_name());
        CHECK((size_t)r.ihcl == strlen(want) && !memcmp(r.body, want, strlen(want)), "binary header %.*s",
              (int)r.ihcl, r.body);
        CHECK(!strcmp(r.ctype, " application/octet-stream"), "binary content type '%s'", r.ctype);
    }
    free(r.body);
}

/* a model with a fixed first dimension is served unbatched, shapes are full */
static void test_unbatched(void) {
    if (!affine) return;
    struct resp r = http("GET", "/v2/models/fixed", NULL);
    EXPECT(r, 200, "{\"name\":\"fixed\",\"versions\":[\"1\"],\"platform\":\"onnx_onnxv1\",\"inputs\":[{\"name\":\"x\","
                   "\"datatype\":\"FP32\",\"shape\":[1,4]}],\"outputs\":[{\"name\":\"y\",\"datatype\":\"FP32\",\"shape\":[1,4]}]}");
    free(r.body);
    r = http("POST", "/v2/models/fixed/infer",
             "{\"inputs\":[{\"name\":\"x\",\"shape\":[1,4],\"datatype\":\"FP32\",\"data\":[1,2,3,4]}]}");
    EXPECT(r, 200, "{\"model_name\":\"fixed\",\"model_version\":\"1\",\"outputs\":[{\"name\":\"y\",\"datatype\":\"FP32\","
                   "\"shape\":[1,4],\"data\":[3,5,7,9]}]}");
    free(r.body);
    r = http("POST", "/v2/models/fixed/infer",
             "{\"inputs\":[{\"name\":\"x\",\"shape\":[2,4],\"datatype\":\"FP32\",\"data\":[1,2,3,4,5,6,7,8]}]}");
    EXPECT(r, 400, "{\"error\":\"input 'x': shape [2,4] does not match the model's [1,4] (-1 = any)\"}");
    free(r.body);
    r = http("POST", "/v2/repository/index", "");
    CHECK(strstr(r.body, "config.json: field 'max_batch_size': 4, but 'x' has no variable first (batch) dimension") != NULL,
          "fixed_bad reason: %s", r.body);
    free(r.body);
}

static void test_infer_binary_input(void) {
    const char *hdr = "{\"id\":\"b1\",\"inputs\":[{\"name\":\"x\",\"shape\":[2,4],\"datatype\":\"FP32\","
                      "\"parameters\":{\"binary_data_size\":32}}],\"parameters\":{\"binary_data_output\":true}}";
    char body[512];
    size_t hl = strlen(hdr);
    memcpy(body, hdr, hl);
    float x[8] = {1, 2, 3, 4, -1, -2, 0.25f, 100};
    memcpy(body + hl, x, sizeof x);
    struct resp r = http_bin("/v2/models/m/infer", body, hl + sizeof x, (long)hl);
    CHECK(r.status == 200 && r.ihcl > 0 && (size_t)r.ihcl + 32 == r.len, "binary in/out: %ld %s", r.status, r.body);
    if (r.status == 200 && r.ihcl > 0 && (size_t)r.ihcl + 32 == r.len) {
        float y[8];
        memcpy(y, r.body + r.ihcl, 32);
        bool ok = true;
        for (int i = 0; i < 8; i++) ok &= y[i] == f(x[i]);
        CHECK(ok, "binary in/out values");
        CHECK(strstr(r.body, "\"id\":\"b1\"") != NULL, "id echo in binary response");
    }
    free(r.body);
}

static void test_dtypes(void) {
    for (int i = 0; i < N_DTYPES; i++) {
        char path[64], body[512], want[512];
        snprintf(path, sizeof path, "/v2/models/t_%s/infer", dtypes[i].v2);
        snprintf(body, sizeof body, "{\"inputs\":[{\"name\":\"x\",\"shape\":[1,4],\"datatype\":\"%s\",\"data\":%s}]}",
                 dtypes[i].v2, dtypes[i].data);
        snprintf(want, sizeof want,
                 "{\"model_name\":\"t_%s\",\"model_version\":\"1\",\"outputs\":[{\"name\":\"x\",\"datatype\":\"%s\","
                 "\"shape\":[1,4],\"data\":%s}]}", dtypes[i].v2, dtypes[i].v2, dtypes[i].echo);
        struct resp r = http("POST", path, body);
        CHECK(r.status == 200 && !strcmp(r.body, want), "%s JSON: %ld %s", dtypes[i].v2, r.status, r.body);
        free(r.body);
        /* binary round trip: bytes come back unchanged */
        size_t es = kiln_dtype_size((kiln_dtype)dtypes[i].onnx);
        char hdr[300];
        int hl = snprintf(hdr, sizeof hdr,
                          "{\"inputs\":[{\"name\":\"x\",\"shape\":[2,4],\"datatype\":\"%s\",\"parameters\":"
                          "{\"binary_data_size\":%zu}}],\"outputs\":[{\"name\":\"x\",\"parameters\":{\"binary_data\":true}}]}",
                          dtypes[i].v2, 8 * es);
        unsigned char raw[64];
        for (size_t k = 0; k < 8 * es; k++) raw[k] = (unsigned char)(k * 37 + 11);
        if (dtypes[i].onnx == 9)
            for (size_t k = 0; k < 8; k++) raw[k] = (unsigned char)(k & 1);
        char buf[512];
        memcpy(buf, hdr, (size_t)hl);
        memcpy(buf + hl, raw, 8 * es);
        r = http_bin(path, buf, (size_t)hl + 8 * es, hl);
        CHECK(r.status == 200 && r.ihcl > 0 && (size_t)r.ihcl + 8 * es == r.len &&
                  !memcmp(r.body + r.ihcl, raw, 8 * es),
              "%s binary round trip: %ld %s", dtypes[i].v2, r.status, r.body);
        free(r.body);
    }
    struct resp r = http("POST", "/v2/models/t_UINT8/infer",
                         "{\"inputs\":[{\"name\":\"x\",\"shape\":[1,4],\"datatype\":\"UINT8\",\"data\":[1,2,3,256]}]}");
    EXPECT_SUB(r, 400, "out of range for UINT8");
    free(r.body);
    r = http("POST", "/v2/models/t_INT32/infer",
             "{\"inputs\":[{\"name\":\"x\",\"shape\":[1,4],\"datatype\":\"INT32\",\"data\":[1,2,3,4.5]}]}");
    EXPECT_SUB(r, 400, "not a INT32 value");
    free(r.body);
    r = http("POST", "/v2/models/m/infer",
             "{\"inputs\":[{\"name\":\"x\",\"shape\":[1,4],\"datatype\":\"BYTES\",\"data\":[\"a\",\"b\",\"c\",\"d\"]}]}");
    EXPECT(r, 400, "{\"error\":\"input 'x': datatype BYTES, but the model expects FP32\"}");
    free(r.body);
}

struct bad_case {
    const char *name, *method, *path, *body;
    const char *bin;       /* binary bytes appended after the JSON body, or NULL */
    long header_len;       /* -1: no Inference-Header-Content-Length; 0: strlen(body); else as given */
    int status;
    const char *sub;
};

#define HDR12 "{\"inputs\":[{\"name\":\"x\",\"shape\":[1,4],\"datatype\":\"FP32\",\"parameters\":{\"binary_data_size\":12}}]}"
#define HDR16 "{\"inputs\":[{\"name\":\"x\",\"shape\":[1,4],\"datatype\":\"FP32\",\"parameters\":{\"binary_data_size\":16}}]}"

static const struct bad_case bad_cases[] = {
    {"invalid JSON", "POST", "/v2/models/m/infer", "{\"inputs\":[", NULL, -1, 400, "invalid JSON"},
    {"not an object", "POST", "/v2/models/m/infer", "[1,2]", NULL, -1, 400, "must be a JSON object"},
    {"empty body", "POST", "/v2/models/m/infer", "", NULL, -1, 400, "empty request body"},
    {"wrong datatype", "POST", "/v2/models/m/infer",
     "{\"inputs\":[{\"name\":\"x\",\"shape\":[1,4],\"datatype\":\"INT32\",\"data\":[1,2,3,4]}]}", NULL, -1, 400,
     "datatype INT32, but the model expects FP32"},
    {"unknown datatype", "POST", "/v2/models/m/infer",
     "{\"inputs\":[{\"name\":\"x\",\"shape\":[1,4],\"datatype\":\"FP128\",\"data\":[1,2,3,4]}]}", NULL, -1, 400,
     "unknown datatype 'FP128'"},
    {"data shorter than shape", "POST", "/v2/models/m/infer",
     "{\"inputs\":[{\"name\":\"x\",\"shape\":[1,4],\"datatype\":\"FP32\",\"data\":[1,2,3]}]}", NULL, -1, 400,
     "shape [1,4] has 4 elements, but data has 3"},
    {"data longer than shape", "POST", "/v2/models/m/infer",
     "{\"inputs\":[{\"name\":\"x\",\"shape\":[1,4],\"datatype\":\"FP32\",\"data\":[1,2,3,4,5]}]}", NULL, -1, 400,
     "more elements than its shape"},
    {"string in data", "POST", "/v2/models/m/infer",
     "{\"inputs\":[{\"name\":\"x\",\"shape\":[1,4],\"datatype\":\"FP32\",\"data\":[1,2,\"3\",4]}]}", NULL, -1, 400,
     "element 2 is string"},
    {"wrong rank", "POST", "/v2/models/m/infer",
     "{\"inputs\":[{\"name\":\"x\",\"shape\":[4],\"datatype\":\"FP32\",\"data\":[1,2,3,4]}]}", NULL, -1, 400,
     "shape has 1 dims, expected 2 [-1,4]"},
    {"wrong dim", "POST", "/v2/models/m/infer",
     "{\"inputs\":[{\"name\":\"x\",\"shape\":[1,5],\"datatype\":\"FP32\",\"data\":[1,2,3,4,5]}]}", NULL, -1, 400,
     "shape [1,5] does not match the model's [-1,4]"},
    {"negative dim", "POST", "/v2/models/m/infer",
     "{\"inputs\":[{\"name\":\"x\",\"shape\":[-1,4],\"datatype\":\"FP32\",\"data\":[1,2,3,4]}]}", NULL, -1, 400,
     "shape[0] must be a non-negative integer"},
    {"batch over max", "POST", "/v2/models/m/infer",
     "{\"inputs\":[{\"name\":\"x\",\"shape\":[9,4],\"datatype\":\"FP32\",\"data\":[]}]}", NULL, -1, 400,
     "batch size 9 is outside [1, 8]"},
    {"too many elements", "POST", "/v2/models/m/infer",
     "{\"inputs\":[{\"name\":\"x\",\"shape\":[8,4],\"datatype\":\"FP32\",\"data\":[]}]}", NULL, -1, 400,
     "32 elements exceed the limit of 16"},
    {"missing input", "POST", "/v2/models/m/infer", "{\"inputs\":[]}", NULL, -1, 400, "missing input 'x'"},
    {"no inputs", "POST", "/v2/models/m/infer", "{\"id\":\"1\"}", NULL, -1, 400, "needs an 'inputs' array"},
    {"unknown input", "POST", "/v2/models/m/infer",
     "{\"inputs\":[{\"name\":\"z\",\"shape\":[1,4],\"datatype\":\"FP32\",\"data\":[1,2,3,4]}]}", NULL, -1, 400,
     "unexpected input 'z'"},
    {"duplicate input", "POST", "/v2/models/m/infer",
     "{\"inputs\":[{\"name\":\"x\",\"shape\":[1,4],\"datatype\":\"FP32\",\"data\":[1,2,3,4]},"
     "{\"name\":\"x\",\"shape\":[1,4],\"datatype\":\"FP32\",\"data\":[1,2,3,4]}]}", NULL, -1, 400, "given twice"},
    {"id not a string", "POST", "/v2/models/m/infer",
     "{\"id\":5,\"inputs\":[{\"name\":\"x\",\"shape\":[1,4],\"datatype\":\"FP32\",\"data\":[1,2,3,4]}]}", NULL, -1,
     400, "'id' must be a string"},
    {"unknown output", "POST", "/v2/models/m/infer",
     "{\"inputs\":[{\"name\":\"x\",\"shape\":[1,4],\"datatype\":\"FP32\",\"data\":[1,2,3,4]}],"
     "\"outputs\":[{\"name\":\"nope\"}]}", NULL, -1, 400, "unknown output 'nope'"},
    {"unknown model", "POST", "/v2/models/nope/infer", "{}", NULL, -1, 404, "unknown model 'nope'"},
    {"unknown version", "POST", "/v2/models/m/versions/7/infer", "{}", NULL, -1, 404, "has no version 7"},
    {"bad version", "POST", "/v2/models/m/versions/x1/infer", "{}", NULL, -1, 400, "invalid model version"},
    {"unavailable model", "POST", "/v2/models/bad_cfg/infer", "{}", NULL, -1, 503, "is not ready"},
    {"GET on infer", "GET", "/v2/models/m/infer", NULL, NULL, -1, 405, "not allowed"},
    {"unknown endpoint", "GET", "/v3/models", NULL, NULL, -1, 404, "unknown endpoint"},
    {"binary size mismatch", "POST", "/v2/models/m/infer", HDR12, "0123456789abcdef", 0, 400,
     "binary_data_size 12, but shape [1,4] of FP32 needs 16 bytes"},
    {"binary extra bytes", "POST", "/v2/models/m/infer", HDR16, "0123456789abcdefXX", 0, 400,
     "binary data is 18 bytes"},
    {"binary short", "POST", "/v2/models/m/infer", HDR16, "0123456789", 0, 400,
     "runs past the 10 bytes of binary data"},
    {"binary header too long", "POST", "/v2/models/m/infer", "{}", NULL, 500, 400,
     "Inference-Header-Content-Length '500'"},
    {"binary without header length", "POST", "/v2/models/m/infer", HDR16, "0123456789abcdef", -1, 400,
     "trailing data"},
    {"data and binary", "POST", "/v2/models/m/infer",
     "{\"inputs\":[{\"name\":\"x\",\"shape\":[1,4],\"datatype\":\"FP32\",\"data\":[1,2,3,4],"
     "\"parameters\":{\"binary_data_size\":16}}]}", NULL, -1, 400, "both 'data' and binary_data_size"},
    {"bad index body", "POST", "/v2/repository/index", "{\"ready\":3}", NULL, -1, 400, "repository index body"},
};
#define N_BAD (int)(sizeof bad_cases / sizeof bad_cases[0])

/* Every bad request gets its exact status while well-formed traffic sent at
 * the same time stays correct. */
static void bad_init(struct req *q, const struct bad_case *b) {
    if (!b->body) { req_init(q, b->method, b->path, NULL, 0, -1); return; }
    char buf[1024];
    size_t jl = strlen(b->body), bl = b->bin ? strlen(b->bin) : 0;
    memcpy(buf, b->body, jl);
    if (bl) memcpy(buf + jl, b->bin, bl);
    req_init(q, b->method, b->path, buf, jl + bl, b->header_len == 0 ? (long)jl : b->header_len);
}

static void test_bad_requests_with_traffic(void) {
    int n_good = 100;
    int n = N_BAD + n_good;
    struct req *qs = calloc((size_t)n, sizeof *qs);
    char body[512];
    for (int i = 0; i < n; i++) {
        if (i % 4 == 0 && i / 4 < N_BAD) {
            bad_init(&qs[i], &bad_cases[i / 4]);
        } else {
            int g = i;
            snprintf(body, sizeof body,
                     "{\"id\":\"g%d\",\"inputs\":[{\"name\":\"x\",\"shape\":[1,4],\"datatype\":\"FP32\","
                     "\"data\":[%d,%d.5,-%d,%d]}]}", g, g, g, g, g * 3);
            req_init(&qs[i], "POST", "/v2/models/m/infer", body, strlen(body), -1);
        }
    }
    /* cases beyond the interleaved slots */
    int extra = N_BAD - (n + 3) / 4;
    struct req *qx = calloc((size_t)(extra > 0 ? extra : 1), sizeof *qx);
    for (int k = 0; k < extra; k++) {
        bad_init(&qx[k], &bad_cases[(n + 3) / 4 + k]);
    }
    run_all(qs, n);
    if (extra > 0) run_all(qx, extra);
    int good_ok = 0, good = 0;
    for (int i = 0; i < n; i++) {
        if (i % 4 == 0 && i / 4 < N_BAD) {
            const struct bad_case *b = &bad_cases[i / 4];
            const char *got = qs[i].r.body ? qs[i].r.body : "";
            CHECK(qs[i].r.status == b->status && strstr(got, b->sub) && !strncmp(got, "{\"error\":\"", 10),
                  "bad case '%s': got %ld %s, want %d with '%s'", b->name, qs[i].r.status, got, b->status, b->sub);
        } else {
            good++;
            char want[512];
            int g = i;
            snprintf(want, sizeof want,
                     "{\"model_name\":\"m\",\"model_version\":\"1\",\"id\":\"g%d\",\"outputs\":[{\"name\":\"%s\","
                     "\"datatype\":\"FP32\",\"shape\":[1,4],\"data\":[%.9g,%.9g,%.9g,%.9g]}]}",
                     g, out_name(), f((float)g), f((float)g + 0.5f), f((float)-g), f((float)(g * 3)));
            if (qs[i].r.status == 200 && qs[i].r.body && !strcmp(qs[i].r.body, want)) good_ok++;
            else if (good - good_ok <= 3)
                printf("  good request %d: %ld %s\n  want %s\n", i, qs[i].r.status, qs[i].r.body, want);
        }
    }
    CHECK(good_ok == good, "well-formed requests beside bad ones: %d of %d correct", good_ok, good);
    for (int k = 0; k < extra; k++) {
        const struct bad_case *b = &bad_cases[(n + 3) / 4 + k];
        const char *got = qx[k].r.body ? qx[k].r.body : "";
        CHECK(qx[k].r.status == b->status && strstr(got, b->sub), "bad case '%s': got %ld %s", b->name,
              qx[k].r.status, got);
    }
    for (int i = 0; i < n; i++) req_free(&qs[i]);
    for (int k = 0; k < extra; k++) req_free(&qx[k]);
    free(qs);
    free(qx);
}

static long stat_field(const char *model, const char *field) {
    char path[128];
    snprintf(path, sizeof path, "/v2/models/%s/stats", model);
    struct resp r = http("GET", path, NULL);
    const char *p = strstr(r.body, field);
    long v = p ? atol(p + strlen(field)) : -1;
    free(r.body);
    return v;
}

/* 500 concurrent requests with distinct inputs (batch 1 to 3): each gets its own rows back. */
static void test_batching(void) {
    long exec0 = stat_field("m", "\"execution_count\":");
    int n = 500;
    struct req *qs = calloc((size_t)n, sizeof *qs);
    int *rows = calloc((size_t)n, sizeof *rows);
    char body[1024];
    long total_rows = 0;
    for (int i = 0; i < n; i++) {
        rows[i] = 1 + i % 3;
        total_rows += rows[i];
        int o = snprintf(body, sizeof body, "{\"id\":\"r%d\",\"inputs\":[{\"name\":\"x\",\"shape\":[%d,4],"
                                            "\"datatype\":\"FP32\",\"data\":[", i, rows[i]);
        for (int k = 0; k < rows[i] * 4; k++)
            o += snprintf(body + o, sizeof body - (size_t)o, "%s%d.25", k ? "," : "", i * 16 + k);
        snprintf(body + o, sizeof body - (size_t)o, "]}]}");
        req_init(&qs[i], "POST", "/v2/models/m/infer", body, strlen(body), -1);
    }
    double t0 = now_s();
    run_all(qs, n);
    double dt = now_s() - t0;
    int ok = 0;
    for (int i = 0; i < n; i++) {
        char want[2048];
        int o = snprintf(want, sizeof want,
                         "{\"model_name\":\"m\",\"model_version\":\"1\",\"id\":\"r%d\",\"outputs\":[{\"name\":\"%s\","
                         "\"datatype\":\"FP32\",\"shape\":[%d,4],\"data\":[", i, out_name(), rows[i]);
        for (int k = 0; k < rows[i] * 4; k++)
            o += snprintf(want + o, sizeof want - (size_t)o, "%s%.9g", k ? "," : "", f((float)(i * 16 + k) + 0.25f));
        snprintf(want + o, sizeof want - (size_t)o, "]}]}");
        if (qs[i].r.status == 200 && qs[i].r.body && !strcmp(qs[i].r.body, want)) ok++;
        else if (i - ok < 3) printf("  request %d: %ld %s\n  want %s\n", i, qs[i].r.status, qs[i].r.body, want);
        req_free(&qs[i]);
    }
    CHECK(ok == n, "batching: %d of %d responses equal their own expected result", ok, n);
    long execs = stat_field("m", "\"execution_count\":") - exec0;
    printf("  batching: %d requests (%ld rows) in %.2f s, %ld executions (%.1f rows per execution)\n", n,
           total_rows, dt, execs, execs > 0 ? (double)total_rows / (double)execs : 0.0);
    CHECK(execs > 0 && execs < n, "requests were batched: %ld executions for %d requests", execs, n);
    free(qs);
    free(rows);
}

static int raw_connect(void) {
    int fd = socket(AF_INET, SOCK_STREAM, 0);
    struct sockaddr_in a = {.sin_family = AF_INET};
    int port = atoi(strrchr(base, ':') + 1);
    a.sin_port = htons((uint16_t)port);
    inet_pton(AF_INET, "127.0.0.1", &a.sin_addr);
    if (connect(fd, (struct sockaddr *)&a, sizeof a)) { close(fd); return -1; }
    return fd;
}

static void test_overload_and_faults(void) {
    /* queue of 2 on slowq: a third concurrent request is refused at once */
    const char *one = "{\"inputs\":[{\"name\":\"x\",\"shape\":[1,4],\"datatype\":\"FP32\",\"data\":[1,2,3,4]}]}";
    struct req qs[3];
    for (int i = 0; i < 3; i++) req_init(&qs[i], "POST", "/v2/models/slowq/infer", one, strlen(one), -1);
    run_all(qs, 3);
    int n200 = 0, n503 = 0;
    for (int i = 0; i < 3; i++) {
        if (qs[i].r.status == 200) n200++;
        if (qs[i].r.status == 503 && strstr(qs[i].r.body, "queue is full")) n503++;
        req_free(&qs[i]);
    }
    CHECK(n200 == 2 && n503 == 1, "queue full: %d ok, %d rejected (want 2, 1)", n200, n503);

    /* A request refused because the queue is full is answered before its
     * body is read; the body is drained, not stored, so the connection
     * carries the next request. */
    {
        long rejected0 = stat_field("slowq", "\"REJECTED\":");
        struct req fill[2];
        CURLM *mh = curl_multi_init();
        for (int i = 0; i < 2; i++) {
            req_init(&fill[i], "POST", "/v2/models/slowq/infer", one, strlen(one), -1);
            curl_multi_add_handle(mh, fill[i].h);
        }
        int running = 1;
        bool queued = false;
        double t0 = now_s();
        while (running && !queued && now_s() - t0 < 5) {
            curl_multi_perform(mh, &running);
            curl_multi_poll(mh, NULL, 0, 5, NULL);
            struct resp mr = http("GET", "/metrics", NULL);
            queued = mr.body && strstr(mr.body, "kiln_inference_pending_request_count{model=\"slowq\",version=\"1\"} 2");
            free(mr.body);
        }
        CHECK(queued, "slowq holds 2 queued requests");
        /* 300 KB body: several reads, all dropped */
        size_t big = 300u << 10;
        char *bb = malloc(big);
        memset(bb, ' ', big);
        memcpy(bb, one, strlen(one));
        struct req q;
        req_init(&q, "POST", "/v2/models/slowq/infer", bb, big, -1);
        double t1 = now_s();
        CURLcode rc = curl_easy_perform(q.h);
        req_done(&q);
        CHECK(rc == CURLE_OK && q.r.status == 503 && q.r.body && strstr(q.r.body, "queue is full"),
              "full queue, big body: %d %ld %s", (int)rc, q.r.status, q.r.body ? q.r.body : "");
        CHECK(now_s() - t1 < 0.3, "refused while the queue waits (%.3f s)", now_s() - t1);
        /* same handle, same connection: the next request is served */
        free(q.r.body);
        q.r.body = NULL;
        q.r.len = 0;
        char url[512];
        snprintf(url, sizeof url, "%s/v2/models/m/infer", base);
        curl_easy_setopt(q.h, CURLOPT_URL, url);
        curl_easy_setopt(q.h, CURLOPT_POSTFIELDS, one);
        curl_easy_setopt(q.h, CURLOPT_POSTFIELDSIZE_LARGE, (curl_off_t)strlen(one));
        rc = curl_easy_perform(q.h);
        req_done(&q);
        long connects = -1;
        curl_easy_getinfo(q.h, CURLINFO_NUM_CONNECTS, &connects);
        CHECK(rc == CURLE_OK && q.r.status == 200, "request after a refusal: %d %ld %s", (int)rc, q.r.status,
              q.r.body ? q.r.body : "");
        CHECK(connects == 0, "request after a refusal reused the connection (%ld new)", connects);
        req_free(&q);
        free(bb);
        while (running) {
            curl_multi_perform(mh, &running);
            if (running) curl_multi_poll(mh, NULL, 0, 50, NULL);
        }
        int filled_ok = 0;
        for (int i = 0; i < 2; i++) {
            req_done(&fill[i]);
            if (fill[i].r.status == 200) filled_ok++;
            curl_multi_remove_handle(mh, fill[i].h);
            req_free(&fill[i]);
        }
        curl_multi_cleanup(mh);
        CHECK(filled_ok == 2, "queued requests answered: %d of 2", filled_ok);
        long rejected = stat_field("slowq", "\"REJECTED\":");
        CHECK(rejected == rejected0 + 1, "rejection counted: %ld -> %ld", rejected0, rejected);
    }

    /* default timeout (100 ms) expires long before the 3 s batching delay */
    double t0 = now_s();
    struct resp r = http("POST", "/v2/models/tmo/infer", one);
    double dt = now_s() - t0;
    EXPECT_SUB(r, 504, "timed out");
    CHECK(dt < 1.0, "timeout answered after %.3f s", dt);
    free(r.body);
    /* per-request timeout parameter */
    r = http("POST", "/v2/models/slowq/infer",
             "{\"parameters\":{\"timeout\":50000},\"inputs\":[{\"name\":\"x\",\"shape\":[1,4],\"datatype\":\"FP32\","
             "\"data\":[1,2,3,4]}]}");
    EXPECT_SUB(r, 504, "timed out");
    free(r.body);

    /* a client that disconnects has its queued work dropped */
    long canceled0 = stat_field("slowq", "\"CANCELED\":");
    int fd = raw_connect();
    char req[512];
    int len = snprintf(req, sizeof req,
                       "POST /v2/models/slowq/infer HTTP/1.1\r\nHost: x\r\nContent-Length: %zu\r\n\r\n%s",
                       strlen(one), one);
    CHECK(fd >= 0 && write(fd, req, (size_t)len) == len, "raw write");
    usleep(50000);
    close(fd);
    usleep(300000);
    long canceled = stat_field("slowq", "\"CANCELED\":");
    CHECK(canceled == canceled0 + 1, "dropped client canceled: %ld -> %ld", canceled0, canceled);

    /* Content-Length over the limit is refused before the body is read */
    fd = raw_connect();
    const char *huge = "POST /v2/models/m/infer HTTP/1.1\r\nHost: x\r\nContent-Length: 1000000000\r\n\r\n{";
    CHECK(fd >= 0 && write(fd, huge, strlen(huge)) == (ssize_t)strlen(huge), "raw write");
    char buf[512] = {0};
    ssize_t got = fd >= 0 ? read(fd, buf, sizeof buf - 1) : -1;
    CHECK(got > 12 && !strncmp(buf, "HTTP/1.1 413", 12), "oversized Content-Length: %s", buf);
    if (fd >= 0) close(fd);

    /* an oversized body sent chunked (no Content-Length) is cut off too */
    size_t big = (2u << 20);
    char *bb = malloc(big);
    memset(bb, ' ', big);
    memcpy(bb, "{\"inputs\":[", 11);
    struct req q;
    req_init(&q, "POST", "/v2/models/m/infer", bb, big, -1);
    q.hdrs = curl_slist_append(q.hdrs, "Transfer-Encoding: chunked");
    curl_easy_setopt(q.h, CURLOPT_HTTPHEADER, q.hdrs);
    curl_easy_perform(q.h);
    req_done(&q);
    CHECK(q.r.status == 413, "chunked oversized body: %ld %s", q.r.status, q.r.body ? q.r.body : "");
    req_free(&q);
    free(bb);

    /* the server is still healthy */
    r = http("POST", "/v2/models/m/infer", one);
    CHECK(r.status == 200, "after faults: %ld %s", r.status, r.body);
    free(r.body);
}

static void test_repository(void) {
    struct resp r = http("POST", "/v2/repository/index", "");
    CHECK(r.status == 200 && strstr(r.body, "{\"name\":\"m\",\"version\":\"1\",\"state\":\"READY\",\"reason\":\"\"}"),
          "index: %ld %s", r.status, r.body);
    CHECK(strstr(r.body, "config.json: field 'dynamic_batching.max_queue_delay': unknown field") != NULL,
          "bad config named with file and field: %s", r.body);
    CHECK(strstr(r.body, "config.json: field 'max_batch_size': expected an integer") != NULL,
          "bad config type named: %s", r.body);
    CHECK(strstr(r.body, "{\"name\":\"bad_model\",\"state\":\"UNAVAILABLE\"") != NULL, "bad model listed: %s", r.body);
    CHECK(strstr(r.body, "config.json: field 'precision': int8 needs calibration") != NULL,
          "int8 of an .onnx refused: %s", r.body);
    CHECK(strstr(r.body, "config.json: field 'precision': 'fp16' is not one of fp32, bf16, int8, auto") != NULL,
          "unknown precision refused: %s", r.body);
    CHECK(strstr(r.body, "config.json: field 'precision': 'int8', but ") != NULL &&
              strstr(r.body, "was compiled at fp32") != NULL,
          "plan precision mismatch refused: %s", r.body);
    free(r.body);
    r = http("GET", "/v2/models/p_bf16/config", NULL);
    EXPECT_SUB(r, 200, kiln_cpu_has_bf16_for_test() ? "\"precision\":\"bf16\"" : "\"precision\":\"fp32\"");
    free(r.body);
    r = http("GET", "/v2/models/k_auto/config", NULL);
    EXPECT_SUB(r, 200, "\"precision\":\"fp32\"");
    free(r.body);
    r = http("POST", "/v2/models/k_auto/infer",
             "{\"inputs\":[{\"name\":\"x\",\"shape\":[1,4],\"datatype\":\"FP32\",\"data\":[1.5,-2,0,3]}]}");
    EXPECT(r, 200, "{\"model_name\":\"k_auto\",\"model_version\":\"1\",\"outputs\":[{\"name\":\"x\",\"datatype\":\"FP32\","
                   "\"shape\":[1,4],\"data\":[1.5,-2,0,3]}]}");
    free(r.body);
    r = http("POST", "/v2/repository/index", "{\"ready\":true}");
    CHECK(r.status == 200 && !strstr(r.body, "bad_cfg") && strstr(r.body, "\"m\""), "ready index: %s", r.body);
    free(r.body);

    r = http("POST", "/v2/repository/models/t_FP64/unload", "");
    EXPECT(r, 200, "");
    free(r.body);
    r = http("GET", "/v2/models/t_FP64/ready", NULL);
    EXPECT(r, 503, "{\"name\":\"t_FP64\",\"ready\":false}");
    free(r.body);
    r = http("POST", "/v2/models/t_FP64/infer", "{}");
    EXPECT(r, 503, "{\"error\":\"model 't_FP64' is not ready (unavailable): unloaded\"}");
    free(r.body);
    r = http("POST", "/v2/repository/models/t_FP64/load", "");
    EXPECT(r, 200, "");
    free(r.body);
    r = http("GET", "/v2/models/t_FP64/ready", NULL);
    EXPECT(r, 200, "{\"name\":\"t_FP64\",\"ready\":true}");
    free(r.body);
    r = http("POST", "/v2/repository/models/missing/load", "");
    EXPECT_SUB(r, 404, "no such model directory");
    free(r.body);
    r = http("POST", "/v2/repository/models/missing/unload", "");
    EXPECT(r, 404, "{\"error\":\"unknown model 'missing'\"}");
    free(r.body);
    r = http("POST", "/v2/repository/models/bad_cfg/load", "");
    EXPECT_SUB(r, 400, "unknown field");
    free(r.body);

    /* reload with a new version while requests wait on the old one: they finish on version 1 */
    const char *one = "{\"inputs\":[{\"name\":\"x\",\"shape\":[1,4],\"datatype\":\"FP32\",\"data\":[1,2,3,4]}]}";
    struct req qs[3];
    for (int i = 0; i < 2; i++) req_init(&qs[i], "POST", "/v2/models/slowq/infer", one, strlen(one), -1);
    add_model("slowq", 2, GEN_IDENTITY, 1, NULL);
    req_init(&qs[2], "POST", "/v2/repository/models/slowq/load", "", 0, -1);
    run_all(qs, 3);
    int old_ok = 0;
    for (int i = 0; i < 2; i++)
        if (qs[i].r.status == 200 && qs[i].r.body && strstr(qs[i].r.body, "\"model_version\":\"1\"")) old_ok++;
    /* the load may have landed before the infers: then they ran on version 2 */
    int new_ok = 0;
    for (int i = 0; i < 2; i++)
        if (qs[i].r.status == 200 && qs[i].r.body && strstr(qs[i].r.body, "\"model_version\":\"2\"")) new_ok++;
    CHECK(qs[2].r.status == 200 && old_ok + new_ok == 2, "reload under traffic: load %ld, %d on v1, %d on v2",
          qs[2].r.status, old_ok, new_ok);
    for (int i = 0; i < 3; i++) req_free(&qs[i]);
    r = http("POST", "/v2/models/slowq/infer", one);
    EXPECT_SUB(r, 200, "\"model_version\":\"2\"");
    free(r.body);
    r = http("GET", "/v2/models/slowq/versions/1", NULL);
    EXPECT_SUB(r, 404, "has no version 1");
    free(r.body);
}

static void test_metrics(void) {
    struct resp r = http("GET", "/metrics", NULL);
    CHECK(r.status == 200, "metrics status %ld", r.status);
    CHECK(!strcmp(r.ctype, " text/plain; version=0.0.4"), "metrics content type '%s'", r.ctype);
    static const char *const want[] = {
        "# TYPE kiln_inference_request_success counter",
        "kiln_inference_request_success{model=\"m\",version=\"1\"} ",
        "kiln_inference_request_failure{model=\"m\",version=\"1\",reason=\"INVALID\"} ",
        "kiln_inference_request_failure{model=\"slowq\",version=\"2\",reason=\"REJECTED\"} 0",
        "kiln_inference_count{model=\"m\",version=\"1\"} ",
        "kiln_inference_exec_count{model=\"m\",version=\"1\"} ",
        "kiln_inference_pending_request_count{model=\"m\",version=\"1\"} 0",
        "kiln_inference_inflight_request_count{model=\"m\",version=\"1\"} 0",
        "kiln_inference_queue_duration_us_bucket{model=\"m\",version=\"1\",le=\"+Inf\"} ",
        "kiln_inference_compute_duration_us_count{model=\"m\",version=\"1\"} ",
        "kiln_inference_request_duration_us_sum{model=\"m\",version=\"1\"} ",
        "kiln_inference_batch_size_bucket{model=\"m\",version=\"1\",le=\"1\"} ",
        "kiln_instance_busy_us_total{model=\"m\",version=\"1\",instance=\"1\"} ",
        "kiln_instance_arena_bytes{model=\"m\",version=\"1\",instance=\"0\"} ",
        "kiln_model_weight_bytes{model=\"m\",version=\"1\"} ",
        "# TYPE kiln_inference_request_duration_us histogram",
    };
    for (size_t i = 0; i < sizeof want / sizeof want[0]; i++)
        CHECK(r.body && strstr(r.body, want[i]), "metrics line '%s' missing", want[i]);
    free(r.body);
    r = http("GET", "/v2/models/m/stats", NULL);
    EXPECT_SUB(r, 200, "{\"model_stats\":[{\"name\":\"m\",\"version\":\"1\",\"last_inference\":");
    CHECK(strstr(r.body, "\"batch_stats\":[{\"batch_size\":") != NULL, "batch stats: %s", r.body);
    free(r.body);
    r = http("GET", "/v2/models/stats", NULL);
    EXPECT_SUB(r, 200, "{\"name\":\"t_BOOL\"");
    free(r.body);
    r = http("GET", "/v2/models/nope/stats", NULL);
    EXPECT(r, 404, "{\"error\":\"unknown model 'nope'\"}");
    free(r.body);
}

/* The real binary: SIGTERM while requests are queued; all finish, exit 0. */
static void test_sigterm(const char *kiln) {
    char drain_repo[300];
    snprintf(drain_repo, sizeof drain_repo, "%s/drain_repo", repo);
    mkdir(drain_repo, 0755);
    char saved[256];
    snprintf(saved, sizeof saved, "%s", repo);
    snprintf(repo, sizeof repo, "%s", drain_repo);
    add_model("d", 1, GEN_IDENTITY, 1, "{\"max_batch_size\": 64, \"dynamic_batching\": {\"max_queue_delay_us\": 300000}}");
    snprintf(repo, sizeof repo, "%s", saved);
    int pfd[2];
    if (pipe(pfd)) return;
    pid_t pid = fork();
    if (pid == 0) {
        dup2(pfd[1], 1);
        close(pfd[0]);
        execl(kiln, kiln, "serve", "--model-repository", drain_repo, "--http-port", "0", "--quiet", (char *)NULL);
        _exit(127);
    }
    close(pfd[1]);
    FILE *out = fdopen(pfd[0], "r");
    char line[256] = {0};
    int port = 0;
    while (fgets(line, sizeof line, out))
        if (sscanf(line, "kiln serve: listening on 127.0.0.1:%d", &port) == 1) break;
    CHECK(port > 0, "child printed its port: %s", line);
    if (port <= 0) { kill(pid, SIGKILL); waitpid(pid, NULL, 0); fclose(out); return; }
    char saved_base[64];
    snprintf(saved_base, sizeof saved_base, "%s", base);
    snprintf(base, sizeof base, "http://127.0.0.1:%d", port);
    for (int i = 0; i < 200; i++) {
        struct resp r = http("GET", "/v2/health/ready", NULL);
        long st = r.status;
        free(r.body);
        if (st == 200) break;
        usleep(20000);
    }
    int n = 20;
    struct req qs[20];
    const char *one = "{\"inputs\":[{\"name\":\"x\",\"shape\":[1,4],\"datatype\":\"FP32\",\"data\":[1,2,3,4]}]}";
    for (int i = 0; i < n; i++) req_init(&qs[i], "POST", "/v2/models/d/infer", one, strlen(one), -1);
    CURLM *m = curl_multi_init();
    for (int i = 0; i < n; i++) curl_multi_add_handle(m, qs[i].h);
    int running = 1;
    bool signalled = false;
    double t0 = now_s();
    while (running) {
        curl_multi_perform(m, &running);
        if (!signalled) {
            /* wait until the server holds all requests in its queue, then SIGTERM */
            struct resp r = http("GET", "/metrics", NULL);
            bool all_queued = r.body && strstr(r.body, "kiln_inference_pending_request_count{model=\"d\",version=\"1\"} 20");
            free(r.body);
            if (all_queued || now_s() - t0 > 5) {
                kill(pid, SIGTERM);
                signalled = true;
                CHECK(all_queued, "20 requests queued before SIGTERM");
            }
        }
        if (running) curl_multi_poll(m, NULL, 0, 20, NULL);
    }
    int ok = 0;
    for (int i = 0; i < n; i++) {
        req_done(&qs[i]);
        if (qs[i].r.status == 200) ok++;
        curl_multi_remove_handle(m, qs[i].h);
        req_free(&qs[i]);
    }
    curl_multi_cleanup(m);
    CHECK(ok == n, "SIGTERM drain: %d of %d accepted requests answered 200", ok, n);
    int status = 0;
    waitpid(pid, &status, 0);
    CHECK(WIFEXITED(status) && WEXITSTATUS(status) == 0, "server exit status %d", status);
    struct resp r = http("GET", "/v2/health/live", NULL);
    CHECK(r.status == -1, "server gone after drain: %ld", r.status);
    free(r.body);
    fclose(out);
    snprintf(base, sizeof base, "%s", saved_base);
}

int main(int argc, char **argv) {
    signal(SIGPIPE, SIG_IGN);
    /* 500 concurrent connections need both ends' descriptors in this process */
    struct rlimit rl;
    if (getrlimit(RLIMIT_NOFILE, &rl) == 0 && rl.rlim_cur < 4096) {
        rl.rlim_cur = rl.rlim_max < 4096 ? rl.rlim_max : 4096;
        setrlimit(RLIMIT_NOFILE, &rl);
    }
    curl_global_init(CURL_GLOBAL_DEFAULT);
    snprintf(repo, sizeof repo, "/tmp/kiln-serve-test-XXXXXX");
    if (!mkdtemp(repo)) { perror("mkdtemp"); return 1; }
    build_repo();
    struct kiln_server_options o;
    kiln_server_options_init(&o);
    o.repo_dir = repo;
    o.port = 0;
    o.quiet = 1;
    o.max_body_bytes = 1u << 20;
    o.max_tensor_elems = 16;
    struct kiln_server *s = NULL;
    kiln_error err = {0};
    if (kiln_server_start(&o, &s, &err)) { printf("FAIL: server start: %s\n", err.msg); return 1; }
    snprintf(base, sizeof base, "http://127.0.0.1:%d", kiln_server_port(s));
    for (int i = 0; i < 500 && !kiln_server_initial_load_done(s); i++) usleep(10000);
    CHECK(kiln_server_initial_load_done(s), "initial load finished");

    test_health_and_metadata();
    test_infer_json();
    test_infer_binary_input();
    test_unbatched();
    test_dtypes();
    test_bad_requests_with_traffic();
    test_batching();
    test_overload_and_faults();
    test_repository();
    test_metrics();
    int left = kiln_server_shutdown(s, 10);
    CHECK(left == 0, "in-process shutdown left %d requests", left);
    if (argc > 1) test_sigterm(argv[1]);
    else printf("note: no kiln binary given; SIGTERM test skipped\n");

    char cmd[300];
    snprintf(cmd, sizeof cmd, "rm -rf '%s'", repo);
    if (system(cmd) != 0) printf("note: could not remove %s\n", repo);
    curl_global_cleanup();
    printf("%d passed, %d failed\n", n_pass, n_fail);
    return n_fail ? 1 : 0;
}
