// handoff dump: discover -> preflight -> freeze -> read state -> write image -> kill or thaw.
// Until the image is complete and synced, any failure thaws the targets: nothing is lost.
import { readFileSync, readlinkSync } from 'node:fs';
import { hostname, release as kernelRelease } from 'node:os';
import { BlockedError, ProcessError, asHandoffError, type Blocker } from '../errors.js';
import { logger } from '../log.js';
import { version as toolVersion } from '../version.js';
import type { ClocksRecord, Feature } from '../format/records.js';
import { ImageWriter } from '../format/writer.js';
import { children, listFds, readMaps, readSmapsFlags, readStat, readStatus } from '../kernel/proc.js';
import { closeFd, sameOpenFile } from '../native/fd.js';
import { fdModules } from '../objects/index.js';
import { drainListeners, listeningPort, lockEntry } from '../objects/tcp.js';
import { unixBacklog } from '../objects/unix.js';
import { dumpNetconfig } from '../objects/netconfig.js';
import { lock, unlock, type LockSpec } from '../handoff/netlock.js';
import { Backings, areaType, dumpMemory, memoryBlockers, prepareDumpBuffers, type MemoryStats } from '../objects/memory.js';
import { dumpProcess } from '../objects/process.js';
import { dumpCredentials } from '../objects/credentials.js';
import { dumpPendingSignals, dumpSignalActions } from '../objects/signals.js';
import { dumpItimers, dumpPosixTimers } from '../objects/timers.js';
import { dumpThread } from '../objects/thread.js';
import type { DumpContext, FdInfo, ImageRecord, ObjectOptions, PreflightContext } from '../objects/types.js';
import type { RemoteTask } from '../ptrace/remote.js';
import { SYS } from '../ptrace/syscalls.js';
import { Frozen } from './freeze.js';
import { fdInfo } from './fdinfo.js';
import * as pt from '../native/ptrace.js';
import { Parasite } from './parasite.js';

const log = logger('dump');
const O_CLOEXEC = 0o2000000;
const PAGE_SIZE = 4096;

export interface DumpOptions {
  pid: number;
  /** Include every descendant of pid. */
  tree?: boolean;
  image: string;
  /** Thaw the processes after the dump instead of killing them. */
  leaveRunning?: boolean;
  /**
   * Keep the processes frozen after a successful dump; the caller ends it with
   * result.release('kill' | 'thaw') (prepare: kill just before kexec, thaw on abort).
   */
  keepFrozen?: boolean;
  /** nftables table for the network lock (default "handoff"). */
  lockTable?: string;
  /** Record the host network configuration (default true). */
  netconfig?: boolean;
  /** How long listeners get to empty their accept queues before the freeze (ms, default 2000). */
  acceptDrainMs?: number;
  /** A unix socket whose peer is not dumped: a blocker unless 'closed' or 'reconnect' (ObjectOptions). */
  unixOutside?: ObjectOptions['unixOutside'];
}

export interface DumpResult {
  image: string;
  pids: number[];
  threads: number;
  bytes: number;
  pagesBytes: number;
  /** Time from freeze to kill/thaw (0 while still frozen with keepFrozen). */
  frozenMs: number;
  sha256: string;
  /** Whether a network lock is in place (TCP sockets were dumped). */
  locked: boolean;
  /** Milliseconds per phase while frozen: freeze, layout, state, memory, files, sync. */
  phases: Record<string, number>;
  /** With keepFrozen: ends the freeze. */
  release?: (how: 'kill' | 'thaw') => Promise<void>;
}

/** Most image bytes a dump that leaves its processes running keeps in memory while frozen. */
const HOLD_BUDGET = 64 << 20;

/** Resident bytes of a process (smaps_rollup Rss): an upper bound of what its dump stores. */
function residentBytes(pid: number): number {
  try {
    const kb = /^Rss:\s+(\d+) kB/m.exec(readFileSync(`/proc/${pid}/smaps_rollup`, 'utf8'))?.[1];
    return kb === undefined ? Infinity : Number(kb) * 1024;
  } catch {
    return Infinity;
  }
}

function runAll(fns: (() => void)[]): void {
  for (const fn of fns.splice(0)) {
    try {
      fn();
    } catch (err) {
      log.error('undo step failed', { error: String(err) });
    }
  }
}

/** pid plus, with tree, every descendant (parents before children). */
export function discover(pid: number, tree: boolean): number[] {
  readStat(pid); // E_NO_PROCESS when it is not there
  if (pid === process.pid || pid === 1) throw new ProcessError('E_DUMP', `refusing to dump pid ${pid}`, { pid });
  const out = [pid];
  for (let i = 0; tree && i < out.length; i++) for (const c of children(out[i]!)) if (!out.includes(c)) out.push(c);
  return out;
}

/** Everything that cannot be handed off, found without stopping anything. */
export function preflight(pids: number[], options: ObjectOptions = {}): Blocker[] {
  const blockers: Blocker[] = [];
  const set = new Set(pids);
  // Descriptors in flight (in unix socket queues) are checked by the module that would dump them.
  const pctx: PreflightContext = {
    options,
    inFlight(localFd) {
      const info = fdInfo(process.pid, localFd);
      try {
        const module = fdModules.find((m) => m.matches(info));
        if (!module) return [{ code: 'B_FD_KIND', pid: process.pid, fd: localFd, reason: `unsupported kind of fd: ${info.link}` }];
        return module.preflight?.(info, set, pctx) ?? [];
      } finally {
        closeFd(info.localFd);
      }
    },
  };
  for (const pid of pids) {
    const status = readStatus(pid);
    if (status.state.startsWith('Z')) continue;
    if (status.tracerPid !== 0) blockers.push({ code: 'B_TRACED', pid, reason: `already traced by pid ${status.tracerPid}` });
    if (status.seccomp === 2) blockers.push({ code: 'B_SECCOMP', pid, reason: 'seccomp filters are not supported yet' });
    // Sockets are restored, and the network lock installed, in the restorer's namespaces.
    for (const ns of ['net', 'mnt', 'pid', 'user', 'ipc', 'uts']) {
      if (readlinkSync(`/proc/${pid}/ns/${ns}`) !== readlinkSync(`/proc/self/ns/${ns}`)) blockers.push({ code: 'B_NAMESPACE', pid, reason: `runs in another ${ns} namespace than handoff; namespaces are not handed off yet (run handoff inside them)` });
    }
    blockers.push(...memoryBlockers(pid, readMaps(pid)));
    for (const { fd, link } of listFds(pid)) {
      let info: FdInfo;
      try {
        info = fdInfo(pid, fd, link);
      } catch (err) {
        blockers.push({ code: 'B_FD_UNREADABLE', pid, fd, reason: asHandoffError(err).message });
        continue;
      }
      try {
        const module = fdModules.find((m) => m.matches(info));
        if (!module) blockers.push({ code: 'B_FD_KIND', pid, fd, reason: `unsupported kind of fd: ${link}` });
        else blockers.push(...(module.preflight?.(info, set, pctx) ?? []));
      } finally {
        closeFd(info.localFd);
      }
    }
  }
  return blockers;
}

function clocks(task: RemoteTask): ClocksRecord {
  const read = (clock: number) => {
    task.call('clock_gettime', SYS.clock_gettime, clock, task.scratch);
    const b = task.get(16);
    return { sec: Number(b.readBigInt64LE(0)), nsec: Number(b.readBigInt64LE(8)) };
  };
  // Read inside the target: it may live in a time namespace of its own.
  return { kind: 'clocks', realtime: read(0), monotonic: read(1), boottime: read(7) };
}

/**
 * What a restore of any image needs from its kernel. The vDSO/vvar layout is not one of them:
 * a different layout is bridged with trampolines (src/objects/vdso.ts).
 */
export const IMAGE_FEATURES: readonly Feature[] = [
  { name: 'clone3-set-tid', minKernel: '5.5' },
  { name: 'pidfd-getfd', minKernel: '5.6' },
  { name: 'time-namespace', minKernel: '5.6' },
];

/**
 * A connection waiting in a listener's accept queue (or half-open) cannot be put back into one
 * by a restore. Before the freeze, the lock table drops new SYNs to the listeners' ports (the
 * clients retry their SYN: a pause, not a reset) while the processes, still running, accept what
 * is queued. A listener not empty in time is a blocker: nothing frozen, the table removed.
 * Returns whether the guard is in place (the caller's lock replaces it, or it must be removed).
 */
async function drainAcceptQueues(pids: number[], options: DumpOptions): Promise<boolean> {
  const listeners: FdInfo[] = [];
  const unixListeners: FdInfo[] = [];
  const timeoutMs = options.acceptDrainMs ?? 2000;
  const started = Date.now();
  try {
    for (const pid of pids) {
      for (const { fd, link } of listFds(pid)) {
        if (!link.startsWith('socket:')) continue;
        const info = fdInfo(pid, fd, link);
        if (listeningPort(info) !== undefined) listeners.push(info);
        else if (unixBacklog(info) > 0) unixListeners.push(info);
        else closeFd(info.localFd);
      }
    }
    let guarded = false;
    const table = { table: options.lockTable };
    if (listeners.length) {
      await lock({ connections: [], synPorts: listeners.map((l) => listeningPort(l)!) }, table);
      guarded = true;
    }
    let blockers: Blocker[];
    try {
      blockers = listeners.length ? await drainListeners(listeners, timeoutMs) : [];
      // Unix connects cannot be held off like SYNs: wait for the queues to empty; one that
      // comes between this and the freeze is caught by the unix module (a blocker, thawed).
      if (!blockers.length) blockers = await drainUnixListeners(unixListeners, started + timeoutMs);
      if (listeners.length || unixListeners.length) log.info('accept queues drained', { listeners: listeners.length + unixListeners.length, ms: Date.now() - started, blocked: blockers.length });
    } catch (err) {
      if (guarded) await unlock(table);
      throw err;
    }
    if (blockers.length) {
      if (guarded) await unlock(table);
      throw new BlockedError(blockers);
    }
    return guarded;
  } finally {
    for (const l of [...listeners, ...unixListeners]) closeFd(l.localFd);
  }
}

async function drainUnixListeners(listeners: FdInfo[], deadline: number): Promise<Blocker[]> {
  for (;;) {
    const waiting = listeners.map((info) => ({ info, queued: unixBacklog(info) })).filter((l) => l.queued > 0);
    if (!waiting.length) return [];
    if (Date.now() >= deadline) {
      return waiting.map(({ info, queued }) => ({ code: 'unix-accept-queue', pid: info.pid, fd: info.fd, reason: `listening unix socket still has ${queued} connection(s) not accepted after --accept-drain-ms; the kernel cannot put an accepted connection back, so they are accepted before the freeze` }));
    }
    await new Promise((r) => setTimeout(r, 10));
  }
}

export async function dump(options: DumpOptions): Promise<DumpResult> {
  const pids = discover(options.pid, options.tree ?? false);
  const blockers = preflight(pids, { unixOutside: options.unixOutside });
  if (blockers.length) throw new BlockedError(blockers);

  const zombies = new Set(pids.filter((p) => readStat(p).state === 'Z'));
  const frozen = new Frozen(pids.filter((p) => !zombies.has(p)));
  const phases: Record<string, number> = {};
  let mark = process.hrtime.bigint();
  const phase = (name: string) => {
    const now = process.hrtime.bigint();
    phases[name] = (phases[name] ?? 0) + Number(now - mark) / 1e6;
    mark = now;
  };
  // Work that does not need the processes stopped happens before the freeze: the image file
  // is created and the VmFlags (smaps is slow to read) are taken; areas that appear between
  // now and the freeze are read again below.
  const smapsBefore = new Map(frozen.pids.map((p) => [p, readSmapsFlags(p)]));
  let writer: ImageWriter | undefined = ImageWriter.create(options.image, {
    minKernel: '5.10',
    sourceKernel: kernelRelease(),
    arch: 'x86_64',
    pageSize: PAGE_SIZE,
    tool: { name: 'handoff', version: toolVersion() },
    created: new Date().toISOString(),
    hostname: hostname(),
    features: [...IMAGE_FEATURES],
  });
  if (options.netconfig !== false) {
    try {
      writer.record(await dumpNetconfig());
    } catch (err) {
      writer.abort();
      throw err;
    }
  }
  let guarded = false;
  try {
    guarded = await drainAcceptQueues(pids, options);
  } catch (err) {
    writer.abort();
    throw err;
  }
  // The processes ran through the drain: take their VmFlags again.
  if (guarded) for (const p of frozen.pids) smapsBefore.set(p, readSmapsFlags(p));
  // Left running, a small image is kept in memory until the processes run again: hashing,
  // writing and syncing it happen while they run (the frozen time of a small process).
  const thawEarly = options.leaveRunning === true && !options.keepFrozen;
  if (thawEarly) {
    const estimate = frozen.pids.reduce((n, p) => n + residentBytes(p), 0) + (1 << 20);
    if (estimate <= HOLD_BUDGET) writer.hold(HOLD_BUDGET, estimate);
  }
  prepareDumpBuffers();
  mark = process.hrtime.bigint();
  try {
    frozen.freeze();
  } catch (err) {
    writer.abort();
    if (guarded) await unlock({ table: options.lockTable }).catch((e: unknown) => log.error('cannot remove the network lock: run handoff unlock', { error: String(e) }));
    throw err;
  }
  phase('freeze');
  const localFds: number[] = [];
  const undo: (() => void)[] = [];
  let locked = false;
  try {
    const maps = new Map(frozen.pids.map((p) => [p, readMaps(p)]));
    const w = writer;
    const stats: MemoryStats = { areas: 0, pages: 0, bytes: 0 };
    const newId = (() => { let id = 0; return () => ++id; })();
    const backings = new Backings(newId);
    let clocksDone = false;
    for (const pid of pids) {
      if (zombies.has(pid)) {
        w.record(dumpProcess(pid, undefined));
        continue;
      }
      const m = maps.get(pid)!;
      let flags = smapsBefore.get(pid)!;
      if (m.some((a) => !flags.has(a.start))) flags = readSmapsFlags(pid);
      // A thread caught inside the vDSO would resume mid-function in a vDSO that may not be
      // the same after the handoff: let it finish the call first.
      const vdso = m.find((a) => a.special === '[vdso]');
      if (vdso) for (const tid of frozen.threads.get(pid)!) pt.stepOut(tid, vdso.start, vdso.end);
      phase('layout');
      const parasite = Parasite.open(pid, m, PAGE_SIZE);
      try {
        const leader = parasite.task(pid);
        if (!clocksDone) {
          w.record(clocks(leader));
          clocksDone = true;
        }
        w.record(dumpProcess(pid, leader));
        w.record(dumpCredentials(leader));
        for (const tid of frozen.threads.get(pid)!) {
          const task = parasite.task(tid);
          w.record(dumpThread(pid, tid, task, parasite.originalMask(tid)!));
        }
        const status = readStatus(pid);
        w.record(dumpSignalActions(leader, status.sigCgt, status.sigIgn));
        w.record(dumpPendingSignals(pid));
        w.record(dumpItimers(leader));
        for (const t of dumpPosixTimers(leader)) w.record(t);
      } finally {
        parasite.close();
      }
      // After the parasite is gone, so that no borrowed byte or scratch page is stored.
      phase('state');
      await dumpMemory(pid, m.filter((a) => areaType(a) !== 'vsyscall'), flags, w, PAGE_SIZE, stats, backings);
      phase('memory');
    }

    // File descriptors: one object per open file description, shared ones found with kcmp.
    const atEnd: (() => void)[] = [];
    const ctx: DumpContext = {
      emit: (r: ImageRecord) => w.record(r as never),
      newId,
      pids: new Set(pids),
      options: { unixOutside: options.unixOutside },
      // A descriptor in flight: shared with an fd seen before, or dumped as an object of its own.
      dumpFd: (localFd) => {
        localFds.push(localFd);
        const info = fdInfo(process.pid, localFd);
        localFds.push(info.localFd);
        const shared = seen.find((s) => s.info.stat.dev === info.stat.dev && s.info.stat.ino === info.stat.ino && sameOpenFile(s.info.pid, s.info.fd, info.pid, info.fd));
        if (shared) return shared.id;
        const module = fdModules.find((mod) => mod.matches(info));
        if (!module) throw new BlockedError([{ code: 'B_FD_KIND', pid: process.pid, fd: localFd, reason: `unsupported kind of fd in flight: ${info.link}` }]);
        const id = module.dump(info, ctx);
        seen.push({ info, id });
        return id;
      },
      atEnd: (fn) => atEnd.push(fn),
      onAbort: (fn) => undo.push(fn),
      log,
    };
    const infos: FdInfo[] = [];
    for (const pid of frozen.pids) {
      for (const { fd, link } of listFds(pid)) {
        const info = fdInfo(pid, fd, link);
        localFds.push(info.localFd);
        infos.push(info);
      }
    }
    // DESIGN 6: the old kernel must neither ACK new data nor send FIN/RST once a socket is read.
    const spec: LockSpec = { connections: [], ports: [] };
    for (const info of infos) {
      const entry = lockEntry(info);
      if (entry?.connection) spec.connections.push(entry.connection);
      if (entry?.port !== undefined) spec.ports!.push(entry.port);
    }
    if (spec.connections.length || spec.ports!.length) {
      await lock(spec, { table: options.lockTable });
      locked = true;
    } else if (guarded) {
      // The listeners were closed meanwhile: nothing left to lock.
      await unlock({ table: options.lockTable });
    }
    const seen: { info: FdInfo; id: number }[] = [];
    for (const info of infos) {
      const { pid, fd } = info;
      const shared = seen.find((s) => s.info.stat.dev === info.stat.dev && s.info.stat.ino === info.stat.ino && sameOpenFile(s.info.pid, s.info.fd, pid, fd));
      let id: number;
      if (shared) {
        id = shared.id;
      } else {
        const backing = backings.find(info.stat.dev, info.stat.ino);
        if (backing !== undefined) {
          // A memfd or deleted file that is also mapped: another open of the one backing file.
          id = newId();
          w.record({ kind: 'file', id, type: info.link.startsWith('/memfd:') ? 'memfd' : 'deleted', path: info.link.replace(/ \(deleted\)$/, ''), flags: info.fdinfo.flags & ~O_CLOEXEC, mode: info.stat.mode, offset: info.fdinfo.pos, sameFileAs: backing });
        } else {
          const module = fdModules.find((mod) => mod.matches(info));
          if (!module) throw new BlockedError([{ code: 'B_FD_KIND', pid, fd, reason: `unsupported kind of fd: ${info.link}` }]);
          id = module.dump(info, ctx);
        }
        seen.push({ info, id });
      }
      w.record({ kind: 'fd', pid, fd, object: id, cloexec: (info.fdinfo.flags & O_CLOEXEC) !== 0 });
    }
    for (const fn of atEnd) fn();
    // With keepFrozen (prepare), the caller may die before it kills or thaws: ptrace then lets
    // the processes run at once, and a socket still in repair mode would fail their next
    // read. Repair goes off now; the network lock keeps the connections silent meanwhile, and
    // the old kernel is gone before any of it matters.
    if (options.keepFrozen) runAll(undo);
    phase('files');
    const threads = [...frozen.threads.values()].reduce((n, t) => n + t.length, 0);
    const result: DumpResult = { image: w.path, pids, threads, bytes: 0, pagesBytes: stats.bytes, frozenMs: 0, sha256: '', locked, phases };
    const release = async (how: 'kill' | 'thaw') => {
      if (how === 'kill') {
        // The lock stays: the restore removes it once the sockets are back.
        frozen.kill();
      } else {
        runAll(undo);
        frozen.thaw();
        if (locked) await unlock({ table: options.lockTable });
      }
      result.frozenMs = frozen.frozenMs();
      log.info(how === 'kill' ? 'dumped, killed' : 'dumped, running again', { pids: pids.length, threads, frozenMs: result.frozenMs });
    };
    // Everything is in memory: the processes need not wait for the write and the fsync.
    const early = thawEarly && w.holding;
    if (early) await release('thaw');
    const done = w.finish();
    phase('sync');
    writer = undefined;
    Object.assign(result, { image: done.path, bytes: done.bytes, sha256: done.sha256 });
    if (early) return result;
    if (options.keepFrozen) {
      result.release = release;
      return result;
    }
    await release(options.leaveRunning ? 'thaw' : 'kill');
    return result;
  } catch (err) {
    writer?.abort();
    runAll(undo);
    frozen.thaw();
    if (locked || guarded) await unlock({ table: options.lockTable }).catch((e: unknown) => log.error('cannot remove the network lock: run handoff unlock', { error: String(e) }));
    throw err;
  } finally {
    for (const fd of localFds) closeFd(fd);
  }
}
