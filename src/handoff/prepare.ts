// handoff prepare (DESIGN 1): preflight -> stage the new kernel -> install the resume hook,
// and with exec: freeze + lock + dump every tree (kept frozen) -> write and fsync the store
// -> kexec. Everything before the jump is undone on any failure: the trees are thawed, the
// network lock removed, the staged kernel unloaded, the store emptied. The processes carry
// on as if nothing happened.
//
// Without exec nothing is frozen: the kernel stays staged and the hook installed, and a
// later `prepare --exec` (or `handoff abort`) follows. Freezing in one process and jumping
// from another would leave the trees frozen by a process that has exited (ptrace detaches
// on exit and they would run on, diverging from the image), so freeze, dump and kexec are
// always one step.
import { spawn } from 'node:child_process';
import { execa } from 'execa';
import { closeSync, existsSync, openSync, readSync, rmSync } from 'node:fs';
import { hostname, release as osRelease } from 'node:os';
import { join } from 'node:path';
import { randomBytes } from 'node:crypto';
import { decodeMultiple } from 'cbor-x';
import { BlockedError, KernelError, asHandoffError } from '../errors.js';
import { logger } from '../log.js';
import { dump, type DumpResult } from '../dump/index.js';
import { unlock } from './netlock.js';
import { executeKernel, nextCommandLine, stageKernel, systemdIsInit, unloadKernel, type Staged } from './kexec.js';
import { handoffBin, holdUnits, installHook, releaseHeldUnits, serviceUnitsOfPids, type InstalledHook } from './hooks.js';
import { runPreflight, type PreflightReport } from './preflight.js';
import { clearPending, ensureRunDir, RUN_DIR, writePending, type PendingState } from './state.js';
import { clearPmem, prepareFileStore, storeArgument, writeManifestFile, writePmem, MANIFEST_NAME, type Manifest, type StoreSpec, type TreeEntry } from './store.js';
import { resolveTargets, type TargetSpec } from './targets.js';

const log = logger('prepare');

export interface PrepareOptions {
  targets: TargetSpec;
  kernel: string;
  initrd?: string;
  append?: string;
  reuseCmdline?: boolean;
  store: StoreSpec;
  /** Freeze, dump and jump into the new kernel. */
  exec?: boolean;
  /** Proceed despite warnings-level doubts (never despite blockers). */
  hookKind?: 'systemd' | 'init-script';
  /** A unix socket whose peer is in no target: restored as closed / reconnected instead of a blocker. */
  unixOutside?: 'closed' | 'reconnect';
  /** Progress lines (CLI prints them; tests follow them). */
  onProgress?: (phase: string, detail?: Record<string, unknown>) => void;
}

export interface PrepareResult {
  preflight: PreflightReport;
  staged: Staged;
  hook: InstalledHook;
  /** Set when exec was requested but the jump did not happen (undone). */
  manifest?: Manifest;
  ms: Record<string, number>;
}

export const lockTableFor = (index: number) => `handoff_t${index + 1}`;

/** CLOCK_REALTIME of the freeze: the `created` field of the image header (first CBOR item). */
export function imageCreatedMs(path: string): number {
  const fd = openSync(path, 'r');
  const buf = Buffer.alloc(64 * 1024);
  let n: number;
  try {
    n = readSync(fd, buf, 0, buf.length, 0);
  } finally {
    closeSync(fd);
  }
  let header: { created?: string } | undefined;
  try {
    decodeMultiple(buf.subarray(0, n), (item: unknown) => {
      header = item as { created?: string };
      return false;
    });
  } catch {
    /* a partial second item is expected: we stopped after the first */
  }
  const ms = Date.parse(header?.created ?? '');
  return Number.isFinite(ms) ? ms : Date.now();
}

/** Starts `handoff abort --watch PID`: if this process dies before the jump, it undoes everything. */
function startWatchdog(): void {
  ensureRunDir();
  const logFd = openSync(join(RUN_DIR, 'watchdog.log'), 'a', 0o600);
  const child = spawn(process.execPath, [handoffBin(), 'abort', '--watch', String(process.pid)], { detached: true, stdio: ['ignore', logFd, logFd] });
  closeSync(logFd);
  child.unref();
}

export async function prepare(options: PrepareOptions): Promise<PrepareResult> {
  const progress = options.onProgress ?? (() => {});
  const ms: Record<string, number> = {};
  let t = performance.now();
  const lap = (name: string) => {
    const now = performance.now();
    ms[name] = Math.round((now - t) * 10) / 10;
    t = now;
  };

  const roots = await resolveTargets(options.targets);
  const commandLine = nextCommandLine({ reuse: options.reuseCmdline === true, append: options.append, resume: storeArgument(options.store) });
  const pre = runPreflight({ roots, kernel: options.kernel, initrd: options.initrd, commandLine, store: options.store, kexec: true, unixOutside: options.unixOutside });
  lap('preflight');
  for (const w of pre.warnings) log.warn(w);
  progress('preflight', { trees: pre.trees, warnings: pre.warnings, blockers: pre.blockers, newKernel: pre.newKernel.release });
  if (pre.blockers.length) throw new BlockedError(pre.blockers);

  // Staged before anything is frozen: a kernel the kexec syscall refuses costs nothing.
  const staged = await stageKernel({ kernel: options.kernel, initrd: options.initrd, commandLine });
  lap('stage');
  progress('staged', { method: staged.method, commandLine });
  const pending: PendingState = {
    preparer: process.pid, startedAtMs: Date.now(), phase: 'staged', roots,
    pids: pre.trees.flatMap((x) => x.pids), lockTables: roots.map((_, i) => lockTableFor(i)),
    store: options.store, tempFiles: [], kernelStaged: true,
  };
  let hook: InstalledHook;
  try {
    hook = await installHook({ kind: options.hookKind, mountPaths: options.store.type === 'file' ? [options.store.path] : [] });
    writePending(pending);
  } catch (err) {
    await unloadKernel();
    throw err;
  }
  lap('hook');
  progress('hook', { kind: hook.kind, files: hook.files });
  if (!options.exec) return { preflight: pre, staged, hook, ms };

  pending.phase = 'dumping';
  writePending(pending);
  // Services of the trees must not start afresh on the resume boot (see holdUnits).
  if (hook.kind === 'systemd') await holdUnits(serviceUnitsOfPids(pending.pids));
  startWatchdog();
  const dumps: DumpResult[] = [];
  let jumped = false;
  try {
    const imagePaths: string[] = [];
    if (options.store.type === 'file') prepareFileStore(options.store.path);
    else {
      clearPmem(options.store.device);
      ensureRunDir();
    }
    const trees: TreeEntry[] = [];
    for (const [i, root] of roots.entries()) {
      const name = `tree-${root}.himg`;
      const path = options.store.type === 'file' ? join(options.store.path, name) : join(RUN_DIR, `prepare-${name}`);
      if (options.store.type === 'pmem') {
        pending.tempFiles.push(path);
        writePending(pending);
      }
      progress('dumping', { root });
      const r = await dump({ pid: root, tree: true, image: path, keepFrozen: true, lockTable: lockTableFor(i), unixOutside: options.unixOutside });
      dumps.push(r);
      imagePaths.push(path);
      trees.push({ root, pids: r.pids, threads: r.threads, image: name, bytes: r.bytes, sha256: r.sha256, lockTable: r.locked ? lockTableFor(i) : '' });
      progress('dumped', { root, pids: r.pids, bytes: r.bytes });
    }
    lap('dump');
    // Test seam for the abort paths: park here (trees frozen, network locked, sockets in
    // repair mode) so a test can kill -9 this process at the worst moment deterministically.
    if (process.env.HANDOFF_TEST_STALL === 'after-dump') {
      progress('stalled', { pid: process.pid });
      // (A timer keeps the event loop alive: a bare pending promise would let node exit.)
      await new Promise(() => setInterval(() => {}, 1 << 30));
    }
    const manifest: Manifest = {
      kind: 'handoff-manifest', version: 1, id: randomBytes(8).toString('hex'), hostname: hostname(),
      sourceKernel: osRelease(), targetKernel: pre.newKernel.release,
      frozenAtMs: Math.min(...imagePaths.map(imageCreatedMs)), writtenAtMs: 0, trees, prepare: ms,
    };
    manifest.writtenAtMs = Date.now();
    if (options.store.type === 'file') writeManifestFile(options.store.path, manifest);
    else {
      writePmem(options.store.device, manifest, imagePaths);
      for (const p of imagePaths) rmSync(p, { force: true });
    }
    lap('write');
    pending.phase = 'written';
    writePending(pending);
    progress('written', { store: storeArgument(options.store), trees: trees.length, frozenAtMs: manifest.frozenAtMs });

    const how = systemdIsInit() ? 'systemd' : 'direct';
    pending.phase = 'executing';
    writePending(pending);
    progress('kexec', { how, to: pre.newKernel.release });
    if (how === 'systemd') {
      // The shutdown kills us, and our tracees would then run on: they must be gone first.
      for (const d of dumps) await d.release!('kill');
      jumped = true;
      const r = await executeKernel('systemd');
      if (!r.ok) throw new KernelError('E_KEXEC', `systemctl kexec failed after the processes were stopped: ${r.output}; restore them here with handoff resume --image/--pmem`);
      return { preflight: pre, staged, hook, manifest, ms };
    }
    // kexec -e does not shut anything down: flush every file system's dirty pages first
    // (what the frozen processes wrote before the freeze must be on disk after the jump).
    await execa('sync', [], { reject: false, stdin: 'ignore' });
    // Direct jump with the trees still frozen: if kexec -e comes back, they simply thaw.
    const r = await executeKernel('direct');
    throw new KernelError('E_KEXEC', `kexec -e failed: ${r.output}`);
  } catch (err) {
    if (!jumped) await rollback(options.store, dumps, pending);
    throw asHandoffError(err);
  }
}

/** Undoes an unfinished prepare in this process: thaw, unlock, unload, empty the store. */
async function rollback(store: StoreSpec, dumps: DumpResult[], pending: PendingState): Promise<void> {
  log.warn('prepare failed before the jump: undoing everything');
  for (const d of dumps) {
    try {
      await d.release!('thaw');
    } catch (err) {
      log.error('thaw failed', { pids: d.pids, error: String(err) });
    }
  }
  for (const table of pending.lockTables) await unlock({ table }).catch((e: unknown) => log.error('unlock failed', { table, error: String(e) }));
  await unloadKernel();
  await releaseHeldUnits();
  discardStore(store, pending.tempFiles);
  clearPending();
}

export function discardStore(store: StoreSpec, tempFiles: string[]): void {
  for (const f of tempFiles) rmSync(f, { force: true });
  try {
    if (store.type === 'file') {
      if (existsSync(store.path)) {
        rmSync(join(store.path, MANIFEST_NAME), { force: true });
        prepareFileStore(store.path);
      }
    } else if (existsSync(store.device)) {
      clearPmem(store.device);
    }
  } catch (err) {
    log.error('could not empty the store', { error: String(err) });
  }
}
