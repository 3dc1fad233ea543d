/* Scanning /proc/PID/pagemap for the pages a dump must store: one 64-bit entry per
 * virtual page, read in large chunks, folded into runs of consecutive wanted pages.
 * Bits (Documentation/admin-guide/mm/pagemap.rst): 63 present, 62 swapped,
 * 61 file page or shared anonymous, 56 exclusively mapped, 55 soft-dirty, 0-54 pfn. */
#include "handoff.h"
#include <errno.h>
#include <fcntl.h>
#include <stdio.h>
#include <string.h>
#include <unistd.h>
#include <sys/ioctl.h>
#include <sys/mman.h>

#define PM_PRESENT (1ULL << 63)
#define PM_SWAP (1ULL << 62)
#define PM_FILE (1ULL << 61)
#define PM_PFN_MASK ((1ULL << 55) - 1)

enum { MODE_ANON_PRIVATE = 0, MODE_FILE_PRIVATE = 1, MODE_SHARED = 2, MODE_MASK = 0xff };
/* Skip pages mapped to the shared zero page (read-faulted, never written): they read as
 * zeros after restore without being stored. */
#define FLAG_SKIP_ZERO_PAGE 0x100

/* Use the pread path even where PAGEMAP_SCAN exists (tests compare both). */
#define FLAG_FORCE_READ 0x200

#define CHUNK_ENTRIES 8192

/* PAGEMAP_SCAN (6.7+): the kernel folds pages into ranges itself and skips empty page
 * tables wholesale, so sparse areas (multi-GiB reservations) cost almost nothing. Declared
 * here because the build headers may predate it. */
struct hnd_pm_scan_arg {
  uint64_t size, flags, start, end, walk_end, vec, vec_len, max_pages;
  uint64_t category_inverted, category_mask, category_anyof_mask, return_mask;
};
struct hnd_page_region {
  uint64_t start, end, categories;
};
#define HND_PAGEMAP_SCAN _IOWR('f', 16, struct hnd_pm_scan_arg)
#define PAGE_IS_FILE (1ULL << 2)
#define PAGE_IS_PRESENT (1ULL << 3)
#define PAGE_IS_SWAPPED (1ULL << 4)
#define PAGE_IS_PFNZERO (1ULL << 5)
#define SCAN_REGIONS 512

static int scan_unsupported; /* set once the ioctl answered ENOTTY/EINVAL */

static uint64_t zero_pfn_cache; /* 0: unknown or pfns hidden (no CAP_SYS_ADMIN) */
static int zero_pfn_probed;

/* The zero page's pfn: read-fault one private anonymous page of our own and look it up. */
static uint64_t zero_pfn(void) {
  if (zero_pfn_probed) return zero_pfn_cache;
  zero_pfn_probed = 1;
  long ps = sysconf(_SC_PAGESIZE);
  volatile char *p = mmap(NULL, ps, PROT_READ, MAP_PRIVATE | MAP_ANONYMOUS, -1, 0);
  if (p == MAP_FAILED) return 0;
  (void)p[0];
  int fd = open("/proc/self/pagemap", O_RDONLY | O_CLOEXEC);
  if (fd >= 0) {
    uint64_t e = 0;
    if (pread(fd, &e, sizeof e, (off_t)((uintptr_t)p / ps * 8)) == sizeof e && (e & PM_PRESENT)) zero_pfn_cache = e & PM_PFN_MASK;
    close(fd);
  }
  munmap((void *)p, ps);
  return zero_pfn_cache;
}

HND_EXPORT int hnd_pagemap_open(int pid) {
  char path[64];
  snprintf(path, sizeof path, "/proc/%d/pagemap", pid);
  int fd = open(path, O_RDONLY | O_CLOEXEC);
  return fd < 0 ? -errno : fd;
}

/* Zero-page pfn as seen by this process (0 when pfns are hidden). */
HND_EXPORT int64_t hnd_pagemap_zero_pfn(void) { return (int64_t)zero_pfn(); }

/* PAGEMAP_SCAN version of hnd_pagemap_runs; returns -ENOTTY when the kernel lacks it. */
static int scan_runs(int fd, uint64_t start, uint64_t stop, int mode, int skip_zero, uint8_t *out, int cap, uint8_t *next, uint64_t ps) {
  struct hnd_page_region regions[SCAN_REGIONS];
  struct hnd_pm_scan_arg arg;
  uint64_t from = start;
  int n = 0;
  while (from < stop) {
    memset(&arg, 0, sizeof arg);
    arg.size = sizeof arg;
    arg.start = from;
    arg.end = stop;
    arg.vec = (uint64_t)(uintptr_t)regions;
    /* Never ask for more regions than fit, so a full buffer ends exactly at walk_end. */
    arg.vec_len = (uint64_t)(cap - n) + 1 < SCAN_REGIONS ? (uint64_t)(cap - n) + 1 : SCAN_REGIONS;
    arg.category_anyof_mask = PAGE_IS_PRESENT | PAGE_IS_SWAPPED;
    /* Pages must NOT be in these categories: inverted + required. */
    arg.category_inverted = (mode == MODE_FILE_PRIVATE ? PAGE_IS_FILE : 0) | (skip_zero ? PAGE_IS_PFNZERO : 0);
    arg.category_mask = arg.category_inverted;
    arg.return_mask = 0; /* one category for all: adjacent matches merge into one region */
    long got = ioctl(fd, HND_PAGEMAP_SCAN, &arg);
    if (got < 0) {
      if (errno == EINTR) continue;
      return -errno;
    }
    for (long i = 0; i < got; i++) {
      uint64_t a = regions[i].start, pages = (regions[i].end - regions[i].start) / ps;
      if (n > 0) {
        uint64_t prev[2];
        memcpy(prev, out + (size_t)(n - 1) * 16, 16);
        if (prev[0] + prev[1] * ps == a) {
          prev[1] += pages;
          memcpy(out + (size_t)(n - 1) * 16, prev, 16);
          continue;
        }
      }
      if (n == cap) {
        memcpy(next, &a, 8);
        return -ENOSPC;
      }
      uint64_t pair[2] = {a, pages};
      memcpy(out + (size_t)n * 16, pair, 16);
      n++;
    }
    if (arg.walk_end <= from) break; /* no progress: nothing more to find */
    from = arg.walk_end;
  }
  return n;
}

/* Runs of wanted pages in [start, end) of the process whose pagemap is open as `fd`.
 * Writes (address, page count) u64 pairs into `out` (room for `cap` pairs) and returns
 * how many. When `out` fills up, returns -ENOSPC with every written run complete and
 * the address to continue from stored in the u64 at `next`. */
/* Appends run (start, pages) to out; when out is full, records where to continue and fails. */
static int emit_run(uint8_t *out, int *n, int cap, uint8_t *next, uint64_t start, uint64_t pages) {
  if (*n == cap) {
    memcpy(next, &start, 8);
    return -ENOSPC;
  }
  uint64_t pair[2] = {start, pages};
  memcpy(out + (size_t)*n * 16, pair, 16);
  (*n)++;
  return 0;
}

static int runs_one(int fd, uint64_t start, uint64_t end, int mode_flags, uint8_t *out, int cap, uint8_t *next) {
  uint64_t entries[CHUNK_ENTRIES]; /* 64 KiB of stack: no shared state between callers */
  const uint64_t ps = (uint64_t)sysconf(_SC_PAGESIZE);
  const int mode = mode_flags & MODE_MASK;
  if (mode > MODE_SHARED || end < start || cap < 0) return -EINVAL;
  const uint64_t reject = mode == MODE_FILE_PRIVATE ? PM_FILE : 0;
  if (!(mode_flags & FLAG_FORCE_READ) && !scan_unsupported && end > start) {
    int r = scan_runs(fd, start & ~(ps - 1), end, mode, (mode_flags & FLAG_SKIP_ZERO_PAGE) != 0, out, cap, next, ps);
    if (r >= 0 || r == -ENOSPC) return r;
    /* ENOTTY: kernel without the ioctl. Anything else (EFAULT for [vsyscall], beyond the
     * user address range): let the pread path answer this call. */
    if (r == -ENOTTY) scan_unsupported = 1;
  }

  const uint64_t zero = (mode_flags & FLAG_SKIP_ZERO_PAGE) ? zero_pfn() : 0;
  uint64_t addr = start & ~(ps - 1);
  const uint64_t stop = end;
  uint64_t run_start = 0, run_pages = 0;
  int n = 0;

  while (addr < stop) {
    uint64_t want = (stop - addr + ps - 1) / ps;
    if (want > CHUNK_ENTRIES) want = CHUNK_ENTRIES;
    ssize_t r = pread(fd, entries, want * 8, (off_t)(addr / ps * 8));
    if (r < 0) {
      if (errno == EINTR) continue;
      return -errno;
    }
    if (r < 8) break; /* past the end of the address space */
    const uint64_t got = (uint64_t)r / 8;
    for (uint64_t i = 0; i < got; i++) {
      const uint64_t e = entries[i];
      if (!(e & (PM_PRESENT | PM_SWAP)) || (e & reject)) continue;
      if (zero && (e & (PM_PRESENT | PM_SWAP)) == PM_PRESENT && (e & PM_PFN_MASK) == zero) continue;
      const uint64_t a = addr + i * ps;
      if (run_pages && run_start + run_pages * ps == a) {
        run_pages++;
        continue;
      }
      if (run_pages && emit_run(out, &n, cap, next, run_start, run_pages) < 0) return -ENOSPC;
      run_start = a;
      run_pages = 1;
    }
    addr += got * ps;
  }
  if (run_pages && emit_run(out, &n, cap, next, run_start, run_pages) < 0) return -ENOSPC;
  return n;
}

HND_EXPORT int hnd_pagemap_runs(int fd, int64_t start, int64_t end, int mode_flags, uint8_t *out, int cap, uint8_t *next) {
  return runs_one(fd, (uint64_t)start, (uint64_t)end, mode_flags, out, cap, next);
}

/* Many areas in one call (an ffi call costs more than scanning a small area). `areas`
 * holds u64 triples (start, end, mode_flags). Output: u64 triples (area index, address,
 * pages). `state` is u64[2] (area index, address) to start from, zero for the beginning;
 * on -ENOSPC it holds where to continue, and the return value's count is `cap`. */
HND_EXPORT int hnd_pagemap_runs_many(int fd, const uint8_t *areas, int count, uint8_t *out, int cap, uint8_t *state) {
  uint64_t pos[2];
  memcpy(pos, state, 16);
  uint64_t pairs[2 * 256];
  int n = 0;
  for (uint64_t i = pos[0]; i < (uint64_t)count; i++) {
    uint64_t area[3];
    memcpy(area, areas + i * 24, 24);
    uint64_t from = (i == pos[0] && pos[1] > area[0]) ? pos[1] : area[0];
    while (from < area[1]) {
      /* Scan into a small local pair buffer, then widen to triples. */
      int room = cap - n < 256 ? cap - n : 256;
      uint64_t next = 0;
      int r = room > 0 ? runs_one(fd, from, area[1], (int)area[2], (uint8_t *)pairs, room, (uint8_t *)&next) : -ENOSPC;
      if (room == 0) next = from;
      if (r < 0 && r != -ENOSPC) return r;
      int got = r < 0 ? room : r;
      for (int k = 0; k < got; k++) {
        uint64_t triple[3] = {i, pairs[2 * k], pairs[2 * k + 1]};
        memcpy(out + (size_t)n * 24, triple, 24);
        n++;
      }
      if (r >= 0) break;
      if (n == cap) {
        uint64_t resume[2] = {i, next};
        memcpy(state, resume, 16);
        return -ENOSPC;
      }
      from = next;
    }
  }
  return n;
}

/* Data extents of a shmem-backed object (shared anonymous memory, memfd, tmpfs, SysV shm)
 * opened as `fd` (e.g. through /proc/PID/map_files/A-B): every page it holds, in memory or
 * swapped, whichever process touched it. pagemap only shows pages mapped in one process.
 * Writes (file offset, pages) u64 pairs for [offset, offset + length); same -ENOSPC/next
 * protocol as hnd_pagemap_runs, with `next` a file offset. */
HND_EXPORT int hnd_seek_data_runs(int fd, int64_t offset, int64_t length, uint8_t *out, int cap, uint8_t *next) {
  const int64_t ps = sysconf(_SC_PAGESIZE);
  const int64_t end = offset + length;
  int64_t pos = offset;
  int n = 0;
  while (pos < end) {
    off_t data = lseek(fd, pos, SEEK_DATA);
    if (data < 0) {
      if (errno == ENXIO) break; /* no data after pos */
      return -errno;
    }
    if (data >= end) break;
    off_t hole = lseek(fd, data, SEEK_HOLE);
    if (hole < 0) return -errno;
    if (hole > end) hole = end;
    data -= data % ps;
    hole = (hole + ps - 1) / ps * ps;
    if (n == cap) {
      uint64_t resume = (uint64_t)data;
      memcpy(next, &resume, 8);
      return -ENOSPC;
    }
    uint64_t pair[2] = {(uint64_t)data, (uint64_t)((hole - data) / ps)};
    memcpy(out + (size_t)n * 16, pair, 16);
    n++;
    pos = hole;
  }
  return n;
}
