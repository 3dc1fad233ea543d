// What this kernel (and our privileges) allow, probed once per process and cached.
// Probes really use each feature (native/src/probe.c forks throw-away children for the
// ones that need a process) instead of trusting the version number: distribution kernels
// backport, disable (CONFIG_*), or forbid (sysctls, lockdown, missing capabilities).
import { existsSync, readFileSync, readdirSync, readlinkSync } from 'node:fs';
import { machine, release as osRelease } from 'node:os';
import { execaSync } from 'execa';
import { errnoName } from '../errors.js';
import { logger } from '../log.js';
import * as probe from '../native/probe.js';
import { parseMaps, readStatus } from './proc.js';
import { atLeast, parseRelease, type KernelVersion } from './release.js';

const log = logger('kernel');

/** Which operation cannot work without a feature. */
export type Need = 'dump' | 'restore' | 'prepare';

export interface Feature {
  /** Stable identifier (CLI output, image headers). */
  name: string;
  available: boolean;
  /** What was found, and on failure why (errno name, sysctl value...). */
  detail: string;
  /** First mainline kernel with the feature. */
  minKernel: string;
  neededFor: Need[];
}

export interface SpecialMapping {
  name: string;
  size: number;
}

export interface KernelFacts {
  release: string;
  version: KernelVersion;
  /** uname -m, e.g. "x86_64" */
  arch: string;
  pageSize: number;
  root: boolean;
  /** Effective capability names (CAP_SYS_ADMIN...). */
  capabilities: string[];
  /** Bracketed mappings of this process, in address order ([vvar], [vvar_vclock], [vdso], [vsyscall]...). */
  specialMappings: SpecialMapping[];
  features: Feature[];
}

/** Minimum kernel of format v1. */
export const MIN_KERNEL = '5.10';

const CAP_NAMES = [
  'CAP_CHOWN', 'CAP_DAC_OVERRIDE', 'CAP_DAC_READ_SEARCH', 'CAP_FOWNER', 'CAP_FSETID', 'CAP_KILL', 'CAP_SETGID', 'CAP_SETUID',
  'CAP_SETPCAP', 'CAP_LINUX_IMMUTABLE', 'CAP_NET_BIND_SERVICE', 'CAP_NET_BROADCAST', 'CAP_NET_ADMIN', 'CAP_NET_RAW', 'CAP_IPC_LOCK',
  'CAP_IPC_OWNER', 'CAP_SYS_MODULE', 'CAP_SYS_RAWIO', 'CAP_SYS_CHROOT', 'CAP_SYS_PTRACE', 'CAP_SYS_PACCT', 'CAP_SYS_ADMIN',
  'CAP_SYS_BOOT', 'CAP_SYS_NICE', 'CAP_SYS_RESOURCE', 'CAP_SYS_TIME', 'CAP_SYS_TTY_CONFIG', 'CAP_MKNOD', 'CAP_LEASE',
  'CAP_AUDIT_WRITE', 'CAP_AUDIT_CONTROL', 'CAP_SETFCAP', 'CAP_MAC_OVERRIDE', 'CAP_MAC_ADMIN', 'CAP_SYSLOG', 'CAP_WAKE_ALARM',
  'CAP_BLOCK_SUSPEND', 'CAP_AUDIT_READ', 'CAP_PERFMON', 'CAP_BPF', 'CAP_CHECKPOINT_RESTORE',
] as const;

export function capabilityNames(mask: bigint): string[] {
  const out: string[] = [];
  for (let bit = 0; bit < 64; bit++) if ((mask >> BigInt(bit)) & 1n) out.push(CAP_NAMES[bit] ?? `CAP_${bit}`);
  return out;
}

const ERRNO = { EPERM: 1, ENOENT: 2, EBADF: 9, EEXIST: 17, EINVAL: 22, ENOSYS: 38 } as const;

function errText(r: number): string {
  return `${errnoName(-r)}`;
}

function readOr(path: string, fallback: string | undefined): string | undefined {
  try {
    return readFileSync(path, 'utf8').trim();
  } catch {
    return fallback;
  }
}

let cached: KernelFacts | undefined;

/** Probes once; later calls return the same object. */
export function probeKernel(): KernelFacts {
  cached ??= runProbes();
  return cached;
}

/** The named feature, or undefined for an unknown name. */
export function feature(facts: KernelFacts, name: string): Feature | undefined {
  return facts.features.find((f) => f.name === name);
}

/** Features needed for `need` that this kernel lacks. */
export function missingFor(facts: KernelFacts, need: Need): Feature[] {
  return facts.features.filter((f) => f.neededFor.includes(need) && !f.available);
}

function runProbes(): KernelFacts {
  const started = performance.now();
  const release = osRelease();
  const version = parseRelease(release);
  const status = readStatus(process.pid);
  const capabilities = capabilityNames(status.capEff);
  const hasCap = (name: string) => capabilities.includes(name);
  const root = process.getuid?.() === 0;
  const specialMappings = parseMaps(readFileSync('/proc/self/maps', 'latin1'))
    .filter((m) => m.special !== undefined && !m.special.startsWith('[anon') && m.special !== '[heap]' && !m.special.startsWith('[stack'))
    .map((m) => ({ name: m.special!, size: m.end - m.start }));

  const features: Feature[] = [];
  const add = (name: string, available: boolean, detail: string, minKernel: string, neededFor: Need[]) => {
    features.push({ name, available, detail, minKernel, neededFor });
  };
  const errnoFeature = (name: string, r: number, okDetail: string, minKernel: string, neededFor: Need[]) => {
    add(name, r >= 0, r >= 0 ? okDetail : errText(r), minKernel, neededFor);
  };

  add('kernel-version', atLeast(version, MIN_KERNEL), `${release} (format v1 needs ${MIN_KERNEL}+)`, MIN_KERNEL, ['dump', 'restore', 'prepare']);
  add('root', root, root ? `uid 0; missing: ${CAP_NAMES.filter((c) => !hasCap(c)).join(', ') || 'none'}` : `uid ${process.getuid?.()}`, '2.0', ['dump', 'restore', 'prepare']);

  errnoFeature('ptrace-seize', probe.probePtraceSeize(), 'PTRACE_SEIZE + PTRACE_INTERRUPT stopped a child', '3.4', ['dump', 'restore']);
  {
    const r = probe.probePtraceRseq();
    add('ptrace-rseq-config', r >= 0, r >= 0 ? `PTRACE_GET_RSEQ_CONFIGURATION: rseq area ${r} bytes` : `${errText(r)} (threads with rseq registered cannot be dumped exactly)`, '5.13', []);
  }
  errnoFeature('pidfd-open', probe.probePidfdOpen(), 'pidfd_open works', '5.3', ['dump', 'restore']);
  errnoFeature('pidfd-getfd', probe.probePidfdGetfd(), "took a child's pipe descriptor", '5.6', ['dump', 'restore']);
  errnoFeature('kcmp', probe.probeKcmp(), 'kcmp(KCMP_VM) works', '3.5', ['dump']);
  errnoFeature('process-vm-readv', probe.probeProcessVmReadv(), "read a child's memory", '3.2', ['dump']);
  add('map-files', ...probeMapFiles(), '3.3', ['dump']);
  add('proc-timers', existsSync('/proc/self/timers'), existsSync('/proc/self/timers') ? '/proc/PID/timers lists POSIX timers' : 'no /proc/PID/timers (CONFIG_CHECKPOINT_RESTORE off): POSIX timers cannot be dumped', '3.10', []);
  {
    const r = probe.probePagemapScan();
    add('pagemap-scan', r >= 0, r >= 0 ? 'PAGEMAP_SCAN ioctl: sparse areas scanned by range' : `${errText(r)} (pages found by reading every pagemap entry: slower on sparse areas)`, '6.7', []);
  }
  add('clone3-set-tid', ...probeSetTid(), '5.5', ['restore']);
  {
    const r = probe.probePrctlMmMap();
    add('prctl-mm-map', r >= 0, r >= 0 ? `PR_SET_MM_MAP (struct prctl_mm_map ${r} bytes)` : `${errText(r)} (CONFIG_CHECKPOINT_RESTORE missing?)`, '3.18', ['restore']);
  }
  errnoFeature('time-namespace', probe.probeTimens(), 'unshare(CLONE_NEWTIME) and clock offsets set', '5.6', ['restore']);
  errnoFeature('tcp-repair', probe.probeTcpRepair(0), 'loopback socket entered and left repair mode', '3.5', ['dump', 'restore']);
  errnoFeature('tcp-repair-window', probe.probeTcpRepair(1), 'TCP_REPAIR_WINDOW read and written back', '4.8', ['dump', 'restore']);
  add('nft', ...probeNft(), '3.13', ['dump', 'restore', 'prepare']);
  add('cgroup2', ...probeCgroup2(version), '4.5', []);
  add('kexec-load', ...probeKexec('load'), '2.6.19', []);
  add('kexec-file-load', ...probeKexec('file'), '3.17', []);
  {
    // prepare needs one of the two kexec calls.
    const load = feature({ features } as KernelFacts, 'kexec-load')!;
    const file = feature({ features } as KernelFacts, 'kexec-file-load')!;
    const any = load.available || file.available;
    add('kexec', any, any ? [load.available && 'kexec_load', file.available && 'kexec_file_load'].filter(Boolean).join(' and ') + ' allowed' : `kexec_load: ${load.detail}; kexec_file_load: ${file.detail}`, '2.6.19', ['prepare']);
  }
  {
    const names = specialMappings.map((m) => `${m.name} ${m.size / 1024} KiB`);
    const hasVdso = specialMappings.some((m) => m.name === '[vdso]');
    add('vdso-layout', hasVdso, names.join(', ') || 'no special mappings', '2.6.18', []);
  }

  log.debug('kernel probed', { ms: Math.round((performance.now() - started) * 10) / 10 });
  return { release, version, arch: machine(), pageSize: probe.pageSize(), root, capabilities, specialMappings, features };
}

function probeMapFiles(): [boolean, string] {
  try {
    const entries = readdirSync('/proc/self/map_files');
    if (entries.length === 0) return [false, 'empty /proc/self/map_files'];
    const target = readlinkSync(`/proc/self/map_files/${entries[0]}`);
    return [true, `/proc/PID/map_files readable (${entries[0]} -> ${target})`];
  } catch (err) {
    return [false, `/proc/self/map_files: ${(err as NodeJS.ErrnoException).code ?? String(err)}`];
  }
}

/** A child created with a chosen free pid. Pids are picked high in the range to stay clear
 *  of the allocator's cursor; a pid taken in between is EEXIST and we try another. */
function probeSetTid(): [boolean, string] {
  const pidMax = Number(readOr('/proc/sys/kernel/pid_max', '32768'));
  let last = 0;
  for (let attempt = 0; attempt < 8; attempt++) {
    const want = pidMax - 1 - Math.floor(Math.random() * Math.min(4096, pidMax / 4));
    if (existsSync(`/proc/${want}`)) continue;
    const got = probe.probeClone3SetTid(want);
    if (got === want) return [true, `clone3 created a child with pid ${want}`];
    last = got;
    if (got !== -ERRNO.EEXIST) break;
  }
  if (last >= 0) return [false, `clone3 gave pid ${last}, not the one asked for`];
  return [false, `${errText(last)}${last === -ERRNO.EPERM ? ' (needs CAP_SYS_ADMIN or CAP_CHECKPOINT_RESTORE)' : ''}`];
}

function probeNft(): [boolean, string] {
  let version: string;
  try {
    version = execaSync('nft', ['--version']).stdout.trim();
  } catch {
    return [false, 'nft not installed (Debian: nftables)'];
  }
  try {
    // -c: the kernel validates the batch without committing it.
    execaSync('nft', ['-c', 'add', 'table', 'inet', 'handoff_probe']);
    return [true, `${version}; nf_tables accepts rules`];
  } catch (err) {
    const stderr = (err as { stderr?: string }).stderr?.trim().split('\n')[0] ?? String(err);
    return [false, `${version}; ${stderr}`];
  }
}

function probeCgroup2(version: KernelVersion): [boolean, string] {
  const mounts = readFileSync('/proc/self/mountinfo', 'utf8').split('\n');
  for (const line of mounts) {
    const sep = line.indexOf(' - ');
    if (sep < 0 || !line.startsWith('cgroup2 ', sep + 3)) continue;
    const mountPoint = line.split(' ')[4]!;
    const unified = mountPoint === '/sys/fs/cgroup';
    // cgroup.freeze only shows in non-root groups; the v2 freezer is not a config option.
    return [true, `mounted at ${mountPoint}${unified ? '' : ' (hybrid: v1 controllers too)'}; freezer ${atLeast(version, '5.2') ? 'yes' : 'no (5.2+)'}`];
  }
  return [false, 'no cgroup2 mount'];
}

/** Calls the syscall with arguments it must reject after its permission checks, so the
 *  errno says "allowed" (EINVAL/EBADF), "refused" (EPERM) or "absent" (ENOSYS). Never
 *  loads or unloads anything. */
function probeKexec(kind: 'load' | 'file'): [boolean, string] {
  const disabled = readOr('/proc/sys/kernel/kexec_load_disabled', undefined);
  if (disabled === '1') return [false, 'kernel.kexec_load_disabled = 1 (until reboot)'];
  // Since 6.6 every permitted call, even a failing one, consumes one unit of a finite limit.
  const limit = readOr('/proc/sys/kernel/kexec_load_limit_reboot', undefined);
  if (limit !== undefined && limit !== '-1') {
    if (limit === '0') return [false, 'kernel.kexec_load_limit_reboot = 0'];
    return [true, `not called: kernel.kexec_load_limit_reboot = ${limit} would be consumed`];
  }
  const r = kind === 'load' ? probe.probeKexecLoad() : probe.probeKexecFileLoad();
  const allowed = kind === 'load' ? -ERRNO.EINVAL : -ERRNO.EBADF;
  if (r === allowed) return [true, `${kind === 'load' ? 'kexec_load' : 'kexec_file_load'} allowed`];
  if (r === -ERRNO.ENOSYS) return [false, 'ENOSYS (not built in)'];
  if (r === -ERRNO.EPERM) return [false, 'EPERM (needs CAP_SYS_BOOT; or lockdown/signature policy)'];
  return [false, `unexpected ${errText(r)}`];
}
