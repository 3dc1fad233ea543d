// Benchmark of the engine against DESIGN.md section 10, all figures from one run:
//   1. dump / restore throughput of a process with N MiB of touched anonymous memory, as a ratio
//      of dd writing / reading the same amount on the same file system;
//   2. image size / RssAnon of that process;
//   3. frozen time of a small process (median of several dumps with --leave-running);
//   4. start-up of `handoff --version` (median of 10);
//   5. the restored big process checks its own memory pattern (the bench fails without PASS).
// Prints a table, writes bench-results.json. Timings are reported, never asserted; the exit
// status is non-zero only when something is wrong (a failed dump/restore or pattern check).
//
// Run it through scripts/bench.sh (builds membench and the reaper first).
import { spawn, spawnSync } from 'node:child_process';
import { createHash } from 'node:crypto';
import { closeSync, existsSync, mkdirSync, mkdtempSync, openSync, readFileSync, rmSync, statSync, writeFileSync } from 'node:fs';
import { cpus, hostname, loadavg, release, totalmem } from 'node:os';
import { dirname, join, resolve } from 'node:path';
import { fileURLToPath } from 'node:url';
import { parseArgs } from 'node:util';

const ROOT = resolve(dirname(fileURLToPath(import.meta.url)), '../..');
const CLI = join(ROOT, 'bin/handoff.js');
const MiB = 1 << 20;

const USAGE = `Usage: node dist/scripts/bench.js --membench BIN --reaper BIN [options]

  --size-mib N       touched anonymous memory of the big process (default 2048)
  --small-mib N      memory of the small process for the frozen time (default 4)
  --frozen-runs N    dumps of the small process, median reported (default 5)
  --startup-runs N   runs of handoff --version, median reported (default 10)
  --dir DIR          where images and the dd file go (default /var/tmp; use a real disk)
  --out DIR          where bench-results.json goes (default: a fresh temp dir)
  --warm             do not drop the page cache before dd and dump/restore (default: drop it,
                     echo 3 > /proc/sys/vm/drop_caches, before each side of each comparison)
  --keep             keep the work directory (images, logs)`;

const { values: opt } = parseArgs({
  options: {
    membench: { type: 'string' },
    reaper: { type: 'string' },
    'size-mib': { type: 'string', default: '2048' },
    'small-mib': { type: 'string', default: '4' },
    'frozen-runs': { type: 'string', default: '5' },
    'startup-runs': { type: 'string', default: '10' },
    dir: { type: 'string', default: '/var/tmp' },
    out: { type: 'string' },
    warm: { type: 'boolean', default: false },
    keep: { type: 'boolean', default: false },
    help: { type: 'boolean', short: 'h' },
  },
});
if (opt.help || !opt.membench || !opt.reaper) {
  console.log(USAGE);
  process.exit(opt.help ? 0 : 2);
}
const positive = (name: string, v: string | undefined): number => {
  const n = Number(v);
  if (!Number.isInteger(n) || n <= 0) {
    console.error(`bench: --${name} must be a positive integer`);
    process.exit(2);
  }
  return n;
};
const SIZE_MIB = positive('size-mib', opt['size-mib']);
const SMALL_MIB = positive('small-mib', opt['small-mib']);
const FROZEN_RUNS = positive('frozen-runs', opt['frozen-runs']);
const STARTUP_RUNS = positive('startup-runs', opt['startup-runs']);
const MEMBENCH = resolve(opt.membench);
const REAPER = resolve(opt.reaper);
const COLD = !opt.warm;

const sleep = (ms: number) => new Promise((r) => setTimeout(r, ms));
const median = (xs: number[]) => {
  const s = [...xs].sort((a, b) => a - b);
  const m = s.length >> 1;
  return s.length % 2 ? s[m]! : (s[m - 1]! + s[m]!) / 2;
};
const round = (x: number, digits = 2) => Math.round(x * 10 ** digits) / 10 ** digits;
const mibps = (bytes: number, ms: number) => bytes / MiB / (ms / 1000);
const load = () => loadavg().map((x) => round(x));
function note(msg: string): void {
  process.stderr.write(`bench: ${msg}\n`);
}

function dropCaches(): void {
  if (!COLD) return;
  spawnSync('sync');
  writeFileSync('/proc/sys/vm/drop_caches', '3');
}

/** Runs a command to completion; wall time in ms. Throws with its output on a non-zero exit. */
function timed(cmd: string, args: string[]): { ms: number; stdout: string; stderr: string } {
  const t0 = performance.now();
  const r = spawnSync(cmd, args, { encoding: 'utf8', maxBuffer: 64 * MiB });
  const ms = performance.now() - t0;
  if (r.status !== 0) throw new Error(`${cmd} ${args.join(' ')} exited ${r.status ?? r.signal}\n${r.stderr}${r.stdout}`);
  return { ms, stdout: r.stdout, stderr: r.stderr };
}

/** The JSON object a `handoff ... --json` command printed. */
function jsonOf(stdout: string): Record<string, unknown> {
  const start = stdout.indexOf('{');
  if (start < 0) throw new Error(`no JSON in output:\n${stdout}`);
  return JSON.parse(stdout.slice(start)) as Record<string, unknown>;
}

function statusField(pid: number, field: string): number {
  const m = new RegExp(`^${field}:\\s+(\\d+) kB$`, 'm').exec(readFileSync(`/proc/${pid}/status`, 'utf8'));
  if (!m) throw new Error(`no ${field} in /proc/${pid}/status`);
  return Number(m[1]) * 1024;
}

/** A process tree under a reaper (test/targets/build/reaper): the reaper reaps whatever is
 * orphaned below it, so the pid of a killed or restored process is really free again. */
class Reaped {
  readonly statusPath: string;
  readonly exited: Promise<void>;
  private readonly pidOfReaper: number;

  constructor(argv: string[], workDir: string, outPath: string, tag: string, opts: { setsid?: boolean; env?: Record<string, string> } = {}) {
    this.statusPath = join(workDir, `reaper-${tag}.status`);
    const fd = openSync(outPath, 'a');
    try {
      const child = spawn(REAPER, [...(opts.setsid ? ['--setsid'] : []), this.statusPath, ...argv], {
        cwd: workDir,
        env: { ...process.env, ...opts.env },
        stdio: ['ignore', fd, fd],
      });
      this.pidOfReaper = child.pid!;
      this.exited = new Promise((res) => child.once('exit', () => res()));
    } finally {
      closeSync(fd);
    }
  }

  private lines(): string[] {
    try {
      return readFileSync(this.statusPath, 'utf8').split('\n');
    } catch {
      return [];
    }
  }

  /** Exit code (or 128+signal) of the wrapped command once it has exited. */
  command(): number | undefined {
    for (const line of this.lines()) {
      const m = /^command \d+ (exit|signal) (\d+)$/.exec(line);
      if (m) return m[1] === 'exit' ? Number(m[2]) : 128 + Number(m[2]);
    }
    return undefined;
  }

  reaped(pid: number): number | undefined {
    for (const line of this.lines()) {
      const m = /^(?:command )?(\d+) (exit|signal) (\d+)$/.exec(line);
      if (m && Number(m[1]) === pid) return m[2] === 'exit' ? Number(m[3]) : 128 + Number(m[3]);
    }
    return undefined;
  }

  async waitCommand(timeoutMs: number): Promise<number> {
    const deadline = Date.now() + timeoutMs;
    for (;;) {
      const code = this.command();
      if (code !== undefined) return code;
      if (Date.now() > deadline) throw new Error(`command under reaper ${this.pidOfReaper}: no exit within ${timeoutMs} ms`);
      await sleep(5);
    }
  }

  async waitGone(timeoutMs: number): Promise<void> {
    const t = sleep(timeoutMs).then(() => 'timeout' as const);
    if ((await Promise.race([this.exited, t])) === 'timeout') throw new Error(`reaper ${this.pidOfReaper} still has children after ${timeoutMs} ms`);
  }
}

async function waitLog(logPath: string, re: RegExp, timeoutMs: number, alive: () => boolean): Promise<RegExpMatchArray> {
  const deadline = Date.now() + timeoutMs;
  for (;;) {
    const text = existsSync(logPath) ? readFileSync(logPath, 'utf8') : '';
    const m = text.match(re);
    if (m) return m;
    if (!alive()) throw new Error(`process gone before ${re}; log:\n${text}`);
    if (Date.now() > deadline) throw new Error(`no ${re} within ${timeoutMs} ms; log:\n${text}`);
    await sleep(10);
  }
}

const VERDICT = /^(PASS|FAIL.*)$/m;

/** Starts membench MIB in its own session under a reaper, log on a regular file; waits for READY. */
async function startMembench(mib: number, workDir: string, tag: string, env?: Record<string, string>): Promise<{ pid: number; log: string; reaper: Reaped }> {
  const log = join(workDir, `${tag}.log`);
  const reaper = new Reaped([MEMBENCH, String(mib)], workDir, log, tag, { setsid: true, ...(env ? { env } : {}) });
  let gone = false;
  void reaper.exited.then(() => (gone = true));
  const m = await waitLog(log, /^(READY (\d+)|FAIL.*)$/m, 120_000, () => !gone);
  if (!m[2]) throw new Error(`membench ${mib} failed during set-up: ${m[1]}`);
  return { pid: Number(m[2]), log, reaper };
}

/** SIGUSR1 to a membench and its verdict line. */
async function verdictOf(pid: number, log: string, reaper: Reaped): Promise<string> {
  process.kill(pid, 'SIGUSR1');
  const m = await waitLog(log, VERDICT, 300_000, () => reaper.reaped(pid) === undefined || VERDICT.test(readFileSync(log, 'utf8')));
  await reaper.waitGone(60_000);
  return m[1]!;
}

function handoff(args: string[]) {
  return timed(process.execPath, [CLI, ...args]);
}

// ---- measurements ----

function measureStartup() {
  handoff(['--version']); // first run loads the files into the page cache, like every later run
  const tool: number[] = [];
  const bare: number[] = [];
  for (let i = 0; i < STARTUP_RUNS; i++) {
    tool.push(handoff(['--version']).ms);
    bare.push(timed(process.execPath, ['-e', '0']).ms);
  }
  return { medianMs: round(median(tool)), runsMs: tool.map((x) => round(x)), nodeBareMedianMs: round(median(bare)), targetMs: 150 };
}

/** Self-check of membench's own check: a corrupted page must give FAIL. */
async function checkMembenchCanFail(workDir: string): Promise<string> {
  const p = await startMembench(SMALL_MIB, workDir, 'selfcheck', { MEMBENCH_CORRUPT_PAGE: '3' });
  const verdict = await verdictOf(p.pid, p.log, p.reaper);
  if (!verdict.startsWith('FAIL')) throw new Error(`membench self-check: a corrupted page gave '${verdict}'`);
  return verdict;
}

async function measureFrozen(workDir: string) {
  const runs: { frozenMs: number; wallMs: number; imageBytes: number; rssAnon: number }[] = [];
  for (let i = 0; i < FROZEN_RUNS; i++) {
    const p = await startMembench(SMALL_MIB, workDir, `small-${i}`);
    const rssAnon = statusField(p.pid, 'RssAnon');
    const image = join(workDir, `small-${i}.himg`);
    try {
      const d = handoff(['dump', '--pid', String(p.pid), '--image', image, '--leave-running', '--json']);
      const j = jsonOf(d.stdout);
      runs.push({ frozenMs: round(Number(j.frozenMs), 3), wallMs: round(d.ms), imageBytes: Number(j.bytes), rssAnon });
    } catch (err) {
      process.kill(p.pid, 'SIGKILL');
      throw err;
    }
    const verdict = await verdictOf(p.pid, p.log, p.reaper);
    if (verdict !== 'PASS') throw new Error(`small membench after dump --leave-running: ${verdict}`);
    rmSync(image, { force: true });
  }
  return {
    sizeMiB: SMALL_MIB,
    medianMs: round(median(runs.map((r) => r.frozenMs)), 3),
    runs,
    targetMs: 10,
  };
}

/** dd of=FILE bs=8M count=N conv=fsync from /dev/zero, cold cache unless --warm; the file is removed. */
function ddWrite(file: string, count: number) {
  dropCaches();
  const at = load();
  const r = timed('dd', ['if=/dev/zero', `of=${file}`, 'bs=8M', `count=${count}`, 'conv=fsync']);
  rmSync(file, { force: true });
  note(`dd write ${count * 8 * MiB} bytes in ${round(r.ms)} ms`);
  return { ms: round(r.ms), load: at };
}

function ddRead(file: string) {
  dropCaches();
  const at = load();
  const r = timed('dd', [`if=${file}`, 'of=/dev/null', 'bs=8M']);
  note(`dd read ${statSync(file).size} bytes in ${round(r.ms)} ms`);
  return { ms: round(r.ms), load: at };
}

/** In-process SHA-256 speed (the image digest): a CPU floor for dump and verify. */
function sha256MiBps(): number {
  const chunk = Buffer.alloc(8 * MiB, 0x5a);
  const hash = createHash('sha256');
  const t0 = performance.now();
  for (let i = 0; i < 32; i++) hash.update(chunk);
  hash.digest();
  return round(mibps(32 * chunk.length, performance.now() - t0));
}

async function measureBig(workDir: string) {
  const ddFile = join(workDir, 'dd.out');
  const count = Math.ceil(SIZE_MIB / 8);
  const ddBytes = count * 8 * MiB;

  // dd runs before and after each side, and the ratio uses both (total bytes / total time):
  // the shared virtual disk's speed drifts by tens of percent within minutes.
  const ddW1 = ddWrite(ddFile, count);

  const p = await startMembench(SIZE_MIB, workDir, 'big');
  const rssAnon = statusField(p.pid, 'RssAnon');
  const image = join(workDir, 'big.himg');
  let dumpJson: Record<string, unknown>;
  let dumpWall: number;
  dropCaches();
  const loadDump = load();
  try {
    const d = handoff(['dump', '--pid', String(p.pid), '--image', image, '--json']);
    dumpJson = jsonOf(d.stdout);
    dumpWall = d.ms;
  } catch (err) {
    process.kill(p.pid, 'SIGKILL');
    throw err;
  }
  await p.reaper.waitGone(60_000); // the original is reaped: its pid is free for the restore
  const imageBytes = statSync(image).size;
  note(`dump ${imageBytes} bytes in ${round(dumpWall)} ms wall, frozen ${round(Number(dumpJson.frozenMs))} ms`);
  const ddW2 = ddWrite(ddFile, count);

  const ddR1 = ddRead(image);
  dropCaches();
  const loadRestore = load();
  const restoreOut = join(workDir, 'restore.out');
  const t0 = performance.now();
  const r = new Reaped([process.execPath, CLI, 'restore', '--image', image, '--detach', '--json'], workDir, restoreOut, 'restore');
  let code: number;
  try {
    code = await r.waitCommand(600_000);
  } catch (err) {
    if (existsSync(`/proc/${p.pid}`)) process.kill(p.pid, 'SIGKILL');
    throw err;
  }
  const restoreWall = performance.now() - t0;
  const out = readFileSync(restoreOut, 'utf8');
  if (code !== 0) throw new Error(`handoff restore exited ${code}\n${out}`);
  const rj = jsonOf(out) as { ms: { verify: number; restore: number; digestWait?: number } };
  note(`restore verify ${round(rj.ms.verify)} ms + restore ${round(rj.ms.restore)} ms (of which ${round(rj.ms.digestWait ?? 0)} ms waiting for the image checksums after the memory fill), wall ${round(restoreWall)} ms`);
  const restoredRssAnon = statusField(p.pid, 'RssAnon');
  const verdict = await verdictOf(p.pid, p.log, r);
  const ddR2 = ddRead(image);

  // Where verification time goes: `handoff validate` (the same checks restore runs first) with
  // a cold and a warm cache, and the bare SHA-256 speed of this CPU.
  dropCaches();
  const validateCold = handoff(['validate', image]).ms;
  const validateWarm = handoff(['validate', image]).ms;
  const sha = sha256MiBps();
  note(`validate cold ${round(validateCold)} ms, warm ${round(validateWarm)} ms; sha256 ${sha} MiB/s`);
  if (!opt.keep) rmSync(image, { force: true });

  const restoreMs = rj.ms.verify + rj.ms.restore;
  const frozenMs = Number(dumpJson.frozenMs);
  const ddWriteMiBps = mibps(2 * ddBytes, ddW1.ms + ddW2.ms);
  const ddReadMiBps = mibps(2 * imageBytes, ddR1.ms + ddR2.ms);
  return {
    sizeMiB: SIZE_MIB,
    cache: COLD ? 'cold (drop_caches before each side)' : 'warm',
    rssAnon,
    restoredRssAnon,
    imageBytes,
    pagesBytes: Number(dumpJson.pagesBytes),
    imageOverRssAnon: round(imageBytes / rssAnon, 4),
    verdict,
    dd: {
      write: { bytes: ddBytes, runs: [ddW1, ddW2], mibps: round(ddWriteMiBps) },
      read: { bytes: imageBytes, runs: [ddR1, ddR2], mibps: round(ddReadMiBps) },
    },
    dump: {
      frozenMs: round(frozenMs),
      wallMs: round(dumpWall),
      mibpsFrozen: round(mibps(imageBytes, frozenMs)),
      mibpsWall: round(mibps(imageBytes, dumpWall)),
      ratioFrozen: round(mibps(imageBytes, frozenMs) / ddWriteMiBps, 3),
      ratioWall: round(mibps(imageBytes, dumpWall) / ddWriteMiBps, 3),
      load: loadDump,
    },
    restore: {
      verifyMs: round(rj.ms.verify),
      restoreMs: round(rj.ms.restore),
      digestWaitMs: round(rj.ms.digestWait ?? 0),
      wallMs: round(restoreWall),
      mibps: round(mibps(imageBytes, restoreMs)),
      mibpsRestoreOnly: round(mibps(imageBytes, rj.ms.restore)),
      mibpsWall: round(mibps(imageBytes, restoreWall)),
      ratio: round(mibps(imageBytes, restoreMs) / ddReadMiBps, 3),
      ratioRestoreOnly: round(mibps(imageBytes, rj.ms.restore) / ddReadMiBps, 3),
      ratioWall: round(mibps(imageBytes, restoreWall) / ddReadMiBps, 3),
      load: loadRestore,
    },
    diagnostics: {
      validateColdMs: round(validateCold),
      validateWarmMs: round(validateWarm),
      sha256MiBps: sha,
    },
  };
}

function fsOf(dir: string): string {
  const r = spawnSync('findmnt', ['-n', '-o', 'FSTYPE,SOURCE', '-T', dir], { encoding: 'utf8' });
  return r.status === 0 ? r.stdout.trim().replace(/\s+/g, ' ') : 'unknown';
}

function table(rows: [string, string, string, string][]): string {
  const head: [string, string, string, string] = ['measure', 'value', 'target', 'verdict'];
  const all = [head, ...rows];
  const w = head.map((_, i) => Math.max(...all.map((r) => r[i]!.length)));
  const line = (r: string[]) => r.map((c, i) => c.padEnd(w[i]!)).join('  ').trimEnd();
  return [line(head), w.map((n) => '-'.repeat(n)).join('  '), ...rows.map(line)].join('\n');
}

async function main(): Promise<number> {
  const baseDir = resolve(opt.dir!);
  mkdirSync(baseDir, { recursive: true });
  const workDir = mkdtempSync(join(baseDir, 'handoff-bench-'));
  const outDir = opt.out ? resolve(opt.out) : mkdtempSync(join('/tmp', 'handoff-bench-results-'));
  mkdirSync(outDir, { recursive: true });
  const started = new Date();
  const env = {
    date: started.toISOString(),
    host: hostname(),
    cpus: cpus().length,
    cpuModel: cpus()[0]?.model ?? 'unknown',
    memTotalMiB: Math.round(totalmem() / MiB),
    kernel: release(),
    node: process.version,
    dir: baseDir,
    fs: fsOf(baseDir),
    loadStart: load(),
  };
  note(`work dir ${workDir} (${env.fs}), ${COLD ? 'cold' : 'warm'} cache, load ${env.loadStart.join(' ')}`);
  let failed = false;
  let startup, frozen, big, selfCheck;
  try {
    startup = measureStartup();
    note(`startup median ${startup.medianMs} ms`);
    selfCheck = await checkMembenchCanFail(workDir);
    frozen = await measureFrozen(workDir);
    note(`frozen median ${frozen.medianMs} ms`);
    big = await measureBig(workDir);
    if (big.verdict !== 'PASS') failed = true;
  } catch (err) {
    failed = true;
    console.error(`bench: FAILED: ${err instanceof Error ? err.stack ?? err.message : String(err)}`);
  } finally {
    if (!opt.keep) rmSync(workDir, { recursive: true, force: true });
  }
  const results = { env: { ...env, loadEnd: load() }, startup, frozen, big, membenchSelfCheck: selfCheck, failed };
  const jsonPath = join(outDir, 'bench-results.json');
  writeFileSync(jsonPath, JSON.stringify(results, null, 2) + '\n');

  const ok = (good: boolean) => (good ? 'ok' : 'MISSED');
  const rows: [string, string, string, string][] = [];
  if (big) {
    rows.push(
      [`dump ${SIZE_MIB} MiB / dd write (frozen time)`, `${big.dump.ratioFrozen}x (${big.dump.mibpsFrozen} vs ${big.dd.write.mibps} MiB/s)`, '>= 0.8x', ok(big.dump.ratioFrozen >= 0.8)],
      [`dump ${SIZE_MIB} MiB / dd write (CLI wall)`, `${big.dump.ratioWall}x (${big.dump.mibpsWall} MiB/s)`, '', ''],
      [`restore / dd read (verify+restore)`, `${big.restore.ratio}x (${big.restore.mibps} vs ${big.dd.read.mibps} MiB/s)`, '>= 0.8x', ok(big.restore.ratio >= 0.8)],
      [`restore / dd read (restore only)`, `${big.restore.ratioRestoreOnly}x (${big.restore.mibpsRestoreOnly} MiB/s)`, '', ''],
      [`restore / dd read (CLI wall)`, `${big.restore.ratioWall}x (${big.restore.mibpsWall} MiB/s)`, '', ''],
      ['image size / RssAnon', `${big.imageOverRssAnon}x (${big.imageBytes} / ${big.rssAnon})`, '<= 1.02x', ok(big.imageOverRssAnon <= 1.02)],
      ['  verify part: handoff validate cold / warm', `${big.diagnostics.validateColdMs} / ${big.diagnostics.validateWarmMs} ms (sha256 ${big.diagnostics.sha256MiBps} MiB/s)`, '', ''],
      ['restored process pattern check', big.verdict, 'PASS', big.verdict === 'PASS' ? 'ok' : 'FAILED'],
    );
  }
  if (frozen) rows.push([`frozen time, ${SMALL_MIB} MiB process (median of ${FROZEN_RUNS})`, `${frozen.medianMs} ms`, '< 10 ms', ok(frozen.medianMs < 10)]);
  if (startup) rows.push([`handoff --version (median of ${STARTUP_RUNS})`, `${startup.medianMs} ms (node -e 0: ${startup.nodeBareMedianMs} ms)`, '< 150 ms', ok(startup.medianMs < 150)]);
  console.log(`handoff bench ${env.date} on ${env.host}: ${env.cpus} cores (${env.cpuModel}), ${env.memTotalMiB} MiB, kernel ${env.kernel}, node ${env.node}`);
  console.log(`images in ${env.dir} (${env.fs}), ${COLD ? 'cold page cache (drop_caches before each side)' : 'warm page cache'}; load average at start ${env.loadStart.join(' ')}, at end ${results.env.loadEnd.join(' ')}`);
  if (big) {
    const runs = (r: { ms: number }[]) => r.map((x) => `${x.ms} ms`).join(' / ');
    console.log(`dd write ${runs(big.dd.write.runs)} (before / after the dump), dd read ${runs(big.dd.read.runs)} (before / after the restore); ratios use both`);
    console.log(`load at dump ${big.dump.load.join(' ')}, at restore ${big.restore.load.join(' ')}`);
  }
  console.log(table(rows));
  console.log(`results: ${jsonPath}${failed ? '\nBENCH FAILED (see above)' : ''}`);
  return failed ? 1 : 0;
}

process.exitCode = await main();
