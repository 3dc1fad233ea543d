// eventfd: a 64-bit counter. fdinfo shows the count (hex); the semaphore mode shows only on
// kernels with "eventfd-semaphore" (6.6+) and is probed by one read + write-back before that.
import { ProcessError } from '../errors.js';
import * as k from '../native/fdkinds.js';
import type { FdObjectModule } from './types.js';
import { fdinfoField, fdinfoText, recordFlags } from './file.js';

const EFD_SEMAPHORE = 1;

export const eventfdModule: FdObjectModule = {
  kinds: ['eventfd'],

  matches(info) {
    return info.link === 'anon_inode:[eventfd]';
  },

  dump(info, ctx) {
    const text = fdinfoText(info.localFd);
    const countText = fdinfoField(text, 'eventfd-count');
    if (countText === undefined) throw new ProcessError('E_DUMP', 'eventfd fdinfo has no eventfd-count', { pid: info.pid, fd: info.fd });
    let count = BigInt('0x' + countText);
    const semaphoreText = fdinfoField(text, 'eventfd-semaphore');
    let semaphore: boolean;
    if (semaphoreText !== undefined) {
      semaphore = semaphoreText === '1';
    } else if (count > 1n) {
      // Older kernels: a read takes 1 in semaphore mode, everything otherwise. The target is
      // frozen, so taking and giving back is invisible to it.
      const taken = readNonBlocking(info.localFd);
      k.eventfdAdd(info.localFd, taken);
      semaphore = taken === 1n;
      count = BigInt('0x' + (fdinfoField(fdinfoText(info.localFd), 'eventfd-count') ?? '0'));
    } else {
      semaphore = false; // 0 or 1: both modes behave alike until the next write
      ctx.log.debug('eventfd semaphore mode unknown on this kernel, assumed off', { pid: info.pid, fd: info.fd });
    }
    const id = ctx.newId();
    ctx.emit({ kind: 'eventfd', id, count, semaphore, flags: recordFlags(info.fdinfo.flags) });
    return id;
  },

  restore(record) {
    const flags = record.flags as number;
    const fd = k.eventfd((flags & k.O.NONBLOCK) | k.O.CLOEXEC | (record.semaphore ? EFD_SEMAPHORE : 0));
    const count = BigInt(record.count as bigint | number);
    if (count > 0n) k.eventfdAdd(fd, count);
    return fd;
  },
};

function readNonBlocking(fd: number): bigint {
  const flags = k.fcntl(fd, k.F.GETFL);
  k.fcntl(fd, k.F.SETFL, flags | k.O.NONBLOCK);
  try {
    return k.eventfdTake(fd);
  } finally {
    k.fcntl(fd, k.F.SETFL, flags);
  }
}
