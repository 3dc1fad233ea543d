// UDP sockets, dump and restore side by side: family, bound and connected addresses, options,
// and the datagrams waiting in the receive queue.
//
// Dump: queued datagrams are read one by one without being consumed (SO_PEEK_OFF + MSG_PEEK,
// which UDP supports since 4.12), each with its source address and, through IP_PKTINFO /
// IPV6_PKTINFO turned on for the peek only, the address it was sent to. The original's queue
// and options are left as they were, so a failed dump or --leave-running loses nothing.
// Restore: the socket is bound, the datagrams are put back into its queue as raw packets over
// loopback carrying their original source address and port (so recvfrom names the same
// senders, in the same order), and only then is it connected (a connected UDP socket takes
// datagrams from its peer only). The destination is the socket's own address, or for a
// wildcard-bound socket the recorded destination when it is local here, else loopback.
// A datagram the kernel drops on the way back (a full buffer...) is counted and logged.
import { NetworkError, SyscallError, type Blocker } from '../errors.js';
import { logger } from '../log.js';
import { closeFd } from '../native/fd.js';
import * as S from '../native/socket.js';
import { applyInetOptions, familyOf, fileFlags, inetAddr, readInetOptions, socketIdentity, socketTypeFlags, toSockAddr } from './tcp.js';
import type { InetAddress, UdpRecord as UdpRecordV1 } from '../format/records.js';
import type { DumpContext, FdInfo, FdObjectModule, ImageRecord, RestoreContext } from './types.js';

const log = logger('udp');

export type UdpRecord = UdpRecordV1 & ImageRecord;
type Family = UdpRecord['family'];

/** The largest UDP payload (65535 minus the IPv4 and UDP headers), plus room to notice more. */
const DATAGRAM_MAX = 65536;

function isUdp(info: FdInfo): boolean {
  if (!info.link.startsWith('socket:')) return false;
  const id = socketIdentity(info.localFd);
  return !!id && (id.domain === S.AF_INET || id.domain === S.AF_INET6) && id.type === S.SOCK_DGRAM && id.protocol === S.IPPROTO_UDP;
}

function preflight(): Blocker[] {
  return [];
}

/** The receive queue of `fd`, left in place: data, sender and destination of each datagram. */
export function peekDatagrams(fd: number, family: Family): NonNullable<UdpRecord['queue']> {
  const out: NonNullable<UdpRecord['queue']> = [];
  for (let offset = 0; ; ) {
    const m = S.peekMessage(fd, offset, DATAGRAM_MAX, { wantDestination: true });
    if (!m) return out;
    if (m.length > m.data.length) throw new NetworkError('E_SOCKET', `UDP datagram of ${m.length} bytes does not fit a peek`, { offset });
    const entry: NonNullable<UdpRecord['queue']>[number] = { data: m.data, from: inetAddr(m.from ?? null, family) };
    if (m.to && m.to.family !== 'unix') entry.to = { address: m.to.address, port: 0 };
    out.push(entry);
    offset += m.length;
  }
}

function dump(info: FdInfo, ctx: DumpContext): number {
  const fd = info.localFd;
  const family = familyOf(socketIdentity(fd)!.domain);
  const peer = S.getpeername(fd);
  const record: UdpRecord = {
    kind: 'udp',
    id: ctx.newId(),
    family,
    local: inetAddr(S.getsockname(fd), family),
    ...(peer ? { remote: inetAddr(peer, family) } : {}),
    options: readInetOptions(fd, family, false),
    flags: fileFlags(info),
  };
  const queue = peekDatagrams(fd, family);
  if (queue.length) record.queue = queue;
  ctx.emit(record);
  log.debug('dumped', { pid: info.pid, fd: info.fd, id: record.id, local: record.local, queued: queue.length });
  return record.id;
}

// ---------------------------------------------------------------- restore

const V4_MAPPED = /^::ffff:(\d+\.\d+\.\d+\.\d+)$/i;
const isWildcard = (a: string) => a === '0.0.0.0' || a === '::';

/** Whether `address` is one of this host's (a throwaway socket can bind to it). */
function isLocal(family: Family, address: string): boolean {
  const probe = S.socket(family === 'inet6' ? S.AF_INET6 : S.AF_INET, S.SOCK_DGRAM, S.IPPROTO_UDP);
  try {
    S.bindSocket(probe, toSockAddr(family, { address, port: 0 }));
    return true;
  } catch {
    return false;
  } finally {
    closeFd(probe);
  }
}

/** Where a queued datagram is sent so that it lands in the socket bound to `local`. */
function destinationOf(record: UdpRecord, datagram: NonNullable<UdpRecord['queue']>[number], local: InetAddress): InetAddress {
  if (!isWildcard(local.address)) return local;
  const to = datagram.to?.address;
  if (to && !isWildcard(to) && isLocal(record.family, to)) return { address: to, port: local.port };
  return { address: record.family === 'inet6' ? '::1' : '127.0.0.1', port: local.port };
}

/** Sends each queued datagram to the restored socket, from its original sender. */
function refill(fd: number, record: UdpRecord): void {
  const queue = record.queue ?? [];
  if (!queue.length) return;
  const local = inetAddr(S.getsockname(fd), record.family);
  for (const d of queue) {
    const to = destinationOf(record, d, local);
    // A dual-stack socket got IPv4 datagrams as ::ffff:a.b.c.d: they go back as IPv4.
    const from4 = V4_MAPPED.exec(d.from.address)?.[1];
    const to4 = V4_MAPPED.exec(to.address)?.[1] ?? (to.address === '::1' && from4 ? '127.0.0.1' : undefined);
    if (from4 && to4) S.udpInject({ family: 'inet', address: from4, port: d.from.port }, { family: 'inet', address: to4, port: to.port }, d.data);
    else S.udpInject({ family: record.family, address: d.from.address, port: d.from.port }, { family: record.family, ...to }, d.data);
  }
  const back = peekDatagrams(fd, record.family).length;
  if (back !== queue.length) log.warn('queued datagrams lost on the way back', { id: record.id, queued: queue.length, restored: back });
}

function restore(raw: ImageRecord, ctx: RestoreContext): number {
  const record = raw as UdpRecord;
  const fd = S.socket(record.family === 'inet6' ? S.AF_INET6 : S.AF_INET, S.SOCK_DGRAM | socketTypeFlags(record.flags), S.IPPROTO_UDP);
  try {
    applyInetOptions(fd, record.family, false, record.options, 'beforeBind');
    applyInetOptions(fd, record.family, false, record.options, 'buffers');
    const wildcard = isWildcard(record.local.address);
    if (record.local.port !== 0 || !wildcard) S.bindSocket(fd, toSockAddr(record.family, record.local));
    // Before connect: a connected socket would refuse datagrams from anyone but its peer.
    refill(fd, record);
    if (record.remote) S.connectSocket(fd, toSockAddr(record.family, record.remote));
    applyInetOptions(fd, record.family, false, record.options, 'rest');
  } catch (err) {
    closeFd(fd);
    if (err instanceof SyscallError) throw new NetworkError('E_SOCKET', `cannot restore UDP socket ${record.local.address}:${record.local.port}: ${err.message}`, { id: record.id }, err);
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

export const udpModule: FdObjectModule = { kinds: ['udp'], matches: isUdp, preflight, dump, restore };
export default udpModule;
