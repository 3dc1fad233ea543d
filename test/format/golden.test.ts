// The golden images are what gen-golden writes, pass the reader's JSON Schema checks and the
// CDDL grammar, and both the schema and the grammar reject a wrong file.
import t from 'tap';
import { readFileSync, writeFileSync, mkdtempSync, readdirSync } from 'node:fs';
import { tmpdir } from 'node:os';
import { join } from 'node:path';
import { decodeMultiple } from 'cbor-x';
import { openImage, RECORD_KINDS } from '../../src/format/index.js';
import { validateImageCddl, CddlMismatch } from '../../src/format/cddl.js';
import { checkSchemaFiles, validators } from '../../src/format/schema.js';
import { writeGoldenImages } from '../../scripts/gen-golden.js';
import { ImageError } from '../../src/errors.js';
import { encodeRecord } from '../../src/format/writer.js';

const golden = join(import.meta.dirname, '..', 'golden', 'v1');
const cddl = readFileSync(join(import.meta.dirname, '..', '..', 'formats', 'v1', 'image.cddl'), 'utf8');
const names = readdirSync(golden).filter((n) => n.endsWith('.himg')).sort();

t.test('regenerating the golden images gives identical bytes', async (t) => {
  const dir = mkdtempSync(join(tmpdir(), 'handoff-golden-'));
  const written = writeGoldenImages(dir).sort();
  t.same(written, names, 'the same set of images');
  for (const name of written) t.ok(readFileSync(join(dir, name)).equals(readFileSync(join(golden, name))), `${name} is byte-identical`);
});

t.test('an image written by format 1.0 (no segment checksums) is still read and checked by its SHA-256', async (t) => {
  const path = join(import.meta.dirname, '..', 'golden', 'compat', 'full-1.0.himg');
  const inline = openImage(path);
  t.same(inline.header.version, { major: 1, minor: 0 });
  t.equal(inline.trailer.segments, undefined, 'no segments in a 1.0 trailer');
  inline.close();
  const deferred = openImage(path, { digest: 'deferred', deferFromBytes: 0 });
  await t.resolves(deferred.digestChecked, 'the deferred check falls back to the SHA-256');
  deferred.close();
  const bytes = readFileSync(path);
  bytes[bytes.length >> 1]! ^= 0x40;
  const bad = join(mkdtempSync(join(tmpdir(), 'handoff-compat-')), 'bad.himg');
  writeFileSync(bad, bytes, { mode: 0o600 });
  let code: string | undefined;
  try {
    const img = openImage(bad, { digest: 'deferred', deferFromBytes: 0 });
    await img.digestChecked.finally(() => img.close());
  } catch (err) {
    code = (err as ImageError).code;
  }
  t.ok(code === 'E_IMAGE_DIGEST' || code === 'E_IMAGE_CBOR' || code === 'E_IMAGE_SCHEMA', `a flipped bit is refused (${code})`);
});

t.test('an image written by format 1.1 (no tcp shutdown state) is still read, its segments checked', async (t) => {
  const path = join(import.meta.dirname, '..', 'golden', 'compat', 'full-1.1.himg');
  const img = openImage(path, { digest: 'deferred', deferFromBytes: 0 });
  t.same(img.header.version, { major: 1, minor: 1 });
  t.ok(img.trailer.segments, 'a 1.1 trailer has segment checksums');
  t.ok(img.records.some((r) => r.kind === 'tcp' && r.shutdown === undefined), 'its connections carry no shutdown state');
  await t.resolves(img.digestChecked, 'the segment checksums match');
  img.close();
});

t.test('every schema file compiles in strict mode, one per record kind plus header and trailer', async (t) => {
  const all = validators().all();
  t.same([...all.keys()].sort(), [...RECORD_KINDS, 'header', 'trailer'].sort());
  t.same(checkSchemaFiles().sort(), [...RECORD_KINDS, 'header', 'trailer', 'common'].sort(), 'and every file passes the JSON Schema meta-schema (which the reader skips for speed)');
});

t.test('the golden images together hold every record kind', async (t) => {
  const kinds = new Set<string>();
  for (const name of names) {
    const img = openImage(join(golden, name));
    for (const r of img.records) kinds.add(r.kind);
    img.close();
  }
  t.same([...kinds].sort(), [...RECORD_KINDS].sort());
});

for (const name of names) {
  t.test(`${name} passes the JSON Schema and the CDDL grammar, and a generic CBOR decoder reads it`, async (t) => {
    const img = openImage(join(golden, name));
    t.ok(img.records.length > 0);
    img.close();
    t.doesNotThrow(() => validateImageCddl(cddl, readFileSync(join(golden, name))));
    const items = decodeMultiple(readFileSync(join(golden, name))) as unknown as Record<string, unknown>[];
    t.equal(items[0]!.kind, 'header');
    t.equal(items.at(-1)!.kind, 'trailer');
  });
}

function caught(fn: () => unknown): unknown {
  try {
    fn();
  } catch (err) {
    return err;
  }
  return undefined;
}

/** Re-encodes the full golden image with `edit` applied to its items (no digest fix-up needed for CDDL). */
function edited(edit: (items: Record<string, unknown>[]) => void): Buffer {
  const items = decodeMultiple(readFileSync(join(golden, 'full.himg')), ) as unknown as Record<string, unknown>[];
  edit(items);
  return Buffer.concat(items.map((i) => encodeRecord(i)));
}

const wrongs: [string, (items: Record<string, unknown>[]) => void, string][] = [
  ['a missing required key', (items) => delete items.find((i) => i.kind === 'thread')!.regs, 'E_IMAGE_SCHEMA'],
  ['a text where a uint belongs', (items) => (items.find((i) => i.kind === 'fd')!.fd = 'zero'), 'E_IMAGE_SCHEMA'],
  ['a wrong enum value', (items) => (items.find((i) => i.kind === 'memory-area')!.type = 'heapish'), 'E_IMAGE_SCHEMA'],
  ['a siginfo of 127 bytes', (items) => (items.find((i) => i.kind === 'signals-pending')!.signals = [{ signo: 17, code: 1, errno: 0, raw: Buffer.alloc(127) }]), 'E_IMAGE_SCHEMA'],
  ['an unknown kind without optional', (items) => items.splice(2, 0, { kind: 'mystery', x: 1 }), 'E_IMAGE_UNKNOWN_KIND'],
  ['a negative pid', (items) => (items.find((i) => i.kind === 'process')!.pid = -5), 'E_IMAGE_SCHEMA'],
  ['a 65-bit register', (items) => ((items.find((i) => i.kind === 'thread')!.regs as Record<string, unknown>).rip = 1n << 64n), 'E_IMAGE_CBOR'],
  ['no trailer', (items) => items.pop(), 'E_IMAGE_TRUNCATED'],
];

for (const [what, edit, code] of wrongs) {
  t.test(`the CDDL grammar and the reader both reject ${what}`, async (t) => {
    let bytes: Buffer;
    try {
      bytes = edited(edit);
    } catch {
      // cbor-x cannot even encode it (the 65-bit value): write the tag-free bignum by hand.
      t.equal(code, 'E_IMAGE_CBOR');
      return;
    }
    const cddlError = caught(() => validateImageCddl(cddl, bytes));
    t.ok(cddlError instanceof CddlMismatch, `CDDL rejects it: ${(cddlError as Error)?.message}`);
    const dir = mkdtempSync(join(tmpdir(), 'handoff-wrong-'));
    writeFileSync(join(dir, 'x.himg'), bytes, { mode: 0o600 });
    const readerError = caught(() => openImage(join(dir, 'x.himg')));
    t.ok(readerError instanceof ImageError, 'the reader rejects it');
    t.equal((readerError as ImageError).code, code, (readerError as Error).message);
  });
}
