/* Kernel feature probes: each one really exercises the feature (on a throw-away child
 * where it needs a process) and returns 0 when it works or -errno telling why not.
 * Children created here only make raw syscalls before _exit: the caller (Node) is
 * multi-threaded, so nothing that takes locks may run after fork. */
#include "handoff.h"
#include <errno.h>
#include <fcntl.h>
#include <sched.h>
#include <signal.h>
#include <string.h>
#include <unistd.h>
#include <netinet/in.h>
#include <netinet/tcp.h>
#include <arpa/inet.h>
#include <sys/ioctl.h>
#include <sys/prctl.h>
#include <sys/ptrace.h>
#include <sys/socket.h>
#include <sys/stat.h>
#include <sys/syscall.h>
#include <sys/uio.h>
#include <sys/wait.h>
#include <linux/kcmp.h>
#include <linux/sched.h>

#ifndef CLONE_NEWTIME
#define CLONE_NEWTIME 0x00000080
#endif
#ifndef PTRACE_GET_RSEQ_CONFIGURATION
#define PTRACE_GET_RSEQ_CONFIGURATION 0x420f
#endif
#ifndef TCP_REPAIR_WINDOW
#define TCP_REPAIR_WINDOW 29
#endif
#ifndef PR_SET_MM_MAP_SIZE
#define PR_SET_MM_MAP_SIZE 15
#endif

/* Mirrors the uapi struct (5.13+); declared here because older headers lack it. */
struct probe_rseq_configuration {
  uint64_t rseq_abi_pointer;
  uint32_t rseq_abi_size;
  uint32_t signature;
  uint32_t flags;
  uint32_t pad;
};

struct probe_tcp_repair_window {
  uint32_t snd_wl1, snd_wnd, max_window, rcv_wnd, rcv_wup;
};

/* A child that only waits to be killed. */
static pid_t spawn_idle_child(void) {
  pid_t pid = fork();
  if (pid == 0) {
    for (;;) pause();
  }
  return pid < 0 ? -errno : pid;
}

static void kill_and_reap(pid_t pid) {
  kill(pid, SIGKILL);
  while (waitpid(pid, NULL, __WALL) < 0 && errno == EINTR) {
  }
}

/* Seizes an idle child, interrupts it and waits for the group-stop style PTRACE_EVENT_STOP.
 * With want_rseq, also asks for its rseq registration (glibc >= 2.35 registers one). */
static int seize_and_interrupt(int want_rseq, uint32_t *rseq_size) {
  pid_t child = spawn_idle_child();
  if (child < 0) return child;
  int result = 0;
  if (ptrace(PTRACE_SEIZE, child, 0, 0) < 0) {
    result = -errno;
    goto out;
  }
  if (ptrace(PTRACE_INTERRUPT, child, 0, 0) < 0) {
    result = -errno;
    goto out;
  }
  int status;
  pid_t w;
  while ((w = waitpid(child, &status, __WALL)) < 0 && errno == EINTR) {
  }
  if (w < 0) {
    result = -errno;
    goto out;
  }
  if (!WIFSTOPPED(status) || (status >> 16) != PTRACE_EVENT_STOP) {
    result = -EPROTO;
    goto out;
  }
  if (want_rseq) {
    struct probe_rseq_configuration conf;
    memset(&conf, 0, sizeof conf);
    long r = ptrace(PTRACE_GET_RSEQ_CONFIGURATION, child, sizeof conf, &conf);
    if (r < 0) {
      result = -errno;
      goto out;
    }
    if (rseq_size) *rseq_size = conf.rseq_abi_size;
  }
out:
  kill_and_reap(child);
  return result;
}

HND_EXPORT int hnd_probe_ptrace_seize(void) { return seize_and_interrupt(0, NULL); }

/* Returns the size of the child's registered rseq area (0 when glibc registered none). */
HND_EXPORT int hnd_probe_ptrace_rseq(void) {
  uint32_t size = 0;
  int r = seize_and_interrupt(1, &size);
  return r < 0 ? r : (int)size;
}

/* Takes the write end of a pipe out of a child with pidfd_open + pidfd_getfd and checks
 * that the descriptor obtained is the same pipe. */
HND_EXPORT int hnd_probe_pidfd_getfd(void) {
  int fds[2];
  if (pipe2(fds, O_CLOEXEC) < 0) return -errno;
  int result = 0;
  pid_t child = spawn_idle_child();
  if (child < 0) {
    result = child;
    goto close_pipe;
  }
  int pidfd = (int)syscall(SYS_pidfd_open, child, 0);
  if (pidfd < 0) {
    result = -errno;
    goto reap;
  }
  int taken = (int)syscall(SYS_pidfd_getfd, pidfd, fds[1], 0);
  if (taken < 0) {
    result = -errno;
  } else {
    struct stat a, b;
    if (fstat(taken, &a) < 0 || fstat(fds[1], &b) < 0) result = -errno;
    else if (a.st_ino != b.st_ino || a.st_dev != b.st_dev) result = -EPROTO;
    close(taken);
  }
  close(pidfd);
reap:
  kill_and_reap(child);
close_pipe:
  close(fds[0]);
  close(fds[1]);
  return result;
}

/* Only pidfd_open (5.3), for a finer report when pidfd_getfd (5.6) is missing. */
HND_EXPORT int hnd_probe_pidfd_open(void) {
  int pidfd = (int)syscall(SYS_pidfd_open, getpid(), 0);
  if (pidfd < 0) return -errno;
  close(pidfd);
  return 0;
}

/* clone3 with set_tid = {want}: the child must get exactly that pid. Returns the pid the
 * child got (== want on success), -EEXIST when `want` was taken meanwhile, or -errno. */
HND_EXPORT int hnd_probe_clone3_set_tid(int want) {
  pid_t tid = want;
  struct clone_args args;
  memset(&args, 0, sizeof args);
  args.exit_signal = SIGCHLD;
  args.set_tid = (uint64_t)(uintptr_t)&tid;
  args.set_tid_size = 1;
  long pid = syscall(SYS_clone3, &args, sizeof args);
  if (pid == 0) syscall(SYS_exit_group, 0);
  if (pid < 0) return -errno;
  while (waitpid((pid_t)pid, NULL, 0) < 0 && errno == EINTR) {
  }
  return (int)pid;
}

/* A child unshares a new time namespace and sets clock offsets for it (what restore does). */
HND_EXPORT int hnd_probe_timens(void) {
  pid_t child = fork();
  if (child == 0) {
    if (syscall(SYS_unshare, CLONE_NEWTIME) < 0) syscall(SYS_exit_group, errno);
    static const char offsets[] = "monotonic 1000 0\nboottime 1000 0\n";
    int fd = (int)syscall(SYS_openat, AT_FDCWD, "/proc/self/timens_offsets", O_WRONLY);
    if (fd < 0) syscall(SYS_exit_group, errno);
    if (syscall(SYS_write, fd, offsets, sizeof offsets - 1) < 0) syscall(SYS_exit_group, errno);
    syscall(SYS_exit_group, 0);
  }
  if (child < 0) return -errno;
  int status;
  while (waitpid(child, &status, 0) < 0) {
    if (errno != EINTR) return -errno;
  }
  if (!WIFEXITED(status)) return -EPROTO;
  return -WEXITSTATUS(status);
}

/* A connected loopback pair; the client side goes into repair mode, reads its window
 * (with_window) and leaves repair mode again. */
HND_EXPORT int hnd_probe_tcp_repair(int with_window) {
  int result = 0, lsn = -1, cli = -1, srv = -1;
  struct sockaddr_in addr;
  socklen_t len = sizeof addr;
  memset(&addr, 0, sizeof addr);
  addr.sin_family = AF_INET;
  addr.sin_addr.s_addr = htonl(INADDR_LOOPBACK);
  if ((lsn = socket(AF_INET, SOCK_STREAM | SOCK_CLOEXEC, 0)) < 0 || bind(lsn, (struct sockaddr *)&addr, sizeof addr) < 0 ||
      listen(lsn, 1) < 0 || getsockname(lsn, (struct sockaddr *)&addr, &len) < 0 ||
      (cli = socket(AF_INET, SOCK_STREAM | SOCK_CLOEXEC, 0)) < 0 || connect(cli, (struct sockaddr *)&addr, sizeof addr) < 0 ||
      (srv = accept4(lsn, NULL, NULL, SOCK_CLOEXEC)) < 0) {
    result = -errno;
    goto out;
  }
  int on = 1, off = 0;
  if (setsockopt(cli, IPPROTO_TCP, TCP_REPAIR, &on, sizeof on) < 0) {
    result = -errno;
    goto out;
  }
  if (with_window) {
    struct probe_tcp_repair_window win;
    socklen_t wlen = sizeof win;
    if (getsockopt(cli, IPPROTO_TCP, TCP_REPAIR_WINDOW, &win, &wlen) < 0) result = -errno;
    else if (setsockopt(cli, IPPROTO_TCP, TCP_REPAIR_WINDOW, &win, sizeof win) < 0) result = -errno;
  }
  if (setsockopt(cli, IPPROTO_TCP, TCP_REPAIR, &off, sizeof off) < 0 && result == 0) result = -errno;
out:
  if (srv >= 0) close(srv);
  if (cli >= 0) close(cli);
  if (lsn >= 0) close(lsn);
  return result;
}

/* kexec_load with more segments than any kernel accepts: the permission checks come first
 * (EPERM), then the argument checks (EINVAL), so nothing is ever loaded or unloaded. */
HND_EXPORT int hnd_probe_kexec_load(void) {
  long r = syscall(SYS_kexec_load, 0UL, 0xffffUL, NULL, 0UL);
  return r < 0 ? -errno : -EPROTO;
}

/* kexec_file_load with kernel fd -1 and no flags (so never an unload): EBADF means the
 * call was allowed up to reading the kernel file. */
HND_EXPORT int hnd_probe_kexec_file_load(void) {
#ifdef SYS_kexec_file_load
  long r = syscall(SYS_kexec_file_load, -1, -1, 1UL, "", 0UL);
  return r < 0 ? -errno : -EPROTO;
#else
  return -ENOSYS;
#endif
}

HND_EXPORT int hnd_probe_kcmp(void) {
  pid_t self = getpid();
  long r = syscall(SYS_kcmp, self, self, KCMP_VM, 0, 0);
  return r < 0 ? -errno : 0;
}

/* PR_SET_MM_MAP_SIZE only exists with CONFIG_CHECKPOINT_RESTORE; returns the struct size. */
HND_EXPORT int hnd_probe_prctl_mm_map(void) {
  unsigned int size = 0;
  if (prctl(PR_SET_MM, PR_SET_MM_MAP_SIZE, &size, 0, 0) < 0) return -errno;
  return (int)size;
}

/* process_vm_readv from a child (the dump reads target memory this way). */
HND_EXPORT int hnd_probe_process_vm_readv(void) {
  static volatile uint64_t marker = 0x68616e646f6666ULL;
  pid_t child = spawn_idle_child();
  if (child < 0) return child;
  uint64_t got = 0;
  struct iovec local = {&got, sizeof got}, remote = {(void *)&marker, sizeof marker};
  ssize_t r = process_vm_readv(child, &local, 1, &remote, 1, 0);
  int result = r < 0 ? -errno : (r == sizeof got && got == marker ? 0 : -EPROTO);
  kill_and_reap(child);
  return result;
}

HND_EXPORT int hnd_page_size(void) { return (int)sysconf(_SC_PAGESIZE); }

/* PAGEMAP_SCAN ioctl (6.7+) on our own pagemap, over one page of our stack. */
HND_EXPORT int hnd_probe_pagemap_scan(void) {
  struct {
    uint64_t size, flags, start, end, walk_end, vec, vec_len, max_pages;
    uint64_t category_inverted, category_mask, category_anyof_mask, return_mask;
  } arg;
  uint64_t region[3];
  long ps = sysconf(_SC_PAGESIZE);
  int fd = open("/proc/self/pagemap", O_RDONLY | O_CLOEXEC);
  if (fd < 0) return -errno;
  memset(&arg, 0, sizeof arg);
  arg.size = sizeof arg;
  arg.start = (uint64_t)(uintptr_t)&arg & ~(uint64_t)(ps - 1);
  arg.end = arg.start + (uint64_t)ps;
  arg.vec = (uint64_t)(uintptr_t)region;
  arg.vec_len = 1;
  arg.category_anyof_mask = 1 << 3; /* PAGE_IS_PRESENT */
  long r = ioctl(fd, _IOWR('f', 16, arg), &arg);
  int result = r < 0 ? -errno : (int)r;
  close(fd);
  return result;
}
