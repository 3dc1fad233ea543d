// Per-process state: identity in the tree (pid, parent, session, group), working directory,
// root, umask, personality, rlimits, comm, and the mm fields of PR_SET_MM_MAP. Dump and restore.
import { readFileSync, writeFileSync } from 'node:fs';
import type { ProcessRecord, ProcessTuning, Rlimit } from '../format/records.js';
import { readAuxv, readCmdline, readCwd, readExe, readLimits, readPersonality, readRoot, readStat, readStatus } from '../kernel/proc.js';
import type { RemoteTask } from '../ptrace/remote.js';
import { dumpCgroups } from './cgroup.js';
import { O, PR, SYS } from '../ptrace/syscalls.js';

const RLIMITS = [
  'RLIMIT_CPU', 'RLIMIT_FSIZE', 'RLIMIT_DATA', 'RLIMIT_STACK', 'RLIMIT_CORE', 'RLIMIT_RSS', 'RLIMIT_NPROC', 'RLIMIT_NOFILE',
  'RLIMIT_MEMLOCK', 'RLIMIT_AS', 'RLIMIT_LOCKS', 'RLIMIT_SIGPENDING', 'RLIMIT_MSGQUEUE', 'RLIMIT_NICE', 'RLIMIT_RTPRIO', 'RLIMIT_RTTIME',
] as const;
const INFINITY = (1n << 64n) - 1n;
const AT_FDCWD = -100;

export function dumpProcess(pid: number, task: RemoteTask | undefined): ProcessRecord {
  const stat = readStat(pid);
  const status = readStatus(pid);
  const limits = readLimits(pid);
  const rlimits: Rlimit[] = [];
  for (const resource of RLIMITS) {
    const l = limits[resource];
    if (!l) continue;
    const v = (x: typeof l.soft) => (typeof x === 'bigint' ? 'unlimited' : x);
    rlimits.push({ resource, soft: v(l.soft), hard: v(l.hard) });
  }
  const zombie = stat.state === 'Z';
  const rec: ProcessRecord = {
    kind: 'process',
    pid,
    ppid: stat.ppid,
    pgid: stat.pgrp,
    sid: stat.session,
    comm: stat.comm,
    state: zombie ? 'zombie' : 'alive',
    exe: zombie ? '' : readExe(pid),
    cwd: zombie ? '/' : readCwd(pid),
    root: zombie ? '/' : readRoot(pid),
    umask: status.umask ?? 0o022,
    personality: readPersonality(pid),
    cmdline: zombie ? [] : readCmdline(pid),
    rlimits,
  };
  if (zombie) {
    rec.exitStatus = stat.exitCode;
    return rec;
  }
  rec.cgroups = dumpCgroups(pid);
  if (task) rec.tuning = dumpTuning(pid, task, stat.policy, stat.rtPriority, stat.nice);
  const brk = task ? task.call('brk', SYS.brk, 0) : stat.startBrk;
  rec.mm = {
    startCode: stat.startCode,
    endCode: stat.endCode,
    startData: stat.startData,
    endData: stat.endData,
    startBrk: stat.startBrk,
    brk,
    startStack: stat.startStack,
    argStart: stat.argStart,
    argEnd: stat.argEnd,
    envStart: stat.envStart,
    envEnd: stat.envEnd,
    auxv: readAuxv(pid),
    exeFile: rec.exe,
  };
  return rec;
}

function dumpTuning(pid: number, task: RemoteTask, policy: number, rtPriority: number, nice: number): ProcessTuning {
  task.call('prctl(PR_GET_CHILD_SUBREAPER)', SYS.prctl, PR.GET_CHILD_SUBREAPER, task.scratch);
  return {
    policy,
    rtPriority,
    nice,
    timerSlackNs: task.call('prctl(PR_GET_TIMERSLACK)', SYS.prctl, PR.GET_TIMERSLACK),
    childSubreaper: task.get(4).readInt32LE(0) !== 0,
    thpDisable: task.call('prctl(PR_GET_THP_DISABLE)', SYS.prctl, PR.GET_THP_DISABLE) !== 0,
    oomScoreAdj: Number(readFileSync(`/proc/${pid}/oom_score_adj`, 'utf8')),
  };
}

function restoreTuning(task: RemoteTask, t: ProcessTuning): void {
  if (t.nice !== undefined) task.call('setpriority', SYS.setpriority, 0 /* PRIO_PROCESS */, 0, t.nice);
  if (t.policy !== undefined && t.policy !== 0) {
    const param = Buffer.alloc(4);
    param.writeInt32LE(t.rtPriority ?? 0, 0);
    task.call('sched_setscheduler', SYS.sched_setscheduler, 0, t.policy, task.put(param));
  }
  if (t.timerSlackNs !== undefined) task.call('prctl(PR_SET_TIMERSLACK)', SYS.prctl, PR.SET_TIMERSLACK, t.timerSlackNs);
  if (t.childSubreaper) task.call('prctl(PR_SET_CHILD_SUBREAPER)', SYS.prctl, PR.SET_CHILD_SUBREAPER, 1);
  if (t.thpDisable) task.call('prctl(PR_SET_THP_DISABLE)', SYS.prctl, PR.SET_THP_DISABLE, 1, 0, 0, 0);
  if (t.oomScoreAdj !== undefined) writeFileSync(`/proc/${task.pid}/oom_score_adj`, String(t.oomScoreAdj));
}

/** umask, cwd, root, personality, rlimits, name: everything but the tree and the mm. */
export function restoreProcessAttributes(task: RemoteTask, rec: ProcessRecord): void {
  task.call('umask', SYS.umask, rec.umask);
  task.call(`chdir(${rec.cwd})`, 80, task.putString(rec.cwd));
  if (rec.root !== '/') task.call(`chroot(${rec.root})`, SYS.chroot, task.putString(rec.root));
  task.call('personality', SYS.personality, rec.personality);
  for (const l of rec.rlimits) {
    const b = Buffer.alloc(16);
    b.writeBigUInt64LE(l.soft === 'unlimited' ? INFINITY : BigInt(l.soft), 0);
    b.writeBigUInt64LE(l.hard === 'unlimited' ? INFINITY : BigInt(l.hard), 8);
    task.call(`prlimit64(${l.resource})`, SYS.prlimit64, 0, RLIMITS.indexOf(l.resource as (typeof RLIMITS)[number]), task.put(b), 0);
  }
  if (rec.tuning) restoreTuning(task, rec.tuning);
}

/** Thread name (comm), set by the thread itself. */
export function restoreComm(task: RemoteTask, comm: string): void {
  task.call('prctl(PR_SET_NAME)', SYS.prctl, PR.SET_NAME, task.putString(comm.slice(0, 15)));
}

/**
 * PR_SET_MM_MAP: code/data/brk/stack/arg/env boundaries, the auxiliary vector and the exe
 * link, in one validated call (needs CAP_SYS_RESOURCE: done before credentials).
 */
export function restoreMm(task: RemoteTask, rec: ProcessRecord): void {
  const mm = rec.mm!;
  const auxv = Buffer.from(mm.auxv);
  const exeFd = task.call(`open(${mm.exeFile})`, SYS.openat, AT_FDCWD, task.putString(mm.exeFile, 512), O.RDONLY | O.CLOEXEC, 0);
  try {
    const b = Buffer.alloc(104);
    const fields = [mm.startCode, mm.endCode, mm.startData, mm.endData, mm.startBrk, mm.brk, mm.startStack, mm.argStart, mm.argEnd, mm.envStart, mm.envEnd];
    fields.forEach((v, i) => b.writeBigUInt64LE(BigInt(v), i * 8));
    const auxvAddr = task.put(auxv, 1024);
    b.writeBigUInt64LE(BigInt(auxvAddr), 88);
    b.writeUInt32LE(auxv.length, 96);
    b.writeUInt32LE(exeFd, 100);
    task.call('prctl(PR_SET_MM_MAP)', SYS.prctl, PR.SET_MM, PR.SET_MM_MAP, task.put(b, 0), b.length, 0);
  } finally {
    task.raw(SYS.close, exeFd);
  }
}
