// Real-program jobs for round-trip tests: programs that do not follow the READY/SIGUSR1
// protocol but produce a result that can be checked after they finish (sha256sum of a large
// file, gzip fed through a pipe). The protocol-following real programs (python3 threads, node
// timers and workers, a bash tree) are in PROGRAMS in target.ts and run with runRoundTrip.
import { createHash, randomBytes } from 'node:crypto';
import { closeSync, createReadStream, existsSync, mkdirSync, mkdtempSync, openSync, readFileSync, readdirSync, readlinkSync, rmdirSync, writeFileSync, writeSync } from 'node:fs';
import { tmpdir } from 'node:os';
import { join } from 'node:path';
import { pipeline } from 'node:stream/promises';
import { createGunzip } from 'node:zlib';
import { TARGETS_BUILD, dumpTarget, restoreImage, startTarget, type CliRun, type Running } from './target.js';

/** Writes `bytes` of random data to path and returns its SHA-256 (hex). */
export function makeDataFile(path: string, bytes: number): string {
  const hash = createHash('sha256');
  const fd = openSync(path, 'w');
  try {
    const chunk = 1 << 20;
    for (let done = 0; done < bytes; done += chunk) {
      const buf = randomBytes(Math.min(chunk, bytes - done));
      hash.update(buf);
      writeSync(fd, buf);
    }
  } finally {
    closeSync(fd);
  }
  return hash.digest('hex');
}

/** SHA-256 (hex) of a stream's bytes. */
async function sha256Of(stream: NodeJS.ReadableStream): Promise<string> {
  const hash = createHash('sha256');
  for await (const chunk of stream) hash.update(chunk as Buffer);
  return hash.digest('hex');
}

/** File position of the fd through which any process of the tree reads `path`, or undefined. */
export function readPosition(pids: number[], path: string): number | undefined {
  for (const pid of pids) {
    let fds: string[];
    try {
      fds = readdirSync(`/proc/${pid}/fd`);
    } catch {
      continue;
    }
    for (const fd of fds) {
      try {
        if (readlinkSync(`/proc/${pid}/fd/${fd}`) !== path) continue;
        const m = /^pos:\s+(\d+)/m.exec(readFileSync(`/proc/${pid}/fdinfo/${fd}`, 'utf8'));
        if (m) return Number(m[1]);
      } catch {
        /* fd closed meanwhile */
      }
    }
  }
  return undefined;
}

export interface Job {
  name: string;
  running: Running;
  /** The input file and its size. */
  input: string;
  size: number;
  /** Resolves once the job is mid-way through its input (0 < position < size). */
  midway(timeoutMs?: number): Promise<number>;
  /** Checks the job's output after it exited; returns a description of what is wrong, or ''. */
  verify(): Promise<string>;
  /** Removes what the job made outside its work directory (a cgroup...). */
  release?(): void;
}

/**
 * A cgroup capping CPU at `percent` of one core (cgroup v2 cpu.max, or v1 cfs quota), so a
 * fast program is still mid-way when the dump comes. Restored processes start outside it.
 */
export function cpuThrottle(percent: number): { procs: string; remove(): void } {
  const name = `handoff-test-${process.pid}-${Date.now()}`;
  const v2 = existsSync('/sys/fs/cgroup/cgroup.controllers') && readFileSync('/sys/fs/cgroup/cgroup.controllers', 'utf8').includes('cpu');
  const dir = v2 ? `/sys/fs/cgroup/${name}` : `/sys/fs/cgroup/cpu/${name}`;
  mkdirSync(dir);
  if (v2) writeFileSync(`${dir}/cpu.max`, `${percent * 1000} 100000`);
  else {
    writeFileSync(`${dir}/cpu.cfs_period_us`, '100000');
    writeFileSync(`${dir}/cpu.cfs_quota_us`, String(percent * 1000));
  }
  return { procs: `${dir}/cgroup.procs`, remove: () => rmdirSync(dir) };
}

/** `sha256sum FILE > out` over a fresh random file of `size` bytes, throttled to 5% of a CPU. */
export async function sha256sumJob(size = 512 << 20): Promise<Job> {
  const workDir = mkdtempSync(join(tmpdir(), 'handoff-sha256sum-'));
  const input = join(workDir, 'input.bin');
  const expected = makeDataFile(input, size);
  const out = join(workDir, 'sha256sum.out');
  const throttle = cpuThrottle(5);
  const running = await startTarget('sha256sum', { workDir, noReady: true, command: ['/bin/sh', '-c', `echo $$ > "${throttle.procs}" && exec sha256sum "${input}" > "${out}"`] });
  return {
    name: 'sha256sum',
    running,
    input,
    size,
    midway: (timeoutMs) => waitMidway(running, input, size, timeoutMs),
    release: () => throttle.remove(),
    async verify() {
      const got = readFileSync(out, 'utf8').split(' ')[0];
      return got === expected ? '' : `sha256sum printed ${got}, expected ${expected}`;
    },
  };
}

/**
 * `pacer FILE | gzip -c > out.gz` in one shell: two processes joined by a pipe with data in
 * flight, the pacer slow enough (chunk bytes every delay µs) to be caught mid-way.
 */
export async function gzipPipeJob(size = 64 << 20, chunk = 256 << 10, delayUs = 2000): Promise<Job> {
  const workDir = mkdtempSync(join(tmpdir(), 'handoff-gzip-'));
  const input = join(workDir, 'input.bin');
  const expected = makeDataFile(input, size);
  const out = join(workDir, 'out.gz');
  const cmd = `"${join(TARGETS_BUILD, 'pacer')}" "${input}" ${chunk} ${delayUs} | gzip -c > "${out}"`;
  const running = await startTarget('gzip-pipe', { workDir, noReady: true, command: ['/bin/sh', '-c', cmd] });
  return {
    name: 'gzip-pipe',
    running,
    input,
    size,
    midway: (timeoutMs) => waitMidway(running, input, size, timeoutMs),
    async verify() {
      const gunzip = createGunzip();
      const digest = sha256Of(gunzip);
      await pipeline(createReadStream(out), gunzip).catch((e: Error) => gunzip.destroy(e));
      const got = await digest.catch((e: Error) => `unreadable (${e.message})`);
      return got === expected ? '' : `gunzip of the output has SHA-256 ${got}, expected ${expected}`;
    },
  };
}

async function waitMidway(running: Running, input: string, size: number, timeoutMs = 60_000): Promise<number> {
  const deadline = Date.now() + timeoutMs;
  for (;;) {
    const pos = readPosition(running.pids(), input);
    if (pos !== undefined && pos > 0 && pos < size) return pos;
    if (pos !== undefined && pos >= size) throw new Error(`${running.name} read all of its input before the dump`);
    if (Date.now() > deadline) throw new Error(`${running.name}: not reading ${input} after ${timeoutMs} ms; log:\n${running.log()}`);
    await new Promise((r) => setTimeout(r, 5));
  }
}

export interface JobResult {
  /** Where the input was read up to when the dump started. */
  positionAtDump: number;
  exitCode: number;
  /** '' when the output is right. */
  problem: string;
  dumps: CliRun[];
  restores: CliRun[];
}

/** Waits until the job is mid-way, dumps, kills, restores (rounds times), waits for it to finish, verifies. */
export async function roundTripJob(job: Job, opts: { rounds?: number; timeoutMs?: number } = {}): Promise<JobResult> {
  let running = job.running;
  const positionAtDump = await job.midway();
  const dumps: CliRun[] = [];
  const restores: CliRun[] = [];
  try {
    for (let round = 1; round <= (opts.rounds ?? 1); round++) {
      const image = join(running.workDir, `image-${round}.himg`);
      dumps.push(await dumpTarget(running.pid, image));
      await running.kill();
      const r = await restoreImage(job.name, running.pid, image, running.workDir, { tag: `restore-${round}` });
      restores.push(r.restore);
      running = r.running;
    }
    const exitCode = await running.exitCode(opts.timeoutMs ?? 300_000);
    await running.reap();
    return { positionAtDump, exitCode, problem: await job.verify(), dumps, restores };
  } catch (err) {
    await running.kill().catch(() => {});
    throw err;
  }
}
