/* Syscalls for dumping and recreating non-socket fd objects: files, pipes, memfd,
 * eventfd, timerfd, signalfd, inotify, epoll. 64-bit unsigned values (counts, masks,
 * epoll data) travel through 8-byte buffers so no sign or precision is lost. */
#include "handoff.h"
#include <errno.h>
#include <fcntl.h>
#include <stdint.h>
#include <string.h>
#include <time.h>
#include <unistd.h>
#include <signal.h>
#include <sys/epoll.h>
#include <sys/eventfd.h>
#include <sys/inotify.h>
#include <sys/ioctl.h>
#include <sys/mman.h>
#include <sys/signalfd.h>
#include <sys/stat.h>
#include <sys/syscall.h>
#include <sys/timerfd.h>
#include <linux/kcmp.h>

#ifndef TFD_IOC_SET_TICKS
#define TFD_IOC_SET_TICKS _IOW('T', 0, uint64_t)
#endif

static int ret(long r) { return r < 0 ? -errno : (int)r; }
static int64_t ret64(int64_t r) { return r < 0 ? -errno : r; }

static uint64_t load_u64(const uint8_t *p) { uint64_t v; memcpy(&v, p, 8); return v; }
static void store_u64(uint8_t *p, uint64_t v) { memcpy(p, &v, 8); }

/* ---- generic descriptor helpers ---- */

HND_EXPORT int hnd_open(const char *path, int flags, int mode) { return ret(open(path, flags, mode)); }
HND_EXPORT int hnd_fcntl(int fd, int cmd, int arg) { return ret(fcntl(fd, cmd, arg)); }
HND_EXPORT int64_t hnd_lseek(int fd, int64_t offset, int whence) { return ret64(lseek(fd, offset, whence)); }
HND_EXPORT int hnd_ftruncate(int fd, int64_t size) { return ret(ftruncate(fd, size)); }
HND_EXPORT int hnd_fchmod(int fd, int mode) { return ret(fchmod(fd, mode)); }
HND_EXPORT int hnd_dup(int fd) { return ret(fcntl(fd, F_DUPFD_CLOEXEC, 0)); }
HND_EXPORT int hnd_dup3(int oldfd, int newfd, int flags) { return ret(dup3(oldfd, newfd, flags)); }
HND_EXPORT int hnd_unlink(const char *path) { return ret(unlink(path)); }

HND_EXPORT int64_t hnd_pread(int fd, uint8_t *buf, int64_t len, int64_t offset) { return ret64(pread(fd, buf, len, offset)); }
HND_EXPORT int64_t hnd_pwrite(int fd, const uint8_t *buf, int64_t len, int64_t offset) { return ret64(pwrite(fd, buf, len, offset)); }
HND_EXPORT int64_t hnd_read(int fd, uint8_t *buf, int64_t len) { return ret64(read(fd, buf, len)); }
HND_EXPORT int64_t hnd_write(int fd, const uint8_t *buf, int64_t len) { return ret64(write(fd, buf, len)); }

/* Writes all of buf at offset (pwrite may be short on large buffers). */
HND_EXPORT int64_t hnd_pwrite_all(int fd, const uint8_t *buf, int64_t len, int64_t offset) {
  int64_t done = 0;
  while (done < len) {
    ssize_t n = pwrite(fd, buf + done, len - done, offset + done);
    if (n < 0) { if (errno == EINTR) continue; return -errno; }
    if (n == 0) return -EIO;
    done += n;
  }
  return done;
}

/* Reads len bytes at offset, stopping early only at end of file. */
HND_EXPORT int64_t hnd_pread_all(int fd, uint8_t *buf, int64_t len, int64_t offset) {
  int64_t done = 0;
  while (done < len) {
    ssize_t n = pread(fd, buf + done, len - done, offset + done);
    if (n < 0) { if (errno == EINTR) continue; return -errno; }
    if (n == 0) break;
    done += n;
  }
  return done;
}

/* Bytes waiting in a pipe, FIFO or inotify queue. */
HND_EXPORT int hnd_fionread(int fd) {
  int n = 0;
  if (ioctl(fd, FIONREAD, &n) < 0) return -errno;
  return n;
}

/* ---- pipes ---- */

/* fds_out: 8 bytes, receives the read end then the write end. */
HND_EXPORT int hnd_pipe2(uint8_t *fds_out, int flags) {
  int fds[2];
  if (pipe2(fds, flags) < 0) return -errno;
  memcpy(fds_out, fds, sizeof fds);
  return 0;
}

HND_EXPORT int64_t hnd_tee(int fd_in, int fd_out, int64_t len, int flags) { return ret64(tee(fd_in, fd_out, len, flags)); }

/* ---- memfd ---- */

HND_EXPORT int hnd_memfd_create(const char *name, int flags) { return ret(memfd_create(name, flags)); }

/* ---- eventfd ---- */

HND_EXPORT int hnd_eventfd(int flags) { return ret(eventfd(0, flags)); }

/* Adds the u64 in value8 to an eventfd's counter (write(2) of 8 bytes). */
HND_EXPORT int hnd_eventfd_add(int fd, const uint8_t *value8) {
  uint64_t v = load_u64(value8);
  return write(fd, &v, 8) == 8 ? 0 : -errno;
}

/* Reads an eventfd once into value8 (consumes: the whole count, or 1 in semaphore mode). */
HND_EXPORT int hnd_eventfd_take(int fd, uint8_t *value8) {
  uint64_t v = 0;
  if (read(fd, &v, 8) != 8) return -errno;
  store_u64(value8, v);
  return 0;
}

/* ---- timerfd ---- */

HND_EXPORT int hnd_timerfd_create(int clockid, int flags) { return ret(timerfd_create(clockid, flags)); }

HND_EXPORT int hnd_timerfd_settime(int fd, int flags, int64_t value_sec, int64_t value_nsec, int64_t interval_sec, int64_t interval_nsec) {
  struct itimerspec its = { .it_interval = { interval_sec, interval_nsec }, .it_value = { value_sec, value_nsec } };
  return ret(timerfd_settime(fd, flags, &its, NULL));
}

/* out32: value sec, value nsec, interval sec, interval nsec (4 x int64). */
HND_EXPORT int hnd_timerfd_gettime(int fd, uint8_t *out32) {
  struct itimerspec its;
  if (timerfd_gettime(fd, &its) < 0) return -errno;
  int64_t v[4] = { its.it_value.tv_sec, its.it_value.tv_nsec, its.it_interval.tv_sec, its.it_interval.tv_nsec };
  memcpy(out32, v, sizeof v);
  return 0;
}

/* Sets the count of expirations not yet read (needs CONFIG_CHECKPOINT_RESTORE). */
HND_EXPORT int hnd_timerfd_set_ticks(int fd, const uint8_t *ticks8) {
  uint64_t t = load_u64(ticks8);
  return ret(ioctl(fd, TFD_IOC_SET_TICKS, &t));
}

/* out16: sec, nsec (2 x int64). */
HND_EXPORT int hnd_clock_gettime(int clockid, uint8_t *out16) {
  struct timespec ts;
  if (clock_gettime(clockid, &ts) < 0) return -errno;
  int64_t v[2] = { ts.tv_sec, ts.tv_nsec };
  memcpy(out16, v, sizeof v);
  return 0;
}

/* ---- signalfd ---- */

/* mask8: the signal set as a u64, bit (signo - 1) per signal, as /proc prints it. */
HND_EXPORT int hnd_signalfd(int fd, const uint8_t *mask8, int flags) {
  uint64_t m = load_u64(mask8);
  sigset_t set;
  sigemptyset(&set);
  for (int sig = 1; sig <= 64; sig++)
    if (m & (1ULL << (sig - 1))) sigaddset(&set, sig);
  /* The kernel reads only _NSIG/8 bytes of the set. */
  return ret(syscall(SYS_signalfd4, fd, &set, 8, flags));
}

/* Blocks or unblocks signals for the calling thread (tests: a signalfd only sees blocked signals). */
HND_EXPORT int hnd_sigprocmask(int how, const uint8_t *mask8) {
  uint64_t m = load_u64(mask8);
  return ret(syscall(SYS_rt_sigprocmask, how, &m, NULL, 8));
}

/* ---- inotify ---- */

HND_EXPORT int hnd_inotify_init1(int flags) { return ret(inotify_init1(flags)); }
HND_EXPORT int hnd_inotify_add_watch(int fd, const char *path, int mask) { return ret(inotify_add_watch(fd, path, (uint32_t)mask)); }
HND_EXPORT int hnd_inotify_rm_watch(int fd, int wd) { return ret(inotify_rm_watch(fd, wd)); }

/* Opens the object behind a file handle (bytes as printed in inotify fdinfo). */
HND_EXPORT int hnd_open_by_handle_at(int mount_fd, int handle_type, const uint8_t *handle, int handle_bytes, int flags) {
  uint8_t storage[sizeof(struct file_handle) + MAX_HANDLE_SZ];
  struct file_handle *fh = (struct file_handle *)storage;
  if (handle_bytes < 0 || handle_bytes > MAX_HANDLE_SZ) return -EINVAL;
  fh->handle_bytes = (unsigned)handle_bytes;
  fh->handle_type = handle_type;
  memcpy(fh->f_handle, handle, handle_bytes);
  return ret(open_by_handle_at(mount_fd, fh, flags));
}

/* ---- epoll ---- */

HND_EXPORT int hnd_epoll_create1(int flags) { return ret(epoll_create1(flags)); }

HND_EXPORT int hnd_epoll_ctl(int epfd, int op, int fd, int events, const uint8_t *data8) {
  struct epoll_event ev = { .events = (uint32_t)events, .data = { .u64 = load_u64(data8) } };
  return ret(epoll_ctl(epfd, op, fd, &ev));
}

/* out: up to max events of 12 bytes (u32 events, u64 data). Returns the count. */
HND_EXPORT int hnd_epoll_wait(int epfd, uint8_t *out, int max, int timeout_ms) {
  struct epoll_event evs[64];
  if (max > 64) max = 64;
  int n = epoll_wait(epfd, evs, max, timeout_ms);
  if (n < 0) return -errno;
  for (int i = 0; i < n; i++) {
    uint32_t e = evs[i].events;
    uint64_t d = evs[i].data.u64;
    memcpy(out + i * 12, &e, 4);
    memcpy(out + i * 12 + 4, &d, 8);
  }
  return n;
}

/* 0 when fd `tfd` of process pid is the file registered in pid's epoll `epfd` under the
 * number tfd (the toff-th such entry); the number in epoll fdinfo may be stale otherwise. */
HND_EXPORT int hnd_kcmp_epoll_tfd(int pid, int epfd, int tfd, int toff) {
  struct kcmp_epoll_slot slot = { .efd = (uint32_t)epfd, .tfd = (uint32_t)tfd, .toff = (uint32_t)toff };
  return ret(syscall(SYS_kcmp, pid, pid, KCMP_EPOLL_TFD, tfd, &slot));
}
