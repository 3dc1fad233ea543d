// Threads: general registers, XSAVE state, signal mask, alternate signal stack, rseq, robust
// futex list, clear-child-tid address, thread-private pending signals. Dump and restore.
import { logger } from '../log.js';
import type { Registers, Siginfo, ThreadRecord } from '../format/records.js';
import { readStat } from '../kernel/proc.js';
import * as pt from '../native/ptrace.js';
import type { RemoteTask } from '../ptrace/remote.js';
import { ERESTART, PR, SYS } from '../ptrace/syscalls.js';

const log = logger('thread');
const EINTR = 4n;
const U64 = (1n << 64n) - 1n;

/** siginfo_t as PTRACE_PEEKSIGINFO returns it: signo, errno, code are its first three ints. */
export function decodeSiginfo(raw: Buffer): Siginfo {
  return { signo: raw.readInt32LE(0), errno: raw.readInt32LE(4), code: raw.readInt32LE(8), raw: raw };
}

/**
 * A thread stopped inside a syscall shows the kernel's internal restart code in rax. Save it
 * so it re-enters the syscall on any kernel (DESIGN 4.7): rax = nr and rip back over the
 * 2-byte `syscall`; a restart_block syscall (nanosleep...) cannot be resumed elsewhere and
 * returns EINTR instead, as after a signal. orig_rax = -1 so no kernel restart logic applies.
 */
export function adjustForRestart(regs: Registers): ThreadRecord['syscall'] {
  const nr = BigInt.asIntN(64, regs.orig_rax);
  if (nr < 0n) return undefined;
  const rax = BigInt.asIntN(64, regs.rax);
  let restart: 'restart' | 'eintr' | 'none' = 'none';
  if (rax === -BigInt(ERESTART.SYS) || rax === -BigInt(ERESTART.NOINTR) || rax === -BigInt(ERESTART.NOHAND)) {
    regs.rax = BigInt(nr);
    regs.rip = regs.rip - 2n;
    restart = 'restart';
  } else if (rax === -BigInt(ERESTART.RESTARTBLOCK)) {
    regs.rax = U64 & -EINTR;
    restart = 'eintr';
  }
  regs.orig_rax = U64;
  return { nr: Number(nr), restart };
}

export function dumpThread(pid: number, tid: number, task: RemoteTask, originalMask: bigint): ThreadRecord {
  const regs = pt.getRegs(tid) as Registers;
  const xsave = pt.getXstate(tid);
  // The kernel puts XCR0 in the software-reserved bytes of the FXSAVE area (offset 464 + 8).
  const xfeatures = xsave.length >= 480 ? xsave.readBigUInt64LE(472) : 3n;
  const syscall = adjustForRestart(regs);

  task.call('sigaltstack', SYS.sigaltstack, 0, task.scratch);
  const ss = task.get(24);
  task.call('get_robust_list', SYS.get_robust_list, 0, task.scratch, task.scratch + 8);
  const robust = task.get(16);
  task.call('prctl(PR_GET_TID_ADDRESS)', SYS.prctl, PR.GET_TID_ADDRESS, task.scratch);
  const clearTid = Number(task.get(8).readBigUInt64LE(0));
  const rseq = pt.getRseq(tid);
  const rec: ThreadRecord = {
    kind: 'thread',
    pid,
    tid,
    comm: readStat(pid, tid).comm,
    regs,
    xsave: { xfeatures, data: xsave },
    sigmask: originalMask,
    sigaltstack: { sp: Number(ss.readBigUInt64LE(0)), flags: ss.readInt32LE(8), size: Number(ss.readBigUInt64LE(16)) },
    robustList: { head: Number(robust.readBigUInt64LE(0)), len: Number(robust.readBigUInt64LE(8)) },
    clearTid,
    pendingSignals: pt.peekSiginfo(tid, false).map(decodeSiginfo),
  };
  if (rseq && rseq.addr) rec.rseq = { addr: rseq.addr, len: rseq.len, sig: rseq.sig };
  if (syscall) rec.syscall = syscall;
  log.debug('dumped', { pid, tid, rip: regs.rip, syscall: syscall?.nr });
  return rec;
}

/**
 * Per-thread kernel state that only the thread itself can set, run inside it. Registers are
 * loaded last by finishThread, after the syscall page is gone.
 */
export function restoreThreadState(task: RemoteTask, rec: ThreadRecord): void {
  // SS_ONSTACK (1) describes where the thread was, not a setting; SS_DISABLE (2) and
  // SS_AUTODISARM (1 << 31) are settings.
  const ss = Buffer.alloc(24);
  ss.writeBigUInt64LE(BigInt(rec.sigaltstack.sp), 0);
  ss.writeInt32LE(rec.sigaltstack.flags & (2 | 0x80000000), 8);
  ss.writeBigUInt64LE(BigInt(rec.sigaltstack.size), 16);
  task.call('sigaltstack', SYS.sigaltstack, task.put(ss), 0);
  if (rec.robustList.head) task.call('set_robust_list', SYS.set_robust_list, rec.robustList.head, rec.robustList.len);
  task.call('set_tid_address', SYS.set_tid_address, rec.clearTid);
  if (rec.rseq) task.call('rseq', SYS.rseq, rec.rseq.addr, rec.rseq.len, 0, rec.rseq.sig);
  for (const s of rec.pendingSignals) {
    task.call('rt_tgsigqueueinfo', SYS.rt_tgsigqueueinfo, task.pid, task.tid, s.signo, task.put(Buffer.from(s.raw)));
  }
}

/** Final register state: general registers, XSAVE area, signal mask. */
export function finishThread(tid: number, rec: ThreadRecord): void {
  pt.setXstate(tid, Buffer.from(rec.xsave.data));
  pt.setRegs(tid, rec.regs as pt.Regs);
  pt.setSigmask(tid, rec.sigmask);
}
