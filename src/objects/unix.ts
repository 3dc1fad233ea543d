// Unix domain sockets (stream, dgram, seqpacket), dump and restore side by side.
//
// Dump: type, state and peer come from sock_diag (the peer is only visible there, by inode);
// the bound name from getsockname; queued messages are copied without being consumed
// (SO_PEEK_OFF + MSG_PEEK, message boundaries kept). Restore: two connected ends (peers both in
// the dumped set) become one socketpair, each end's queue refilled by writing from the other
// end; bound and listening sockets are bound again (a stale socket file is replaced).
// Not handled, reported as blockers in preflight: a peer outside the dumped set, connections
// not yet accepted by a listener, SCM_RIGHTS descriptors in flight.
// Known loss: an accepted/connected pair comes back as a socketpair, so getsockname/getpeername
// of those two ends no longer show the listener's path.
import { lstatSync, readdirSync, readlinkSync, unlinkSync } from 'node:fs';
import { BlockedError, NetworkError, SyscallError, type Blocker } from '../errors.js';
import { logger } from '../log.js';
import { closeFd } from '../native/fd.js';
import * as S from '../native/socket.js';
import { fileFlags } from './tcp.js';
import type { UnixRecord as UnixRecordV1 } from '../format/records.js';
import type { DumpContext, FdInfo, FdObjectModule, ImageRecord, RestoreContext } from './types.js';

const log = logger('unix');

const O_NONBLOCK = 0o4000;

export type UnixRecord = UnixRecordV1 & ImageRecord;

const TYPES: Record<number, UnixRecord['type']> = { [S.SOCK_STREAM]: 'stream', [S.SOCK_DGRAM]: 'dgram', [S.SOCK_SEQPACKET]: 'seqpacket' };
const TYPE_NUMBERS = { stream: S.SOCK_STREAM, dgram: S.SOCK_DGRAM, seqpacket: S.SOCK_SEQPACKET } as const;
const STATES: Record<number, string> = { 1: 'connected', 7: 'unconnected', 10: 'listening', 8: 'disconnecting' };

function isUnix(info: FdInfo): boolean {
  if (!info.link.startsWith('socket:')) return false;
  const domain = S.tryGetsockoptInt(info.localFd, S.SOL_SOCKET, S.SO.DOMAIN);
  const type = S.tryGetsockoptInt(info.localFd, S.SOL_SOCKET, S.SO.TYPE);
  return domain === S.AF_UNIX && type !== undefined && type in TYPES;
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

const ownersCache = new WeakMap<ReadonlySet<number>, Map<number, { pid: number; fd: number }>>();

function ownersOf(pids: ReadonlySet<number>): Map<number, { pid: number; fd: number }> {
  let owners = ownersCache.get(pids);
  if (!owners) ownersCache.set(pids, (owners = socketOwners(pids)));
  return owners;
}

function describeName(name: Buffer | undefined): string {
  if (!name?.length) return 'unnamed';
  return name[0] === 0 ? `@${name.subarray(1).toString()}` : name.toString().replace(/\0.*$/, '');
}

function diagOf(info: FdInfo): S.UnixDiag {
  const diag = S.unixDiag(info.localFd, info.stat.ino);
  if (!diag) throw new NetworkError('E_SOCKET', `unix socket inode ${info.stat.ino} not found through sock_diag`, { pid: info.pid, fd: info.fd });
  return diag;
}

function peekQueue(fd: number): S.UnixQueuePeek {
  for (let size = 1 << 20; ; size *= 4) {
    const peek = S.unixPeekQueue(fd, size);
    if (!peek.truncated || size >= 1 << 28) return peek;
  }
}

function preflight(info: FdInfo, pids: ReadonlySet<number>): Blocker[] {
  const diag = diagOf(info);
  const address = describeName(diag.name);
  const blockers: Blocker[] = [];
  const at = { pid: info.pid, fd: info.fd, address };
  if (diag.state === 10 && diag.rqueue > 0) {
    blockers.push({ code: 'unix-accept-queue', ...at, reason: `listening unix socket has ${diag.rqueue} connection(s) not yet accepted` });
  }
  if (diag.peerIno && diag.state !== 10) {
    const owner = ownersOf(pids).get(diag.peerIno);
    if (!owner) {
      blockers.push({ code: 'unix-peer-outside', ...at, reason: `peer socket (inode ${diag.peerIno}) belongs to no process being handed off (or is not accepted yet)` });
    }
  }
  if (diag.state !== 10) {
    const peek = peekQueue(info.localFd);
    if (peek.passedFds > 0) blockers.push({ code: 'unix-scm-rights', ...at, reason: `${peek.passedFds} file descriptor(s) in flight (SCM_RIGHTS) in the receive queue` });
  }
  return blockers;
}

/** Object ids by socket inode, per dump, so each end of a pair can name the other. */
const idsByDump = new WeakMap<DumpContext, Map<number, number>>();

function idFor(ctx: DumpContext, ino: number): number {
  let ids = idsByDump.get(ctx);
  if (!ids) idsByDump.set(ctx, (ids = new Map()));
  let id = ids.get(ino);
  if (id === undefined) ids.set(ino, (id = ctx.newId()));
  return id;
}

function dump(info: FdInfo, ctx: DumpContext): number {
  const fd = info.localFd;
  const blockers = preflight(info, ctx.pids);
  if (blockers.length) throw new BlockedError(blockers);
  const diag = diagOf(info);
  const type = TYPES[diag.type] ?? TYPES[S.getsockoptInt(fd, S.SOL_SOCKET, S.SO.TYPE)]!;
  const self = S.getsockname(fd);
  const record: UnixRecord = {
    kind: 'unix',
    id: idFor(ctx, info.stat.ino),
    type,
    state: STATES[diag.state] ?? `state-${diag.state}`,
    queue: [],
    flags: fileFlags(info),
    shutdown: diag.shutdown & 3,
  };
  if (self.family === 'unix' && self.path !== undefined) record.address = { path: self.path };
  else if (self.family === 'unix' && self.abstract !== undefined) record.address = { abstract: self.abstract };
  if (diag.state === 10) record.backlog = diag.wqueue;
  else {
    if (diag.peerIno) record.peer = idFor(ctx, diag.peerIno);
    record.queue = peekQueue(fd).messages.map((data) => ({ data, fds: [] }));
  }
  ctx.emit(record);
  log.debug('dumped', { pid: info.pid, fd: info.fd, id: record.id, type, state: record.state, peer: record.peer, queued: record.queue.length });
  return record.id;
}

// ---------------------------------------------------------------- restore

function encodeAddress(a: NonNullable<UnixRecord['address']>): Buffer {
  return 'path' in a ? S.encodeSockAddr({ family: 'unix', path: a.path }) : S.encodeSockAddr({ family: 'unix', abstract: Buffer.from(a.abstract) });
}

/** Writes `messages` into the socket at the other end of `from`, so they queue for reading there. */
function refill(from: number, messages: UnixRecord['queue']): void {
  const total = messages.reduce((n, m) => n + m.data.length, 0);
  // Queued bytes count against the writer's send buffer; make room so the writes never block.
  if (total > 0) S.setsockoptInt(from, S.SOL_SOCKET, S.SO.SNDBUFFORCE, Math.max(total * 2 + 65536 * messages.length, 212992));
  for (const m of messages) {
    if (m.data.length === 0) S.sendAll(from, Buffer.alloc(0));
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

function restorePair(record: UnixRecord, ctx: RestoreContext): number {
  const peer = ctx.byId(record.peer!) as UnixRecord | undefined;
  if (!peer || peer.kind !== 'unix') throw new NetworkError('E_SOCKET', `unix socket ${record.id} names peer ${record.peer}, which is not in the image`, { id: record.id });
  const [a, b] = record.id < peer.id ? [record, peer] : [peer, record];
  const ends = ctx.shared(`unix-pair:${a.id}:${b.id}`, () => {
    const [fa, fb] = S.socketpair(S.AF_UNIX, TYPE_NUMBERS[a.type]);
    try {
      // Each end's queue is written from the other end; shutdowns last (they stop writes).
      refill(fb, a.queue);
      refill(fa, b.queue);
      applyShutdown(fa, a.shutdown);
      applyShutdown(fb, b.shutdown);
      finishFlags(fa, a.flags);
      finishFlags(fb, b.flags);
    } catch (err) {
      closeFd(fa);
      closeFd(fb);
      throw err;
    }
    ctx.onAbort(() => {
      for (const fd of [fa, fb]) {
        try {
          closeFd(fd);
        } catch {
          /* already closed */
        }
      }
    });
    return [fa, fb] as const;
  });
  return record.id === a.id ? ends[0] : ends[1];
}

/** Removes a socket file left by the dead owner, never anything else. */
function clearStaleSocketFile(path: string): void {
  try {
    if (lstatSync(path).isSocket()) unlinkSync(path);
  } catch {
    /* nothing there */
  }
}

function restoreNamed(record: UnixRecord, ctx: RestoreContext): number {
  const fd = S.socket(S.AF_UNIX, TYPE_NUMBERS[record.type]);
  try {
    if (record.address) {
      if ('path' in record.address) clearStaleSocketFile(record.address.path);
      S.bindSocket(fd, encodeAddress(record.address));
    }
    if (record.state === 'listening') S.listen(fd, record.backlog ?? 128);
    else if (record.queue.length) {
      // Datagrams queued on a bound socket: send them to it again from a throwaway socket.
      if (!record.address) throw new NetworkError('E_SOCKET', 'queued data on an unnamed, unconnected unix socket cannot be restored', { id: record.id });
      const sender = S.socket(S.AF_UNIX, TYPE_NUMBERS[record.type]);
      try {
        S.connectSocket(sender, encodeAddress(record.address));
        refill(sender, record.queue);
      } finally {
        closeFd(sender);
      }
    }
    applyShutdown(fd, record.shutdown);
    finishFlags(fd, record.flags);
  } catch (err) {
    closeFd(fd);
    throw err;
  }
  ctx.onAbort(() => {
    try {
      closeFd(fd);
    } catch {
      /* already closed */
    }
  });
  return fd;
}

function restore(raw: ImageRecord, ctx: RestoreContext): number {
  const record = raw as UnixRecord;
  try {
    if (record.peer !== undefined) return restorePair(record, ctx);
    if (record.state === 'connected') throw new NetworkError('E_SOCKET', `connected unix socket ${record.id} has no peer in the image`, { id: record.id });
    return restoreNamed(record, ctx);
  } catch (err) {
    if (err instanceof SyscallError) throw new NetworkError('E_SOCKET', `cannot restore unix socket ${record.id}: ${err.message}`, { id: record.id }, err);
    throw err;
  }
}

export const unixModule: FdObjectModule = { kinds: ['unix'], matches: isUnix, preflight, dump, restore };
export default unixModule;
