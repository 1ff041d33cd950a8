/*
 * test_bad_deep_protobuf.c — a small file whose messages nest very deeply
 * (GraphProto > NodeProto > AttributeProto > GraphProto > ...) must be refused
 * with an error, not crash the process by exhausting the stack while the
 * protobuf is parsed. kiln limits subgraph depth (32) once the model is
 * parsed; the parse itself has to be bounded as well.
 *
 * The models are written back to front (innermost graph first) so building a
 * 100,000-level file stays linear. Each load runs in a child process so a
 * crash is reported as a failure with its signal.
 */
#include "kiln.h"
#include "support/kt.h"

#include <signal.h>
#include <stdlib.h>
#include <string.h>
#include <sys/wait.h>
#include <unistd.h>

struct rbuf {
    uint8_t *d;
    size_t pos, cap;   /* bytes live in d[pos..cap) */
};

static void pre(struct rbuf *b, const void *p, size_t n) {
    b->pos -= n;
    memcpy(b->d + b->pos, p, n);
}

static void pre_varint(struct rbuf *b, uint64_t v) {
    uint8_t t[10];
    size_t k = 0;
    do {
        uint8_t byte = v & 0x7f;
        v >>= 7;
        t[k++] = byte | (v ? 0x80 : 0);
    } while (v);
    pre(b, t, k);
}

/* depth nested If nodes, each holding the next graph as attribute "t". */
static uint8_t *deep_model(int depth, size_t *len) {
    struct rbuf b;
    b.cap = (size_t)depth * 40 + 256;
    b.d = malloc(b.cap);
    if (!b.d) abort();
    b.pos = b.cap;
    for (int i = 0; i < depth; i++) {
        pre_varint(&b, b.cap - b.pos);           /* AttributeProto.g = graph so far */
        pre(&b, "\x32", 1);
        pre(&b, "\xa0\x01\x05", 3);              /* type = GRAPH */
        pre(&b, "\x0a\x01t", 3);                 /* name = "t" */
        pre_varint(&b, b.cap - b.pos);           /* NodeProto.attribute */
        pre(&b, "\x2a", 1);
        pre(&b, "\x22\x02If", 4);                /* op_type = "If" */
        pre_varint(&b, b.cap - b.pos);           /* GraphProto.node */
        pre(&b, "\x0a", 1);
    }
    pre_varint(&b, b.cap - b.pos);               /* ModelProto.graph */
    pre(&b, "\x3a", 1);
    pre(&b, "\x42\x02\x10\x11", 4);              /* opset_import { version: 17 } */
    pre(&b, "\x08\x08", 2);                      /* ir_version 8 */
    *len = b.cap - b.pos;
    memmove(b.d, b.d + b.pos, *len);
    return b.d;
}

static void check_depth(int depth) {
    size_t len;
    uint8_t *buf = deep_model(depth, &len);
    fflush(stdout);
    fflush(stderr);
    pid_t pid = fork();
    if (pid == 0) {
        kiln_error err;
        kiln_model *m = NULL;
        kiln_status s = kiln_model_load_buffer(buf, len, "deep", NULL, &m, &err);
        int ok = (s == KILN_ERR_LIMIT || s == KILN_ERR_BAD_MODEL) && m == NULL &&
                 strstr(err.msg, "deep") != NULL;
        if (!ok)
            fprintf(stderr, "depth %d: status %d, want limit or bad model naming the model: %.200s\n",
                    depth, (int)s, err.msg);
        _exit(ok ? 0 : 1);
    }
    int status = 0;
    waitpid(pid, &status, 0);
    if (WIFSIGNALED(status))
        CHECK(0, "%d nested graphs (%zu bytes): loading crashed with %s", depth, len,
              strsignal(WTERMSIG(status)));
    else
        CHECK(WEXITSTATUS(status) == 0, "%d nested graphs: wrong outcome (above)", depth);
    free(buf);
}

int main(void) {
    check_depth(100);
    check_depth(1000);
    check_depth(10000);    /* ~200 KB */
    check_depth(100000);   /* ~2 MB */
    return kt_finish("test_bad_deep_protobuf");
}
