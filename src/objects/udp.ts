// UDP sockets, dump and restore side by side: family, bound and connected addresses, options.
// Datagrams waiting in the receive queue cannot be put back into a new socket (the kernel has
// no repair mode for UDP); they are counted and logged, as a loss UDP users already expect.
import { NetworkError, SyscallError, type Blocker } from '../errors.js';
import { logger } from '../log.js';
import { closeFd } from '../native/fd.js';
import * as S from '../native/socket.js';
import { applyInetOptions, familyOf, fileFlags, inetAddr, readInetOptions, socketIdentity, socketTypeFlags, toSockAddr } from './tcp.js';
import type { UdpRecord as UdpRecordV1 } from '../format/records.js';
import type { DumpContext, FdInfo, FdObjectModule, ImageRecord, RestoreContext } from './types.js';

const log = logger('udp');

export type UdpRecord = UdpRecordV1 & ImageRecord;

function isUdp(info: FdInfo): boolean {
  if (!info.link.startsWith('socket:')) return false;
  const id = socketIdentity(info.localFd);
  return !!id && (id.domain === S.AF_INET || id.domain === S.AF_INET6) && id.type === S.SOCK_DGRAM && id.protocol === S.IPPROTO_UDP;
}

function preflight(): Blocker[] {
  return [];
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
  const pending = S.ioctlInt(fd, S.SIOCINQ);
  if (pending > 0) log.warn('queued datagrams are not carried over', { pid: info.pid, fd: info.fd, firstDatagramBytes: pending });
  ctx.emit(record);
  return record.id;
}

function restore(raw: ImageRecord, ctx: RestoreContext): number {
  const record = raw as UdpRecord;
  const fd = S.socket(record.family === 'inet6' ? S.AF_INET6 : S.AF_INET, S.SOCK_DGRAM | socketTypeFlags(record.flags), S.IPPROTO_UDP);
  try {
    applyInetOptions(fd, record.family, false, record.options, 'beforeBind');
    applyInetOptions(fd, record.family, false, record.options, 'buffers');
    const wildcard = record.local.address === '0.0.0.0' || record.local.address === '::';
    if (record.local.port !== 0 || !wildcard) S.bindSocket(fd, toSockAddr(record.family, record.local));
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
