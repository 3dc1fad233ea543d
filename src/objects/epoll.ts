// epoll: the interest list from fdinfo ("tfd: N events: X data: Y ..."). Entries name the
// TARGET's fd numbers, so the epoll instance is created by `restore` and filled later by the
// core through `restoreEpollInterest`, once every other fd of the process is in place.
import type { Blocker } from '../errors.js';
import { ProcessError } from '../errors.js';
import * as k from '../native/fdkinds.js';
import type { FdInfo, FdObjectModule, ImageRecord } from './types.js';
import { applyStatusFlags, blocker, fdinfoText, recordFlags } from './file.js';

export interface EpollInterest {
  fd: number;
  events: number;
  data: bigint;
}

/** Parses the tfd lines of an epoll fd's fdinfo (events and data are hex). */
export function parseEpollInterest(text: string): EpollInterest[] {
  const interest: EpollInterest[] = [];
  for (const line of text.split('\n')) {
    const m = /^tfd:\s*(\d+)\s+events:\s*([0-9a-f]+)\s+data:\s*([0-9a-f]+)/i.exec(line);
    if (m) interest.push({ fd: Number(m[1]), events: parseInt(m[2]!, 16), data: BigInt('0x' + m[3]) });
  }
  return interest;
}

/**
 * The tfd in fdinfo is the number the fd had when it was added; the process may have closed
 * or replaced it since (the entry then lives on with the file). kcmp(KCMP_EPOLL_TFD) tells
 * whether the fd under that number now is still the registered file.
 */
function staleEntries(info: FdInfo, interest: EpollInterest[]): EpollInterest[] {
  const seen = new Map<number, number>();
  return interest.filter((entry) => {
    const toff = seen.get(entry.fd) ?? 0;
    seen.set(entry.fd, toff + 1);
    return !k.epollTargetIsFd(info.pid, info.fd, entry.fd, toff);
  });
}

export const epollModule: FdObjectModule = {
  kinds: ['epoll'],

  matches(info) {
    return info.link === 'anon_inode:[eventpoll]';
  },

  preflight(info) {
    const blockers: Blocker[] = [];
    for (const entry of staleEntries(info, parseEpollInterest(fdinfoText(info.localFd))))
      blockers.push(blocker(info, 'epoll-stale', `epoll watches a file registered as fd ${entry.fd}, but fd ${entry.fd} is now closed or another file`));
    return blockers;
  },

  dump(info, ctx) {
    const interest = parseEpollInterest(fdinfoText(info.localFd));
    const stale = staleEntries(info, interest);
    if (stale.length > 0) throw new ProcessError('E_DUMP', `epoll: entries for fds ${stale.map((e) => e.fd).join(', ')} no longer match the process's fds`, { pid: info.pid, fd: info.fd });
    const id = ctx.newId();
    ctx.emit({ kind: 'epoll', id, flags: recordFlags(info.fdinfo.flags), interest });
    return id;
  },

  /** An empty epoll instance; its interest list is added by restoreEpollInterest. */
  restore(record) {
    const fd = k.epollCreate1(k.O.CLOEXEC);
    applyStatusFlags(fd, record.flags as number);
    return fd;
  },
};

/**
 * Replays the interest list. `add` must perform EPOLL_CTL_ADD(fd, {events, data}) on the
 * restored epoll inside the target, whose fds carry the recorded numbers by then.
 * Entries go in recorded order; a failure names the entry.
 */
export async function restoreEpollInterest(record: ImageRecord, add: (fd: number, events: number, data: bigint) => void | Promise<void>): Promise<void> {
  for (const entry of record.interest as EpollInterest[]) {
    try {
      await add(entry.fd, entry.events, BigInt(entry.data));
    } catch (err) {
      throw new ProcessError('E_RESTORE', `epoll ${record.id as number}: adding fd ${entry.fd} (events 0x${entry.events.toString(16)}) failed: ${(err as Error).message}`, { fd: entry.fd }, err);
    }
  }
}
