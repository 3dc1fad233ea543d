// Typed bindings for native/src/socket.c: socket calls Node lacks (raw options, TCP repair,
// unix queue peeking, sock_diag) and sockaddr encoding.
import { isIPv6 } from 'node:net';
import { SyscallError } from '../errors.js';
import { bind, T } from './lib.js';

// Linux ABI constants (x86_64).
export const AF_UNIX = 1;
export const AF_INET = 2;
export const AF_INET6 = 10;
export const SOCK_STREAM = 1;
export const SOCK_DGRAM = 2;
export const SOCK_SEQPACKET = 5;
export const SOL_SOCKET = 1;
export const IPPROTO_IP = 0;
export const IPPROTO_TCP = 6;
export const IPPROTO_UDP = 17;
export const IPPROTO_IPV6 = 41;
export const SO = { REUSEADDR: 2, TYPE: 3, ERROR: 4, SNDBUF: 7, RCVBUF: 8, KEEPALIVE: 9, OOBINLINE: 10, PRIORITY: 12, LINGER: 13, REUSEPORT: 15, RCVLOWAT: 18, SNDBUFFORCE: 32, RCVBUFFORCE: 33, MARK: 36, DOMAIN: 39, PROTOCOL: 38, ACCEPTCONN: 30 } as const;
export const TCP = { NODELAY: 1, MAXSEG: 2, CORK: 3, KEEPIDLE: 4, KEEPINTVL: 5, KEEPCNT: 6, DEFER_ACCEPT: 9, QUICKACK: 12, CONGESTION: 13, USER_TIMEOUT: 18, NOTSENT_LOWAT: 25, FASTOPEN: 23 } as const;
export const IP_TOS = 1;
export const IP_TTL = 2;
export const IP_FREEBIND = 15;
export const IPV6_V6ONLY = 26;
export const IPV6_TCLASS = 67;
export const SIOCINQ = 0x541b;
export const SIOCOUTQ = 0x5411;
export const SHUT_RD = 0;
export const SHUT_WR = 1;
export const SHUT_RDWR = 2;
export const MSG_PEEK = 2;
export const MSG_DONTWAIT = 0x40;

/** Kernel TCP states (include/net/tcp_states.h), by number. */
export const TCP_STATES = ['', 'ESTABLISHED', 'SYN_SENT', 'SYN_RECV', 'FIN_WAIT1', 'FIN_WAIT2', 'TIME_WAIT', 'CLOSE', 'CLOSE_WAIT', 'LAST_ACK', 'LISTEN', 'CLOSING', 'NEW_SYN_RECV'] as const;

const socketRaw = bind('hnd_socket', T.i32, [T.i32, T.i32, T.i32]);
const socketpairRaw = bind('hnd_socketpair', T.i32, [T.i32, T.i32, T.u8array]);
const getsockoptRaw = bind('hnd_getsockopt', T.i32, [T.i32, T.i32, T.i32, T.u8array, T.i32]);
const setsockoptRaw = bind('hnd_setsockopt', T.i32, [T.i32, T.i32, T.i32, T.u8array, T.i32]);
const setsockoptIntRaw = bind('hnd_setsockopt_int', T.i32, [T.i32, T.i32, T.i32, T.i32]);
const getsocknameRaw = bind('hnd_getsockname', T.i32, [T.i32, T.u8array, T.i32]);
const getpeernameRaw = bind('hnd_getpeername', T.i32, [T.i32, T.u8array, T.i32]);
const bindRaw = bind('hnd_bind', T.i32, [T.i32, T.u8array, T.i32]);
const connectRaw = bind('hnd_connect', T.i32, [T.i32, T.u8array, T.i32]);
const listenRaw = bind('hnd_listen', T.i32, [T.i32, T.i32]);
const shutdownRaw = bind('hnd_shutdown', T.i32, [T.i32, T.i32]);
const ioctlIntRaw = bind('hnd_ioctl_int', T.i32, [T.i32, T.i32]);
const socketNetnsRaw = bind('hnd_socket_netns', T.i32, [T.i32]);
const setnsNetRaw = bind('hnd_setns_net', T.i32, [T.i32]);
const sendAllRaw = bind('hnd_send_all', T.i64, [T.i32, T.u8array, T.i64, T.i32]);
const recvRaw = bind('hnd_recv', T.i64, [T.i32, T.u8array, T.i64, T.i32]);
const tcpInfoRaw = bind('hnd_tcp_info', T.i32, [T.i32, T.u8array]);
const tcpRepairRaw = bind('hnd_tcp_repair', T.i32, [T.i32, T.i32]);
const tcpRepairDumpRaw = bind('hnd_tcp_repair_dump', T.i32, [T.i32, T.u8array]);
const tcpPeekQueueRaw = bind('hnd_tcp_peek_queue', T.i64, [T.i32, T.i32, T.u8array, T.i64]);
const tcpRepairSetSeqsRaw = bind('hnd_tcp_repair_set_seqs', T.i32, [T.i32, T.u8array]);
const tcpRepairRestoreRaw = bind('hnd_tcp_repair_restore', T.i32, [T.i32, T.u8array, T.u8array, T.i64, T.u8array, T.i64]);
const unixPeekQueueRaw = bind('hnd_unix_peek_queue', T.i32, [T.i32, T.u8array, T.i64, T.u8array, T.i32, T.u8array]);
const tcpRcvShutdownRaw = bind('hnd_tcp_rcv_shutdown', T.i32, [T.i32]);
const unixDiagRaw = bind('hnd_unix_diag', T.i32, [T.i32, T.i64, T.u8array, T.u8array, T.i32]);

function check(name: string, r: number, details: Record<string, unknown> = {}): number {
  if (r < 0) throw new SyscallError(name, -r, details);
  return r;
}

/** ffi-rs needs a non-empty buffer to pass a pointer. */
function nonEmpty(b: Uint8Array): Buffer {
  return b.length ? Buffer.from(b.buffer, b.byteOffset, b.byteLength) : Buffer.alloc(1);
}

export function socket(domain: number, type: number, protocol = 0): number {
  return check('socket', socketRaw(domain, type, protocol), { domain, type });
}

export function socketpair(domain: number, type: number): [number, number] {
  const out = Buffer.alloc(8);
  check('socketpair', socketpairRaw(domain, type, out));
  return [out.readInt32LE(0), out.readInt32LE(4)];
}

/** Raw getsockopt; returns the bytes the kernel wrote. */
export function getsockopt(fd: number, level: number, name: number, size: number): Buffer {
  const buf = Buffer.alloc(size);
  const n = check('getsockopt', getsockoptRaw(fd, level, name, buf, size), { fd, level, name });
  return buf.subarray(0, n);
}

export function getsockoptInt(fd: number, level: number, name: number): number {
  return getsockopt(fd, level, name, 4).readInt32LE(0);
}

/** getsockopt that returns undefined when the option does not exist for this socket/kernel. */
export function tryGetsockoptInt(fd: number, level: number, name: number): number | undefined {
  const buf = Buffer.alloc(4);
  const r = getsockoptRaw(fd, level, name, buf, 4);
  return r < 0 ? undefined : buf.readInt32LE(0);
}

export function setsockopt(fd: number, level: number, name: number, value: Buffer): void {
  check('setsockopt', setsockoptRaw(fd, level, name, value, value.length), { fd, level, name });
}

export function setsockoptInt(fd: number, level: number, name: number, value: number): void {
  check('setsockopt', setsockoptIntRaw(fd, level, name, value), { fd, level, name, value });
}

export function bindSocket(fd: number, addr: Buffer): void {
  check('bind', bindRaw(fd, addr, addr.length), { fd });
}

export function connectSocket(fd: number, addr: Buffer): void {
  check('connect', connectRaw(fd, addr, addr.length), { fd });
}

export function listen(fd: number, backlog: number): void {
  check('listen', listenRaw(fd, backlog), { fd });
}

export function shutdown(fd: number, how: number): void {
  check('shutdown', shutdownRaw(fd, how), { fd });
}

export function ioctlInt(fd: number, request: number): number {
  return check('ioctl', ioctlIntRaw(fd, request), { fd, request });
}

/** An fd for the network namespace a socket lives in. */
export function socketNetns(fd: number): number {
  return check('ioctl(SIOCGSKNS)', socketNetnsRaw(fd), { fd });
}

/** Moves the calling (main) thread into a network namespace; sockets created afterwards live there. */
export function setnsNet(nsfd: number): void {
  check('setns', setnsNetRaw(nsfd), { fd: nsfd });
}

export function sendAll(fd: number, data: Uint8Array, flags = 0): number {
  if (data.length === 0) return 0;
  return check('send', sendAllRaw(fd, nonEmpty(data), data.length, flags), { fd });
}

export function recv(fd: number, size: number, flags = 0): Buffer {
  const buf = Buffer.alloc(Math.max(size, 1));
  const n = check('recv', recvRaw(fd, buf, size, flags), { fd });
  return buf.subarray(0, n);
}

// ---------------------------------------------------------------- sockaddr

export type SockAddr =
  | { family: 'inet' | 'inet6'; address: string; port: number }
  | { family: 'unix'; path?: string; abstract?: Buffer };

const SOCKADDR_MAX = 128;

function ipv6ToBytes(address: string): Buffer {
  let text = address;
  const out = Buffer.alloc(16);
  // Embedded IPv4 tail (::ffff:1.2.3.4): turn it into two hex groups first.
  const v4 = /(\d+)\.(\d+)\.(\d+)\.(\d+)$/.exec(text);
  if (v4) {
    const [a, b, c, d] = v4.slice(1).map(Number) as [number, number, number, number];
    text = text.slice(0, v4.index) + ((a << 8) | b).toString(16) + ':' + ((c << 8) | d).toString(16);
  }
  const [head, tail] = text.includes('::') ? text.split('::') as [string, string] : [text, undefined];
  const h = head ? head.split(':') : [];
  const t = tail === undefined ? [] : tail ? tail.split(':') : [];
  const groups = tail === undefined ? h : [...h, ...Array(8 - h.length - t.length).fill('0'), ...t];
  groups.forEach((g, i) => out.writeUInt16BE(parseInt(g, 16), i * 2));
  return out;
}

function ipv6FromBytes(b: Buffer): string {
  const groups: number[] = [];
  for (let i = 0; i < 16; i += 2) groups.push(b.readUInt16BE(i));
  if (groups.slice(0, 5).every((g) => g === 0) && groups[5] === 0xffff) {
    return `::ffff:${b[12]}.${b[13]}.${b[14]}.${b[15]}`;
  }
  // Longest run of zero groups becomes "::" (RFC 5952).
  let best = -1, bestLen = 0;
  for (let i = 0; i < 8; ) {
    if (groups[i] !== 0) { i++; continue; }
    let j = i;
    while (j < 8 && groups[j] === 0) j++;
    if (j - i > bestLen && j - i > 1) { best = i; bestLen = j - i; }
    i = j;
  }
  const hex = groups.map((g) => g.toString(16));
  if (best < 0) return hex.join(':');
  return hex.slice(0, best).join(':') + '::' + hex.slice(best + bestLen).join(':');
}

export function encodeSockAddr(a: SockAddr): Buffer {
  if (a.family === 'unix') {
    const name = a.path !== undefined ? Buffer.from(a.path) : Buffer.concat([Buffer.alloc(1), a.abstract ?? Buffer.alloc(0)]);
    const buf = Buffer.alloc(2 + name.length + (a.path !== undefined ? 1 : 0));
    buf.writeUInt16LE(AF_UNIX, 0);
    name.copy(buf, 2);
    return buf;
  }
  if (a.family === 'inet') {
    const buf = Buffer.alloc(16);
    buf.writeUInt16LE(AF_INET, 0);
    buf.writeUInt16BE(a.port, 2);
    a.address.split('.').forEach((p, i) => buf.writeUInt8(Number(p), 4 + i));
    return buf;
  }
  const buf = Buffer.alloc(28);
  buf.writeUInt16LE(AF_INET6, 0);
  buf.writeUInt16BE(a.port, 2);
  const [addr, scope] = a.address.split('%') as [string, string | undefined];
  ipv6ToBytes(addr).copy(buf, 8);
  if (scope && /^\d+$/.test(scope)) buf.writeUInt32LE(Number(scope), 24);
  return buf;
}

export function decodeSockAddr(buf: Buffer): SockAddr {
  const family = buf.length >= 2 ? buf.readUInt16LE(0) : 0;
  if (family === AF_INET) return { family: 'inet', port: buf.readUInt16BE(2), address: `${buf[4]}.${buf[5]}.${buf[6]}.${buf[7]}` };
  if (family === AF_INET6) {
    const scope = buf.readUInt32LE(24);
    return { family: 'inet6', port: buf.readUInt16BE(2), address: ipv6FromBytes(buf.subarray(8, 24)) + (scope ? `%${scope}` : '') };
  }
  if (family === AF_UNIX) {
    const name = buf.subarray(2);
    if (name.length === 0) return { family: 'unix' };
    if (name[0] === 0) return { family: 'unix', abstract: Buffer.from(name.subarray(1)) };
    const end = name.indexOf(0);
    return { family: 'unix', path: name.subarray(0, end < 0 ? name.length : end).toString() };
  }
  throw new SyscallError('getsockname', 97 /* EAFNOSUPPORT */, { family });
}

/** null when the socket is not bound / not connected (ENOTCONN) or unnamed. */
export function getsockname(fd: number): SockAddr {
  const buf = Buffer.alloc(SOCKADDR_MAX);
  const n = check('getsockname', getsocknameRaw(fd, buf, SOCKADDR_MAX), { fd });
  return decodeSockAddr(buf.subarray(0, n));
}

export function getpeername(fd: number): SockAddr | null {
  const buf = Buffer.alloc(SOCKADDR_MAX);
  const r = getpeernameRaw(fd, buf, SOCKADDR_MAX);
  if (r === -107 /* ENOTCONN */) return null;
  check('getpeername', r, { fd });
  return decodeSockAddr(buf.subarray(0, r));
}

export function inetSockAddr(address: string, port: number): SockAddr {
  return { family: isIPv6(address) || address.includes(':') ? 'inet6' : 'inet', address, port };
}

// ---------------------------------------------------------------- TCP

export interface TcpInfo {
  state: number;
  options: number;
  sndWscale: number;
  rcvWscale: number;
  sndMss: number;
  rcvMss: number;
  /** For a listener: connections waiting in the accept queue. */
  unacked: number;
  /** For a listener: the accept queue limit (the listen backlog). */
  sacked: number;
}

export function tcpInfo(fd: number): TcpInfo {
  const out = Buffer.alloc(8 * 4);
  check('getsockopt(TCP_INFO)', tcpInfoRaw(fd, out), { fd });
  const w = (i: number) => out.readUInt32LE(i * 4);
  return { state: w(0), options: w(1), sndWscale: w(2), rcvWscale: w(3), sndMss: w(4), rcvMss: w(5), unacked: w(6), sacked: w(7) };
}

export const TCP_REPAIR_ON = 1;
export const TCP_REPAIR_OFF = 0;
export const TCP_REPAIR_OFF_NO_WP = -1;
export const TCP_RECV_QUEUE = 1;
export const TCP_SEND_QUEUE = 2;
export const TCPI_OPT_TIMESTAMPS = 1;
export const TCPI_OPT_SACK = 2;
export const TCPI_OPT_WSCALE = 4;

export function tcpRepair(fd: number, mode: number): void {
  check('setsockopt(TCP_REPAIR)', tcpRepairRaw(fd, mode), { fd, mode });
}

/** Repair state of a connection; sequence numbers are those of the first queued byte. */
export interface TcpRepairState {
  state: number;
  sendSeq: number;
  recvSeq: number;
  sendLen: number;
  unsentLen: number;
  recvLen: number;
  mss: number;
  sndWscale: number;
  rcvWscale: number;
  options: number;
  timestamp: number;
  window?: { sndWl1: number; sndWnd: number; maxWindow: number; rcvWnd: number; rcvWup: number };
}

const RS_WORDS = 17;

function encodeRepairState(s: TcpRepairState): Buffer {
  const w = s.window;
  const words = [s.state, s.sendSeq, s.recvSeq, s.sendLen, s.unsentLen, s.recvLen, s.mss, s.sndWscale, s.rcvWscale, s.options, s.timestamp, w ? 1 : 0, w?.sndWl1 ?? 0, w?.sndWnd ?? 0, w?.maxWindow ?? 0, w?.rcvWnd ?? 0, w?.rcvWup ?? 0];
  const buf = Buffer.alloc(RS_WORDS * 4);
  words.forEach((v, i) => buf.writeUInt32LE(v >>> 0, i * 4));
  return buf;
}

/** Reads the repair state (not the queue bytes); the socket must be in repair mode. */
export function tcpRepairDump(fd: number): TcpRepairState {
  const buf = Buffer.alloc(RS_WORDS * 4);
  check('tcp repair dump', tcpRepairDumpRaw(fd, buf), { fd });
  const w = (i: number) => buf.readUInt32LE(i * 4);
  return {
    state: w(0), sendSeq: w(1), recvSeq: w(2), sendLen: w(3), unsentLen: w(4), recvLen: w(5), mss: w(6), sndWscale: w(7), rcvWscale: w(8), options: w(9), timestamp: w(10),
    ...(w(11) ? { window: { sndWl1: w(12), sndWnd: w(13), maxWindow: w(14), rcvWnd: w(15), rcvWup: w(16) } } : {}),
  };
}

/** Copies a whole queue (TCP_SEND_QUEUE / TCP_RECV_QUEUE) of a socket in repair mode without consuming it. */
export function tcpPeekQueue(fd: number, queue: number, length: number): Buffer {
  if (length === 0) return Buffer.alloc(0);
  const buf = Buffer.alloc(length);
  const n = check('recv(MSG_PEEK) repair queue', tcpPeekQueueRaw(fd, queue, buf, length), { fd, queue });
  return buf.subarray(0, n);
}

/** Before connect(): sequence numbers of the first byte of each queue. */
export function tcpRepairSetSeqs(fd: number, s: TcpRepairState): void {
  check('setsockopt(TCP_QUEUE_SEQ)', tcpRepairSetSeqsRaw(fd, encodeRepairState(s)), { fd });
}

/** After the repair connect(): options, timestamp, both queues, window. */
export function tcpRepairRestore(fd: number, s: TcpRepairState, sendQueue: Uint8Array, recvQueue: Uint8Array): void {
  check('tcp repair restore', tcpRepairRestoreRaw(fd, encodeRepairState(s), nonEmpty(sendQueue), sendQueue.length, nonEmpty(recvQueue), recvQueue.length), { fd });
}

// ---------------------------------------------------------------- unix

export interface UnixQueuePeek {
  messages: Buffer[];
  /** SCM_RIGHTS descriptors attached to queued messages. */
  passedFds: number;
  /** The copy did not fit (more than `maxBytes` or `maxMessages`). */
  truncated: boolean;
}

/** Copies the receive queue of a unix socket without consuming it. */
export function unixPeekQueue(fd: number, maxBytes: number, maxMessages = 65536): UnixQueuePeek {
  const buf = Buffer.alloc(Math.max(maxBytes, 1));
  const lens = Buffer.alloc(maxMessages * 4);
  const out = Buffer.alloc(8);
  const count = check('recvmsg(MSG_PEEK) unix queue', unixPeekQueueRaw(fd, buf, maxBytes, lens, maxMessages, out), { fd });
  const messages: Buffer[] = [];
  let at = 0;
  for (let i = 0; i < count; i++) {
    const len = lens.readUInt32LE(i * 4);
    messages.push(Buffer.from(buf.subarray(at, at + len)));
    at += len;
  }
  return { messages, passedFds: out.readUInt32LE(0), truncated: out.readUInt32LE(4) !== 0 };
}

export interface UnixDiag {
  type: number;
  /** TCP_* state numbers: 1 ESTABLISHED (connected), 7 CLOSE (unconnected), 10 LISTEN. */
  state: number;
  peerIno: number;
  rqueue: number;
  wqueue: number;
  shutdown: number;
  name?: Buffer;
}

/** sock_diag facts about the unix socket `fd` (whose inode is `ino`), or undefined if not found. */
export function unixDiag(fd: number, ino: number): UnixDiag | undefined {
  const out = Buffer.alloc(8 * 4);
  const name = Buffer.alloc(128);
  const r = unixDiagRaw(fd, ino, out, name, name.length);
  if (r === -2) return undefined;
  check('sock_diag(unix)', r, { fd, ino });
  const w = (i: number) => out.readUInt32LE(i * 4);
  if (!w(7)) return undefined;
  return { type: w(0), state: w(1), peerIno: w(2), rqueue: w(3), wqueue: w(4), shutdown: w(5), ...(w(6) ? { name: Buffer.from(name.subarray(0, w(6))) } : {}) };
}

const setStatusFlagsRaw = bind('hnd_set_status_flags', T.i32, [T.i32, T.i32]);

/** fcntl(F_SETFL): sets O_NONBLOCK/O_APPEND...; access mode bits are ignored by the kernel. */
export function setStatusFlags(fd: number, flags: number): void {
  check('fcntl(F_SETFL)', setStatusFlagsRaw(fd, flags), { fd, flags });
}

// ---------------------------------------------------------------- queued messages (socket-queues.c)

const peekMessageRaw = bind('hnd_peek_message', T.i32, [T.i32, T.i32, T.u8array, T.i64, T.u8array, T.i32, T.u8array, T.i32, T.u8array, T.i32, T.u8array]);
const sendWithFdsRaw = bind('hnd_send_with_fds', T.i64, [T.i32, T.u8array, T.i64, T.u8array, T.i32]);
const udpInjectRaw = bind('hnd_udp_inject', T.i32, [T.u8array, T.i32, T.u8array, T.i32, T.u8array, T.i64]);

export const SO_PEEK_OFF = 42;

export interface PeekedMessage {
  /** The bytes copied (at most the capacity asked for). */
  data: Buffer;
  /** The message's real length (datagrams; larger than data.length when cut). */
  length: number;
  /** SCM_RIGHTS descriptors that travel with it, duplicated into this process (close-on-exec). */
  fds: number[];
  /** Control data or descriptors were cut (more than fit). */
  truncatedControl: boolean;
  /** Datagram sockets: the sender's address, when it has one. */
  from?: SockAddr;
  /** IP sockets asked with wantDestination: the address the datagram was sent to. */
  to?: SockAddr;
}

/**
 * One message of the receive queue of `fd`, `offset` bytes in, left in the queue (MSG_PEEK at
 * SO_PEEK_OFF `offset`; the socket's own peek offset is put back). undefined when nothing is
 * queued there. A stream peek returns the bytes up to and including the first piece that
 * carries descriptors.
 */
export function peekMessage(fd: number, offset: number, capacity: number, opts: { wantDestination?: boolean } = {}): PeekedMessage | undefined {
  const buf = Buffer.alloc(Math.max(capacity, 1));
  const fds = Buffer.alloc(253 * 4);
  const name = Buffer.alloc(SOCKADDR_MAX);
  const dst = Buffer.alloc(SOCKADDR_MAX);
  const out = Buffer.alloc(6 * 4);
  const r = peekMessageRaw(fd, offset, buf, capacity, fds, 253, name, SOCKADDR_MAX, dst, opts.wantDestination ? 1 : 0, out);
  if (r === -11 /* EAGAIN */) return undefined;
  check('recvmsg(MSG_PEEK)', r, { fd, offset });
  const w = (i: number) => out.readUInt32LE(i * 4);
  const message: PeekedMessage = {
    data: Buffer.from(buf.subarray(0, w(0))),
    length: w(1),
    fds: Array.from({ length: w(2) }, (_, i) => fds.readInt32LE(i * 4)),
    truncatedControl: (w(3) & 1) !== 0,
  };
  if (w(4) > 2) message.from = decodeSockAddr(name.subarray(0, w(4)));
  if (w(5)) message.to = decodeSockAddr(dst.subarray(0, w(5)));
  return message;
}

/** Sends `data` with `fds` attached as SCM_RIGHTS; returns the bytes sent. */
export function sendWithFds(fd: number, data: Uint8Array, fds: number[]): number {
  const list = Buffer.alloc(Math.max(fds.length, 1) * 4);
  fds.forEach((f, i) => list.writeInt32LE(f, i * 4));
  return check('sendmsg(SCM_RIGHTS)', Number(sendWithFdsRaw(fd, nonEmpty(data), data.length, list, fds.length)), { fd, fds: fds.length });
}

/**
 * Queues one UDP datagram at the local socket that `to` reaches, with `from` as its source
 * (address and port): a raw packet over loopback. `to` must be a local address.
 */
export function udpInject(from: SockAddr, to: SockAddr, data: Uint8Array): void {
  const src = encodeSockAddr(from);
  const dst = encodeSockAddr(to);
  check('udp inject', udpInjectRaw(src, src.length, dst, dst.length, nonEmpty(data), data.length), { from, to });
}

/** Whether the TCP socket `fd` receives no more (shutdown(SHUT_RD), or the peer's FIN). */
export function tcpRcvShutdown(fd: number): boolean {
  return check('poll', tcpRcvShutdownRaw(fd), { fd }) === 1;
}
