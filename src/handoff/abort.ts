// handoff abort: undoes a prepare that will not jump, from another process: the preparing
// process was killed (the watchdog runs this by itself then), or a prepare without --exec
// staged a kernel that is no longer wanted. Processes need no thawing: they were frozen with
// ptrace, which lets them run as soon as the tracer is gone. What may be left is undone here:
// TCP sockets a dump left in repair mode (switched off again: the connection carries on),
// the network lock tables, the staged kernel, a half-written store, the pending record.
import { readFileSync } from 'node:fs';
import { setTimeout as sleep } from 'node:timers/promises';
import { logger } from '../log.js';
import { listFds } from '../kernel/proc.js';
import { closeFd, takeFd } from '../native/fd.js';
import { IPPROTO_TCP, SO, SOL_SOCKET, TCP_REPAIR_OFF, setsockoptInt, tcpInfo, tcpRepair, tryGetsockoptInt } from '../native/socket.js';
import { listTables, unlock } from './netlock.js';
import { kexecLoaded, unloadKernel } from './kexec.js';
import { discardStore } from './prepare.js';
import { releaseHeldUnits } from './hooks.js';
import { clearPending, readPending, type PendingState } from './state.js';
import { EXIT, HandoffError } from '../errors.js';

const log = logger('abort');
const TCP_ESTABLISHED = 1;
const TCP_CLOSE = 7;

export interface AbortReport {
  /** Nothing was pending. */
  nothing: boolean;
  pending?: PendingState;
  repairedSockets: { pid: number; fd: number }[];
  unlockedTables: string[];
  kernelUnloaded: boolean;
  /** The watchdog found the processes already stopped for the jump and left everything for resume. */
  keptForResume?: boolean;
}

function alive(pid: number): boolean {
  try {
    process.kill(pid, 0);
    return true;
  } catch (err) {
    return (err as NodeJS.ErrnoException).code === 'EPERM';
  }
}

/** Makes sure no TCP connection of these processes is left in repair mode (a killed dump leaves them there). */
export function leaveRepairMode(pids: number[]): { pid: number; fd: number }[] {
  const fixed: { pid: number; fd: number }[] = [];
  for (const pid of pids) {
    let fds;
    try {
      fds = listFds(pid);
    } catch {
      continue;
    }
    for (const { fd, link } of fds) {
      if (!link.startsWith('socket:')) continue;
      let local: number;
      try {
        local = takeFd(pid, fd);
      } catch (err) {
        log.error('cannot take the socket to check its repair mode', { pid, fd, error: String(err) });
        continue;
      }
      try {
        const protocol = tryGetsockoptInt(local, SOL_SOCKET, SO.PROTOCOL);
        const state = protocol === IPPROTO_TCP ? tcpInfo(local).state : -1;
        log.debug('socket', { pid, fd, protocol, state });
        if (protocol !== IPPROTO_TCP) continue;
        // Repair mode is only possible (and only left on) in these states.
        if (state !== TCP_ESTABLISHED && state !== TCP_CLOSE) continue;
        // getsockopt(TCP_REPAIR) does not exist on every kernel: switch it off on every
        // connection, which for one not in repair mode only sends a window probe.
        const reuse = tryGetsockoptInt(local, SOL_SOCKET, SO.REUSEADDR);
        // TCP_REPAIR_OFF (not _NO_WP) sends a window probe: the peer hears from us at once.
        tcpRepair(local, TCP_REPAIR_OFF);
        // Leaving repair resets SO_REUSEADDR; put it back.
        if (reuse !== undefined) setsockoptInt(local, SOL_SOCKET, SO.REUSEADDR, reuse);
        fixed.push({ pid, fd });
      } catch (err) {
        log.error('cannot switch repair mode off', { pid, fd, error: String(err) });
      } finally {
        closeFd(local);
      }
    }
  }
  return fixed;
}

/** Our lock tables: the default one and the per-tree ones prepare uses. */
export async function ourLockTables(): Promise<string[]> {
  const tables = await listTables().catch(() => [] as string[]);
  return tables.filter((t) => /^inet handoff(_t\d+)?$/.test(t)).map((t) => t.slice('inet '.length));
}

/** Alive and not a zombie: a killed process whose parent has not reaped it yet is gone. */
function running(pid: number): boolean {
  try {
    const stat = readFileSync(`/proc/${pid}/stat`, 'utf8');
    const state = stat.slice(stat.lastIndexOf(')') + 2, stat.lastIndexOf(')') + 3);
    return state !== 'Z' && state !== 'X';
  } catch {
    return false;
  }
}

/**
 * Whether the handed-off processes are gone while their image is written: prepare killed them
 * for the jump (systemctl kexec), so the store holds the only copy of them.
 */
function onlyCopyInStore(p: PendingState): boolean {
  return (p.phase === 'written' || p.phase === 'executing') && p.pids.length > 0 && !p.pids.some(running);
}

export async function abort(options: { watch?: number; force?: boolean } = {}): Promise<AbortReport> {
  if (options.watch !== undefined) {
    while (alive(options.watch)) await sleep(100);
    const p = readPending();
    // The preparer finished its own business (jumped, or rolled back and cleared the record).
    if (!p || p.preparer !== options.watch || p.phase === 'staged') return { nothing: true, repairedSockets: [], unlockedTables: [], kernelUnloaded: false };
    // Killed by the shutdown that systemctl kexec started: the jump is under way. Undoing now
    // would unload the next kernel and delete the only copy of the processes.
    if (onlyCopyInStore(p)) {
      log.warn('the preparing process died after the processes were stopped for the jump: everything is kept for handoff resume', { preparer: p.preparer, phase: p.phase });
      return { nothing: false, pending: p, repairedSockets: [], unlockedTables: [], kernelUnloaded: false, keptForResume: true };
    }
    log.warn('the preparing process died before the jump: undoing its prepare', { preparer: p.preparer, phase: p.phase });
  }
  const pending = readPending();
  if (pending && !options.force && pending.preparer !== process.pid && !alive(pending.preparer) && onlyCopyInStore(pending)) {
    throw new HandoffError('E_ABORT_LOSES_PROCESSES', `the processes of this prepare (${pending.pids.join(' ')}) are gone and the store holds their only copy: run handoff resume to bring them back (abort --force discards them)`, { pids: pending.pids }, { exitCode: EXIT.process });
  }
  if (pending && pending.phase !== 'staged' && alive(pending.preparer) && pending.preparer !== process.pid) {
    if (!options.force) throw new HandoffError('E_PREPARE_RUNNING', `handoff prepare (pid ${pending.preparer}) is still running; it undoes its own work on failure (use --force to kill it first)`, { pid: pending.preparer });
    process.kill(pending.preparer, 'SIGKILL');
    while (alive(pending.preparer)) await sleep(20);
  }
  const repairedSockets = pending ? leaveRepairMode(pending.pids) : [];
  const unlockedTables: string[] = [];
  const tables = new Set([...(pending?.lockTables ?? []), ...(await ourLockTables())]);
  for (const table of tables) if (await unlock({ table }).catch(() => false)) unlockedTables.push(table);
  let kernelUnloaded = false;
  if (pending?.kernelStaged && kexecLoaded()) kernelUnloaded = await unloadKernel();
  if (pending) {
    await releaseHeldUnits();
    discardStore(pending.store, pending.tempFiles);
    clearPending();
  }
  return { nothing: !pending, pending, repairedSockets, unlockedTables, kernelUnloaded };
}
