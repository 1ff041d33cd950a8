/* kt.c — see kt.h. */
#define _GNU_SOURCE
#include "kt.h"

#include <dirent.h>
#include <errno.h>
#include <fcntl.h>
#include <stdarg.h>
#include <stdlib.h>
#include <string.h>
#include <sys/stat.h>
#include <sys/wait.h>
#include <unistd.h>

int kt_checks, kt_failures;

int kt_expect_(const char *file, int line, const char *what, kiln_status got,
               const kiln_error *err, kiln_status want, ...) {
    int ok = 1;
    kt_checks++;
    if (got != want) {
        fprintf(stderr, "FAIL %s:%d: %s: status %s (%d), want %s (%d); message: %s\n", file,
                line, what, kiln_status_str(got), (int)got, kiln_status_str(want), (int)want,
                err ? err->msg : "(no err)");
        ok = 0;
    } else if (err && err->code != got) {
        fprintf(stderr, "FAIL %s:%d: %s: err->code %d disagrees with the returned status %d\n",
                file, line, what, (int)err->code, (int)got);
        ok = 0;
    }
    if (want != KILN_OK && err && !err->msg[0]) {
        fprintf(stderr, "FAIL %s:%d: %s: empty error message\n", file, line, what);
        ok = 0;
    }
    va_list ap;
    va_start(ap, want);
    const char *sub;
    while ((sub = va_arg(ap, const char *))) {
        if (!err || !strstr(err->msg, sub)) {
            fprintf(stderr, "FAIL %s:%d: %s: message lacks \"%s\": %s\n", file, line, what, sub,
                    err ? err->msg : "(no err)");
            ok = 0;
        }
    }
    va_end(ap);
    if (!ok) kt_failures++;
    return ok;
}

int kt_finish(const char *name) {
    printf("%s: %d checks, %d failed\n", name, kt_checks, kt_failures);
    return kt_failures ? 1 : 0;
}

int kt_path_exists(const char *path) {
    struct stat st;
    return stat(path, &st) == 0;
}

const char *kt_shared(void) {
    const char *s = getenv("KILN_SHARED");
    if (!s || !*s) s = "../shared";
    struct stat st;
    if (stat(s, &st) != 0 || !S_ISDIR(st.st_mode)) return NULL;
    return s;
}

const char *kt_cli(void) {
    const char *s = getenv("KILN_CLI");
    return s && *s ? s : "./kiln";
}

char *kt_mkdtemp(const char *tag) {
    const char *base = getenv("KILN_TEST_TMP");
    if (!base || !*base) base = "/tmp";
    mkdir(base, 0755);
    char *p = NULL;
    if (asprintf(&p, "%s/%s.XXXXXX", base, tag) < 0) abort();
    if (!mkdtemp(p)) {
        perror(p);
        abort();
    }
    /* absolute, so symlink targets and messages do not depend on the cwd */
    char *abs = realpath(p, NULL);
    if (abs) {
        free(p);
        p = abs;
    }
    return p;
}

void kt_rm_rf(const char *path) {
    struct stat st;
    if (lstat(path, &st) != 0) return;
    if (S_ISDIR(st.st_mode)) {
        DIR *d = opendir(path);
        if (d) {
            struct dirent *e;
            while ((e = readdir(d))) {
                if (!strcmp(e->d_name, ".") || !strcmp(e->d_name, "..")) continue;
                char *sub = NULL;
                if (asprintf(&sub, "%s/%s", path, e->d_name) < 0) abort();
                kt_rm_rf(sub);
                free(sub);
            }
            closedir(d);
        }
        rmdir(path);
    } else {
        unlink(path);
    }
}

uint8_t *kt_read_file(const char *path, size_t *len) {
    *len = 0;
    FILE *f = fopen(path, "rb");
    if (!f) return NULL;
    if (fseek(f, 0, SEEK_END) != 0) {
        fclose(f);
        return NULL;
    }
    long n = ftell(f);
    rewind(f);
    uint8_t *buf = n >= 0 ? malloc((size_t)n + 1) : NULL;
    if (!buf || fread(buf, 1, (size_t)n, f) != (size_t)n) {
        free(buf);
        fclose(f);
        return NULL;
    }
    fclose(f);
    *len = (size_t)n;
    return buf;
}

int kt_write_file(const char *path, const void *data, size_t len) {
    FILE *f = fopen(path, "wb");
    if (!f) return -1;
    int rc = fwrite(data, 1, len, f) == len ? 0 : -1;
    if (fclose(f) != 0) rc = -1;
    return rc;
}

int kt_run_capture(char *const argv[], char **out) {
    *out = NULL;
    char tmpl[] = "/tmp/kt-out.XXXXXX";
    int fd = mkstemp(tmpl);
    if (fd < 0) return -1;
    unlink(tmpl);
    fflush(stdout);
    fflush(stderr);
    pid_t pid = fork();
    if (pid < 0) {
        close(fd);
        return -1;
    }
    if (pid == 0) {
        dup2(fd, 1);
        dup2(fd, 2);
        int devnull = open("/dev/null", O_RDONLY);
        if (devnull >= 0) dup2(devnull, 0);
        execv(argv[0], argv);
        _exit(127);
    }
    int status = -1;
    while (waitpid(pid, &status, 0) < 0) {
        if (errno != EINTR) {
            status = -1;
            break;
        }
    }
    off_t n = lseek(fd, 0, SEEK_END);
    char *buf = malloc(n > 0 ? (size_t)n + 1 : 1);
    if (buf) {
        size_t got = 0;
        if (n > 0) {
            lseek(fd, 0, SEEK_SET);
            ssize_t r;
            while (got < (size_t)n && (r = read(fd, buf + got, (size_t)n - got)) > 0)
                got += (size_t)r;
        }
        buf[got] = '\0';
    }
    close(fd);
    *out = buf;
    return status;
}
