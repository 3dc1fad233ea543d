// Staging and executing the next kernel with kexec-tools. kexec_file_load (`kexec -s`) first:
// the kernel verifies the image itself and it is the only way under lockdown/secure boot;
// the classic kexec_load (`kexec -l`) when the file variant is refused (old kexec-tools,
// kernels built without KEXEC_FILE).
import { execa } from 'execa';
import { existsSync, readFileSync } from 'node:fs';
import { KernelError } from '../errors.js';
import { logger } from '../log.js';
import { feature, probeKernel } from '../kernel/features.js';

const log = logger('kexec');

export interface StageOptions {
  kernel: string;
  initrd?: string;
  commandLine: string;
}

export interface Staged {
  method: 'kexec_file_load' | 'kexec_load';
  commandLine: string;
}

async function run(args: string[]): Promise<{ ok: boolean; output: string }> {
  try {
    const r = await execa('kexec', args, { reject: false, all: true, stdin: 'ignore' });
    return { ok: r.exitCode === 0, output: String(r.all ?? '').trim() };
  } catch (err) {
    return { ok: false, output: `cannot run kexec (install kexec-tools): ${(err as Error).message}` };
  }
}

function fileLoadAvailable(): boolean {
  const facts = probeKernel();
  return feature(facts, 'kexec-file-load')?.available === true;
}

export function kexecLoaded(): boolean {
  try {
    return readFileSync('/sys/kernel/kexec_loaded', 'utf8').trim() === '1';
  } catch {
    return false;
  }
}

export async function stageKernel(options: StageOptions): Promise<Staged> {
  if (!existsSync(options.kernel)) throw new KernelError('E_KEXEC', `kernel ${options.kernel} not found`, { path: options.kernel });
  if (options.initrd && !existsSync(options.initrd)) throw new KernelError('E_KEXEC', `initrd ${options.initrd} not found`, { path: options.initrd });
  const common = [options.kernel, ...(options.initrd ? [`--initrd=${options.initrd}`] : []), `--command-line=${options.commandLine}`];
  const file = await run(['-s', '-l', ...common]);
  if (file.ok && kexecLoaded()) {
    log.info('kernel staged', { method: 'kexec_file_load', kernel: options.kernel });
    return { method: 'kexec_file_load', commandLine: options.commandLine };
  }
  // kexec_file_load checks the image; kexec_load takes any bytes. Falling back when the
  // file variant exists and refused this image would jump into garbage: only fall back when
  // the syscall itself is missing or forbidden.
  if (fileLoadAvailable()) {
    throw new KernelError('E_KEXEC', `the kernel refused to load ${options.kernel} (kexec_file_load): ${file.output || 'failed'}`, { path: options.kernel });
  }
  log.warn('kexec_file_load unavailable, trying kexec_load', { output: file.output });
  const classic = await run(['-l', ...common]);
  if (classic.ok && kexecLoaded()) {
    log.info('kernel staged', { method: 'kexec_load', kernel: options.kernel });
    return { method: 'kexec_load', commandLine: options.commandLine };
  }
  throw new KernelError('E_KEXEC', `the kernel refused to load ${options.kernel}: kexec -s -l: ${file.output || 'failed'}; kexec -l: ${classic.output || 'failed'}`, { path: options.kernel });
}

/** Unloads a staged kernel (either syscall's); true when nothing is staged afterwards. */
export async function unloadKernel(): Promise<boolean> {
  if (!kexecLoaded()) return true;
  await run(['-s', '-u']);
  if (kexecLoaded()) await run(['-u']);
  const gone = !kexecLoaded();
  if (gone) log.info('staged kernel unloaded');
  else log.error('could not unload the staged kernel');
  return gone;
}

/** PID 1 is systemd: `systemctl kexec` stops services cleanly before jumping. */
export function systemdIsInit(): boolean {
  try {
    return readFileSync('/proc/1/comm', 'utf8').trim() === 'systemd' && existsSync('/run/systemd/system');
  } catch {
    return false;
  }
}

/**
 * Jumps into the staged kernel. Returns only when that failed (with the reason), like
 * `kexec -e`: once `systemctl kexec` has queued the shutdown, this waits to be killed by it.
 * Returning then would end `handoff prepare` while the shutdown is still on its way, and its
 * watchdog (`handoff abort --watch`) would take the exit for a crash before the jump: it
 * would unload the staged kernel and empty the store of processes already killed.
 */
export async function executeKernel(how: 'direct' | 'systemd'): Promise<{ ok: boolean; output: string }> {
  if (how === 'systemd') {
    const r = await execa('systemctl', ['kexec'], { reject: false, all: true, stdin: 'ignore' });
    if (r.exitCode !== 0) return { ok: false, output: String(r.all ?? '').trim() || `systemctl kexec exited ${r.exitCode}` };
    log.info('systemctl kexec queued: waiting for the shutdown');
    // (A timer keeps the event loop alive: a bare pending promise would let node exit.)
    return await new Promise(() => setInterval(() => {}, 1 << 30));
  }
  // Only returns on failure: on success this kernel is gone.
  const r = await run(['-e']);
  return { ok: false, output: r.output || 'kexec -e returned' };
}

/**
 * The next kernel's command line: the current one (or `append` alone) with our
 * handoff.resume= pointer replaced. Boot-loader-only tokens are dropped.
 */
export function nextCommandLine(options: { reuse: boolean; append?: string; resume: string; current?: string }): string {
  const current = options.current ?? readFileSync('/proc/cmdline', 'utf8');
  const base = options.reuse ? current.trim().split(/\s+/).filter((a) => a && !/^(handoff\.resume|BOOT_IMAGE|initrd)=/.test(a)) : [];
  const extra = (options.append ?? '').trim().split(/\s+/).filter((a) => a && !a.startsWith('handoff.resume='));
  return [...base, ...extra, `handoff.resume=${options.resume}`].join(' ');
}

/** The handoff.resume= value of this boot's command line. */
export function resumeArgument(cmdline = readFileSync('/proc/cmdline', 'utf8')): string | undefined {
  for (const a of cmdline.trim().split(/\s+/)) if (a.startsWith('handoff.resume=')) return a.slice('handoff.resume='.length);
  return undefined;
}
