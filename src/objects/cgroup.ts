// Control group membership of each process. Dump: every line of /proc/PID/cgroup (the cgroup v2
// path, and on a v1 or hybrid host one path per v1 hierarchy, named by its controllers since
// hierarchy numbers are not stable across boots). Restore: each new process is moved into the
// same cgroups (written to cgroup.procs, which moves the whole thread group) right after it is
// created, before its memory is filled, so its pages are charged where they were before.
// A cgroup missing on the restoring system is created (with a warning); a hierarchy that is
// not mounted there (v1 on a v2-only system) is skipped with a warning. Membership is
// management state, not process state: a process that cannot be moved is restored anyway and
// the reason is logged and returned.
import { existsSync, mkdirSync, readFileSync, writeFileSync } from 'node:fs';
import { dirname, join, posix } from 'node:path';
import type { CgroupMembership } from '../format/records.js';
import { logger } from '../log.js';

const log = logger('cgroup');

/** Parses /proc/PID/cgroup: "hierarchy-ID:controller-list:path" per line. */
export function parseCgroupFile(text: string): CgroupMembership[] {
  const out: CgroupMembership[] = [];
  for (const line of text.split('\n')) {
    if (!line) continue;
    const first = line.indexOf(':');
    const second = line.indexOf(':', first + 1);
    if (first < 0 || second < 0) continue;
    const hierarchy = Number(line.slice(0, first));
    const list = line.slice(first + 1, second);
    out.push({ hierarchy, controllers: list ? list.split(',').sort() : [], path: line.slice(second + 1) });
  }
  return out;
}

export function dumpCgroups(pid: number): CgroupMembership[] {
  return parseCgroupFile(readFileSync(`/proc/${pid}/cgroup`, 'utf8'));
}

export interface CgroupMount {
  /** 'v2' for the unified hierarchy, else the v1 hierarchy's sorted controllers (and name=X). */
  version: 1 | 2;
  controllers: string[];
  /** The cgroup path shown at the mount point (mountinfo field 4; "/" unless bind-mounted). */
  root: string;
  mountPoint: string;
}

/** Mounted cgroup hierarchies of this process's mount namespace (first mount of each wins). */
export function cgroupMounts(mountinfo = readFileSync('/proc/self/mountinfo', 'utf8'), known = knownControllers()): CgroupMount[] {
  const mounts: CgroupMount[] = [];
  for (const line of mountinfo.split('\n')) {
    const dash = line.indexOf(' - ');
    if (dash < 0) continue;
    const left = line.slice(0, dash).split(' ');
    const [fstype, , superOptions = ''] = line.slice(dash + 3).split(' ');
    const root = unescapeMount(left[3] ?? '/');
    const mountPoint = unescapeMount(left[4] ?? '');
    if (fstype === 'cgroup2') {
      if (!mounts.some((m) => m.version === 2)) mounts.push({ version: 2, controllers: [], root, mountPoint });
    } else if (fstype === 'cgroup') {
      // Super options name the hierarchy's controllers among flags (rw, xattr, clone_children...).
      const controllers = superOptions.split(',').filter((o) => known.has(o) || o.startsWith('name=')).sort();
      if (!mounts.some((m) => m.version === 1 && sameList(m.controllers, controllers))) mounts.push({ version: 1, controllers, root, mountPoint });
    }
  }
  return mounts;
}

function knownControllers(): Set<string> {
  try {
    return new Set(readFileSync('/proc/cgroups', 'utf8').split('\n').filter((l) => l && !l.startsWith('#')).map((l) => l.split('\t')[0]!));
  } catch {
    return new Set();
  }
}

const unescapeMount = (s: string) => s.replace(/\\([0-7]{3})/g, (_, o: string) => String.fromCharCode(parseInt(o, 8)));
const sameList = (a: string[], b: string[]) => a.length === b.length && a.every((x, i) => x === b[i]);

/** The directory of a recorded membership on this system, or why there is none. */
export function cgroupDirectory(m: CgroupMembership, mounts: CgroupMount[]): { dir?: string; problem?: string } {
  const v2 = m.hierarchy === 0 && m.controllers.length === 0;
  const mount = v2 ? mounts.find((x) => x.version === 2) : mounts.find((x) => x.version === 1 && sameList(x.controllers, m.controllers));
  const name = v2 ? 'cgroup v2' : `cgroup v1 hierarchy ${m.controllers.join(',')}`;
  if (!mount) return { problem: `${name} is not mounted here` };
  const rel = posix.relative(mount.root, m.path);
  if (rel.startsWith('..')) return { problem: `${m.path} is outside the ${name} mount at ${mount.mountPoint} (root ${mount.root})` };
  return { dir: join(mount.mountPoint, rel) };
}

export interface CgroupRestoreResult {
  moved: string[];
  created: string[];
  warnings: string[];
}

/**
 * Moves `pid` (a whole thread group) into the recorded cgroups, creating missing ones.
 * Never throws: what could not be done is logged and returned as warnings.
 */
export function restoreCgroups(pid: number, memberships: CgroupMembership[] | undefined, mounts: CgroupMount[] = cgroupMounts()): CgroupRestoreResult {
  const result: CgroupRestoreResult = { moved: [], created: [], warnings: [] };
  const warn = (message: string, fields: Record<string, unknown>) => {
    log.warn(message, { pid, ...fields });
    result.warnings.push(`${message}: ${Object.values(fields).join(' ')}`);
  };
  for (const m of memberships ?? []) {
    const { dir, problem } = cgroupDirectory(m, mounts);
    if (!dir) {
      warn('cgroup left as is', { path: m.path, reason: problem });
      continue;
    }
    try {
      if (!existsSync(join(dir, 'cgroup.procs'))) {
        createCgroup(dir, m.controllers.includes('cpuset'));
        result.created.push(dir);
        warn('cgroup did not exist: created', { dir });
      }
      writeFileSync(join(dir, 'cgroup.procs'), String(pid));
      result.moved.push(dir);
      log.debug('moved', { pid, dir });
    } catch (err) {
      warn('cannot move the process into its cgroup', { dir, error: (err as Error).message });
    }
  }
  return result;
}

/** mkdir one level at a time, so that each new v1 cpuset can take its parent's settings. */
function createCgroup(dir: string, cpuset: boolean): void {
  const parent = dirname(dir);
  if (!existsSync(parent)) createCgroup(parent, cpuset);
  mkdirSync(dir);
  // A new v1 cpuset starts with no cpus and no memory nodes, and refuses tasks then.
  if (!cpuset) return;
  for (const file of ['cpuset.cpus', 'cpuset.mems']) {
    const own = join(dir, file);
    if (existsSync(own) && readFileSync(own, 'utf8').trim() === '') writeFileSync(own, readFileSync(join(parent, file), 'utf8').trim());
  }
}
