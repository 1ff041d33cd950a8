/* cpu.c — what the running CPU can do, read once at run time (cpuid), so the
 * same binary picks its kernels on any x86-64 machine. */
#include "kiln.h"

#include <pthread.h>
#include <stdio.h>
#include <string.h>
#if defined(__x86_64__) || defined(__i386__)
#include <cpuid.h>
#endif

static char features[256];
static pthread_once_t features_once = PTHREAD_ONCE_INIT;

static void detect(void) {
    size_t off = 0;
#if defined(__x86_64__) || defined(__i386__)
    __builtin_cpu_init();
    static const char *const names[] = {"sse4.2", "avx", "avx2", "fma", "avx512f", "avx512bw",
                                        "avx512vl", "avx512vnni", "avx512bf16"};
    for (size_t i = 0; i < sizeof names / sizeof names[0]; i++) {
        int has = 0;
        if (!strcmp(names[i], "sse4.2")) has = __builtin_cpu_supports("sse4.2");
        else if (!strcmp(names[i], "avx")) has = __builtin_cpu_supports("avx");
        else if (!strcmp(names[i], "avx2")) has = __builtin_cpu_supports("avx2");
        else if (!strcmp(names[i], "fma")) has = __builtin_cpu_supports("fma");
        else if (!strcmp(names[i], "avx512f")) has = __builtin_cpu_supports("avx512f");
        else if (!strcmp(names[i], "avx512bw")) has = __builtin_cpu_supports("avx512bw");
        else if (!strcmp(names[i], "avx512vl")) has = __builtin_cpu_supports("avx512vl");
        else if (!strcmp(names[i], "avx512vnni")) has = __builtin_cpu_supports("avx512vnni");
        else if (!strcmp(names[i], "avx512bf16")) has = __builtin_cpu_supports("avx512bf16");
        if (has) off += (size_t)snprintf(features + off, sizeof features - off, "%s%s", off ? " " : "", names[i]);
    }
    unsigned a, b, c, d;
    if (__get_cpuid_count(7, 0, &a, &b, &c, &d)) {
        if (d & (1u << 24)) off += (size_t)snprintf(features + off, sizeof features - off, " amx-tile");
        if (d & (1u << 22)) off += (size_t)snprintf(features + off, sizeof features - off, " amx-bf16");
        if (d & (1u << 25)) off += (size_t)snprintf(features + off, sizeof features - off, " amx-int8");
    }
#endif
    if (!off) snprintf(features, sizeof features, "baseline");
}

const char *kiln_cpu_features_str(void) {
    pthread_once(&features_once, detect);
    return features;
}
