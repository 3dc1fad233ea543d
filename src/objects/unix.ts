// Unix domain sockets (stream, dgram, seqpacket), dump and restore side by side.
//
// Dump: type, state and peer come from sock_diag (the peer is only visible there, by inode);
// the bound name from getsockname; queued messages are copied one by one without being
// consumed (SO_PEEK_OFF + MSG_PEEK, message boundaries kept). Descriptors in flight
// (SCM_RIGHTS) come with the peek: the kernel hands a peek duplicates of them (scm_fp_dup),
// and each is dumped as an object of its own through the core (ctx.dumpFd), so a message
// records which objects travel with it. Restore: two connected ends (peers both dumped, held
// by a process or themselves in flight) become one socketpair, each end's queue refilled by
// writing from the other end, descriptors sent again with their message; bound and listening
// sockets are bound again (a stale socket file is replaced). A socket found again while its
// own queue is being filled (it is in flight in that queue: a cycle) is handed out as it is.
// A peer outside the dumped set is a blocker, unless the dump was told what to do
// (ObjectOptions.unixOutside): 'closed' gives back a socket whose peer has gone (its queue,
// then EOF; writes fail with EPIPE, ECONNREFUSED for datagrams); 'reconnect' connects a
// datagram socket to the peer's name again and falls back to 'closed' for stream and seqpacket
// sockets (their peer's half of the connection cannot be made again) and for a peer without a
// name or no longer there. A connected socket whose peer has already closed comes back the same
// way as 'closed'.
// Known losses: an accepted/connected pair comes back as a socketpair, so getsockname/
// getpeername of those two ends no longer show the listener's path; datagrams queued on a
// named socket come from an unnamed sender after restore; on a stream, descriptors arrive with
// the first byte queued since the previous descriptors (a peek cannot tell where, among the
// bytes before them, the piece that carried them starts); a zero-length datagram that was
// already peeked once is invisible to peeking at an offset (kernel quirk) and is lost.
// Still blockers: connections not yet accepted by a listener.
import { lstatSync, readdirSync, readlinkSync, unlinkSync } from 'node:fs';
import { BlockedError, NetworkError, SyscallError, type Blocker } from '../errors.js';
import { logger } from '../log.js';
import { closeFd, takeFd } from '../native/fd.js';
import * as S from '../native/socket.js';
import { fileFlags } from './tcp.js';
import type { UnixRecord as UnixRecordV1 } from '../format/records.js';
import type { DumpContext, FdInfo, FdObjectModule, ImageRecord, PreflightContext, RestoreContext } from './types.js';

const log = logger('unix');

const O_NONBLOCK = 0o4000;

export type UnixRecord = UnixRecordV1 & ImageRecord;
type UnixAddress = NonNullable<UnixRecord['address']>;

const TYPES: Record<number, UnixRecord['type']> = { [S.SOCK_STREAM]: 'stream', [S.SOCK_DGRAM]: 'dgram', [S.SOCK_SEQPACKET]: 'seqpacket' };
const TYPE_NUMBERS = { stream: S.SOCK_STREAM, dgram: S.SOCK_DGRAM, seqpacket: S.SOCK_SEQPACKET } as const;
const STATES: Record<number, string> = { 1: 'connected', 7: 'unconnected', 10: 'listening', 8: 'disconnecting' };
const TCP_ESTABLISHED = 1;
const TCP_LISTEN = 10;

function isUnixFd(fd: number): boolean {
  const domain = S.tryGetsockoptInt(fd, S.SOL_SOCKET, S.SO.DOMAIN);
  const type = S.tryGetsockoptInt(fd, S.SOL_SOCKET, S.SO.TYPE);
  return domain === S.AF_UNIX && type !== undefined && type in TYPES;
}

function isUnix(info: FdInfo): boolean {
  return info.link.startsWith('socket:') && isUnixFd(info.localFd);
}

/** Socket inodes owned by each pid of the set: socket:[INO] links under /proc/PID/fd. */
function socketOwners(pids: ReadonlySet<number>): Map<number, { pid: number; fd: number }> {
  const owners = new Map<number, { pid: number; fd: number }>();
  for (const pid of pids) {
    let fds: string[];
    try {
      fds = readdirSync(`/proc/${pid}/fd`);
    } catch {
      continue;
    }
    for (const name of fds) {
      try {
        const m = /^socket:\[(\d+)\]$/.exec(readlinkSync(`/proc/${pid}/fd/${name}`));
        if (m && !owners.has(Number(m[1]))) owners.set(Number(m[1]), { pid, fd: Number(name) });
      } catch {
        /* closed meanwhile */
      }
    }
  }
  return owners;
}

function isTcpFd(fd: number): boolean {
  const domain = S.tryGetsockoptInt(fd, S.SOL_SOCKET, S.SO.DOMAIN);
  return (domain === S.AF_INET || domain === S.AF_INET6) && S.tryGetsockoptInt(fd, S.SOL_SOCKET, S.SO.TYPE) === S.SOCK_STREAM;
}

/** Inode of the socket behind a local fd (socket:[INO]). */
function inodeOf(fd: number): number | undefined {
  try {
    const m = /^socket:\[(\d+)\]$/.exec(readlinkSync(`/proc/self/fd/${fd}`));
    return m ? Number(m[1]) : undefined;
  } catch {
    return undefined;
  }
}

function closeAll(fds: Iterable<number>): void {
  for (const fd of fds) {
    try {
      closeFd(fd);
    } catch {
      /* already closed */
    }
  }
}

/**
 * Every unix socket inode the pids reach: held by one of them, or in flight (SCM_RIGHTS) in
 * the queue of one they reach. A peer among them comes back with the dump; any other is outside.
 */
function reachableSockets(pids: ReadonlySet<number>): Set<number> {
  const owners = socketOwners(pids);
  const known = new Set(owners.keys());
  const todo: number[] = [];
  for (const { pid, fd } of owners.values()) {
    try {
      const local = takeFd(pid, fd);
      if (isUnixFd(local)) todo.push(local);
      else closeFd(local);
    } catch {
      /* closed meanwhile */
    }
  }
  const open: number[] = [...todo];
  try {
    for (let fd = todo.pop(); fd !== undefined; fd = todo.pop()) {
      let messages: QueuedMessage[];
      try {
        messages = readQueue(fd);
      } catch {
        continue; // not readable here (a listener...): the module's own checks report it
      }
      for (const m of messages) {
        open.push(...m.fds);
        for (const passed of m.fds) {
          const ino = inodeOf(passed);
          if (ino === undefined || known.has(ino) || !isUnixFd(passed)) continue;
          known.add(ino);
          todo.push(passed);
        }
      }
    }
  } finally {
    closeAll(open);
  }
  return known;
}

const reachableCache = new WeakMap<ReadonlySet<number>, Set<number>>();

function reachableFrom(pids: ReadonlySet<number>): Set<number> {
  let known = reachableCache.get(pids);
  if (!known) reachableCache.set(pids, (known = reachableSockets(pids)));
  return known;
}

function describeName(name: Buffer | undefined): string {
  if (!name?.length) return 'unnamed';
  return name[0] === 0 ? `@${name.subarray(1).toString()}` : name.toString().replace(/\0.*$/, '');
}

function diagOf(fd: number, ino: number, at: { pid: number; fd: number }): S.UnixDiag {
  const diag = S.unixDiag(fd, ino);
  if (!diag) throw new NetworkError('E_SOCKET', `unix socket inode ${ino} not found through sock_diag`, at);
  return diag;
}

interface QueuedMessage {
  data: Buffer;
  /** Local duplicates of the descriptors that travel with the message (the caller closes them). */
  fds: number[];
}

/** A socket's queue can be peeked: datagram sockets always, the others once connected. */
function hasReadableQueue(fd: number, state?: number): boolean {
  const type = S.getsockoptInt(fd, S.SOL_SOCKET, S.SO.TYPE);
  if (state === TCP_LISTEN) return false;
  return type === S.SOCK_DGRAM || state === undefined || state === TCP_ESTABLISHED;
}

/**
 * The receive queue of unix socket `fd`, message by message, left in place. A stream's bytes
 * are cut only where descriptors travel (the kernel's stream peek stops after the piece that
 * carries them); datagrams and seqpackets keep their boundaries.
 */
function readQueue(fd: number): QueuedMessage[] {
  const type = S.getsockoptInt(fd, S.SOL_SOCKET, S.SO.TYPE);
  const out: QueuedMessage[] = [];
  try {
    if (type === S.SOCK_STREAM) {
      const queued = S.ioctlInt(fd, S.SIOCINQ);
      for (let offset = 0; offset < queued; ) {
        const m = S.peekMessage(fd, offset, queued - offset);
        if (!m || m.data.length === 0) break;
        if (m.truncatedControl) throw new NetworkError('E_SOCKET', 'unix stream: descriptors in flight did not fit one peek', { offset });
        const last = out[out.length - 1];
        // A plain piece right after a plain piece: only the size of a peek cut them apart.
        if (last && last.fds.length === 0 && m.fds.length === 0) last.data = Buffer.concat([last.data, m.data]);
        else out.push({ data: m.data, fds: m.fds });
        offset += m.data.length;
      }
    } else {
      let capacity = 1 << 16;
      for (let offset = 0, count = 0; ; count++) {
        if (count > 1 << 20) throw new NetworkError('E_SOCKET', 'unix socket: more than 2^20 queued messages', {});
        let m = S.peekMessage(fd, offset, capacity);
        if (m && m.length > m.data.length) {
          closeAll(m.fds);
          capacity = m.length;
          m = S.peekMessage(fd, offset, capacity);
        }
        if (!m) break;
        if (m.truncatedControl || m.length > m.data.length) {
          closeAll(m.fds);
          throw new NetworkError('E_SOCKET', 'unix socket: a queued message or its descriptors did not fit one peek', { offset });
        }
        out.push({ data: m.data, fds: m.fds });
        offset += m.length;
      }
    }
  } catch (err) {
    closeAll(out.flatMap((m) => m.fds));
    throw err;
  }
  return out;
}

/**
 * Connections waiting in a listening unix socket's accept queue (0 for anything else). The
 * kernel cannot hand an accepted connection back to a queue, so the dump lets the processes
 * accept them before it freezes (src/dump: drainAcceptQueues), as for TCP.
 */
export function unixBacklog(info: FdInfo): number {
  if (!isUnix(info)) return 0;
  const diag = diagOf(info.localFd, info.stat.ino, info);
  return diag.state === TCP_LISTEN ? diag.rqueue : 0;
}

/** Inodes whose in-flight checks already ran in this preflight (cycles end here). */
const inspected = new WeakMap<PreflightContext, Set<number>>();

function preflight(info: FdInfo, pids: ReadonlySet<number>, ctx?: PreflightContext): Blocker[] {
  const options = ctx?.options ?? {};
  const diag = diagOf(info.localFd, info.stat.ino, info);
  const address = describeName(diag.name);
  const blockers: Blocker[] = [];
  const at = { pid: info.pid, fd: info.fd, address };
  // A non-empty accept queue is drained before the freeze (unixBacklog, src/dump), not blocked here.
  if (diag.peerIno && diag.state !== TCP_LISTEN && !reachableFrom(pids).has(diag.peerIno) && !options.unixOutside) {
    blockers.push({
      code: 'unix-peer-outside',
      ...at,
      reason: `peer socket (inode ${diag.peerIno}${peerName(info.localFd)}) belongs to no process being handed off (or is not accepted yet); --unix-outside=closed|reconnect restores it without its peer`,
    });
  }
  if (!hasReadableQueue(info.localFd, diag.state)) return blockers;
  let seen = ctx && inspected.get(ctx);
  if (ctx && !seen) inspected.set(ctx, (seen = new Set()));
  if (seen?.has(info.stat.ino)) return blockers;
  seen?.add(info.stat.ino);
  const messages = readQueue(info.localFd);
  try {
    const inFlight = messages.flatMap((m) => m.fds);
    if (inFlight.length && !ctx) {
      blockers.push({ code: 'unix-scm-rights', ...at, reason: `${inFlight.length} descriptor(s) in flight (SCM_RIGHTS) in the receive queue, not checked (no preflight context)` });
    }
    for (const fd of inFlight) {
      if (isTcpFd(fd)) blockers.push({ code: 'unix-scm-rights-tcp', ...at, reason: 'a TCP socket in flight (SCM_RIGHTS) in the receive queue: the network lock and repair mode cover only connections a process holds' });
    }
    for (const fd of ctx ? inFlight.filter((f) => !isTcpFd(f)) : []) {
      for (const b of ctx!.inFlight(fd)) {
        blockers.push({ ...b, code: b.code, pid: info.pid, fd: info.fd, reason: `descriptor in flight in the receive queue of unix socket ${address}: ${b.reason}` });
      }
    }
  } finally {
    closeAll(messages.flatMap((m) => m.fds));
  }
  return blockers;
}

function peerName(fd: number): string {
  try {
    const peer = S.getpeername(fd);
    if (peer?.family === 'unix' && (peer.path !== undefined || peer.abstract !== undefined)) return `, ${peer.path ?? `@${peer.abstract!.toString()}`}`;
  } catch {
    /* no name */
  }
  return '';
}

/** Per dump: object ids by socket inode (each end of a pair names the other) and inodes dumped. */
const dumps = new WeakMap<DumpContext, { ids: Map<number, number>; done: Set<number> }>();

function dumpState(ctx: DumpContext) {
  let state = dumps.get(ctx);
  if (!state) dumps.set(ctx, (state = { ids: new Map(), done: new Set() }));
  return state;
}

function idFor(ctx: DumpContext, ino: number): number {
  const { ids } = dumpState(ctx);
  let id = ids.get(ino);
  if (id === undefined) ids.set(ino, (id = ctx.newId()));
  return id;
}

function addressOf(name: S.SockAddr | null): UnixAddress | undefined {
  if (name?.family !== 'unix') return undefined;
  if (name.path !== undefined) return { path: name.path };
  if (name.abstract !== undefined) return { abstract: name.abstract };
  return undefined;
}

function dump(info: FdInfo, ctx: DumpContext): number {
  const fd = info.localFd;
  const state = dumpState(ctx);
  const id = idFor(ctx, info.stat.ino);
  // Met again (in flight in a queue being dumped, or its own): one record per socket.
  if (state.done.has(info.stat.ino)) return id;
  state.done.add(info.stat.ino);
  const diag = diagOf(fd, info.stat.ino, info);
  const outside = diag.peerIno !== 0 && diag.state !== TCP_LISTEN && !reachableFrom(ctx.pids).has(diag.peerIno);
  if (diag.state === TCP_LISTEN && diag.rqueue > 0) throw new BlockedError([{ code: 'unix-accept-queue', pid: info.pid, fd: info.fd, reason: `${diag.rqueue} connection(s) came to this listening unix socket between the accept-queue drain and the freeze; try again` }]);
  if (outside && !ctx.options.unixOutside) {
    throw new BlockedError([{ code: 'unix-peer-outside', pid: info.pid, fd: info.fd, reason: `peer socket (inode ${diag.peerIno}${peerName(fd)}) belongs to no process being handed off` }]);
  }
  const type = TYPES[diag.type] ?? TYPES[S.getsockoptInt(fd, S.SOL_SOCKET, S.SO.TYPE)]!;
  const record: UnixRecord = {
    kind: 'unix',
    id,
    type,
    state: STATES[diag.state] ?? `state-${diag.state}`,
    queue: [],
    flags: fileFlags(info),
    shutdown: diag.shutdown & 3,
  };
  const self = addressOf(S.getsockname(fd));
  if (self) record.address = self;
  if (diag.state === TCP_LISTEN) record.backlog = diag.wqueue;
  else {
    if (outside) {
      const peerAddress = addressOf(S.getpeername(fd));
      record.peerOutside = { restore: ctx.options.unixOutside!, ...(peerAddress ? { address: peerAddress } : {}) };
      log.warn('peer outside the dumped set: restored without it', { pid: info.pid, fd: info.fd, peerIno: diag.peerIno, restore: ctx.options.unixOutside });
    } else if (diag.peerIno) record.peer = idFor(ctx, diag.peerIno);
    if (hasReadableQueue(fd, diag.state)) {
      const messages = readQueue(fd);
      let handed = 0;
      try {
        for (const m of messages) {
          const ids: number[] = [];
          for (const passed of m.fds) {
            if (isTcpFd(passed)) throw new BlockedError([{ code: 'unix-scm-rights-tcp', pid: info.pid, fd: info.fd, reason: 'a TCP socket in flight (SCM_RIGHTS) in the receive queue' }]);
            handed++;
            ids.push(ctx.dumpFd(passed));
          }
          record.queue.push({ data: m.data, fds: ids });
        }
      } finally {
        // Descriptors not handed to the core yet (a dump that failed half-way).
        closeAll(messages.flatMap((m) => m.fds).slice(handed));
      }
    }
  }
  ctx.emit(record);
  log.debug('dumped', { pid: info.pid, fd: info.fd, id, type, state: record.state, peer: record.peer, queued: record.queue.length, inFlight: record.queue.reduce((n, m) => n + m.fds.length, 0) });
  return id;
}

// ---------------------------------------------------------------- restore

function encodeAddress(a: UnixAddress): Buffer {
  return 'path' in a ? S.encodeSockAddr({ family: 'unix', path: a.path }) : S.encodeSockAddr({ family: 'unix', abstract: Buffer.from(a.abstract) });
}

function describeAddress(a: UnixAddress): string {
  return 'path' in a ? a.path : `@${Buffer.from(a.abstract).toString()}`;
}

/** Writes `messages` into the socket at the other end of `from`, so they queue for reading there. */
function refill(from: number, messages: UnixRecord['queue'], ctx: RestoreContext): void {
  const total = messages.reduce((n, m) => n + m.data.length, 0);
  // Queued bytes count against the writer's send buffer; make room so the writes never block.
  if (total > 0 || messages.length) S.setsockoptInt(from, S.SOL_SOCKET, S.SO.SNDBUFFORCE, Math.max(total * 2 + 65536 * messages.length, 212992));
  for (const m of messages) {
    // Each descriptor is the object's restored fd; the kernel takes its own reference.
    const fds = m.fds.map((id) => ctx.objectFd(id));
    if (fds.length || m.data.length === 0) S.sendWithFds(from, m.data, fds);
    else S.sendAll(from, m.data);
  }
}

function applyShutdown(fd: number, bits: number): void {
  if ((bits & 3) === 3) S.shutdown(fd, S.SHUT_RDWR);
  else if (bits & 2) S.shutdown(fd, S.SHUT_WR);
  else if (bits & 1) S.shutdown(fd, S.SHUT_RD);
}

function finishFlags(fd: number, flags: number): void {
  if (flags & O_NONBLOCK) S.setStatusFlags(fd, flags);
}

function closeOnAbort(ctx: RestoreContext, fds: number[]): void {
  ctx.onAbort(() => closeAll(fds));
}

/**
 * The restored object under `key`, created once and filled once however many fds share it. A
 * socket met again while its queue is being filled (an fd in flight in its own queue) is handed
 * out as it is.
 */
function restoreOnce<T>(ctx: RestoreContext, key: string, create: () => T, fill: (value: T) => void): T {
  const state = ctx.shared(key, () => ({ value: create(), filled: false }));
  if (!state.filled) {
    state.filled = true;
    fill(state.value);
  }
  return state.value;
}

function restorePair(record: UnixRecord, ctx: RestoreContext): number {
  const peer = ctx.byId(record.peer!) as UnixRecord | undefined;
  if (!peer || peer.kind !== 'unix') throw new NetworkError('E_SOCKET', `unix socket ${record.id} names peer ${record.peer}, which is not in the image`, { id: record.id });
  const [a, b] = record.id < peer.id ? [record, peer] : [peer, record];
  const [fa, fb] = restoreOnce(
    ctx,
    `unix-pair:${a.id}:${b.id}`,
    () => {
      const ends = S.socketpair(S.AF_UNIX, TYPE_NUMBERS[a.type]);
      closeOnAbort(ctx, ends);
      return ends;
    },
    ([fa, fb]) => {
      // Each end's queue is written from the other end; shutdowns last (they stop writes).
      refill(fb, a.queue, ctx);
      refill(fa, b.queue, ctx);
      applyShutdown(fa, a.shutdown);
      applyShutdown(fb, b.shutdown);
      finishFlags(fa, a.flags);
      finishFlags(fb, b.flags);
    },
  );
  return record.id === a.id ? fa : fb;
}

/** Removes a socket file left by the dead owner, never anything else. */
function clearStaleSocketFile(path: string): void {
  try {
    if (lstatSync(path).isSocket()) unlinkSync(path);
  } catch {
    /* nothing there */
  }
}

function bindTo(fd: number, address: UnixAddress): void {
  if ('path' in address) clearStaleSocketFile(address.path);
  S.bindSocket(fd, encodeAddress(address));
}

/**
 * A connected socket whose peer has gone: its queue, then EOF (stream, seqpacket) or nothing
 * (dgram); writes fail. Built as a socketpair whose other end is closed once it has written
 * the queue.
 */
function restoreClosed(record: UnixRecord, ctx: RestoreContext): number {
  return restoreOnce(
    ctx,
    `unix:${record.id}`,
    () => {
      const [fd, other] = S.socketpair(S.AF_UNIX, TYPE_NUMBERS[record.type]);
      closeOnAbort(ctx, [fd]);
      return { fd, other };
    },
    ({ fd, other }) => {
      try {
        if (record.address) bindTo(fd, record.address);
        refill(other, record.queue, ctx);
        applyShutdown(fd, record.shutdown);
        finishFlags(fd, record.flags);
      } finally {
        closeFd(other);
      }
    },
  ).fd;
}

/** A datagram socket connected again to its outside peer's name. */
function restoreReconnected(record: UnixRecord, ctx: RestoreContext, peer: UnixAddress): number {
  return restoreOnce(ctx, `unix:${record.id}`, () => newSocket(ctx, S.SOCK_DGRAM), (fd) => {
    // The queue goes in before the connect: a connected datagram socket takes datagrams from
    // its peer only, and connecting it again would purge what it holds. Sending to it needs a
    // name: an unnamed socket with queued datagrams gets an automatic one (autobind).
    if (record.address) bindTo(fd, record.address);
    else if (record.queue.length) S.bindSocket(fd, Buffer.from([S.AF_UNIX, 0]));
    if (record.queue.length) fillFromOutside(fd, record, ctx);
    S.connectSocket(fd, encodeAddress(peer));
    applyShutdown(fd, record.shutdown);
    finishFlags(fd, record.flags);
  });
}

/** A fresh unix socket of `type`, closed if the restore fails. */
function newSocket(ctx: RestoreContext, type: number): number {
  const fd = S.socket(S.AF_UNIX, type);
  closeOnAbort(ctx, [fd]);
  return fd;
}

/** Queues `record.queue` on the named socket `fd` by sending to its name from a throwaway socket. */
function fillFromOutside(fd: number, record: UnixRecord, ctx: RestoreContext): void {
  const sender = S.socket(S.AF_UNIX, TYPE_NUMBERS[record.type]);
  try {
    const name = S.getsockname(fd);
    S.connectSocket(sender, S.encodeSockAddr(name));
    refill(sender, record.queue, ctx);
  } finally {
    closeFd(sender);
  }
}

function restoreNamed(record: UnixRecord, ctx: RestoreContext): number {
  return restoreOnce(ctx, `unix:${record.id}`, () => newSocket(ctx, TYPE_NUMBERS[record.type]), (fd) => {
    if (record.address) bindTo(fd, record.address);
    if (record.state === 'listening') S.listen(fd, record.backlog ?? 128);
    else if (record.queue.length) {
      // Datagrams queued on a bound socket: send them to it again from a throwaway socket.
      if (!record.address) throw new NetworkError('E_SOCKET', 'queued data on an unnamed, unconnected unix socket cannot be restored', { id: record.id });
      fillFromOutside(fd, record, ctx);
    }
    applyShutdown(fd, record.shutdown);
    finishFlags(fd, record.flags);
  });
}

function restore(raw: ImageRecord, ctx: RestoreContext): number {
  const record = raw as UnixRecord;
  try {
    if (record.peer !== undefined) return restorePair(record, ctx);
    const outside = record.peerOutside;
    if (outside?.restore === 'reconnect' && record.type === 'dgram' && outside.address) {
      if (acceptsUs(outside.address)) return restoreReconnected(record, ctx, outside.address);
      log.warn('outside peer not there (or connected elsewhere): restored as closed', { id: record.id, peer: describeAddress(outside.address) });
      return restoreClosed(record, ctx);
    }
    if (outside) {
      if (outside.restore === 'reconnect') log.warn('cannot reconnect this unix socket: restored as closed', { id: record.id, type: record.type, peer: outside.address ? describeAddress(outside.address) : 'unnamed' });
      return restoreClosed(record, ctx);
    }
    // Connected, but its peer had closed already: the same as a peer that has gone.
    if (record.state === 'connected' || record.state === 'disconnecting') return restoreClosed(record, ctx);
    return restoreNamed(record, ctx);
  } catch (err) {
    if (err instanceof SyscallError) throw new NetworkError('E_SOCKET', `cannot restore unix socket ${record.id}: ${err.message}`, { id: record.id }, err);
    throw err;
  }
}

/**
 * Whether a datagram socket can connect to `peer` now: not when the name is gone (ENOENT),
 * nobody listens on it (ECONNREFUSED) or the peer is connected to another socket (EPERM; the
 * dead original, typically).
 */
function acceptsUs(peer: UnixAddress): boolean {
  const probe = S.socket(S.AF_UNIX, S.SOCK_DGRAM);
  try {
    S.connectSocket(probe, encodeAddress(peer));
    return true;
  } catch (err) {
    if (err instanceof SyscallError && [1, 2, 111].includes(err.errno)) return false;
    throw err;
  } finally {
    closeFd(probe);
  }
}

export const unixModule: FdObjectModule = { kinds: ['unix'], matches: isUnix, preflight, dump, restore };
export default unixModule;
