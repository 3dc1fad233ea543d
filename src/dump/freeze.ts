// Freezing a set of processes: PTRACE_SEIZE + PTRACE_INTERRUPT on every thread, re-scanning
// until no thread appears that is not stopped. Nothing of theirs runs until thaw() or kill().
import { ProcessError, HandoffError } from '../errors.js';
import { logger } from '../log.js';
import { listTasks } from '../kernel/proc.js';
import * as pt from '../native/ptrace.js';

const log = logger('freeze');

export class Frozen {
  /** pid -> its stopped threads (the leader first). */
  readonly threads = new Map<number, number[]>();
  private readonly seized = new Set<number>();
  frozenAt = 0n;

  constructor(readonly pids: readonly number[]) {}

  freeze(): void {
    this.frozenAt = process.hrtime.bigint();
    try {
      for (let round = 0; ; round++) {
        let added = 0;
        for (const pid of this.pids) {
          for (const tid of listTasks(pid)) {
            if (this.seized.has(tid)) continue;
            this.stop(pid, tid);
            added++;
          }
        }
        if (added === 0) break;
        if (round > 100) throw new ProcessError('E_FREEZE', 'threads keep appearing; cannot freeze', { pid: this.pids[0] });
      }
      for (const pid of this.pids) this.threads.set(pid, listTasks(pid));
      log.debug('frozen', { pids: this.pids.length, threads: this.seized.size });
    } catch (err) {
      this.thaw();
      throw err;
    }
  }

  private stop(pid: number, tid: number): void {
    try {
      pt.seize(tid, 0);
    } catch (cause) {
      throw new ProcessError('E_FREEZE', `cannot seize thread ${tid} of pid ${pid} (already traced, or gone)`, { pid, tid }, cause);
    }
    this.seized.add(tid);
    pt.interrupt(tid);
    for (;;) {
      const st = pt.waitFor(tid)!;
      if (st.kind !== 'stopped') throw new ProcessError('E_FREEZE', `thread ${tid} of pid ${pid} ended while being frozen`, { pid, tid });
      if (st.event === pt.PTRACE_EVENT.STOP) return;
      // A signal arrived before our interrupt: let it be delivered as it would have been; the
      // interrupt stays pending and stops the thread right after.
      pt.cont(tid, st.event === 0 ? st.signal : 0);
    }
  }

  /** Lets every thread run again exactly where it was. */
  thaw(): void {
    for (const tid of this.seized) pt.detachQuietly(tid);
    this.seized.clear();
  }

  /** Kills the frozen processes (after a successful dump without --leave-running). */
  kill(): void {
    for (const pid of this.pids) {
      try {
        process.kill(pid, 'SIGKILL');
      } catch (err) {
        if ((err as NodeJS.ErrnoException).code !== 'ESRCH') throw new HandoffError('E_KILL', `cannot kill ${pid}`, { pid }, { cause: err });
      }
    }
    for (const tid of this.seized) pt.detachQuietly(tid);
    this.seized.clear();
  }

  frozenMs(): number {
    return Number(process.hrtime.bigint() - this.frozenAt) / 1e6;
  }
}
