// Memory: the areas of an address space and the pages worth storing. Dump reads maps, smaps
// VmFlags and pagemap, then copies only present pages (process_vm_readv, or /proc/PID/mem
// for areas the process itself may not read). Restore maps every area at its address inside
// the new process and has the process pread its own pages from the image: one copy, in the
// kernel, no detour through the restorer.
import { openSync, readSync, closeSync, fstatSync } from 'node:fs';
import type { Blocker } from '../errors.js';
import { ProcessError } from '../errors.js';
import { logger } from '../log.js';
import type { MemoryAreaKind, MemoryAreaRecord, PagesRecord, PayloadRef } from '../format/records.js';
import type { ImageWriter } from '../format/writer.js';
import type { MapEntry } from '../kernel/proc.js';
import { alignedBuffer } from '../native/fd.js';
import { Pagemap, type PagemapMode } from '../native/pagemap.js';
import * as pt from '../native/ptrace.js';
import type { RemoteTask } from '../ptrace/remote.js';
import { MAP, O, PROT, SYS } from '../ptrace/syscalls.js';

const log = logger('memory');
const CHUNK = 8 << 20;
const AT_FDCWD = -100;

/** Kernel-provided areas: recreated by the kernel (vDSO/vvar are moved, never copied). */
export const SPECIAL_AREAS: ReadonlySet<MemoryAreaKind> = new Set(['vdso', 'vvar', 'vvar_vclock', 'vsyscall']);

export function areaType(m: MapEntry): MemoryAreaKind {
  switch (m.special) {
    case '[heap]': return 'heap';
    case '[stack]': return 'stack';
    case '[vdso]': return 'vdso';
    case '[vvar]': return 'vvar';
    case '[vvar_vclock]': return 'vvar_vclock';
    case '[vsyscall]': return 'vsyscall';
  }
  if (!m.path) return 'anonymous';
  if (m.path.startsWith('/memfd:')) return 'memfd';
  // MAP_SHARED|MAP_ANONYMOUS shows as "/dev/zero (deleted)"; SysV shm as "/SYSV...".
  if (m.shared && m.inode !== 0 && (m.path === '/dev/zero' || m.path.startsWith('/SYSV'))) return 'shmem';
  if (m.deleted) return 'deleted';
  return 'file';
}

function pagemapMode(rec: MemoryAreaRecord): PagemapMode | undefined {
  switch (rec.type) {
    case 'anonymous': case 'heap': case 'stack':
      return rec.shared ? 'shared' : 'anonymous-private';
    case 'shmem':
      return undefined; // its contents are the backing file record's
    case 'file': case 'memfd': case 'deleted':
      return rec.shared ? undefined : 'file-private'; // a shared mapping's data is the file
    default:
      return undefined;
  }
}

/** Areas a dump cannot hand off yet, found before freezing. */
export function memoryBlockers(pid: number, maps: MapEntry[]): Blocker[] {
  const out: Blocker[] = [];
  for (const m of maps) {
    const t = areaType(m);
    const where = `${m.start.toString(16)}-${m.end.toString(16)}`;
    if (t === 'shmem' && m.path?.startsWith('/SYSV')) out.push({ code: 'B_SYSV_SHM', pid, address: where, reason: 'System V shared memory is not supported' });
    else if (t === 'file' && m.device.major !== 0 && m.path?.startsWith('/dev/')) out.push({ code: 'B_DEVICE_MAPPING', pid, address: where, reason: `device mapping ${m.path}` });
    else if (m.special && !['[heap]', '[stack]', '[vdso]', '[vvar]', '[vvar_vclock]', '[vsyscall]'].includes(m.special) && !m.special.startsWith('[anon:')) out.push({ code: 'B_SPECIAL_MAPPING', pid, address: where, reason: `special mapping ${m.special}` });
  }
  return out;
}

export function areaRecord(pid: number, m: MapEntry, vmFlags: string[]): MemoryAreaRecord {
  const rec: MemoryAreaRecord = { kind: 'memory-area', pid, start: m.start, end: m.end, prot: m.prot, shared: m.shared, type: areaType(m), vmFlags };
  if (m.path) {
    rec.path = m.path;
    rec.fileOffset = m.offset;
    rec.device = m.device;
    rec.inode = m.inode;
  }
  return rec;
}

export type MemoryStats = { areas: number; pages: number; bytes: number };

/** Areas whose backing file will not exist on the other side: memfd, deleted, shared anonymous. */
const BACKED: ReadonlySet<MemoryAreaKind> = new Set(['memfd', 'deleted', 'shmem']);

/**
 * The backing object of memfd, deleted-file and shared-anonymous areas, written once per
 * (device, inode) for every process and area that maps it: a `file` record with the whole
 * contents (holes are read as zeros), which the restore recreates as one unlinked file/memfd.
 */
export class Backings {
  private readonly ids = new Map<string, number>();
  constructor(private readonly newId: () => number) {}

  /** The backing record already written for a file (st_dev, st_ino), if any. */
  find(dev: number, ino: number): number | undefined {
    return this.ids.get(`${Math.floor(dev / 256) & 0xfff}:${(dev & 0xff) | ((dev >> 12) & 0xfff00)}:${ino}`);
  }

  idFor(pid: number, m: MapEntry, writer: ImageWriter, buf: Buffer): number {
    const key = `${m.device.major}:${m.device.minor}:${m.inode}`;
    let id = this.ids.get(key);
    if (id !== undefined) return id;
    id = this.newId();
    this.ids.set(key, id);
    const path = `/proc/${pid}/map_files/${m.start.toString(16)}-${m.end.toString(16)}`;
    const fd = openSync(path, 'r');
    try {
      const st = fstatSync(fd);
      const type = areaType(m) === 'deleted' ? 'deleted' : 'memfd';
      writer.beginPayload({ kind: 'file', id, type, path: m.path!, flags: O.RDWR, mode: st.mode, offset: 0, size: st.size }, st.size);
      for (let off = 0; off < st.size; off += buf.length) {
        const n = Math.min(buf.length, st.size - off);
        let got = 0;
        while (got < n) {
          const r = readSync(fd, buf, got, n - got, off + got);
          if (r === 0) throw new ProcessError('E_DUMP', `${m.path} shrank while being read`, { pid, path: m.path });
          got += r;
        }
        writer.writePayload(buf.subarray(0, n));
      }
    } finally {
      closeSync(fd);
    }
    return id;
  }
}

/** Two, so that one is read into while the other is on its way to the disk. */
let chunkBuffers: [Buffer, Buffer] | undefined;

/**
 * Touches the buffers the memory dump reads pages into, before the caller freezes anything: a
 * page fault per page of a fresh buffer costs more than the copy itself.
 */
export function prepareDumpBuffers(): void {
  // Block-aligned, so the image writer can send them to the disk with O_DIRECT.
  chunkBuffers ??= [alignedBuffer(CHUNK, 4096), alignedBuffer(CHUNK, 4096)];
}

/**
 * Writes the memory-area records of a frozen process and the pages that must be stored. Each
 * chunk's write runs on the thread pool while this thread checksums it and reads the next.
 */
export async function dumpMemory(pid: number, maps: MapEntry[], flags: Map<number, string[]>, writer: ImageWriter, pageSize: number, stats: MemoryStats, backings: Backings): Promise<void> {
  const pagemap = new Pagemap(pid);
  prepareDumpBuffers();
  const bufs = chunkBuffers!;
  const writing: [Promise<void> | undefined, Promise<void> | undefined] = [undefined, undefined];
  const settle = () => Promise.all(writing);
  let next = 0;
  let memFd = -1;
  try {
    const recs = maps.map((m) => areaRecord(pid, m, flags.get(m.start) ?? []));
    // One native call scans every area (the per-call cost exceeds a small area's scan).
    const scan = recs.map((rec, i) => ({ i, mode: pagemapMode(rec) })).filter((x) => x.mode !== undefined);
    const scanned = pagemap.runsMany(scan.map((x) => ({ start: recs[x.i]!.start, end: recs[x.i]!.end, mode: x.mode! })));
    const runsOf = new Map(scan.map((x, k) => [x.i, scanned[k]!]));
    for (let i = 0; i < maps.length; i++) {
      const m = maps[i]!;
      const rec = recs[i]!;
      if (BACKED.has(rec.type)) {
        await settle(); // the backing's contents go through the first buffer, synchronously
        rec.fileId = backings.idFor(pid, m, writer, bufs[0]);
      }
      writer.record(rec);
      stats.areas++;
      // The vDSO image is kept (not restored): a kernel with another vDSO needs its symbols.
      const runs = rec.type === 'vdso' ? [{ addr: m.start, pages: (m.end - m.start) / pageSize }] : runsOf.get(i) ?? [];
      for (const run of runs) {
        const bytes = run.pages * pageSize;
        writer.beginPayload({ kind: 'pages', pid, addr: run.addr, count: run.pages }, bytes);
        for (let off = 0; off < bytes; off += CHUNK) {
          const n = Math.min(CHUNK, bytes - off);
          const slot = next;
          next ^= 1;
          await writing[slot];
          const buf = bufs[slot];
          if (m.prot.read) {
            pt.vmRead(pid, run.addr + off, buf, n);
          } else {
            // Not readable by the process itself (PROT_NONE after being written...): /proc/PID/mem
            // reads with FOLL_FORCE, as a debugger does.
            if (memFd < 0) memFd = openSync(`/proc/${pid}/mem`, 'r');
            if (readSync(memFd, buf, 0, n, run.addr + off) !== n) throw new ProcessError('E_DUMP', `short read of /proc/${pid}/mem`, { pid, address: (run.addr + off).toString(16) });
          }
          const write = writer.writePayloadAsync(buf.subarray(0, n));
          write.catch(() => undefined); // awaited below; not an unhandled rejection meanwhile
          writing[slot] = write;
        }
        stats.pages += run.pages;
        stats.bytes += bytes;
      }
    }
    await settle();
  } finally {
    // A failed dump must not leave a write in flight into a buffer the next one reuses.
    await Promise.allSettled(writing);
    pagemap.close();
    if (memFd >= 0) closeSync(memFd);
  }
}

const MADVISE: Record<string, number> = { dd: 16, wf: 18, dc: 10, hg: 14, nh: 15 };
const MADV_POPULATE_WRITE = 23;
const POPULATE_MIN = 1 << 20;
const EINVAL = 22n;
/** Largest single read into the target: 64 MiB keeps each remote syscall short. */
const FILL_STEP = 64 << 20;

/** The image as the process being restored has it open: buffered, and with O_DIRECT if allowed. */
export interface ImageFds {
  fd: number;
  direct?: number | undefined;
  /** Set once a direct read was refused: every later run is read buffered. */
  directRefused?: boolean;
}

/**
 * Maps one recorded area at its address in the process being restored and fills its pages
 * from the image (opened in the target, see ImageFds). Protections are final on return.
 * `onFilled` hears of every byte range of the image that now sits in the target's memory.
 */
export function restoreArea(task: RemoteTask, area: MemoryAreaRecord, pages: PagesRecord[], image: ImageFds, backingFd?: number, onFilled?: (offset: number, addr: number, length: number) => void): void {
  const length = area.end - area.start;
  const prot = (area.prot.read ? PROT.READ : 0) | (area.prot.write ? PROT.WRITE : 0) | (area.prot.exec ? PROT.EXEC : 0);
  const fill = pages.length > 0;
  let flags = MAP.FIXED | (area.shared ? MAP.SHARED : MAP.PRIVATE);
  if (area.vmFlags.includes('gd')) flags |= MAP.GROWSDOWN;
  let fd = -1;
  if (backingFd !== undefined) {
    fd = backingFd;
  } else if (area.type === 'file') {
    const mode = area.shared && area.prot.write ? O.RDWR : O.RDONLY;
    fd = task.call(`open(${area.path})`, SYS.openat, AT_FDCWD, task.putString(area.path!), mode | O.CLOEXEC, 0);
  } else {
    flags |= MAP.ANONYMOUS;
  }
  try {
    const mapProt = fill ? prot | PROT.WRITE : prot;
    const r = task.raw(SYS.mmap, area.start, length, mapProt, flags, fd, fd >= 0 ? area.fileOffset ?? 0 : 0);
    if (r !== BigInt(area.start)) throw new ProcessError('E_RESTORE', `mmap of ${area.type} area ${area.start.toString(16)}-${area.end.toString(16)}${area.path ? ` (${area.path})` : ''} failed: ${r < 0n ? `errno ${-r}` : `got ${r.toString(16)}`}`, { pid: task.pid });
  } finally {
    if (fd >= 0) task.raw(SYS.close, fd);
  }
  for (const p of pages) fillRun(task, p, image, onFilled);
  if (fill && !(prot & PROT.WRITE)) task.call('mprotect', SYS.mprotect, area.start, length, prot);
  for (const f of area.vmFlags) {
    const advice = MADVISE[f];
    if (advice !== undefined) task.raw(SYS.madvise, area.start, length, advice);
  }
  log.debug('area', { pid: task.pid, start: area.start, type: area.type, pages: pages.length });
}

/**
 * Reads one run of pages from the image into the target, in steps of FILL_STEP. Payloads are
 * page-aligned in the file and in memory, so O_DIRECT takes them; a read it still refuses
 * (EINVAL: a device with larger logical blocks) is done buffered.
 */
function fillRun(task: RemoteTask, p: PagesRecord, image: ImageFds, onFilled?: (offset: number, addr: number, length: number) => void): void {
  const ref = p.data as PayloadRef;
  let direct = image.directRefused ? undefined : image.direct;
  // Buffered reads fault the pages in first in one go (MADV_POPULATE_WRITE, 5.14+; older kernels
  // say EINVAL and pread faults them one by one): ~20% faster for large runs. Direct reads pin
  // the pages themselves, and populating first made them slower.
  if (direct === undefined && ref.length >= POPULATE_MIN) task.raw(SYS.madvise, p.addr, ref.length, MADV_POPULATE_WRITE);
  let done = 0;
  while (done < ref.length) {
    const want = Math.min(ref.length - done, FILL_STEP);
    let n: bigint | undefined;
    if (direct !== undefined) {
      n = task.raw(SYS.pread64, direct, p.addr + done, want, ref.offset + done);
      if (n === -EINVAL) {
        log.debug('O_DIRECT read refused, reading buffered', { pid: task.pid, offset: ref.offset + done });
        image.directRefused = true;
        direct = undefined;
        n = undefined;
      }
    }
    n ??= task.raw(SYS.pread64, image.fd, p.addr + done, want, ref.offset + done);
    if (n <= 0n) throw new ProcessError('E_RESTORE', `${n < 0n ? `pread64 failed (errno ${-n})` : 'short read'} of pages for ${p.addr.toString(16)} from the image`, { pid: task.pid, offset: ref.offset + done });
    onFilled?.(ref.offset + done, p.addr + done, Number(n));
    done += Number(n);
  }
}
