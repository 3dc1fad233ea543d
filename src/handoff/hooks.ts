// The resume hook: what runs `handoff resume --early` before the network comes up and
// `handoff resume` after it on the new kernel. Two flavours, generated here (so the paths
// of node and of this installation are right): systemd units, and a plain init script for
// systems without systemd (busybox init, the VM guests: their /init calls it).
// Both do nothing unless the kernel command line carries handoff.resume=.
import { existsSync, mkdirSync, writeFileSync } from 'node:fs';
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
