/*
 * test_instances.c — compiled plans (.kiln) across processes and against
 * their source:
 *
 * 1. Two processes that load the same .kiln share its weight pages. The
 *    plan of a generated model (2 MiB of weights), and of
 *    ../shared/models/mobilenet_v2 when present, is compiled with
 *    `kiln compile`; two forked children (the parent has not touched the
 *    library, so each maps the file itself) load it, run it once and hold it.
 *    While both hold it, /proc/PID/smaps of each must show the plan's mapping
 *    with at least 90% of the weight bytes resident and shared (Shared_Clean
 *    + Shared_Dirty), and its PSS at most 3/4 of its RSS (pages counted half
 *    in each process).
 * 2. A .kiln gives bit-identical outputs to the .onnx it was compiled from
 *    (same inputs, same thread count): generated models (MLP, conv with
 *    BatchNormalization folded, If with subgraph constants) and the models in
 *    ../shared/models except resnet50 (kept out for time).
 */
#include "mem.h"
#include "plan/artifact.h"
#include "support/kt.h"
#include "support/onnxgen.h"

#include <errno.h>
#include <math.h>
#include <poll.h>
#include <signal.h>
#include <stdlib.h>
#include <string.h>
#include <sys/wait.h>
#include <unistd.h>

/* ---- models ----------------------------------------------------------------- */

static float fval(uint32_t i, uint32_t salt) {
    uint32_t h = (i + salt) * 2654435761u;
    return (float)((h >> 8) % 2001) / 1000.0f - 1.0f;
}

/* x[1,256] -> MatMul 256x1024 -> Relu -> MatMul 1024x256 -> y: 2 MiB of weights */
static og_model *big_mlp(void) {
    og_model *om = og_model_new(17);
    og_graph *g = og_model_graph(om);
    int64_t xd[2] = {1, 256}, w1d[2] = {256, 1024}, w2d[2] = {1024, 256};
    float *w = malloc(256 * 1024 * sizeof *w);
    if (!w) abort();
    og_input(g, "x", OG_FLOAT, 2, xd);
    for (uint32_t i = 0; i < 256 * 1024; i++) w[i] = fval(i, 1) / 16.0f;
    og_init_f32(g, "w1", 2, w1d, w);
    for (uint32_t i = 0; i < 256 * 1024; i++) w[i] = fval(i, 2) / 32.0f;
    og_init_f32(g, "w2", 2, w2d, w);
    free(w);
    og_node_add(g, "MatMul", "x,w1", "h");
    og_node_add(g, "Relu", "h", "r");
    og_node_add(g, "MatMul", "r,w2", "y");
    og_output(g, "y", OG_FLOAT, 2, xd);
    return om;
}

/* Conv -> BatchNormalization (folded by the passes) -> Relu -> GlobalAveragePool -> Flatten -> Gemm */
static og_model *conv_bn(void) {
    og_model *om = og_model_new(17);
    og_graph *g = og_model_graph(om);
    int64_t xd[4] = {1, 3, 16, 16}, wd[4] = {8, 3, 3, 3}, cd[1] = {8}, gd[2] = {8, 10}, yd[2] = {1, 10};
    float w[8 * 27], sc[8], bi[8], mean[8], var[8], gw[80];
    for (uint32_t i = 0; i < 8 * 27; i++) w[i] = fval(i, 3) / 4.0f;
    for (uint32_t i = 0; i < 8; i++) {
        sc[i] = 1.0f + fval(i, 4) / 4.0f;
        bi[i] = fval(i, 5) / 8.0f;
        mean[i] = fval(i, 6) / 8.0f;
        var[i] = 1.0f + fval(i, 7) / 2.0f;
    }
    for (uint32_t i = 0; i < 80; i++) gw[i] = fval(i, 8) / 3.0f;
    og_input(g, "x", OG_FLOAT, 4, xd);
    og_init_f32(g, "w", 4, wd, w);
    og_init_f32(g, "sc", 1, cd, sc);
    og_init_f32(g, "bi", 1, cd, bi);
    og_init_f32(g, "mean", 1, cd, mean);
    og_init_f32(g, "var", 1, cd, var);
    og_init_f32(g, "gw", 2, gd, gw);
    og_node *n = og_node_add(g, "Conv", "x,w", "c");
    int64_t pads[4] = {1, 1, 1, 1};
    og_attr_ints(n, "pads", pads, 4);
    og_node_add(g, "BatchNormalization", "c,sc,bi,mean,var", "b");
    og_node_add(g, "Relu", "b", "r");
    og_node_add(g, "GlobalAveragePool", "r", "p");
    og_node_add(g, "Flatten", "p", "f");
    og_node_add(g, "Gemm", "f,gw", "y");
    og_output(g, "y", OG_FLOAT, 2, yd);
    return om;
}

static og_model *if_sub(void) {
    int64_t d[1] = {4};
    float k[4] = {1, 2, 3, 4}, c2[4] = {0.5f, 2, -1, 3};
    og_graph *then_g = og_graph_new("then");
    og_init_f32(then_g, "k", 1, d, k);
    og_node_add(then_g, "Add", "x,k", "t");
    og_output(then_g, "t", OG_FLOAT, 1, d);
    og_graph *else_g = og_graph_new("else");
    og_node_add(else_g, "Mul", "x,c2", "e");
    og_output(else_g, "e", OG_FLOAT, 1, d);
    og_model *om = og_model_new(16);
    og_graph *g = og_model_graph(om);
    og_input(g, "c", OG_BOOL, 0, NULL);
    og_input(g, "x", OG_FLOAT, 1, d);
    og_init_f32(g, "c2", 1, d, c2);
    og_node *n = og_node_add(g, "If", "c", "y");
    og_attr_graph(n, "then_branch", then_g);
    og_attr_graph(n, "else_branch", else_g);
    og_output(g, "y", OG_FLOAT, 1, d);
    og_graph_free(then_g);
    og_graph_free(else_g);
    return om;
}

/* Runs `kiln compile onnx -o plan`; returns 0 on success. */
static int compile(const char *onnx, const char *plan) {
    char *argv[] = {(char *)kt_cli(), "compile", (char *)onnx, "-o", (char *)plan, NULL};
    char *out = NULL;
    int st = kt_run_capture(argv, &out);
    int ok = st >= 0 && WIFEXITED(st) && WEXITSTATUS(st) == 0;
    CHECK(ok, "kiln compile %s: status %d:\n%s", onnx, st, out ? out : "");
    free(out);
    return ok ? 0 : -1;
}

/* ---- inputs ---------------------------------------------------------------- */

/* Symbolic dims after the first take these values (dim 0 is 1). */
struct dims_hint {
    const char *model;
    int64_t vals[4];
};
static const struct dims_hint HINTS[] = {
    {"bert_mini", {16}}, {"ppocr_cls", {48, 192}}, {"ppocr_det", {64, 64}}, {"ppocr_rec", {64}}};

/* Deterministic inputs of the declared shapes; returns the count, -1 on failure. */
static int32_t make_inputs(const kiln_model *m, const char *name, kiln_tensor *ins, int32_t max) {
    int32_t n = kiln_model_n_inputs(m);
    if (n > max) return -1;
    const int64_t *hint = NULL;
    for (size_t h = 0; h < sizeof HINTS / sizeof *HINTS; h++)
        if (!strcmp(HINTS[h].model, name)) hint = HINTS[h].vals;
    int next_hint = 0;
    for (int32_t i = 0; i < n; i++) {
        kiln_tensor_info ti;
        if (kiln_model_input(m, i, &ti) || ti.rank < 0) return -1;
        memset(&ins[i], 0, sizeof ins[i]);
        ins[i].name = ti.name;
        ins[i].dtype = ti.dtype;
        ins[i].rank = ti.rank;
        size_t count = 1;
        for (int32_t r = 0; r < ti.rank; r++) {
            int64_t d = ti.dims[r];
            if (d < 0) d = r == 0 ? 1 : hint && next_hint < 4 && hint[next_hint] ? hint[next_hint++] : 16;
            ins[i].dims[r] = d;
            count *= (size_t)d;
        }
        size_t es = kiln_dtype_size(ti.dtype);
        if (!es) return -1;
        ins[i].nbytes = count * es;
        ins[i].data = calloc(count ? count : 1, es);
        if (!ins[i].data) return -1;
        for (size_t k = 0; k < count; k++) {
            uint8_t *p = (uint8_t *)ins[i].data + k * es;
            if (ti.dtype == KILN_DTYPE_FLOAT) {
                float v = (fval((uint32_t)k, (uint32_t)i + 11) + 1.0f) / 2.0f;
                memcpy(p, &v, 4);
            } else if (ti.dtype == KILN_DTYPE_INT64) {
                int64_t v = (int64_t)(k * 7 % 100);
                memcpy(p, &v, 8);
            } else if (ti.dtype == KILN_DTYPE_BOOL) {
                *p = 1;
            }
        }
    }
    return n;
}

static void free_inputs(kiln_tensor *ins, int32_t n) {
    for (int32_t i = 0; i < n; i++) free(ins[i].data);
}

/* ---- 1. two processes share the plan's weight pages ------------------------- */

/* The child: load, run once, say 'r' (or 'f'), then hold until the parent closes `hold`. */
static void child(const char *plan, const char *name, int ready, int hold) {
    kiln_error err;
    kiln_model *m = NULL;
    char c = 'f';
    kiln_tensor ins[8];
    int32_t n_in = -1;
    if (kiln_model_load(plan, NULL, &m, &err) == KILN_OK) {
        kiln_session_options so = kiln_session_options_default();
        so.n_threads = 1;
        kiln_session *s = NULL;
        n_in = make_inputs(m, name, ins, 8);
        int32_t n_out = kiln_model_n_outputs(m);
        kiln_tensor outs[8];
        if (n_in >= 0 && n_out <= 8 && kiln_session_create(m, &so, &s, &err) == KILN_OK &&
            kiln_session_run(s, ins, n_in, outs, n_out, &err) == KILN_OK)
            c = 'r';
        else fprintf(stderr, "child: %s: %s\n", plan, err.msg);
        if (write(ready, &c, 1) != 1) c = 'f';
        while (read(hold, &c, 1) > 0) {}   /* until EOF: the parent has measured */
        kiln_session_free(s);
        if (n_in > 0) free_inputs(ins, n_in);
        kiln_model_free(m);
    } else {
        fprintf(stderr, "child: %s: %s\n", plan, err.msg);
        if (write(ready, &c, 1) != 1) c = 'f';
    }
    _exit(c == 'f' ? 1 : 0);
}

static void shared_pages(const char *plan, const char *name) {
    size_t len;
    uint8_t *bytes = kt_read_file(plan, &len);
    struct kiln_artifact_header h;
    if (!bytes || len < sizeof h) {
        CHECK(0, "%s: cannot read the plan", plan);
        free(bytes);
        return;
    }
    memcpy(&h, bytes, sizeof h);
    free(bytes);
    uint64_t wkb = h.weights_len / 1024;

    pid_t pid[2] = {-1, -1};
    int ready[2][2], hold[2][2];
    for (int k = 0; k < 2; k++) {
        if (pipe(ready[k]) || pipe(hold[k])) {
            CHECK(0, "pipe: %s", strerror(errno));
            return;
        }
        fflush(NULL);
        pid[k] = fork();
        if (pid[k] == 0) {
            close(ready[k][0]);
            close(hold[k][1]);
            if (k == 1) close(hold[0][1]);   /* the first child's hold pipe is the parent's alone */
            child(plan, name, ready[k][1], hold[k][0]);
        }
        close(ready[k][1]);
        close(hold[k][0]);
        CHECK(pid[k] > 0, "fork: %s", strerror(errno));
    }
    int both = pid[0] > 0 && pid[1] > 0;
    for (int k = 0; k < 2 && both; k++) {
        struct pollfd p = {.fd = ready[k][0], .events = POLLIN};
        char c = 0;
        both = poll(&p, 1, 600 * 1000) == 1 && read(ready[k][0], &c, 1) == 1 && c == 'r';
        CHECK(both, "%s: child %d did not load and run the plan", name, k);
    }
    for (int k = 0; k < 2 && both; k++) {
        struct kiln_mem mm, all;
        int ok = mem_read_file_mapping(pid[k], plan, &mm) == 0 && mem_read(pid[k], &all) == 0;
        CHECK(ok, "%s: cannot read /proc/%d/smaps", name, (int)pid[k]);
        if (!ok) continue;
        int64_t shared = mm.shared_clean_kb + mm.shared_dirty_kb;
        printf("%s: process %d: plan mapping rss %lld kB, pss %lld kB, shared %lld kB; weights %llu kB; "
               "process rss %lld kB, pss %lld kB\n",
               name, k, (long long)mm.rss_kb, (long long)mm.pss_kb, (long long)shared,
               (unsigned long long)wkb, (long long)all.rss_kb, (long long)all.pss_kb);
        CHECK(mm.n_maps >= 1, "%s: process %d does not map %s", name, k, plan);
        CHECK((uint64_t)shared * 10 >= wkb * 9, "%s: process %d: only %lld kB of %llu kB of weights shared",
              name, k, (long long)shared, (unsigned long long)wkb);
        CHECK(mm.pss_kb >= 0 && mm.pss_kb * 4 <= mm.rss_kb * 3,
              "%s: process %d: plan mapping pss %lld kB is not below rss %lld kB", name, k,
              (long long)mm.pss_kb, (long long)mm.rss_kb);
    }
    for (int k = 0; k < 2; k++) {
        close(hold[k][1]);
        close(ready[k][0]);
        if (pid[k] <= 0) continue;
        if (!both) kill(pid[k], SIGKILL);
        int st = 0;
        waitpid(pid[k], &st, 0);
        CHECK(!both || (WIFEXITED(st) && WEXITSTATUS(st) == 0), "%s: child %d ended with status %d", name, k, st);
    }
}

/* ---- 2. .kiln == .onnx, bit for bit ------------------------------------------ */

static void same_outputs(const char *onnx, const char *plan, const char *name) {
    kiln_error err;
    kiln_model *m[2] = {NULL, NULL};
    kiln_session *s[2] = {NULL, NULL};
    kiln_tensor ins[8], outs[2][16];
    int32_t n_in = -1;
    const char *paths[2] = {onnx, plan};
    for (int k = 0; k < 2; k++) {
        if (!EXPECT_OK(paths[k], kiln_model_load(paths[k], NULL, &m[k], &err), &err)) goto done;
        kiln_session_options so = kiln_session_options_default();
        so.n_threads = 2;   /* the same for both: same kernels, same partitioning */
        if (!EXPECT_OK(paths[k], kiln_session_create(m[k], &so, &s[k], &err), &err)) goto done;
    }
    CHECK(kiln_model_is_plan(m[1]) && !kiln_model_is_plan(m[0]), "%s: plan flags", name);
    n_in = make_inputs(m[0], name, ins, 8);
    int32_t n_out = kiln_model_n_outputs(m[0]);
    CHECK(n_in >= 0 && n_out <= 16 && n_out == kiln_model_n_outputs(m[1]), "%s: inputs/outputs", name);
    if (n_in < 0 || n_out > 16 || n_out != kiln_model_n_outputs(m[1])) goto done;
    for (int k = 0; k < 2; k++)
        if (!EXPECT_OK(paths[k], kiln_session_run(s[k], ins, n_in, outs[k], n_out, &err), &err)) goto done;
    int32_t n_same = 0;
    for (int32_t o = 0; o < n_out; o++) {
        const kiln_tensor *a = &outs[0][o], *b = &outs[1][o];
        int same_shape = a->dtype == b->dtype && a->rank == b->rank && a->nbytes == b->nbytes &&
                         !memcmp(a->dims, b->dims, (size_t)a->rank * sizeof a->dims[0]);
        CHECK(same_shape, "%s: output %d: dtype/shape differ", name, o);
        if (!same_shape) continue;
        int same = !a->nbytes || !memcmp(a->data, b->data, a->nbytes);
        double maxd = 0;
        if (!same && a->dtype == KILN_DTYPE_FLOAT)
            for (size_t i = 0; i < a->nbytes / 4; i++) {
                double d = fabs((double)((const float *)a->data)[i] - (double)((const float *)b->data)[i]);
                if (d > maxd) maxd = d;
            }
        n_same += same;
        CHECK(same, "%s: output %d (%s): .kiln and .onnx differ (max |diff| %g)", name, o, a->name, maxd);
    }
    printf("%s: .kiln vs .onnx: %d of %d outputs bit-identical\n", name, n_same, n_out);
done:
    if (n_in > 0) free_inputs(ins, n_in);
    for (int k = 0; k < 2; k++) {
        kiln_session_free(s[k]);
        kiln_model_free(m[k]);
    }
}

int main(void) {
    char *dir = kt_mkdtemp("instances");
    static const struct {
        const char *name;
        og_model *(*make)(void);
    } gen[] = {{"big_mlp", big_mlp}, {"conv_bn", conv_bn}, {"if_sub", if_sub}};
    char onnx[3][4096], plan[3][4096];
    int compiled[3] = {0};
    for (int k = 0; k < 3; k++) {
        snprintf(onnx[k], sizeof onnx[k], "%s/%s.onnx", dir, gen[k].name);
        snprintf(plan[k], sizeof plan[k], "%s/%s.kiln", dir, gen[k].name);
        og_model *om = gen[k].make();
        CHECK(og_model_save(om, onnx[k]) == 0, "write %s", onnx[k]);
        og_model_free(om);
        compiled[k] = compile(onnx[k], plan[k]) == 0;
    }

    /* 1. before the parent loads anything: the children map the plan themselves */
    if (compiled[0]) shared_pages(plan[0], gen[0].name);
    const char *sh = kt_shared();
    char mb_onnx[4096], mb_plan[4096];
    int have_mb = 0;
    if (sh) {
        snprintf(mb_onnx, sizeof mb_onnx, "%s/models/mobilenet_v2/model.onnx", sh);
        snprintf(mb_plan, sizeof mb_plan, "%s/mobilenet_v2.kiln", dir);
        have_mb = kt_path_exists(mb_onnx) && compile(mb_onnx, mb_plan) == 0;
        if (have_mb) shared_pages(mb_plan, "mobilenet_v2");
    } else printf("../shared absent: mobilenet_v2 and the real models are skipped\n");

    /* 2. bit-identical outputs */
    for (int k = 0; k < 3; k++)
        if (compiled[k]) same_outputs(onnx[k], plan[k], gen[k].name);
    if (have_mb) same_outputs(mb_onnx, mb_plan, "mobilenet_v2");
    static const char *real[] = {"blazeface_front", "ppocr_cls", "ppocr_det", "ppocr_rec", "bert_mini"};
    for (size_t k = 0; sh && k < sizeof real / sizeof *real; k++) {
        char o[4096], p[4096];
        snprintf(o, sizeof o, "%s/models/%s/model.onnx", sh, real[k]);
        snprintf(p, sizeof p, "%s/%s.kiln", dir, real[k]);
        if (!kt_path_exists(o)) continue;
        if (compile(o, p) == 0) same_outputs(o, p, real[k]);
        unlink(p);
    }
    kt_rm_rf(dir);
    free(dir);
    return kt_finish("test_instances");
}
