// Parsers for /proc/PID/* used by the dump engine. Each reads its file once (readFileSync)
// and scans it with indexOf/charCode loops: no backtracking regexes, since these run while
// the targets are frozen. A process that vanished is a ProcessError E_NO_PROCESS.
import { closeSync, existsSync, openSync, readFileSync, readSync, readdirSync, readlinkSync } from 'node:fs';
import { ProcessError } from '../errors.js';

// ---------------------------------------------------------------------------------------
// Reading

function isGone(err: unknown): boolean {
  const code = (err as NodeJS.ErrnoException).code;
  return code === 'ENOENT' || code === 'ESRCH';
}

/** Turns a failed /proc access into E_NO_PROCESS when the process (or thread) is gone. */
function procError(err: unknown, pid: number, path: string, tid?: number): never {
  if (isGone(err) && !existsSync(tid === undefined ? `/proc/${pid}` : `/proc/${pid}/task/${tid}`)) {
    throw new ProcessError('E_NO_PROCESS', `process ${pid}${tid === undefined ? '' : ` thread ${tid}`} no longer exists`, tid === undefined ? { pid } : { pid, tid }, err);
  }
  const code = (err as NodeJS.ErrnoException).code ?? 'error';
  throw new ProcessError('E_DUMP', `cannot read ${path}: ${code}`, { pid, path }, err);
}

function base(pid: number, tid?: number): string {
  return tid === undefined ? `/proc/${pid}` : `/proc/${pid}/task/${tid}`;
}

// One reusable buffer: /proc files report size 0, and readFileSync's grow-and-concat
// costs more than the parse. Strings are copied out of it, so reuse is safe (all sync).
let scratch = Buffer.allocUnsafe(1 << 16);

/** Whole /proc file as latin1 text (bytes 1:1; see utf8() for names). */
export function readProcText(path: string): string {
  const fd = openSync(path, 'r');
  try {
    let n = 0;
    for (;;) {
      if (n === scratch.length) {
        const bigger = Buffer.allocUnsafe(scratch.length * 2);
        scratch.copy(bigger, 0, 0, n);
        scratch = bigger;
      }
      const r = readSync(fd, scratch, n, scratch.length - n, null);
      if (r === 0) break;
      n += r;
    }
    return scratch.toString('latin1', 0, n);
  } finally {
    closeSync(fd);
  }
}

function readText(pid: number, file: string, tid?: number): string {
  const path = `${base(pid, tid)}/${file}`;
  try {
    return readProcText(path);
  } catch (err) {
    return procError(err, pid, path, tid);
  }
}

function readBytes(pid: number, file: string): Buffer {
  const path = `/proc/${pid}/${file}`;
  try {
    return readFileSync(path);
  } catch (err) {
    return procError(err, pid, path);
  }
}

function readLink(pid: number, file: string): string {
  const path = `/proc/${pid}/${file}`;
  try {
    return readlinkSync(path, 'utf8');
  } catch (err) {
    return procError(err, pid, path);
  }
}

function listDir(pid: number, file: string): string[] {
  const path = `/proc/${pid}/${file}`;
  try {
    return readdirSync(path);
  } catch (err) {
    return procError(err, pid, path);
  }
}

/** /proc text is latin1-read for speed; names and paths are UTF-8 bytes, so re-decode those. */
function utf8(s: string): string {
  for (let i = 0; i < s.length; i++) if (s.charCodeAt(i) > 0x7f) return Buffer.from(s, 'latin1').toString('utf8');
  return s;
}

function numericSorted(names: string[]): number[] {
  const out: number[] = [];
  for (const n of names) {
    const v = Number(n);
    if (Number.isInteger(v)) out.push(v);
  }
  return out.sort((a, b) => a - b);
}

function hexBig(s: string): bigint {
  s = s.trim();
  return BigInt(s.startsWith('0x') ? s : '0x' + s);
}

// ---------------------------------------------------------------------------------------
// Tasks and children

/** Thread ids of process `pid`, ascending (the main thread's tid equals pid). */
export function listTasks(pid: number): number[] {
  return numericSorted(listDir(pid, 'task'));
}

/** Direct children of process `pid`, from every thread's children list (a child belongs
 *  to the thread that forked it). Falls back to scanning /proc when the kernel lacks
 *  /proc/PID/task/TID/children (CONFIG_PROC_CHILDREN). */
export function children(pid: number): number[] {
  const found = new Set<number>();
  for (const tid of listTasks(pid)) {
    let text: string;
    try {
      text = readProcText(`/proc/${pid}/task/${tid}/children`);
    } catch (err) {
      if (isGone(err) && existsSync(`/proc/${pid}/task/${tid}`) && !existsSync(`/proc/${pid}/task/${tid}/children`)) return childrenByScan(pid);
      if (isGone(err) && existsSync(`/proc/${pid}`)) continue; // that thread exited meanwhile
      return procError(err, pid, `/proc/${pid}/task/${tid}/children`);
    }
    for (const part of text.split(' ')) if (part) found.add(Number(part));
  }
  return [...found].sort((a, b) => a - b);
}

function childrenByScan(pid: number): number[] {
  const out: number[] = [];
  for (const other of numericSorted(readdirSync('/proc'))) {
    try {
      if (readStat(other).ppid === pid) out.push(other);
    } catch {
      // raced with an exit
    }
  }
  return out;
}

// ---------------------------------------------------------------------------------------
// stat

export interface ProcStat {
  pid: number;
  comm: string;
  state: string;
  ppid: number;
  pgrp: number;
  session: number;
  ttyNr: number;
  tpgid: number;
  flags: number;
  priority: number;
  nice: number;
  numThreads: number;
  startTime: number;
  startCode: number;
  endCode: number;
  startStack: number;
  exitSignal: number;
  processor: number;
  rtPriority: number;
  policy: number;
  startData: number;
  endData: number;
  startBrk: number;
  argStart: number;
  argEnd: number;
  envStart: number;
  envEnd: number;
  exitCode: number;
}

/** /proc/PID/stat (or a thread's). comm may hold spaces and parentheses: it ends at the last ')'. */
export function readStat(pid: number, tid?: number): ProcStat {
  const text = readText(pid, 'stat', tid);
  return parseStat(text);
}

export function parseStat(text: string): ProcStat {
  const open = text.indexOf('(');
  const close = text.lastIndexOf(')');
  const f = text.slice(close + 2).trimEnd().split(' ');
  // f[0] is field 3 (state) of proc(5); field N is f[N - 3].
  const n = (field: number) => Number(f[field - 3]);
  return {
    pid: Number(text.slice(0, open - 1)),
    comm: utf8(text.slice(open + 1, close)),
    state: f[0]!,
    ppid: n(4),
    pgrp: n(5),
    session: n(6),
    ttyNr: n(7),
    tpgid: n(8),
    flags: n(9),
    priority: n(18),
    nice: n(19),
    numThreads: n(20),
    startTime: n(22),
    startCode: n(26),
    endCode: n(27),
    startStack: n(28),
    exitSignal: n(38),
    processor: n(39),
    rtPriority: n(40),
    policy: n(41),
    startData: n(45),
    endData: n(46),
    startBrk: n(47),
    argStart: n(48),
    argEnd: n(49),
    envStart: n(50),
    envEnd: n(51),
    exitCode: n(52),
  };
}

// ---------------------------------------------------------------------------------------
// status

export interface ProcStatus {
  name: string;
  state: string;
  umask?: number;
  tgid: number;
  pid: number;
  ppid: number;
  tracerPid: number;
  /** real, effective, saved, filesystem */
  uid: [number, number, number, number];
  gid: [number, number, number, number];
  groups: number[];
  /** Pid in each pid namespace, outermost first (the last one is the innermost). */
  nsPid: number[];
  nsTgid: number[];
  nsPgid: number[];
  nsSid: number[];
  threads: number;
  sigQ: { queued: number; limit: number };
  sigPnd: bigint;
  shdPnd: bigint;
  sigBlk: bigint;
  sigIgn: bigint;
  sigCgt: bigint;
  capInh: bigint;
  capPrm: bigint;
  capEff: bigint;
  capBnd: bigint;
  capAmb: bigint;
  noNewPrivs: boolean;
  /** 0 disabled, 1 strict, 2 filter */
  seccomp: number;
  seccompFilters: number;
  speculation: { storeBypass?: string; indirectBranch?: string };
  /** Every line, key -> value as printed (for fields without a typed member). */
  raw: Record<string, string>;
}

const ids = (s: string | undefined): number[] => (s ? s.split(/[\t ]+/).filter(Boolean).map(Number) : []);
const quad = (s: string | undefined): [number, number, number, number] => {
  const v = ids(s);
  return [v[0] ?? 0, v[1] ?? 0, v[2] ?? 0, v[3] ?? 0];
};

/** The Name field escapes only newline and backslash (as \n and \\). */
function unescapeName(s: string): string {
  if (s.indexOf('\\') < 0) return utf8(s);
  return utf8(s.replace(/\\(n|\\)/g, (_m, c: string) => (c === 'n' ? '\n' : '\\')));
}

export function readStatus(pid: number, tid?: number): ProcStatus {
  return parseStatus(readText(pid, 'status', tid));
}

export function parseStatus(text: string): ProcStatus {
  const raw: Record<string, string> = {};
  let at = 0;
  while (at < text.length) {
    let end = text.indexOf('\n', at);
    if (end < 0) end = text.length;
    const colon = text.indexOf(':', at);
    if (colon > at && colon < end) {
      let v = colon + 1;
      while (text.charCodeAt(v) === 9 || text.charCodeAt(v) === 32) v++;
      raw[text.slice(at, colon)] = text.slice(v, end);
    }
    at = end + 1;
  }
  const sigQ = (raw.SigQ ?? '0/0').split('/');
  const big = (k: string) => (raw[k] === undefined ? 0n : hexBig(raw[k]!));
  return {
    name: unescapeName(raw.Name ?? ''),
    state: (raw.State ?? '').charAt(0),
    umask: raw.Umask === undefined ? undefined : parseInt(raw.Umask, 8),
    tgid: Number(raw.Tgid),
    pid: Number(raw.Pid),
    ppid: Number(raw.PPid),
    tracerPid: Number(raw.TracerPid),
    uid: quad(raw.Uid),
    gid: quad(raw.Gid),
    groups: ids(raw.Groups),
    nsPid: ids(raw.NSpid),
    nsTgid: ids(raw.NStgid),
    nsPgid: ids(raw.NSpgid),
    nsSid: ids(raw.NSsid),
    threads: Number(raw.Threads ?? 0),
    sigQ: { queued: Number(sigQ[0]), limit: Number(sigQ[1]) },
    sigPnd: big('SigPnd'),
    shdPnd: big('ShdPnd'),
    sigBlk: big('SigBlk'),
    sigIgn: big('SigIgn'),
    sigCgt: big('SigCgt'),
    capInh: big('CapInh'),
    capPrm: big('CapPrm'),
    capEff: big('CapEff'),
    capBnd: big('CapBnd'),
    capAmb: big('CapAmb'),
    noNewPrivs: raw.NoNewPrivs === '1',
    seccomp: Number(raw.Seccomp ?? 0),
    seccompFilters: Number(raw.Seccomp_filters ?? 0),
    speculation: { storeBypass: raw.Speculation_Store_Bypass, indirectBranch: raw.SpeculationIndirectBranch },
    raw,
  };
}

// ---------------------------------------------------------------------------------------
// maps / smaps

export interface MapEntry {
  /** Addresses are exact as JS numbers: user addresses are < 2^47 and [vsyscall]'s
   *  0xffffffffff600000 has few enough significant bits. */
  start: number;
  end: number;
  prot: { read: boolean; write: boolean; exec: boolean };
  shared: boolean;
  offset: number;
  device: { major: number; minor: number };
  inode: number;
  /** File (or pseudo-file: "/memfd:x", "/SYSV00000000", "anon_inode:...") without " (deleted)". */
  path?: string;
  /** Bracketed kernel name: "[heap]", "[stack]", "[vdso]", "[vvar]", "[vvar_vclock]",
   *  "[vsyscall]", "[anon:NAME]", "[uprobes]"... */
  special?: string;
  deleted: boolean;
}

export function readMaps(pid: number): MapEntry[] {
  return parseMaps(readText(pid, 'maps'));
}

const DELETED = ' (deleted)';

export function parseMaps(text: string): MapEntry[] {
  const out: MapEntry[] = [];
  let at = 0;
  const len = text.length;
  while (at < len) {
    let end = text.indexOf('\n', at);
    if (end < 0) end = len;
    if (end > at) out.push(parseMapLine(text, at, end));
    at = end + 1;
  }
  return out;
}

function parseMapLine(text: string, at: number, end: number): MapEntry {
  const dash = text.indexOf('-', at);
  const sp1 = text.indexOf(' ', dash);
  const sp2 = text.indexOf(' ', sp1 + 1);
  const sp3 = text.indexOf(' ', sp2 + 1);
  const sp4 = text.indexOf(' ', sp3 + 1);
  let sp5 = text.indexOf(' ', sp4 + 1);
  if (sp5 < 0 || sp5 > end) sp5 = end;
  const perms = text.slice(sp1 + 1, sp2);
  const devColon = text.indexOf(':', sp3);
  const entry: MapEntry = {
    start: parseInt(text.slice(at, dash), 16),
    end: parseInt(text.slice(dash + 1, sp1), 16),
    prot: { read: perms.charCodeAt(0) === 114, write: perms.charCodeAt(1) === 119, exec: perms.charCodeAt(2) === 120 },
    shared: perms.charCodeAt(3) === 115,
    offset: parseInt(text.slice(sp2 + 1, sp3), 16),
    device: { major: parseInt(text.slice(sp3 + 1, devColon), 16), minor: parseInt(text.slice(devColon + 1, sp4), 16) },
    inode: Number(text.slice(sp4 + 1, sp5)),
    deleted: false,
  };
  let p = sp5;
  while (p < end && text.charCodeAt(p) === 32) p++;
  if (p < end) {
    let name = text.slice(p, end);
    if (name.charCodeAt(0) === 91 /* [ */ && name.charCodeAt(name.length - 1) === 93 /* ] */) {
      entry.special = utf8(name);
    } else {
      if (name.endsWith(DELETED)) {
        entry.deleted = true;
        name = name.slice(0, -DELETED.length);
      }
      // seq_path escapes only '\n' (as \012) in this file.
      entry.path = utf8(name.indexOf('\\012') >= 0 ? name.split('\\012').join('\n') : name);
    }
  }
  return entry;
}

export interface SmapsEntry {
  /** VmFlags two-letter codes: rd wr ex sh mr mw me ms gd pf dw lo io sr rr dc de ac nr ht sf ar wf dd sd mm hg nh mg um uw ss... */
  vmFlags: string[];
  /** Bytes */
  rss: number;
  anonymous: number;
  swap: number;
  kernelPageSize: number;
}

/** /proc/PID/smaps keyed by area start. Reading smaps walks the page tables: read it once. */
export function readSmaps(pid: number): Map<number, SmapsEntry> {
  return parseSmaps(readText(pid, 'smaps'));
}

export function parseSmaps(text: string): Map<number, SmapsEntry> {
  const out = new Map<number, SmapsEntry>();
  let cur: SmapsEntry | undefined;
  let at = 0;
  const len = text.length;
  const kb = (from: number, to: number) => {
    let v = 0;
    for (let i = from; i < to; i++) {
      const c = text.charCodeAt(i);
      if (c >= 48 && c <= 57) v = v * 10 + (c - 48);
    }
    return v * 1024;
  };
  while (at < len) {
    let end = text.indexOf('\n', at);
    if (end < 0) end = len;
    const c = text.charCodeAt(at);
    // Area headers start with a lowercase hex digit; field names start uppercase.
    if ((c >= 48 && c <= 57) || (c >= 97 && c <= 102)) {
      cur = { vmFlags: [], rss: 0, anonymous: 0, swap: 0, kernelPageSize: 0 };
      out.set(parseInt(text.slice(at, text.indexOf('-', at)), 16), cur);
    } else if (cur) {
      if (text.startsWith('VmFlags:', at)) cur.vmFlags = text.slice(at + 8, end).trim().split(' ');
      else if (text.startsWith('Rss:', at)) cur.rss = kb(at + 4, end);
      else if (text.startsWith('Anonymous:', at)) cur.anonymous = kb(at + 10, end);
      else if (text.startsWith('Swap:', at)) cur.swap = kb(at + 5, end);
      else if (text.startsWith('KernelPageSize:', at)) cur.kernelPageSize = kb(at + 15, end);
    }
    at = end + 1;
  }
  return out;
}

/** VmFlags per area start. */
export function readSmapsFlags(pid: number): Map<number, string[]> {
  const out = new Map<number, string[]>();
  for (const [start, e] of readSmaps(pid)) out.set(start, e.vmFlags);
  return out;
}

// ---------------------------------------------------------------------------------------
// file descriptors

export interface EpollTarget {
  tfd: number;
  /** EPOLL* event mask */
  events: number;
  /** epoll_data as registered (64 bits) */
  data: bigint;
  pos: number;
  ino: number;
  sdev: number;
}

export interface Fdinfo {
  pos: number;
  /** O_* flags (printed in octal by the kernel) */
  flags: number;
  mntId?: number;
  ino?: number;
  /** Every line as printed: key -> value (repeated keys joined with '\n'). */
  raw: Record<string, string>;
  /** epoll: one per watched target ("tfd:" lines). */
  epoll?: EpollTarget[];
  /** inotify: one per watch, its key:value pairs (wd, ino, sdev, mask, ignored_mask, fhandle-bytes, fhandle-type, f_handle). */
  inotify?: Record<string, string>[];
  /** fanotify: the group line (flags, event-flags) and one per mark. */
  fanotify?: Record<string, string>[];
  eventfdCount?: bigint;
  eventfdSemaphore?: boolean;
  /** signalfd mask */
  sigmask?: bigint;
  timerfd?: { clockid: number; ticks: bigint; settimeFlags: number; value: { sec: number; nsec: number }; interval: { sec: number; nsec: number } };
  /** pidfd: the pid it refers to (-1 once reaped) */
  pidfdPid?: number;
  /** POSIX/flock locks held through this file, as printed after "lock:". */
  locks?: string[];
}

/** Splits "k1:v1 k2:v2 ..." (values without spaces) into an object. */
function pairs(s: string): Record<string, string> {
  const out: Record<string, string> = {};
  for (const part of s.split(' ')) {
    if (!part) continue;
    const c = part.indexOf(':');
    if (c > 0) out[part.slice(0, c)] = part.slice(c + 1);
  }
  return out;
}

function timespec(s: string | undefined): { sec: number; nsec: number } {
  // "(1, 500000000)"
  if (!s) return { sec: 0, nsec: 0 };
  const inner = s.slice(s.indexOf('(') + 1, s.lastIndexOf(')')).split(',');
  return { sec: Number(inner[0]), nsec: Number(inner[1]) };
}

export function readFdinfo(pid: number, fd: number): Fdinfo {
  return parseFdinfo(readText(pid, `fdinfo/${fd}`));
}

export function parseFdinfo(text: string): Fdinfo {
  const raw: Record<string, string> = {};
  const info: Fdinfo = { pos: 0, flags: 0, raw };
  let at = 0;
  const len = text.length;
  while (at < len) {
    let end = text.indexOf('\n', at);
    if (end < 0) end = len;
    const line = text.slice(at, end);
    at = end + 1;
    if (!line) continue;
    // "inotify wd:..." and "fanotify ..." have a space before the first colon.
    if (line.startsWith('inotify ')) {
      (info.inotify ??= []).push(pairs(line.slice(8)));
      continue;
    }
    if (line.startsWith('fanotify ')) {
      (info.fanotify ??= []).push(pairs(line.slice(9)));
      continue;
    }
    const colon = line.indexOf(':');
    if (colon < 0) continue;
    const key = line.slice(0, colon);
    const value = line.slice(colon + 1).trim();
    raw[key] = raw[key] === undefined ? value : raw[key] + '\n' + value;
    switch (key) {
      case 'pos':
        info.pos = Number(value);
        break;
      case 'flags':
        info.flags = parseInt(value, 8);
        break;
      case 'mnt_id':
        info.mntId = Number(value);
        break;
      case 'ino':
        info.ino = Number(value);
        break;
      case 'tfd': {
        // "tfd:        5 events:       19 data:                5  pos:0 ino:61 sdev:d"
        const p = pairs(('tfd:' + value).replace(/: +/g, ':'));
        (info.epoll ??= []).push({ tfd: Number(p.tfd), events: parseInt(p.events ?? '0', 16), data: hexBig(p.data ?? '0'), pos: Number(p.pos ?? 0), ino: parseInt(p.ino ?? '0', 16), sdev: parseInt(p.sdev ?? '0', 16) });
        break;
      }
      case 'eventfd-count':
        info.eventfdCount = hexBig(value);
        break;
      case 'eventfd-semaphore':
        info.eventfdSemaphore = value === '1';
        break;
      case 'sigmask':
        info.sigmask = hexBig(value);
        break;
      case 'lock':
        (info.locks ??= []).push(value);
        break;
      case 'Pid':
        info.pidfdPid = Number(value);
        break;
    }
  }
  if (raw.clockid !== undefined && raw.ticks !== undefined) {
    info.timerfd = {
      clockid: Number(raw.clockid),
      ticks: BigInt(raw.ticks),
      settimeFlags: parseInt(raw['settime flags'] ?? '0', 8),
      value: timespec(raw.it_value),
      interval: timespec(raw.it_interval),
    };
  }
  return info;
}

/** The flat shape of FdInfo.fdinfo in src/objects/types.ts: pos, flags, then every line raw. */
export function flatFdinfo(info: Fdinfo): { pos: number; flags: number; [key: string]: string | number } {
  return { ...info.raw, pos: info.pos, flags: info.flags };
}

export interface FdLink {
  fd: number;
  /** readlink of /proc/PID/fd/N: a path ("... (deleted)"), "pipe:[ino]", "socket:[ino]", "anon_inode:[eventfd]"... */
  link: string;
}

export function listFds(pid: number): FdLink[] {
  const out: FdLink[] = [];
  for (const fd of numericSorted(listDir(pid, 'fd'))) {
    try {
      out.push({ fd, link: readlinkSync(`/proc/${pid}/fd/${fd}`, 'utf8') });
    } catch (err) {
      if (isGone(err) && existsSync(`/proc/${pid}`)) continue; // closed meanwhile (not frozen yet)
      procError(err, pid, `/proc/${pid}/fd/${fd}`);
    }
  }
  return out;
}

// ---------------------------------------------------------------------------------------
// small files

export function readAuxv(pid: number): Buffer {
  return readBytes(pid, 'auxv');
}

export function readCmdline(pid: number): string[] {
  const b = readBytes(pid, 'cmdline');
  if (b.length === 0) return [];
  const parts = b.toString('utf8').split('\0');
  if (parts[parts.length - 1] === '') parts.pop();
  return parts;
}

export function readEnviron(pid: number): string[] {
  const b = readBytes(pid, 'environ');
  if (b.length === 0) return [];
  const parts = b.toString('utf8').split('\0');
  if (parts[parts.length - 1] === '') parts.pop();
  return parts;
}

export const readCwd = (pid: number): string => readLink(pid, 'cwd');
export const readRoot = (pid: number): string => readLink(pid, 'root');
export const readExe = (pid: number): string => readLink(pid, 'exe');

export function readPersonality(pid: number): number {
  return parseInt(readText(pid, 'personality'), 16);
}

export type RlimitName =
  | 'RLIMIT_CPU' | 'RLIMIT_FSIZE' | 'RLIMIT_DATA' | 'RLIMIT_STACK' | 'RLIMIT_CORE' | 'RLIMIT_RSS' | 'RLIMIT_NPROC' | 'RLIMIT_NOFILE'
  | 'RLIMIT_MEMLOCK' | 'RLIMIT_AS' | 'RLIMIT_LOCKS' | 'RLIMIT_SIGPENDING' | 'RLIMIT_MSGQUEUE' | 'RLIMIT_NICE' | 'RLIMIT_RTPRIO' | 'RLIMIT_RTTIME';

/** Limit value: a number, a bigint when beyond 2^53 (exactness matters for setrlimit), or unlimited. */
export type RlimitValue = number | bigint | 'unlimited';

const RLIMIT_BY_LABEL: Record<string, RlimitName> = {
  'Max cpu time': 'RLIMIT_CPU',
  'Max file size': 'RLIMIT_FSIZE',
  'Max data size': 'RLIMIT_DATA',
  'Max stack size': 'RLIMIT_STACK',
  'Max core file size': 'RLIMIT_CORE',
  'Max resident set': 'RLIMIT_RSS',
  'Max processes': 'RLIMIT_NPROC',
  'Max open files': 'RLIMIT_NOFILE',
  'Max locked memory': 'RLIMIT_MEMLOCK',
  'Max address space': 'RLIMIT_AS',
  'Max file locks': 'RLIMIT_LOCKS',
  'Max pending signals': 'RLIMIT_SIGPENDING',
  'Max msgqueue size': 'RLIMIT_MSGQUEUE',
  'Max nice priority': 'RLIMIT_NICE',
  'Max realtime priority': 'RLIMIT_RTPRIO',
  'Max realtime timeout': 'RLIMIT_RTTIME',
};

function limitValue(s: string): RlimitValue {
  if (s === 'unlimited') return 'unlimited';
  const b = BigInt(s);
  return b <= BigInt(Number.MAX_SAFE_INTEGER) ? Number(b) : b;
}

export function readLimits(pid: number): Partial<Record<RlimitName, { soft: RlimitValue; hard: RlimitValue }>> {
  return parseLimits(readText(pid, 'limits'));
}

export function parseLimits(text: string): Partial<Record<RlimitName, { soft: RlimitValue; hard: RlimitValue }>> {
  const out: Partial<Record<RlimitName, { soft: RlimitValue; hard: RlimitValue }>> = {};
  for (const line of text.split('\n')) {
    // Columns: "%-25s %-20s %-20s %-10s"; the label has spaces, the values do not.
    const name = RLIMIT_BY_LABEL[line.slice(0, 25).trim()];
    if (!name) continue;
    const [soft, hard] = line.slice(25).trim().split(/ +/);
    out[name] = { soft: limitValue(soft!), hard: limitValue(hard!) };
  }
  return out;
}

export interface PosixTimer {
  id: number;
  signal: number;
  /** sigev_value (pointer-sized) */
  sigevValue: bigint;
  notify: 'signal' | 'none' | 'thread';
  /** SIGEV_THREAD_ID targets a thread ("tid"), otherwise the process ("pid"). */
  targetKind: 'pid' | 'tid';
  target: number;
  clockId: number;
}

/** /proc/PID/timers: POSIX timers (timer_create), needs CONFIG_CHECKPOINT_RESTORE. */
export function readTimers(pid: number): PosixTimer[] {
  return parseTimers(readText(pid, 'timers'));
}

export function parseTimers(text: string): PosixTimer[] {
  const out: PosixTimer[] = [];
  let cur: PosixTimer | undefined;
  for (const line of text.split('\n')) {
    const colon = line.indexOf(':');
    if (colon < 0) continue;
    const key = line.slice(0, colon);
    const value = line.slice(colon + 1).trim();
    if (key === 'ID') {
      cur = { id: Number(value), signal: 0, sigevValue: 0n, notify: 'signal', targetKind: 'pid', target: 0, clockId: 0 };
      out.push(cur);
    } else if (!cur) {
      continue;
    } else if (key === 'signal') {
      const [sig, ptr] = value.split('/');
      cur.signal = Number(sig);
      cur.sigevValue = hexBig(ptr ?? '0');
    } else if (key === 'notify') {
      // "signal/pid.1234", "thread/tid.1235", "none/pid.0"
      const slash = value.indexOf('/');
      const dot = value.indexOf('.', slash);
      cur.notify = value.slice(0, slash) as PosixTimer['notify'];
      cur.targetKind = value.slice(slash + 1, dot) as PosixTimer['targetKind'];
      cur.target = Number(value.slice(dot + 1));
    } else if (key === 'ClockID') {
      cur.clockId = Number(value);
    }
  }
  return out;
}

export interface MountInfo {
  mountId: number;
  parentId: number;
  major: number;
  minor: number;
  /** Root of the mount within its file system */
  root: string;
  mountPoint: string;
  options: string;
  optionalFields: string[];
  fsType: string;
  source: string;
  superOptions: string;
}

/** mountinfo escapes space, tab, newline and backslash as \ooo. */
function unoctal(s: string): string {
  if (s.indexOf('\\') < 0) return s;
  return utf8(s.replace(/\\([0-7]{3})/g, (_m, o: string) => String.fromCharCode(parseInt(o, 8))));
}

export function readMountinfo(pid: number): MountInfo[] {
  const out: MountInfo[] = [];
  for (const line of readText(pid, 'mountinfo').split('\n')) {
    if (!line) continue;
    const f = line.split(' ');
    const sep = f.indexOf('-', 6);
    const [major, minor] = f[2]!.split(':');
    out.push({
      mountId: Number(f[0]),
      parentId: Number(f[1]),
      major: Number(major),
      minor: Number(minor),
      root: unoctal(f[3]!),
      mountPoint: unoctal(f[4]!),
      options: f[5]!,
      optionalFields: f.slice(6, sep),
      fsType: f[sep + 1]!,
      source: unoctal(f[sep + 2]!),
      superOptions: f[sep + 3] ?? '',
    });
  }
  return out;
}

/** Namespace inode numbers by kind (mnt, pid, net, time, user, ipc, uts, cgroup...). */
export function readNamespaces(pid: number): Record<string, number> {
  const out: Record<string, number> = {};
  for (const kind of listDir(pid, 'ns')) {
    try {
      const link = readlinkSync(`/proc/${pid}/ns/${kind}`, 'utf8'); // "net:[4026531840]"
      out[kind] = Number(link.slice(link.indexOf('[') + 1, -1));
    } catch (err) {
      procError(err, pid, `/proc/${pid}/ns/${kind}`);
    }
  }
  return out;
}
