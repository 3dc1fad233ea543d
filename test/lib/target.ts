// Test harness for the programs under test (test/targets/, see common.h for their protocol):
// start one, wait for READY, dump it with the CLI, kill the original, restore it detached,
// signal it and read its verdict from its log.
//
// Every process the harness starts runs under test/targets/build/reaper, a child subreaper:
// orphans (the children of a killed original, the tree a detached restore leaves behind) are
// reaped by it and their exit statuses written to a status file. Without it they would go to
// pid 1, which in some containers never reaps, and their pids would stay taken.
import { spawn, type ChildProcess } from 'node:child_process';
import { closeSync, existsSync, mkdtempSync, openSync, readFileSync, readdirSync, rmSync } from 'node:fs';
import { tmpdir } from 'node:os';
import { dirname, join, resolve } from 'node:path';
import { fileURLToPath } from 'node:url';
import { execa } from 'execa';

export const ROOT = resolve(dirname(fileURLToPath(import.meta.url)), '../..');
export const TARGETS_BUILD = join(ROOT, 'test/targets/build');
export const SCRIPTS = join(ROOT, 'test/targets/scripts');
export const HANDOFF_CLI = join(ROOT, 'bin/handoff.js');
const REAPER = join(TARGETS_BUILD, 'reaper');

/** The C targets, each with the corruption modes it implements (HANDOFF_CORRUPT=mode). */
export const TARGETS = {
  memory: ['anon', 'hole', 'shared', 'filepriv', 'fileclean', 'fileshared', 'memfd', 'deleted', 'heap', 'brk', 'guard', 'stack', 'stackgrow'],
  registers: ['gp', 'rbp', 'r11', 'xmm', 'ymm', 'mxcsr', 'x87'],
  threads: ['tls', 'name', 'stack', 'tid'],
  signals: ['handler', 'mask', 'pending', 'thread-mask', 'altstack', 'thread-altstack'],
  timers: ['itimer', 'rearm', 'interval', 'virtual'],
  clocks: ['backwards', 'jump', 'boottime'],
  files: ['offset', 'cloexec', 'append', 'dup', 'fork-shared', 'deleted', 'leak', 'nonblock'],
  pipes: ['drain', 'size', 'fifo', 'split', 'extra'],
  tree: ['pgid', 'sid', 'name'],
  creds: ['caps', 'ambient', 'uid'],
  misc: ['umask', 'cwd', 'rlimit', 'name', 'nice', 'personality', 'cmdline'],
  blocking: ['data', 'early', 'futex', 'drop'],
  zombie: ['reap', 'reap-signalled'],
  vdso: ['offset', 'backwards'],
  pty: ['index', 'termios', 'winsize', 'output', 'input', 'pgrp', 'ctty'],
  sockets: ['stream', 'stream-back', 'talk', 'seqpacket', 'boundary', 'dgram', 'listener', 'abstract', 'udp-peer', 'udp-rcvbuf', 'udp-reuseaddr', 'eof'],
  'net-queues': ['message', 'fd', 'udp'],
} as const satisfies Record<string, readonly string[]>;
export type TargetName = keyof typeof TARGETS;
export const TARGET_NAMES = Object.keys(TARGETS) as TargetName[];

/** Real programs that follow the same protocol (scripts in test/targets/scripts/). */
export const PROGRAMS = {
  'python-threads': () => [python3(), join(SCRIPTS, 'threads.py')],
  'node-timers': () => [process.execPath, join(SCRIPTS, 'timers.mjs')],
  'shell-tree': () => ['/bin/bash', join(SCRIPTS, 'tree.sh')],
} as const;
export type ProgramName = keyof typeof PROGRAMS;

export function python3(): string {
  return existsSync('/usr/bin/python3') ? '/usr/bin/python3' : 'python3';
}

export const VERDICT = /^(PASS|FAIL.*)$/m;
export const READY = /^READY (\d+)$/m;

export interface StartOptions {
  /** Arguments after the program. */
  args?: string[];
  /** Extra environment (HANDOFF_DOWNTIME_S, HANDOFF_SLEEP_MS, ...). */
  env?: Record<string, string>;
  /** HANDOFF_CORRUPT mode: the target breaks this piece of its state before checking. */
  corrupt?: string;
  /** Scratch directory (the target's cwd, holding its log); a fresh one by default. */
  workDir?: string;
  /** How long to wait for READY (ms). */
  readyTimeoutMs?: number;
  /** Do not wait for READY (for programs that never print it). */
  noReady?: boolean;
}

/** A process tree started by or restored under the harness, with its log and reaper. */
export interface Running {
  name: string;
  /** The root process's pid (unchanged across restores). */
  pid: number;
  workDir: string;
  logPath: string;
  /** The whole log so far. */
  log(): string;
  /** Waits until the log matches re; rejects with the log after timeoutMs or when the tree is gone. */
  waitFor(re: RegExp, timeoutMs?: number): Promise<RegExpMatchArray>;
  /** Sends a signal to the root process. */
  signal(sig?: NodeJS.Signals): void;
  /** Every live pid of the tree (root and descendants), from /proc. */
  pids(): number[];
  /** SIGKILLs the whole tree and waits until every process of it has been reaped. */
  kill(): Promise<void>;
  /** Waits for the root to exit (reaped by the reaper) and returns its exit code or 128+signal. */
  exitCode(timeoutMs?: number): Promise<number>;
  /** Waits until this handle's reaper is gone (all its processes reaped). */
  reap(timeoutMs?: number): Promise<void>;
}

const sleep = (ms: number) => new Promise((r) => setTimeout(r, ms));

/** Parent pid of every process, from /proc/<pid>/stat. */
function parentMap(): Map<number, number[]> {
  const children = new Map<number, number[]>();
  for (const entry of readdirSync('/proc')) {
    if (!/^\d+$/.test(entry)) continue;
    let stat: string;
    try {
      stat = readFileSync(`/proc/${entry}/stat`, 'latin1');
    } catch {
      continue;
    }
    const fields = stat.slice(stat.lastIndexOf(')') + 2).split(' ');
    const ppid = Number(fields[1]);
    const list = children.get(ppid) ?? [];
    list.push(Number(entry));
    children.set(ppid, list);
  }
  return children;
}

/** pid and all its descendants. */
export function processTree(pid: number): number[] {
  if (!existsSync(`/proc/${pid}`)) return [];
  const children = parentMap();
  const out: number[] = [];
  const todo = [pid];
  while (todo.length) {
    const p = todo.pop()!;
    out.push(p);
    todo.push(...(children.get(p) ?? []));
  }
  return out;
}

/** State letter of a process ('Z' zombie, 'S' sleeping...), or undefined when gone. */
export function processState(pid: number): string | undefined {
  try {
    const stat = readFileSync(`/proc/${pid}/stat`, 'latin1');
    return stat.slice(stat.lastIndexOf(')') + 2, stat.lastIndexOf(')') + 3);
  } catch {
    return undefined;
  }
}

/** A reaper process running one command, with the status file it writes. */
interface Reaper {
  child: ChildProcess;
  statusPath: string;
  exited: Promise<number | null>;
  /** pid -> exit code (or 128+signal) of every process it reaped. */
  reaped(): Map<number, number>;
  /** The wrapped command's pid and exit code once it has exited. */
  command(): { pid: number; code: number } | undefined;
}

function startReaper(argv: string[], opts: { workDir: string; logPath: string; env?: Record<string, string>; setsid?: boolean; tag: string }): Reaper {
  const statusPath = join(opts.workDir, `reaper-${opts.tag}.status`);
  const logFd = openSync(opts.logPath, 'a');
  let child: ChildProcess;
  try {
    const reaperArgs = [...(opts.setsid ? ['--setsid'] : []), statusPath, ...argv];
    child = spawn(REAPER, reaperArgs, {
      cwd: opts.workDir,
      env: { ...process.env, ...opts.env },
      stdio: ['ignore', logFd, logFd],
    });
  } finally {
    closeSync(logFd);
  }
  const exited = new Promise<number | null>((res) => child.once('exit', (code) => res(code)));
  const parse = () => {
    const map = new Map<number, number>();
    let command: { pid: number; code: number } | undefined;
    let text = '';
    try {
      text = readFileSync(statusPath, 'utf8');
    } catch {
      /* nothing reaped yet */
    }
    for (const line of text.split('\n')) {
      const m = /^(command )?(\d+) (exit|signal) (\d+)$/.exec(line);
      if (!m) continue;
      const code = m[3] === 'exit' ? Number(m[4]) : 128 + Number(m[4]);
      map.set(Number(m[2]), code);
      if (m[1]) command = { pid: Number(m[2]), code };
    }
    return { map, command };
  };
  return { child, statusPath, exited, reaped: () => parse().map, command: () => parse().command };
}

function makeRunning(name: string, pid: number, workDir: string, logPath: string, reaper: Reaper): Running {
  const log = () => {
    try {
      return readFileSync(logPath, 'utf8');
    } catch {
      return '';
    }
  };
  const self: Running = {
    name,
    pid,
    workDir,
    logPath,
    log,
    async waitFor(re, timeoutMs = 60_000) {
      const deadline = Date.now() + timeoutMs;
      for (;;) {
        const m = log().match(re);
        if (m) return m;
        if (reaper.reaped().has(pid)) {
          const again = log().match(re);
          if (again) return again;
          throw new Error(`${name} (pid ${pid}) exited with ${reaper.reaped().get(pid)} before ${re}; log:\n${log()}`);
        }
        if (Date.now() > deadline) throw new Error(`${name} (pid ${pid}): no ${re} within ${timeoutMs} ms; log:\n${log()}`);
        await sleep(20);
      }
    },
    signal(sig = 'SIGUSR1') {
      process.kill(pid, sig);
    },
    pids() {
      return reaper.reaped().has(pid) ? [] : processTree(pid);
    },
    async kill() {
      // Everything under this handle's reaper belongs to the tree (orphans included). Kill until
      // nothing is left alive: a process may fork while its siblings die.
      const killed = new Set<number>();
      const reaperPid = reaper.child.pid!;
      for (let round = 0; round < 50; round++) {
        const live = processTree(reaperPid).filter((p) => p !== reaperPid && processState(p) !== 'Z');
        if (live.length === 0) break;
        for (const p of live) {
          try {
            process.kill(p, 'SIGKILL');
          } catch {
            /* already gone */
          }
          killed.add(p);
        }
        await sleep(20);
      }
      const deadline = Date.now() + 30_000;
      while (processTree(reaperPid).some((p) => p !== reaperPid)) {
        if (Date.now() > deadline) throw new Error(`${name}: processes ${processTree(reaperPid).join(' ')} not reaped after SIGKILL`);
        await sleep(20);
      }
    },
    async exitCode(timeoutMs = 60_000) {
      const deadline = Date.now() + timeoutMs;
      for (;;) {
        const code = reaper.reaped().get(pid);
        if (code !== undefined) return code;
        if (Date.now() > deadline) throw new Error(`${name} (pid ${pid}) still running after ${timeoutMs} ms; log:\n${log()}`);
        await sleep(20);
      }
    },
    async reap(timeoutMs = 30_000) {
      const timer = sleep(timeoutMs).then(() => 'timeout' as const);
      if ((await Promise.race([reaper.exited, timer])) === 'timeout') {
        reaper.child.kill('SIGKILL');
        throw new Error(`${name}: reaper still has children after ${timeoutMs} ms: ${processTree(reaper.child.pid!).join(' ')}`);
      }
    },
  };
  return self;
}

function commandFor(name: string): string[] {
  if (name in TARGETS) return [join(TARGETS_BUILD, name)];
  if (name in PROGRAMS) return PROGRAMS[name as ProgramName]();
  throw new Error(`unknown target ${name}`);
}

/**
 * Starts a target (a C target by name, a protocol-following program from PROGRAMS, or any
 * command given as name + args with `command`) in its own session, stdin /dev/null, stdout and
 * stderr appended to <workDir>/target.log, and waits for READY <pid>.
 */
export async function startTarget(name: string, opts: StartOptions & { command?: string[] } = {}): Promise<Running> {
  const workDir = opts.workDir ?? mkdtempSync(join(tmpdir(), `handoff-${name}-`));
  const logPath = join(workDir, 'target.log');
  const argv = [...(opts.command ?? commandFor(name)), ...(opts.args ?? [])];
  const env: Record<string, string> = { ...opts.env };
  if (opts.corrupt) env.HANDOFF_CORRUPT = opts.corrupt;
  const reaper = startReaper(argv, { workDir, logPath, env, setsid: true, tag: 'original' });
  // The target is the reaper's only child until it forks: find it by parent pid.
  const deadline = Date.now() + 10_000;
  let pid: number | undefined;
  while (pid === undefined) {
    pid = parentMap().get(reaper.child.pid!)?.[0];
    if (pid !== undefined) break;
    const cmd = reaper.command();
    if (cmd) throw new Error(`${name} exited at once with ${cmd.code}; log:\n${readFileSync(logPath, 'utf8')}`);
    if (Date.now() > deadline) throw new Error(`${name} did not start`);
    await sleep(5);
  }
  const running = makeRunning(name, pid, workDir, logPath, reaper);
  if (!opts.noReady) {
    const m = await running.waitFor(/^(READY (\d+)|FAIL.*)$/m, opts.readyTimeoutMs ?? 30_000);
    if (!m[2]) throw new Error(`${name} failed during set-up: ${m[1]}\n${running.log()}`);
    if (Number(m[2]) !== pid) throw new Error(`${name}: READY ${m[2]} but the process is ${pid}`);
  }
  return running;
}

/** Output of one CLI run. */
export interface CliRun {
  exitCode: number;
  stdout: string;
  stderr: string;
  ms: number;
}

/** Runs `node bin/handoff.js ...args` and returns its result (never throws on exit status). */
export async function handoff(args: string[], opts: { timeoutMs?: number } = {}): Promise<CliRun> {
  const t0 = performance.now();
  const r = await execa(process.execPath, [HANDOFF_CLI, ...args], { reject: false, timeout: opts.timeoutMs ?? 300_000, all: false });
  return { exitCode: r.exitCode ?? -1, stdout: String(r.stdout), stderr: String(r.stderr), ms: performance.now() - t0 };
}

/** `handoff dump --pid PID --tree --image FILE [--leave-running]`; throws with the output on failure. */
export async function dumpTarget(pid: number, image: string, opts: { tree?: boolean; leaveRunning?: boolean; args?: string[] } = {}): Promise<CliRun> {
  const args = ['dump', '--pid', String(pid), ...(opts.tree === false ? [] : ['--tree']), '--image', image, ...(opts.leaveRunning ? ['--leave-running'] : []), ...(opts.args ?? [])];
  const r = await handoff(args);
  if (r.exitCode !== 0) throw new Error(`handoff ${args.join(' ')} exited ${r.exitCode}\n${r.stderr}${r.stdout}`);
  return r;
}

/**
 * `handoff restore --image FILE --detach` under a fresh reaper that adopts the restored tree.
 * Resolves once the restore command has exited 0 and the root runs (same pid as dumped).
 */
export async function restoreImage(name: string, pid: number, image: string, workDir: string, opts: { tag?: string; timeoutMs?: number } = {}): Promise<{ running: Running; restore: CliRun }> {
  const logPath = join(workDir, 'target.log');
  const tag = opts.tag ?? `restore-${Date.now()}`;
  const restoreLog = join(workDir, `${tag}.out`);
  const t0 = performance.now();
  const reaper = startReaper([process.execPath, HANDOFF_CLI, 'restore', '--image', image, '--detach'], { workDir, logPath: restoreLog, tag });
  const deadline = Date.now() + (opts.timeoutMs ?? 300_000);
  let cmd = reaper.command();
  while (!cmd) {
    if (Date.now() > deadline) {
      reaper.child.kill('SIGKILL');
      throw new Error(`handoff restore --image ${image}: no exit after ${opts.timeoutMs ?? 300_000} ms`);
    }
    await sleep(10);
    cmd = reaper.command();
  }
  const output = existsSync(restoreLog) ? readFileSync(restoreLog, 'utf8') : '';
  const restore: CliRun = { exitCode: cmd.code, stdout: output, stderr: '', ms: performance.now() - t0 };
  if (cmd.code !== 0) throw new Error(`handoff restore --image ${image} exited ${cmd.code}\n${output}`);
  const running = makeRunning(name, pid, workDir, logPath, reaper);
  if (!existsSync(`/proc/${pid}`) || reaper.reaped().has(pid))
    throw new Error(`restore exited 0 but pid ${pid} is not running; log:\n${running.log()}\nrestore output:\n${output}`);
  return { running, restore };
}

export interface RoundTripOptions extends StartOptions {
  /** How many dump/restore rounds before the signal (2: the restored tree is dumped again). */
  rounds?: number;
  /** Dump with --leave-running, no kill or restore: the original must still pass afterwards. */
  leaveRunning?: boolean;
  /**
   * Dump with --leave-running, then kill and restore as usual: the image of a small process
   * is then hashed and written after the original already runs again.
   */
  dumpLeavingRunning?: boolean;
  /** How long to wait for the verdict after SIGUSR1 (ms). */
  verdictTimeoutMs?: number;
  /** Pause between READY and the first dump (ms), e.g. to let a program get going. */
  settleMs?: number;
  /** More arguments for every `handoff dump` (e.g. --unix-outside closed). */
  dumpArgs?: string[];
}

export interface RoundTripResult {
  name: string;
  pid: number;
  passed: boolean;
  /** "PASS" or "FAIL <reasons>". */
  verdict: string;
  /** Exit code of the root (0 on PASS), or 128+signal. */
  exitCode: number;
  log: string;
  images: string[];
  dumps: CliRun[];
  restores: CliRun[];
  workDir: string;
}

/**
 * Start -> READY -> dump -> kill the original -> restore --detach -> (repeat) -> SIGUSR1 ->
 * verdict. Throws only on harness or tool failures (with logs); a FAIL verdict is returned.
 */
export async function runRoundTrip(name: string, opts: RoundTripOptions = {}): Promise<RoundTripResult> {
  let running = await startTarget(name, opts);
  const { pid, workDir } = running;
  const images: string[] = [];
  const dumps: CliRun[] = [];
  const restores: CliRun[] = [];
  try {
    if (opts.settleMs) await sleep(opts.settleMs);
    if (opts.leaveRunning) {
      const image = join(workDir, 'image-1.himg');
      dumps.push(await dumpTarget(pid, image, { leaveRunning: true, args: opts.dumpArgs }));
      images.push(image);
    } else {
      for (let round = 1; round <= (opts.rounds ?? 1); round++) {
        const image = join(workDir, `image-${round}.himg`);
        dumps.push(await dumpTarget(pid, image, { leaveRunning: opts.dumpLeavingRunning, args: opts.dumpArgs }));
        images.push(image);
        await running.kill();
        const r = await restoreImage(name, pid, image, workDir, { tag: `restore-${round}` });
        restores.push(r.restore);
        running = r.running;
      }
    }
    running.signal('SIGUSR1');
    const m = await running.waitFor(VERDICT, opts.verdictTimeoutMs ?? 120_000);
    const exitCode = await running.exitCode();
    await running.reap();
    return { name, pid, passed: m[1] === 'PASS', verdict: m[1], exitCode, log: running.log(), images, dumps, restores, workDir };
  } catch (err) {
    await running.kill().catch(() => {});
    throw err;
  }
}

/** Removes a work directory made by startTarget (images included). */
export function cleanup(workDir: string): void {
  rmSync(workDir, { recursive: true, force: true });
}
