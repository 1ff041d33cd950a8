/* mem.h — process memory as the kernel accounts it (Linux /proc), for
 * `kiln bench` and the shared-weights test.
 *
 * RSS counts every resident page a process maps; PSS (proportional set size)
 * divides each page by the number of processes mapping it, so weights that two
 * processes share through the page cache count half in each. */
#ifndef KILN_TOOLS_MEM_H
#define KILN_TOOLS_MEM_H

#include <stdint.h>
#include <sys/types.h>

struct kiln_mem {
    int64_t rss_kb;            /* -1 when unknown */
    int64_t pss_kb;            /* -1 when unknown (kernels before 4.14 lack smaps_rollup) */
    int64_t shared_clean_kb;   /* pages also mapped by another process, unmodified */
    int64_t shared_dirty_kb;   /* the same, dirty (e.g. tmpfs pages, which are never clean) */
    int64_t private_clean_kb;
    int64_t anon_kb;
    int32_t n_maps;            /* mappings summed (mem_read_file_mapping) */
};

/* Whole process: /proc/PID/smaps_rollup, falling back to VmRSS of
 * /proc/PID/status. pid 0 = this process. Returns 0, or -1 when neither
 * file can be read. */
int mem_read(pid_t pid, struct kiln_mem *m);

/* Sums the /proc/PID/smaps entries that map the file `path` (compared by
 * device and inode, so any spelling of the path works). Returns 0 (n_maps
 * may be 0 when the file is not mapped), or -1 when smaps cannot be read. */
int mem_read_file_mapping(pid_t pid, const char *path, struct kiln_mem *m);

/* kB -> MB (10^6 bytes, as bench prints sizes); -1 stays -1 */
double mem_mb(int64_t kb);

#endif
