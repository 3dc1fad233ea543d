// Which pages of an area a dump must store, from /proc/PID/pagemap scanned in C
// (native/src/pagemap.c): one ffi call per area, runs of consecutive pages back. Uses the
// PAGEMAP_SCAN ioctl where the kernel has it (6.7+), pread of the entries otherwise.
import { closeSync, existsSync, openSync } from 'node:fs';
import { ProcessError, SyscallError } from '../errors.js';
import { bind, T } from './lib.js';

const openRaw = bind('hnd_pagemap_open', T.i32, [T.i32]);
const runsRaw = bind('hnd_pagemap_runs', T.i32, [T.i32, T.i64, T.i64, T.i32, T.u8array, T.i32, T.u8array]);
const runsManyRaw = bind('hnd_pagemap_runs_many', T.i32, [T.i32, T.u8array, T.i32, T.u8array, T.i32, T.u8array]);
const closeRaw = bind('hnd_close', T.i32, [T.i32]);
const seekDataRaw = bind('hnd_seek_data_runs', T.i32, [T.i32, T.i64, T.i64, T.u8array, T.i32, T.u8array]);
const zeroPfnRaw = bind('hnd_pagemap_zero_pfn', T.i64, []);

/**
 * - anonymous-private: pages present or swapped (private anonymous areas, heap, stacks).
 * - file-private: present or swapped pages that are no longer the file's page cache page
 *   (bit 61 clear): the copies the process dirtied. Clean pages come back from the file.
 * - shared: present or swapped (shmem, shared anonymous). Only pages mapped in THIS
 *   process show up; a shmem page only another sharer touched is not reported.
 */
export type PagemapMode = 'anonymous-private' | 'file-private' | 'shared';

export interface PageRun {
  addr: number;
  pages: number;
}

const MODE: Record<PagemapMode, number> = { 'anonymous-private': 0, 'file-private': 1, shared: 2 };
const SKIP_ZERO_PAGE = 0x100;
const FORCE_READ = 0x200;
const ENOSPC = 28;
const RUNS_PER_CALL = 4096;

export interface AreaToScan {
  start: number;
  end: number;
  mode: PagemapMode;
}

export interface ScanOptions {
  /** Leave out pages mapped to the kernel's shared zero page (read but never written):
   *  they read as zeros after restore without being stored. Default true. */
  skipZeroPage?: boolean;
  /** Read the raw pagemap entries even where the PAGEMAP_SCAN ioctl (6.7+) exists. The
   *  ioctl is much faster on sparse areas; both give the same runs. */
  forceRead?: boolean;
}

/** An open /proc/PID/pagemap, for scanning many areas of one process. */
export class Pagemap {
  private fd: number;
  private readonly out = Buffer.alloc(RUNS_PER_CALL * 16);
  private readonly next = Buffer.alloc(8);
  private readonly manyOut = Buffer.alloc(RUNS_PER_CALL * 24);

  constructor(readonly pid: number) {
    const fd = openRaw(pid);
    if (fd < 0) {
      if (fd === -2 || fd === -3) throw new ProcessError('E_NO_PROCESS', `process ${pid} no longer exists`, { pid });
      throw new SyscallError('open pagemap', -fd, { pid, path: `/proc/${pid}/pagemap` });
    }
    this.fd = fd;
  }

  /** Runs of pages to store in [start, end), ascending, adjacent pages merged. */
  runs(start: number, end: number, mode: PagemapMode, options: ScanOptions = {}): PageRun[] {
    if (this.fd < 0) throw new Error('pagemap closed');
    const flags = MODE[mode] | (options.skipZeroPage === false ? 0 : SKIP_ZERO_PAGE) | (options.forceRead ? FORCE_READ : 0);
    const result: PageRun[] = [];
    let from = start;
    for (;;) {
      const r = runsRaw(this.fd, from, end, flags, this.out, RUNS_PER_CALL, this.next);
      if (r < 0 && r !== -ENOSPC) throw new SyscallError('pread pagemap', -r, { pid: this.pid, address: '0x' + from.toString(16) });
      const count = r < 0 ? RUNS_PER_CALL : r;
      for (let i = 0; i < count; i++) {
        result.push({ addr: Number(this.out.readBigUInt64LE(i * 16)), pages: Number(this.out.readBigUInt64LE(i * 16 + 8)) });
      }
      if (r >= 0) return result;
      from = Number(this.next.readBigUInt64LE(0));
    }
  }

  /** Runs of every area in one native call (per-call overhead exceeds the scan of a small
   *  area): result[i] belongs to areas[i]. */
  runsMany(areas: readonly AreaToScan[], options: ScanOptions = {}): PageRun[][] {
    if (this.fd < 0) throw new Error('pagemap closed');
    const extra = (options.skipZeroPage === false ? 0 : SKIP_ZERO_PAGE) | (options.forceRead ? FORCE_READ : 0);
    const input = Buffer.alloc(areas.length * 24);
    areas.forEach((a, i) => {
      input.writeBigUInt64LE(BigInt(a.start), i * 24);
      input.writeBigUInt64LE(BigInt(a.end), i * 24 + 8);
      input.writeBigUInt64LE(BigInt(MODE[a.mode] | extra), i * 24 + 16);
    });
    const result: PageRun[][] = areas.map(() => []);
    const out = this.manyOut;
    const state = Buffer.alloc(16);
    for (;;) {
      const r = runsManyRaw(this.fd, input, areas.length, out, RUNS_PER_CALL, state);
      if (r < 0 && r !== -ENOSPC) throw new SyscallError('pread pagemap', -r, { pid: this.pid });
      const count = r < 0 ? RUNS_PER_CALL : r;
      for (let i = 0; i < count; i++) {
        const o = i * 24;
        // Area index and page count are small; addresses < 2^53: read as two 32-bit halves.
        const area = out.readUInt32LE(o);
        const addr = out.readUInt32LE(o + 8) + out.readUInt32LE(o + 12) * 0x100000000;
        result[area]!.push({ addr, pages: out.readUInt32LE(o + 16) + out.readUInt32LE(o + 20) * 0x100000000 });
      }
      if (r >= 0) return result;
    }
  }

  close(): void {
    if (this.fd >= 0) closeRaw(this.fd);
    this.fd = -1;
  }
}

/** Runs of pages to store in [start, end) of process `pid` (opens and closes its pagemap). */
export function presentRuns(pid: number, start: number, end: number, mode: PagemapMode, options: ScanOptions = {}): PageRun[] {
  const map = new Pagemap(pid);
  try {
    return map.runs(start, end, mode, options);
  } finally {
    map.close();
  }
}

/** Pfn of the shared zero page as seen here (0 when pfns are hidden, i.e. without CAP_SYS_ADMIN). */
export function zeroPagePfn(): number {
  return zeroPfnRaw();
}

/**
 * Pages a shmem-backed shared area holds (shared anonymous memory, memfd, tmpfs and /dev/shm
 * files, SysV shm), whichever process touched them, resident or swapped: SEEK_DATA/SEEK_HOLE
 * on the object opened through /proc/PID/map_files (needs CAP_SYS_ADMIN or
 * CAP_CHECKPOINT_RESTORE). Use this rather than the 'shared' pagemap mode when the object
 * is dumped once for all its sharers. Addresses are those of `area` in process `pid`.
 */
export function sharedDataRuns(pid: number, area: { start: number; end: number; offset: number }): PageRun[] {
  const path = `/proc/${pid}/map_files/${area.start.toString(16)}-${area.end.toString(16)}`;
  let fd: number;
  try {
    fd = openSync(path, 'r');
  } catch (err) {
    const code = (err as NodeJS.ErrnoException).code;
    if (code === 'ENOENT' && !existsSync(`/proc/${pid}`)) throw new ProcessError('E_NO_PROCESS', `process ${pid} no longer exists`, { pid }, err);
    throw new ProcessError('E_DUMP', `cannot open ${path}: ${code}`, { pid, path }, err);
  }
  const out = Buffer.alloc(RUNS_PER_CALL * 16);
  const next = Buffer.alloc(8);
  const result: PageRun[] = [];
  try {
    let from = area.offset;
    const end = area.offset + (area.end - area.start);
    for (;;) {
      const r = seekDataRaw(fd, from, end - from, out, RUNS_PER_CALL, next);
      if (r < 0 && r !== -ENOSPC) throw new SyscallError('lseek SEEK_DATA', -r, { pid, path });
      const count = r < 0 ? RUNS_PER_CALL : r;
      for (let i = 0; i < count; i++) {
        const fileOffset = Number(out.readBigUInt64LE(i * 16));
        result.push({ addr: area.start + (fileOffset - area.offset), pages: Number(out.readBigUInt64LE(i * 16 + 8)) });
      }
      if (r >= 0) return result;
      from = Number(next.readBigUInt64LE(0));
    }
  } finally {
    closeSync(fd);
  }
}
