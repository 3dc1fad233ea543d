// Pseudo-terminals: one `pty` record per pty pair (index, termios, window size, packet mode,
// lock, exclusive mode, the bytes queued each way, and the session and foreground process
// group when it is a controlling terminal) and one `tty` record per open file description of
// either end (/dev/ptmx, /dev/pts/N, or /dev/tty naming the process's controlling terminal).
// Both ends must be held by handed-off processes; an fd on any other terminal (the user's ssh
// session, /dev/console, a serial line) is a preflight blocker naming pid and fd. There is
// deliberately no "reattach to /dev/null" option: a program whose terminal silently became
// /dev/null behaves differently (a shell exits on EOF); detach the job first (setsid, stdio
// redirected). A controlling terminal that no dumped fd refers to is not recorded: the
// restored process has none. An fd opened as /dev/tty comes back as an open of /dev/pts/N
// (the same terminal).
//
// The kernel has no way to peek at a terminal's queues. The dump reads them (the holders are
// frozen) and puts every byte back at once with TIOCSTI, which hands bytes straight to the
// line discipline, under a temporary termios that stores them exactly as they are (no echo,
// no signals, no input mapping, special characters moved out of the way). The restore queues
// them the same way into the new pty. Limits: a pending packet-mode status byte is not kept,
// and input still in the flip buffers beyond the line discipline's 4 KiB is queued again as raw
// input (identical in raw mode).
import { existsSync, readdirSync, readFileSync, readlinkSync } from 'node:fs';
import type { Blocker } from '../errors.js';
import { ProcessError } from '../errors.js';
import { logger } from '../log.js';
import { closeFd, takeFd } from '../native/fd.js';
import * as k from '../native/fdkinds.js';
import * as tty from '../native/tty.js';
import { TIOC } from '../native/tty.js';
import { readStat } from '../kernel/proc.js';
import type { DumpContext, FdInfo, FdObjectModule, ImageRecord, RestoreContext } from './types.js';
import { applyStatusFlags, blocker, fdinfoField, recordFlags } from './file.js';

const log = logger('tty');

const S_IFMT = 0o170000;
const S_IFCHR = 0o020000;
const PTS_MAJOR_FIRST = 136;
const PTS_MAJOR_LAST = 143;
/** N_TTY_BUF_SIZE - 1: what one line discipline buffer takes before it stops receiving. */
const LDISC_ROOM = 4095;
const MAX_QUEUED = 1 << 20;
const EAGAIN = 11;

const devMajor = (dev: number) => Number((BigInt(dev) >> 8n) & 0xfffn) | Number((BigInt(dev) >> 32n) & ~0xfffn);
const devMinor = (dev: number) => Number(BigInt(dev) & 0xffn) | Number((BigInt(dev) >> 12n) & ~0xffn);

/** The pts index behind a device number (st_rdev or /proc/PID/stat tty_nr), or undefined. */
export function ptsIndex(dev: number): number | undefined {
  const major = devMajor(dev);
  if (major < PTS_MAJOR_FIRST || major > PTS_MAJOR_LAST) return undefined;
  return (major - PTS_MAJOR_FIRST) * 256 + devMinor(dev);
}

type Classified = { end: 'master' | 'slave'; index: number } | { end: 'other'; reason: string };

/** True for a character device of the kernel's tty class (pts devices are not in sysfs). */
function isTtyDevice(rdev: number): boolean {
  if (ptsIndex(rdev) !== undefined) return true;
  try {
    return readlinkSync(`/sys/dev/char/${devMajor(rdev)}:${devMinor(rdev)}/subsystem`).endsWith('/tty');
  } catch {
    return false;
  }
}

function classify(info: FdInfo): Classified {
  const major = devMajor(info.stat.rdev);
  const minor = devMinor(info.stat.rdev);
  if (major === 5 && minor === 2) return { end: 'master', index: tty.getInt(info.localFd, TIOC.GPTN, 'TIOCGPTN') };
  const index = ptsIndex(info.stat.rdev);
  if (index !== undefined) return { end: 'slave', index };
  if (major === 5 && minor === 0) {
    // /dev/tty: whatever the opener's controlling terminal was (the process's own, today).
    const ctty = ptsIndex(readStat(info.pid).ttyNr);
    if (ctty !== undefined) return { end: 'slave', index: ctty };
    return { end: 'other', reason: `${info.link} opened as the controlling terminal, which is not a pseudo-terminal` };
  }
  return { end: 'other', reason: `${info.link} is terminal device ${major}:${minor}, not a pseudo-terminal; only ptys whose both ends are handed off are supported` };
}

// ---------------------------------------------------------------- who holds which pty

interface Holders {
  masters: Map<number, { pid: number; fd: number }[]>;
  slaves: Map<number, { pid: number; fd: number }[]>;
  /** pts index -> pids whose controlling terminal it is. */
  cttys: Map<number, number[]>;
}

function push<K, V>(map: Map<K, V[]>, key: K, value: V): void {
  const list = map.get(key);
  if (list) list.push(value);
  else map.set(key, [value]);
}

function isMasterLink(link: string): boolean {
  return link === '/dev/ptmx' || link === '/dev/pts/ptmx';
}

/** The pty index of a master fd of another process, from its fdinfo (tty-index, 4.19+). */
function masterIndex(pid: number, fd: number): number | undefined {
  try {
    const v = fdinfoField(readFileSync(`/proc/${pid}/fdinfo/${fd}`, 'utf8'), 'tty-index');
    return v === undefined ? undefined : Number(v);
  } catch {
    return undefined;
  }
}

function scanHolders(pids: Iterable<number>): Holders {
  const h: Holders = { masters: new Map(), slaves: new Map(), cttys: new Map() };
  for (const pid of pids) {
    if (pid === process.pid) continue;
    let fds: string[];
    try {
      const index = ptsIndex(readStat(pid).ttyNr);
      if (index !== undefined) push(h.cttys, index, pid);
      fds = readdirSync(`/proc/${pid}/fd`);
    } catch {
      continue; // gone, or a kernel thread
    }
    for (const name of fds) {
      const fd = Number(name);
      let link: string;
      try {
        link = readlinkSync(`/proc/${pid}/fd/${fd}`);
      } catch {
        continue;
      }
      if (isMasterLink(link)) {
        const index = masterIndex(pid, fd);
        if (index !== undefined) push(h.masters, index, { pid, fd });
      } else {
        const m = /^\/dev\/pts\/(\d+)$/.exec(link);
        if (m) push(h.slaves, Number(m[1]), { pid, fd });
      }
    }
  }
  return h;
}

function allPids(): number[] {
  return readdirSync('/proc').filter((e) => /^\d+$/.test(e)).map(Number);
}

/** Every process's pty fds and controlling terminals, once per preflight pid set. */
const holdersByPidSet = new WeakMap<ReadonlySet<number>, Holders>();

function holdersFor(pids: ReadonlySet<number>): Holders {
  let h = holdersByPidSet.get(pids);
  if (!h) holdersByPidSet.set(pids, (h = scanHolders(allPids())));
  return h;
}

// ---------------------------------------------------------------- termios2 (x86-64 layout)

const IFLAG = 0;
const OFLAG = 4;
const LFLAG = 12;
const CC = 17;
const V = { EOF: 4, ERASE: 2, KILL: 3, START: 8, STOP: 9, EOL: 11, EOL2: 16 } as const;
const I = { PARMRK: 0o10, ISTRIP: 0o40, INLCR: 0o100, IGNCR: 0o200, ICRNL: 0o400, IUCLC: 0o1000, IXON: 0o2000 } as const;
const L = { ISIG: 0o1, ICANON: 0o2, XCASE: 0o4, ECHO: 0o10, ECHOE: 0o20, ECHOK: 0o40, ECHONL: 0o100, ECHOCTL: 0o1000, ECHOPRT: 0o2000, ECHOKE: 0o4000, IEXTEN: 0o100000 } as const;
const OPOST = 0o1;

const lflag = (t: Uint8Array) => Buffer.from(t).readUInt32LE(LFLAG);
const canonical = (t: Uint8Array) => (lflag(t) & L.ICANON) !== 0;

/**
 * A termios under which received bytes are stored as they are: no echo, no signal characters,
 * no input mapping, and the special characters that would still act (erase, kill, EOF, and
 * start/stop under IXON) moved to byte values absent from `data`. ICANON and IXON stay as they
 * are: switching them makes the kernel reset line state or restart stopped output.
 */
function storingTermios(base: Uint8Array, data: Uint8Array[]): { termios: Buffer; eof: number } {
  const t = Buffer.from(base);
  t.writeUInt32LE(t.readUInt32LE(IFLAG) & ~(I.PARMRK | I.ISTRIP | I.INLCR | I.IGNCR | I.ICRNL | I.IUCLC), IFLAG);
  t.writeUInt32LE(t.readUInt32LE(LFLAG) & ~(L.ISIG | L.XCASE | L.ECHO | L.ECHOE | L.ECHOK | L.ECHONL | L.ECHOCTL | L.ECHOPRT | L.ECHOKE | L.IEXTEN), LFLAG);
  const used = new Set<number>([0x0a]);
  for (const d of data) for (const b of d) used.add(b);
  const free: number[] = [];
  for (let b = 1; b < 256 && free.length < 5; b++) if (!used.has(b)) free.push(b);
  const move = (slot: number) => {
    const b = free.shift();
    if (b !== undefined) t[CC + slot] = b;
  };
  if (canonical(base)) {
    move(V.ERASE);
    move(V.KILL);
    move(V.EOF);
    move(V.EOL);
  }
  if (t.readUInt32LE(IFLAG) & I.IXON) {
    move(V.START);
    move(V.STOP);
  }
  if (free.length === 0 && used.size >= 250) log.warn('terminal input uses almost every byte value: special characters may act while it is queued again');
  return { termios: t, eof: t[CC + V.EOF]! };
}

// ---------------------------------------------------------------- queues

/** Bytes a terminal's reader has not taken yet, as the dump reads them. */
interface Input {
  /** Canonical mode: completed lines as read(2) returns them (an EOF-ended line has no terminator, an empty one is a bare EOF). Otherwise one chunk with every byte. */
  lines: Buffer[];
  /** Canonical mode: the line being typed, not yet ended. */
  partial: Buffer;
}

/** Reads (and so takes) everything queued for the slave's reader through `slave` (O_NONBLOCK). */
function takeInput(slave: number, termios: Uint8Array, into: Input): void {
  const canon = canonical(termios);
  const readAll = (asLines: boolean, out: Buffer[]) => {
    for (let guard = 0; guard < 100_000; guard++) {
      let chunk: Buffer;
      try {
        chunk = k.read(slave, 65536);
      } catch (err) {
        if ((err as { errno?: number }).errno === EAGAIN) return;
        throw err;
      }
      if (chunk.length === 0 && !asLines) return; // VMIN 0: nothing left
      out.push(chunk);
    }
    throw new ProcessError('E_DUMP', 'terminal input does not run dry');
  };
  if (!canon) {
    const chunks: Buffer[] = [];
    readAll(false, chunks);
    const all = Buffer.concat(chunks);
    if (all.length) into.lines.push(all);
    return;
  }
  readAll(true, into.lines);
  // The unfinished line is invisible in canonical mode: leave it for a moment (the reader is
  // frozen) to take it; queueing everything again under ICANON rebuilds the line state.
  const raw = Buffer.from(termios);
  raw.writeUInt32LE(lflag(termios) & ~L.ICANON, LFLAG);
  tty.setattr(slave, raw);
  const rest: Buffer[] = [];
  readAll(false, rest);
  into.partial = Buffer.concat(rest);
}

/** TIOCSTI while the line discipline has room, the rest written through the other end. */
function pushBytes(stiFd: number, otherFd: number, data: Uint8Array): void {
  if (data.length === 0) return;
  const room = Math.max(0, LDISC_ROOM - tty.getInt(stiFd, TIOC.FIONREAD, 'FIONREAD'));
  const direct = data.subarray(0, room);
  const took = tty.sti(stiFd, direct);
  if (took !== direct.length) throw new ProcessError('E_RESTORE', `terminal took ${took} of ${direct.length} bytes`);
  let rest = data.subarray(direct.length);
  for (let tries = 0; rest.length > 0; tries++) {
    try {
      rest = rest.subarray(k.write(otherFd, rest));
    } catch (err) {
      if ((err as { errno?: number }).errno !== EAGAIN || tries > 200) throw err;
      Atomics.wait(new Int32Array(new SharedArrayBuffer(4)), 0, 0, 5);
    }
  }
}

/** Queues `input` for the slave's reader, as it was: the inverse of takeInput. */
function putInput(slave: number, master: number, termios: Uint8Array, input: Input): void {
  if (input.lines.length === 0 && input.partial.length === 0) {
    tty.setattr(slave, termios);
    return;
  }
  const { termios: storing, eof } = storingTermios(termios, [...input.lines, input.partial]);
  const cc = (slot: number) => termios[CC + slot]!;
  const extended = (lflag(termios) & L.IEXTEN) !== 0;
  tty.setattr(slave, storing);
  try {
    for (const line of input.lines) {
      if (!canonical(termios)) {
        pushBytes(slave, master, line);
        continue;
      }
      const last = line.length ? line[line.length - 1]! : -1;
      const ended = last === 0x0a || (last > 0 && (last === cc(V.EOL) || (extended && last === cc(V.EOL2))));
      if (ended && last !== 0x0a) {
        // Ended by EOL or EOL2: that byte is stored with the line; let it end it again.
        const t = Buffer.from(storing);
        t[CC + V.EOL] = last;
        tty.setattr(slave, t);
        pushBytes(slave, master, line);
        tty.setattr(slave, storing);
      } else {
        pushBytes(slave, master, ended ? line : Buffer.concat([line, Buffer.from([eof])]));
      }
    }
    pushBytes(slave, master, input.partial);
  } finally {
    tty.setattr(slave, termios);
  }
}

/** Queues `output` for the master's reader (the master's discipline is always raw). */
function putOutput(master: number, slave: number, termios: Uint8Array, output: Uint8Array): void {
  if (output.length === 0) return;
  // Beyond the master's buffer the bytes go through the slave's write side: no output processing.
  const t = Buffer.from(termios);
  t.writeUInt32LE(t.readUInt32LE(OFLAG) & ~OPOST, OFLAG);
  tty.setattr(slave, t);
  try {
    pushBytes(master, slave, output);
  } finally {
    tty.setattr(slave, termios);
  }
}

const O_PEER = k.O.RDWR | k.O.NOCTTY | k.O.NONBLOCK | k.O.CLOEXEC;

/** A new open file description of the slave, from the master (works while locked too). */
function openPeer(master: number, locked: boolean): number {
  if (locked) tty.setInt(master, TIOC.SPTLCK, 0, 'TIOCSPTLCK');
  try {
    return tty.ioctlArg(master, TIOC.GPTPEER, O_PEER, 'TIOCGPTPEER');
  } finally {
    if (locked) tty.setInt(master, TIOC.SPTLCK, 1, 'TIOCSPTLCK');
  }
}

// ---------------------------------------------------------------- dump

/** Per dump: pty index -> id of its pty record. */
const ptyIds = new WeakMap<DumpContext, Map<number, number>>();

/** A master fd of pty `index` held by a dumped process (a duplicate the caller closes). */
function findMaster(index: number, pids: ReadonlySet<number>): number {
  const m = scanHolders(pids).masters.get(index)?.[0];
  if (!m) throw new ProcessError('E_DUMP', `no dumped process holds the master of /dev/pts/${index}`);
  return takeFd(m.pid, m.fd);
}

function dumpPty(index: number, info: FdInfo, ctx: DumpContext, isMaster: boolean): ImageRecord {
  const master = isMaster ? info.localFd : findMaster(index, ctx.pids);
  try {
    // On a master, termios and window size ioctls act on the slave: one set per pair.
    const termios = tty.getattr(master);
    const winsize = tty.getWinsize(master);
    const packet = tty.getInt(master, TIOC.GPKT, 'TIOCGPKT') !== 0;
    const locked = tty.getInt(master, TIOC.GPTLCK, 'TIOCGPTLCK') !== 0;
    let session: number | undefined;
    try {
      session = tty.getInt(master, TIOC.GSID, 'TIOCGSID');
    } catch (err) {
      if ((err as { errno?: number }).errno !== 25 /* ENOTTY: no session */) throw err;
    }
    const foreground = session === undefined ? 0 : tty.getInt(master, TIOC.GPGRP, 'TIOCGPGRP');
    const peer = openPeer(master, locked);
    const input: Input = { lines: [], partial: Buffer.alloc(0) };
    let output: Buffer = Buffer.alloc(0);
    let exclusive: boolean;
    try {
      exclusive = tty.getInt(peer, TIOC.GEXCL, 'TIOCGEXCL') !== 0;
      // Taken and put back at once, whatever happens in between: a failed dump leaves both
      // queues as they were.
      try {
        const drained = tty.drainMaster(master, packet, MAX_QUEUED);
        output = drained.data;
        if (drained.overflow) throw new ProcessError('E_DUMP', `more than ${MAX_QUEUED} bytes queued on the master of /dev/pts/${index}`, { pid: info.pid, fd: info.fd });
        try {
          takeInput(peer, termios, input);
        } finally {
          putInput(peer, master, termios, input);
        }
      } finally {
        putOutput(master, peer, termios, output);
      }
    } finally {
      closeFd(peer);
    }
    const rec: ImageRecord = {
      kind: 'pty',
      id: ctx.newId(),
      index,
      termios,
      winsize,
      packet,
      locked,
      exclusive,
      input: input.lines,
      inputPartial: input.partial,
      output,
    };
    if (session !== undefined) {
      rec.session = session;
      if (foreground > 0) rec.foreground = foreground;
      rec.controlling = [...ctx.pids].filter((p) => ptsIndex(readStat(p).ttyNr) === index);
    }
    log.debug('pty dumped', { index, input: input.lines.reduce((n, l) => n + l.length, 0) + input.partial.length, output: output.length, session, foreground });
    return rec;
  } finally {
    if (!isMaster) closeFd(master);
  }
}

export const ttyModule: FdObjectModule = {
  kinds: ['pty', 'tty'],

  matches(info) {
    return (info.stat.mode & S_IFMT) === S_IFCHR && devMajor(info.stat.rdev) !== 1 && isTtyDevice(info.stat.rdev);
  },

  preflight(info, pids) {
    const c = classify(info);
    if (c.end === 'other') return [blocker(info, 'tty-device', c.reason)];
    const h = holdersFor(pids);
    const path = `/dev/pts/${c.index}`;
    const blockers: Blocker[] = [];
    const users = [...(h.masters.get(c.index) ?? []), ...(h.slaves.get(c.index) ?? [])].map((x) => x.pid);
    users.push(...(h.cttys.get(c.index) ?? []));
    const outside = [...new Set(users.filter((p) => !pids.has(p)))];
    if (outside.length > 0)
      blockers.push(blocker(info, 'pty-peer-outside', `${path} is also used by pid ${outside.join(', ')} (an end held or its controlling terminal), which is not being handed off; a job started from a login terminal must be detached from it (setsid, stdio redirected) first`));
    if (!(h.masters.get(c.index) ?? []).some((m) => pids.has(m.pid)))
      blockers.push(blocker(info, 'pty-master-outside', `no handed-off process holds the master of ${path}`));
    // A controlling terminal's foreground group must come back with the processes.
    const leader = (h.cttys.get(c.index) ?? []).find((p) => pids.has(p));
    if (leader !== undefined && outside.length === 0) {
      const tpgid = readStat(leader).tpgid;
      const groups = new Set([...pids].map((p) => readStat(p).pgrp));
      if (tpgid > 0 && !groups.has(tpgid)) blockers.push(blocker(info, 'pty-foreground-outside', `the foreground process group ${tpgid} of ${path} is not being handed off`));
    }
    return blockers;
  },

  dump(info, ctx) {
    const c = classify(info);
    if (c.end === 'other') throw new ProcessError('E_DUMP', c.reason, { pid: info.pid, fd: info.fd });
    let ids = ptyIds.get(ctx);
    if (!ids) ptyIds.set(ctx, (ids = new Map()));
    let ptyId = ids.get(c.index);
    if (ptyId === undefined) {
      const rec = dumpPty(c.index, info, ctx, c.end === 'master');
      ptyId = rec.id as number;
      ids.set(c.index, ptyId);
      ctx.emit(rec);
    }
    const id = ctx.newId();
    ctx.emit({ kind: 'tty', id, type: c.end === 'master' ? 'pty-master' : 'pty-slave', index: c.index, pty: ptyId, path: info.link, flags: recordFlags(info.fdinfo.flags) });
    return id;
  },

  restore(record, ctx) {
    if (record.kind === 'pty') throw new ProcessError('E_RESTORE', 'a pty record is restored through its tty records');
    const pty = restoredPty(ptyRecordOf(record, ctx), ctx);
    const flags = record.flags as number;
    let fd: number;
    if (record.type === 'pty-master') {
      // Opening /dev/ptmx again would make another pty: one description per master.
      if (pty.masterHandedOut) throw new ProcessError('E_RESTORE', `two open descriptions of the master of /dev/pts/${pty.index}`);
      pty.masterHandedOut = true;
      fd = k.dup(pty.master);
    } else {
      fd = k.open(`/dev/pts/${pty.index}`, (flags & k.O.ACCMODE) | k.O.NOCTTY | k.O.CLOEXEC | k.O.NONBLOCK);
    }
    applyStatusFlags(fd, flags);
    return fd;
  },
};

// ---------------------------------------------------------------- restore

interface RestoredPty {
  index: number;
  master: number;
  /** The restorer's own slave description (controlling terminal, queues). */
  slave: number;
  masterHandedOut: boolean;
}

function ptyRecordOf(record: ImageRecord, ctx: RestoreContext): ImageRecord {
  const ptyId = record.pty as number | undefined;
  // Format 1.0 named the tty record but nothing wrote it: without its pair there is no state.
  if (ptyId === undefined) throw new ProcessError('E_RESTORE', `terminal ${record.path as string} (tty ${record.id as number}) has no pty record: it was not written by a tool that records terminals`);
  const rec = ctx.byId(ptyId);
  if (!rec || rec.kind !== 'pty') throw new ProcessError('E_RESTORE', `tty ${record.id as number} refers to missing pty ${ptyId}`);
  return rec;
}

/** Pids holding /dev/pts/N now (for the error when the index is taken). */
function holdersOf(index: number): number[] {
  const h = scanHolders(allPids());
  return [...new Set([...(h.masters.get(index) ?? []), ...(h.slaves.get(index) ?? [])].map((x) => x.pid))];
}

const sleepMs = (ms: number) => Atomics.wait(new Int32Array(new SharedArrayBuffer(4)), 0, 0, ms);

/** /dev/ptmx opened until the kernel hands out `index` (it gives the lowest free one). */
function openPtmxAt(index: number): number {
  // The pty of a process killed just before may take a moment to be released.
  for (let i = 0; i < 100 && existsSync(`/dev/pts/${index}`); i++) sleepMs(10);
  const spare: number[] = [];
  try {
    for (let attempt = 0; attempt <= index + 1; attempt++) {
      const fd = k.open('/dev/ptmx', k.O.RDWR | k.O.NOCTTY | k.O.CLOEXEC);
      const got = tty.getInt(fd, TIOC.GPTN, 'TIOCGPTN');
      if (got === index) return fd;
      spare.push(fd);
      if (got > index) break;
    }
    const who = holdersOf(index);
    throw new ProcessError('E_PTY_IN_USE', `pty index ${index} (/dev/pts/${index}) is in use${who.length ? ` by pid ${who.join(', ')}` : ''}`, { index, holders: who });
  } finally {
    for (const fd of spare) closeFd(fd);
  }
}

function restoredPty(rec: ImageRecord, ctx: RestoreContext): RestoredPty {
  return ctx.shared(`pty:${rec.id as number}`, () => createPty(rec, ctx));
}

function createPty(rec: ImageRecord, ctx: RestoreContext): RestoredPty {
  const index = rec.index as number;
  const master = openPtmxAt(index);
  let slave = -1;
  const close = () => {
    if (slave >= 0) closeFd(slave);
    closeFd(master);
  };
  try {
    tty.setInt(master, TIOC.SPTLCK, 0, 'TIOCSPTLCK');
    slave = k.open(`/dev/pts/${index}`, O_PEER);
    const termios = rec.termios as Uint8Array;
    tty.setWinsize(master, rec.winsize as tty.Winsize);
    tty.setattr(slave, termios);
    putOutput(master, slave, termios, (rec.output as Uint8Array | undefined) ?? new Uint8Array(0));
    const lines = ((rec.input as Uint8Array[] | undefined) ?? []).map((l) => Buffer.from(l));
    putInput(slave, master, termios, { lines, partial: Buffer.from((rec.inputPartial as Uint8Array | undefined) ?? []) });
    if (rec.packet) tty.setInt(master, TIOC.PKT, 1, 'TIOCPKT');
  } catch (err) {
    close();
    throw err;
  }
  ctx.onAbort(close);
  // Locking and exclusive mode would stop the other slave descriptions from being opened:
  // they come last, once every process holds its fds.
  ctx.atFinish(() => {
    if (rec.exclusive) tty.ioctlArg(slave, TIOC.EXCL, 0, 'TIOCEXCL');
    if (rec.locked) tty.setInt(master, TIOC.SPTLCK, 1, 'TIOCSPTLCK');
    close();
  });
  log.debug('pty restored', { index });
  return { index, master, slave, masterHandedOut: false };
}

// ---------------------------------------------------------------- controlling terminals

/** The pty record that is the controlling terminal of session `sid`, if any. */
export function ptyOfSession(records: readonly ImageRecord[], sid: number): ImageRecord | undefined {
  return records.find((r) => r.kind === 'pty' && r.session === sid);
}

/** The restorer's slave fd of the restored pty (created now if no fd asked for it yet). */
export function restoredSlave(rec: ImageRecord, ctx: RestoreContext): number {
  return restoredPty(rec, ctx).slave;
}

/** TIOCSPGRP's argument: the foreground group recorded for the pty, or undefined. */
export function foregroundOf(rec: ImageRecord): number | undefined {
  return typeof rec.foreground === 'number' ? rec.foreground : undefined;
}
