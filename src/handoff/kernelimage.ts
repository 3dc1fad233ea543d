// What we can learn about a kernel before booting it: its release string (from the x86 boot
// protocol header of the bzImage, else the file name) and its build configuration
// (/boot/config-RELEASE or a config file next to the image), to check it against what the
// image and the restore need.
import { closeSync, existsSync, openSync, readFileSync, readSync, statSync } from 'node:fs';
import { basename, dirname, join } from 'node:path';
import { atLeast, parseRelease } from '../kernel/release.js';

export interface KernelImageInfo {
  path: string;
  /** `uname -r` the kernel will report, when found. */
  release?: string;
  /** Where the release came from. */
  source: 'bzimage-header' | 'file-name' | 'unknown';
  /** The file is shorter than its bzImage header says (a truncated copy). */
  truncated?: { size: number; expected: number };
  /** The whole version banner from the header ("6.12.1-amd64 (builder@...) #1 SMP ..."). */
  banner?: string;
}

/**
 * Boot protocol (Documentation/arch/x86/boot.rst): "HdrS" at 0x202; the u16 at 0x20E is
 * `kernel_version`, a pointer to a NUL-terminated banner, relative to 0x200.
 */
export function bzImageBanner(bytes: Buffer): string | undefined {
  if (bytes.length < 0x210 || bytes.toString('latin1', 0x202, 0x206) !== 'HdrS') return undefined;
  const pointer = bytes.readUInt16LE(0x20e);
  if (pointer === 0) return undefined;
  const start = pointer + 0x200;
  if (start >= bytes.length) return undefined;
  const end = bytes.indexOf(0, start);
  const banner = bytes.toString('latin1', start, end < 0 ? Math.min(bytes.length, start + 256) : end).trim();
  return banner || undefined;
}

function releaseOk(release: string | undefined): release is string {
  if (!release) return false;
  try {
    parseRelease(release);
    return true;
  } catch {
    return false;
  }
}

/**
 * Bytes a bzImage must have according to its header: (setup_sects + 1) sectors of setup
 * (setup_sects 0 means 4) plus syssize 16-byte paragraphs of protected-mode code.
 */
export function bzImageExpectedSize(bytes: Buffer): number | undefined {
  if (bytes.length < 0x210 || bytes.toString('latin1', 0x202, 0x206) !== 'HdrS') return undefined;
  const setupSects = bytes[0x1f1] || 4;
  return (setupSects + 1) * 512 + bytes.readUInt32LE(0x1f4) * 16;
}

export function inspectKernelImage(path: string): KernelImageInfo {
  const head = Buffer.alloc(64 * 1024);
  let got = 0;
  const fd = openSync(path, 'r');
  try {
    got = readSync(fd, head, 0, head.length, 0);
  } finally {
    closeSync(fd);
  }
  const banner = bzImageBanner(head.subarray(0, got));
  const fromHeader = banner?.split(/\s+/)[0];
  const expected = bzImageExpectedSize(head.subarray(0, got));
  const size = statSync(path).size;
  const truncated = expected !== undefined && size < expected ? { size, expected } : undefined;
  if (releaseOk(fromHeader)) return { path, release: fromHeader, source: 'bzimage-header', banner, truncated };
  const m = /^(?:vmlinuz|vmlinux|bzImage)-(.+)$/.exec(basename(path));
  if (releaseOk(m?.[1])) return { path, release: m[1], source: 'file-name', banner };
  return { path, source: 'unknown', banner };
}

/** /boot/config-RELEASE, or config-RELEASE / config next to the kernel image. */
export function findKernelConfig(kernelPath: string, release: string | undefined): string | undefined {
  const candidates = [
    ...(release ? [`/boot/config-${release}`, join(dirname(kernelPath), `config-${release}`), `/lib/modules/${release}/config`] : []),
    join(dirname(kernelPath), 'config'),
  ];
  return candidates.find((p) => existsSync(p));
}

export function parseKernelConfig(text: string): Map<string, string> {
  const out = new Map<string, string>();
  for (const line of text.split('\n')) {
    const m = /^(CONFIG_[A-Za-z0-9_]+)=(.*)$/.exec(line);
    if (m) out.set(m[1]!, m[2]!);
    const off = /^# (CONFIG_[A-Za-z0-9_]+) is not set$/.exec(line);
    if (off) out.set(off[1]!, 'n');
  }
  return out;
}

/** Options the new kernel must have for resume, why, and whether a module (=m) is enough. */
export const REQUIRED_CONFIG: { name: string; why: string; module: boolean; minKernel?: string }[] = [
  { name: 'CONFIG_CHECKPOINT_RESTORE', why: 'clone3 set_tid, prctl(PR_SET_MM_MAP), /proc/PID/timers', module: false },
  { name: 'CONFIG_TIME_NS', why: 'time namespaces keep CLOCK_MONOTONIC/BOOTTIME continuous for restored processes', module: false },
  { name: 'CONFIG_NF_TABLES', why: 'the network lock (nftables) across the reboot', module: true },
  { name: 'CONFIG_NF_TABLES_INET', why: 'the network lock uses an inet table', module: false },
  { name: 'CONFIG_INET', why: 'TCP sockets', module: false },
];

export interface ConfigProblem {
  option: string;
  value: string;
  why: string;
}

export function checkKernelConfig(config: Map<string, string>, pmem: boolean): ConfigProblem[] {
  const need = [...REQUIRED_CONFIG];
  if (pmem) need.push({ name: 'CONFIG_X86_PMEM_LEGACY', why: 'the image is kept in memmap= pmem (/dev/pmem0)', module: true });
  const problems: ConfigProblem[] = [];
  for (const n of need) {
    const value = config.get(n.name) ?? 'n';
    if (value === 'y' || (n.module && value === 'm')) continue;
    problems.push({ option: n.name, value, why: n.why });
  }
  return problems;
}

/** The kernel meets a minimum (format minimum or an image feature). */
export function releaseAtLeast(release: string, minimum: string): boolean {
  return atLeast(release, minimum);
}

export function readConfig(path: string): Map<string, string> {
  return parseKernelConfig(readFileSync(path, 'utf8'));
}
