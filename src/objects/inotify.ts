// inotify: the watch list from fdinfo ("inotify wd:.. ino:.. sdev:.. mask:.. f_handle:.."),
// each watched inode resolved to a path through open_by_handle_at and checked by stat.
// The kernel hands out wds sequentially (1, 2, ...), so watches are re-added in wd order,
// gaps burnt with a throw-away watch, and every wd checked. Events queued at dump time are
// not carried over.
import { lstatSync, mkdtempSync, readFileSync, readlinkSync, rmdirSync } from 'node:fs';
import { join } from 'node:path';
import { tmpdir } from 'node:os';
import type { Blocker } from '../errors.js';
import { ProcessError } from '../errors.js';
import { closeFd } from '../native/fd.js';
import * as k from '../native/fdkinds.js';
import type { FdObjectModule } from './types.js';
import { blocker, fdinfoText, recordFlags } from './file.js';

const IN_ATTRIB = 0x4;
const IN_IGNORED = 0x8000;
const IN_DONT_FOLLOW = 0x02000000;

export interface InotifyWatchInfo {
  wd: number;
  ino: number;
  /** Device of the watched inode, as major/minor. */
  major: number;
  minor: number;
  mask: number;
  handle?: { type: number; bytes: Buffer };
}

/** Parses the watch lines of an inotify fd's fdinfo text. Every number there is hex. */
export function parseInotifyWatches(text: string): InotifyWatchInfo[] {
  const watches: InotifyWatchInfo[] = [];
  for (const line of text.split('\n')) {
    if (!line.startsWith('inotify ')) continue;
    const fields = new Map<string, string>();
    for (const part of line.slice('inotify '.length).trim().split(/\s+/)) {
      const colon = part.indexOf(':');
      if (colon > 0) fields.set(part.slice(0, colon), part.slice(colon + 1));
    }
    const hex = (key: string) => parseInt(fields.get(key) ?? 'NaN', 16);
    // sdev is the kernel-internal dev_t: major in the bits above 20.
    const sdev = hex('sdev');
    const watch: InotifyWatchInfo = { wd: hex('wd'), ino: hex('ino'), major: Math.floor(sdev / 2 ** 20), minor: sdev % 2 ** 20, mask: hex('mask') };
    const handle = fields.get('f_handle');
    if (handle && fields.has('fhandle-type')) watch.handle = { type: parseInt(fields.get('fhandle-type')!, 16), bytes: Buffer.from(handle, 'hex') };
    watches.push(watch);
  }
  return watches.sort((a, b) => a.wd - b.wd);
}

const devMajor = (dev: number) => Number(((BigInt(dev) >> 8n) & 0xfffn) | ((BigInt(dev) >> 32n) & ~0xfffn));
const devMinor = (dev: number) => Number((BigInt(dev) & 0xffn) | ((BigInt(dev) >> 12n) & ~0xffn));

/** Mount points of the file system with device major:minor, whole-fs mounts first. */
function mountPointsOf(major: number, minor: number): string[] {
  const found: { root: string; point: string }[] = [];
  for (const line of readFileSync('/proc/self/mountinfo', 'utf8').split('\n')) {
    const f = line.split(' ');
    if (f[2] === `${major}:${minor}`) found.push({ root: f[3]!, point: f[4]!.replace(/\\(\d{3})/g, (_, o: string) => String.fromCharCode(parseInt(o, 8))) });
  }
  return found.sort((a, b) => Number(b.root === '/') - Number(a.root === '/')).map((m) => m.point);
}

/** The path of a watched inode, or a reason it has none we can reopen. */
export function resolveWatchPath(watch: InotifyWatchInfo): { path: string } | { reason: string } {
  const what = `watch wd ${watch.wd} (inode ${watch.ino} on ${watch.major}:${watch.minor})`;
  if (!watch.handle) return { reason: `${what}: the file system gives no file handle to find its path` };
  for (const point of mountPointsOf(watch.major, watch.minor)) {
    let mountFd = -1;
    let fd = -1;
    try {
      // Not O_PATH: open_by_handle_at refuses an O_PATH mount fd (EBADF).
      mountFd = k.open(point, k.O.RDONLY | k.O.DIRECTORY | k.O.CLOEXEC, 0);
      fd = k.openByHandleAt(mountFd, watch.handle.type, watch.handle.bytes, k.O.PATH | k.O.CLOEXEC);
      const path = readlinkSync(`/proc/self/fd/${fd}`);
      const st = lstatSync(path); // a watch may be on a symlink itself (IN_DONT_FOLLOW)
      if (st.ino === watch.ino && devMajor(st.dev) === watch.major && devMinor(st.dev) === watch.minor) return { path };
    } catch {
      /* try the next mount of this file system */
    } finally {
      if (fd >= 0) closeFd(fd);
      if (mountFd >= 0) closeFd(mountFd);
    }
  }
  return { reason: `${what}: no path leads to the watched inode (deleted, or not reachable from this mount namespace)` };
}

export const inotifyModule: FdObjectModule = {
  kinds: ['inotify'],

  matches(info) {
    return info.link === 'anon_inode:inotify' || info.link === 'anon_inode:[inotify]';
  },

  preflight(info) {
    const blockers: Blocker[] = [];
    for (const watch of parseInotifyWatches(fdinfoText(info.localFd))) {
      const resolved = resolveWatchPath(watch);
      if ('reason' in resolved) blockers.push(blocker(info, 'inotify-watch', resolved.reason));
    }
    return blockers;
  },

  dump(info, ctx) {
    const watches = parseInotifyWatches(fdinfoText(info.localFd)).map((watch) => {
      const resolved = resolveWatchPath(watch);
      if ('reason' in resolved) throw new ProcessError('E_DUMP', `inotify: ${resolved.reason}`, { pid: info.pid, fd: info.fd });
      return { wd: watch.wd, path: resolved.path, mask: watch.mask };
    });
    const id = ctx.newId();
    ctx.emit({ kind: 'inotify', id, flags: recordFlags(info.fdinfo.flags), watches });
    return id;
  },

  restore(record, ctx) {
    const flags = record.flags as number;
    const watches = [...(record.watches as { wd: number; path: string; mask: number }[])].sort((a, b) => a.wd - b.wd);
    const fd = k.inotifyInit1(k.O.NONBLOCK | k.O.CLOEXEC);
    let fillerDir: string | undefined;
    const fillerWds = new Set<number>();
    try {
      let nextWd = 1;
      for (const watch of watches) {
        if (watch.wd < nextWd) throw new ProcessError('E_RESTORE', `inotify: duplicate or unordered wd ${watch.wd}`);
        // Burn the wds freed before the dump: add and remove a watch on a scratch directory.
        while (nextWd < watch.wd) {
          fillerDir ??= mkdtempSync(join(tmpdir(), 'handoff-inotify-'));
          const wd = k.inotifyAddWatch(fd, fillerDir, IN_ATTRIB);
          k.inotifyRmWatch(fd, wd);
          fillerWds.add(wd);
          nextWd = wd + 1;
        }
        let mask = watch.mask;
        // A watch on a symlink itself was added with IN_DONT_FOLLOW.
        if (lstatSync(watch.path).isSymbolicLink()) mask |= IN_DONT_FOLLOW;
        const wd = k.inotifyAddWatch(fd, watch.path, mask);
        if (wd !== watch.wd)
          throw new ProcessError('E_RESTORE', `inotify: watch on ${watch.path} got wd ${wd}, expected ${watch.wd} (another watch on the same inode, or wds not sequential)`, { path: watch.path });
        nextWd = wd + 1;
      }
      if (fillerWds.size > 0) drainFillerEvents(fd, fillerWds, ctx.log);
      const wanted = (k.fcntl(fd, k.F.GETFL) & ~k.O.NONBLOCK) | (flags & k.O.NONBLOCK);
      k.fcntl(fd, k.F.SETFL, wanted);
      return fd;
    } catch (err) {
      closeFd(fd);
      throw err;
    } finally {
      if (fillerDir) rmdirSync(fillerDir);
    }
  },
};

/** Reads away the IN_IGNORED events that removing the filler watches queued. */
function drainFillerEvents(fd: number, fillerWds: Set<number>, log: { warn(m: string, f?: Record<string, unknown>): void }): void {
  for (;;) {
    let chunk: Buffer;
    try {
      chunk = k.read(fd, 65536);
    } catch (err) {
      if ((err as { errno?: number }).errno === 11) return; // EAGAIN: empty
      throw err;
    }
    for (let at = 0; at + 16 <= chunk.length; ) {
      const wd = chunk.readInt32LE(at);
      const mask = chunk.readUInt32LE(at + 4);
      const nameLen = chunk.readUInt32LE(at + 12);
      if (!(mask === IN_IGNORED && fillerWds.has(wd))) log.warn('inotify: an event that arrived during restore was dropped', { wd, mask });
      at += 16 + nameLen;
    }
  }
}
