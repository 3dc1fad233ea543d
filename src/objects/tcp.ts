// TCP sockets, dump and restore side by side.
//
// Dump (the network lock must already drop the connection's packets): an established socket is
// put in repair mode through the dumper's duplicate of the fd (same socket), then its sequence
// numbers, both queues (recv MSG_PEEK in repair mode), negotiated options, window and timestamp
// clock are read. The ORIGINAL socket is left in repair mode on purpose: a socket in repair mode
// closes silently (no FIN, no RST) when its owner is killed, and sends nothing meanwhile. Repair
// mode does not stop the kernel from ACKing data that still arrives, which is why the lock must
// already be in place: data ACKed after the queues were copied would be lost. If the dump is
// aborted, repair is switched off again so the untouched process carries on.
//
// Restore: a new socket in repair mode gets the sequence numbers, binds to the recorded local
// address (repair mode forces address reuse), "connects" without a handshake, gets the options,
// both queues and the window back. Repair is switched off through ctx.atFinish, before the network
// unlock; the kernel then retransmits the unacked part of the send queue and the peer resends
// what we never acknowledged: nothing is lost or repeated.
//
// Half-closed and closing connections (FIN_WAIT1/2, CLOSE_WAIT, LAST_ACK, CLOSING): a FIN
// takes one sequence number. At dump the kernel's write_seq and rcv_nxt already include the FINs
// sent and received, SIOCOUTQ/SIOCOUTQNSD count our FIN while it is unacked/unsent, SIOCINQ
// never counts the peer's; the record keeps data only (sendSeq = snd_una, recvSeq = first
// unread byte) and the state says where the FINs are. Repair mode can only build an
// ESTABLISHED socket, so the restore replays the FIN history on it, in the order it happened:
// our FIN by shutdown(SHUT_WR) with the send queue selected (counted as sent, nothing leaves,
// retransmitted after the unlock if the peer never acknowledged it), the peer's FIN and the
// peer's ACK of our FIN by packets injected through a raw socket to the local address (marked:
// the network lock lets them through `lo`, and drops what the socket answers).
//
// Listeners: a connection still in an accept queue cannot be put back into one. Before the
// freeze the dump drops new SYNs to the listeners' ports and lets the processes accept what is
// queued (drainListeners); what is still queued after the wait is a blocker.
import { BlockedError, NetworkError, SyscallError, type Blocker } from '../errors.js';
import { logger } from '../log.js';
import { readFileSync } from 'node:fs';
import { closeFd, takeFd } from '../native/fd.js';
import * as S from '../native/socket.js';
import { INJECT_MARK } from '../handoff/netlock.js';
import type { InetAddress, SocketOptions, TcpRecord as TcpRecordV1, TcpRepair } from '../format/records.js';
import type { DumpContext, FdInfo, FdObjectModule, ImageRecord, RestoreContext } from './types.js';

const log = logger('tcp');

const O_NONBLOCK = 0o4000;
const O_CLOEXEC = 0o2000000;
const SOCK_NONBLOCK = 0o4000;
const O_ACCMODE_AND_STATUS = ~O_CLOEXEC;

// The record shapes are the format's (src/format/records.ts); the intersection with
// ImageRecord lets them pass through the generic object-module contract.
export type { InetAddress, SocketOptions };
export type TcpRepairRecord = TcpRepair;
export type TcpRecord = TcpRecordV1 & ImageRecord;

// ---------------------------------------------------------------- socket options (shared with udp)

type IntOption = { key: string; level: number; name: number; bool?: boolean; tcpOnly?: boolean; v6Only?: boolean; v4Only?: boolean; beforeBind?: boolean };

/** Integer/boolean options read and restored as they are. Buffers and linger are handled apart. */
const INT_OPTIONS: IntOption[] = [
  { key: 'reuseAddr', level: S.SOL_SOCKET, name: S.SO.REUSEADDR, bool: true, beforeBind: true },
  { key: 'reusePort', level: S.SOL_SOCKET, name: S.SO.REUSEPORT, bool: true, beforeBind: true },
  { key: 'v6only', level: S.IPPROTO_IPV6, name: S.IPV6_V6ONLY, bool: true, v6Only: true, beforeBind: true },
  { key: 'freebind', level: S.IPPROTO_IP, name: S.IP_FREEBIND, bool: true, beforeBind: true },
  { key: 'keepalive', level: S.SOL_SOCKET, name: S.SO.KEEPALIVE, bool: true },
  { key: 'oobInline', level: S.SOL_SOCKET, name: S.SO.OOBINLINE, bool: true },
  { key: 'priority', level: S.SOL_SOCKET, name: S.SO.PRIORITY },
  { key: 'mark', level: S.SOL_SOCKET, name: S.SO.MARK },
  { key: 'rcvLowat', level: S.SOL_SOCKET, name: S.SO.RCVLOWAT },
  { key: 'tos', level: S.IPPROTO_IP, name: S.IP_TOS, v4Only: true },
  { key: 'ttl', level: S.IPPROTO_IP, name: S.IP_TTL, v4Only: true },
  { key: 'tclass', level: S.IPPROTO_IPV6, name: S.IPV6_TCLASS, v6Only: true },
  { key: 'nodelay', level: S.IPPROTO_TCP, name: S.TCP.NODELAY, bool: true, tcpOnly: true },
  { key: 'cork', level: S.IPPROTO_TCP, name: S.TCP.CORK, bool: true, tcpOnly: true },
  { key: 'keepIdle', level: S.IPPROTO_TCP, name: S.TCP.KEEPIDLE, tcpOnly: true },
  { key: 'keepIntvl', level: S.IPPROTO_TCP, name: S.TCP.KEEPINTVL, tcpOnly: true },
  { key: 'keepCnt', level: S.IPPROTO_TCP, name: S.TCP.KEEPCNT, tcpOnly: true },
  { key: 'userTimeout', level: S.IPPROTO_TCP, name: S.TCP.USER_TIMEOUT, tcpOnly: true },
  { key: 'deferAccept', level: S.IPPROTO_TCP, name: S.TCP.DEFER_ACCEPT, tcpOnly: true },
  { key: 'notsentLowat', level: S.IPPROTO_TCP, name: S.TCP.NOTSENT_LOWAT, tcpOnly: true },
  { key: 'fastOpen', level: S.IPPROTO_TCP, name: S.TCP.FASTOPEN, tcpOnly: true },
];

function applies(o: IntOption, family: 'inet' | 'inet6', tcp: boolean): boolean {
  return !(o.tcpOnly && !tcp) && !(o.v6Only && family !== 'inet6') && !(o.v4Only && family !== 'inet');
}

/** Reads the options of an inet socket (TCP or UDP). */
export function readInetOptions(fd: number, family: 'inet' | 'inet6', tcp: boolean): SocketOptions {
  const opts: SocketOptions = {};
  for (const o of INT_OPTIONS) {
    if (!applies(o, family, tcp)) continue;
    const v = S.tryGetsockoptInt(fd, o.level, o.name);
    if (v !== undefined) opts[o.key] = o.bool ? v !== 0 : v;
  }
  // The kernel reports twice what was asked (its bookkeeping overhead); we store what it reports.
  opts.sndBuf = S.getsockoptInt(fd, S.SOL_SOCKET, S.SO.SNDBUF);
  opts.rcvBuf = S.getsockoptInt(fd, S.SOL_SOCKET, S.SO.RCVBUF);
  const linger = S.getsockopt(fd, S.SOL_SOCKET, S.SO.LINGER, 8);
  opts.linger = { onoff: linger.readInt32LE(0) !== 0, seconds: linger.readInt32LE(4) };
  if (tcp) {
    const cc = S.getsockopt(fd, S.IPPROTO_TCP, S.TCP.CONGESTION, 16);
    const end = cc.indexOf(0);
    opts.congestion = cc.subarray(0, end < 0 ? cc.length : end).toString();
  }
  return opts;
}

/** Applies recorded options; `phase` selects those needed before bind or the rest. */
export function applyInetOptions(fd: number, family: 'inet' | 'inet6', tcp: boolean, opts: SocketOptions, phase: 'beforeBind' | 'buffers' | 'rest'): void {
  if (phase === 'buffers') {
    // *BUFFORCE ignores the sysctl caps (we are root); the kernel doubles the value again.
    if (typeof opts.sndBuf === 'number') setForced(fd, S.SO.SNDBUFFORCE, S.SO.SNDBUF, opts.sndBuf >> 1);
    if (typeof opts.rcvBuf === 'number') setForced(fd, S.SO.RCVBUFFORCE, S.SO.RCVBUF, opts.rcvBuf >> 1);
    return;
  }
  for (const o of INT_OPTIONS) {
    if (!applies(o, family, tcp) || Boolean(o.beforeBind) !== (phase === 'beforeBind')) continue;
    const v = opts[o.key];
    if (v === undefined) continue;
    const value = typeof v === 'boolean' ? Number(v) : Number(v);
    if (S.tryGetsockoptInt(fd, o.level, o.name) === value) continue;
    S.setsockoptInt(fd, o.level, o.name, value);
  }
  if (phase === 'rest') {
    if (opts.linger) {
      const b = Buffer.alloc(8);
      b.writeInt32LE(opts.linger.onoff ? 1 : 0, 0);
      b.writeInt32LE(opts.linger.seconds, 4);
      S.setsockopt(fd, S.SOL_SOCKET, S.SO.LINGER, b);
    }
    if (tcp && typeof opts.congestion === 'string' && opts.congestion) {
      try {
        S.setsockopt(fd, S.IPPROTO_TCP, S.TCP.CONGESTION, Buffer.from(opts.congestion));
      } catch (err) {
        // A congestion module missing on the new kernel is not worth failing the restore.
        log.warn('congestion control not available, keeping the default', { name: opts.congestion, error: String(err) });
      }
    }
  }
}

function setForced(fd: number, force: number, plain: number, value: number): void {
  try {
    S.setsockoptInt(fd, S.SOL_SOCKET, force, value);
  } catch {
    S.setsockoptInt(fd, S.SOL_SOCKET, plain, value);
  }
}

// ---------------------------------------------------------------- helpers

export function socketIdentity(fd: number): { domain: number; type: number; protocol: number } | undefined {
  const domain = S.tryGetsockoptInt(fd, S.SOL_SOCKET, S.SO.DOMAIN);
  const type = S.tryGetsockoptInt(fd, S.SOL_SOCKET, S.SO.TYPE);
  const protocol = S.tryGetsockoptInt(fd, S.SOL_SOCKET, S.SO.PROTOCOL);
  if (domain === undefined || type === undefined || protocol === undefined) return undefined;
  return { domain, type, protocol };
}

export function familyOf(domain: number): 'inet' | 'inet6' {
  return domain === S.AF_INET6 ? 'inet6' : 'inet';
}

export function inetAddr(a: S.SockAddr | null, family: 'inet' | 'inet6'): InetAddress {
  if (!a || a.family === 'unix') return { address: family === 'inet6' ? '::' : '0.0.0.0', port: 0 };
  return { address: a.address, port: a.port };
}

export function toSockAddr(family: 'inet' | 'inet6', a: InetAddress): Buffer {
  return S.encodeSockAddr({ family, address: a.address, port: a.port });
}

/** O_* status flags of the open file (close-on-exec belongs to the fd, not the object). */
export function fileFlags(info: FdInfo): number {
  return info.fdinfo.flags & O_ACCMODE_AND_STATUS;
}

export function socketTypeFlags(flags: number): number {
  return flags & O_NONBLOCK ? SOCK_NONBLOCK : 0;
}

/** Runs on dump abort when the core offers it (DumpContext.onAbort), so the original survives. */
function onDumpAbort(ctx: DumpContext, fn: () => void): void {
  const hook = (ctx as DumpContext & { onAbort?: (f: () => void) => void }).onAbort;
  if (typeof hook === 'function') hook.call(ctx, fn);
}

/** States where we sent a FIN (write_seq counts it). */
const FIN_SENT = new Set(['FIN_WAIT1', 'FIN_WAIT2', 'CLOSING', 'LAST_ACK']);
/** States where the peer's FIN was received (rcv_nxt counts it). */
const FIN_RECEIVED = new Set(['CLOSE_WAIT', 'CLOSING', 'LAST_ACK']);
/** sk_shutdown bits: no more receptions, no more transmissions. */
const RCV_SHUTDOWN = 1;
const SEND_SHUTDOWN = 2;
/** Connected states restored through TCP_REPAIR. */
const CONNECTED = new Set(['ESTABLISHED', ...FIN_SENT, ...FIN_RECEIVED]);
const SUPPORTED_STATES = new Set([...CONNECTED, 'LISTEN', 'CLOSE']);
const TCP_REPAIR_QUEUE = 20;
const TCP_NO_QUEUE = 0;

function isTcp(info: FdInfo): boolean {
  if (!info.link.startsWith('socket:')) return false;
  const id = socketIdentity(info.localFd);
  return !!id && (id.domain === S.AF_INET || id.domain === S.AF_INET6) && id.type === S.SOCK_STREAM && id.protocol === S.IPPROTO_TCP;
}

function where(info: FdInfo, fd: number): string {
  try {
    const local = S.getsockname(fd);
    const peer = S.getpeername(fd);
    const fmt = (a: S.SockAddr | null) => (a && a.family !== 'unix' ? (a.family === 'inet6' ? `[${a.address}]:${a.port}` : `${a.address}:${a.port}`) : '*');
    return `${fmt(local)} -> ${fmt(peer)}`;
  } catch {
    return info.link;
  }
}

// ---------------------------------------------------------------- dump

function preflight(info: FdInfo): Blocker[] {
  const ti = S.tcpInfo(info.localFd);
  const state = S.TCP_STATES[ti.state] ?? `STATE_${ti.state}`;
  const address = where(info, info.localFd);
  if (!SUPPORTED_STATES.has(state)) {
    return [{ code: 'tcp-state', pid: info.pid, fd: info.fd, address, reason: `TCP socket in state ${state} cannot be handed off (only connected, half-closed, listening and unconnected sockets)` }];
  }
  // A connection that ended (both FINs, or a reset) while its owner still holds unread data:
  // the kernel no longer tells its peer (getpeername refuses in CLOSE), so nothing can rebuild
  // it; a fresh socket would lose the bytes.
  if (state === 'CLOSE') {
    const unread = S.ioctlInt(info.localFd, S.SIOCINQ);
    if (unread > 0) return [{ code: 'tcp-state', pid: info.pid, fd: info.fd, address, reason: `closed TCP connection still holds ${unread} unread byte(s); it cannot be rebuilt (let the process read them first)` }];
  }
  // A non-empty accept queue is no blocker here: the dump drains it before the freeze.
  return [];
}

function acceptQueueBlocker(info: FdInfo, queued: number, synRecv: number): Blocker {
  return { code: 'tcp-accept-queue', pid: info.pid, fd: info.fd, address: where(info, info.localFd), reason: `listening socket still has ${queued} connection(s) in its accept queue and ${synRecv} half-open, not accepted in time; they would be lost` };
}

function dump(info: FdInfo, ctx: DumpContext): number {
  const fd = info.localFd;
  const blockers = preflight(info);
  if (blockers.length) throw new BlockedError(blockers);
  const id = socketIdentity(fd)!;
  const family = familyOf(id.domain);
  const ti = S.tcpInfo(fd);
  let state: string = S.TCP_STATES[ti.state]!;
  const record: TcpRecord = {
    kind: 'tcp',
    id: ctx.newId(),
    family,
    state,
    local: inetAddr(S.getsockname(fd), family),
    remote: inetAddr(S.getpeername(fd), family),
    options: readInetOptions(fd, family, true),
    flags: fileFlags(info),
  };
  if (state === 'LISTEN') {
    record.backlog = ti.sacked;
    // Only a race with the drain before the freeze leaves connections here.
    if (ti.unacked > 0) throw new BlockedError([acceptQueueBlocker(info, ti.unacked, 0)]);
  }
  if (CONNECTED.has(state)) {
    try {
      S.tcpRepair(fd, S.TCP_REPAIR_ON);
    } catch (err) {
      throw new NetworkError('E_TCP_REPAIR', `cannot put the socket in repair mode (needs CAP_NET_ADMIN): ${String(err)}`, { pid: info.pid, fd: info.fd }, err);
    }
    try {
      const st = S.tcpRepairDump(fd);
      // Read together with the queues: a segment that slipped in before the lock may have
      // moved the state since the preflight (ESTABLISHED -> CLOSE_WAIT...).
      const held = S.TCP_STATES[st.state] ?? `STATE_${st.state}`;
      if (!CONNECTED.has(held)) throw new BlockedError([{ code: 'tcp-state', pid: info.pid, fd: info.fd, address: where(info, fd), reason: `connection went to state ${held} while being dumped` }]);
      state = record.state = held;
      // shutdown(SHUT_RD) sends nothing and no TCP state shows it (poll does); our own
      // shutdown(SHUT_WR) is always in the state (FIN_WAIT1 onwards).
      record.shutdown = (S.tcpRcvShutdown(fd) ? RCV_SHUTDOWN : 0) | (FIN_SENT.has(state) ? SEND_SHUTDOWN : 0);
      // Our FIN is counted by SIOCOUTQ until acknowledged and by SIOCOUTQNSD until sent (it is
      // the last sequence number: anything unsent means it is unsent too); its skb has no data.
      // st.sendSeq (write_seq - SIOCOUTQ) is snd_una either way. The peer's FIN is in rcv_nxt
      // but not in SIOCINQ, so the first unread byte is one lower than st.recvSeq.
      const finPending = FIN_SENT.has(state) && state !== 'FIN_WAIT2';
      const sendLen = finPending ? st.sendLen - 1 : st.sendLen;
      const unsentLen = finPending && st.unsentLen > 0 ? st.unsentLen - 1 : st.unsentLen;
      const recvSeq = FIN_RECEIVED.has(state) ? (st.recvSeq - 1) >>> 0 : st.recvSeq;
      const sendQueue = S.tcpPeekQueue(fd, S.TCP_SEND_QUEUE, sendLen);
      const recvQueue = S.tcpPeekQueue(fd, S.TCP_RECV_QUEUE, st.recvLen);
      if (sendQueue.length !== sendLen || recvQueue.length !== st.recvLen) {
        throw new NetworkError('E_TCP_REPAIR', `queue copy incomplete (send ${sendQueue.length}/${sendLen}, recv ${recvQueue.length}/${st.recvLen})`, { pid: info.pid, fd: info.fd });
      }
      if (!st.window) throw new NetworkError('E_TCP_REPAIR', 'kernel lacks TCP_REPAIR_WINDOW (4.8+)', { pid: info.pid, fd: info.fd });
      record.repair = {
        sendSeq: st.sendSeq,
        recvSeq,
        sendQueue,
        recvQueue,
        unsentBytes: unsentLen,
        mss: st.mss,
        sndWscale: st.sndWscale,
        rcvWscale: st.rcvWscale,
        sackOk: (st.options & S.TCPI_OPT_SACK) !== 0,
        timestamps: (st.options & S.TCPI_OPT_TIMESTAMPS) !== 0,
        ...((st.options & S.TCPI_OPT_TIMESTAMPS) !== 0 ? { tsOffset: st.timestamp } : {}),
        window: st.window,
      };
      // Window scaling is on only when both sides offered it; the kernel reports 0/0 otherwise.
      if (!(st.options & S.TCPI_OPT_WSCALE)) record.repair.sndWscale = record.repair.rcvWscale = 0;
    } catch (err) {
      S.tcpRepair(fd, S.TCP_REPAIR_OFF_NO_WP);
      throw err;
    }
    // The core may have closed its duplicate by then: take the fd from the frozen owner again.
    onDumpAbort(ctx, () => {
      try {
        const again = takeFd(info.pid, info.fd);
        try {
          S.tcpRepair(again, S.TCP_REPAIR_OFF);
        } finally {
          closeFd(again);
        }
      } catch (err) {
        log.error('could not switch repair off on the original socket after an aborted dump', { pid: info.pid, fd: info.fd, error: String(err) });
      }
    });
  }
  ctx.emit(record);
  log.debug('dumped', { pid: info.pid, fd: info.fd, state, local: record.local, remote: record.remote, send: record.repair?.sendQueue.length, recv: record.repair?.recvQueue.length });
  return record.id;
}

// ---------------------------------------------------------------- restore

const after = (a: number, b: number) => ((b - a) | 0) < 0;

/** What the repair calls restore: the ESTABLISHED connection the FIN history is replayed on. */
function repairStateOf(r: TcpRepairRecord, state: string): S.TcpRepairState {
  const options = (r.sackOk ? S.TCPI_OPT_SACK : 0) | (r.timestamps ? S.TCPI_OPT_TIMESTAMPS : 0) | (r.sndWscale || r.rcvWscale ? S.TCPI_OPT_WSCALE : 0);
  // FIN_WAIT2: our FIN, already acknowledged, takes the sequence number just before snd_una.
  const sendSeq = state === 'FIN_WAIT2' ? (r.sendSeq - 1) >>> 0 : r.sendSeq;
  let window = r.window;
  if (FIN_RECEIVED.has(state)) {
    // Until the peer's FIN is injected, rcv_nxt is one short of what it was at dump, and the
    // kernel refuses a window update point beyond rcv_nxt: move it back, same right edge.
    const fin = (r.recvSeq + r.recvQueue.length) >>> 0;
    if (after(window.rcvWup, fin)) window = { ...window, rcvWup: fin, rcvWnd: window.rcvWnd + ((window.rcvWup - fin) >>> 0) };
  }
  return {
    state: 1,
    sendSeq,
    recvSeq: r.recvSeq,
    sendLen: r.sendQueue.length,
    unsentLen: r.unsentBytes,
    recvLen: r.recvQueue.length,
    mss: r.mss,
    sndWscale: r.sndWscale,
    rcvWscale: r.rcvWscale,
    options,
    timestamp: r.tsOffset ?? 0,
    window,
  };
}

// ---------------------------------------------------------------- FIN history

const SOCK_RAW = 3;
const IPPROTO_RAW = 255;
const TH_FIN = 0x01;
const TH_ACK = 0x10;

/** IPv4-mapped IPv6 connections (::ffff:a.b.c.d) travel as IPv4 packets. */
function wireAddress(address: string): { v4: boolean; bytes: Buffer; text: string } {
  const mapped = /^::ffff:(\d+\.\d+\.\d+\.\d+)$/i.exec(address);
  const text = mapped ? mapped[1]! : address;
  if (/^\d+\.\d+\.\d+\.\d+$/.test(text)) return { v4: true, bytes: S.encodeSockAddr({ family: 'inet', address: text, port: 0 }).subarray(4, 8), text };
  return { v4: false, bytes: S.encodeSockAddr({ family: 'inet6', address: text, port: 0 }).subarray(8, 24), text };
}

function checksum(...parts: Buffer[]): number {
  const b = Buffer.concat(parts);
  let sum = 0;
  for (let i = 0; i + 1 < b.length; i += 2) sum += b.readUInt16BE(i);
  if (b.length & 1) sum += b[b.length - 1]! << 8;
  while (sum > 0xffff) sum = (sum & 0xffff) + (sum >>> 16);
  return ~sum & 0xffff;
}

/**
 * Injects a segment from the peer (ACK, with FIN when `fin`) into the restored socket: a raw
 * packet to the local address, which never leaves the host. No timestamp option: the socket's
 * PAWS state is empty after repair and must not be seeded with a made-up peer clock.
 */
function injectFromPeer(record: TcpRecord, seq: number, ack: number, fin: boolean): void {
  const r = record.repair!;
  const src = wireAddress(record.remote.address);
  const dst = wireAddress(record.local.address);
  const tcp = Buffer.alloc(20);
  tcp.writeUInt16BE(record.remote.port, 0);
  tcp.writeUInt16BE(record.local.port, 2);
  tcp.writeUInt32BE(seq >>> 0, 4);
  tcp.writeUInt32BE(ack >>> 0, 8);
  tcp[12] = 5 << 4;
  tcp[13] = TH_ACK | (fin ? TH_FIN : 0);
  // The peer's window as it advertised it (scaled down, rounded down: never more than it gave).
  tcp.writeUInt16BE(Math.min(0xffff, Math.floor(r.window.sndWnd / 2 ** r.sndWscale)), 14);
  let ip: Buffer;
  if (src.v4) {
    ip = Buffer.alloc(20);
    ip[0] = 0x45;
    ip.writeUInt16BE(40, 2);
    ip[8] = 64;
    ip[9] = S.IPPROTO_TCP;
    src.bytes.copy(ip, 12);
    dst.bytes.copy(ip, 16);
    tcp.writeUInt16BE(checksum(src.bytes, dst.bytes, Buffer.from([0, S.IPPROTO_TCP, 0, 20]), tcp), 16);
  } else {
    ip = Buffer.alloc(40);
    ip.writeUInt32BE(0x60000000, 0);
    ip.writeUInt16BE(20, 4);
    ip[6] = S.IPPROTO_TCP;
    ip[7] = 64;
    src.bytes.copy(ip, 8);
    dst.bytes.copy(ip, 24);
    tcp.writeUInt16BE(checksum(src.bytes, dst.bytes, Buffer.from([0, 0, 0, 20, 0, 0, 0, S.IPPROTO_TCP]), tcp), 16);
  }
  // IPPROTO_RAW: we write the IP header (the peer's address as source); the kernel routes by
  // the connected destination, a local address, so the packet loops back through `lo`.
  const raw = S.socket(src.v4 ? S.AF_INET : S.AF_INET6, SOCK_RAW, IPPROTO_RAW);
  try {
    S.setsockoptInt(raw, S.SOL_SOCKET, S.SO.MARK, INJECT_MARK);
    const scope = record.local.address.includes('%') ? record.local.address.slice(record.local.address.indexOf('%')) : '';
    S.connectSocket(raw, S.encodeSockAddr({ family: src.v4 ? 'inet' : 'inet6', address: dst.text + (src.v4 ? '' : scope), port: 0 }));
    S.sendAll(raw, Buffer.concat([ip, tcp]));
  } finally {
    closeFd(raw);
  }
}

/** shutdown(SHUT_WR) in repair mode with the send queue selected: the FIN counts as sent, nothing leaves. */
function queueOurFin(fd: number): void {
  S.setsockoptInt(fd, S.IPPROTO_TCP, TCP_REPAIR_QUEUE, S.TCP_SEND_QUEUE);
  try {
    S.shutdown(fd, S.SHUT_WR);
  } finally {
    S.setsockoptInt(fd, S.IPPROTO_TCP, TCP_REPAIR_QUEUE, TCP_NO_QUEUE);
  }
}

const pause = new Int32Array(new SharedArrayBuffer(4));

/** The injected segments are processed in softirq context, normally before send() returns. */
function awaitState(fd: number, want: string, details: Record<string, unknown>): void {
  for (let waited = 0; ; waited += 5) {
    const now = S.TCP_STATES[S.tcpInfo(fd).state];
    if (now === want) return;
    if (waited >= 2000) throw new NetworkError('E_TCP_REPAIR', `half-closed connection came back in state ${now}, not ${want} (an injected segment was dropped: a firewall on lo?)`, details);
    Atomics.wait(pause, 0, 0, 5);
  }
}

/**
 * Replays, on the ESTABLISHED socket that repair mode built, the FINs that brought the
 * connection to its recorded state, in the order they happened.
 */
function replayFins(fd: number, record: TcpRecord, details: Record<string, unknown>): void {
  const r = record.repair!;
  const state = record.state;
  const rcvNxt = (r.recvSeq + r.recvQueue.length) >>> 0;
  // FIN_WAIT1 / FIN_WAIT2 / CLOSING: our FIN came first.
  if (state === 'FIN_WAIT1' || state === 'FIN_WAIT2' || state === 'CLOSING') queueOurFin(fd);
  if (FIN_RECEIVED.has(state)) {
    // Acknowledging only what the peer had acknowledged: in CLOSING it never saw our FIN.
    injectFromPeer(record, rcvNxt, r.sendSeq, true);
    awaitState(fd, state === 'CLOSING' ? 'CLOSING' : 'CLOSE_WAIT', details);
  }
  // LAST_ACK: the peer's FIN came first, then ours.
  if (state === 'LAST_ACK') queueOurFin(fd);
  // FIN_WAIT2: the peer acknowledged our FIN (r.sendSeq is the sequence number after it).
  if (state === 'FIN_WAIT2') injectFromPeer(record, rcvNxt, r.sendSeq, false);
  awaitState(fd, state, details);
}

function restore(raw: ImageRecord, ctx: RestoreContext): number {
  const record = raw as TcpRecord;
  const domain = record.family === 'inet6' ? S.AF_INET6 : S.AF_INET;
  const fd = S.socket(domain, S.SOCK_STREAM | socketTypeFlags(record.flags), S.IPPROTO_TCP);
  const details = { id: record.id, local: record.local, remote: record.remote };
  try {
    if (CONNECTED.has(record.state)) {
      if (!record.repair) throw new NetworkError('E_TCP_REPAIR', `${record.state} TCP record without repair state`, details);
      const st = repairStateOf(record.repair, record.state);
      // Options first: repair mode forces address reuse, and setting SO_REUSEADDR afterwards
      // would take that back (bind then collides with the restored listener's port).
      applyInetOptions(fd, record.family, true, record.options, 'beforeBind');
      S.tcpRepair(fd, S.TCP_REPAIR_ON);
      applyInetOptions(fd, record.family, true, record.options, 'buffers');
      S.tcpRepairSetSeqs(fd, st);
      // Repair mode forces address reuse for bind, and connect() skips the handshake.
      S.bindSocket(fd, toSockAddr(record.family, record.local));
      S.connectSocket(fd, toSockAddr(record.family, record.remote));
      S.tcpRepairRestore(fd, st, record.repair.sendQueue, record.repair.recvQueue);
      if (record.state !== 'ESTABLISHED') replayFins(fd, record, details);
      applyInetOptions(fd, record.family, true, record.options, 'rest');
      ctx.atFinish(() => {
        S.tcpRepair(fd, S.TCP_REPAIR_OFF);
        // Leaving repair resets sk_reuse to "no reuse": put SO_REUSEADDR back as recorded.
        if (record.options.reuseAddr) S.setsockoptInt(fd, S.SOL_SOCKET, S.SO.REUSEADDR, 1);
        // The owner's shutdown(SHUT_RD) (a peer's FIN sets the same bit: replayed above). On TCP
        // it only marks the socket: reads return end of stream, nothing is sent.
        if ((record.shutdown ?? 0) & RCV_SHUTDOWN && !FIN_RECEIVED.has(record.state)) S.shutdown(fd, S.SHUT_RD);
        log.debug('repair off', details);
      });
    } else {
      applyInetOptions(fd, record.family, true, record.options, 'beforeBind');
      applyInetOptions(fd, record.family, true, record.options, 'buffers');
      if (record.local.port !== 0 || record.state === 'LISTEN') S.bindSocket(fd, toSockAddr(record.family, record.local));
      if (record.state === 'LISTEN') S.listen(fd, record.backlog ?? 128);
      applyInetOptions(fd, record.family, true, record.options, 'rest');
    }
  } catch (err) {
    closeFd(fd);
    if (err instanceof SyscallError) throw new NetworkError('E_TCP_REPAIR', `cannot restore TCP socket ${record.local.address}:${record.local.port} -> ${record.remote.address}:${record.remote.port}: ${err.message}`, details, err);
    throw err;
  }
  ctx.onAbort(() => {
    try {
      closeFd(fd);
    } catch {
      /* already closed by the core */
    }
  });
  log.debug('restored', { ...details, state: record.state, fd });
  return fd;
}

export const tcpModule: FdObjectModule = {
  kinds: ['tcp'],
  matches: isTcp,
  preflight: (info) => preflight(info),
  dump,
  restore,
};

export default tcpModule;

/**
 * What the network lock must cover for this fd before its socket is read: an established
 * connection (both directions), or a listener's port (a SYN meanwhile gets no RST).
 */
export function lockEntry(info: FdInfo): { connection?: { local: InetAddress; remote: InetAddress }; port?: number } | undefined {
  if (!isTcp(info)) return undefined;
  const state = S.TCP_STATES[S.tcpInfo(info.localFd).state];
  const local = S.getsockname(info.localFd);
  if (!local || local.family === 'unix') return undefined;
  const family = local.family;
  if (state === 'LISTEN') return { port: local.port };
  const peer = S.getpeername(info.localFd);
  if (!peer || peer.family === 'unix') return undefined;
  return { connection: { local: inetAddr(local, family), remote: inetAddr(peer, family) } };
}

// ---------------------------------------------------------------- listeners before the freeze

/** The port of a listening TCP socket, or undefined for anything else. */
export function listeningPort(info: FdInfo): number | undefined {
  if (!isTcp(info) || S.TCP_STATES[S.tcpInfo(info.localFd).state] !== 'LISTEN') return undefined;
  const local = S.getsockname(info.localFd);
  return local.family === 'unix' ? undefined : local.port;
}

/** Half-open connection requests (SYN_RECV, listed by the kernel under the listener's port). */
function halfOpen(pid: number, port: number): number {
  let n = 0;
  for (const table of ['tcp', 'tcp6']) {
    let text: string;
    try {
      text = readFileSync(`/proc/${pid}/net/${table}`, 'latin1');
    } catch {
      continue;
    }
    for (const line of text.split('\n').slice(1)) {
      const f = line.trim().split(/\s+/);
      if (f[3] === '03' && parseInt(f[1]?.split(':')[1] ?? '', 16) === port) n++;
    }
  }
  return n;
}

/**
 * Waits, while the processes run, until no listener has a connection in its accept queue or
 * half-open (the caller's lock drops new SYNs to their ports meanwhile, so the queues can only
 * shrink). Returns one blocker per listener still holding some after `timeoutMs`.
 */
export async function drainListeners(listeners: FdInfo[], timeoutMs: number): Promise<Blocker[]> {
  const deadline = Date.now() + timeoutMs;
  for (;;) {
    const pending = listeners
      .map((info) => ({ info, queued: S.tcpInfo(info.localFd).unacked, synRecv: halfOpen(info.pid, listeningPort(info) ?? -1) }))
      .filter((p) => p.queued > 0 || p.synRecv > 0);
    if (!pending.length) return [];
    if (Date.now() >= deadline) return pending.map((p) => acceptQueueBlocker(p.info, p.queued, p.synRecv));
    await new Promise((r) => setTimeout(r, 10));
  }
}
