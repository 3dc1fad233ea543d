// QEMU runner for the VM tests: boots a Debian cloud kernel with the project's initramfs
// under TCG, feeds it a shell script through fw_cfg and follows the serial console.
//
// The guest's /init (vm-images/guest/init) prints lines "@@handoff NAME key=value ...";
// each becomes a Marker. It runs the script, then powers off; QEMU then exits.
// The guest is isolated (user networking with restrict=on): its only way out is the
// host forwards, which listen on 127.0.0.1 only.
import { execa, type ResultPromise } from 'execa';
import { existsSync, mkdtempSync, readFileSync, rmSync, writeFileSync } from 'node:fs';
import { createServer } from 'node:net';
import { tmpdir } from 'node:os';
import { dirname, join, resolve } from 'node:path';
import { fileURLToPath } from 'node:url';

/** vm-images/ of the source tree, also when this file runs compiled from dist/vm-images/. */
function findImagesDir(): string {
  let dir = dirname(fileURLToPath(import.meta.url));
  for (let i = 0; i < 4; i++) {
    if (existsSync(join(dir, 'vm-images', 'build-initramfs.sh'))) return join(dir, 'vm-images');
    if (existsSync(join(dir, 'build-initramfs.sh'))) return dir;
    dir = dirname(dir);
  }
  throw new Error('vm-images directory not found');
}

export const IMAGES_DIR = findImagesDir();
export const CACHE_DIR = join(IMAGES_DIR, 'cache');
/** The kernel series of the test matrix (directories under cache/kernels). */
export const SERIES = ['5.10', '6.1', '6.12', '7'] as const;
export type Series = (typeof SERIES)[number];

export interface Marker {
  name: string;
  /** key=value tokens after the name. */
  fields: Record<string, string>;
  /** Everything after the name. */
  text: string;
  /** Milliseconds since QEMU was started, measured on the host. */
  atMs: number;
}

export interface HostForward {
  /** Port inside the guest (10.0.2.15). */
  guestPort: number;
  /** Port on the host's 127.0.0.1; 0 or absent picks a free one. */
  hostPort?: number;
}

export interface GuestOptions {
  /** A series from cache/kernels ('6.1') or a path to a bzImage. */
  kernel: Series | string;
  /** Shell script the guest's init runs (sh, cwd /tmp, HANDOFF_BOOT=1 on the first boot, 2 after one kexec...). */
  script: string;
  initrd?: string;
  /** Read-only boot media disk (/dev/vda); null for none. */
  media?: string | null;
  /** Extra kernel command line arguments (kept across handoff-kexec). */
  append?: string;
  memoryMiB?: number;
  cpus?: number;
  /**
   * QEMU -cpu model. Default max without 5-level paging: a guest kernel >= 6.12 that runs
   * with LA57 on cannot kexec into 5.10 (5.10 dies before its first printk; 6.1 -> 5.10
   * works). Most servers run 4-level paging; pass 'max' to test LA57 explicitly.
   */
  cpu?: string;
  hostForwards?: HostForward[];
  /**
   * A writable ext4 disk of this size (serial handoff-scratch), mounted by the guest's init at
   * /var/lib/handoff on every boot: what is written there survives the kexec.
   */
  scratchMiB?: number;
  /**
   * A raw disk image attached as the first virtio disk (/dev/vda, writable; QEMU keeps the
   * writes in a temporary overlay, snapshot=on, so the file itself never changes). With
   * `media: null` and `append: 'root=/dev/vda'` it is the root file system (the systemd guest).
   */
  rootDisk?: string;
  /** QEMU is killed after this long; default 5 minutes. */
  timeoutMs?: number;
  /** Called for every marker as it arrives. */
  onMarker?: (marker: Marker) => void;
  /** Called for every console line (for live debugging). */
  onLine?: (line: string) => void;
}

export interface GuestResult {
  log: string;
  markers: Marker[];
  exitCode: number | undefined;
  signal: string | undefined;
  timedOut: boolean;
  durationMs: number;
}

export interface RunningGuest {
  /** Host ports in the order of options.hostForwards. */
  forwards: Array<{ hostPort: number; guestPort: number }>;
  markers: Marker[];
  /** Resolves with the first marker (already seen or future) that matches; rejects if QEMU exits first or on timeout. */
  waitForMarker(name: string, match?: (m: Marker) => boolean, timeoutMs?: number): Promise<Marker>;
  /** Console output so far. */
  log(): string;
  kill(): void;
  done: Promise<GuestResult>;
}

const DEFAULT_TIMEOUT_MS = 5 * 60_000;
const MARKER = '@@handoff ';

/**
 * Fetches missing kernels and rebuilds the initramfs when its inputs changed (quick when
 * everything is cached). Call before the first guest; needs the project built (dist/).
 */
export async function prepareImages(options: { systemd?: boolean } = {}): Promise<void> {
  // Output to stderr only: stdout of a test file is its TAP stream. A failure throws with all output.
  const args = [join(IMAGES_DIR, 'prepare.sh'), ...(options.systemd ? ['--systemd'] : [])];
  const result = await execa('bash', args, { stdin: 'ignore', all: true });
  if (result.all) process.stderr.write(result.all + '\n');
}

export function kernelPath(kernel: Series | string): string {
  const cached = join(CACHE_DIR, 'kernels', kernel, 'vmlinuz');
  if (existsSync(cached)) return cached;
  if (existsSync(kernel)) return resolve(kernel);
  throw new Error(`kernel ${kernel} not found: run vm-images/fetch-kernels.sh`);
}

/** `uname -r` of a cached series. */
export function kernelRelease(series: Series): string {
  return readFileSync(join(CACHE_DIR, 'kernels', series, 'release'), 'utf8').trim();
}

export function parseMarker(line: string, atMs: number): Marker | undefined {
  const at = line.indexOf(MARKER);
  if (at < 0) return undefined;
  const rest = line.slice(at + MARKER.length).trim();
  const space = rest.indexOf(' ');
  const name = space < 0 ? rest : rest.slice(0, space);
  const text = space < 0 ? '' : rest.slice(space + 1);
  const fields: Record<string, string> = {};
  for (const token of text.split(/\s+/)) {
    const eq = token.indexOf('=');
    if (eq > 0) fields[token.slice(0, eq)] = token.slice(eq + 1);
  }
  return { name, fields, text, atMs };
}

/**
 * Under TCG the guest's TSC is the host's, but the guest's calibration against the
 * emulated PIT often fails when the host is busy (we saw 887 MHz for 2596): the clocksource
 * watchdog then marks the TSC unstable and the guest falls back to the HPET, whose every
 * read is an emulated MMIO access - boots became twice as slow. So: tell the guest the
 * host's TSC frequency and skip the watchdog.
 */
function tscArguments(): string[] {
  try {
    const cpuinfo = readFileSync('/proc/cpuinfo', 'utf8');
    if (!/^flags\s*:.*\bconstant_tsc\b/m.test(cpuinfo)) return [];
    const mhz = Number(/^cpu MHz\s*:\s*([\d.]+)/m.exec(cpuinfo)?.[1]);
    return mhz > 0 ? [`tsc_early_khz=${Math.round(mhz * 1000)}`, 'tsc=reliable'] : [];
  } catch {
    return [];
  }
}

async function freePort(): Promise<number> {
  const server = createServer();
  await new Promise<void>((ok, fail) => {
    server.once('error', fail);
    server.listen(0, '127.0.0.1', ok);
  });
  const address = server.address();
  await new Promise((ok) => server.close(ok));
  if (address === null || typeof address === 'string') throw new Error('no port');
  return address.port;
}

export async function startGuest(options: GuestOptions): Promise<RunningGuest> {
  const initrd = options.initrd ?? join(CACHE_DIR, 'images', 'initrd.img');
  const media = options.media === undefined ? join(CACHE_DIR, 'images', 'media.img') : options.media;
  if (!existsSync(initrd)) throw new Error(`${initrd} missing: run vm-images/build-initramfs.sh`);
  const forwards = [];
  for (const f of options.hostForwards ?? []) {
    forwards.push({ hostPort: f.hostPort || (await freePort()), guestPort: f.guestPort });
  }
  const workDir = mkdtempSync(join(tmpdir(), 'handoff-vm-'));
  const scriptPath = join(workDir, 'script.sh');
  writeFileSync(scriptPath, options.script);

  // quiet: kernel messages would interleave with marker lines on the one serial port.
  // panic=-1 + -no-reboot: a guest panic ends QEMU at once instead of hanging until the timeout.
  const append = ['console=ttyS0', 'panic=-1', 'quiet', ...tscArguments(), options.append ?? ''].join(' ').trim();
  const netdev = ['user', 'id=n0', 'restrict=on', ...forwards.map((f) => `hostfwd=tcp:127.0.0.1:${f.hostPort}-10.0.2.15:${f.guestPort}`)].join(',');
  const args = [
    '-accel', 'tcg', '-cpu', options.cpu ?? 'max,la57=off', '-smp', String(options.cpus ?? 1), '-m', String(options.memoryMiB ?? 1024),
    '-nodefaults', '-no-user-config', '-display', 'none', '-serial', 'stdio', '-no-reboot',
    '-kernel', kernelPath(options.kernel), '-initrd', initrd, '-append', append,
    '-netdev', netdev, '-device', 'virtio-net-pci,netdev=n0',
    // Early boot on 5.10 blocks getrandom() until the pool is seeded: give it a source.
    '-device', 'virtio-rng-pci',
    '-fw_cfg', `name=opt/handoff/script,file=${scriptPath}`,
  ];
  // Explicit devices, in this order: the media disk must stay /dev/vda (handoff-media reads it).
  if (options.rootDisk) args.push('-drive', `file=${options.rootDisk},if=none,id=root,format=raw,snapshot=on`, '-device', 'virtio-blk-pci,drive=root,serial=handoff-root');
  if (media) args.push('-drive', `file=${media},if=none,id=media,format=raw,readonly=on`, '-device', 'virtio-blk-pci,drive=media,serial=handoff-media');
  if (options.scratchMiB) {
    const scratch = join(workDir, 'scratch.img');
    // Features every kernel of the matrix mounts (5.10 knows neither orphan_file nor metadata_csum_seed).
    await execa('mke2fs', ['-q', '-F', '-t', 'ext4', '-O', '^orphan_file,^metadata_csum_seed', '-L', 'handoff-scratch', scratch, `${options.scratchMiB}M`]);
    args.push('-drive', `file=${scratch},if=none,id=scratch,format=raw`, '-device', 'virtio-blk-pci,drive=scratch,serial=handoff-scratch');
  }

  const started = performance.now();
  // setpriv --pdeathsig: QEMU gets SIGKILL when this process dies in any way (a tap timeout
  // kills test files with SIGTERM, and no 'exit' handler runs then).
  const qemu: ResultPromise = execa('setpriv', ['--pdeathsig', 'KILL', '--', 'qemu-system-x86_64', ...args], {
    reject: false,
    buffer: false,
    stdin: 'ignore',
    stderr: 'pipe',
    stdout: 'pipe',
  });
  const chunks: string[] = [];
  const markers: Marker[] = [];
  const waiters = new Set<{ name: string; match: (m: Marker) => boolean; resolve: (m: Marker) => void; reject: (e: Error) => void }>();
  let partial = '';
  let exited = false;

  const onLine = (line: string) => {
    options.onLine?.(line);
    const marker = parseMarker(line.replace(/\r$/, ''), performance.now() - started);
    if (!marker) return;
    markers.push(marker);
    options.onMarker?.(marker);
    for (const w of waiters) {
      if (w.name === marker.name && w.match(marker)) {
        waiters.delete(w);
        w.resolve(marker);
      }
    }
  };
  const onData = (data: Buffer) => {
    const text = data.toString('utf8');
    chunks.push(text);
    partial += text;
    const lines = partial.split('\n');
    partial = lines.pop() ?? '';
    for (const line of lines) onLine(line);
  };
  qemu.stdout?.on('data', onData);
  qemu.stderr?.on('data', onData);

  let timedOut = false;
  const kill = () => {
    if (!exited) qemu.kill('SIGKILL');
  };
  const timer = setTimeout(() => {
    timedOut = true;
    kill();
  }, options.timeoutMs ?? DEFAULT_TIMEOUT_MS);
  // A test that dies mid-run must not leave a QEMU behind.
  process.once('exit', kill);

  const done = (async (): Promise<GuestResult> => {
    const result = await qemu;
    exited = true;
    clearTimeout(timer);
    process.removeListener('exit', kill);
    if (partial) onLine(partial);
    rmSync(workDir, { recursive: true, force: true });
    const reason = timedOut ? 'timed out' : `exited (${result.exitCode ?? result.signal})`;
    for (const w of waiters) w.reject(new Error(`QEMU ${reason} before marker ${w.name}\n${tail(chunks.join(''))}`));
    waiters.clear();
    return {
      log: chunks.join(''),
      markers,
      exitCode: result.exitCode,
      signal: result.signal,
      timedOut,
      durationMs: performance.now() - started,
    };
  })();

  const waitForMarker = (name: string, match: (m: Marker) => boolean = () => true, timeoutMs?: number): Promise<Marker> => {
    const seen = markers.find((m) => m.name === name && match(m));
    if (seen) return Promise.resolve(seen);
    if (exited) return Promise.reject(new Error(`QEMU exited before marker ${name}\n${tail(chunks.join(''))}`));
    return new Promise<Marker>((ok, fail) => {
      let waitTimer: NodeJS.Timeout | undefined;
      const waiter = {
        name,
        match,
        resolve: (m: Marker) => {
          clearTimeout(waitTimer);
          ok(m);
        },
        reject: (e: Error) => {
          clearTimeout(waitTimer);
          fail(e);
        },
      };
      waiters.add(waiter);
      if (timeoutMs !== undefined) {
        waitTimer = setTimeout(() => {
          waiters.delete(waiter);
          fail(new Error(`marker ${name} not seen within ${timeoutMs} ms\n${tail(chunks.join(''))}`));
        }, timeoutMs);
      }
    });
  };

  return { forwards, markers, waitForMarker, log: () => chunks.join(''), kill, done };
}

/** Boots a guest, runs its script to the end (power-off), and returns everything it printed. */
export async function runGuest(options: GuestOptions): Promise<GuestResult> {
  const guest = await startGuest(options);
  try {
    return await guest.done;
  } finally {
    guest.kill();
  }
}

function tail(log: string, lines = 40): string {
  return log.split('\n').slice(-lines).join('\n');
}
