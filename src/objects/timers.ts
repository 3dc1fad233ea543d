// Interval timers (setitimer) and POSIX timers (timer_create). Dump and restore. Remaining
// times are relative, so they continue correctly whatever the clocks read after restore.
import { ProcessError } from '../errors.js';
import type { ItimerValue, ItimersRecord, PosixTimerRecord } from '../format/records.js';
import { readTimers } from '../kernel/proc.js';
import type { RemoteTask } from '../ptrace/remote.js';
import { SYS } from '../ptrace/syscalls.js';

const ITIMER = { real: 0, virtual: 1, prof: 2 } as const;
const SIGEV = { signal: 0, none: 1, thread: 2, threadId: 4 } as const;

function readItimerval(b: Buffer): ItimerValue {
  const us = (off: number) => Number(b.readBigInt64LE(off)) * 1e6 + Number(b.readBigInt64LE(off + 8));
  return { intervalUs: us(0), valueUs: us(16) };
}

function itimerval(v: ItimerValue): Buffer {
  const b = Buffer.alloc(32);
  const put = (us: number, off: number) => {
    b.writeBigInt64LE(BigInt(Math.floor(us / 1e6)), off);
    b.writeBigInt64LE(BigInt(us % 1e6), off + 8);
  };
  put(v.intervalUs, 0);
  put(v.valueUs, 16);
  return b;
}

export function dumpItimers(task: RemoteTask): ItimersRecord {
  const get = (which: number) => {
    task.call('getitimer', SYS.getitimer, which, task.scratch);
    return readItimerval(task.get(32));
  };
  return { kind: 'itimers', pid: task.pid, real: get(ITIMER.real), virtual: get(ITIMER.virtual), prof: get(ITIMER.prof) };
}

export function restoreItimers(task: RemoteTask, rec: ItimersRecord): void {
  for (const which of ['real', 'virtual', 'prof'] as const) {
    const v = rec[which];
    if (v.valueUs === 0 && v.intervalUs === 0) continue;
    // An expired-but-armed timer reads as 0 remaining; arm it to fire at once instead of disarming.
    task.call('setitimer', SYS.setitimer, ITIMER[which], task.put(itimerval({ intervalUs: v.intervalUs, valueUs: v.valueUs || 1 })), 0);
  }
}

const ns = (b: Buffer, off: number) => Number(b.readBigInt64LE(off)) * 1e9 + Number(b.readBigInt64LE(off + 8));

export function dumpPosixTimers(task: RemoteTask): PosixTimerRecord[] {
  return readTimers(task.pid).map((t) => {
    task.call('timer_gettime', SYS.timer_gettime, t.id, task.scratch);
    const spec = task.get(32);
    const overrun = task.call('timer_getoverrun', SYS.timer_getoverrun, t.id);
    const rec: PosixTimerRecord = {
      kind: 'posix-timer',
      pid: task.pid,
      timerId: t.id,
      clock: t.clockId,
      notify: { mechanism: t.notify, signal: t.signal, value: t.sigevValue },
      intervalNs: ns(spec, 0),
      valueNs: ns(spec, 16),
      overrun,
    };
    if (t.targetKind === 'tid') rec.notify.tid = t.target;
    return rec;
  });
}

/**
 * The kernel hands out timer ids in creation order from the lowest free one, so creating
 * them in id order (with placeholders for gaps) reproduces the ids; a mismatch is an error.
 */
export function restorePosixTimers(task: RemoteTask, recs: PosixTimerRecord[]): void {
  const sorted = [...recs].sort((a, b) => a.timerId - b.timerId);
  const placeholders: number[] = [];
  for (const t of sorted) {
    for (;;) {
      const ev = Buffer.alloc(64);
      ev.writeBigUInt64LE(t.notify.value, 0); // sigev_value
      ev.writeInt32LE(t.notify.signal, 8); // sigev_signo
      const mech = t.notify.mechanism === 'none' ? SIGEV.none : t.notify.tid !== undefined ? SIGEV.threadId : SIGEV.signal;
      ev.writeInt32LE(mech, 12); // sigev_notify
      if (t.notify.tid !== undefined) ev.writeInt32LE(t.notify.tid, 16); // sigev_notify_thread_id
      task.put(ev, 0);
      task.call('timer_create', SYS.timer_create, t.clock, task.scratch, task.scratch + 64);
      const id = task.get(4, 64).readInt32LE(0);
      if (id === t.timerId) break;
      if (id > t.timerId) throw new ProcessError('E_RESTORE', `POSIX timer ${t.timerId} came back as ${id}`, { pid: task.pid });
      placeholders.push(id);
    }
    const spec = Buffer.alloc(32);
    spec.writeBigInt64LE(BigInt(Math.floor(t.intervalNs / 1e9)), 0);
    spec.writeBigInt64LE(BigInt(t.intervalNs % 1e9), 8);
    const value = t.valueNs || (t.intervalNs ? 1 : 0);
    spec.writeBigInt64LE(BigInt(Math.floor(value / 1e9)), 16);
    spec.writeBigInt64LE(BigInt(value % 1e9), 24);
    if (value) task.call('timer_settime', SYS.timer_settime, t.timerId, 0, task.put(spec, 128), 0);
  }
  for (const id of placeholders) task.call('timer_delete', 226, id);
}
