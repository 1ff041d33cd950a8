/* mem.c — see mem.h. */
#include "mem.h"

#include <limits.h>
#include <stddef.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/stat.h>
#include <sys/sysmacros.h>

static FILE *open_proc(pid_t pid, const char *what) {
    char p[64];
    if (pid) snprintf(p, sizeof p, "/proc/%d/%s", (int)pid, what);
    else snprintf(p, sizeof p, "/proc/self/%s", what);
    return fopen(p, "r");
}

/* "Key:   123 kB" -> adds 123 to the matching field */
static void add_field(const char *line, struct kiln_mem *m) {
    static const struct { const char *key; size_t off; } keys[] = {
        {"Rss:", offsetof(struct kiln_mem, rss_kb)},
        {"Pss:", offsetof(struct kiln_mem, pss_kb)},
        {"Shared_Clean:", offsetof(struct kiln_mem, shared_clean_kb)},
        {"Shared_Dirty:", offsetof(struct kiln_mem, shared_dirty_kb)},
        {"Private_Clean:", offsetof(struct kiln_mem, private_clean_kb)},
        {"Anonymous:", offsetof(struct kiln_mem, anon_kb)},
    };
    for (size_t k = 0; k < sizeof keys / sizeof *keys; k++) {
        size_t n = strlen(keys[k].key);
        if (strncmp(line, keys[k].key, n)) continue;
        int64_t *f = (int64_t *)((char *)m + keys[k].off);
        if (*f < 0) *f = 0;
        *f += strtoll(line + n, NULL, 10);
        return;
    }
}

static void mem_clear(struct kiln_mem *m) {
    memset(m, 0, sizeof *m);
    m->rss_kb = m->pss_kb = -1;
}

int mem_read(pid_t pid, struct kiln_mem *m) {
    mem_clear(m);
    char line[256];
    FILE *f = open_proc(pid, "smaps_rollup");
    if (f) {
        while (fgets(line, sizeof line, f)) add_field(line, m);
        fclose(f);
        if (m->rss_kb >= 0) return 0;
    }
    if (!(f = open_proc(pid, "status"))) return -1;
    while (fgets(line, sizeof line, f))
        if (!strncmp(line, "VmRSS:", 6)) m->rss_kb = strtoll(line + 6, NULL, 10);
    fclose(f);
    return m->rss_kb >= 0 ? 0 : -1;
}

int mem_read_file_mapping(pid_t pid, const char *path, struct kiln_mem *m) {
    mem_clear(m);
    struct stat st;
    char real[PATH_MAX];
    if (stat(path, &st) != 0 || !realpath(path, real)) return -1;
    FILE *f = open_proc(pid, "smaps");
    if (!f) return -1;
    /* a mapping's header: "start-end perms offset major:minor inode [path]";
     * the lines after it, "Key: value kB", describe it */
    char line[4096];
    int in = 0;
    while (fgets(line, sizeof line, f)) {
        unsigned long long a, b, off, ino;
        unsigned maj, min;
        char perms[8];
        int end = 0;
        if (sscanf(line, "%llx-%llx %7s %llx %x:%x %llu %n", &a, &b, perms, &off, &maj, &min, &ino, &end) == 7) {
            /* the path, or else device and inode (overlay file systems may
             * show the lower layer's device here, so the path comes first) */
            char *p = line + end;
            p[strcspn(p, "\n")] = '\0';
            in = !strcmp(p, real) || (ino == (unsigned long long)st.st_ino && makedev(maj, min) == st.st_dev);
            if (in) m->n_maps++;
        } else if (in) add_field(line, m);
    }
    fclose(f);
    if (!m->n_maps) m->rss_kb = m->pss_kb = 0;
    return 0;
}

double mem_mb(int64_t kb) { return kb < 0 ? -1.0 : (double)kb * 1024.0 / 1e6; }
