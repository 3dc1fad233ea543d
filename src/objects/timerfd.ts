// timerfd: remaining time and interval from timerfd_gettime, clock, settime flags and unread
// expirations from fdinfo. Absolute timers are re-armed absolute (now + remaining) so
// TFD_TIMER_CANCEL_ON_SET keeps working; expirations not yet read are put back with
// TFD_IOC_SET_TICKS. The core restores into a time namespace, so the recorded clock ids and
// remaining times stay meaningful across the reboot.
import { ProcessError } from '../errors.js';
import * as k from '../native/fdkinds.js';
import type { FdObjectModule } from './types.js';
import { fdinfoField, fdinfoText, recordFlags } from './file.js';

const TFD_TIMER_ABSTIME = 1;

export const timerfdModule: FdObjectModule = {
  kinds: ['timerfd'],

  matches(info) {
    return info.link === 'anon_inode:[timerfd]';
  },

  dump(info, ctx) {
    // timerfd_gettime first: a periodic timer that expired and was not read yet sits stopped
    // (fdinfo then shows it_value 0) until a read or gettime moves it to its next period and
    // adds the missed periods to ticks; gettime does exactly what the target's next read would.
    const { valueNs, intervalNs } = k.timerfdGettime(info.localFd);
    const text = fdinfoText(info.localFd);
    const clock = Number(fdinfoField(text, 'clockid'));
    const settimeFlags = parseInt(fdinfoField(text, 'settime flags') ?? '0', 8);
    const ticks = BigInt(fdinfoField(text, 'ticks') ?? '0');
    if (!Number.isInteger(clock)) throw new ProcessError('E_DUMP', 'timerfd fdinfo has no clockid', { pid: info.pid, fd: info.fd });
    const id = ctx.newId();
    const record: Record<string, unknown> = { kind: 'timerfd', id, clock, flags: recordFlags(info.fdinfo.flags), intervalNs: Number(intervalNs), valueNs: Number(valueNs), settimeFlags };
    if (ticks > 0n) record.ticks = Number(ticks);
    ctx.emit(record as { kind: string });
    return id;
  },

  restore(record) {
    const clock = record.clock as number;
    const flags = record.flags as number;
    const fd = k.timerfdCreate(clock, (flags & k.O.NONBLOCK) | k.O.CLOEXEC);
    const valueNs = BigInt(record.valueNs as number);
    const intervalNs = BigInt(record.intervalNs as number);
    const settimeFlags = record.settimeFlags as number;
    const ticks = BigInt((record.ticks as number | undefined) ?? 0);
    if (valueNs > 0n && settimeFlags & TFD_TIMER_ABSTIME) k.timerfdSettime(fd, settimeFlags, k.clockGettimeNs(clock) + valueNs, intervalNs);
    else k.timerfdSettime(fd, 0, valueNs, intervalNs); // value 0: disarmed, interval kept as gettime shows it
    if (ticks > 0n) k.timerfdSetTicks(fd, ticks);
    return fd;
  },
};
