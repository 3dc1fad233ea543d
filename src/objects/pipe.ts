// Anonymous pipes. One `pipe` record per pipe inode (capacity, queued bytes) and one
// `pipe-end` record per open file description of either end. Queued bytes are copied with
// tee(2) into a scratch pipe, so the original keeps its data (DESIGN 4.6).
import { readdirSync, readlinkSync } from 'node:fs';
import type { Blocker } from '../errors.js';
import { ProcessError } from '../errors.js';
import { closeFd } from '../native/fd.js';
import * as k from '../native/fdkinds.js';
import type { DumpContext, FdObjectModule, ImageRecord, RestoreContext } from './types.js';
import { applyStatusFlags, blocker, recordFlags, reopen } from './file.js';

const PIPE_LINK = /^pipe:\[(\d+)\]$/;

/**
 * The bytes queued in the pipe or FIFO behind `fd`, left in place. `fd` may be either end:
 * a write end is reopened read-only through /proc (a new reader on the same pipe).
 */
export function readQueuedData(fd: number, isReadEnd: boolean): Buffer {
  const reader = isReadEnd ? fd : reopen(fd, k.O.RDONLY | k.O.NONBLOCK);
  try {
    const queued = k.fionread(reader);
    if (queued === 0) return Buffer.alloc(0);
    const [scratchRead, scratchWrite] = k.pipe2(k.O.NONBLOCK | k.O.CLOEXEC);
    try {
      const capacity = k.fcntl(reader, k.F.GETPIPE_SZ);
      if (k.fcntl(scratchWrite, k.F.GETPIPE_SZ) < capacity) k.fcntl(scratchWrite, k.F.SETPIPE_SZ, capacity);
      // tee walks every buffer of the source without consuming it; one call copies all of them
      // while the scratch pipe has room (it has as many slots as the source).
      const copied = k.tee(reader, scratchWrite, queued, k.SPLICE_F_NONBLOCK);
      if (copied !== queued) throw new ProcessError('E_DUMP', `pipe: tee copied ${copied} of ${queued} queued bytes`);
      const chunks: Buffer[] = [];
      let total = 0;
      while (total < queued) {
        const chunk = k.read(scratchRead, queued - total);
        if (chunk.length === 0) break;
        chunks.push(chunk);
        total += chunk.length;
      }
      if (total !== queued) throw new ProcessError('E_DUMP', `pipe: read back ${total} of ${queued} queued bytes`);
      return Buffer.concat(chunks, total);
    } finally {
      closeFd(scratchRead);
      closeFd(scratchWrite);
    }
  } finally {
    if (reader !== fd) closeFd(reader);
  }
}

/** Pipe inode -> pids holding an end, over every process (built once per preflight pid set). */
const holdersByPidSet = new WeakMap<ReadonlySet<number>, Map<number, Set<number>>>();

function pipeHolders(pids: ReadonlySet<number>): Map<number, Set<number>> {
  let holders = holdersByPidSet.get(pids);
  if (holders) return holders;
  holders = new Map();
  for (const entry of readdirSync('/proc')) {
    const pid = Number(entry);
    if (!Number.isInteger(pid) || pid === process.pid) continue;
    let fds: string[];
    try {
      fds = readdirSync(`/proc/${pid}/fd`);
    } catch {
      continue; // gone, or a kernel thread
    }
    for (const fd of fds) {
      let link: string;
      try {
        link = readlinkSync(`/proc/${pid}/fd/${fd}`);
      } catch {
        continue;
      }
      const m = PIPE_LINK.exec(link);
      if (!m) continue;
      const ino = Number(m[1]);
      let set = holders.get(ino);
      if (!set) holders.set(ino, (set = new Set()));
      set.add(pid);
    }
  }
  holdersByPidSet.set(pids, holders);
  return holders;
}

/** Per dump: pipe inode -> id of its pipe record. */
const pipeIds = new WeakMap<DumpContext, Map<number, number>>();

function endOf(flags: number): 'read' | 'write' | undefined {
  const acc = flags & k.O.ACCMODE;
  return acc === k.O.RDONLY ? 'read' : acc === k.O.WRONLY ? 'write' : undefined;
}

export const pipeModule: FdObjectModule = {
  kinds: ['pipe', 'pipe-end'],

  matches(info) {
    return PIPE_LINK.test(info.link);
  },

  preflight(info, pids) {
    const blockers: Blocker[] = [];
    if (endOf(info.fdinfo.flags) === undefined)
      blockers.push(blocker(info, 'pipe-rdwr', `${info.link}: a pipe opened read-write (through /proc) is not supported`));
    const outside = [...(pipeHolders(pids).get(info.stat.ino) ?? [])].filter((pid) => !pids.has(pid));
    if (outside.length > 0)
      blockers.push(blocker(info, 'pipe-peer-outside', `${info.link} is also held by pid ${outside.join(', ')}, which is not being handed off`));
    return blockers;
  },

  dump(info, ctx) {
    const flags = recordFlags(info.fdinfo.flags);
    const end = endOf(flags);
    if (!end) throw new ProcessError('E_DUMP', `${info.link}: pipe end opened read-write`, { pid: info.pid, fd: info.fd });
    let ids = pipeIds.get(ctx);
    if (!ids) pipeIds.set(ctx, (ids = new Map()));
    let pipeId = ids.get(info.stat.ino);
    if (pipeId === undefined) {
      pipeId = ctx.newId();
      ids.set(info.stat.ino, pipeId);
      const data = readQueuedData(info.localFd, end === 'read');
      ctx.emit({ kind: 'pipe', id: pipeId, inode: info.stat.ino, capacity: k.fcntl(info.localFd, k.F.GETPIPE_SZ), data });
      ctx.log.debug('pipe dumped', { pid: info.pid, fd: info.fd, inode: info.stat.ino, queued: data.length });
    }
    const id = ctx.newId();
    ctx.emit({ kind: 'pipe-end', id, pipe: pipeId, end, flags });
    return id;
  },

  restore(record, ctx) {
    if (record.kind === 'pipe') throw new ProcessError('E_RESTORE', 'a pipe record is restored through its pipe-end records');
    const pipeId = record.pipe as number;
    const pipeRecord = ctx.byId(pipeId);
    if (!pipeRecord || pipeRecord.kind !== 'pipe')
      throw new ProcessError('E_RESTORE', `pipe-end ${record.id as number} refers to missing pipe ${pipeId}`);
    const pipe = ctx.shared(`pipe:${pipeId}`, () => createPipe(pipeRecord, ctx));
    const end = record.end as 'read' | 'write';
    const flags = record.flags as number;
    const base = end === 'read' ? pipe.read : pipe.write;
    // The first description of each end is pipe2's own; more descriptions of the same end
    // (an end reopened through /proc) are new opens of the pipe.
    let fd: number;
    if (!pipe.handedOut[end]) {
      pipe.handedOut[end] = true;
      fd = k.dup(base);
    } else {
      fd = reopen(base, (end === 'read' ? k.O.RDONLY : k.O.WRONLY) | k.O.NONBLOCK);
    }
    applyStatusFlags(fd, flags);
    return fd;
  },
};

interface RestoredPipe {
  read: number;
  write: number;
  handedOut: { read: boolean; write: boolean };
}

function createPipe(record: ImageRecord, ctx: RestoreContext): RestoredPipe {
  const data = record.data instanceof Uint8Array ? record.data : new Uint8Array(0);
  const capacity = record.capacity as number;
  const [read, write] = k.pipe2(k.O.CLOEXEC | k.O.NONBLOCK);
  const close = () => {
    closeFd(read);
    closeFd(write);
  };
  try {
    if (k.fcntl(write, k.F.GETPIPE_SZ) !== capacity) k.fcntl(write, k.F.SETPIPE_SZ, capacity);
    let done = 0;
    while (done < data.length) done += k.write(write, data.subarray(done));
    // Back to blocking: each end's recorded O_NONBLOCK is set on its own description by restore().
    k.fcntl(write, k.F.SETFL, 0);
    k.fcntl(read, k.F.SETFL, 0);
  } catch (err) {
    close();
    throw err;
  }
  // Our copies of both ends live until every process holds its own (an end no process holds
  // must still exist while the other end is installed, then goes away with ours).
  ctx.atFinish(close);
  ctx.onAbort(close);
  return { read, write, handedOut: { read: false, write: false } };
}

