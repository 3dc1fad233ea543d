/* Creating the first process of a restored tree with its recorded pid (clone3 set_tid, 5.5+),
 * optionally inside a fresh time namespace whose clock offsets make CLOCK_MONOTONIC and
 * CLOCK_BOOTTIME continue from their dumped values. The child execs the static restore stub
 * under PTRACE_SEIZE and is left in a ptrace stop inside the stub's pause(). */
#include "handoff.h"
#include <errno.h>
#include <fcntl.h>
#include <signal.h>
#include <string.h>
#include <stdio.h>
#include <unistd.h>
#include <sched.h>
#include <sys/ptrace.h>
#include <sys/syscall.h>
#include <sys/wait.h>
#include <sys/prctl.h>
#include <linux/sched.h>

#ifndef CLONE_NEWTIME
#define CLONE_NEWTIME 0x00000080
#endif

static long raw_clone3(struct clone_args *args) { return syscall(SYS_clone3, args, sizeof *args); }

/* In the child, only raw syscalls: it is a fork of a multi-threaded Node process. */
static void child_main(int gate, const char *stub, const char *offsets, int offsets_len) {
  char c;
  if (offsets_len > 0) {
    if (syscall(SYS_unshare, CLONE_NEWTIME) < 0) syscall(SYS_exit_group, 120);
    int fd = (int)syscall(SYS_openat, AT_FDCWD, "/proc/self/timens_offsets", O_WRONLY);
    if (fd < 0) syscall(SYS_exit_group, 121);
    if (syscall(SYS_write, fd, offsets, offsets_len) != offsets_len) syscall(SYS_exit_group, 122);
    syscall(SYS_close, fd);
  }
  /* Dispositions set to SIG_IGN survive exec: leave none of the restorer's behind (Node
   * ignores SIGPIPE); the restored ones come from the image. Unblock everything too. */
  struct { unsigned long handler, flags, restorer, mask; } dfl = { 0, 0, 0, 0 };
  for (int sig = 1; sig <= 64; sig++)
    if (sig != SIGKILL && sig != SIGSTOP) syscall(SYS_rt_sigaction, sig, &dfl, 0, 8);
  unsigned long none = 0;
  syscall(SYS_rt_sigprocmask, SIG_SETMASK, &none, 0, 8);
  /* Wait until the restorer has seized us, so it sees the exec. */
  if (syscall(SYS_read, gate, &c, 1) != 1) syscall(SYS_exit_group, 123);
  char *argv[] = { (char *)stub, 0 };
  char *envp[] = { 0 };
  syscall(SYS_execve, stub, argv, envp);
  syscall(SYS_exit_group, 124);
}

/*
 * Creates process `pid` running `stub`, seized with `options`, stopped at its exec event.
 * offsets: text for /proc/self/timens_offsets ("monotonic S NS\nboottime S NS\n") or empty
 * for no new time namespace. Returns the pid, or -errno (-EEXIST: pid in use).
 */
HND_EXPORT int hnd_spawn_stub(int pid, const char *stub, const char *offsets, int options) {
  int gate[2];
  if (pipe2(gate, O_CLOEXEC) < 0) return -errno;
  int offsets_len = (int)strlen(offsets);
  pid_t tid[1] = { pid };
  struct clone_args args;
  memset(&args, 0, sizeof args);
  args.exit_signal = SIGCHLD;
  args.set_tid = pid > 0 ? (uint64_t)(uintptr_t)tid : 0;
  args.set_tid_size = pid > 0 ? 1 : 0;
  long child = raw_clone3(&args);
  if (child == 0) child_main(gate[0], stub, offsets, offsets_len);
  int e = errno;
  close(gate[0]);
  if (child < 0) { close(gate[1]); return -e; }
  if (ptrace(PTRACE_SEIZE, child, 0, (long)(options | PTRACE_O_TRACEEXEC)) < 0) {
    e = errno; kill((pid_t)child, SIGKILL); close(gate[1]); waitpid((pid_t)child, 0, __WALL); return -e;
  }
  char go = 1;
  if (write(gate[1], &go, 1) != 1) { e = errno; kill((pid_t)child, SIGKILL); close(gate[1]); waitpid((pid_t)child, 0, __WALL); return -e; }
  close(gate[1]);
  for (;;) {
    int status;
    pid_t w = waitpid((pid_t)child, &status, __WALL);
    if (w < 0) { if (errno == EINTR) continue; return -errno; }
    if (WIFEXITED(status)) return -(1000 + WEXITSTATUS(status)); /* the child's own failure step */
    if (WIFSIGNALED(status)) return -ECHILD;
    if (WIFSTOPPED(status) && (status >> 8) == (SIGTRAP | (PTRACE_EVENT_EXEC << 8))) break;
    if (ptrace(PTRACE_CONT, child, 0, 0) < 0) return -errno;
  }
  /* The exec stop is inside execve: registers set there are overwritten by its return value.
   * Let the stub reach its pause() and stop it there instead. */
  if (ptrace(PTRACE_CONT, child, 0, 0) < 0 || ptrace(PTRACE_INTERRUPT, child, 0, 0) < 0) return -errno;
  for (;;) {
    int status;
    pid_t w = waitpid((pid_t)child, &status, __WALL);
    if (w < 0) { if (errno == EINTR) continue; return -errno; }
    if (!WIFSTOPPED(status)) return -ECHILD;
    if ((status >> 16) == PTRACE_EVENT_STOP) return (int)child;
    if (ptrace(PTRACE_CONT, child, 0, 0) < 0) return -errno;
  }
}

/* Orphaned descendants are re-parented to us (and reaped by us) instead of init. */
HND_EXPORT int hnd_set_child_subreaper(int on) {
  return prctl(PR_SET_CHILD_SUBREAPER, (unsigned long)on, 0, 0, 0) < 0 ? -errno : 0;
}
