// timerfd: clock, remaining time and interval from fdinfo (it_value is the time left, not the
// value originally set). Absolute timers are re-armed absolute (now + remaining) so
// TFD_TIMER_CANCEL_ON_SET keeps working; expirations not yet read are put back with
// TFD_IOC_SET_TICKS. The core restores into a time namespace, so the recorded clock ids and
// remaining times stay meaningful across the reboot.
import { ProcessError } from '../errors.js';
import * as k from '../native/fdkinds.js';
import type { FdObjectModule } from './types.js';
import { fdinfoField, fdinfoText, recordFlags } from './file.js';

const TFD_TIMER_ABSTIME = 1;
const NS = 1_000_000_000n;

function timespecNs(text: string | undefined, what: string): bigint {
  const m = /^\((-?\d+),\s*(\d+)\)$/.exec(text ?? '');
  if (!m) throw new ProcessError('E_DUMP', `timerfd fdinfo: cannot parse ${what}: ${text}`);
  return BigInt(m[1]!) * NS + BigInt(m[2]!);
}

export const timerfdModule: FdObjectModule = {
  kinds: ['timerfd'],

  matches(info) {
    return info.link === 'anon_inode:[timerfd]';
  },

  dump(info, ctx) {
    const text = fdinfoText(info.localFd);
    const clock = Number(fdinfoField(text, 'clockid'));
    const settimeFlags = parseInt(fdinfoField(text, 'settime flags') ?? '0', 8);
    const ticks = BigInt(fdinfoField(text, 'ticks') ?? '0');
    const valueNs = timespecNs(fdinfoField(text, 'it_value'), 'it_value');
    const intervalNs = timespecNs(fdinfoField(text, 'it_interval'), 'it_interval');
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
    if (valueNs > 0n) {
      if (settimeFlags & TFD_TIMER_ABSTIME) k.timerfdSettime(fd, settimeFlags, k.clockGettimeNs(clock) + valueNs, intervalNs);
      else k.timerfdSettime(fd, 0, valueNs, intervalNs);
    }
    if (ticks > 0n) k.timerfdSetTicks(fd, ticks);
    return fd;
  },
};
