// Image reader: checks who could have written the file, walks every CBOR item with bounds,
// validates every record against the JSON Schema, checks the SHA-256 in the trailer and the
// references between records, and only then returns anything. Page payloads and file contents
// are never read here beyond hashing: they come back as {offset, length} references.
import { closeSync, constants, fstatSync, openSync, readSync, realpathSync, statSync, writeSync } from 'node:fs';
import { dirname } from 'node:path';
import { createHash } from 'node:crypto';
import { Worker } from 'node:worker_threads';
import { release as osRelease } from 'node:os';
import { HandoffError, ImageError, type ImageErrorCode } from '../errors.js';
import { DEFAULT_LIMITS, FileBytes, ItemReader, type DecodeLimits } from './cbor.js';
import { describeErrors, validators } from './schema.js';
import { MAGIC, FORMAT_VERSION } from './writer.js';
import { SegmentSums, validSegmentSize } from './segments.js';
import { OBJECT_KINDS, PAYLOAD_FIELDS, type HeaderRecord, type ImageRecordV1, type PayloadRef, type TrailerRecord } from './records.js';

export interface OpenOptions {
  /** Refuse files or directories writable by anyone but root / the current user (default true). */
  checkOwnership?: boolean;
  limits?: Partial<DecodeLimits>;
  /**
   * When the SHA-256 of the trailer is checked. 'inline' (default): while walking, before
   * openImage returns. 'deferred': openImage walks and validates the records only and starts
   * hashing the whole file in a worker thread at once; `image.digestChecked` settles when it
   * is done. A restorer may then fill the memory of processes that cannot run yet while the
   * hash runs, and must await it before anything restored runs or touches the outside world.
   * Small images (under DEFER_MIN_BYTES) are hashed inline anyway: a worker costs more.
   * 'none': records only, for callers that just need their structure (the early resume step
   * installs a network lock from them; the main step verifies everything).
   */
  digest?: 'inline' | 'deferred' | 'none';
  /** Smallest file a 'deferred' digest is deferred for (default DEFER_MIN_BYTES). */
  deferFromBytes?: number;
}

/** Below this size a deferred digest is computed inline (starting a worker takes ~20 ms). */
export const DEFER_MIN_BYTES = 64 << 20;

export interface Image {
  path: string;
  /** Read-only descriptor of the image, open until close(). */
  fd: number;
  size: number;
  header: HeaderRecord;
  /** Every known record between header and trailer, in file order. */
  records: ImageRecordV1[];
  /** File offset where each record of `records` starts. */
  offsets: number[];
  trailer: TrailerRecord;
  /** Records of unknown kinds marked optional, skipped. */
  skipped: { kind: string; offset: number }[];
  /**
   * Resolves once the trailer's SHA-256 matched every byte before it; rejects with
   * E_IMAGE_DIGEST / E_IMAGE_TRUNCATED / E_IMAGE_IO. Already resolved for digest 'inline';
   * never resolves for 'none' (it rejects with E_IMAGE_DIGEST saying it was not checked).
   */
  digestChecked: Promise<void>;
  close(): void;
}

const PID_KINDS = new Set(['credentials', 'thread', 'memory-area', 'pages', 'fd', 'signal-actions', 'signals-pending', 'itimers', 'posix-timer']);

function fail(code: ImageErrorCode, message: string, offset?: number, extra: Record<string, unknown> = {}): never {
  throw new ImageError(code, offset === undefined ? message : `${message} (offset ${offset})`, offset === undefined ? extra : { offset, ...extra });
}

/** Refuses images that someone other than root or us could have written or replaced. */
function checkSafe(fd: number, path: string): void {
  const euid = process.geteuid?.() ?? 0;
  const st = fstatSync(fd);
  if (!st.isFile()) fail('E_IMAGE_UNSAFE', `${path} is not a regular file`, undefined, { path });
  if (st.uid !== 0 && st.uid !== euid) fail('E_IMAGE_UNSAFE', `${path} is owned by uid ${st.uid}, not root`, undefined, { path });
  if (st.mode & 0o022) fail('E_IMAGE_UNSAFE', `${path} is writable by group or others (mode ${(st.mode & 0o7777).toString(8)})`, undefined, { path });
  const dir = dirname(realpathSync(path));
  const ds = statSync(dir);
  if (ds.uid !== 0 && ds.uid !== euid) fail('E_IMAGE_UNSAFE', `directory ${dir} is owned by uid ${ds.uid}, not root`, undefined, { path: dir });
  // A sticky world-writable directory (/tmp) is acceptable: others cannot rename or remove our file there.
  if (ds.mode & 0o022 && !(ds.mode & 0o1000)) fail('E_IMAGE_UNSAFE', `directory ${dir} is writable by group or others (mode ${(ds.mode & 0o7777).toString(8)})`, undefined, { path: dir });
}

function isMap(v: unknown): v is Record<string, unknown> {
  return typeof v === 'object' && v !== null && !Array.isArray(v) && !(v instanceof Uint8Array) && !(v instanceof FileBytes);
}

function pread(fd: number, offset: number, length: number): Buffer {
  const out = Buffer.allocUnsafe(length);
  let got = 0;
  while (got < length) {
    const r = readSync(fd, out, got, length - got, offset + got);
    if (r === 0) fail('E_IMAGE_TRUNCATED', 'file shrank while reading', offset + got);
    got += r;
  }
  return out;
}

/** Opens, fully verifies and decodes an image. Throws ImageError; returns nothing partial. */
export function openImage(path: string, options: OpenOptions = {}): Image {
  validators(); // load the schemas first: a broken installation is not an image error
  let fd: number;
  try {
    fd = openSync(path, constants.O_RDONLY | constants.O_NOFOLLOW);
  } catch (err) {
    throw new ImageError('E_IMAGE_IO', `cannot open ${path}: ${(err as Error).message}`, { path }, err);
  }
  try {
    if (options.checkOwnership !== false) checkSafe(fd, path);
    const mode = options.digest ?? 'inline';
    const inline = mode === 'inline' || (mode === 'deferred' && fstatSync(fd).size < (options.deferFromBytes ?? DEFER_MIN_BYTES));
    const result = walk(fd, path, { ...DEFAULT_LIMITS, ...options.limits }, inline);
    let worker: Worker | undefined;
    let digestChecked: Promise<void>;
    if (inline) {
      checkSegmentsNow(fd, result.trailerAt, result.trailer);
      digestChecked = Promise.resolve();
    }
    else if (mode === 'none') digestChecked = Promise.reject(new ImageError('E_IMAGE_DIGEST', `${path}: opened without checking its digest`, { path }));
    else {
      const started = startDigestWorker(fd, result.trailerAt, result.trailer);
      worker = started.worker;
      digestChecked = started.done;
    }
    // Nobody may be waiting (a restore that failed first): never an unhandled rejection.
    digestChecked.catch(() => undefined);
    let closed = false;
    return {
      ...result,
      digestChecked,
      close: () => {
        if (closed) return;
        closed = true;
        // The worker reads through fd: stop it before the number can be reused.
        if (worker) void worker.terminate();
        closeSync(fd);
      },
    };
  } catch (err) {
    closeSync(fd);
    if (err instanceof ImageError || (err instanceof HandoffError && err.code === 'E_INSTALL')) throw err;
    throw new ImageError('E_IMAGE_IO', `cannot read ${path}: ${(err as Error).message}`, { path }, err);
  }
}

function walk(fd: number, path: string, limits: DecodeLimits, hashInline: boolean): Omit<Image, 'close' | 'digestChecked'> & { trailerAt: number } {
  const size = fstatSync(fd).size;
  if (size === 0) fail('E_IMAGE_TRUNCATED', `${path} is empty`, 0);
  const first = pread(fd, 0, 1)[0]!;
  if (first >> 5 !== 5) fail('E_IMAGE_MAGIC', `${path} is not a handoff image (does not start with a CBOR map)`, 0);
  const reader = new ItemReader(fd, size, hashInline ? createHash('sha256') : null, limits);
  const check = validators();

  // Header: magic and major version before anything else, so a newer image fails clearly.
  const header = reader.readItem();
  if (!isMap(header) || header.kind !== 'header' || header.magic !== MAGIC) fail('E_IMAGE_MAGIC', `${path} is not a handoff image`, 0);
  const version = header.version as { major?: unknown } | undefined;
  if (!isMap(version) || version.major !== FORMAT_VERSION.major) {
    fail('E_IMAGE_VERSION', `image format version ${JSON.stringify(isMap(version) ? version.major : version)} is not supported (this reader knows ${FORMAT_VERSION.major}.x)`, 0);
  }
  validate(check, 'header', header, 0);
  const pageSize = header.pageSize as number;

  const records: ImageRecordV1[] = [];
  const offsets: number[] = [];
  const skipped: { kind: string; offset: number }[] = [];
  let count = 0;
  for (;;) {
    if (reader.atEnd()) fail('E_IMAGE_TRUNCATED', 'image ends before its trailer', reader.pos);
    const at = reader.pos;
    const digestBefore = reader.digestSoFar();
    const rec = reader.readItem();
    if (!isMap(rec)) fail('E_IMAGE_SCHEMA', 'record is not a CBOR map', at);
    const kind = rec.kind;
    if (typeof kind !== 'string') fail('E_IMAGE_SCHEMA', 'record has no text "kind"', at);
    if (kind === 'trailer') {
      validate(check, 'trailer', rec, at);
      const trailer = rec as unknown as TrailerRecord;
      if (digestBefore && !digestBefore.equals(Buffer.from(trailer.sha256))) fail('E_IMAGE_DIGEST', 'SHA-256 of the image does not match its trailer', at);
      if (trailer.records !== count) fail('E_IMAGE_INCONSISTENT', `trailer counts ${trailer.records} records, the image has ${count}`, at);
      // 1.1 writers always write segments: without them the trailer itself was damaged.
      if (!trailer.segments && (header.version as { minor: number }).minor >= 1) fail('E_IMAGE_INCONSISTENT', 'a format 1.1 trailer without segment checksums', at);
      if (trailer.segments) {
        const { size, crc32 } = trailer.segments;
        if (!validSegmentSize(size)) fail('E_IMAGE_INCONSISTENT', `segment size ${size} is not a power of two from 4096 to 2^30`, at);
        if (crc32.length !== 4 * Math.ceil(at / size)) fail('E_IMAGE_INCONSISTENT', `trailer holds ${crc32.length} bytes of segment checksums, ${4 * Math.ceil(at / size)} expected`, at);
      }
      if (reader.pos !== size) fail('E_IMAGE_TRAILING', `${size - reader.pos} bytes after the trailer`, reader.pos);
      checkReferences(records, offsets, pageSize);
      return { path, fd, size, header: header as unknown as HeaderRecord, records, offsets, trailer, skipped, trailerAt: at };
    }
    count++;
    if (kind === 'header') fail('E_IMAGE_SCHEMA', 'second header inside the image', at);
    if (!check.has(kind)) {
      if (rec.optional === true) {
        skipped.push({ kind, offset: at });
        continue;
      }
      fail('E_IMAGE_UNKNOWN_KIND', `record kind "${kind.slice(0, 64)}" is unknown and not optional`, at, { kind: kind.slice(0, 64) });
    }
    const payloadField = PAYLOAD_FIELDS[kind];
    for (const [key, value] of Object.entries(rec)) {
      if (!(value instanceof FileBytes) || key === payloadField) continue;
      // A large byte string that is not a payload: bring it into memory within the limit.
      if (value.length > limits.maxInlineBytes) fail('E_IMAGE_LIMIT', `byte string "${key}" of ${value.length} bytes`, value.offset);
      rec[key] = pread(fd, value.offset, value.length);
    }
    validate(check, kind, rec, at);
    if (payloadField !== undefined) {
      const ref = rec[payloadField];
      if (ref instanceof FileBytes && ref.offset % pageSize !== 0) fail('E_IMAGE_ALIGN', `${kind} payload starts at offset ${ref.offset}, not page-aligned`, ref.offset);
      if (kind === 'pages') {
        const data = rec.data as FileBytes;
        if ((rec.addr as number) % pageSize !== 0) fail('E_IMAGE_INCONSISTENT', `pages address ${rec.addr} is not page-aligned`, at);
        if (data.length !== (rec.count as number) * pageSize) fail('E_IMAGE_INCONSISTENT', `pages record holds ${data.length} bytes for ${rec.count} pages`, at);
      }
    }
    delete rec.pad;
    records.push(rec as unknown as ImageRecordV1);
    offsets.push(at);
  }
}

// The deferred digest's worker thread: reads bytes [0, end) of the open image descriptor
// (descriptors are shared by every thread of a process) and posts back either their SHA-256
// or, for a 1.1 image, the CRC-32 of each segment. Off the main thread, it runs while the
// restore fills process memory from the same file; 1 MiB reads keep the buffer in cache.
// Source text (eval) so it runs the same from src/ under the test loader and from dist/.
const DIGEST_WORKER = `
const { parentPort, workerData } = require('node:worker_threads');
const { readSync } = require('node:fs');
const { createHash } = require('node:crypto');
const { crc32 } = require('node:zlib');
const { fd, end, segmentSize } = workerData;
const hash = segmentSize ? undefined : createHash('sha256');
const sums = segmentSize ? Buffer.alloc(Math.ceil(end / segmentSize) * 4) : undefined;
const buf = Buffer.allocUnsafe(segmentSize ? Math.min(segmentSize, 1 << 20) : 1 << 20);
let offset = 0;
let crc = 0;
try {
  while (offset < end) {
    const want = segmentSize ? Math.min(buf.length, end - offset, segmentSize - (offset % segmentSize)) : Math.min(buf.length, end - offset);
    const r = readSync(fd, buf, 0, want, offset);
    if (r === 0) break;
    if (hash) hash.update(buf.subarray(0, r));
    else {
      crc = crc32(buf.subarray(0, r), crc);
      if ((offset + r) % segmentSize === 0 || offset + r === end) {
        sums.writeUInt32BE(crc >>> 0, Math.floor(offset / segmentSize) * 4);
        crc = 0;
      }
    }
    offset += r;
  }
  parentPort.postMessage(offset < end ? { shrunkAt: offset } : { digest: hash ? hash.digest() : sums });
} catch (err) {
  parentPort.postMessage({ ioError: err.message, at: offset });
}
`;

/** The first segment whose checksum differs, as the file offset where it starts. */
function firstBadSegment(got: Buffer, want: Buffer, size: number): number | undefined {
  for (let i = 0; i * 4 < want.length; i++) if (got.readUInt32BE(i * 4) !== want.readUInt32BE(i * 4)) return i * size;
  return undefined;
}

/**
 * Checks [0, trailerAt) in a worker thread, by segment checksums when the trailer has them,
 * else by SHA-256; settles when it matches (or not).
 */
function startDigestWorker(fd: number, trailerAt: number, trailer: TrailerRecord): { worker: Worker; done: Promise<void> } {
  const segmentSize = trailer.segments?.size;
  const worker = new Worker(DIGEST_WORKER, { eval: true, workerData: { fd, end: trailerAt, segmentSize } });
  const done = new Promise<void>((resolve, reject) => {
    worker.once('message', (m: { digest?: Uint8Array; shrunkAt?: number; ioError?: string; at?: number }) => {
      if (m.digest) {
        const got = Buffer.from(m.digest);
        if (segmentSize) {
          const bad = firstBadSegment(got, Buffer.from(trailer.segments!.crc32), segmentSize);
          if (bad === undefined) resolve();
          else reject(new ImageError('E_IMAGE_DIGEST', `checksum of the ${segmentSize}-byte segment at offset ${bad} does not match the trailer`, { offset: bad }));
        } else if (got.equals(Buffer.from(trailer.sha256))) resolve();
        else reject(new ImageError('E_IMAGE_DIGEST', `SHA-256 of the image does not match its trailer (offset ${trailerAt})`, { offset: trailerAt }));
      } else if (m.shrunkAt !== undefined) reject(new ImageError('E_IMAGE_TRUNCATED', `file shrank while hashing (offset ${m.shrunkAt})`, { offset: m.shrunkAt }));
      else reject(new ImageError('E_IMAGE_IO', `read failed while hashing at offset ${m.at}: ${m.ioError}`, { offset: m.at }));
      void worker.terminate();
    });
    worker.once('error', (err) => reject(new ImageError('E_IMAGE_IO', `digest worker failed: ${err.message}`, {}, err)));
    worker.once('exit', (code) => reject(new ImageError('E_IMAGE_IO', `digest worker stopped (exit ${code}) before it finished`, {})));
  });
  return { worker, done };
}

/** Checks the segment checksums in this thread (inline mode: after the SHA-256 matched). */
function checkSegmentsNow(fd: number, trailerAt: number, trailer: TrailerRecord): void {
  const seg = trailer.segments;
  if (!seg) return;
  const sums = new SegmentSums(seg.size);
  const buf = Buffer.allocUnsafe(Math.min(seg.size, 1 << 20));
  for (let offset = 0; offset < trailerAt; ) {
    const r = readSync(fd, buf, 0, Math.min(buf.length, trailerAt - offset), offset);
    if (r === 0) fail('E_IMAGE_TRUNCATED', 'file shrank while reading', offset);
    sums.update(buf.subarray(0, r));
    offset += r;
  }
  const bad = firstBadSegment(sums.bytes(), Buffer.from(seg.crc32), seg.size);
  if (bad !== undefined) fail('E_IMAGE_DIGEST', `checksum of the ${seg.size}-byte segment at offset ${bad} does not match the trailer`, bad);
}

function validate(check: ReturnType<typeof validators>, kind: string, rec: Record<string, unknown>, at: number): void {
  const fn = check.get(kind)!;
  if (!fn(rec)) fail('E_IMAGE_SCHEMA', `${kind} record: ${describeErrors(fn.errors)}`, at, { kind });
}

/** Dangling or duplicate references between records. */
function checkReferences(records: ImageRecordV1[], offsets: number[], pageSize: number): void {
  const objects = new Map<number, string>();
  const pids = new Set<number>();
  const areas = new Map<number, [number, number][]>();
  records.forEach((r, i) => {
    if ((OBJECT_KINDS as readonly string[]).includes(r.kind)) {
      const id = (r as { id: number }).id;
      if (objects.has(id)) fail('E_IMAGE_INCONSISTENT', `object id ${id} used twice`, offsets[i]);
      objects.set(id, r.kind);
    }
    if (r.kind === 'process') pids.add(r.pid);
    if (r.kind === 'memory-area') {
      if (r.end <= r.start || r.start % pageSize || r.end % pageSize) fail('E_IMAGE_INCONSISTENT', `memory area [${r.start}, ${r.end}) is empty or not page-aligned`, offsets[i]);
      const list = areas.get(r.pid) ?? [];
      list.push([r.start, r.end]);
      areas.set(r.pid, list);
    }
  });
  for (const list of areas.values()) list.sort((a, b) => a[0] - b[0]);
  const need = (id: number | undefined, kinds: string[] | undefined, i: number, what: string) => {
    if (id === undefined) return;
    const k = objects.get(id);
    if (k === undefined || (kinds && !kinds.includes(k))) fail('E_IMAGE_INCONSISTENT', `${what} refers to object ${id}, which is ${k ? `a ${k}` : 'missing'}`, offsets[i]);
  };
  records.forEach((r, i) => {
    if (PID_KINDS.has(r.kind)) {
      const pid = (r as { pid: number }).pid;
      if (!pids.has(pid)) fail('E_IMAGE_INCONSISTENT', `${r.kind} record for pid ${pid}, which has no process record`, offsets[i]);
    }
    switch (r.kind) {
      case 'fd':
        need(r.object, undefined, i, `fd ${r.fd} of pid ${r.pid}`);
        break;
      case 'pipe-end':
        need(r.pipe, ['pipe'], i, `pipe-end ${r.id}`);
        break;
      case 'tty':
        need(r.pty, ['pty'], i, `tty ${r.id}`);
        break;
      case 'memory-area':
        need(r.fileId, ['file'], i, `memory area at ${r.start}`);
        break;
      case 'unix':
        need(r.peer, ['unix'], i, `unix socket ${r.id}`);
        for (const m of r.queue) for (const id of m.fds) need(id, undefined, i, `message queued on unix socket ${r.id}`);
        break;
      case 'pages': {
        const end = r.addr + r.count * pageSize;
        const list = areas.get(r.pid) ?? [];
        let lo = 0;
        let hi = list.length - 1;
        let found = false;
        while (lo <= hi) {
          const mid = (lo + hi) >> 1;
          const [s, e] = list[mid]!;
          if (r.addr < s) hi = mid - 1;
          else if (r.addr >= e) lo = mid + 1;
          else {
            found = end <= e;
            break;
          }
        }
        if (!found) fail('E_IMAGE_INCONSISTENT', `pages at ${r.addr} (${r.count} pages) of pid ${r.pid} lie outside its memory areas`, offsets[i]);
        break;
      }
    }
  });
}

function asRef(image: Image, ref: PayloadRef): void {
  if (!Number.isSafeInteger(ref.offset) || !Number.isSafeInteger(ref.length) || ref.offset < 0 || ref.length < 0 || ref.offset + ref.length > image.size) {
    fail('E_IMAGE_LIMIT', `payload reference [${ref.offset}, +${ref.length}) lies outside the image`, ref.offset);
  }
}

/** Reads a payload into memory (for small ones: pipe-sized file contents, tests). */
export function readPayload(image: Image, ref: PayloadRef): Buffer {
  asRef(image, ref);
  return pread(image.fd, ref.offset, ref.length);
}

/** Streams a payload in chunks of at most `chunkSize` bytes (the chunk buffer is reused). */
export function streamPayload(image: Image, ref: PayloadRef, onChunk: (chunk: Buffer, offsetInPayload: number) => void, chunkSize = 8 << 20): void {
  asRef(image, ref);
  const buf = Buffer.allocUnsafe(Math.min(chunkSize, Math.max(ref.length, 1)));
  let done = 0;
  while (done < ref.length) {
    const n = Math.min(buf.length, ref.length - done);
    const r = readSync(image.fd, buf, 0, n, ref.offset + done);
    if (r === 0) fail('E_IMAGE_TRUNCATED', 'file shrank while reading a payload', ref.offset + done);
    onChunk(buf.subarray(0, r), done);
    done += r;
  }
}

/** Copies a payload to `destFd` at `destOffset` (pwrite), e.g. into a memfd being restored. */
export function copyPayload(image: Image, ref: PayloadRef, destFd: number, destOffset = 0): void {
  streamPayload(image, ref, (chunk, at) => {
    let off = 0;
    while (off < chunk.length) off += writeSync(destFd, chunk, off, chunk.length - off, destOffset + at + off);
  });
}

function parseRelease(release: string): [number, number] | undefined {
  const m = /^(\d+)\.(\d+)/.exec(release);
  return m ? [Number(m[1]), Number(m[2])] : undefined;
}

/**
 * For the restorer: refuses an image that needs a newer kernel (the format minimum or any
 * feature it uses) than `release` (default: the running kernel). Not part of validation.
 */
export function checkKernel(header: HeaderRecord, release: string = osRelease()): void {
  const have = parseRelease(release);
  if (!have) fail('E_IMAGE_KERNEL', `cannot parse kernel release "${release}"`);
  const needs: { what: string; minKernel: string }[] = [{ what: `image format ${header.version.major}.${header.version.minor}`, minKernel: header.minKernel }, ...header.features.map((f) => ({ what: `feature ${f.name}`, minKernel: f.minKernel }))];
  for (const n of needs) {
    const want = parseRelease(n.minKernel)!;
    if (have[0] < want[0] || (have[0] === want[0] && have[1] < want[1])) {
      fail('E_IMAGE_KERNEL', `${n.what} needs kernel ${n.minKernel} or newer; this is ${release}`, undefined, { need: n.minKernel, have: release });
    }
  }
}
