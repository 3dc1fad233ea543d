// The RAM store layout on a file standing in for /dev/pmem0, and the file store's manifest.
import t from 'tap';
import { mkdtempSync, readFileSync, writeFileSync, openSync, writeSync, closeSync, existsSync } from 'node:fs';
import { tmpdir } from 'node:os';
import { join } from 'node:path';
import { randomBytes } from 'node:crypto';
import { clearPmem, extractPmemImage, readPmemHeader, setPmemState, writePmem, prepareFileStore, writeManifestFile, readManifestFile, retireFileStore, parseStoreArgument, storeArgument, PMEM_PENDING, PMEM_RESUMED, type Manifest } from '../../src/handoff/store.js';

function manifest(trees: { root: number; bytes: number }[]): Manifest {
  return {
    kind: 'handoff-manifest', version: 1, id: 'test', hostname: 'h', sourceKernel: '6.1.0', targetKernel: '6.12.0',
    frozenAtMs: 1, writtenAtMs: 2, prepare: { dump: 1 },
    trees: trees.map((x) => ({ root: x.root, pids: [x.root], threads: 1, image: `tree-${x.root}.himg`, bytes: x.bytes, sha256: 'x', lockTable: 'handoff_t1' })),
  };
}

t.test('images written to a pmem device come back byte for byte, and only after the header is complete', async (t) => {
  const dir = mkdtempSync(join(tmpdir(), 'handoff-pmem-'));
  const device = join(dir, 'pmem0');
  writeFileSync(device, Buffer.alloc(8 << 20, 0xaa));
  const images = [randomBytes(100_000), randomBytes(5000)];
  const paths = images.map((b, i) => {
    const p = join(dir, `in-${i}`);
    writeFileSync(p, b);
    return p;
  });
  t.equal(readPmemHeader(device), undefined, 'a device full of junk holds no handoff');
  const m = manifest([{ root: 10, bytes: images[0]!.length }, { root: 20, bytes: images[1]!.length }]);
  writePmem(device, m, paths);
  const back = readPmemHeader(device);
  t.equal(back?.state, PMEM_PENDING, 'pending after writing');
  t.same(back?.manifest.trees.map((x) => x.root), [10, 20], 'manifest read back');
  t.ok(back!.manifest.trees.every((x) => x.offset! % 4096 === 0), 'images start page-aligned');
  back!.manifest.trees.forEach((tree, i) => {
    const out = join(dir, `out-${i}`);
    extractPmemImage(device, tree, out);
    t.ok(readFileSync(out).equals(images[i]!), `image ${i} identical`);
  });
  setPmemState(device, PMEM_RESUMED);
  t.equal(readPmemHeader(device)?.state, PMEM_RESUMED, 'marked resumed');

  // Corrupt one byte of the second image: extraction refuses and leaves no file.
  const fd = openSync(device, 'r+');
  writeSync(fd, Buffer.from([0x55 ^ images[1]![7]!]), 0, 1, back!.manifest.trees[1]!.offset! + 7);
  closeSync(fd);
  const bad = join(dir, 'bad');
  t.throws(() => extractPmemImage(device, back!.manifest.trees[1]!, bad), { code: 'E_IMAGE_DIGEST' }, 'a corrupted image is refused');
  t.notOk(existsSync(bad), 'and not left behind');

  // Corrupt the manifest: the header digest catches it.
  const fd2 = openSync(device, 'r+');
  writeSync(fd2, Buffer.from('X'), 0, 1, 70);
  closeSync(fd2);
  t.throws(() => readPmemHeader(device), { code: 'E_IMAGE_DIGEST' }, 'a corrupted manifest is refused');
  clearPmem(device);
  t.equal(readPmemHeader(device), undefined, 'cleared device holds nothing');
});

t.test('a pmem device too small for the images is refused before anything is written', async (t) => {
  const dir = mkdtempSync(join(tmpdir(), 'handoff-pmem-'));
  const device = join(dir, 'pmem0');
  writeFileSync(device, Buffer.alloc(64 * 1024));
  const p = join(dir, 'img');
  writeFileSync(p, randomBytes(200_000));
  t.throws(() => writePmem(device, manifest([{ root: 1, bytes: 200_000 }]), [p]), { code: 'E_STORE_FULL' });
  t.equal(readPmemHeader(device), undefined, 'nothing pending');
});

t.test('the file store keeps a manifest and is renamed once resumed', async (t) => {
  const dir = join(mkdtempSync(join(tmpdir(), 'handoff-store-')), 'store');
  prepareFileStore(dir);
  writeFileSync(join(dir, 'tree-1.himg'), 'x');
  writeManifestFile(dir, manifest([{ root: 1, bytes: 1 }]));
  t.equal(readManifestFile(dir).trees[0]!.root, 1, 'manifest read back');
  prepareFileStore(dir);
  t.notOk(existsSync(join(dir, 'tree-1.himg')), 'preparing again empties the store');
  writeManifestFile(dir, manifest([{ root: 1, bytes: 1 }]));
  const kept = retireFileStore(dir);
  t.equal(kept, `${dir}.resumed`, 'renamed');
  t.notOk(existsSync(dir), 'nothing pending under the old name');
});

t.test('store arguments round-trip through the kernel command line', async (t) => {
  for (const s of [{ type: 'file', path: '/var/lib/handoff/x' }, { type: 'pmem', device: '/dev/pmem0' }] as const) {
    t.same(parseStoreArgument(storeArgument(s)), s, storeArgument(s));
  }
});
