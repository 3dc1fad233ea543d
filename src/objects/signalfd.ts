// signalfd: only its signal mask ("sigmask:" in fdinfo, bit signo-1) and flags.
import { ProcessError } from '../errors.js';
import * as k from '../native/fdkinds.js';
import type { FdObjectModule } from './types.js';
import { fdinfoField, fdinfoText, recordFlags } from './file.js';

export const signalfdModule: FdObjectModule = {
  kinds: ['signalfd'],

  matches(info) {
    return info.link === 'anon_inode:[signalfd]';
  },

  dump(info, ctx) {
    const mask = fdinfoField(fdinfoText(info.localFd), 'sigmask');
    if (mask === undefined || !/^[0-9a-f]+$/i.test(mask)) throw new ProcessError('E_DUMP', `signalfd fdinfo: bad sigmask ${mask}`, { pid: info.pid, fd: info.fd });
    const id = ctx.newId();
    ctx.emit({ kind: 'signalfd', id, mask: BigInt('0x' + mask), flags: recordFlags(info.fdinfo.flags) });
    return id;
  },

  restore(record) {
    const flags = record.flags as number;
    return k.signalfd(-1, BigInt(record.mask as bigint), (flags & k.O.NONBLOCK) | k.O.CLOEXEC);
  },
};
