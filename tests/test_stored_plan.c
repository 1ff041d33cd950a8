/*
 * test_stored_plan.c — plans stored in a .kiln file (docs/kiln-format.md,
 * "Stored plans").
 *
 * A small CNN with a symbolic batch dim (convolutions between which the
 * planner picks a blocked or channels-last layout, a fused residual, a
 * Shape -> Gather -> Concat -> Reshape chain folded at plan time) is compiled
 * with batch sizes 1 and 2. Then:
 *   - at batches 1 and 2 a session on the .kiln takes the stored plan
 *     (kiln_session_plan_stored) and its outputs are bit-identical to the
 *     .onnx's; at batch 3 (not stored) it plans, with the same outputs;
 *   - reference kernels and another activation layout do not take it;
 *   - a file whose header names other CPU features loads with a warning,
 *     re-plans (the stored plan is not trusted) and gives the same outputs;
 *   - a version 3 file (no stored plans) still loads and runs;
 *   - `kiln compile --batch 1,2 --report` prints the arena bytes of each.
 */
#include "plan/artifact.h"
#include "plan/plan.h"
#include "support/kt.h"
#include "support/onnxgen.h"

#include <stdlib.h>
#include <string.h>
#include <sys/wait.h>
#include <unistd.h>

#define C 8

static og_model *cnn_model(void) {
    og_model *om = og_model_new(17);
    og_graph *g = og_model_graph(om);
    int64_t xd[4] = {-1, C, 6, 6}, wd[4] = {C, C, 3, 3}, bd[1] = {C}, gd[2] = {10, C},
            gb[1] = {10}, yd[2] = {-1, 10}, one[1] = {1};
    const char *sym[4] = {"N", NULL, NULL, NULL};
    float w1[C * C * 9], w2[C * C * 9], b1[C], b2[C], gw[10 * C], gbv[10];
    for (int i = 0; i < C * C * 9; i++) {
        w1[i] = (float)((i * 37) % 23 - 11) / 32.0f;
        w2[i] = (float)((i * 53) % 19 - 9) / 32.0f;
    }
    for (int i = 0; i < C; i++) b1[i] = (float)(i % 3) / 8.0f, b2[i] = (float)(i % 5 - 2) / 8.0f;
    for (int i = 0; i < 10 * C; i++) gw[i] = (float)((i * 7) % 13 - 6) / 8.0f;
    for (int i = 0; i < 10; i++) gbv[i] = (float)i / 16.0f;
    int64_t idx0 = 0, minus1 = -1;
    og_input_sym(g, "x", OG_FLOAT, 4, xd, sym);
    og_init_f32(g, "w1", 4, wd, w1);
    og_init_f32(g, "b1", 1, bd, b1);
    og_init_f32(g, "w2", 4, wd, w2);
    og_init_f32(g, "b2", 1, bd, b2);
    og_init_f32(g, "gw", 2, gd, gw);
    og_init_f32(g, "gb", 1, gb, gbv);
    og_init_i64(g, "i0", 0, NULL, &idx0);
    og_init_i64(g, "m1", 1, one, &minus1);
    int64_t pads[4] = {1, 1, 1, 1};
    og_node *n = og_node_add(g, "Conv", "x,w1,b1", "c1");
    og_attr_ints(n, "pads", pads, 4);
    og_node_add(g, "Relu", "c1", "r1");
    n = og_node_add(g, "Conv", "r1,w2,b2", "c2");
    og_attr_ints(n, "pads", pads, 4);
    og_node_add(g, "Add", "c2,r1", "s");   /* residual: fused into the Conv */
    og_node_add(g, "Relu", "s", "r2");
    og_node_add(g, "GlobalAveragePool", "r2", "p");
    /* the batch dim read at run time: folded at plan time once shapes are known */
    og_node_add(g, "Shape", "p", "sh");
    og_node_add(g, "Gather", "sh,i0", "n0");
    n = og_node_add(g, "Unsqueeze", "n0,i0u", "n1");
    int64_t zero1[1] = {0};
    og_init_i64(g, "i0u", 1, one, zero1);
    n = og_node_add(g, "Concat", "n1,m1", "shape3");
    og_attr_int(n, "axis", 0);
    og_node_add(g, "Reshape", "p,shape3", "f");
    n = og_node_add(g, "Gemm", "f,gw,gb", "y");
    og_attr_int(n, "transB", 1);
    og_output(g, "y", OG_FLOAT, 2, yd);
    return om;
}

static float *input_for(int64_t batch) {
    size_t n = (size_t)batch * C * 36;
    float *x = malloc(n * sizeof *x);
    for (size_t i = 0; x && i < n; i++) x[i] = (float)((i * 29) % 41) / 20.0f - 1.0f;
    return x;
}

/* Runs a fresh session of m at this batch; copies output 0 into *out. Returns
 * kiln_session_plan_stored, or -1 on failure. */
static int run_at(kiln_model *m, const kiln_session_options *so, int64_t batch, float **out, size_t *nbytes) {
    kiln_error err;
    kiln_session *s = NULL;
    *out = NULL;
    if (!EXPECT_OK("session", kiln_session_create(m, so, &s, &err), &err)) return -1;
    float *x = input_for(batch);
    kiln_tensor in = {.name = "x", .dtype = KILN_DTYPE_FLOAT, .rank = 4, .dims = {batch, C, 6, 6},
                      .data = x, .nbytes = (size_t)batch * C * 36 * sizeof(float)};
    kiln_tensor o;
    int stored = -1;
    kiln_status st = kiln_session_run(s, &in, 1, &o, 1, &err);
    if (EXPECT_OK("run", st, &err)) {
        stored = kiln_session_plan_stored(s);
        CHECK(o.rank == 2 && o.dims[0] == batch && o.dims[1] == 10, "output shape");
        *out = malloc(o.nbytes);
        if (*out) memcpy(*out, o.data, o.nbytes);
        *nbytes = o.nbytes;
        /* a second run on the same plan gives the same result */
        if (EXPECT_OK("rerun", kiln_session_run(s, &in, 1, &o, 1, &err), &err))
            CHECK(*out && !memcmp(*out, o.data, o.nbytes), "second run differs");
    }
    free(x);
    kiln_session_free(s);
    return stored;
}

/* Output of `plan` at `batch` must be bit-identical to the .onnx's; returns plan_stored. */
static int compare(const char *what, kiln_model *onnx, kiln_model *plan, const kiln_session_options *so,
                   int64_t batch) {
    float *a = NULL, *b = NULL;
    size_t na = 0, nb = 0;
    int sa = run_at(onnx, so, batch, &a, &na);
    int sb = run_at(plan, so, batch, &b, &nb);
    CHECK(sa == 0, "%s: a session on the .onnx says its plan is stored", what);
    CHECK(a && b && na == nb && !memcmp(a, b, na), "%s batch %lld: outputs differ from the .onnx's", what,
          (long long)batch);
    free(a);
    free(b);
    return sb;
}

static kiln_model *load(const char *path) {
    kiln_error err;
    kiln_model *m = NULL;
    kiln_status s = kiln_model_load(path, NULL, &m, &err);
    EXPECT_OK(path, s, &err);
    return s ? NULL : m;
}

int main(void) {
    char *dir = kt_mkdtemp("storedplan");
    char onnx_path[4096], kiln_path[4096], other[4096];
    snprintf(onnx_path, sizeof onnx_path, "%s/cnn.onnx", dir);
    snprintf(kiln_path, sizeof kiln_path, "%s/cnn.kiln", dir);
    og_model *om = cnn_model();
    CHECK(og_model_save(om, onnx_path) == 0, "cannot write %s", onnx_path);
    og_model_free(om);

    kiln_model *onnx = load(onnx_path);
    if (!onnx) return kt_finish("test_stored_plan");
    int32_t batches[2] = {1, 2};
    kiln_error err;
    EXPECT_OK("save plan", kiln_model_save_plan(onnx, kiln_path, batches, 2, &err), &err);
    kiln_model *plan = load(kiln_path);
    if (!plan) return kt_finish("test_stored_plan");
    kiln_session_options so = kiln_session_options_default();
    so.n_threads = 2;

    /* what was stored: both batch sizes, with folded values and activation layouts */
    struct kiln_artifact art;
    if (EXPECT_OK("map", kiln_artifact_map(kiln_path, &art, &err), &err)) {
        CHECK(art.n_plans == 2 && art.plans[0].batch == 1 && art.plans[1].batch == 2, "%d stored plans",
              art.n_plans);
        for (int32_t i = 0; i < art.n_plans; i++) {
            int folded = 0, laid_out = 0;
            for (int32_t v = 0; v < art.plans[i].n_values; v++) {
                folded += art.plans[i].kind[v] == KILN_VK_FOLDED;
                laid_out += art.plans[i].vals[v].layout != KILN_LAYOUT_PLAIN;
            }
            CHECK(folded > 0 && laid_out > 0 && art.plans[i].arena_bytes > 0 && art.plans[i].n_steps > 0,
                  "plan %d: %d folded values, %d not plain", i, folded, laid_out);
        }
        kiln_graph_free(art.graph);
        kiln_artifact_unmap(&art);
    }

    CHECK(kiln_model_warning(plan) == NULL, "warning on this CPU's own plan: %s", kiln_model_warning(plan));
    CHECK(compare("stored", onnx, plan, &so, 1) == 1, "batch 1: the stored plan was not used");
    CHECK(compare("stored", onnx, plan, &so, 2) == 1, "batch 2: the stored plan was not used");
    CHECK(compare("not stored", onnx, plan, &so, 3) == 0, "batch 3 was never compiled, yet a plan was stored");
    kiln_session_options ref = so;
    ref.reference_kernels = 1;
    CHECK(compare("reference", onnx, plan, &ref, 2) == 0, "reference kernels took the stored plan");
    kiln_session_options plain = so;
    plain.activation_layout = 1;
    CHECK(compare("plain layout", onnx, plan, &plain, 1) == 0, "another layout request took the stored plan");

    size_t len = 0;
    uint8_t *good = kt_read_file(kiln_path, &len);
    struct kiln_artifact_header h;
    CHECK(good && len >= sizeof h, "cannot read %s", kiln_path);
    if (good && len >= sizeof h) {
        memcpy(&h, good, sizeof h);
        CHECK(h.format_version == KILN_ARTIFACT_VERSION && h.n_plans == 2, "version %u, %u stored plans",
              h.format_version, h.n_plans);

        /* compiled for another CPU: loads with a warning, re-plans */
        uint8_t *b = malloc(len);
        memcpy(b, good, len);
        memset(b + offsetof(struct kiln_artifact_header, cpu_features), 0, sizeof h.cpu_features);
        snprintf((char *)b + offsetof(struct kiln_artifact_header, cpu_features), sizeof h.cpu_features,
                 "sse4.2 avx avx2 fma avx512f fake-feature");
        snprintf(other, sizeof other, "%s/foreign.kiln", dir);
        CHECK(kt_write_file(other, b, len) == 0, "write %s", other);
        kiln_model *foreign = load(other);
        if (foreign) {
            const char *w = kiln_model_warning(foreign);
            CHECK(w && strstr(w, "fake-feature") && strstr(w, "re-planned"), "no warning: %s", w ? w : "(none)");
            CHECK(compare("foreign CPU", onnx, foreign, &so, 1) == 0, "a foreign CPU's stored plan was trusted");
            CHECK(compare("foreign CPU", onnx, foreign, &so, 2) == 0, "a foreign CPU's stored plan was trusted");
            kiln_model_free(foreign);
        }

        /* version 3: the header without the stored-plans fields, and no section */
        size_t v3 = KILN_ARTIFACT_V3_HEADER_SIZE;
        size_t end =
            (size_t)(h.n_packed ? h.packed_off + h.packed_len : h.weights_off + h.weights_len);
        memset(b, 0, len);
        memcpy(b, good, v3);
        memcpy(b + v3, good + h.meta_off, (size_t)h.meta_len);
        memcpy(b + h.weights_off, good + h.weights_off, end - (size_t)h.weights_off);
        struct kiln_artifact_header h3 = h;
        h3.format_version = 3;
        h3.header_size = v3;
        h3.meta_off = v3;
        h3.file_size = end;
        memcpy(b, &h3, v3);
        snprintf(other, sizeof other, "%s/v3.kiln", dir);
        CHECK(kt_write_file(other, b, end) == 0, "write %s", other);
        kiln_model *old = load(other);
        if (old) {
            CHECK(compare("version 3", onnx, old, &so, 2) == 0, "a version 3 file has no stored plans");
            kiln_model_free(old);
        }
        /* version 2: refused, with a message that says what to do */
        h3.format_version = 2;
        memcpy(b, &h3, v3);
        CHECK(kt_write_file(other, b, end) == 0, "write %s", other);
        kiln_model *m2 = NULL;
        EXPECT_ERR("version 2", kiln_model_load(other, NULL, &m2, &err), &err, KILN_ERR_UNSUPPORTED,
                   "version 2", "recompile");
        kiln_model_free(m2);
        free(b);
    }
    free(good);

    /* the command line: --batch and the report's arena bytes per batch size */
    char *out = NULL;
    char *argv[] = {(char *)kt_cli(), "compile", onnx_path, "-o", kiln_path, "--batch", "1,2", "--report", NULL};
    int ws = kt_run_capture(argv, &out);
    CHECK(ws != -1 && WIFEXITED(ws) && WEXITSTATUS(ws) == 0, "kiln compile failed: %s", out ? out : "");
    CHECK(out && strstr(out, "batch 1: arena") && strstr(out, "batch 2: arena"), "no arena bytes per batch: %s",
          out ? out : "");
    free(out);
    kiln_model *cli = load(kiln_path);
    if (cli) {
        CHECK(compare("kiln compile", onnx, cli, &so, 2) == 1, "the CLI's plan for batch 2 was not used");
        kiln_model_free(cli);
    }

    kiln_model_free(plan);
    kiln_model_free(onnx);
    kt_rm_rf(dir);
    free(dir);
    return kt_finish("test_stored_plan");
}
