// Signal dispositions (rt_sigaction) and the process-wide pending queue. Dump and restore.
import type { SignalAction, SignalActionsRecord, SignalsPendingRecord } from '../format/records.js';
import * as pt from '../native/ptrace.js';
import type { RemoteTask } from '../ptrace/remote.js';
import { SYS } from '../ptrace/syscalls.js';
import { decodeSiginfo } from './thread.js';

const NSIG = 64;
const SIGKILL = 9;
const SIGSTOP = 19;
const SIGCHLD = 17;
/** struct kernel_sigaction on x86_64: handler, flags, restorer, mask (each 8 bytes). */
const KSIGACTION_SIZE = 32;

/**
 * Only signals with a non-default disposition are asked about (caught or ignored, from
 * /proc status), plus SIGCHLD whose flags (SA_NOCLDSTOP/NOCLDWAIT) matter even at SIG_DFL:
 * each question is a round trip into the frozen process.
 */
export function dumpSignalActions(task: RemoteTask, caught: bigint, ignored: bigint): SignalActionsRecord {
  const actions: SignalAction[] = [];
  const wanted = caught | ignored | (1n << BigInt(SIGCHLD - 1));
  for (let signal = 1; signal <= NSIG; signal++) {
    if (signal === SIGKILL || signal === SIGSTOP || !(wanted & (1n << BigInt(signal - 1)))) continue;
    task.call('rt_sigaction', SYS.rt_sigaction, signal, 0, task.scratch, 8);
    const b = task.get(KSIGACTION_SIZE);
    const handler = b.readBigUInt64LE(0);
    const flags = Number(b.readBigUInt64LE(8));
    const restorer = b.readBigUInt64LE(16);
    const mask = b.readBigUInt64LE(24);
    if (handler === 0n && flags === 0 && mask === 0n) continue; // default: nothing to restore
    actions.push({ signal, handler, flags, restorer, mask });
  }
  return { kind: 'signal-actions', pid: task.pid, actions };
}

export function restoreSignalActions(task: RemoteTask, rec: SignalActionsRecord): void {
  for (const a of rec.actions) {
    const b = Buffer.alloc(KSIGACTION_SIZE);
    b.writeBigUInt64LE(a.handler, 0);
    b.writeBigUInt64LE(BigInt(a.flags), 8);
    b.writeBigUInt64LE(a.restorer, 16);
    b.writeBigUInt64LE(a.mask, 24);
    task.call(`rt_sigaction(${a.signal})`, SYS.rt_sigaction, a.signal, task.put(b), 0, 8);
  }
}

export function dumpPendingSignals(pid: number): SignalsPendingRecord {
  return { kind: 'signals-pending', pid, signals: pt.peekSiginfo(pid, true).map(decodeSiginfo) };
}

/** Re-queues process-wide pending signals; they stay pending behind the restored masks. */
export function restorePendingSignals(task: RemoteTask, rec: SignalsPendingRecord): void {
  for (const s of rec.signals) {
    task.call('rt_sigqueueinfo', SYS.rt_sigqueueinfo, task.pid, s.signo, task.put(Buffer.from(s.raw)));
  }
}
