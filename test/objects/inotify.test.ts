import t from 'tap';
import { errno } from '../lib/errno.js';
import { mkdirSync, mkdtempSync, rmSync, writeFileSync, symlinkSync } from 'node:fs';
import { join } from 'node:path';
import { tmpdir } from 'node:os';
import { inotifyModule } from '../../src/objects/inotify.js';
import * as k from '../../src/native/fdkinds.js';
import { closeFd } from '../../src/native/fd.js';
import { parseFdinfo } from '../../src/kernel/proc.js';
import { dumpContext, dumpFd, fdinfoTextOf, recordById, restoreContext, startHolder } from '../lib/fdkinds-kit.js';

const IN_MODIFY = 0x2;
const IN_CREATE = 0x100;
const IN_DELETE = 0x200;
const IN_ATTRIB = 0x4;
const dir = mkdtempSync(join(tmpdir(), 'handoff-inotify-test-'));
t.teardown(() => rmSync(dir, { recursive: true, force: true }));
for (const d of ['a', 'b', 'c']) mkdirSync(join(dir, d));
writeFileSync(join(dir, 'file.txt'), 'x');
symlinkSync('file.txt', join(dir, 'link'));

const holder = await startHolder(`
d = ${JSON.stringify(dir)}
IN_DONT_FOLLOW = 0x02000000
def watch(fd, path, mask):
    wd = libc.inotify_add_watch(fd, path.encode(), mask)
    assert wd > 0, ctypes.get_errno()
    return wd
ino = libc.inotify_init1(os.O_NONBLOCK)
wds = {}
wds['a'] = watch(ino, d + '/a', ${IN_CREATE | IN_DELETE})
tmp = watch(ino, d + '/b', ${IN_CREATE})
libc.inotify_rm_watch(ino, tmp)           # leaves a gap: wd 2 is never reused
wds['file'] = watch(ino, d + '/file.txt', ${IN_MODIFY})
wds['c'] = watch(ino, d + '/c', ${IN_ATTRIB})
wds['link'] = watch(ino, d + '/link', ${IN_ATTRIB} | IN_DONT_FOLLOW)
bad = libc.inotify_init1(0)
keep = os.open(d + '/gone.txt', os.O_RDWR | os.O_CREAT)
watch(bad, d + '/gone.txt', ${IN_MODIFY})
os.unlink(d + '/gone.txt')              # still open, so the watch stays, on an inode without a path
ready({'ino': ino, 'wds': wds, 'bad': bad})
for line in lines():
    answer(eval(line))
`);
t.teardown(() => holder.stop());
const wds = holder.ready.wds as Record<string, number>;

t.test('inotify watches come back with the same wds, paths and masks, and deliver events', async (t) => {
  const run = dumpContext([holder.pid]);
  const { id, blockers } = dumpFd(inotifyModule, run, holder.pid, holder.ready.ino as number);
  t.same(blockers, []);
  const record = recordById(run.records, id);
  t.same(record.watches, [
    { wd: wds.a, path: join(dir, 'a'), mask: IN_CREATE | IN_DELETE },
    { wd: wds.file, path: join(dir, 'file.txt'), mask: IN_MODIFY },
    { wd: wds.c, path: join(dir, 'c'), mask: IN_ATTRIB },
    { wd: wds.link, path: join(dir, 'link'), mask: IN_ATTRIB },
  ]);
  t.equal(wds.file, 3, 'the holder really left a gap');
  const fd = await inotifyModule.restore(record, restoreContext(run.records).ctx);
  const restored = parseFdinfo(fdinfoTextOf(fd));
  t.equal(restored.flags & ~k.O.CLOEXEC, record.flags);
  const byWd = new Map((restored.inotify ?? []).map((w) => [parseInt(w.wd!, 16), w]));
  t.same([...byWd.keys()].sort(), [wds.a, wds.file, wds.c, wds.link].sort(), 'same wd numbers');
  t.throws(() => k.read(fd, 4096), errno(11), 'no stray events from the wd fillers');
  writeFileSync(join(dir, 'a', 'new'), '');
  writeFileSync(join(dir, 'file.txt'), 'changed');
  const events = k.read(fd, 4096);
  const seen: { wd: number; mask: number }[] = [];
  for (let at = 0; at < events.length; at += 16 + events.readUInt32LE(at + 12)) seen.push({ wd: events.readInt32LE(at), mask: events.readUInt32LE(at + 4) });
  t.ok(seen.some((e) => e.wd === wds.a && e.mask & IN_CREATE), 'IN_CREATE on the directory watch');
  t.ok(seen.some((e) => e.wd === wds.file && e.mask & IN_MODIFY), 'IN_MODIFY on the file watch');
  closeFd(fd);
});

t.test('a watch on a deleted file is a preflight blocker', async (t) => {
  const run = dumpContext([holder.pid]);
  const info = (await import('../lib/fdkinds-kit.js')).fdInfoOf(holder.pid, holder.ready.bad as number);
  try {
    const blockers = inotifyModule.preflight!(info, run.ctx.pids);
    t.equal(blockers.length, 1);
    t.match(blockers[0], { code: 'inotify-watch', pid: holder.pid, fd: holder.ready.bad });
    t.throws(() => inotifyModule.dump(info, run.ctx), { code: 'E_DUMP' });
  } finally {
    closeFd(info.localFd);
  }
});
