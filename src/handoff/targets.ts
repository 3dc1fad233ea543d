// What `prepare` hands off: process trees named by pid, by cgroup (every process in
// cgroup.procs, grouped into trees) or by systemd unit (its cgroup).
import { existsSync, readFileSync } from 'node:fs';
import { join } from 'node:path';
import { execa } from 'execa';
import { ProcessError, UsageError } from '../errors.js';
import { readStat } from '../kernel/proc.js';
import { cgroupMounts } from '../objects/cgroup.js';

export interface TargetSpec {
  pids?: number[];
  cgroups?: string[];
  units?: string[];
}

/**
 * Where cgroup paths (as systemd's ControlGroup shows them) are: the cgroup v2 mount, at
 * /sys/fs/cgroup on a unified system and /sys/fs/cgroup/unified on a hybrid one; on a v1-only
 * system systemd's own name=systemd hierarchy.
 */
function cgroupRoot(): string {
  const mounts = cgroupMounts();
  const v2 = mounts.find((m) => m.version === 2 && m.root === '/');
  const named = mounts.find((m) => m.version === 1 && m.controllers.length === 1 && m.controllers[0] === 'name=systemd' && m.root === '/');
  return (v2 ?? named)?.mountPoint ?? '/sys/fs/cgroup';
}

export function cgroupDir(path: string): string {
  const dir = path.startsWith('/sys/fs/cgroup') ? path : join(cgroupRoot(), path);
  if (!existsSync(join(dir, 'cgroup.procs'))) throw new UsageError(`no cgroup at ${dir}`, { path: dir });
  return dir;
}

export function cgroupPids(path: string): number[] {
  const dir = cgroupDir(path);
  return readFileSync(join(dir, 'cgroup.procs'), 'utf8').split('\n').filter(Boolean).map(Number);
}

export async function unitCgroup(unit: string): Promise<string> {
  const r = await execa('systemctl', ['show', '-p', 'ControlGroup', '--value', unit], { reject: false, stdin: 'ignore' });
  const cg = String(r.stdout).trim();
  if (r.exitCode !== 0 || !cg) throw new UsageError(`systemd unit ${unit} has no control group (not running?)${r.stderr ? `: ${String(r.stderr)}` : ''}`);
  return cg;
}

/**
 * The roots of the trees to dump: every named pid, and for a set of pids (a cgroup) each
 * one whose parent is not in the set. Each tree is dumped with all its descendants.
 */
export function treeRoots(pids: number[]): number[] {
  const set = new Set(pids);
  const roots: number[] = [];
  for (const pid of pids) {
    let ppid: number;
    try {
      ppid = readStat(pid).ppid;
    } catch {
      continue; // exited meanwhile
    }
    if (!set.has(ppid) && !roots.includes(pid)) roots.push(pid);
  }
  return roots;
}

export async function resolveTargets(spec: TargetSpec): Promise<number[]> {
  const roots: number[] = [];
  const add = (pids: number[]) => {
    for (const r of treeRoots(pids)) if (!roots.includes(r)) roots.push(r);
  };
  for (const pid of spec.pids ?? []) {
    readStat(pid);
    if (!roots.includes(pid)) roots.push(pid);
  }
  for (const cg of spec.cgroups ?? []) add(cgroupPids(cg));
  for (const unit of spec.units ?? []) add(cgroupPids(await unitCgroup(unit)));
  // A root inside another root's tree would be dumped twice.
  const nested = roots.filter((r) => {
    for (let p = safePpid(r); p > 1; p = safePpid(p)) if (roots.includes(p)) return true;
    return false;
  });
  const result = roots.filter((r) => !nested.includes(r));
  if (result.length === 0) throw new ProcessError('E_NO_PROCESS', 'no process to hand off (empty cgroup or unit not running?)');
  return result;
}

function safePpid(pid: number): number {
  try {
    return readStat(pid).ppid;
  } catch {
    return 0;
  }
}
