import t from 'tap';
import { errno } from '../lib/errno.js';
import { eventfdModule } from '../../src/objects/eventfd.js';
import * as k from '../../src/native/fdkinds.js';
import { closeFd } from '../../src/native/fd.js';
import { parseFdinfo } from '../../src/kernel/proc.js';
import { dumpContext, dumpFd, fdinfoTextOf, recordById, restoreContext, startHolder } from '../lib/fdkinds-kit.js';

const holder = await startHolder(`
plain = os.eventfd(0, os.EFD_NONBLOCK)
os.eventfd_write(plain, 0xfffffffffffffff0)
sem = os.eventfd(3, os.EFD_SEMAPHORE)
zero = os.eventfd(0)
ready({'plain': plain, 'sem': sem, 'zero': zero})
for line in lines():
    answer(eval(line))
`);
t.teardown(() => holder.stop());
const fds = holder.ready as Record<string, number>;

t.test('an eventfd keeps its 64-bit count and flags; the original keeps its count', async (t) => {
  const run = dumpContext([holder.pid]);
  const record = recordById(run.records, dumpFd(eventfdModule, run, holder.pid, fds.plain!).id);
  t.match(record, { kind: 'eventfd', count: 0xfffffffffffffff0n, semaphore: false });
  t.ok((record.flags as number) & k.O.NONBLOCK);
  t.equal(await holder.ask('os.eventfd_read(plain) == 0xfffffffffffffff0'), true, 'dump did not consume the count');
  const fd = await eventfdModule.restore(record, restoreContext(run.records).ctx);
  const info = parseFdinfo(fdinfoTextOf(fd));
  t.equal(info.eventfdCount, 0xfffffffffffffff0n);
  t.equal(info.flags & ~k.O.CLOEXEC, record.flags);
  t.equal(k.eventfdTake(fd), 0xfffffffffffffff0n, 'a read takes the whole count');
  t.throws(() => k.eventfdTake(fd), errno(11), 'then it is empty (non-blocking)');
  closeFd(fd);
});

t.test('a semaphore eventfd hands out its count one by one', async (t) => {
  const run = dumpContext([holder.pid]);
  const record = recordById(run.records, dumpFd(eventfdModule, run, holder.pid, fds.sem!).id);
  t.match(record, { count: 3n, semaphore: true });
  const fd = await eventfdModule.restore(record, restoreContext(run.records).ctx);
  t.equal(k.eventfdTake(fd), 1n);
  t.equal(k.eventfdTake(fd), 1n);
  t.equal(parseFdinfo(fdinfoTextOf(fd)).eventfdCount, 1n);
  closeFd(fd);
});

t.test('an empty eventfd comes back empty', async (t) => {
  const run = dumpContext([holder.pid]);
  const record = recordById(run.records, dumpFd(eventfdModule, run, holder.pid, fds.zero!).id);
  t.match(record, { count: 0n, semaphore: false });
  const fd = await eventfdModule.restore(record, restoreContext(run.records).ctx);
  t.equal(parseFdinfo(fdinfoTextOf(fd)).eventfdCount, 0n);
  closeFd(fd);
});
