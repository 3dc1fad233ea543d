import t from 'tap';
import { errno } from '../lib/errno.js';
import { mkdtempSync, readFileSync, readlinkSync, rmSync, writeFileSync, fstatSync } from 'node:fs';
import { join } from 'node:path';
import { tmpdir } from 'node:os';
import { fileModule } from '../../src/objects/file.js';
import * as k from '../../src/native/fdkinds.js';
import { closeFd } from '../../src/native/fd.js';
import { parseFdinfo } from '../../src/kernel/proc.js';
import { dumpContext, dumpFd, fdinfoTextOf, recordById, restoreContext, startHolder } from '../lib/fdkinds-kit.js';

const dir = mkdtempSync(join(tmpdir(), 'handoff-file-test-'));
t.teardown(() => rmSync(dir, { recursive: true, force: true }));
writeFileSync(join(dir, 'data.txt'), 'hello world, this is a file\n');
writeFileSync(join(dir, 'log.txt'), 'line1\n');

const holder = await startHolder(`
d = ${JSON.stringify(dir)}
fds = {}
fds['rw'] = os.open(d + '/data.txt', os.O_RDWR); os.lseek(fds['rw'], 6, 0)
fds['append'] = os.open(d + '/log.txt', os.O_WRONLY | os.O_APPEND | os.O_NONBLOCK)
fds['dir'] = os.open(d, os.O_RDONLY | os.O_DIRECTORY)
fds['null'] = os.open('/dev/null', os.O_WRONLY)
fds['urandom'] = os.open('/dev/urandom', os.O_RDONLY)
fds['opath'] = os.open(d + '/data.txt', os.O_PATH)
fds['deleted'] = os.open(d + '/gone.bin', os.O_RDWR | os.O_CREAT, 0o640)
os.write(fds['deleted'], b'deleted but still here' + bytes(range(256)))
os.unlink(d + '/gone.bin'); os.lseek(fds['deleted'], 4, 0)
fds['memfd'] = os.memfd_create('my-memfd', os.MFD_ALLOW_SEALING)
os.write(fds['memfd'], b'memfd contents'); os.lseek(fds['memfd'], 2, 0)
import fcntl
fcntl.fcntl(fds['memfd'], 1033, 4 | 8)  # F_ADD_SEALS: F_SEAL_SHRINK | F_SEAL_GROW
os.mkfifo(d + '/fifo')
fds['fifo_r'] = os.open(d + '/fifo', os.O_RDONLY | os.O_NONBLOCK)
fds['fifo_w'] = os.open(d + '/fifo', os.O_WRONLY)
os.write(fds['fifo_w'], b'queued in the fifo')
fds['ptmx'] = os.open('/dev/ptmx', os.O_RDWR | os.O_NOCTTY)
ready(fds)
for line in lines():
    answer(eval(line))
`);
t.teardown(() => holder.stop());
const fds = holder.ready as Record<string, number>;
const run = dumpContext([holder.pid]);
const dumped = (name: string) => {
  const { id, blockers } = dumpFd(fileModule, run, holder.pid, fds[name]!);
  return { record: recordById(run.records, id), blockers };
};
const statusFlags = (fd: number) => parseFdinfo(fdinfoTextOf(fd)).flags & ~k.O.CLOEXEC;

t.test('a regular file comes back at its path with its flags and offset', async (t) => {
  const { record, blockers } = dumped('rw');
  t.same(blockers, []);
  t.match(record, { kind: 'file', type: 'regular', path: join(dir, 'data.txt'), offset: 6 });
  t.equal((record.flags as number) & k.O.ACCMODE, k.O.RDWR);
  const rr = restoreContext(run.records);
  const fd = await fileModule.restore(record, rr.ctx);
  t.equal(readlinkSync(`/proc/self/fd/${fd}`), join(dir, 'data.txt'));
  t.equal(statusFlags(fd), record.flags);
  t.equal(k.lseek(fd, 0, 1), 6, 'offset restored');
  t.equal(k.read(fd, 5).toString(), 'world');
  closeFd(fd);
  await rr.finish();
});

t.test('an O_APPEND write-only file keeps appending', async (t) => {
  const { record } = dumped('append');
  t.ok((record.flags as number) & k.O.APPEND);
  t.ok((record.flags as number) & k.O.NONBLOCK);
  const rr = restoreContext(run.records);
  const fd = await fileModule.restore(record, rr.ctx);
  t.equal(statusFlags(fd), record.flags);
  k.write(fd, Buffer.from('line2\n'));
  t.equal(readFileSync(join(dir, 'log.txt'), 'utf8'), 'line1\nline2\n', 'not truncated, appended');
  closeFd(fd);
});

t.test('a directory and an O_PATH fd come back by path', async (t) => {
  for (const name of ['dir', 'opath']) {
    const { record, blockers } = dumped(name);
    t.same(blockers, []);
    const rr = restoreContext(run.records);
    const fd = await fileModule.restore(record, rr.ctx);
    t.equal(statusFlags(fd), record.flags, `${name} flags`);
    t.equal(readlinkSync(`/proc/self/fd/${fd}`), record.path);
    closeFd(fd);
  }
  t.equal(dumped('dir').record.type, 'directory');
});

t.test('well-known character devices come back with their device numbers', async (t) => {
  const nul = dumped('null');
  t.same(nul.blockers, []);
  t.match(nul.record, { type: 'chardev', path: '/dev/null', rdev: { major: 1, minor: 3 } });
  const rnd = dumped('urandom');
  t.match(rnd.record, { type: 'chardev', rdev: { major: 1, minor: 9 } });
  const rr = restoreContext(run.records);
  const fd = await fileModule.restore(rnd.record, rr.ctx);
  t.equal(k.read(fd, 16).length, 16);
  t.equal(statusFlags(fd), rnd.record.flags);
  closeFd(fd);
});

t.test('any other device is a preflight blocker naming the pid and fd', async (t) => {
  const { blockers } = dumped('ptmx');
  t.equal(blockers.length, 1);
  t.match(blockers[0], { code: 'device', pid: holder.pid, fd: fds.ptmx });
});

t.test('a deleted file is recreated unlinked with its contents, mode and offset', async (t) => {
  const { record, blockers } = dumped('deleted');
  t.same(blockers, []);
  const expected = Buffer.concat([Buffer.from('deleted but still here'), Buffer.from(Array.from({ length: 256 }, (_, i) => i))]);
  t.match(record, { type: 'deleted', path: join(dir, 'gone.bin'), offset: 4, size: expected.length });
  t.same(Buffer.from(record.contents as Uint8Array), expected);
  const rr = restoreContext(run.records);
  const fd = await fileModule.restore(record, rr.ctx);
  await rr.finish();
  t.match(readlinkSync(`/proc/self/fd/${fd}`), / \(deleted\)$/);
  t.equal(fstatSync(fd).nlink, 0);
  t.equal(fstatSync(fd).mode & 0o7777, 0o640);
  t.equal(k.lseek(fd, 0, 1), 4);
  t.same(k.preadAll(fd, expected.length + 10, 0), expected);
  t.equal(statusFlags(fd), record.flags);
  closeFd(fd);
});

t.test('a memfd is recreated with its name, contents, seals and offset', async (t) => {
  const { record, blockers } = dumped('memfd');
  t.same(blockers, []);
  t.match(record, { type: 'memfd', path: '/memfd:my-memfd', offset: 2, size: 14, seals: 4 | 8 });
  const rr = restoreContext(run.records);
  const fd = await fileModule.restore(record, rr.ctx);
  await rr.finish();
  t.equal(readlinkSync(`/proc/self/fd/${fd}`), '/memfd:my-memfd (deleted)');
  t.equal(k.fcntl(fd, k.F.GET_SEALS), 4 | 8);
  t.equal(k.preadAll(fd, 100, 0).toString(), 'memfd contents');
  t.equal(k.lseek(fd, 0, 1), 2);
  t.throws(() => k.ftruncate(fd, 100), errno(1), 'F_SEAL_GROW holds');
  closeFd(fd);
});

t.test('a FIFO keeps its queued data in the original and gets it back on restore', async (t) => {
  const r = dumped('fifo_r');
  const w = dumped('fifo_w');
  t.match(r.record, { type: 'fifo', path: join(dir, 'fifo') });
  t.same(Buffer.from(r.record.contents as Uint8Array).toString(), 'queued in the fifo');
  t.equal(w.record.contents, undefined, 'data stored once per FIFO');
  // The dump read nothing away: the holder still reads its bytes.
  t.same(await holder.ask(`os.read(fds['fifo_r'], 100).decode()`), 'queued in the fifo');
  const rr = restoreContext(run.records);
  const rfd = await fileModule.restore(r.record, rr.ctx);
  const wfd = await fileModule.restore(w.record, rr.ctx);
  await rr.finish();
  t.equal(statusFlags(rfd), r.record.flags);
  t.equal(statusFlags(wfd), w.record.flags);
  t.equal(k.read(rfd, 100).toString(), 'queued in the fifo');
  k.write(wfd, Buffer.from('more'));
  t.equal(k.read(rfd, 100).toString(), 'more');
  closeFd(rfd);
  closeFd(wfd);
});
