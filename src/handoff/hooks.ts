// The resume hook: what runs `handoff resume --early` before the network comes up and
// `handoff resume` after it on the new kernel. Two flavours, generated here (so the paths
// of node and of this installation are right): systemd units, and a plain init script for
// systems without systemd (busybox init, the VM guests: their /init calls it).
// Both do nothing unless the kernel command line carries handoff.resume=.
import { existsSync, mkdirSync, readdirSync, readFileSync, rmdirSync, rmSync, writeFileSync } from 'node:fs';
import { dirname, join, resolve } from 'node:path';
import { fileURLToPath } from 'node:url';
import { execa } from 'execa';
import { logger } from '../log.js';

const log = logger('hooks');

export const EARLY_UNIT = 'handoff-resume-early.service';
export const MAIN_UNIT = 'handoff-resume.service';
export const INIT_SCRIPT = '/etc/init.d/handoff-resume';

/** bin/handoff.js of this installation (dist/src/handoff/hooks.js -> ../../../bin). */
export function handoffBin(): string {
  return resolve(dirname(fileURLToPath(import.meta.url)), '..', '..', '..', 'bin', 'handoff.js');
}

export interface HookPaths {
  /** node binary (default: the running one). */
  node?: string;
  /** bin/handoff.js (default: this installation's). */
  bin?: string;
}

function command(args: string, paths: HookPaths = {}): string {
  return `${paths.node ?? process.execPath} ${paths.bin ?? handoffBin()} ${args}`;
}

export function earlyUnit(mountPaths: string[] = []): string {
  return `# Installed by handoff prepare: re-installs the network lock of handed-off TCP
# connections before any interface is up, so the new kernel never answers the peers with RST.
[Unit]
Description=handoff: network lock for connections being resumed
DefaultDependencies=no
ConditionKernelCommandLine=handoff.resume
After=local-fs.target systemd-modules-load.service
Before=network-pre.target
Wants=network-pre.target
${mountPaths.length ? `RequiresMountsFor=${mountPaths.join(' ')}\n` : ''}
[Service]
Type=oneshot
RemainAfterExit=yes
ExecStart=${command('resume --early')}

[Install]
WantedBy=sysinit.target
`;
}

export function mainUnit(mountPaths: string[] = []): string {
  return `# Installed by handoff prepare: restores the processes handed off across kexec.
[Unit]
Description=handoff: resume processes handed off across kexec
ConditionKernelCommandLine=handoff.resume
After=${EARLY_UNIT} network.target
Wants=${EARLY_UNIT}
${mountPaths.length ? `RequiresMountsFor=${mountPaths.join(' ')}\n` : ''}
[Service]
Type=oneshot
RemainAfterExit=yes
# The restored processes stay in this unit's cgroup: stopping it must not kill them.
KillMode=process
ExecStart=${command('resume')}

[Install]
WantedBy=multi-user.target
`;
}

/** For image builders (the VM initramfs) whose node and project live elsewhere at run time. */
export function initScript(paths: HookPaths = {}): string {
  return `#!/bin/sh
### BEGIN INIT INFO
# Provides:          handoff-resume
# Required-Start:    $local_fs
# Default-Start:     S
# Short-Description: handoff: resume processes handed off across kexec
### END INIT INFO
# Installed by handoff prepare. "early" before the network is up, "start" after it.
grep -q 'handoff\\.resume=' /proc/cmdline 2>/dev/null || exit 0
case "$1" in
  early) exec ${command('resume --early', paths)} ;;
  start) exec ${command('resume', paths)} ;;
  stop|status) exit 0 ;;
  *) echo "usage: $0 early|start" >&2; exit 2 ;;
esac
`;
}

export interface InstalledHook {
  kind: 'systemd' | 'init-script';
  files: string[];
}

/** Installs the hook for this system's init; `root` for tests and image builders. */
export async function installHook(options: { mountPaths?: string[]; root?: string; kind?: 'systemd' | 'init-script' } = {}): Promise<InstalledHook> {
  const root = options.root ?? '/';
  const kind = options.kind ?? (existsSync('/run/systemd/system') ? 'systemd' : 'init-script');
  if (kind === 'systemd') {
    const dir = join(root, 'etc/systemd/system');
    mkdirSync(dir, { recursive: true });
    const files = [join(dir, EARLY_UNIT), join(dir, MAIN_UNIT)];
    writeFileSync(files[0]!, earlyUnit(options.mountPaths), { mode: 0o644 });
    writeFileSync(files[1]!, mainUnit(options.mountPaths), { mode: 0o644 });
    if (root === '/') {
      await execa('systemctl', ['daemon-reload'], { stdin: 'ignore' });
      await execa('systemctl', ['enable', EARLY_UNIT, MAIN_UNIT], { stdin: 'ignore' });
    }
    log.info('resume hook installed', { kind, files });
    return { kind, files };
  }
  const path = join(root, INIT_SCRIPT);
  mkdirSync(dirname(path), { recursive: true });
  writeFileSync(path, initScript(), { mode: 0o755 });
  log.info('resume hook installed', { kind, files: [path] });
  return { kind, files: [path] };
}

// ---------------------------------------------------------------- services held on the resume boot

/** Drop-in that keeps a handed-off service from starting by itself on the resume boot. */
export const HOLD_DROPIN = 'handoff-hold.conf';

/** The systemd services the given processes run in (cgroup v2 path ending in NAME.service). */
export function serviceUnitsOfPids(pids: number[]): string[] {
  const units = new Set<string>();
  for (const pid of pids) {
    let text = '';
    try {
      text = readFileSync(`/proc/${pid}/cgroup`, 'utf8');
    } catch {
      continue;
    }
    const path = /^0::(\S+)$/m.exec(text)?.[1] ?? '';
    const m = /^\/(?:[^/]+\.slice\/)*([^/]+\.service)$/.exec(path);
    if (m) units.add(m[1]!);
  }
  return [...units];
}

/**
 * An enabled service would be started afresh on the resume boot, before resume brings the
 * handed-off one back: the fresh copy takes its ports and pids and the restore fails. Each
 * service of the handed-off processes gets a drop-in (persistent: it must survive the kexec)
 * that skips it on a boot whose command line carries handoff.resume=; resume starts it itself
 * with its restored processes (its runtime drop-in resets the condition) and then removes the
 * drop-ins, and so does a prepare that does not jump.
 */
export async function holdUnits(units: string[], root = '/'): Promise<string[]> {
  const files: string[] = [];
  for (const unit of units) {
    if (!/^[A-Za-z0-9:_.@\\-]+\.service$/.test(unit)) continue;
    const dir = join(root, 'etc/systemd/system', `${unit}.d`);
    mkdirSync(dir, { recursive: true });
    const file = join(dir, HOLD_DROPIN);
    writeFileSync(file, `# Written by handoff prepare: this service's processes are being handed off across a kexec;
# on the resume boot, handoff resume starts it with them, so it must not start by itself there.
# Removed by handoff resume and by handoff abort.
[Unit]
ConditionKernelCommandLine=!handoff.resume
`, { mode: 0o644 });
    files.push(file);
  }
  if (files.length && root === '/') await execa('systemctl', ['daemon-reload'], { stdin: 'ignore', reject: false });
  if (files.length) log.info('services held for the resume boot', { units });
  return files;
}

/** Removes every hold drop-in (after resume, or when a prepare is undone). */
export async function releaseHeldUnits(root = '/'): Promise<string[]> {
  const dir = join(root, 'etc/systemd/system');
  const released: string[] = [];
  let entries: string[] = [];
  try {
    entries = readdirSync(dir).filter((n) => n.endsWith('.service.d'));
  } catch {
    return released;
  }
  for (const d of entries) {
    const file = join(dir, d, HOLD_DROPIN);
    if (!existsSync(file)) continue;
    rmSync(file, { force: true });
    try {
      rmdirSync(join(dir, d)); // only if it held nothing else
    } catch {
      /* other drop-ins of the admin's stay */
    }
    released.push(d.slice(0, -2));
  }
  if (released.length && root === '/' && existsSync('/run/systemd/system')) await execa('systemctl', ['daemon-reload'], { stdin: 'ignore', reject: false });
  return released;
}
