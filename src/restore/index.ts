// handoff restore: verify the whole image, then rebuild every process through ptrace and
// remote syscalls (DESIGN 5). Nothing is created before the image has passed verification;
// a failure after that kills whatever was created and says where it stopped.
import { existsSync, readFileSync } from 'node:fs';
import { resolve } from 'node:path';
import { ProcessError, HandoffError, ImageError, asHandoffError } from '../errors.js';
import { logger } from '../log.js';
import { checkKernel, openImage, readPayload, type Image } from '../format/reader.js';
import type { NetconfigRecord, PayloadRef, ClocksRecord, CredentialsRecord, FdRecord, ItimersRecord, MemoryAreaRecord, PagesRecord, PosixTimerRecord, ProcessRecord, SignalActionsRecord, SignalsPendingRecord, ThreadRecord } from '../format/records.js';
import { readMaps, type MapEntry } from '../kernel/proc.js';
import { nativeBuildDir } from '../native/lib.js';
import * as pt from '../native/ptrace.js';
import { moduleForKind, restoreEpollInterest } from '../objects/index.js';
import { SPECIAL_AREAS, restoreArea } from '../objects/memory.js';
import { trampolinePage } from '../objects/vdso.js';
import { restoreNetconfig, type NetconfigDiff } from '../objects/netconfig.js';
import { restoreComm, restoreMm, restoreProcessAttributes } from '../objects/process.js';
import { restoreCredentials } from '../objects/credentials.js';
import { cgroupMounts, restoreCgroups } from '../objects/cgroup.js';
import { restorePendingSignals, restoreSignalActions } from '../objects/signals.js';
import { restoreItimers, restorePosixTimers } from '../objects/timers.js';
import { finishThread, restoreThreadState } from '../objects/thread.js';
import { foregroundOf, ptsIndex, ptyOfSession, restoredSlave } from '../objects/tty.js';
import { TIOC } from '../native/tty.js';
import { readStat } from '../kernel/proc.js';
import type { ImageRecord, RestoreContext } from '../objects/types.js';
import { closeFd } from '../native/fd.js';
import { lockSpecFromRecords, unlock } from '../handoff/netlock.js';
import { RemoteTask, SYSCALL_INSN } from '../ptrace/remote.js';
import { CLONE, MAP, O, PROT, SIG, SYS } from '../ptrace/syscalls.js';

const log = logger('restore');
const PAGE = 4096;
/** The syscall page plus room to park the new kernel's vDSO/vvar while the layout is built. */
const WORK_PAGES = 64;
const ALL_SIGNALS = (1n << 64n) - 1n;
const AT_FDCWD = -100;
const SYS_IOCTL = 16;
/** Where the stub's _start is linked (native/Makefile: -Ttext-segment=0x6f0000000000). */
const STUB_ENTRY = 0x6f0000001000;
const TRACE_OPTIONS = pt.PTRACE_O.TRACECLONE | pt.PTRACE_O.TRACEFORK | pt.PTRACE_O.TRACEVFORK | pt.PTRACE_O.EXITKILL;

export interface RestoreOptions {
  image: string;
  /** Return once the processes run on their own; otherwise wait for the root to exit. */
  detach?: boolean;
  /** nftables table of the network lock to remove once sockets are back (default "handoff"). */
  lockTable?: string;
  /** Add back recorded addresses and routes that this host lacks. */
  reapplyNetwork?: boolean;
}

export interface RestoreResult {
  pids: number[];
  threads: number;
  /** Exit status of the root when not detached. */
  exitCode?: number;
  /** How this host's network configuration differs from the recorded one. */
  network?: NetconfigDiff;
  /**
   * verify: reading and validating the records; restore: everything after, including
   * digestWait, the part of it spent waiting for the image digest (hashed meanwhile).
   */
  ms: { verify: number; restore: number; digestWait: number };
}

/** One process being rebuilt. */
interface Building {
  rec: ProcessRecord;
  task: RemoteTask;
  threads: Map<number, RemoteTask>;
  /** Where the new kernel's special mappings sit now. */
  specials: MapEntry[];
}

class Plan {
  readonly processes: ProcessRecord[] = [];
  readonly byPid = new Map<number, { threads: ThreadRecord[]; areas: MemoryAreaRecord[]; pages: PagesRecord[]; fds: FdRecord[]; creds?: CredentialsRecord; actions?: SignalActionsRecord; pending?: SignalsPendingRecord; itimers?: ItimersRecord; timers: PosixTimerRecord[] }>();
  readonly objects = new Map<number, ImageRecord>();
  clocks?: ClocksRecord;

  constructor(readonly image: Image) {
    for (const r of image.records as unknown as ImageRecord[]) {
      if (typeof r.id === 'number' && r.kind !== 'fd') this.objects.set(r.id, r);
      if (r.kind === 'clocks') this.clocks = r as unknown as ClocksRecord;
      if (r.kind === 'process') this.processes.push(r as unknown as ProcessRecord);
      if (typeof r.pid !== 'number') continue;
      const p = this.of(r.pid);
      switch (r.kind) {
        case 'thread': p.threads.push(r as unknown as ThreadRecord); break;
        case 'memory-area': p.areas.push(r as unknown as MemoryAreaRecord); break;
        case 'pages': p.pages.push(r as unknown as PagesRecord); break;
        case 'fd': p.fds.push(r as unknown as FdRecord); break;
        case 'credentials': p.creds = r as unknown as CredentialsRecord; break;
        case 'signal-actions': p.actions = r as unknown as SignalActionsRecord; break;
        case 'signals-pending': p.pending = r as unknown as SignalsPendingRecord; break;
        case 'itimers': p.itimers = r as unknown as ItimersRecord; break;
        case 'posix-timer': p.timers.push(r as unknown as PosixTimerRecord); break;
      }
    }
  }

  of(pid: number) {
    let p = this.byPid.get(pid);
    if (!p) this.byPid.set(pid, (p = { threads: [], areas: [], pages: [], fds: [], timers: [] }));
    return p;
  }
}

function holder(pid: number): string {
  try {
    return readFileSync(`/proc/${pid}/comm`, 'utf8').trim();
  } catch {
    return '?';
  }
}

/** Refuses before creating anything when a pid or tid we need is taken. */
function checkPidsFree(plan: Plan): void {
  for (const p of plan.processes) {
    const ids = [p.pid, ...plan.of(p.pid).threads.map((t) => t.tid)];
    for (const id of ids) {
      if (existsSync(`/proc/${id}`)) throw new ProcessError('E_PID_IN_USE', `pid ${id} is in use by '${holder(id)}'`, { pid: id });
    }
  }
}

/** "monotonic S NS\nboottime S NS\n" making both clocks continue from their dumped values. */
export function timensOffsets(clocks: ClocksRecord | undefined, now: { monotonic: bigint; boottime: bigint }): string {
  if (!clocks) return '';
  const line = (name: string, dumped: { sec: number; nsec: number }, current: bigint) => {
    const diff = BigInt(dumped.sec) * 1_000_000_000n + BigInt(dumped.nsec) - current;
    let sec = diff / 1_000_000_000n;
    let nsec = diff % 1_000_000_000n;
    if (nsec < 0n) {
      nsec += 1_000_000_000n;
      sec -= 1n;
    }
    return `${name} ${sec} ${nsec}\n`;
  };
  return line('monotonic', clocks.monotonic, now.monotonic) + line('boottime', clocks.boottime, now.boottime);
}

function clockNow(): { monotonic: bigint; boottime: bigint } {
  // hrtime is CLOCK_MONOTONIC; CLOCK_BOOTTIME differs by the time spent suspended (uptime).
  const monotonic = process.hrtime.bigint();
  const boottime = BigInt(Math.round(Number(readFileSync('/proc/uptime', 'utf8').split(' ')[0]) * 1e9));
  return { monotonic, boottime: boottime > monotonic ? boottime : monotonic };
}

/** A free range of `size` bytes in a process's target layout, away from the work area. */
function freeRange(areas: { start: number; end: number }[], size: number, work: number): number {
  const taken = [...areas, { start: work, end: work + WORK_PAGES * PAGE }];
  for (let a = 0x7e0000000000; a > 0x10000000; a -= 0x1000000) {
    if (!taken.some((m) => m.start < a + size && a < m.end)) return a;
  }
  throw new ProcessError('E_RESTORE', 'no free range for the vDSO');
}

/** A page-aligned range free in every layout involved, for the syscall page and parking. */
function workArea(layouts: { start: number; end: number }[][]): number {
  const size = WORK_PAGES * PAGE;
  const all = layouts.flat();
  for (let a = 0x10000000; a < 0x7f0000000000; a += 0x10000000) {
    if (!all.some((m) => m.start < a + size && a < m.end)) return a;
  }
  throw new ProcessError('E_RESTORE', 'no free range for the syscall page');
}

export async function restore(options: RestoreOptions): Promise<RestoreResult> {
  const t0 = process.hrtime.bigint();
  const imagePath = resolve(options.image);
  // The digest of a large image is checked by a worker while the memory of the new (stopped)
  // processes is filled from it; Session.run awaits it before anything restored can act.
  const image = openImage(imagePath, { digest: 'deferred', checkFilledMemory: true });
  try {
    checkKernel(image.header);
    const plan = new Plan(image);
    if (plan.processes.length === 0) throw new HandoffError('E_IMAGE_EMPTY', 'the image holds no process', { path: imagePath }, { exitCode: 3 });
    checkPidsFree(plan);
    // Addresses and routes first: a restored listener may need its address back to bind.
    const net = image.records.find((r) => r.kind === 'netconfig') as NetconfigRecord | undefined;
    let network: NetconfigDiff | undefined;
    let comparing: Promise<NetconfigDiff> | undefined;
    if (net && options.reapplyNetwork) {
      image.fillDone(); // the whole image is checked from the file, now
      await image.digestChecked;
      network = await restoreNetconfig(net, true);
    } else if (net) {
      // Only a comparison (ip and nft run as child processes): it runs while memory fills.
      comparing = restoreNetconfig(net, false);
      comparing.catch(() => undefined);
    }
    const t1 = process.hrtime.bigint();
    const session = new Session(plan, imagePath, options.lockTable);
    try {
      await session.run();
    } catch (err) {
      session.abort();
      // A bad image stays an image error (exit 3), whichever step found it.
      if (err instanceof ImageError) throw err;
      const e = asHandoffError(err);
      throw new ProcessError('E_RESTORE', `restore failed at step '${session.step}': ${e.message}`, { step: session.step, ...e.details }, err);
    }
    const t2 = process.hrtime.bigint();
    if (comparing) network = await comparing;
    const result: RestoreResult = {
      pids: plan.processes.map((p) => p.pid),
      threads: plan.processes.reduce((n, p) => n + plan.of(p.pid).threads.length, 0),
      ms: { verify: Number(t1 - t0) / 1e6, restore: Number(t2 - t1) / 1e6, digestWait: session.digestWaitMs },
    };
    if (network) result.network = network;
    if (!options.detach) result.exitCode = session.waitRoot();
    return result;
  } finally {
    image.close();
  }
}

class Session {
  step = 'start';
  private readonly built = new Map<number, Building>();
  private readonly created: number[] = [];
  private readonly finishHooks: (() => void | Promise<void>)[] = [];
  private readonly abortHooks: (() => void)[] = [];
  private readonly localFds = new Map<number, number>();
  private work = 0;
  /** How long the restore waited for the deferred image digest after filling memory. */
  digestWaitMs = 0;

  constructor(private readonly plan: Plan, private readonly imagePath: string, private readonly lockTable?: string) {}

  async run(): Promise<void> {
    const plan = this.plan;
    const stub = `${nativeBuildDir()}/restore-stub`;
    const roots = plan.processes.filter((p) => !plan.processes.some((q) => q.pid === p.ppid));
    this.work = workArea(plan.processes.map((p) => plan.of(p.pid).areas));
    const offsets = timensOffsets(plan.clocks, clockNow());
    pt.setChildSubreaper(true);

    this.step = 'create processes';
    for (const root of roots) {
      const pid = pt.spawnStub(root.pid, stub, offsets, TRACE_OPTIONS);
      this.created.push(pid);
      this.prepareStub(root);
      this.createChildren(root);
    }
    this.step = 'process groups';
    this.setProcessGroups();
    this.step = 'controlling terminals';
    this.settleTerminals();
    // Back into their cgroups before any memory of theirs is charged.
    this.step = 'cgroups';
    const mounts = cgroupMounts();
    for (const b of this.built.values()) restoreCgroups(b.rec.pid, b.rec.cgroups, mounts);

    for (const p of plan.processes) {
      if (p.state === 'zombie') continue;
      this.step = `memory of ${p.pid}`;
      this.restoreMemory(this.built.get(p.pid)!);
    }
    // Up to here only stopped processes of ours were touched. Files, sockets and everything
    // else come from records whose bytes must first be proven intact.
    this.step = 'image digest';
    plan.image.fillDone();
    const waitFrom = performance.now();
    await plan.image.digestChecked;
    this.digestWaitMs = performance.now() - waitFrom;

    for (const p of plan.processes) {
      if (p.state === 'zombie') continue;
      const b = this.built.get(p.pid)!;
      this.step = `files of ${p.pid}`;
      await this.restoreFds(b);
      this.step = `process attributes of ${p.pid}`;
      restoreProcessAttributes(b.task, p);
      restoreMm(b.task, p);
      this.step = `threads of ${p.pid}`;
      this.createThreads(b);
      const data = plan.of(p.pid);
      for (const t of data.threads) {
        const task = b.threads.get(t.tid)!;
        restoreComm(task, t.comm);
        restoreThreadState(task, t);
      }
      this.step = `signals and timers of ${p.pid}`;
      if (data.actions) restoreSignalActions(b.task, data.actions);
      if (data.itimers) restoreItimers(b.task, data.itimers);
      restorePosixTimers(b.task, data.timers);
      if (data.pending) restorePendingSignals(b.task, data.pending);
    }
    this.step = 'zombies';
    for (const p of plan.processes) if (p.state === 'zombie') this.makeZombie(p);
    this.step = 'credentials';
    for (const b of this.built.values()) {
      const creds = plan.of(b.rec.pid).creds;
      if (creds) restoreCredentials(b.task, creds);
    }
    this.step = 'final registers';
    for (const b of this.built.values()) {
      this.removeWorkArea(b);
      for (const t of plan.of(b.rec.pid).threads) finishThread(t.tid, t);
    }
    this.step = 'finish hooks';
    for (const fn of this.finishHooks) await fn();
    // Repair mode is off on every restored socket: the peers may talk to us again.
    const spec = lockSpecFromRecords(plan.image.records as unknown as ImageRecord[]);
    if (spec.connections.length || spec.ports!.length) await unlock({ table: this.lockTable });
    for (const fd of this.localFds.values()) closeFd(fd);
    this.localFds.clear();
    this.step = 'detach';
    for (const b of this.built.values()) for (const tid of b.threads.keys()) pt.detach(tid, 0);
    log.info('restored', { pids: this.built.size });
  }

  /** The freshly exec'd stub: syscall page in place, everything of the stub's own gone. */
  private prepareStub(rec: ProcessRecord): void {
    const pid = rec.pid;
    // The stub is stopped in its pause(); our bytes go over its first instruction, which
    // never runs again.
    const entry = STUB_ENTRY;
    pt.poke(pid, entry, SYSCALL_INSN);
    pt.setSigmask(pid, ALL_SIGNALS);
    const task = new RemoteTask(pid, pid, entry);
    const got = task.raw(SYS.mmap, this.work, WORK_PAGES * PAGE, PROT.READ | PROT.WRITE | PROT.EXEC, MAP.PRIVATE | MAP.ANONYMOUS | MAP.FIXED_NOREPLACE, -1, 0);
    if (got !== BigInt(this.work)) throw new ProcessError('E_RESTORE', `cannot map the syscall page at ${this.work.toString(16)}: ${got}`, { pid });
    pt.vmWrite(pid, this.work, SYSCALL_INSN);
    task.insn = this.work;
    task.scratch = this.work + PAGE;
    task.scratchSize = PAGE * 3;
    // Park the new kernel's vDSO/vvar in the work area, drop every other stub mapping.
    const specials: MapEntry[] = [];
    let park = this.work + 8 * PAGE;
    for (const m of readMaps(pid)) {
      if (m.start === this.work) continue;
      if (m.special && ['[vdso]', '[vvar]', '[vvar_vclock]'].includes(m.special)) {
        const size = m.end - m.start;
        task.call('mremap(vdso)', 25, m.start, size, size, 3 /* MAYMOVE|FIXED */, park);
        specials.push({ ...m, start: park, end: park + size });
        park += size;
      } else if (m.special !== '[vsyscall]') {
        task.call('munmap(stub)', SYS.munmap, m.start, m.end - m.start);
      }
    }
    task.call('close_range', SYS.close_range, 0, 0xffffffff, 0);
    if (rec.sid === pid) task.call('setsid', SYS.setsid);
    this.built.set(pid, { rec, task, threads: new Map([[pid, task]]), specials });
    this.takeControllingTerminal(this.built.get(pid)!);
  }

  /** Children come from their restored parent (clone3 with set_tid) so parent links are real. */
  private createChildren(parent: ProcessRecord): void {
    const b = this.built.get(parent.pid)!;
    for (const child of this.plan.processes.filter((p) => p.ppid === parent.pid && p.state !== 'zombie')) {
      const newPid = this.clone3(b.task, child.pid, 0, SIG.CHLD);
      this.created.push(newPid);
      const task = new RemoteTask(newPid, newPid, b.task.insn, b.task.scratch, b.task.scratchSize);
      if (child.sid === child.pid) task.call('setsid', SYS.setsid);
      this.built.set(newPid, { rec: child, task, threads: new Map([[newPid, task]]), specials: b.specials.map((m) => ({ ...m })) });
      this.takeControllingTerminal(this.built.get(newPid)!);
      this.createChildren(child);
    }
  }

  /** clone3 injected into `task` with set_tid = [id]; returns the new id, stopped and traced. */
  private clone3(task: RemoteTask, id: number, flags: number, exitSignal: number): number {
    const args = Buffer.alloc(88);
    args.writeBigUInt64LE(BigInt(flags), 0);
    args.writeBigUInt64LE(BigInt(exitSignal), 32);
    const tids = Buffer.alloc(4);
    tids.writeInt32LE(id, 0);
    const tidAddr = task.put(tids, 512);
    args.writeBigUInt64LE(BigInt(tidAddr), 64);
    args.writeBigUInt64LE(1n, 72);
    const r = task.raw(SYS.clone3, task.put(args, 256), 88);
    if (r < 0n) {
      if (r === -17n) throw new ProcessError('E_PID_IN_USE', `pid ${id} is in use by '${holder(id)}'`, { pid: id });
      throw new ProcessError('E_RESTORE', `clone3(set_tid=${id}) in ${task.pid} failed: errno ${-r}`, { pid: task.pid });
    }
    const got = Number(r);
    // Auto-attached (PTRACE_O_TRACECLONE/FORK): it starts in a ptrace stop.
    const st = pt.waitFor(got);
    if (!st || st.kind !== 'stopped') throw new ProcessError('E_RESTORE', `new task ${got} did not stop`, { pid: got });
    return got;
  }

  // ---- controlling terminals (src/objects/tty.ts). A session leader takes its pty right
  // after setsid, before any child of its exists: children inherit it at clone as they did.

  /** Runs fn with the restorer's slave fd of `pty` copied into the process (closed after). */
  private withTerminal(b: Building, pty: ImageRecord, fn: (fd: number) => void): void {
    const local = restoredSlave(pty, this.context());
    const pidfd = b.task.call('pidfd_open(restorer)', SYS.pidfd_open, process.pid, 0);
    let fd: number;
    try {
      fd = b.task.call('pidfd_getfd(terminal)', SYS.pidfd_getfd, pidfd, local, 0);
    } finally {
      b.task.raw(SYS.close, pidfd);
    }
    try {
      fn(fd);
    } finally {
      b.task.raw(SYS.close, fd);
    }
  }

  private takeControllingTerminal(b: Building): void {
    if (b.rec.sid !== b.rec.pid) return;
    const pty = ptyOfSession(this.plan.image.records as unknown as ImageRecord[], b.rec.pid);
    if (!pty) return;
    this.withTerminal(b, pty, (fd) => b.task.call('ioctl(TIOCSCTTY)', SYS_IOCTL, fd, TIOC.SCTTY, 0));
  }

  /** Once every group exists: each terminal's foreground group, and no terminal where none was. */
  private settleTerminals(): void {
    for (const pty of this.plan.image.records as unknown as ImageRecord[]) {
      if (pty.kind !== 'pty' || typeof pty.session !== 'number') continue;
      const leader = this.built.get(pty.session);
      if (!leader) continue;
      const having = new Set((pty.controlling as number[] | undefined) ?? []);
      for (const b of this.built.values()) {
        if (b.rec.sid !== pty.session || b === leader) continue;
        const has = ptsIndex(readStat(b.rec.pid).ttyNr) !== undefined;
        // Inherited at clone, though the original had given it up (TIOCNOTTY).
        if (has && !having.has(b.rec.pid)) this.withTerminal(b, pty, (fd) => b.task.call('ioctl(TIOCNOTTY)', SYS_IOCTL, fd, TIOC.NOTTY, 0));
        if (!has && having.has(b.rec.pid)) log.warn('a process had the controlling terminal its parent lacks: not restored', { pid: b.rec.pid, pty: pty.index });
      }
      const fg = foregroundOf(pty);
      if (fg === undefined) continue;
      const arg = Buffer.alloc(4);
      arg.writeInt32LE(fg, 0);
      this.withTerminal(leader, pty, (fd) => leader.task.call(`ioctl(TIOCSPGRP, ${fg})`, SYS_IOCTL, fd, TIOC.SPGRP, leader.task.put(arg)));
    }
  }

  /** Leaders first, so that every group a member joins exists. */
  private setProcessGroups(): void {
    const alive = [...this.built.values()];
    const order = [...alive.filter((b) => b.rec.pgid === b.rec.pid), ...alive.filter((b) => b.rec.pgid !== b.rec.pid)];
    for (const b of order) {
      if (b.rec.sid === b.rec.pid) continue; // setsid made it leader of its own group
      const current = b.task.call('getpgid', SYS.getpgid, 0);
      if (current !== b.rec.pgid) b.task.call(`setpgid(${b.rec.pgid})`, SYS.setpgid, 0, b.rec.pgid);
    }
  }

  private restoreMemory(b: Building): void {
    const data = this.plan.of(b.rec.pid);
    const task = b.task;
    this.placeSpecials(b, data.areas);
    const path = task.putString(this.imagePath);
    const imageFd = task.call('open(image)', SYS.openat, AT_FDCWD, path, O.RDONLY | O.CLOEXEC, 0);
    // Pages are read with O_DIRECT where the file system allows it: the disk fills the target's
    // pages itself, with no copy through the page cache and no page cache to allocate. A file
    // system without O_DIRECT (tmpfs before 6.6) refuses the open; then every read is buffered.
    const direct = Number(task.raw(SYS.openat, AT_FDCWD, path, O.RDONLY | O.CLOEXEC | O.DIRECT, 0));
    const image = { fd: imageFd, direct: direct >= 0 ? direct : undefined };
    try {
      const pages = [...data.pages].sort((x, y) => x.addr - y.addr);
      for (const area of data.areas) {
        if (SPECIAL_AREAS.has(area.type)) continue;
        const inside = pages.filter((p) => p.addr >= area.start && p.addr < area.end);
        // memfd, deleted and shared anonymous areas map the one recreated backing object.
        const backing = area.fileId === undefined ? undefined : this.pullFd(b, this.localFor(area.fileId, this.context()));
        try {
          restoreArea(task, area, inside, image, backing, (offset, addr, length) => this.plan.image.filled(offset, b.rec.pid, addr, length));
        } finally {
          if (backing !== undefined) task.raw(SYS.close, backing);
        }
      }
    } finally {
      task.raw(SYS.close, imageFd);
      if (image.direct !== undefined) task.raw(SYS.close, image.direct);
    }
  }

  /**
   * The new kernel's vDSO and vvar go where the old ones were when the layouts match (same
   * names, sizes and distances). Otherwise they go to a free place and the old vDSO's range
   * gets trampolines into the new one (src/objects/vdso.ts).
   */
  private placeSpecials(b: Building, areas: MemoryAreaRecord[]): void {
    const old = areas.filter((a) => a.type === 'vdso' || a.type === 'vvar' || a.type === 'vvar_vclock').sort((x, y) => x.start - y.start);
    const now = [...b.specials].sort((x, y) => x.start - y.start);
    const name = (t: string) => `[${t}]`;
    const same = old.length === now.length && old.every((o, i) => name(o.type) === now[i]!.special && o.end - o.start === now[i]!.end - now[i]!.start && o.start - old[0]!.start === now[i]!.start - now[0]!.start);
    if (same && !process.env.HANDOFF_FORCE_VDSO_TRAMPOLINE) {
      for (let i = 0; i < old.length; i++) {
        const m = now[i]!;
        b.task.call(`mremap(${m.special})`, 25, m.start, m.end - m.start, m.end - m.start, 3, old[i]!.start);
      }
      b.specials = old.map((o, i) => ({ ...now[i]!, start: o.start, end: o.end }));
      return;
    }
    // Different layout: move the new block to a hole of the target layout, keeping its shape.
    const span = now.length ? now[now.length - 1]!.end - now[0]!.start : 0;
    const base = freeRange(areas, span, this.work);
    const moved = now.map((m) => ({ ...m, start: base + (m.start - now[0]!.start), end: base + (m.end - now[0]!.start) }));
    now.forEach((m, i) => b.task.call(`mremap(${m.special})`, 25, m.start, m.end - m.start, m.end - m.start, 3, moved[i]!.start));
    b.specials = moved;
    const oldVdso = old.find((a) => a.type === 'vdso');
    const newVdso = moved.find((m) => m.special === '[vdso]');
    if (!oldVdso) return; // the program never had a vDSO: nothing refers to one
    if (!newVdso) throw new ProcessError('E_RESTORE', 'this kernel maps no vDSO but the image expects one', { pid: b.rec.pid });
    const oldPages = this.plan.of(b.rec.pid).pages.filter((p) => p.addr >= oldVdso.start && p.addr < oldVdso.end);
    if (oldPages.length !== 1 || (oldPages[0]!.data as PayloadRef).length !== oldVdso.end - oldVdso.start) {
      throw new ProcessError('E_RESTORE', 'the image lacks the old vDSO image needed for trampolines', { pid: b.rec.pid });
    }
    const oldImage = readPayload(this.plan.image, oldPages[0]!.data as PayloadRef);
    const newImage = Buffer.alloc(newVdso.end - newVdso.start);
    pt.vmRead(b.rec.pid, newVdso.start, newImage);
    const page = trampolinePage(oldImage, oldVdso.end - oldVdso.start, newImage, newVdso.start);
    const size = oldVdso.end - oldVdso.start;
    const got = b.task.raw(SYS.mmap, oldVdso.start, size, PROT.READ | PROT.WRITE, MAP.PRIVATE | MAP.ANONYMOUS | MAP.FIXED, -1, 0);
    if (got !== BigInt(oldVdso.start)) throw new ProcessError('E_RESTORE', `cannot map vDSO trampolines at ${oldVdso.start.toString(16)}`, { pid: b.rec.pid });
    pt.vmWrite(b.rec.pid, oldVdso.start, page);
    b.task.call('mprotect(trampolines)', SYS.mprotect, oldVdso.start, size, PROT.READ | PROT.EXEC);
    log.info('vDSO layout differs: trampolines installed', { pid: b.rec.pid, old: oldVdso.start, new: newVdso.start });
  }

  /**
   * A pidfd of the restorer inside the target, parked above every fd number the process will
   * use, so that installing fds never lands on it.
   */
  private pidfds = new Map<number, number>();
  private restorerPidfd(b: Building): number {
    let fd = this.pidfds.get(b.rec.pid);
    if (fd === undefined) {
      const task = b.task;
      const fds = this.plan.of(b.rec.pid).fds;
      const high = Math.max(2, ...fds.map((f) => f.fd)) + 1;
      const first = task.call('pidfd_open(restorer)', SYS.pidfd_open, process.pid, 0);
      fd = task.call('fcntl(F_DUPFD_CLOEXEC)', SYS.fcntl, first, 1030, high);
      task.call('close', SYS.close, first);
      this.pidfds.set(b.rec.pid, fd);
    }
    return fd;
  }

  /** Copies the restorer's `local` fd into the target (pidfd_getfd); returns its number there. */
  private pullFd(b: Building, local: number): number {
    return b.task.call('pidfd_getfd', SYS.pidfd_getfd, this.restorerPidfd(b), local, 0);
  }

  private async restoreFds(b: Building): Promise<void> {
    const fds = this.plan.of(b.rec.pid).fds;
    const task = b.task;
    const ctx = this.context();
    for (const f of fds) {
      const got = this.pullFd(b, this.localFor(f.object, ctx));
      if (got !== f.fd) {
        task.call(`dup3(${f.fd})`, SYS.dup3, got, f.fd, f.cloexec ? O.CLOEXEC : 0);
        task.call('close', SYS.close, got);
      } else {
        task.call('fcntl(F_SETFD)', SYS.fcntl, f.fd, 2, f.cloexec ? 1 : 0);
      }
    }
    const pidfd = this.pidfds.get(b.rec.pid);
    if (pidfd !== undefined) task.raw(SYS.close, pidfd);
    this.pidfds.delete(b.rec.pid);
    // epoll interest lists name the target's own fd numbers: only now do they all exist.
    for (const f of fds) {
      const obj = this.plan.objects.get(f.object);
      if (obj?.kind !== 'epoll' || fds.findIndex((g) => g.object === f.object) !== fds.indexOf(f)) continue;
      await restoreEpollInterest(obj, (fd, events, data) => {
        const ev = Buffer.alloc(12);
        ev.writeUInt32LE(events >>> 0, 0);
        ev.writeBigUInt64LE(data, 4);
        task.call(`epoll_ctl(${fd})`, 233, f.fd, 1 /* EPOLL_CTL_ADD */, fd, task.put(ev));
      });
    }
  }

  private localFor(id: number, ctx: RestoreContext): number {
    let fd = this.localFds.get(id);
    if (fd === undefined) {
      const rec = this.plan.objects.get(id);
      if (!rec) throw new ProcessError('E_RESTORE', `fd refers to missing object ${id}`);
      const module = moduleForKind(rec.kind);
      if (!module) throw new ProcessError('E_RESTORE', `no module restores ${rec.kind} objects`);
      const got = module.restore(rec, ctx);
      if (typeof got !== 'number') throw new ProcessError('E_RESTORE', `${rec.kind} restore is asynchronous; not supported here`);
      fd = got;
      this.localFds.set(id, fd);
    }
    return fd;
  }

  private ctxCache?: RestoreContext;
  private context(): RestoreContext {
    if (this.ctxCache) return this.ctxCache;
    const sharedMap = new Map<string, unknown>();
    const image = this.plan.image;
    this.ctxCache = {
      records: image.records as unknown as ImageRecord[],
      byId: (id) => this.plan.objects.get(id),
      objectFd: (id) => this.localFor(id, this.context()),
      shared: <T>(key: string, create: () => T): T => {
        if (!sharedMap.has(key)) sharedMap.set(key, create());
        return sharedMap.get(key) as T;
      },
      atFinish: (fn) => this.finishHooks.push(fn),
      onAbort: (fn) => this.abortHooks.push(fn),
      readPayload: (ref) => readPayload(image, ref),
      log: logger('restore-fd'),
    };
    return this.ctxCache;
  }

  private createThreads(b: Building): void {
    const flags = CLONE.VM | CLONE.FS | CLONE.FILES | CLONE.SIGHAND | CLONE.THREAD | CLONE.SYSVSEM;
    for (const t of this.plan.of(b.rec.pid).threads) {
      if (t.tid === b.rec.pid) continue;
      const tid = this.clone3(b.task, t.tid, flags, 0);
      b.threads.set(tid, new RemoteTask(b.rec.pid, tid, b.task.insn, b.task.scratch, b.task.scratchSize));
    }
  }

  /** A zombie: a child that exits with its recorded status, left for its parent to reap. */
  private makeZombie(p: ProcessRecord): void {
    const parent = this.built.get(p.ppid);
    if (!parent) throw new ProcessError('E_RESTORE', `zombie ${p.pid} has no restored parent`, { pid: p.pid });
    const pid = this.clone3(parent.task, p.pid, 0, SIG.CHLD);
    this.created.push(pid);
    const status = p.exitStatus ?? 0;
    const regs = pt.getRegs(pid);
    const signal = status & 0x7f;
    if (signal === 0) {
      regs.rax = BigInt(SYS.exit_group);
      regs.rdi = BigInt((status >> 8) & 0xff);
    } else {
      pt.setSigmask(pid, 0n);
      regs.rax = BigInt(SYS.kill);
      regs.rdi = BigInt(pid);
      regs.rsi = BigInt(signal);
    }
    regs.rip = BigInt(parent.task.insn);
    regs.orig_rax = (1n << 64n) - 1n;
    pt.setRegs(pid, regs);
    pt.cont(pid, 0);
    for (;;) {
      const st = pt.waitFor(pid)!;
      if (st.kind !== 'stopped') break;
      pt.cont(pid, st.event === 0 && st.signal !== SIG.TRAP ? st.signal : 0);
    }
  }

  /** The syscall page unmaps itself; the thread stays in the syscall-exit stop for finishThread. */
  private removeWorkArea(b: Building): void {
    const r = pt.remoteSyscallLast(b.task.tid, b.task.insn, SYS.munmap, [this.work, WORK_PAGES * PAGE]);
    if (r !== 0n) throw new ProcessError('E_RESTORE', `munmap of the syscall page failed: ${r}`, { pid: b.rec.pid });
  }

  waitRoot(): number {
    const root = this.created[0]!;
    for (;;) {
      // Orphans re-parented to us (subreaper) are reaped here too.
      const { pid, status } = pt.waitAny();
      if (pid === root && (status.kind === 'exited' || status.kind === 'signaled')) return status.kind === 'exited' ? status.code : 128 + status.signal;
    }
  }

  abort(): void {
    for (const fn of this.abortHooks) {
      try {
        fn();
      } catch {
        /* best effort */
      }
    }
    // Best effort: a module's abort hook may have closed its fd already; nothing here may
    // hide the error that made us abort.
    for (const fd of this.localFds.values()) {
      try {
        closeFd(fd);
      } catch {
        /* closed already */
      }
    }
    for (const pid of this.created) {
      try {
        process.kill(pid, 'SIGKILL');
      } catch {
        /* gone already */
      }
    }
    // Reap every one (we are their subreaper): killed tracees can first report a stop, and a
    // child of a killed stub becomes ours only once its parent is gone. Bounded: 5 s.
    const pending = new Set(this.created);
    const deadline = Date.now() + 5000;
    const pause = new Int32Array(new SharedArrayBuffer(4));
    while (pending.size && Date.now() < deadline) {
      for (const pid of [...pending]) {
        try {
          const st = pt.waitFor(pid, true);
          if (st && st.kind !== 'stopped') pending.delete(pid);
        } catch {
          if (!existsSync(`/proc/${pid}`)) pending.delete(pid); // reaped already
        }
      }
      if (pending.size) Atomics.wait(pause, 0, 0, 2);
    }
    if (pending.size) log.warn('killed processes not reaped', { pids: [...pending] });
  }
}
