// Writer and reader together: values keep their types, payloads land page-aligned and are
// handed back as references, the temp-file protocol holds, unsafe files are refused.
import t from 'tap';
import { chmodSync, chownSync, existsSync, mkdirSync, mkdtempSync, openSync, readdirSync, readFileSync, readlinkSync, statSync, closeSync, readSync, writeSync } from 'node:fs';
import { tmpdir } from 'node:os';
import { join } from 'node:path';
import { ImageWriter, openImage, DEFER_MIN_BYTES, readPayload, streamPayload, copyPayload, checkKernel, FileBytes, type HeaderFields, type ThreadRecord, type MemoryAreaRecord, type PagesRecord, type FileRecord, type ImageRecordV1 } from '../../src/format/index.js';
import { ImageError } from '../../src/errors.js';
import { alignedBuffer, bufferAddress, misalignment } from '../../src/native/fd.js';
import { GOLDEN_HEADER, fullRecords } from '../../scripts/gen-golden.js';

const dir = mkdtempSync(join(tmpdir(), 'handoff-rw-'));

function code(fn: () => unknown): string | undefined {
  try {
    fn();
  } catch (err) {
    if (err instanceof ImageError) return err.code;
    throw err;
  }
  return undefined;
}

function write(name: string, records: ImageRecordV1[], header: HeaderFields = GOLDEN_HEADER): string {
  const path = join(dir, name);
  const w = ImageWriter.create(path, header);
  for (const r of records) w.record(r);
  w.finish();
  return path;
}

t.test('records read back with their types: bigint registers, number addresses, byte strings', async (t) => {
  const img = openImage(write('types.himg', fullRecords()));
  const thread = img.records.find((r): r is ThreadRecord => r.kind === 'thread')!;
  t.equal(thread.regs.rip, 0x55555555a123n);
  t.equal(thread.regs.orig_rax, 0xffffffffffffffffn);
  t.equal(typeof thread.regs.cs, 'bigint', 'small u64 values are bigint too');
  t.equal(thread.xsave.xfeatures, 0x2e7n);
  t.ok(Buffer.isBuffer(thread.xsave.data));
  t.equal(typeof thread.clearTid, 'number');
  const vsyscall = img.records.find((r): r is MemoryAreaRecord => r.kind === 'memory-area' && r.type === 'vsyscall')!;
  t.equal(vsyscall.start, 0xffffffffff600000, 'the vsyscall address survives as an exact number');
  const pages = img.records.filter((r): r is PagesRecord => r.kind === 'pages');
  for (const p of pages) {
    t.ok(p.data instanceof FileBytes, 'page data is a reference');
    t.equal((p.data as FileBytes).offset % 4096, 0, 'page-aligned');
    t.equal('pad' in p, false, 'the pad key is not handed out');
  }
  const original = fullRecords().filter((r): r is PagesRecord => r.kind === 'pages');
  t.ok(readPayload(img, pages[0]!.data as FileBytes).equals(original[0]!.data as Buffer), 'payload bytes match');
  const memfd = img.records.find((r): r is FileRecord => r.kind === 'file' && r.type === 'memfd')!;
  t.ok(memfd.contents instanceof FileBytes);
  img.close();
});

t.test('a payload written in chunks is streamed back identically without holding it whole', async (t) => {
  const path = join(dir, 'chunks.himg');
  const w = ImageWriter.create(path, GOLDEN_HEADER);
  const count = 1027;
  const addr = 0x7f0000000000;
  w.record({ kind: 'process', pid: 7, ppid: 1, pgid: 7, sid: 7, comm: 'c', state: 'alive', exe: '/x', cwd: '/', root: '/', umask: 18, personality: 0, cmdline: [], rlimits: [], mm: fullRecords().find((r) => r.kind === 'process')!.mm } as ImageRecordV1);
  w.record({ kind: 'memory-area', pid: 7, start: addr, end: addr + count * 4096, prot: { read: true, write: true, exec: false }, shared: false, type: 'anonymous', vmFlags: [] });
  const total = count * 4096;
  const offset = w.beginPayload({ kind: 'pages', pid: 7, addr, count }, total);
  t.equal(offset % 4096, 0);
  t.equal(code(() => w.record({ kind: 'clocks', monotonic: { sec: 0, nsec: 0 }, boottime: { sec: 0, nsec: 0 }, realtime: { sec: 0, nsec: 0 } })), 'E_IMAGE_IO', 'no record while a payload is open');
  let written = 0;
  let seed = 1;
  while (written < total) {
    const n = Math.min(1 << 20, total - written) - (written === 0 ? 1 : 0); // an odd first chunk
    const chunk = Buffer.alloc(n, seed++ & 0xff);
    w.writePayload(chunk);
    written += n;
  }
  t.equal(code(() => w.writePayload(Buffer.alloc(1))), 'E_IMAGE_IO', 'no more than declared');
  w.finish();
  const img = openImage(path);
  const pages = img.records.find((r): r is PagesRecord => r.kind === 'pages')!;
  t.equal((pages.data as FileBytes).offset, offset, 'the reader finds the payload where the writer said');
  let seen = 0;
  let firstByte = -1;
  streamPayload(img, pages.data as FileBytes, (chunk, at) => {
    if (at === 0) firstByte = chunk[0]!;
    seen += chunk.length;
  }, 1 << 20);
  t.equal(seen, total);
  t.equal(firstByte, 1);
  const dest = join(dir, 'dest.bin');
  const fd = openSync(dest, 'w+');
  copyPayload(img, pages.data as FileBytes, fd, 4096);
  const probe = Buffer.alloc(1);
  readSync(fd, probe, 0, 1, 4096 + (1 << 20));
  closeSync(fd);
  t.equal(probe[0], 2, 'second chunk landed at its offset');
  t.equal(statSync(dest).size, 4096 + total);
  img.close();
});

t.test('overlapping async payload writes give the same bytes as synchronous ones', async (t) => {
  const chunks = Array.from({ length: 6 }, (_, i) => Buffer.alloc(256 * 1024, i + 1));
  const total = chunks.length * chunks[0]!.length;
  const mm = fullRecords().find((r) => r.kind === 'process')!.mm;
  const make = async (name: string, async: boolean) => {
    const path = join(dir, name);
    const w = ImageWriter.create(path, GOLDEN_HEADER);
    w.record({ kind: 'process', pid: 7, ppid: 1, pgid: 7, sid: 7, comm: 'c', state: 'alive', exe: '/x', cwd: '/', root: '/', umask: 18, personality: 0, cmdline: [], rlimits: [], mm } as ImageRecordV1);
    w.record({ kind: 'memory-area', pid: 7, start: 0x10000, end: 0x10000 + total, prot: { read: true, write: true, exec: false }, shared: false, type: 'anonymous', vmFlags: [] });
    w.beginPayload({ kind: 'pages', pid: 7, addr: 0x10000, count: total / 4096 }, total);
    if (async) {
      const inFlight = chunks.map((c) => w.writePayloadAsync(c));
      t.equal(code(() => w.finish()), 'E_IMAGE_IO', 'finish refuses while writes are in flight');
      await Promise.all(inFlight);
    } else for (const c of chunks) w.writePayload(c);
    w.finish();
    return readFileSync(path);
  };
  const a = await make('async.himg', true);
  const b = await make('sync.himg', false);
  t.ok(a.equals(b), 'identical files');
  openImage(join(dir, 'async.himg')).close();
});

t.test('the image appears under its name only when finished; abort leaves nothing', async (t) => {
  const sub = join(dir, 'atomic');
  mkdirSync(sub, { mode: 0o700 });
  const path = join(sub, 'a.himg');
  const w = ImageWriter.create(path, GOLDEN_HEADER);
  w.record(fullRecords().find((r) => r.kind === 'clocks')!);
  t.equal(existsSync(path), false, 'not visible before finish');
  t.equal(statSync(w.tempPath).mode & 0o777, 0o600, 'temp file is 0600');
  w.finish();
  t.equal(statSync(path).mode & 0o777, 0o600, 'image is 0600');
  t.same(readdirSync(sub), ['a.himg'], 'no temp file left');
  const w2 = ImageWriter.create(join(sub, 'b.himg'), GOLDEN_HEADER);
  w2.record(fullRecords().find((r) => r.kind === 'clocks')!);
  w2.abort();
  t.same(readdirSync(sub), ['a.himg'], 'abort removed the temp file');
  t.equal(code(() => w2.finish()), 'E_IMAGE_IO', 'an aborted writer cannot finish');
});

t.test('images or directories writable by others are refused as unsafe', async (t) => {
  const sub = join(dir, 'perm');
  mkdirSync(sub, { mode: 0o700 });
  const path = write('perm/p.himg', []);
  t.equal(code(() => openImage(path).close()), undefined);
  chmodSync(path, 0o620);
  t.equal(code(() => openImage(path)), 'E_IMAGE_UNSAFE', 'group-writable file');
  chmodSync(path, 0o600);
  chownSync(path, 65534, 65534);
  t.equal(code(() => openImage(path)), 'E_IMAGE_UNSAFE', 'file owned by nobody');
  chownSync(path, 0, 0);
  chmodSync(sub, 0o777);
  t.equal(code(() => openImage(path)), 'E_IMAGE_UNSAFE', 'world-writable directory');
  chmodSync(sub, 0o1777);
  t.equal(code(() => openImage(path).close()), undefined, 'a sticky directory like /tmp is fine');
  chmodSync(sub, 0o700);
  t.equal(code(() => openImage(path, { checkOwnership: false }).close()), undefined);
});

t.test('references between records are checked', async (t) => {
  const base = fullRecords();
  const danglingFd = [...base, { kind: 'fd', pid: 4242, fd: 99, object: 12345, cloexec: false } as ImageRecordV1];
  t.equal(code(() => openImage(write('dangling.himg', danglingFd))), 'E_IMAGE_INCONSISTENT');
  const orphanThread = base.map((r) => (r.kind === 'thread' ? { ...r, pid: 99999 } : r));
  t.equal(code(() => openImage(write('orphan.himg', orphanThread))), 'E_IMAGE_INCONSISTENT');
  const outside = [...base, { kind: 'pages', pid: 4243, addr: 0x7f0000001000, count: 1, data: Buffer.alloc(4096) } as ImageRecordV1];
  t.equal(code(() => openImage(write('outside.himg', outside))), 'E_IMAGE_INCONSISTENT');
  const dupId = [...base, { kind: 'eventfd', id: 1, count: 0n, semaphore: false, flags: 0 } as ImageRecordV1];
  t.equal(code(() => openImage(write('dup.himg', dupId))), 'E_IMAGE_INCONSISTENT');
  const pipeEndToFile = base.map((r) => (r.kind === 'pipe-end' ? { ...r, pipe: 1 } : r));
  t.equal(code(() => openImage(write('pipeend.himg', pipeEndToFile))), 'E_IMAGE_INCONSISTENT');
});

t.test('the minimum kernel is checked only when the restorer asks', async (t) => {
  const img = openImage(write('kernel.himg', [], { ...GOLDEN_HEADER, minKernel: '5.10', features: [{ name: 'vvar-vclock', minKernel: '6.13' }] }));
  t.equal(code(() => checkKernel(img.header, '5.4.0-1-amd64')), 'E_IMAGE_KERNEL', 'older than the format minimum');
  t.equal(code(() => checkKernel(img.header, '6.12.9')), 'E_IMAGE_KERNEL', 'a feature needs 6.13');
  t.equal(code(() => checkKernel(img.header, '6.13.0')), undefined);
  t.equal(code(() => checkKernel(img.header, '7.0.1-custom')), undefined);
  t.equal(code(() => checkKernel(img.header, 'weird')), 'E_IMAGE_KERNEL');
  img.close();
});

t.test('unknown keys are ignored and unknown optional records skipped', async (t) => {
  const img = openImage(join(import.meta.dirname, '..', 'golden', 'v1', 'extension.himg'));
  t.same(img.skipped.map((s) => s.kind), ['future-record']);
  t.equal(img.records.length, 2);
  img.close();
  t.ok(readFileSync(join(import.meta.dirname, '..', 'golden', 'v1', 'extension.himg')).includes(Buffer.from('futureKey')));
});

t.test('a large image opened with a deferred digest is checked by a worker: intact resolves, one flipped payload bit rejects', async (t) => {
  const path = join(dir, 'large.himg');
  const w = ImageWriter.create(path, GOLDEN_HEADER);
  const count = (DEFER_MIN_BYTES >> 12) + 256;
  const addr = 0x7f0000000000;
  w.record({ kind: 'process', pid: 7, ppid: 1, pgid: 7, sid: 7, comm: 'c', state: 'alive', exe: '/x', cwd: '/', root: '/', umask: 18, personality: 0, cmdline: [], rlimits: [], mm: fullRecords().find((r) => r.kind === 'process')!.mm } as ImageRecordV1);
  w.record({ kind: 'memory-area', pid: 7, start: addr, end: addr + count * 4096, prot: { read: true, write: true, exec: false }, shared: false, type: 'anonymous', vmFlags: [] });
  const offset = w.beginPayload({ kind: 'pages', pid: 7, addr, count }, count * 4096);
  for (let i = 0; i < count; i += 256) w.writePayload(Buffer.alloc(Math.min(256, count - i) * 4096, i & 0xff));
  w.finish();

  const intact = openImage(path, { digest: 'deferred' });
  t.equal(intact.records.filter((r) => r.kind === 'pages').length, 1, 'the records are there before the digest is known');
  await t.resolves(intact.digestChecked, 'the worker finds the digest intact');
  intact.close();

  // One bit deep inside the payload: the record walk cannot see it, only the digest can.
  const flipAt = offset + (count >> 1) * 4096 + 123;
  const fd = openSync(path, 'r+');
  const byte = Buffer.alloc(1);
  readSync(fd, byte, 0, 1, flipAt);
  byte[0]! ^= 0x10;
  writeSync(fd, byte, 0, 1, flipAt);
  closeSync(fd);
  const flipped = openImage(path, { digest: 'deferred' });
  const segment = Math.floor(flipAt / (1 << 20)) * (1 << 20);
  await t.rejects(flipped.digestChecked, { code: 'E_IMAGE_DIGEST', details: { offset: segment } }, 'the worker refuses the flipped bit, naming the 1 MiB segment that holds it');
  flipped.close();
  t.equal(code(() => openImage(path)), 'E_IMAGE_DIGEST', 'the default (inline) open refuses it before returning');
  await t.rejects(openImage(path, { digest: 'none' }).digestChecked, { code: 'E_IMAGE_DIGEST' }, 'an image opened without a digest check never counts as checked');
});

t.test('a deferred check told where the pages were restored checks them in that memory, and the file for the rest', async (t) => {
  // Two runs of pages, each a pattern; the "restored memory" is a buffer of this process.
  const path = join(dir, 'filled.himg');
  const w = ImageWriter.create(path, GOLDEN_HEADER);
  const addr = 0x7f0000000000;
  const run = (seed: number) => Buffer.from(Array.from({ length: 3 << 20 }, (_, i) => (i * 7 + seed) & 0xff));
  const runs = [run(1), run(2)];
  w.record({ kind: 'process', pid: 7, ppid: 1, pgid: 7, sid: 7, comm: 'c', state: 'alive', exe: '/x', cwd: '/', root: '/', umask: 18, personality: 0, cmdline: [], rlimits: [], mm: fullRecords().find((r) => r.kind === 'process')!.mm } as ImageRecordV1);
  w.record({ kind: 'memory-area', pid: 7, start: addr, end: addr + (6 << 20), prot: { read: true, write: true, exec: false }, shared: false, type: 'anonymous', vmFlags: [] });
  const offsets = runs.map((data, i) => {
    const at = w.beginPayload({ kind: 'pages', pid: 7, addr: addr + i * (3 << 20), count: data.length / 4096 }, data.length);
    w.writePayload(data);
    return at;
  });
  w.finish();
  const open = () => openImage(path, { digest: 'deferred', deferFromBytes: 0, checkFilledMemory: true });

  const memFds = () => readdirSync('/proc/self/fd').filter((fd) => {
    try {
      return readlinkSync(`/proc/self/fd/${fd}`) === `/proc/${process.pid}/mem`;
    } catch {
      return false;
    }
  }).length;
  const late = open();
  late.fillDone();
  late.filled(offsets[0]!, process.pid, bufferAddress(runs[0]!), runs[0]!.length);
  t.equal(memFds(), 0, 'a run reported after fillDone opens no process memory: the file is checked instead');
  await t.resolves(late.digestChecked);
  late.close();

  const all = open();
  runs.forEach((data, i) => all.filled(offsets[i]!, process.pid, bufferAddress(data), data.length));
  all.fillDone();
  await t.resolves(all.digestChecked, 'the pages as they sit in memory match the trailer');
  all.close();

  const half = open();
  half.filled(offsets[1]! + 4096, process.pid, bufferAddress(runs[1]!) + 4096, 8192);
  half.fillDone();
  await t.resolves(half.digestChecked, 'what never landed in memory is read from the file');
  half.close();

  const changed = Buffer.from(runs[0]!);
  changed[(1 << 20) + 5]! ^= 0x01;
  const wrong = open();
  wrong.filled(offsets[0]!, process.pid, bufferAddress(changed), changed.length);
  wrong.fillDone();
  const segment = Math.floor((offsets[0]! + (1 << 20) + 5) / (1 << 20)) * (1 << 20);
  await t.rejects(wrong.digestChecked, { code: 'E_IMAGE_DIGEST', details: { offset: segment } }, 'one byte that differs in memory is refused though the file is intact: the memory is what was checked');
  wrong.close();

  const gone = open();
  gone.filled(offsets[0]!, 0x3ffffff, addr, runs[0]!.length);
  gone.fillDone();
  await t.resolves(gone.digestChecked, 'memory of a process that is gone is read from the file instead');
  gone.close();
  t.ok(runs[0]!.length && changed.length, 'the buffers stay alive until every check is done');
});

t.test('payload chunks land whole whether they can go by O_DIRECT (aligned) or not (misaligned, a partial block)', async (t) => {
  const pages = (n: number, seed: number) => Buffer.from(Array.from({ length: n * 4096 }, (_, i) => (i + seed) & 0xff));
  const aligned = alignedBuffer(16 * 4096, 4096);
  pages(16, 3).copy(aligned);
  const misaligned = Buffer.allocUnsafeSlow(8 * 4096 + 1).subarray(1);
  pages(8, 9).copy(misaligned);
  t.not(misalignment(misaligned, 4096), 0, 'the second buffer is off a block boundary');
  const build = async (name: string) => {
    const path = join(dir, name);
    const w = ImageWriter.create(path, GOLDEN_HEADER);
    w.record({ kind: 'process', pid: 7, ppid: 1, pgid: 7, sid: 7, comm: 'c', state: 'alive', exe: '/x', cwd: '/', root: '/', umask: 18, personality: 0, cmdline: [], rlimits: [], mm: fullRecords().find((r) => r.kind === 'process')!.mm } as ImageRecordV1);
    w.record({ kind: 'memory-area', pid: 7, start: 0x7f0000000000, end: 0x7f0000018000, prot: { read: true, write: true, exec: false }, shared: false, type: 'anonymous', vmFlags: [] });
    w.beginPayload({ kind: 'pages', pid: 7, addr: 0x7f0000000000, count: 24 }, 24 * 4096);
    await w.writePayloadAsync(aligned);
    w.writePayload(misaligned);
    w.beginPayload({ kind: 'file', id: 1, type: 'memfd', path: '/memfd:x', flags: 2, mode: 0o100600, offset: 0, size: 5000 }, 5000);
    w.writePayload(aligned.subarray(0, 4096));
    w.writePayload(aligned.subarray(4096, 5000));
    w.finish();
    return readFileSync(path);
  };
  const first = await build('direct.himg');
  const img = openImage(join(dir, 'direct.himg'));
  const ref = img.records.find((r): r is PagesRecord => r.kind === 'pages')!.data as unknown as { offset: number; length: number };
  const payload = first.subarray(ref.offset, ref.offset + ref.length);
  t.ok(payload.subarray(0, 16 * 4096).equals(aligned), 'the aligned chunk (O_DIRECT) is in the file');
  t.ok(payload.subarray(16 * 4096).equals(misaligned), 'the misaligned chunk (buffered) follows it');
  const file = img.records.find((r): r is FileRecord => r.kind === 'file')!.contents as unknown as { offset: number; length: number };
  t.ok(first.subarray(file.offset, file.offset + file.length).equals(aligned.subarray(0, 5000)), 'a payload ending off a block boundary is whole');
  img.close();
});

t.test('an image held in memory (within its arena, beyond it, or past its budget) is byte for byte the image streamed', async (t) => {
  const streamed = readFileSync(write('streamed.himg', fullRecords()));
  for (const [name, budget, arena] of [['held', 64 << 20, 1 << 20], ['arena too small', 64 << 20, 4096], ['over budget', 10_000, 0]] as const) {
    const path = join(dir, `held-${arena}-${budget}.himg`);
    const w = ImageWriter.create(path, GOLDEN_HEADER);
    w.hold(budget, arena);
    const records = fullRecords();
    for (const r of records.slice(0, 5)) w.record(r);
    const offsetWhileHeld = w.offset;
    for (const r of records.slice(5)) w.record(r);
    t.equal(w.holding, budget > 1 << 20, `${name}: still holding only within the budget`);
    t.equal(existsSync(path), false, `${name}: nothing under the final name yet`);
    w.release();
    t.equal(w.holding, false);
    w.finish();
    t.ok(offsetWhileHeld > 0);
    t.ok(readFileSync(path).equals(streamed), `${name}: same bytes`);
    openImage(path).close();
  }
});
