// Files opened by path: regular files, directories, the well-known character devices, FIFOs,
// plus files that exist only through their fds (deleted files, memfd), whose contents go into
// the image. Also the small helpers every fd-kind module shares (flags, fdinfo text, payloads).
import { fstatSync, readFileSync, readlinkSync, statSync, statfsSync } from 'node:fs';
import { dirname, join } from 'node:path';
import { tmpdir } from 'node:os';
import type { Blocker } from '../errors.js';
import { ProcessError } from '../errors.js';
import { closeFd } from '../native/fd.js';
import * as k from '../native/fdkinds.js';
import type { DumpContext, FdInfo, FdObjectModule, ImageRecord, RestoreContext } from './types.js';
import { readQueuedData } from './pipe.js';

// ---------------------------------------------------------------- shared helpers

/** O_* bits of f_flags that describe an open file description (creation-only bits dropped). */
const STATUS_FLAG_MASK =
  k.O.ACCMODE | k.O.APPEND | k.O.NONBLOCK | k.O.DSYNC | k.O.ASYNC | k.O.DIRECT | k.O.LARGEFILE | k.O.DIRECTORY |
  k.O.NOFOLLOW | k.O.NOATIME | k.O.SYNC | k.O.PATH;

/** The record's `flags`: fdinfo flags without O_CLOEXEC (a per-fd flag) or kernel-internal bits. */
export function recordFlags(fdinfoFlags: number): number {
  return fdinfoFlags & STATUS_FLAG_MASK;
}

/** Flags F_SETFL can change after open. */
const SETFL_MASK = k.O.APPEND | k.O.ASYNC | k.O.DIRECT | k.O.NOATIME | k.O.NONBLOCK;

/** Makes an fd's changeable status flags equal to the recorded ones. */
export function applyStatusFlags(fd: number, flags: number): void {
  const current = k.fcntl(fd, k.F.GETFL);
  const wanted = (current & ~SETFL_MASK) | (flags & SETFL_MASK);
  if (wanted !== current) k.fcntl(fd, k.F.SETFL, wanted);
}

/** /proc/self/fdinfo of the dumper's duplicate: the same open file description as the target's fd. */
export function fdinfoText(localFd: number): string {
  return readFileSync(`/proc/self/fdinfo/${localFd}`, 'utf8');
}

/** Reads a `key: value` line of fdinfo text; undefined when absent. */
export function fdinfoField(text: string, key: string): string | undefined {
  for (const line of text.split('\n')) {
    const colon = line.indexOf(':');
    if (colon > 0 && line.slice(0, colon).trim() === key) return line.slice(colon + 1).trim();
  }
  return undefined;
}

/** Bytes of a record field that is inline bytes or a reference into the image file. */
export function payloadBytes(value: unknown, ctx: RestoreContext, what: string): Uint8Array {
  if (value === undefined || value === null) return new Uint8Array(0);
  if (value instanceof Uint8Array) return value;
  const ref = value as { offset?: unknown; length?: unknown };
  if (typeof ref.offset === 'number' && typeof ref.length === 'number') return ctx.readPayload({ offset: ref.offset, length: ref.length });
  throw new ProcessError('E_RESTORE', `${what}: contents are neither bytes nor a payload reference`);
}

/** Opens a new open file description of the file behind fd (works for deleted files and pipes). */
export function reopen(fd: number, flags: number): number {
  return k.open(`/proc/self/fd/${fd}`, flags | k.O.CLOEXEC, 0);
}

export function blocker(info: FdInfo, code: string, reason: string): Blocker {
  return { code, pid: info.pid, fd: info.fd, reason };
}

// ---------------------------------------------------------------- files

const S_IFMT = 0o170000;
const S_IFREG = 0o100000;
const S_IFDIR = 0o040000;
const S_IFCHR = 0o020000;
const S_IFBLK = 0o060000;
const S_IFIFO = 0o010000;
const HUGETLBFS_MAGIC = 0x958458f6;
const DELETED = ' (deleted)';

/** Character devices that are the same thing on every kernel: /dev/null, zero, full, random, urandom. */
const WELL_KNOWN_CHARDEVS = new Set(['1:3', '1:5', '1:7', '1:8', '1:9']);

const devMajor = (dev: number) => Number((BigInt(dev) >> 8n) & 0xfffn) | Number((BigInt(dev) >> 32n) & ~0xfffn);
const devMinor = (dev: number) => Number(BigInt(dev) & 0xffn) | Number((BigInt(dev) >> 12n) & ~0xffn);

type FileType = 'regular' | 'directory' | 'chardev' | 'blockdev' | 'fifo' | 'memfd' | 'deleted';

function classify(info: FdInfo): FileType | undefined {
  if (!info.link.startsWith('/')) return undefined;
  const fmt = info.stat.mode & S_IFMT;
  const deleted = info.link.endsWith(DELETED);
  if (fmt === S_IFREG) {
    if (deleted && info.link.startsWith('/memfd:')) return 'memfd';
    return deleted ? 'deleted' : 'regular';
  }
  if (fmt === S_IFDIR) return 'directory';
  if (fmt === S_IFCHR) return 'chardev';
  if (fmt === S_IFBLK) return 'blockdev';
  if (fmt === S_IFIFO) return 'fifo';
  return undefined;
}

function livePath(link: string): string {
  return link.endsWith(DELETED) ? link.slice(0, -DELETED.length) : link;
}

/** Per dump: FIFO inodes whose queued data is already in the image. */
const fifoDataDumped = new WeakMap<DumpContext, Set<string>>();

export const fileModule: FdObjectModule = {
  kinds: ['file'],

  matches(info) {
    return classify(info) !== undefined;
  },

  preflight(info) {
    const type = classify(info)!;
    const blockers: Blocker[] = [];
    if (type === 'memfd' || type === 'deleted') {
      if (statfsSync(`/proc/self/fd/${info.localFd}`).type === HUGETLBFS_MAGIC)
        blockers.push(blocker(info, 'hugetlb-file', `${info.link}: contents of a hugetlbfs file cannot be saved through read(2)`));
      if (info.link.startsWith('/secretmem')) blockers.push(blocker(info, 'secretmem', 'memfd_secret memory cannot be read'));
      return blockers;
    }
    if (info.link.endsWith(DELETED)) {
      blockers.push(blocker(info, 'deleted-file', `${info.link}: a deleted ${type} cannot be reopened`));
      return blockers;
    }
    if (type === 'chardev' && !WELL_KNOWN_CHARDEVS.has(`${devMajor(info.stat.rdev)}:${devMinor(info.stat.rdev)}`))
      blockers.push(blocker(info, 'device', `${info.link}: character device ${devMajor(info.stat.rdev)}:${devMinor(info.stat.rdev)} is not one of the well-known ones (null, zero, full, random, urandom)`));
    if (type === 'blockdev') blockers.push(blocker(info, 'device', `${info.link}: block devices are not handed off`));
    // The path must lead to this very inode (a chroot, another mount namespace or a rename would break reopening).
    try {
      const st = statSync(info.link);
      if (st.ino !== info.stat.ino || st.dev !== info.stat.dev)
        blockers.push(blocker(info, 'path-mismatch', `${info.link}: the path now names another file than the one open`));
    } catch (err) {
      blockers.push(blocker(info, 'path-unreachable', `${info.link}: ${(err as Error).message}`));
    }
    return blockers;
  },

  dump(info, ctx) {
    const type = classify(info)!;
    const id = ctx.newId();
    const flags = recordFlags(info.fdinfo.flags);
    const record: ImageRecord = { kind: 'file', id, type, path: livePath(info.link), flags, mode: info.stat.mode, offset: info.fdinfo.pos };
    if (type === 'chardev' || type === 'blockdev') record.rdev = { major: devMajor(info.stat.rdev), minor: devMinor(info.stat.rdev) };
    if (type === 'regular' || type === 'memfd' || type === 'deleted') record.size = info.stat.size;
    if (type === 'memfd' || type === 'deleted') {
      // Read through a fresh read-only description: the fd itself may be write-only or O_PATH.
      const readable = reopen(info.localFd, k.O.RDONLY);
      try {
        record.contents = k.preadAll(readable, info.stat.size, 0);
      } finally {
        closeFd(readable);
      }
      if (type === 'memfd') record.seals = k.fcntl(info.localFd, k.F.GET_SEALS);
    }
    if (type === 'fifo') {
      let seen = fifoDataDumped.get(ctx);
      if (!seen) fifoDataDumped.set(ctx, (seen = new Set()));
      const key = `${info.stat.dev}:${info.stat.ino}`;
      if (!seen.has(key)) {
        seen.add(key);
        const data = readQueuedData(info.localFd, (flags & k.O.ACCMODE) === k.O.RDONLY);
        if (data.length > 0) record.contents = data;
      }
    }
    ctx.emit(record);
    ctx.log.debug('file dumped', { pid: info.pid, fd: info.fd, type, path: record.path });
    return id;
  },

  restore(record, ctx) {
    const type = record.type as FileType;
    const path = record.path as string;
    const flags = record.flags as number;
    const offset = record.offset as number;
    switch (type) {
      case 'memfd':
      case 'deleted': {
        // Several descriptions (and mappings) of one deleted/memfd file share the file itself.
        const ownerId = (record.sameFileAs as number | undefined) ?? (record.id as number);
        const owner = ownerId === record.id ? record : ctx.byId(ownerId);
        if (!owner) throw new ProcessError('E_RESTORE', `file ${record.id as number} refers to missing file ${ownerId}`);
        const keeper = ctx.shared(`file:${ownerId}`, () => createUnlinked(owner, ctx));
        return positioned(reopen(keeper, openFlags(flags)), flags, offset, path);
      }
      case 'fifo':
        return openFifo(record, ctx);
      default: {
        const fd = k.open(path, openFlags(flags), 0);
        try {
          checkSameKind(fd, record);
          return positioned(fd, flags, offset, path);
        } catch (err) {
          closeFd(fd);
          throw err;
        }
      }
    }
  },
};

/** Flags for reopening: no creation or truncation, never inherit into a program we exec. */
function openFlags(flags: number): number {
  return (flags & ~(k.O.CREAT | k.O.EXCL | k.O.TRUNC | k.O.NOCTTY)) | k.O.CLOEXEC;
}

function positioned(fd: number, flags: number, offset: number, path: string): number {
  if ((flags & k.O.PATH) === 0 && offset > 0) {
    const at = k.lseek(fd, offset, 0);
    if (at !== offset) throw new ProcessError('E_RESTORE', `${path}: lseek to ${offset} gave ${at}`, { path });
  }
  return fd;
}

function checkSameKind(fd: number, record: ImageRecord): void {
  const st = fstatSync(fd);
  const mode = record.mode as number;
  if ((st.mode & S_IFMT) !== (mode & S_IFMT))
    throw new ProcessError('E_RESTORE', `${record.path as string}: file type changed since the dump (mode ${st.mode.toString(8)}, was ${mode.toString(8)})`, { path: record.path as string });
  const rdev = record.rdev as { major: number; minor: number } | undefined;
  if (rdev && (devMajor(st.rdev) !== rdev.major || devMinor(st.rdev) !== rdev.minor))
    throw new ProcessError('E_RESTORE', `${record.path as string}: device is ${devMajor(st.rdev)}:${devMinor(st.rdev)}, was ${rdev.major}:${rdev.minor}`, { path: record.path as string });
}

/**
 * Recreates a deleted file or memfd: a new unlinked inode with the recorded contents, size,
 * mode and (memfd) seals. Returns a read-write fd kept until the restore finishes; every fd
 * record of this object is a reopen of it, so they all share the one inode.
 */
function createUnlinked(record: ImageRecord, ctx: RestoreContext): number {
  // Records written for memory mappings carry the maps path, " (deleted)" included.
  const path = livePath(record.path as string);
  const contents = payloadBytes(record.contents, ctx, path);
  let fd: number;
  if (record.type === 'memfd') {
    const name = path.startsWith('/memfd:') ? path.slice('/memfd:'.length) : path;
    fd = k.memfdCreate(name, k.MFD.CLOEXEC | k.MFD.ALLOW_SEALING);
  } else {
    fd = createTmpfile(dirname(path));
  }
  try {
    k.pwriteAll(fd, contents, 0);
    if (typeof record.size === 'number' && record.size !== contents.length) k.ftruncate(fd, record.size);
    k.fchmod(fd, (record.mode as number) & 0o7777);
    // Seals last: F_SEAL_WRITE/GROW would refuse the writes above.
    const seals = typeof record.seals === 'number' ? record.seals : 0;
    if (seals !== 0) k.fcntl(fd, k.F.ADD_SEALS, seals);
  } catch (err) {
    closeFd(fd);
    throw err;
  }
  ctx.atFinish(() => closeFd(fd));
  ctx.onAbort(() => closeFd(fd));
  return fd;
}

/** An unlinked regular file, in the directory the deleted file lived in when it still exists. */
function createTmpfile(dir: string): number {
  for (const where of [dir, tmpdir()]) {
    try {
      return k.open(where, k.O.TMPFILE | k.O.RDWR | k.O.CLOEXEC, 0o600);
    } catch {
      // O_TMPFILE unsupported there (or the directory is gone): create and unlink.
      try {
        const name = join(where, `.handoff-${process.pid}-${Math.random().toString(36).slice(2)}`);
        const fd = k.open(name, k.O.CREAT | k.O.EXCL | k.O.RDWR | k.O.CLOEXEC, 0o600);
        k.unlink(name);
        return fd;
      } catch {
        /* next candidate */
      }
    }
  }
  throw new ProcessError('E_RESTORE', `cannot create an unlinked file in ${dir} or ${tmpdir()}`, { path: dir });
}

/**
 * FIFOs by path. Opening one end blocks until the other end exists, so a read-write "keeper"
 * (which never blocks on Linux) holds the FIFO open while the requested end is opened
 * non-blocking; the keeper also refills the queued data once and is closed at the end.
 */
function openFifo(record: ImageRecord, ctx: RestoreContext): number {
  const path = record.path as string;
  const flags = record.flags as number;
  const keeper = ctx.shared(`fifo:${path}`, () => {
    const fd = k.open(path, k.O.RDWR | k.O.NONBLOCK | k.O.CLOEXEC, 0);
    try {
      checkSameKind(fd, record);
    } catch (err) {
      closeFd(fd);
      throw err;
    }
    ctx.atFinish(() => closeFd(fd));
    ctx.onAbort(() => closeFd(fd));
    return { fd, filled: false };
  });
  if (record.contents !== undefined && !keeper.filled) {
    const data = payloadBytes(record.contents, ctx, path);
    if (data.length > k.fcntl(keeper.fd, k.F.GETPIPE_SZ)) k.fcntl(keeper.fd, k.F.SETPIPE_SZ, data.length);
    const written = k.write(keeper.fd, data);
    if (written !== data.length) throw new ProcessError('E_RESTORE', `${path}: refilled ${written} of ${data.length} queued bytes`, { path });
    keeper.filled = true;
  }
  const fd = k.open(path, openFlags(flags) | k.O.NONBLOCK, 0);
  applyStatusFlags(fd, flags);
  return fd;
}

/** For tests and diagnostics: the link of a local fd. */
export function localLink(fd: number): string {
  return readlinkSync(`/proc/self/fd/${fd}`);
}
