// handoff resume, on the new kernel (DESIGN 1, 6, 7).
//   --early  before any interface is up: verify each tree's image and install its network
//            lock (from the image's tcp records), so retransmissions from the peers meet
//            silence instead of RST.
//   main     restore each tree on its own (one failing does not stop the others; the
//            engine unlocks a tree's connections once its sockets left repair mode), then
//            report: what came back, time per phase, and the blackout from the freeze on
//            the old kernel to running on this one (both CLOCK_REALTIME: across a kexec the
//            new kernel reads the RTC, so expect up to a second of error).
// The store is kept afterwards (directory renamed *.resumed, pmem header marked resumed).
import { existsSync, mkdirSync, readFileSync, rmSync, statSync, writeFileSync } from 'node:fs';
import { join } from 'node:path';
import { release as osRelease } from 'node:os';
import { asHandoffError } from '../errors.js';
import { logger } from '../log.js';
import { openImage } from '../format/reader.js';
import { releaseHeldUnits } from './hooks.js';
import { restore } from '../restore/index.js';
import { isLocked, lock, lockSpecFromRecords, unlock } from './netlock.js';
import { resumeArgument, systemdIsInit } from './kexec.js';
import { execa } from 'execa';
import type { ProcessRecord } from '../format/records.js';
import { ensureRunDir, LAST_REPORT, RUN_DIR } from './state.js';
import { extractPmemImage, parseStoreArgument, readManifestFile, readPmemHeader, retireFileStore, setPmemState, storeArgument, PMEM_PENDING, PMEM_RESUMED, type Manifest, type StoreSpec, type TreeEntry } from './store.js';

const log = logger('resume');
const EARLY_RECORD = () => join(RUN_DIR, 'early.json');

interface Located {
  store: StoreSpec;
  manifest: Manifest;
  /** Image path of each tree (pmem: a copy in /run). */
  paths: string[];
}

/** The store named on the command line or by handoff.resume=; undefined when nothing is pending. */
export function pendingStore(explicit?: StoreSpec): StoreSpec | undefined {
  if (explicit) return explicit;
  const arg = resumeArgument();
  return arg ? parseStoreArgument(arg) : undefined;
}

function locate(store: StoreSpec): Located | undefined {
  if (store.type === 'file') {
    if (!existsSync(join(store.path, 'manifest.json'))) return undefined;
    const manifest = readManifestFile(store.path);
    return { store, manifest, paths: manifest.trees.map((t) => join(store.path, t.image)) };
  }
  if (!existsSync(store.device)) return undefined;
  const contents = readPmemHeader(store.device);
  if (!contents || contents.state !== PMEM_PENDING) return undefined;
  ensureRunDir();
  const dir = join(RUN_DIR, 'pmem');
  mkdirSync(dir, { recursive: true, mode: 0o700 });
  const paths = contents.manifest.trees.map((t) => join(dir, t.image));
  contents.manifest.trees.forEach((t, i) => {
    const p = paths[i]!;
    if (!existsSync(p) || statSync(p).size !== t.bytes) extractPmemImage(store.device, t, p);
  });
  return { store, manifest: contents.manifest, paths };
}

export interface EarlyResult {
  nothing: boolean;
  store?: string;
  locked: { table: string; connections: number; ports: number }[];
  ms: number;
}

export async function resumeEarly(options: { store?: StoreSpec } = {}): Promise<EarlyResult> {
  const started = performance.now();
  const store = pendingStore(options.store);
  const found = store && locate(store);
  if (!found) return { nothing: true, locked: [], ms: performance.now() - started };
  const locked: EarlyResult['locked'] = [];
  for (const [i, tree] of found.manifest.trees.entries()) {
    if (!tree.lockTable) continue;
    // Records only: the lock needs the connections; the main step verifies the whole image.
    const image = openImage(found.paths[i]!, { digest: 'none' });
    try {
      const spec = lockSpecFromRecords(image.records as never);
      await lock(spec, { table: tree.lockTable });
      locked.push({ table: tree.lockTable, connections: spec.connections.length, ports: spec.ports?.length ?? 0 });
    } finally {
      image.close();
    }
  }
  const result = { nothing: false, store: storeArgument(found.store), locked, ms: performance.now() - started };
  ensureRunDir();
  writeFileSync(EARLY_RECORD(), JSON.stringify({ ...result, atMs: Date.now() }) + '\n', { mode: 0o600 });
  return result;
}

export interface TreeReport {
  root: number;
  pids: number[];
  ok: boolean;
  error?: { code: string; message: string };
  ms: { verify?: number; restore?: number };
  /** The lock was installed late (no early hook ran). */
  lateLock?: boolean;
  /** systemd services running their restored processes again (see beginAdoptions). */
  units?: string[];
}

export interface ResumeReport {
  nothing: boolean;
  store?: string;
  keptAt?: string;
  fromKernel?: string;
  toKernel: string;
  trees: TreeReport[];
  restored: number;
  failed: number;
  phases: { early?: number; restore?: number; total?: number; prepare?: Record<string, number> };
  frozenAt?: string;
  runningAt?: string;
  blackoutMs?: number;
}

export async function resume(options: { store?: StoreSpec } = {}): Promise<ResumeReport> {
  const started = performance.now();
  const toKernel = osRelease();
  const store = pendingStore(options.store);
  const found = store && locate(store);
  if (!found) return { nothing: true, toKernel, trees: [], restored: 0, failed: 0, phases: {} };
  const { manifest } = found;
  let early: { ms?: number } = {};
  try {
    early = JSON.parse(readFileSync(EARLY_RECORD(), 'utf8')) as { ms?: number };
  } catch {
    /* no early step ran */
  }

  const trees: TreeReport[] = [];
  for (const [i, tree] of manifest.trees.entries()) trees.push(await resumeTree(tree, found.paths[i]!));
  const runningAtMs = Date.now();
  const restorePhase = performance.now() - started;
  // The services held off this boot are either running their restored processes or stopped.
  const released = await releaseHeldUnits();
  if (released.length) log.info('services no longer held', { units: released });

  const report: ResumeReport = {
    nothing: false,
    store: storeArgument(found.store),
    fromKernel: manifest.sourceKernel,
    toKernel,
    trees,
    restored: trees.filter((t) => t.ok).length,
    failed: trees.filter((t) => !t.ok).length,
    phases: { early: early.ms, restore: restorePhase, prepare: manifest.prepare },
    frozenAt: new Date(manifest.frozenAtMs).toISOString(),
    runningAt: new Date(runningAtMs).toISOString(),
    blackoutMs: runningAtMs - manifest.frozenAtMs,
  };
  // Keep the store for forensics and retry, out of the way of the next boot.
  if (found.store.type === 'file') {
    writeFileSync(join(found.store.path, 'report.json'), JSON.stringify(report, null, 2) + '\n', { mode: 0o600 });
    report.keptAt = retireFileStore(found.store.path);
  } else {
    setPmemState(found.store.device, PMEM_RESUMED);
    report.keptAt = `${found.store.device} (marked resumed)`;
  }
  report.phases.total = performance.now() - started + (early.ms ?? 0);
  ensureRunDir();
  writeFileSync(LAST_REPORT, JSON.stringify(report, null, 2) + '\n', { mode: 0o600 });
  return report;
}

/** The systemd services the image's processes ran in (their cgroup v2 path ends in NAME.service), each with its first process (the tree is in pid order from its root). */
export function serviceUnitsOf(processes: Pick<ProcessRecord, 'pid' | 'cgroups'>[]): { unit: string; mainPid: number }[] {
  const units: { unit: string; mainPid: number }[] = [];
  for (const p of processes) {
    const path = p.cgroups?.find((c) => c.hierarchy === 0 && c.controllers.length === 0)?.path ?? '';
    const m = /^\/(?:[^/]+\.slice\/)*([^/]+\.service)$/.exec(path);
    if (m && !units.some((u) => u.unit === m[1])) units.push({ unit: m[1]!, mainPid: p.pid });
  }
  return units;
}

const ADOPT_DIR = join(RUN_DIR, 'adopt');
const sleepMs = (ms: number) => new Promise((ok) => setTimeout(ok, ms));

async function unitState(unit: string): Promise<Record<string, string>> {
  const r = await execa('systemctl', ['show', '-p', 'LoadState', '-p', 'ActiveState', '-p', 'ControlGroup', unit], { reject: false, stdin: 'ignore' });
  return Object.fromEntries(String(r.stdout).split('\n').map((l) => [l.slice(0, l.indexOf('=')), l.slice(l.indexOf('=') + 1)]));
}

interface Adoption {
  unit: string;
  mainPid: number;
  pidFile: string;
}

/**
 * systemd cannot be told to adopt running processes as a service, but a Type=forking service
 * takes its main process from a PID file once its start command has exited. So each service
 * the restored processes come from is started, before the restore, through a runtime drop-in
 * (in /run: gone at the next boot) whose start command only waits for that PID file: its
 * cgroup then exists and the restore moves the processes into it; the PID file (the restored
 * main process) is written afterwards (finishAdoptions). The service is then active (running)
 * with its old main process: `systemctl status` shows it, `systemctl stop` stops it, and its
 * Restart= policy watches it again. Its own ExecStart is not run.
 */
async function beginAdoptions(candidates: { unit: string; mainPid: number }[]): Promise<Adoption[]> {
  const adoptions: Adoption[] = [];
  for (const c of candidates) {
    const state = await unitState(c.unit);
    if (state.LoadState !== 'loaded') log.warn('the unit of restored processes is not known here: they go to its cgroup only', { unit: c.unit, load: state.LoadState });
    else if (state.ActiveState !== 'inactive' && state.ActiveState !== 'failed') log.warn('the unit of restored processes is not inactive: they join its cgroup', { unit: c.unit, state: state.ActiveState });
    else adoptions.push({ ...c, pidFile: join(ADOPT_DIR, `${c.unit}.pid`) });
  }
  if (!adoptions.length) return adoptions;
  mkdirSync(ADOPT_DIR, { recursive: true, mode: 0o700 });
  for (const a of adoptions) {
    rmSync(a.pidFile, { force: true });
    const dir = `/run/systemd/system/${a.unit}.d`;
    mkdirSync(dir, { recursive: true });
    writeFileSync(join(dir, 'handoff-resumed.conf'), `# Written by handoff resume: this service's processes were handed off across kexec and
# restored into its cgroup; its main process (pid ${a.mainPid}) comes from the PID file the
# resume writes once they are in. Runtime only: gone at the next boot.
[Unit]
# Resets every condition, the one handoff prepare added for this boot among them.
ConditionKernelCommandLine=
[Service]
Type=forking
PIDFile=${a.pidFile}
GuessMainPID=no
RemainAfterExit=no
TimeoutStartSec=infinity
ExecCondition=
ExecStartPre=
ExecStart=
ExecStart=/bin/sh -c 'i=0; while [ ! -s ${a.pidFile} ]; do sleep 0.1; i=$$((i+1)); [ $$i -lt 18000 ] || exit 1; done'
ExecStartPost=
`);
  }
  await execa('systemctl', ['daemon-reload'], { stdin: 'ignore', timeout: 60_000 });
  const ready: Adoption[] = [];
  for (const a of adoptions) {
    const r = await execa('systemctl', ['start', '--no-block', a.unit], { reject: false, all: true, stdin: 'ignore', timeout: 60_000 });
    if (r.exitCode !== 0) {
      log.warn('could not start the unit of restored processes: they go to its cgroup only', { unit: a.unit, output: String(r.all ?? '') });
      continue;
    }
    // The restore needs the cgroup the start command runs in.
    for (let i = 0; i < 600; i++) {
      const state = await unitState(a.unit);
      if (state.ActiveState === 'activating' && state.ControlGroup && existsSync(join('/sys/fs/cgroup', state.ControlGroup, 'cgroup.procs'))) {
        ready.push(a);
        break;
      }
      await sleepMs(100);
    }
    if (!ready.includes(a)) log.warn('the unit of restored processes did not start', { unit: a.unit });
  }
  return ready;
}

/** Hands each service its restored main process, or stops it when the restore failed. */
async function finishAdoptions(adoptions: Adoption[], restored: boolean): Promise<string[]> {
  const done: string[] = [];
  for (const a of adoptions) {
    if (!restored) {
      await execa('systemctl', ['stop', a.unit], { reject: false, stdin: 'ignore', timeout: 60_000 });
      continue;
    }
    writeFileSync(a.pidFile, `${a.mainPid}\n`, { mode: 0o644 });
    const r = await execa('systemctl', ['start', a.unit], { reject: false, all: true, stdin: 'ignore', timeout: 60_000 });
    const state = await unitState(a.unit);
    if (r.exitCode === 0 && state.ActiveState === 'active') done.push(a.unit);
    else log.warn('the unit did not take its restored processes back', { unit: a.unit, state: state.ActiveState, output: String(r.all ?? '') });
  }
  if (done.length) log.info('units running their restored processes again', { units: done });
  return done;
}

async function resumeTree(tree: TreeEntry, path: string): Promise<TreeReport> {
  const out: TreeReport = { root: tree.root, pids: tree.pids, ok: false, ms: {} };
  let adoptions: Adoption[] = [];
  try {
    if (systemdIsInit()) {
      const image = openImage(path);
      let units: { unit: string; mainPid: number }[];
      try {
        units = serviceUnitsOf(image.records.filter((r) => r.kind === 'process') as unknown as ProcessRecord[]);
      } finally {
        image.close();
      }
      if (units.length) adoptions = await beginAdoptions(units).catch((err: unknown) => {
        log.warn('cannot start the units of the restored processes', { units, error: String(err) });
        return [];
      });
    }
    if (tree.lockTable && !(await isLocked({ table: tree.lockTable }))) {
      // No early step: lock now, late (the interfaces are up; a peer may have seen RST meanwhile).
      const image = openImage(path, { digest: 'none' });
      try {
        await lock(lockSpecFromRecords(image.records as never), { table: tree.lockTable });
      } finally {
        image.close();
      }
      out.lateLock = true;
    }
    const r = await restore({ image: path, detach: true, lockTable: tree.lockTable || undefined });
    out.ok = true;
    out.pids = r.pids;
    out.ms = { verify: r.ms.verify, restore: r.ms.restore };
    log.info('tree restored', { root: tree.root, pids: r.pids.length });
    if (adoptions.length) out.units = await finishAdoptions(adoptions, true);
  } catch (err) {
    const e = asHandoffError(err);
    out.error = { code: e.code, message: e.message };
    log.error('tree not restored', { root: tree.root, error: e.message });
    if (adoptions.length && !out.ok) await finishAdoptions(adoptions, false);
    // Its connections are lost: do not leave their ports black-holed.
    if (tree.lockTable) await unlock({ table: tree.lockTable }).catch(() => false);
  }
  return out;
}

const f1 = (ms: number | undefined) => (ms === undefined ? '-' : ms >= 1000 ? `${(ms / 1000).toFixed(2)} s` : `${ms.toFixed(1)} ms`);

export function reportText(r: ResumeReport): string {
  if (r.nothing) return 'handoff resume: nothing to resume';
  const lines = [`handoff resume: ${r.fromKernel} -> ${r.toKernel} from ${r.store}: ${r.restored} tree(s) restored, ${r.failed} failed`];
  for (const t of r.trees) {
    if (t.ok) lines.push(`  tree ${t.root}: restored ${t.pids.length} process(es) [${t.pids.join(' ')}], verify ${f1(t.ms.verify)}, restore ${f1(t.ms.restore)}${t.units?.length ? `, back in ${t.units.join(' ')}` : ''}${t.lateLock ? ' (network locked late: no early step ran)' : ''}`);
    else lines.push(`  tree ${t.root}: FAILED [${t.error?.code}] ${t.error?.message}`);
  }
  const p = r.phases.prepare ?? {};
  lines.push(`  old kernel: preflight ${f1(p.preflight)}, stage ${f1(p.stage)}, hook ${f1(p.hook)}, dump + write ${f1(p.dump)}`);
  lines.push(`  new kernel: early lock ${f1(r.phases.early)}, restore ${f1(r.phases.restore)}`);
  lines.push(`  frozen at ${r.frozenAt}, running at ${r.runningAt}: blackout ${f1(r.blackoutMs)}`);
  lines.push(`  store kept at ${r.keptAt}`);
  return lines.join('\n');
}
