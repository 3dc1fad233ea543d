/* ptrace core: freezing threads, registers, extended state, memory access and remote
 * syscalls. Every request comes from the thread that seized the tracee (ptrace is per
 * thread), which is why the Node side calls these synchronously on its main thread. */
#include "handoff.h"
#include <errno.h>
#include <signal.h>
#include <string.h>
#include <sys/ptrace.h>
#include <sys/uio.h>
#include <sys/user.h>
#include <sys/wait.h>
#include <elf.h>
#include <linux/ptrace.h>

#ifndef PTRACE_GET_RSEQ_CONFIGURATION
#define PTRACE_GET_RSEQ_CONFIGURATION 0x420f
#endif

#define NREGS (sizeof(struct user_regs_struct) / 8)

static int err(long r) { return r < 0 ? -errno : (int)r; }

HND_EXPORT int hnd_regs_count(void) { return (int)NREGS; }

/* Seizes a thread (no stop yet) with the given PTRACE_O_* options. */
HND_EXPORT int hnd_seize(int tid, int options) { return err(ptrace(PTRACE_SEIZE, tid, 0, (long)options)); }

HND_EXPORT int hnd_interrupt(int tid) { return err(ptrace(PTRACE_INTERRUPT, tid, 0, 0)); }

HND_EXPORT int hnd_detach(int tid, int sig) { return err(ptrace(PTRACE_DETACH, tid, 0, (long)sig)); }

HND_EXPORT int hnd_cont(int tid, int sig) { return err(ptrace(PTRACE_CONT, tid, 0, (long)sig)); }

HND_EXPORT int hnd_set_options(int tid, int options) { return err(ptrace(PTRACE_SETOPTIONS, tid, 0, (long)options)); }

/* waitpid(__WALL) for one thread; out[0] = raw status. Returns the pid waited for.
 * flags: WNOHANG etc. */
HND_EXPORT int hnd_wait(int tid, int flags, int *out) {
  int status = 0;
  pid_t r;
  do r = waitpid(tid, &status, __WALL | flags); while (r < 0 && errno == EINTR);
  if (r < 0) return -errno;
  out[0] = status;
  return (int)r;
}

/* Event message of the last PTRACE_EVENT stop (new tid for clone events). */
HND_EXPORT int hnd_event_msg(int tid, uint64_t *out) {
  unsigned long msg = 0;
  if (ptrace(PTRACE_GETEVENTMSG, tid, 0, &msg) < 0) return -errno;
  *out = msg;
  return 0;
}

/* General registers as NREGS u64 in struct user_regs_struct order. */
HND_EXPORT int hnd_get_regs(int tid, uint64_t *regs) {
  return err(ptrace(PTRACE_GETREGS, tid, 0, regs));
}

HND_EXPORT int hnd_set_regs(int tid, const uint64_t *regs) {
  return err(ptrace(PTRACE_SETREGS, tid, 0, regs));
}

/* XSAVE area (FPU/SSE/AVX...); returns the size the kernel filled. */
HND_EXPORT int hnd_get_xstate(int tid, uint8_t *buf, int len) {
  struct iovec iov = { buf, (size_t)len };
  if (ptrace(PTRACE_GETREGSET, tid, NT_X86_XSTATE, &iov) < 0) return -errno;
  return (int)iov.iov_len;
}

HND_EXPORT int hnd_set_xstate(int tid, uint8_t *buf, int len) {
  struct iovec iov = { buf, (size_t)len };
  return err(ptrace(PTRACE_SETREGSET, tid, NT_X86_XSTATE, &iov));
}

HND_EXPORT int hnd_get_sigmask(int tid, uint64_t *mask) {
  return err(ptrace(PTRACE_GETSIGMASK, tid, sizeof(uint64_t), mask));
}

HND_EXPORT int hnd_set_sigmask(int tid, const uint64_t *mask) {
  return err(ptrace(PTRACE_SETSIGMASK, tid, sizeof(uint64_t), mask));
}

/* Pending signals without dequeuing them: shared != 0 reads the process-wide queue.
 * Fills up to max 128-byte siginfo records; returns how many. */
HND_EXPORT int hnd_peek_siginfo(int tid, int shared, uint8_t *buf, int max) {
  struct ptrace_peeksiginfo_args a = { .off = 0, .flags = shared ? PTRACE_PEEKSIGINFO_SHARED : 0, .nr = (int32_t)max };
  return err(ptrace(PTRACE_PEEKSIGINFO, tid, &a, buf));
}

/* rseq registration (5.13+): out = {addr, len, flags, sig}. */
HND_EXPORT int hnd_get_rseq(int tid, uint64_t *out) {
  struct { uint64_t addr; uint32_t len, flags, sig; } c;
  memset(&c, 0, sizeof c);
  long r = ptrace(PTRACE_GET_RSEQ_CONFIGURATION, tid, sizeof c, &c);
  if (r < 0) return -errno;
  out[0] = c.addr; out[1] = c.len; out[2] = c.flags; out[3] = c.sig;
  return 0;
}

/* Moves len bytes between the tracee at addr and buf word by word with PEEKDATA/POKEDATA,
 * which (unlike process_vm_writev) also reach read-only and executable pages. Unaligned
 * head and tail words are merged. */
static int transfer(int tid, uint64_t addr, uint8_t *buf, int len, int write) {
  uint64_t end = addr + (uint64_t)len;
  for (uint64_t a = addr & ~7ULL; a < end; a += 8) {
    errno = 0;
    long word = ptrace(PTRACE_PEEKDATA, tid, a, 0);
    if (errno) return -errno;
    uint8_t *w = (uint8_t *)&word;
    for (int i = 0; i < 8; i++) {
      uint64_t at = a + (uint64_t)i;
      if (at < addr || at >= end) continue;
      if (write) w[i] = buf[at - addr];
      else buf[at - addr] = w[i];
    }
    if (write && ptrace(PTRACE_POKEDATA, tid, a, word) < 0) return -errno;
  }
  return 0;
}

HND_EXPORT int hnd_poke(int tid, uint64_t addr, uint8_t *data, int len) { return transfer(tid, addr, data, len, 1); }

HND_EXPORT int hnd_peek(int tid, uint64_t addr, uint8_t *out, int len) { return transfer(tid, addr, out, len, 0); }

/* Copies len bytes from the tracee at addr into buf; returns bytes copied. */
HND_EXPORT long hnd_vm_read(int pid, uint64_t addr, uint8_t *buf, long len) {
  struct iovec local = { buf, (size_t)len }, remote = { (void *)addr, (size_t)len };
  long done = 0;
  while (done < len) {
    local.iov_base = buf + done; local.iov_len = (size_t)(len - done);
    remote.iov_base = (void *)(addr + (uint64_t)done); remote.iov_len = local.iov_len;
    ssize_t r = process_vm_readv(pid, &local, 1, &remote, 1, 0);
    if (r < 0) return -errno;
    if (r == 0) return -EFAULT;
    done += r;
  }
  return done;
}

HND_EXPORT long hnd_vm_write(int pid, uint64_t addr, const uint8_t *buf, long len) {
  struct iovec local = { (void *)buf, (size_t)len }, remote = { (void *)addr, (size_t)len };
  long done = 0;
  while (done < len) {
    local.iov_base = (void *)(buf + done); local.iov_len = (size_t)(len - done);
    remote.iov_base = (void *)(addr + (uint64_t)done); remote.iov_len = local.iov_len;
    ssize_t r = process_vm_writev(pid, &local, 1, &remote, 1, 0);
    if (r < 0) return -errno;
    if (r == 0) return -EFAULT;
    done += r;
  }
  return done;
}

/*
 * Runs one system call inside a stopped tracee. The thread's registers are saved, rip
 * points at `syscall; int3` at insn_addr, orig_rax = -1 so the kernel applies no restart
 * logic to our register set, and the thread runs until the int3 traps. Every signal but
 * SIGKILL must be blocked in the tracee (the caller sets the mask), so the only stops are
 * ours; a group-stop is stepped over. call = {nr, a1..a6}; *result = raw rax.
 * The thread's own registers are put back before returning.
 * Returns 0, -errno for ptrace failures, or -ECHILD if the thread died.
 */
HND_EXPORT int hnd_remote_syscall(int tid, uint64_t insn_addr, const uint64_t *call, int64_t *result) {
  struct user_regs_struct saved, r;
  int status;
  if (ptrace(PTRACE_GETREGS, tid, 0, &saved) < 0) return -errno;
  r = saved;
  r.rax = call[0]; r.rdi = call[1]; r.rsi = call[2]; r.rdx = call[3];
  r.r10 = call[4]; r.r8 = call[5]; r.r9 = call[6];
  r.rip = insn_addr; r.orig_rax = (unsigned long long)-1;
  if (ptrace(PTRACE_SETREGS, tid, 0, &r) < 0) return -errno;
  int sig = 0;
  for (;;) {
    if (ptrace(PTRACE_CONT, tid, 0, (long)sig) < 0) return -errno;
    sig = 0;
    pid_t w;
    do w = waitpid(tid, &status, __WALL); while (w < 0 && errno == EINTR);
    if (w < 0) return -errno;
    if (WIFEXITED(status) || WIFSIGNALED(status)) return -ECHILD;
    if (!WIFSTOPPED(status)) continue;
    int stopsig = WSTOPSIG(status);
    int event = status >> 16;
    if (stopsig == SIGTRAP && event == 0) break; /* our int3 */
    if (event != 0) continue;                    /* group-stop / event stop: keep going */
    /* A signal that slipped through (synchronous fault inside the syscall page): report it. */
    ptrace(PTRACE_GETREGS, tid, 0, &r);
    ptrace(PTRACE_SETREGS, tid, 0, &saved);
    *result = -((int64_t)stopsig << 32);
    return -EFAULT;
  }
  if (ptrace(PTRACE_GETREGS, tid, 0, &r) < 0) return -errno;
  *result = (int64_t)r.rax;
  if (ptrace(PTRACE_SETREGS, tid, 0, &saved) < 0) return -errno;
  return 0;
}

/* Single-steps a stopped thread until rip leaves [lo, hi) or max steps pass; returns the
 * steps taken, or -errno. A signal arriving meanwhile is delivered as it would have been. */
HND_EXPORT int hnd_step_out(int tid, uint64_t lo, uint64_t hi, int max) {
  struct user_regs_struct r;
  int status, sig = 0;
  for (int n = 0; n < max; n++) {
    if (ptrace(PTRACE_GETREGS, tid, 0, &r) < 0) return -errno;
    if (r.rip < lo || r.rip >= hi) return n;
    if (ptrace(PTRACE_SINGLESTEP, tid, 0, (long)sig) < 0) return -errno;
    pid_t w;
    do w = waitpid(tid, &status, __WALL); while (w < 0 && errno == EINTR);
    if (w < 0) return -errno;
    if (!WIFSTOPPED(status)) return -ECHILD;
    /* A signal-delivery stop: deliver it with the next step rather than drop it. */
    sig = (WSTOPSIG(status) != SIGTRAP && (status >> 16) == 0) ? WSTOPSIG(status) : 0;
  }
  return -ETIMEDOUT;
}

/*
 * Like hnd_remote_syscall, but the thread is left in its syscall-exit stop (PTRACE_SYSCALL)
 * with the syscall done and its original registers NOT put back: the caller loads the final
 * registers there. This is how the page holding the syscall instruction can unmap itself:
 * the thread never returns to it. *result = raw rax.
 */
HND_EXPORT int hnd_remote_syscall_last(int tid, uint64_t insn_addr, const uint64_t *call, int64_t *result) {
  struct user_regs_struct r;
  int status;
  if (ptrace(PTRACE_GETREGS, tid, 0, &r) < 0) return -errno;
  r.rax = call[0]; r.rdi = call[1]; r.rsi = call[2]; r.rdx = call[3];
  r.r10 = call[4]; r.r8 = call[5]; r.r9 = call[6];
  r.rip = insn_addr; r.orig_rax = (unsigned long long)-1;
  if (ptrace(PTRACE_SETREGS, tid, 0, &r) < 0) return -errno;
  for (int stops = 0; stops < 2;) {
    if (ptrace(PTRACE_SYSCALL, tid, 0, 0) < 0) return -errno;
    pid_t w;
    do w = waitpid(tid, &status, __WALL); while (w < 0 && errno == EINTR);
    if (w < 0) return -errno;
    if (WIFEXITED(status) || WIFSIGNALED(status)) return -ECHILD;
    if (!WIFSTOPPED(status)) continue;
    if ((WSTOPSIG(status) & 0x7f) == SIGTRAP && (status >> 16) == 0) stops++; /* entry, then exit */
    else if ((status >> 16) == 0) return -EFAULT; /* a real signal: should be blocked */
  }
  if (ptrace(PTRACE_GETREGS, tid, 0, &r) < 0) return -errno;
  *result = (int64_t)r.rax;
  return 0;
}
