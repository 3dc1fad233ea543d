// `handoff validate` on the built CLI (npm test builds dist/ first): exit 0 for the golden
// images, exit 3 with the error code and byte offset for damaged or unsafe ones.
import t from 'tap';
import { spawnSync } from 'node:child_process';
import { chmodSync, copyFileSync, mkdtempSync, readFileSync, writeFileSync } from 'node:fs';
import { tmpdir } from 'node:os';
import { join } from 'node:path';
import { openImage } from '../../src/format/index.js';

const root = join(import.meta.dirname, '..', '..');
const golden = join(root, 'test', 'golden', 'v1');
const dir = mkdtempSync(join(tmpdir(), 'handoff-validate-'));

function handoff(...args: string[]) {
  const r = spawnSync(process.execPath, [join(root, 'bin', 'handoff.js'), ...args], { encoding: 'utf8' });
  return { code: r.status, stdout: r.stdout, stderr: r.stderr };
}

t.test('validate accepts every golden image', async (t) => {
  for (const name of ['full.himg', 'minimal.himg', 'extension.himg']) {
    const r = handoff('validate', join(golden, name));
    t.equal(r.code, 0, `${name}: ${r.stdout}${r.stderr}`);
    t.match(r.stdout, /valid \(format 1\.2, \d+ records/);
  }
  const r = handoff('validate', join(golden, 'full.himg'), '--json');
  const j = JSON.parse(r.stdout) as { valid: boolean; records: number; sha256: string };
  t.equal(j.valid, true);
  t.equal(j.records, openImage(join(golden, 'full.himg')).trailer.records, 'the count the trailer states');
  t.match(j.sha256, /^[0-9a-f]{64}$/);
});

t.test('validate reports a truncated image with exit 3, its code and offset', async (t) => {
  const bytes = readFileSync(join(golden, 'full.himg'));
  const path = join(dir, 'truncated.himg');
  writeFileSync(path, bytes.subarray(0, bytes.length - 10), { mode: 0o600 });
  const r = handoff('validate', path, '--json');
  t.equal(r.code, 3);
  const j = JSON.parse(r.stdout) as { valid: boolean; code: string; offset: number };
  t.equal(j.valid, false);
  t.equal(j.code, 'E_IMAGE_TRUNCATED');
  t.type(j.offset, 'number');
  const text = handoff('validate', path);
  t.equal(text.code, 3);
  t.match(text.stdout, /invalid: E_IMAGE_TRUNCATED at offset \d+/);
});

t.test('validate reports a corrupted page payload as a digest mismatch', async (t) => {
  const bytes = Buffer.from(readFileSync(join(golden, 'full.himg')));
  bytes[12288 + 100] = bytes[12288 + 100]! ^ 0x40; // inside the first page run (payloads start page-aligned)
  const path = join(dir, 'flipped.himg');
  writeFileSync(path, bytes, { mode: 0o600 });
  const r = handoff('validate', path, '--json');
  t.equal(r.code, 3);
  t.equal((JSON.parse(r.stdout) as { code: string }).code, 'E_IMAGE_DIGEST');
});

t.test('validate refuses an image others could have written', async (t) => {
  const path = join(dir, 'writable.himg');
  copyFileSync(join(golden, 'minimal.himg'), path);
  chmodSync(path, 0o666);
  const r = handoff('validate', path, '--json');
  t.equal(r.code, 3);
  t.equal((JSON.parse(r.stdout) as { code: string }).code, 'E_IMAGE_UNSAFE');
});

t.test('validate without an image is a usage error', async (t) => {
  t.equal(handoff('validate').code, 2);
  t.equal(handoff('validate', join(dir, 'missing.himg')).code, 3);
});
