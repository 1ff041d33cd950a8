/*
 * test_fuzz_replay.c — the importer, planner and kernels on a fixed corpus of
 * mutated models, in the normal build (label fuzz). No crash, hang, sanitizer
 * report or API contract break is allowed (tests/support/exercise.c).
 *
 * Seeds: models generated here (always), a handful of ONNX node-suite models
 * and two small real models from ../shared (when present). Each seed gets
 * MUTANTS deterministic mutants (tests/support/mutate.c): the same binary
 * always replays the same inputs. Each seed runs in a child process, so a
 * crash is reported with the seed and mutant index, and the mutant is saved to
 * KILN_TEST_TMP/crash-<seed>-<index>.onnx to replay under a debugger:
 *     test_fuzz_replay --one FILE
 *
 *   test_fuzz_replay                  run the corpus
 *   test_fuzz_replay --write-seeds D  write the seed models into folder D
 *                                     (the libFuzzer seed corpus; see .ci/run)
 *   test_fuzz_replay --one FILE       exercise one model file, in-process
 */
#define _GNU_SOURCE
#include "kiln.h"
#include "support/exercise.h"
#include "support/kt.h"
#include "support/mutate.h"
#include "support/onnxgen.h"

#include <signal.h>
#include <stdlib.h>
#include <string.h>
#include <sys/mman.h>
#include <sys/wait.h>
#include <unistd.h>

#define MUTANTS_SMALL 1000  /* per generated or node-suite seed */
#define MUTANTS_LARGE 200   /* per real model */
#define CHILD_TIMEOUT_S 240

struct seed {
    char name[96];
    uint8_t *data;
    size_t len;
    int mutants;
};

static struct seed seeds[96];
static int n_seeds;

static void add_seed(const char *name, uint8_t *data, size_t len, int mutants) {
    if (n_seeds == (int)(sizeof seeds / sizeof seeds[0])) {
        free(data);
        return;
    }
    struct seed *s = &seeds[n_seeds++];
    snprintf(s->name, sizeof s->name, "%s", name);
    s->data = data;
    s->len = len;
    s->mutants = mutants;
}

static void add_generated(const char *name, og_model *om) {
    size_t len;
    uint8_t *buf = og_model_pack(om, &len);
    og_model_free(om);
    add_seed(name, buf, len, MUTANTS_SMALL);
}

/* ---- generated seeds: a few ops each, with attributes worth mutating ---- */

static void gen_seeds(void) {
    og_model *om;
    og_graph *g;
    og_node *n;
    {
        om = og_model_new(17);
        g = og_model_graph(om);
        int64_t d[2] = {2, 3}, wd[1] = {3};
        float w[3] = {1, -2, 3};
        og_input(g, "x", OG_FLOAT, 2, d);
        og_init_f32(g, "w", 1, wd, w);
        og_node_add(g, "Add", "x,w", "a");
        og_node_add(g, "Relu", "a", "b");
        og_node_add(g, "Mul", "b,x", "y");
        og_output(g, "y", OG_FLOAT, 2, d);
        add_generated("gen_add_relu_mul", om);
    }
    {
        om = og_model_new(13);
        g = og_model_graph(om);
        int64_t xd[4] = {1, 3, 8, 8}, wd[4] = {4, 3, 3, 3}, bd[1] = {4}, yd[4] = {1, 4, 4, 4};
        float w[4 * 3 * 3 * 3], b[4] = {0.1f, -0.2f, 0.3f, 0};
        for (int i = 0; i < 108; i++) w[i] = (float)(i % 7 - 3) / 8.0f;
        og_input(g, "x", OG_FLOAT, 4, xd);
        og_init_f32(g, "w", 4, wd, w);
        og_init_f32(g, "b", 1, bd, b);
        n = og_node_add(g, "Conv", "x,w,b", "c");
        int64_t pads[4] = {1, 1, 1, 1}, strides[2] = {2, 2}, ks[2] = {3, 3};
        og_attr_ints(n, "pads", pads, 4);
        og_attr_ints(n, "strides", strides, 2);
        og_attr_ints(n, "kernel_shape", ks, 2);
        og_node_add(g, "Relu", "c", "r");
        n = og_node_add(g, "MaxPool", "r", "p");
        int64_t k2[2] = {2, 2}, s1[2] = {1, 1}, p0[4] = {0, 0, 1, 1};
        og_attr_ints(n, "kernel_shape", k2, 2);
        og_attr_ints(n, "strides", s1, 2);
        og_attr_ints(n, "pads", p0, 4);
        og_node_add(g, "GlobalAveragePool", "p", "y");
        og_output(g, "y", OG_FLOAT, 4, yd);
        add_generated("gen_conv_pool", om);
    }
    {
        om = og_model_new(13);
        g = og_model_graph(om);
        int64_t ad[3] = {2, 4, 8}, bd[2] = {8, 5}, yd[3] = {2, 4, 5};
        float bw[40];
        for (int i = 0; i < 40; i++) bw[i] = (float)(i % 5) / 5.0f;
        og_input(g, "a", OG_FLOAT, 3, ad);
        og_init_f32(g, "b", 2, bd, bw);
        og_node_add(g, "MatMul", "a,b", "m");
        n = og_node_add(g, "Softmax", "m", "y");
        og_attr_int(n, "axis", -1);
        og_output(g, "y", OG_FLOAT, 3, yd);
        add_generated("gen_matmul_softmax", om);
    }
    {
        om = og_model_new(13);
        g = og_model_graph(om);
        int64_t xd[3] = {2, 3, 4}, sd[1] = {3}, shape[3] = {4, 3, 2}, yd[3] = {2, 8, 3};
        og_input(g, "x", OG_FLOAT, 3, xd);
        og_init_i64(g, "shape", 1, sd, shape);
        og_node_add(g, "Reshape", "x,shape", "r");
        n = og_node_add(g, "Transpose", "r", "t");
        int64_t perm[3] = {2, 0, 1};
        og_attr_ints(n, "perm", perm, 3);
        n = og_node_add(g, "Concat", "t,t", "c");
        og_attr_int(n, "axis", 1);
        n = og_node_add(g, "Transpose", "c", "y");
        int64_t perm2[3] = {0, 1, 2};
        og_attr_ints(n, "perm", perm2, 3);
        og_output(g, "y", OG_FLOAT, 3, yd);
        add_generated("gen_reshape_transpose_concat", om);
    }
    {
        om = og_model_new(13);
        g = og_model_graph(om);
        int64_t xd[2] = {5, 4}, id[2] = {2, 2}, axd[1] = {1}, yd[3] = {2, 2, 1};
        int64_t idx[4] = {0, 4, 2, 1}, axes[1] = {-1};
        og_input(g, "x", OG_FLOAT, 2, xd);
        og_init_i64(g, "idx", 2, id, idx);
        og_init_i64(g, "axes", 1, axd, axes);
        n = og_node_add(g, "Gather", "x,idx", "gx");
        og_attr_int(n, "axis", 0);
        n = og_node_add(g, "ReduceMean", "gx,axes", "y");
        og_attr_int(n, "keepdims", 1);
        og_output(g, "y", OG_FLOAT, 3, yd);
        add_generated("gen_gather_reduce", om);
    }
    {
        og_graph *then_g = og_graph_new("then");
        int64_t d[1] = {3};
        float one[3] = {1, 1, 1};
        og_init_f32(then_g, "k", 1, d, one);
        og_node_add(then_g, "Add", "x,k", "t");
        og_output(then_g, "t", OG_FLOAT, 1, d);
        og_graph *else_g = og_graph_new("else");
        og_node_add(else_g, "Neg", "x", "e");
        og_output(else_g, "e", OG_FLOAT, 1, d);
        om = og_model_new(16);
        g = og_model_graph(om);
        og_input(g, "c", OG_BOOL, 0, NULL);
        og_input(g, "x", OG_FLOAT, 1, d);
        n = og_node_add(g, "If", "c", "y");
        og_attr_graph(n, "then_branch", then_g);
        og_attr_graph(n, "else_branch", else_g);
        og_output(g, "y", OG_FLOAT, 1, d);
        og_graph_free(then_g);
        og_graph_free(else_g);
        add_generated("gen_if", om);
    }
    {
        om = og_model_new(13);
        g = og_model_graph(om);
        int64_t d[2] = {2, 2}, sd[1] = {2};
        float cv[4] = {0.5f, 1.5f, -1, 2};
        pb t;
        pb_init(&t);
        og_tensor_raw(&t, "cv", OG_FLOAT, 2, d, cv, sizeof cv);
        og_input(g, "x", OG_FLOAT, 2, d);
        og_attr_tensor(og_node_add(g, "Constant", "", "c"), "value", &t);
        pb_clear(&t);
        og_node_add(g, "Mul", "x,c", "m");
        og_node_add(g, "Shape", "m", "s");
        og_init_i64(g, "unused", 1, sd, (const int64_t[]){1, 2});
        n = og_node_add(g, "Cast", "s", "sf");
        og_attr_int(n, "to", OG_FLOAT);
        og_output(g, "m", OG_FLOAT, 2, d);
        og_output(g, "sf", OG_FLOAT, 1, sd);
        add_generated("gen_constant_shape_cast", om);
    }
}

/* ---- seeds from ../shared ------------------------------------------------ */

static const char *const node_picks[] = {
    "test_add_bcast", "test_conv_with_strides_padding", "test_convtranspose",
    "test_maxpool_2d_pads", "test_averagepool_2d_pads", "test_resize_upsample_scales_linear",
    "test_gemm_default_matrix_bias", "test_matmul_4d", "test_softmax_axis_1",
    "test_reshape_reordered_all_dims", "test_transpose_all_permutations_0",
    "test_concat_3d_axis_1", "test_slice", "test_gather_0", "test_gathernd_example_int32",
    "test_reduce_mean_keepdims_example", "test_batchnorm_epsilon",
    "test_layer_normalization_4d_axis0", "test_if", "test_loop11", "test_scan9_sum",
    "test_edge_pad", "test_split_equal_parts_1d_opset18", "test_expand_dim_changed",
    "test_tile", "test_top_k", "test_where_example", "test_quantizelinear",
    "test_qlinearmatmul_2D_uint8_float32", "test_lstm_defaults",
    "test_nonmaxsuppression_center_point_box_format", "test_scatter_elements_with_axis",
    "test_onehot_with_axis", "test_cumsum_1d", "test_einsum_batch_matmul", "test_attention_3d",
    "test_instancenorm_example", "test_roialign_aligned_false", "test_depthtospace_example",
    "test_gridsample",
};
static const char *const model_picks[] = {"blazeface_front", "ppocr_cls"};

static int shared_seeds(void) {
    const char *shared = kt_shared();
    if (!shared) return 0;
    char path[4096];
    for (size_t i = 0; i < sizeof node_picks / sizeof node_picks[0]; i++) {
        snprintf(path, sizeof path, "%s/onnx-tests/node/%s/model.onnx", shared, node_picks[i]);
        size_t len;
        uint8_t *buf = kt_read_file(path, &len);
        CHECK(buf != NULL, "cannot read %s", path);
        if (buf) add_seed(node_picks[i], buf, len, MUTANTS_SMALL);
    }
    for (size_t i = 0; i < sizeof model_picks / sizeof model_picks[0]; i++) {
        snprintf(path, sizeof path, "%s/models/%s/model.onnx", shared, model_picks[i]);
        size_t len;
        uint8_t *buf = kt_read_file(path, &len);
        CHECK(buf != NULL, "cannot read %s", path);
        if (buf) add_seed(model_picks[i], buf, len, MUTANTS_LARGE);
    }
    return 1;
}

/* ---- replay -------------------------------------------------------------- */

static uint64_t mutant_seed(int seed_index, int k) {
    return (uint64_t)seed_index * 1000003u + (uint64_t)k;
}

/* Runs in a child: the seed itself (run), then its mutants. *progress holds
 * the index being exercised (-1: the unmutated seed). */
static int replay_seed(int si, volatile int *progress, struct kt_exercise_stats *st) {
    const struct seed *s = &seeds[si];
    *progress = -1;
    if (kt_exercise_model(s->data, s->len, 1, st)) return 1;
    for (int k = 0; k < s->mutants; k++) {
        *progress = k;
        size_t n;
        uint8_t *mut = kt_mutate(s->data, s->len, mutant_seed(si, k), &n);
        int bad = kt_exercise_model(mut, n, 1, st);
        free(mut);
        if (bad) {
            fprintf(stderr, "seed %s mutant %d: contract violation (above)\n", s->name, k);
            return 1; /* stop here: *progress names the input */
        }
    }
    return 0;
}

static void save_crash(int si, int k) {
    const struct seed *s = &seeds[si];
    const char *tmp = getenv("KILN_TEST_TMP");
    char path[4096];
    snprintf(path, sizeof path, "%s/crash-%s-%d.onnx", tmp && *tmp ? tmp : "/tmp", s->name, k);
    if (k < 0) {
        kt_write_file(path, s->data, s->len);
    } else {
        size_t n;
        uint8_t *mut = kt_mutate(s->data, s->len, mutant_seed(si, k), &n);
        kt_write_file(path, mut, n);
        free(mut);
    }
    fprintf(stderr, "  saved the input as %s (replay: test_fuzz_replay --one %s)\n", path, path);
}

static int write_seeds(const char *dir) {
    char path[4096];
    int bad = 0;
    for (int i = 0; i < n_seeds; i++) {
        snprintf(path, sizeof path, "%s/%s.onnx", dir, seeds[i].name);
        if (kt_write_file(path, seeds[i].data, seeds[i].len)) {
            perror(path);
            bad = 1;
        }
    }
    printf("wrote %d seed models to %s\n", n_seeds, dir);
    return bad;
}

int main(int argc, char **argv) {
    if (argc == 3 && !strcmp(argv[1], "--one")) {
        size_t len;
        uint8_t *buf = kt_read_file(argv[2], &len);
        if (!buf) {
            perror(argv[2]);
            return 2;
        }
        struct kt_exercise_stats st = {0};
        int rc = kt_exercise_model(buf, len, 1, &st);
        printf("%s: loaded %ld, sessions %ld, runs ok %ld, violations %ld\n", argv[2], st.loaded,
               st.sessions, st.runs_ok, st.contract_violations);
        free(buf);
        return rc ? 1 : 0;
    }
    gen_seeds();
    int have_shared = shared_seeds();
    if (argc == 3 && !strcmp(argv[1], "--write-seeds")) return write_seeds(argv[2]);
    if (argc != 1) {
        fprintf(stderr, "usage: test_fuzz_replay [--write-seeds DIR | --one FILE]\n");
        return 2;
    }
    if (!have_shared)
        printf("note: ../shared is absent; replaying mutants of the generated seeds only\n");

    /* per-seed counters and progress, visible to the parent after the child ends */
    struct shared_state {
        int progress;
        struct kt_exercise_stats st;
    } *sh = mmap(NULL, sizeof *sh, PROT_READ | PROT_WRITE, MAP_SHARED | MAP_ANONYMOUS, -1, 0);
    if (sh == MAP_FAILED) {
        perror("mmap");
        return 1;
    }
    struct kt_exercise_stats total = {0};
    long inputs = 0;
    for (int si = 0; si < n_seeds; si++) {
        memset(sh, 0, sizeof *sh);
        fflush(stdout);
        fflush(stderr);
        pid_t pid = fork();
        if (pid < 0) {
            perror("fork");
            return 1;
        }
        if (pid == 0) {
            alarm(CHILD_TIMEOUT_S);
            _exit(replay_seed(si, &sh->progress, &sh->st));
        }
        int status = 0;
        waitpid(pid, &status, 0);
        inputs += seeds[si].mutants + 1;
        total.loaded += sh->st.loaded;
        total.sessions += sh->st.sessions;
        total.runs_ok += sh->st.runs_ok;
        total.contract_violations += sh->st.contract_violations;
        if (WIFSIGNALED(status)) {
            int sig = WTERMSIG(status);
            CHECK(0, "seed %s: %s at %s %d", seeds[si].name,
                  sig == SIGALRM ? "timed out" : strsignal(sig),
                  sh->progress < 0 ? "the unmutated seed" : "mutant", sh->progress);
            save_crash(si, sh->progress);
        } else {
            int code = WEXITSTATUS(status);
            CHECK(code == 0, "seed %s: exit %d (contract violation or sanitizer report above; "
                  "last input %d)", seeds[si].name, code, sh->progress);
            if (code != 0) save_crash(si, sh->progress); /* the child stops at the first */
        }
    }
    printf("replayed %ld inputs from %d seeds: %ld loaded, %ld sessions, %ld runs completed\n",
           inputs, n_seeds, total.loaded, total.sessions, total.runs_ok);
    CHECK(total.loaded > n_seeds, "only %ld of %ld inputs loaded: the mutants are too broken to "
          "reach past the parser", total.loaded, inputs);
    munmap(sh, sizeof *sh);
    for (int i = 0; i < n_seeds; i++) free(seeds[i].data);
    return kt_finish("test_fuzz_replay");
}
