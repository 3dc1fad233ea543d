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
  /**
   * 'deferred' only, for a 1.1 image: page payloads are checked in the memory they are restored
   * into, as the caller reports them with `image.filled()`; the caller must call
   * `image.fillDone()` before it awaits `digestChecked`.
   */
  checkFilledMemory?: boolean;
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
  /**
   * With checkFilledMemory: image bytes [offset, offset + length) of a page payload now sit at
   * `addr` in process `pid`, which stays stopped until digestChecked settles.
   */
  filled(offset: number, pid: number, addr: number, length: number): void;
  /** No more filled(): what has not landed in memory is checked from the file. */
  fillDone(): void;
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
      const fromMemory = options.checkFilledMemory === true && result.trailer.segments !== undefined;
      const started = startDigestWorker(fd, result.trailerAt, result.trailer, fromMemory ? pageExtents(result.records) : undefined);
      worker = started.worker;
      digestChecked = started.done;
    }
    // Nobody may be waiting (a restore that failed first): never an unhandled rejection.
    digestChecked.catch(() => undefined);
    let closed = false;
    const memFds = new Map<number, number>();
    let fillEnded = false;
    return {
      ...result,
      digestChecked,
      filled: (offset, pid, addr, length) => {
        if (!worker || closed || fillEnded) return; // after fillDone the worker reads the file
        let memFd = memFds.get(pid);
        if (memFd === undefined) {
          try {
            memFd = openSync(`/proc/${pid}/mem`, 'r');
          } catch {
            memFd = -1; // gone already: the worker reads the file instead
          }
          memFds.set(pid, memFd);
        }
        if (memFd >= 0) worker.postMessage({ filled: [offset, memFd, addr, length] });
      },
      fillDone: () => {
        fillEnded = true;
        worker?.postMessage({ done: true });
      },
      close: () => {
        if (closed) return;
        closed = true;
        const closeAll = () => {
          for (const f of [fd, ...memFds.values()]) if (f >= 0) closeSync(f);
        };
        // The worker reads through these descriptors: they are closed once it has stopped, so
        // that it never reads a number reused by someone else (nor fails mid-read as it stops).
        if (worker) void worker.terminate().then(closeAll, closeAll);
        else closeAll();
      },
    };
  } catch (err) {
    closeSync(fd);
    if (err instanceof ImageError || (err instanceof HandoffError && err.code === 'E_INSTALL')) throw err;
    throw new ImageError('E_IMAGE_IO', `cannot read ${path}: ${(err as Error).message}`, { path }, err);
  }
}

function walk(fd: number, path: string, limits: DecodeLimits, hashInline: boolean): Omit<Image, 'close' | 'digestChecked' | 'filled' | 'fillDone'> & { trailerAt: number } {
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

// The deferred digest's worker thread. Descriptors are shared by every thread of a process, so
// it reads the open image directly. Off the main thread, it runs while the restore fills process
// memory from the same file. Source text (eval) so it runs the same from src/ under the test
// loader and from dist/.
//
// For a 1.0 image it posts the SHA-256 of bytes [0, end). For a 1.1 image it posts the CRC-32 of
// every segment. With `fromMemory`, it checks page payloads where the restore put them:
//   - the restore posts {filled: [offset, memFd, addr, length]} as each run of pages lands, and
//     the worker reads those bytes through memFd, /proc/PID/mem opened by the main thread;
//   - a segment is checked as soon as all its payload bytes have landed;
//   - {done: true} means nothing more will land: whatever is missing is read from the file.
// Reading the pages back from memory costs no disk read and no page cache: the restore reads
// pages with O_DIRECT, so the image never passes through the page cache at all. It also checks
// the bytes the processes will actually run with.
const DIGEST_WORKER = `
const { parentPort, workerData } = require('node:worker_threads');
const { readSync } = require('node:fs');
const { createHash } = require('node:crypto');
const { crc32 } = require('node:zlib');
const { fd, end, segmentSize: S, extents, fromMemory } = workerData;
const buf = Buffer.allocUnsafe(S ? Math.min(S, 1 << 20) : 1 << 20);
class Shrunk { constructor(at) { this.at = at; } }

function readFile(pos, len, sink) {
  while (len > 0) {
    const r = readSync(fd, buf, 0, Math.min(buf.length, len), pos);
    if (r === 0) throw new Shrunk(pos);
    sink(buf.subarray(0, r));
    pos += r;
    len -= r;
  }
}

if (!S) {
  const hash = createHash('sha256');
  try {
    readFile(0, end, (b) => hash.update(b));
    parentPort.postMessage({ digest: hash.digest() });
  } catch (err) {
    parentPort.postMessage(err instanceof Shrunk ? { shrunkAt: err.at } : { ioError: err.message, at: 0 });
  }
} else {
  const count = Math.ceil(end / S);
  const sums = Buffer.alloc(count * 4);
  const checked = new Uint8Array(count);
  let left = count;
  // Payload extents (sorted [offset, length] pairs) and the filled runs (sorted by offset).
  const extentCount = extents.length / 2;
  const runs = [];
  // Index of the first entry whose end is past pos, in a sorted list of [offset, length].
  const firstEndingAfter = (n, offAt, lenAt, pos) => {
    let lo = 0, hi = n;
    while (lo < hi) { const mid = (lo + hi) >> 1; if (offAt(mid) + lenAt(mid) <= pos) lo = mid + 1; else hi = mid; }
    return lo;
  };
  const extentAfter = (pos) => firstEndingAfter(extentCount, (i) => extents[2 * i], (i) => extents[2 * i + 1], pos);
  const runAfter = (pos) => firstEndingAfter(runs.length, (i) => runs[i].offset, (i) => runs[i].length, pos);

  // The pieces of [a, b): from the file, or from a process's memory. undefined when a payload
  // byte has not landed yet and the file may not stand in for it (final false).
  function pieces(a, b, final) {
    const out = [];
    while (a < b) {
      const e = extentAfter(a);
      const eStart = e < extentCount ? extents[2 * e] : Infinity;
      if (eStart > a) { const to = Math.min(b, eStart); out.push({ a, to }); a = to; continue; }
      const eEnd = Math.min(b, eStart + extents[2 * e + 1]);
      while (a < eEnd) {
        const r = runAfter(a);
        const run = r < runs.length ? runs[r] : undefined;
        if (run && run.offset <= a) {
          const to = Math.min(eEnd, run.offset + run.length);
          out.push({ a, to, run });
          a = to;
        } else {
          if (!final) return undefined;
          const to = Math.min(eEnd, run ? run.offset : Infinity);
          out.push({ a, to });
          a = to;
        }
      }
    }
    return out;
  }

  function check(seg, final) {
    if (checked[seg]) return;
    const list = pieces(seg * S, Math.min(end, (seg + 1) * S), final);
    if (!list) return;
    let crc = 0;
    const sink = (b) => { crc = crc32(b, crc); };
    for (const p of list) {
      if (!p.run) { readFile(p.a, p.to - p.a, sink); continue; }
      // The bytes as they sit in the process. Were it gone (a failed restore kills what it
      // made), the file is read instead: nothing will run from that memory anyway.
      let pos = p.a;
      while (pos < p.to) {
        let r = 0;
        try { r = readSync(p.run.memFd, buf, 0, Math.min(buf.length, p.to - pos), p.run.addr + (pos - p.run.offset)); } catch { break; }
        if (r === 0) break;
        sink(buf.subarray(0, r));
        pos += r;
      }
      if (pos < p.to) readFile(pos, p.to - pos, sink);
    }
    sums.writeUInt32BE(crc >>> 0, seg * 4);
    checked[seg] = 1;
    left--;
  }

  let finished = false;
  function finish(final) {
    if (finished) return; // the last run landed before {done} came
    for (let seg = 0; seg < count; seg++) check(seg, final);
    if (left === 0) {
      finished = true;
      parentPort.postMessage({ digest: sums });
      parentPort.close();
    }
  }

  const guarded = (fn) => {
    try { fn(); } catch (err) {
      finished = true;
      parentPort.postMessage(err instanceof Shrunk ? { shrunkAt: err.at } : { ioError: err.message, at: 0 });
      parentPort.close();
    }
  };
  guarded(() => finish(!fromMemory));
  if (fromMemory && left > 0) {
    parentPort.on('message', (m) => guarded(() => {
      if (finished) return;
      if (m.done) return finish(true);
      const [offset, memFd, addr, length] = m.filled;
      runs.splice(runAfter(offset), 0, { offset, memFd, addr, length });
      for (let seg = Math.floor(offset / S); seg * S < offset + length; seg++) check(seg, false);
      if (left === 0) finish(true);
    }));
  }
}
`;

/** [offset, length] of every page payload, in file order (records are in file order). */
function pageExtents(records: ImageRecordV1[]): Float64Array {
  const refs = records.flatMap((r) => (r.kind === 'pages' ? [r.data as PayloadRef] : []));
  const out = new Float64Array(refs.length * 2);
  refs.forEach((ref, i) => {
    out[2 * i] = ref.offset;
    out[2 * i + 1] = ref.length;
  });
  return out;
}

/** The first segment whose checksum differs, as the file offset where it starts. */
function firstBadSegment(got: Buffer, want: Buffer, size: number): number | undefined {
  for (let i = 0; i * 4 < want.length; i++) if (got.readUInt32BE(i * 4) !== want.readUInt32BE(i * 4)) return i * size;
  return undefined;
}

/**
 * Checks [0, trailerAt) in a worker thread, by segment checksums when the trailer has them,
 * else by SHA-256; settles when it matches (or not).
 */
function startDigestWorker(fd: number, trailerAt: number, trailer: TrailerRecord, extents?: Float64Array): { worker: Worker; done: Promise<void> } {
  const segmentSize = trailer.segments?.size;
  const workerData = { fd, end: trailerAt, segmentSize, extents: extents ?? new Float64Array(0), fromMemory: extents !== undefined };
  const worker = new Worker(DIGEST_WORKER, { eval: true, workerData });
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
