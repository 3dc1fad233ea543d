/* Process file descriptors: pidfd_open / pidfd_getfd (5.6+), kcmp, plus small
 * descriptor helpers Node's fs module lacks. */
#include "handoff.h"
#include <errno.h>
#include <unistd.h>
#include <sys/syscall.h>
#include <linux/kcmp.h>


static int ret(long r) { return r < 0 ? -errno : (int)r; }

HND_EXPORT int hnd_pidfd_open(int pid) { return ret(syscall(SYS_pidfd_open, pid, 0)); }

/* Duplicates fd `targetfd` of the process behind `pidfd` into this process (close-on-exec). */
HND_EXPORT int hnd_pidfd_getfd(int pidfd, int targetfd) { return ret(syscall(SYS_pidfd_getfd, pidfd, targetfd, 0)); }

/* Duplicates fd `targetfd` of process `pid` into this process; closes the pidfd itself. */
HND_EXPORT int hnd_getfd(int pid, int targetfd) {
  int pidfd = (int)syscall(SYS_pidfd_open, pid, 0);
  if (pidfd < 0) return -errno;
  long r = syscall(SYS_pidfd_getfd, pidfd, targetfd, 0);
  int e = errno;
  close(pidfd);
  return r < 0 ? -e : (int)r;
}

/* 0 when fd1 of pid1 and fd2 of pid2 are the same open file description, 1/2 ordering otherwise. */
HND_EXPORT int hnd_kcmp_file(int pid1, int pid2, int fd1, int fd2) { return ret(syscall(SYS_kcmp, pid1, pid2, KCMP_FILE, fd1, fd2)); }

HND_EXPORT int hnd_close(int fd) { return ret(close(fd)); }

/* Where buf's bytes are: O_DIRECT needs buffers on a block boundary, and Node cannot tell. */
HND_EXPORT int64_t hnd_buffer_address(const uint8_t *buf) { return (int64_t)(uintptr_t)buf; }
