// Thousands of damaged images (deterministic seed): every one must end in an ImageError with a
// stable code, never a crash, a hang or unbounded memory. Damage to the bytes is caught by the
// framing or the digest; damage re-encoded with a valid digest is caught by the schema checks.
import t, { type Test } from 'tap';
import { mkdtempSync, readFileSync, writeFileSync, openSync, closeSync, writeSync } from 'node:fs';
import { tmpdir } from 'node:os';
import { join } from 'node:path';
import { decodeMultiple } from 'cbor-x';
import { openImage, ImageWriter, type HeaderFields } from '../../src/format/index.js';
import { encodeRecord } from '../../src/format/writer.js';
import { ItemReader } from '../../src/format/cbor.js';
import { createHash } from 'node:crypto';
import { ImageError, type ImageErrorCode } from '../../src/errors.js';

const golden = join(import.meta.dirname, '..', 'golden', 'v1');
const dir = mkdtempSync(join(tmpdir(), 'handoff-fuzz-'));
const target = join(dir, 'fuzz.himg');

const CODES: ReadonlySet<ImageErrorCode> = new Set<ImageErrorCode>([
  'E_IMAGE_MAGIC', 'E_IMAGE_VERSION', 'E_IMAGE_TRUNCATED', 'E_IMAGE_CBOR', 'E_IMAGE_SCHEMA', 'E_IMAGE_UNKNOWN_KIND',
  'E_IMAGE_DIGEST', 'E_IMAGE_LIMIT', 'E_IMAGE_ALIGN', 'E_IMAGE_TRAILING', 'E_IMAGE_INCONSISTENT',
]);

/** mulberry32: small deterministic PRNG. */
function rng(seed: number): () => number {
  let a = seed >>> 0;
  return () => {
    a = (a + 0x6d2b79f5) >>> 0;
    let x = a;
    x = Math.imul(x ^ (x >>> 15), x | 1);
    x ^= x + Math.imul(x ^ (x >>> 7), x | 61);
    return ((x ^ (x >>> 14)) >>> 0) / 4294967296;
  };
}
const random = rng(0x4a6f6b65);
const int = (n: number) => Math.floor(random() * n);

/** Opens `bytes` as an image; returns the ImageError code, or 'ok'. Anything else fails the test. */
function outcome(bytes: Buffer): string {
  writeFileSync(target, bytes, { mode: 0o600 });
  try {
    openImage(target).close();
    return 'ok';
  } catch (err) {
    if (err instanceof ImageError && CODES.has(err.code as ImageErrorCode) && typeof err.details.offset === 'number') return err.code;
    if (err instanceof ImageError && CODES.has(err.code as ImageErrorCode)) return `${err.code} (without offset)`;
    throw err;
  }
}

/** Tallies outcomes per code; `allowed` lists the codes this class of damage may produce. */
function run(t: Test, what: string, cases: Iterable<Buffer>, allowed: readonly string[]): void {
  const tally = new Map<string, number>();
  let n = 0;
  for (const bytes of cases) {
    const code = outcome(bytes);
    tally.set(code, (tally.get(code) ?? 0) + 1);
    n++;
  }
  const unexpected = [...tally.keys()].filter((c) => !allowed.includes(c));
  t.same(unexpected, [], `${what}: ${n} cases, outcomes ${JSON.stringify(Object.fromEntries(tally))}`);
}

const images = ['full.himg', 'minimal.himg', 'extension.himg'].map((name) => ({ name, bytes: readFileSync(join(golden, name)) }));

/** Start offsets of every top-level item (header, records, trailer), found with the image's own item parser. */
function boundaries(bytes: Buffer): number[] {
  const path = join(dir, 'walk.himg');
  writeFileSync(path, bytes, { mode: 0o600 });
  const fd = openSync(path, 'r');
  try {
    const reader = new ItemReader(fd, bytes.length, createHash('sha256'));
    const out: number[] = [];
    while (!reader.atEnd()) {
      out.push(reader.pos);
      reader.readItem();
    }
    return out;
  } finally {
    closeSync(fd);
  }
}

t.test('truncation at every record boundary and at random offsets is reported as truncation', async (t) => {
  for (const { name, bytes } of images) {
    const cuts = [...boundaries(bytes), bytes.length - 1, 0];
    for (let i = 0; i < 150; i++) cuts.push(int(bytes.length));
    run(t, `${name} truncated`, cuts.map((c) => bytes.subarray(0, c)), ['E_IMAGE_TRUNCATED']);
  }
});

t.test('bytes after the trailer are reported', async (t) => {
  for (const { name, bytes } of images) {
    const cases = Array.from({ length: 40 }, (_, i) => Buffer.concat([bytes, Buffer.from(Array.from({ length: 1 + (i % 9) }, () => int(256)))]));
    run(t, `${name} with trailing bytes`, cases, ['E_IMAGE_TRAILING']);
  }
});

t.test('bit flips anywhere never pass and never crash', async (t) => {
  for (const { name, bytes } of images) {
    const cases = function* () {
      for (let i = 0; i < (name === 'full.himg' ? 1500 : 400); i++) {
        const b = Buffer.from(bytes);
        const flips = 1 + int(3);
        for (let f = 0; f < flips; f++) {
          const at = int(b.length);
          b[at] = b[at]! ^ (1 << int(8));
        }
        yield b;
      }
    };
    run(t, `${name} with bit flips`, cases(), [...CODES]);
  }
});

t.test('item heads overwritten with huge or wrong lengths are bounded', async (t) => {
  const heads = [
    [0x5b, 0x7f, 0xff, 0xff, 0xff, 0xff, 0xff, 0xff, 0xff], // bstr of 2^63 bytes
    [0x7b, 0x00, 0x00, 0x00, 0x01, 0x00, 0x00, 0x00, 0x00], // tstr of 4 GiB
    [0x9b, 0xff, 0xff, 0xff, 0xff, 0xff, 0xff, 0xff, 0xff], // array of 2^64-1 items
    [0xbb, 0x00, 0x00, 0x00, 0x00, 0xff, 0xff, 0xff, 0xff], // map of 2^32-1 pairs
    [0x5f], [0x9f], [0xbf], [0xff], [0x1c], [0xc0], [0xf7], // indefinite, break, reserved, tag, undefined
    [0x5a, 0x00, 0x10, 0x00, 0x00], [0x59, 0xff, 0xff], [0x98, 0x40], [0xb8, 0x20],
  ];
  for (const { name, bytes } of images) {
    const cases = function* () {
      for (let i = 0; i < 300; i++) {
        const b = Buffer.from(bytes);
        const head = heads[int(heads.length)]!;
        const at = int(b.length - head.length);
        Buffer.from(head).copy(b, at);
        if (!b.equals(bytes)) yield b; // page data may already hold those bytes
      }
    };
    run(t, `${name} with forged item heads`, cases(), [...CODES]);
  }
});

// Structural damage with a valid digest: decode the golden image, change one record, write it
// again with the real writer (so framing, alignment and trailer are right).
const fullItems = decodeMultiple(readFileSync(join(golden, 'full.himg'))) as unknown as Record<string, unknown>[];
const header = fullItems[0] as unknown as HeaderFields & { kind?: string; magic?: string };

function rewrite(records: Record<string, unknown>[], headerPatch: Record<string, unknown> = {}): Buffer {
  const path = join(dir, `rewrite.himg`);
  const { kind: _k, magic: _m, ...fields } = { ...header, ...headerPatch } as Record<string, unknown>;
  const w = ImageWriter.create(path, fields as unknown as HeaderFields);
  try {
    for (const r of records) w.record(r as never);
    w.finish();
  } catch (err) {
    w.abort();
    throw err;
  }
  return readFileSync(path);
}

const records = fullItems.slice(1, -1);

function wrongValue(original: unknown): unknown {
  const choices: unknown[] = ['text', -7, 1.5, [1, 2], { a: 1 }, true, null, Buffer.from([1, 2, 3]), 2n ** 64n - 1n, 2 ** 40];
  const sameClass = (v: unknown) =>
    (typeof v === 'number' || typeof v === 'bigint' ? 'number' : Array.isArray(v) ? 'array' : v instanceof Uint8Array ? 'bytes' : v === null ? 'null' : typeof v) ===
    (typeof original === 'number' || typeof original === 'bigint' ? 'number' : Array.isArray(original) ? 'array' : original instanceof Uint8Array ? 'bytes' : original === null ? 'null' : typeof original);
  const pool = choices.filter((c) => !sameClass(c));
  return pool[int(pool.length)];
}

/** Picks a random leaf/field path inside a record (not `kind`, `optional`, `pad`, nor netconfig's free-form JSON). */
function mutateOne(rec: Record<string, unknown>): Record<string, unknown> {
  const copy = structuredClone(rec);
  let node: Record<string, unknown> | unknown[] = copy;
  for (let depth = 0; depth < 4; depth++) {
    const keys = Array.isArray(node) ? node.map((_, i) => String(i)) : Object.keys(node).filter((k) => !['kind', 'optional', 'pad'].includes(k));
    if (!keys.length) break;
    const k = keys[int(keys.length)]!;
    const v = (node as Record<string, unknown>)[k];
    const descend = v !== null && typeof v === 'object' && !(v instanceof Uint8Array) && Object.keys(v).length > 0 && random() < 0.5 && !(copy.kind === 'netconfig');
    if (!descend || (Array.isArray(node) && copy.kind === 'netconfig')) {
      (node as Record<string, unknown>)[k] = wrongValue(v);
      return copy;
    }
    node = v as Record<string, unknown>;
  }
  return copy;
}

t.test('records with a wrong type in a field fail the schema', async (t) => {
  const cases = function* () {
    for (let i = 0; i < 300; i++) {
      const idx = int(records.length);
      if (records[idx]!.kind === 'netconfig') continue; // free-form JSON by design
      const rec = mutateOne(records[idx]!);
      const out = records.slice();
      out[idx] = rec;
      yield rewrite(out);
    }
  };
  run(t, 'field type mutations', cases(), ['E_IMAGE_SCHEMA', 'E_IMAGE_INCONSISTENT', 'E_IMAGE_LIMIT']);
});

t.test('unknown record kinds fail unless optional; unknown versions and magic fail clearly', async (t) => {
  const cases = Array.from({ length: 50 }, (_, i) => {
    const out = records.slice();
    out.splice(int(out.length), 0, { kind: `kind-${i}`, value: i });
    return rewrite(out);
  });
  run(t, 'unknown mandatory kinds', cases, ['E_IMAGE_UNKNOWN_KIND']);
  t.equal(outcome(rewrite([...records, { kind: 'kind-x', optional: true, v: [1] }])), 'ok', 'an unknown optional record is skipped');
  t.equal(outcome(rewrite(records, { version: { major: 2, minor: 0 } })), 'E_IMAGE_VERSION');
  t.equal(outcome(Buffer.concat([encodeRecord({ kind: 'header', magic: 'other-image' }), encodeRecord({ kind: 'trailer' })])), 'E_IMAGE_MAGIC');
  t.equal(outcome(Buffer.from('#!/bin/sh\necho not an image\n')), 'E_IMAGE_MAGIC');
  t.equal(outcome(rewrite(records, { pageSize: 65536 })), 'E_IMAGE_SCHEMA');
});

t.test('deep nesting and oversized inline strings hit the reader limits', async (t) => {
  let deep: unknown = 1;
  for (let i = 0; i < 20; i++) deep = [deep]; // deeper than the reader's 16, within the writer's 32
  t.equal(outcome(rewrite([...records.slice(0, 3), { kind: 'clocks', optional: true, deep, monotonic: { sec: 1, nsec: 1 }, boottime: { sec: 1, nsec: 1 }, realtime: { sec: 1, nsec: 1 } }])), 'E_IMAGE_LIMIT');
  const bigPipe = { kind: 'pipe', id: 999, inode: 1, capacity: 65536, data: Buffer.alloc(17 << 20) };
  t.equal(outcome(rewrite([...records, bigPipe])), 'E_IMAGE_LIMIT', 'a 17 MiB non-payload byte string');
  const nested = { kind: 'unix', id: 998, type: 'dgram', state: 'unconnected', queue: [{ data: Buffer.alloc(17 << 20), fds: [] }], flags: 0, shutdown: 0 };
  t.equal(outcome(rewrite([...records, nested])), 'E_IMAGE_LIMIT', 'a 17 MiB byte string inside a record');
});

t.test('a misaligned or mis-sized page payload is refused', async (t) => {
  // Hand-framed pages record without pad: its payload cannot be page-aligned.
  const rec = encodeRecord({ kind: 'pages', pid: 4242, addr: 0x555555556000, count: 1, data: Buffer.alloc(4096) });
  const w = join(dir, 'misaligned.himg');
  const base = rewrite(records);
  // Replace the trailer with: misaligned record + fresh trailer over everything before it.
  const items = boundaries(base);
  const body = Buffer.concat([base.subarray(0, items.at(-1)), rec]);
  const trailer = encodeRecord({ kind: 'trailer', records: records.length + 1, sha256: createHash('sha256').update(body).digest() });
  const fd = openSync(w, 'w', 0o600);
  writeSync(fd, Buffer.concat([body, trailer]));
  closeSync(fd);
  t.equal(outcome(readFileSync(w)), 'E_IMAGE_ALIGN');
  const wrongCount = records.map((r) => (r.kind === 'pages' ? { ...r, count: (r.count as number) + 1 } : r));
  t.equal(outcome(rewrite(wrongCount)), 'E_IMAGE_INCONSISTENT');
});

t.test('memory stays bounded over the whole run', async (t) => {
  t.ok(process.memoryUsage().rss < 1024 * 1024 * 1024, `rss ${Math.round(process.memoryUsage().rss / 1048576)} MiB`);
});
