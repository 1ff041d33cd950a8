/* precision.c — compile-on-the-fly for `--precision` (precision.h). The
 * child process is `kiln compile` itself, so bench/run measure exactly the
 * plan that command writes, and calibration options stay in one place. */
#define _GNU_SOURCE
#include "precision.h"
#include "plan/artifact.h"

#include <errno.h>
#include <spawn.h>
#include <stdint.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/wait.h>
#include <unistd.h>

extern char **environ;

/* A compiled plan, told by its magic as kiln_model_load tells it (any name). */
static int is_plan_file(const char *path) {
    uint8_t magic[8];
    FILE *f = fopen(path, "rb");
    int plan = f && fread(magic, 1, sizeof magic, f) == sizeof magic && kiln_artifact_is_plan(magic, sizeof magic);
    if (f) fclose(f);
    return plan;
}

int tf_precision_check(const char *tool, const char *model, const char *precision, const char *calib_dir) {
    if (!precision) {
        if (calib_dir) fprintf(stderr, "kiln %s: --calibrate is only used with --precision int8\n", tool);
        return calib_dir ? -1 : 0;
    }
    if (strcmp(precision, "fp32") && strcmp(precision, "bf16") && strcmp(precision, "int8")) {
        fprintf(stderr, "kiln %s: bad --precision '%s' (fp32, bf16 or int8)\n", tool, precision);
        return -1;
    }
    if (!strcmp(precision, "int8") && !calib_dir) {
        fprintf(stderr, "kiln %s: --precision int8 needs calibration inputs: --calibrate DIR\n", tool);
        return -1;
    }
    if (calib_dir && strcmp(precision, "int8")) {
        fprintf(stderr, "kiln %s: --calibrate is only used with --precision int8\n", tool);
        return -1;
    }
    if (model && strcmp(precision, "fp32") && is_plan_file(model)) {
        fprintf(stderr,
                "kiln %s: %s is already compiled; its precision was fixed by kiln compile "
                "(--precision applies to .onnx models)\n",
                tool, model);
        return -1;
    }
    return 0;
}

int tf_precision_compile(const char *tool, const char *model, const char *precision, const char *calib_dir,
                         const char *const *extra_args, char *out, size_t out_size) {
    if (!precision || !strcmp(precision, "fp32") || is_plan_file(model)) {
        if ((size_t)snprintf(out, out_size, "%s", model) >= out_size) return -1;
        return 0;
    }
    const char *tmp = getenv("TMPDIR");
    if (!tmp || !*tmp) tmp = "/tmp";
    if ((size_t)snprintf(out, out_size, "%s/kiln-%s-XXXXXX.kiln", tmp, precision) >= out_size) {
        fprintf(stderr, "kiln %s: TMPDIR path too long\n", tool);
        return -1;
    }
    int fd = mkstemps(out, 5);
    if (fd < 0) {
        fprintf(stderr, "kiln %s: cannot create a temporary plan in %s: %s\n", tool, tmp, strerror(errno));
        return -1;
    }
    close(fd);
    char self[4096];
    ssize_t len = readlink("/proc/self/exe", self, sizeof self - 1);
    if (len <= 0) {
        fprintf(stderr, "kiln %s: cannot find this executable to run kiln compile\n", tool);
        unlink(out);
        return -1;
    }
    self[len] = '\0';
    char *args[32];
    int n = 0;
    args[n++] = self;
    args[n++] = (char *)"compile";
    args[n++] = (char *)model;
    args[n++] = (char *)"-o";
    args[n++] = out;
    args[n++] = (char *)"--precision";
    args[n++] = (char *)precision;
    if (calib_dir) {
        args[n++] = (char *)"--calibrate";
        args[n++] = (char *)calib_dir;
    }
    for (int k = 0; extra_args && extra_args[k] && n < 31; k++) args[n++] = (char *)extra_args[k];
    args[n] = NULL;
    fprintf(stderr, "kiln %s: compiling %s at %s: kiln compile %s -o %s --precision %s%s%s\n", tool, model,
            precision, model, out, precision, calib_dir ? " --calibrate " : "", calib_dir ? calib_dir : "");
    /* the child's stdout (compile messages) goes to our stderr: stdout stays
     * the tool's own results, e.g. bench --json lines */
    posix_spawn_file_actions_t fa;
    posix_spawn_file_actions_init(&fa);
    posix_spawn_file_actions_adddup2(&fa, STDERR_FILENO, STDOUT_FILENO);
    pid_t pid;
    int e = posix_spawn(&pid, self, &fa, NULL, args, environ);
    posix_spawn_file_actions_destroy(&fa);
    if (e) {
        fprintf(stderr, "kiln %s: cannot run kiln compile: %s\n", tool, strerror(e));
        unlink(out);
        return -1;
    }
    int status = 0;
    while (waitpid(pid, &status, 0) < 0 && errno == EINTR) {}
    if (!WIFEXITED(status) || WEXITSTATUS(status) != 0) {
        fprintf(stderr, "kiln %s: compiling %s at %s failed (see above)\n", tool, model, precision);
        unlink(out);
        return -1;
    }
    return 0;
}

void tf_precision_done(const char *model, const char *compiled) {
    if (compiled && model && strcmp(model, compiled)) unlink(compiled);
}
