// Remote syscalls in a frozen process during a dump. We borrow three bytes at the start of an
// executable mapping for `syscall; int3` (put back afterwards) and map one scratch page for
// pointer arguments. While we work, every signal is blocked in the threads we drive so that
// the only stops we see are our own traps; each thread's own mask is restored on close.
import { ProcessError } from '../errors.js';
import type { MapEntry } from '../kernel/proc.js';
import * as pt from '../native/ptrace.js';
import { RemoteTask, SYSCALL_INSN } from '../ptrace/remote.js';
import { MAP, PROT, SYS } from '../ptrace/syscalls.js';

/**
 * Every signal that can be blocked, except SIGTRAP: our int3 traps are forced signals, and
 * the kernel unblocks a forced signal anyway. SIGKILL and SIGSTOP cannot be blocked.
 */
const ALL_SIGNALS = ((1n << 64n) - 1n) & ~(1n << 8n) & ~(1n << 18n) & ~(1n << 4n);

export class Parasite {
  private readonly savedMasks = new Map<number, bigint>();
  private readonly tasks = new Map<number, RemoteTask>();
  private saved: Buffer | undefined;
  private scratch = 0;

  private constructor(readonly pid: number, private readonly insn: number, private readonly scratchSize: number) {}

  static open(pid: number, maps: MapEntry[], pageSize: number): Parasite {
    const text = maps.find((m) => m.prot.exec && m.prot.read && !m.special?.startsWith('[v') && m.end - m.start >= 16);
    if (!text) throw new ProcessError('E_DUMP', `no executable mapping to run remote syscalls in pid ${pid}`, { pid });
    const p = new Parasite(pid, text.start, pageSize);
    p.saved = pt.peek(pid, text.start, SYSCALL_INSN.length);
    pt.poke(pid, text.start, SYSCALL_INSN);
    try {
      const leader = p.task(pid);
      const addr = leader.raw(SYS.mmap, 0, pageSize, PROT.READ | PROT.WRITE, MAP.PRIVATE | MAP.ANONYMOUS, -1, 0);
      if (addr < 0n) throw new ProcessError('E_DUMP', `remote mmap of a scratch page failed in pid ${pid}: errno ${-addr}`, { pid });
      p.scratch = Number(addr);
      for (const t of p.tasks.values()) {
        t.scratch = p.scratch;
        t.scratchSize = pageSize;
      }
    } catch (err) {
      p.close();
      throw err;
    }
    return p;
  }

  /** A RemoteTask for thread `tid` (its signals blocked until close). */
  task(tid: number): RemoteTask {
    let t = this.tasks.get(tid);
    if (!t) {
      // A thread stopped inside sigsuspend/ppoll/pselect shows the call's temporary mask; its
      // own mask is put back by the kernel when it leaves the stop, i.e. at our first syscall.
      const before = pt.getSigmask(tid);
      pt.setSigmask(tid, ALL_SIGNALS);
      t = new RemoteTask(this.pid, tid, this.insn, this.scratch, this.scratch ? this.scratchSize : 0);
      t.raw(SYS.getpid);
      const after = pt.getSigmask(tid);
      this.savedMasks.set(tid, after === ALL_SIGNALS ? before : after);
      pt.setSigmask(tid, ALL_SIGNALS);
      this.tasks.set(tid, t);
    }
    return t;
  }

  /** The thread's signal mask as it was before we blocked everything. */
  originalMask(tid: number): bigint | undefined {
    return this.savedMasks.get(tid);
  }

  /** Unmaps the scratch page, puts the borrowed bytes back and restores signal masks. */
  close(): void {
    const leader = this.tasks.get(this.pid);
    if (this.scratch && leader) leader.raw(SYS.munmap, this.scratch, this.scratchSize);
    this.scratch = 0;
    if (this.saved) pt.poke(this.pid, this.insn, this.saved);
    this.saved = undefined;
    for (const [tid, mask] of this.savedMasks) pt.setSigmask(tid, mask);
    this.savedMasks.clear();
    this.tasks.clear();
  }
}
