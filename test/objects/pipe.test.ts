import t from 'tap';
import { errno } from '../lib/errno.js';
import { readlinkSync } from 'node:fs';
import { pipeModule } from '../../src/objects/pipe.js';
import * as k from '../../src/native/fdkinds.js';
import { closeFd } from '../../src/native/fd.js';
import { parseFdinfo } from '../../src/kernel/proc.js';
import { dumpContext, dumpFd, fdinfoTextOf, recordById, restoreContext, startHolder } from '../lib/fdkinds-kit.js';

const SIZE = 200_000;
const holder = await startHolder(`
import fcntl, subprocess
pattern = bytes((i * 7) % 251 for i in range(${SIZE}))
r, w = os.pipe()
fcntl.fcntl(w, 1031, 1 << 20)  # F_SETPIPE_SZ
os.set_blocking(w, False)
assert os.write(w, pattern) == len(pattern)
er, ew = os.pipe()
os.set_blocking(er, False)
child = subprocess.Popen(['sleep', '1000'], stdout=subprocess.PIPE)
ready({'r': r, 'w': w, 'er': er, 'ew': ew, 'shared': child.stdout.fileno(), 'peer': child.pid})
for line in lines():
    answer(eval(line))
`);
t.teardown(async () => {
  process.kill(holder.ready.peer as number, 'SIGKILL');
  await holder.stop();
});
const fds = holder.ready as Record<string, number>;
const pattern = Buffer.from(Array.from({ length: SIZE }, (_, i) => (i * 7) % 251));
const statusFlags = (fd: number) => parseFdinfo(fdinfoTextOf(fd)).flags & ~k.O.CLOEXEC;

t.test('a pipe with queued data: one pipe record, the data copied, the original untouched', async (t) => {
  const run = dumpContext([holder.pid]);
  // Write end first: the dump must find the data through a reader it opens itself.
  const w = dumpFd(pipeModule, run, holder.pid, fds.w!);
  const r = dumpFd(pipeModule, run, holder.pid, fds.r!);
  t.same(w.blockers, []);
  t.same(r.blockers, []);
  const pipes = run.records.filter((x) => x.kind === 'pipe');
  t.equal(pipes.length, 1, 'one pipe record for both ends');
  const pipe = pipes[0]!;
  t.equal(pipe.capacity, 1 << 20);
  t.equal((pipe.data as Buffer).length, SIZE);
  t.ok(Buffer.from(pipe.data as Uint8Array).equals(pattern), 'queued bytes recorded in order');
  const wEnd = recordById(run.records, w.id);
  const rEnd = recordById(run.records, r.id);
  t.match(wEnd, { kind: 'pipe-end', pipe: pipe.id, end: 'write' });
  t.match(rEnd, { kind: 'pipe-end', pipe: pipe.id, end: 'read' });
  t.ok((wEnd.flags as number) & k.O.NONBLOCK, 'write end non-blocking');
  t.notOk((rEnd.flags as number) & k.O.NONBLOCK, 'read end blocking');

  t.equal(await holder.ask(`fcntl.ioctl(r, 0x541B, b'\\0\\0\\0\\0') and struct.unpack('i', fcntl.ioctl(r, 0x541B, b'\\0\\0\\0\\0'))[0]`), SIZE, 'original still holds every byte');

  const rr = restoreContext(run.records);
  const rfd = await pipeModule.restore(rEnd, rr.ctx);
  const wfd = await pipeModule.restore(wEnd, rr.ctx);
  await rr.finish();
  t.equal(readlinkSync(`/proc/self/fd/${rfd}`), readlinkSync(`/proc/self/fd/${wfd}`), 'both ends on one new pipe');
  t.equal(k.fcntl(rfd, k.F.GETPIPE_SZ), 1 << 20);
  t.equal(statusFlags(rfd), rEnd.flags);
  t.equal(statusFlags(wfd), wEnd.flags);
  t.equal(k.fionread(rfd), SIZE);
  const chunks: Buffer[] = [];
  let total = 0;
  while (total < SIZE) {
    const c = k.read(rfd, SIZE - total);
    chunks.push(c);
    total += c.length;
  }
  t.ok(Buffer.concat(chunks).equals(pattern), 'restored pipe yields the same bytes');
  k.write(wfd, Buffer.from('after'));
  t.equal(k.read(rfd, 10).toString(), 'after');
  closeFd(rfd);
  closeFd(wfd);
});

t.test('an empty pipe keeps per-end flags', async (t) => {
  const run = dumpContext([holder.pid]);
  const r = recordById(run.records, dumpFd(pipeModule, run, holder.pid, fds.er!).id);
  const w = recordById(run.records, dumpFd(pipeModule, run, holder.pid, fds.ew!).id);
  t.equal((run.records.find((x) => x.kind === 'pipe')!.data as Buffer).length, 0);
  const rr = restoreContext(run.records);
  const rfd = await pipeModule.restore(r, rr.ctx);
  const wfd = await pipeModule.restore(w, rr.ctx);
  await rr.finish();
  t.equal(statusFlags(rfd), r.flags);
  t.ok(statusFlags(rfd) & k.O.NONBLOCK);
  t.notOk(statusFlags(wfd) & k.O.NONBLOCK);
  t.throws(() => k.read(rfd, 10), errno(11), 'non-blocking read end: EAGAIN');
  closeFd(wfd);
  t.equal(k.read(rfd, 10).length, 0, 'EOF once the only writer is gone');
  closeFd(rfd);
});

t.test('a pipe shared with a process outside the dump is a blocker', async (t) => {
  const run = dumpContext([holder.pid]);
  const { blockers } = dumpFd(pipeModule, run, holder.pid, fds.shared!);
  t.equal(blockers.length, 1);
  t.match(blockers[0], { code: 'pipe-peer-outside', pid: holder.pid, fd: fds.shared });
  t.match(blockers[0]!.reason, String(holder.ready.peer));
});
