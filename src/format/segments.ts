// Segment checksums (format 1.1): a CRC-32 of every fixed-size segment of the bytes before the
// trailer, next to the whole-file SHA-256. They can be checked in any order and at several
// times the speed of SHA-256 (zlib's CRC-32 uses carry-less multiplication), which lets a
// restore check a multi-GiB image while it fills memory from it instead of before.
import { crc32 } from 'node:zlib';

/** Segment size writers use: 1 MiB (2 KiB of checksums per GiB). */
export const SEGMENT_SIZE = 1 << 20;

/** Accumulates the CRC-32 of consecutive segments from bytes fed in file order. */
export class SegmentSums {
  private readonly sums: number[] = [];
  private current = 0;
  private filled = 0;

  constructor(readonly size: number = SEGMENT_SIZE) {}

  update(chunk: Uint8Array): void {
    let off = 0;
    while (off < chunk.length) {
      const n = Math.min(this.size - this.filled, chunk.length - off);
      this.current = crc32(chunk.subarray(off, off + n), this.current);
      this.filled += n;
      off += n;
      if (this.filled === this.size) {
        this.sums.push(this.current);
        this.current = 0;
        this.filled = 0;
      }
    }
  }

  /** The checksums so far (a last partial segment included), 4 bytes big-endian each. */
  bytes(): Buffer {
    const all = this.filled > 0 ? [...this.sums, this.current] : this.sums;
    const out = Buffer.alloc(all.length * 4);
    all.forEach((v, i) => out.writeUInt32BE(v >>> 0, i * 4));
    return out;
  }

  /** An independent copy (the reader snapshots the sums just before the trailer). */
  copy(): SegmentSums {
    const c = new SegmentSums(this.size);
    c.sums.push(...this.sums);
    c.current = this.current;
    c.filled = this.filled;
    return c;
  }
}

/** Whether `size` is a segment size a reader accepts: a power of two from 4 KiB to 1 GiB. */
export function validSegmentSize(size: number): boolean {
  return Number.isInteger(size) && size >= 4096 && size <= 1 << 30 && (size & (size - 1)) === 0;
}
