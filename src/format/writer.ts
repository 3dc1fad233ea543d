// Streaming image writer: header, records, trailer into a temp file beside the target, then
// fsync + rename + directory fsync, so a crash never leaves a half image under the real name.
// Page payloads go from the caller's buffers straight to write(2) (no copy) and through the
// running SHA-256; only record metadata is CBOR-encoded (by cbor-x) and buffered.
import { closeSync, constants, fsyncSync, openSync, renameSync, unlinkSync, write, writeSync } from 'node:fs';
import { basename, dirname, join } from 'node:path';
import { createHash, randomBytes, type Hash } from 'node:crypto';
import { Encoder } from 'cbor-x';
import { ImageError } from '../errors.js';
import { cborHead } from './cbor.js';
import { SegmentSums } from './segments.js';
import { misalignment } from '../native/fd.js';
import { PAYLOAD_FIELDS, type HeaderFields, type HeaderRecord, type ImageRecordV1, type PagesRecord, type FileRecord, type RecordBase } from './records.js';

export const FORMAT_VERSION = { major: 1, minor: 2 } as const;
export const MAGIC = 'handoff-image';

const encoder = new Encoder({ useRecords: false, mapsAsObjects: true, tagUint8Array: false, variableMapSize: true, useTag259ForMaps: false } as ConstructorParameters<typeof Encoder>[0]);

/**
 * cbor-x writes integers beyond 32 bits as float64; the format wants them as CBOR integers.
 * Converting them to bigint makes cbor-x emit a 64-bit integer head.
 */
function integersAsCbor(value: unknown, depth = 0): unknown {
  if (depth > 32) throw new ImageError('E_IMAGE_LIMIT', 'record nests too deeply to encode');
  if (typeof value === 'number') {
    if (Number.isInteger(value) && (value > 0xffffffff || value < -0x80000000)) return BigInt(value);
    return value;
  }
  if (value === null || typeof value !== 'object' || value instanceof Uint8Array) return value;
  if (Array.isArray(value)) return value.map((v) => integersAsCbor(v, depth + 1));
  const out: Record<string, unknown> = {};
  for (const [k, v] of Object.entries(value)) {
    if (v === undefined) continue; // absent optional field
    out[k] = integersAsCbor(v, depth + 1);
  }
  return out;
}

export function encodeRecord(rec: object): Buffer {
  return encoder.encode(integersAsCbor(rec)) as Buffer;
}

export type PayloadMeta = Omit<PagesRecord, 'data'> | Omit<FileRecord, 'contents'>;

const BUFFER = 1 << 20;
/** O_DIRECT needs file offset, length and memory on a logical block boundary; 4 KiB covers all
 * but exotic devices (whose EINVAL turns direct writes off). */
const DIRECT_ALIGN = 4096;

export class ImageWriter {
  /** File offset of the next byte written. */
  private pos = 0;
  private readonly hash: Hash = createHash('sha256');
  private readonly segments = new SegmentSums();
  private buf = Buffer.allocUnsafe(BUFFER);
  private used = 0;
  private records = 0;
  private payloadLeft = 0;
  private pending = 0;
  private closed = false;
  /** While holding (hold()): bytes kept in memory, neither hashed nor written yet. */
  private held: Buffer[] | undefined;
  private heldBytes = 0;
  private holdBudget = 0;
  private arena: Buffer | undefined;
  private arenaUsed = 0;

  private constructor(
    private fd: number,
    readonly path: string,
    readonly tempPath: string,
    readonly pageSize: number,
    /**
     * The temp file opened again with O_DIRECT (undefined where the file system refuses it).
     * Page payloads are page-aligned, so block-aligned chunks of them go through it: straight
     * from the caller's buffer to the disk, with no page cache to allocate, fill and write back.
     * Metadata and unaligned tails take the buffered descriptor; the two never share a block.
     */
    private direct: number | undefined,
  ) {}

  /** Starts an image at `path` (written as a 0600 temp file in the same directory until finish()). */
  static create(path: string, header: HeaderFields): ImageWriter {
    const tempPath = join(dirname(path), `.${basename(path)}.${process.pid}.${randomBytes(4).toString('hex')}.tmp`);
    let fd: number;
    try {
      fd = openSync(tempPath, constants.O_WRONLY | constants.O_CREAT | constants.O_EXCL, 0o600);
    } catch (err) {
      throw new ImageError('E_IMAGE_IO', `cannot create ${tempPath}: ${(err as Error).message}`, { path: tempPath }, err);
    }
    let direct: number | undefined;
    try {
      direct = openSync(tempPath, constants.O_WRONLY | constants.O_DIRECT);
    } catch {
      direct = undefined; // tmpfs before 6.6 and some FUSE file systems: buffered only
    }
    const w = new ImageWriter(fd, path, tempPath, header.pageSize, direct);
    const rec: HeaderRecord = { kind: 'header', magic: MAGIC, version: header.version ?? FORMAT_VERSION, ...header } as HeaderRecord;
    // Keep kind, magic, version first whatever order the caller used.
    const { kind, magic, version, ...rest } = rec;
    w.put(encodeRecord({ kind, magic, version, ...rest }));
    return w;
  }

  /** Bytes written so far (the file offset of the next record). */
  get offset(): number {
    return this.pos;
  }

  /** Appends a record. Pages/file records may carry small payloads inline as bytes. */
  record(rec: RecordBase | ImageRecordV1): void {
    this.checkOpen();
    const field = PAYLOAD_FIELDS[rec.kind];
    const payload = field === undefined ? undefined : (rec as unknown as Record<string, unknown>)[field];
    if (field !== undefined && payload instanceof Uint8Array) {
      const meta = { ...rec } as Record<string, unknown>;
      delete meta[field];
      this.beginPayload(meta as unknown as PayloadMeta, payload.length);
      this.writePayload(payload);
      return;
    }
    this.put(encodeRecord(kindFirst(rec)));
    this.records++;
  }

  /**
   * Starts a pages (or file) record whose payload of `byteLength` bytes follows through
   * writePayload(). Returns the file offset of the payload's first byte (page-aligned).
   */
  beginPayload(meta: PayloadMeta, byteLength: number): number {
    this.checkOpen();
    const field = PAYLOAD_FIELDS[meta.kind];
    if (field === undefined) throw new ImageError('E_IMAGE_SCHEMA', `record kind ${meta.kind} has no payload field`);
    const entries = Object.entries(kindFirst(meta)).filter(([k, v]) => v !== undefined && k !== field && k !== 'pad');
    const parts: Buffer[] = [cborHead(5, entries.length + 2)];
    for (const [k, v] of entries) parts.push(encodeRecord(k as unknown as object), encodeRecord(v as object));
    parts.push(encodeRecord('pad' as unknown as object));
    const before = parts.reduce((n, p) => n + p.length, 0);
    const tail = Buffer.concat([encodeRecord(field as unknown as object), cborHead(2, byteLength)]);
    // The pad's own head length depends on the pad length: try 1, 2, 3-byte heads.
    const base = this.pos + this.used + before + tail.length;
    let padLen = -1;
    for (const headLen of [1, 2, 3]) {
      let n = mod(-(base + headLen), this.pageSize);
      if (headLen === 3 && n < 256) n += this.pageSize;
      if (cborHead(2, n).length === headLen) {
        padLen = n;
        break;
      }
    }
    parts.push(cborHead(2, padLen), Buffer.alloc(padLen), tail);
    for (const p of parts) this.put(p);
    this.flush();
    this.payloadLeft = byteLength;
    this.records++;
    return this.pos;
  }

  /** Writes the next chunk of the current payload straight from `chunk` (not copied). */
  writePayload(chunk: Uint8Array): void {
    this.checkOpen(true);
    if (chunk.length > this.payloadLeft) throw new ImageError('E_IMAGE_IO', `payload chunk of ${chunk.length} bytes exceeds the ${this.payloadLeft} bytes declared`);
    this.out(chunk);
    this.payloadLeft -= chunk.length;
  }

  /**
   * From now on, keep what is written in memory (copied) instead of hashing and writing it,
   * until release() or until more than `budgetBytes` are held (then everything held is
   * written and the writer streams again). A dump that leaves its processes running holds a
   * small image so they can run on while it is hashed, written and synced.
   */
  hold(budgetBytes: number, arenaBytes = 0): void {
    this.checkOpen();
    this.flush();
    this.held = [];
    this.heldBytes = 0;
    this.holdBudget = budgetBytes;
    // Copies into fresh memory cost a page fault per page, more than the copy itself: an arena
    // touched now (before the caller freezes anything) takes the first arenaBytes instead.
    this.arena = arenaBytes > 0 ? Buffer.allocUnsafeSlow(arenaBytes).fill(0) : undefined;
    this.arenaUsed = 0;
  }

  /** Whether everything since hold() is still in memory (the budget was not exceeded). */
  get holding(): boolean {
    return this.held !== undefined;
  }

  /** Hashes and writes everything held, and stops holding. */
  release(): void {
    const held = this.held;
    if (!held) return;
    this.held = undefined;
    this.arena = undefined;
    this.pos -= this.heldBytes;
    this.heldBytes = 0;
    for (const chunk of held) {
      this.digest(chunk);
      this.writeAll(chunk);
    }
    // Metadata still in the buffer was put after everything held.
    this.flush();
  }

  /**
   * Like writePayload, but the write(2) runs on libuv's thread pool while this thread hashes the
   * chunk, so hashing and writing overlap (about twice the throughput of writePayload on 2 cores).
   * The chunk must stay unchanged until the promise settles. Calls may overlap: each reserves its
   * file range and hash position in call order.
   */
  writePayloadAsync(chunk: Uint8Array): Promise<void> {
    this.checkOpen(true);
    if (chunk.length > this.payloadLeft) return Promise.reject(new ImageError('E_IMAGE_IO', `payload chunk of ${chunk.length} bytes exceeds the ${this.payloadLeft} bytes declared`));
    if (this.held) {
      this.writePayload(chunk);
      return Promise.resolve();
    }
    const at = this.pos;
    this.pos += chunk.length;
    this.payloadLeft -= chunk.length;
    this.pending++;
    const done = new Promise<void>((resolve, reject) => {
      const step = (fd: number, off: number) =>
        write(fd, chunk, off, chunk.length - off, at + off, (err, n) => {
          if (err && this.refusedDirect(fd, err)) step(this.fd, off);
          else if (err) reject(new ImageError('E_IMAGE_IO', `write failed at offset ${at + off}: ${err.message}`, { offset: at + off, path: this.tempPath }, err));
          else if (off + n < chunk.length) step(fd, off + n);
          else resolve();
        });
      step(this.fdFor(chunk, at), 0);
    }).finally(() => this.pending--);
    this.digest(chunk);
    return done;
  }

  /** Writes the trailer, fsyncs, renames the temp file to `path` and fsyncs the directory. */
  finish(): { path: string; bytes: number; records: number; sha256: string } {
    this.checkOpen();
    if (this.pending > 0) throw new ImageError('E_IMAGE_IO', `${this.pending} payload writes still in flight`, { path: this.path });
    this.release();
    this.flush();
    const digest = this.hash.digest();
    const trailer = encodeRecord({ kind: 'trailer', records: this.records, sha256: digest, segments: { size: this.segments.size, crc32: this.segments.bytes() } });
    this.writeAll(trailer);
    try {
      this.stopDirect();
      // Also flushes the device's write cache for what went through the O_DIRECT descriptor.
      fsyncSync(this.fd);
      closeSync(this.fd);
      this.closed = true;
      renameSync(this.tempPath, this.path);
      const dfd = openSync(dirname(this.path), constants.O_RDONLY | constants.O_DIRECTORY);
      try {
        fsyncSync(dfd);
      } finally {
        closeSync(dfd);
      }
    } catch (err) {
      this.abort();
      throw new ImageError('E_IMAGE_IO', `cannot finish image ${this.path}: ${(err as Error).message}`, { path: this.path }, err);
    }
    return { path: this.path, bytes: this.pos, records: this.records, sha256: digest.toString('hex') };
  }

  /** Closes and removes the temp file; the target path is untouched. Safe to call twice. */
  abort(): void {
    this.stopDirect();
    if (!this.closed) {
      this.closed = true;
      try {
        closeSync(this.fd);
      } catch {
        /* already closed */
      }
    }
    try {
      unlinkSync(this.tempPath);
    } catch {
      /* already gone or renamed */
    }
  }

  private checkOpen(inPayload = false): void {
    if (this.closed) throw new ImageError('E_IMAGE_IO', 'image writer already finished or aborted', { path: this.path });
    // A payload must be complete before anything else is written.
    if (this.payloadLeft > 0 && !inPayload) throw new ImageError('E_IMAGE_IO', `previous payload still needs ${this.payloadLeft} bytes`, { path: this.path });
  }

  /** Buffers metadata bytes (hashed when flushed). */
  private put(bytes: Buffer): void {
    if (this.payloadLeft > 0) throw new ImageError('E_IMAGE_IO', `previous payload still needs ${this.payloadLeft} bytes`, { path: this.path });
    if (this.used + bytes.length > this.buf.length) {
      this.flush();
      if (bytes.length > this.buf.length) {
        this.out(bytes);
        return;
      }
    }
    bytes.copy(this.buf, this.used);
    this.used += bytes.length;
  }

  private flush(): void {
    if (this.used === 0) return;
    const chunk = this.buf.subarray(0, this.used);
    this.used = 0;
    this.out(chunk);
  }

  /** Hashes and writes `chunk`, or while holding keeps a copy of it. */
  private out(chunk: Uint8Array): void {
    if (!this.held) {
      this.digest(chunk);
      this.writeAll(chunk);
      return;
    }
    if (this.arena && this.arenaUsed + chunk.length <= this.arena.length) {
      const copy = this.arena.subarray(this.arenaUsed, this.arenaUsed + chunk.length);
      copy.set(chunk);
      this.arenaUsed += chunk.length;
      this.held.push(copy);
    } else {
      this.held.push(Buffer.from(chunk));
    }
    this.heldBytes += chunk.length;
    this.pos += chunk.length;
    if (this.heldBytes > this.holdBudget) this.release();
  }

  /** Feeds the running SHA-256 and the segment checksums, in file order. */
  private digest(chunk: Uint8Array): void {
    this.hash.update(chunk);
    this.segments.update(chunk);
  }

  /** The descriptor for `chunk` at file offset `at`: the O_DIRECT one when all is aligned. */
  private fdFor(chunk: Uint8Array, at: number): number {
    if (this.direct === undefined || at % DIRECT_ALIGN !== 0 || chunk.length % DIRECT_ALIGN !== 0 || chunk.length === 0) return this.fd;
    return misalignment(chunk, DIRECT_ALIGN) === 0 ? this.direct : this.fd;
  }

  /** Whether `err` is the O_DIRECT descriptor's EINVAL (larger blocks wanted); if so, stops direct writes. */
  private refusedDirect(fd: number, err: unknown): boolean {
    if (fd !== this.direct || (err as NodeJS.ErrnoException).code !== 'EINVAL') return false;
    this.stopDirect();
    return true;
  }

  /** From now on every write is buffered (the device wants larger blocks, or we are done). */
  private stopDirect(): void {
    if (this.direct === undefined) return;
    try {
      closeSync(this.direct);
    } catch {
      /* already closed */
    }
    this.direct = undefined;
  }

  private writeAll(chunk: Uint8Array): void {
    let off = 0;
    let fd = this.fdFor(chunk, this.pos);
    while (off < chunk.length) {
      try {
        off += writeSync(fd, chunk, off, chunk.length - off, this.pos + off);
      } catch (err) {
        if (this.refusedDirect(fd, err)) {
          fd = this.fd;
          continue;
        }
        throw new ImageError('E_IMAGE_IO', `write failed at offset ${this.pos + off}: ${(err as Error).message}`, { offset: this.pos + off, path: this.tempPath }, err);
      }
    }
    this.pos += chunk.length;
  }
}

/** The same record with `kind` as its first key, whatever order the caller built it in. */
function kindFirst<T extends { kind: string }>(rec: T): T {
  const { kind, ...rest } = rec;
  return { kind, ...rest } as unknown as T;
}

function mod(a: number, m: number): number {
  return ((a % m) + m) % m;
}
