import t from 'tap';
import { epollModule, restoreEpollInterest } from '../../src/objects/epoll.js';
import { eventfdModule } from '../../src/objects/eventfd.js';
import { pipeModule } from '../../src/objects/pipe.js';
import * as k from '../../src/native/fdkinds.js';
import { closeFd } from '../../src/native/fd.js';
import { parseFdinfo } from '../../src/kernel/proc.js';
import { dumpContext, dumpFd, fdInfoOf, fdinfoTextOf, recordById, restoreContext, startHolder } from '../lib/fdkinds-kit.js';

const EPOLLIN = 0x1;
const EPOLLOUT = 0x4;
const EPOLLET = 0x80000000;
const ALWAYS = 0x8 | 0x10; // EPOLLERR | EPOLLHUP
// Target fd numbers high enough to be free in this test process too.
const EFD = 700;
const PIPE_R = 701;
const PIPE_W = 702;
const holder = await startHolder(`
efd = os.eventfd(0, os.EFD_NONBLOCK); os.dup2(efd, ${EFD}); os.close(efd)
r, w = os.pipe(); os.dup2(r, ${PIPE_R}); os.dup2(w, ${PIPE_W}); os.close(r); os.close(w)
ep = select.epoll()
ep.register(${EFD}, select.EPOLLIN | select.EPOLLET)
ep.register(${PIPE_R}, select.EPOLLIN)
ep.register(${PIPE_W}, select.EPOLLOUT)
# epoll_data is a free 64-bit value; select.epoll stores the fd, so set data with ctypes.
class EV(ctypes.Structure):
    _pack_ = 1
    _fields_ = [('events', ctypes.c_uint32), ('data', ctypes.c_uint64)]
ev = EV(select.EPOLLIN | select.EPOLLET, 0xdeadbeefcafebabe)
assert libc.epoll_ctl(ep.fileno(), 3, ${EFD}, ctypes.byref(ev)) == 0  # EPOLL_CTL_MOD
stale = select.epoll()
x = os.eventfd(0); keep = os.dup(x)
stale.register(x, select.EPOLLIN); os.close(x)   # the entry lives on (keep), fd x is gone
ready({'ep': ep.fileno(), 'stale': stale.fileno(), 'x': x})
for line in lines():
    answer(eval(line))
`);
t.teardown(() => holder.stop());

t.test('an epoll interest list is dumped with target fd numbers and replayed onto restored fds', async (t) => {
  const run = dumpContext([holder.pid]);
  const ep = dumpFd(epollModule, run, holder.pid, holder.ready.ep as number);
  t.same(ep.blockers, []);
  const record = recordById(run.records, ep.id);
  t.same(
    [...(record.interest as { fd: number }[])].sort((a, b) => a.fd - b.fd),
    [
      // The kernel always adds EPOLLERR | EPOLLHUP; fdinfo shows them.
      { fd: EFD, events: (EPOLLIN | EPOLLET | ALWAYS) >>> 0, data: 0xdeadbeefcafebaben },
      { fd: PIPE_R, events: EPOLLIN | ALWAYS, data: BigInt(PIPE_R) },
      { fd: PIPE_W, events: EPOLLOUT | ALWAYS, data: BigInt(PIPE_W) },
    ],
  );
  const efdRec = recordById(run.records, dumpFd(eventfdModule, run, holder.pid, EFD).id);
  const rRec = recordById(run.records, dumpFd(pipeModule, run, holder.pid, PIPE_R).id);
  const wRec = recordById(run.records, dumpFd(pipeModule, run, holder.pid, PIPE_W).id);

  // Restore the targets and put them at the recorded numbers, as the core does in the target.
  const rr = restoreContext(run.records);
  const placed: number[] = [];
  for (const [rec, mod, num] of [[efdRec, eventfdModule, EFD], [rRec, pipeModule, PIPE_R], [wRec, pipeModule, PIPE_W]] as const) {
    const fd = await mod.restore(rec, rr.ctx);
    k.dup3(fd, num, k.O.CLOEXEC);
    closeFd(fd);
    placed.push(num);
  }
  await rr.finish();
  const epfd = await epollModule.restore(record, rr.ctx);
  const added: number[] = [];
  await restoreEpollInterest(record, (fd, events, data) => {
    k.epollCtl(epfd, k.EPOLL_CTL.ADD, fd, events, data);
    added.push(fd);
  });
  t.same(added, (record.interest as { fd: number }[]).map((e) => e.fd), 'every entry added, in order');
  const restored = parseFdinfo(fdinfoTextOf(epfd));
  t.equal(restored.flags & ~k.O.CLOEXEC, record.flags);
  t.same(
    restored.epoll!.map((e) => ({ fd: e.tfd, events: e.events, data: e.data })).sort((a, b) => a.fd - b.fd),
    [...(record.interest as { fd: number }[])].sort((a, b) => a.fd - b.fd),
    'restored fdinfo shows the same interest list',
  );

  // Only the pipe's write end is ready until the eventfd and pipe get data.
  t.same(k.epollWait(epfd, 8, 0), [{ events: EPOLLOUT, data: BigInt(PIPE_W) }]);
  k.eventfdAdd(EFD, 1n);
  k.write(PIPE_W, Buffer.from('x'));
  const ready = k.epollWait(epfd, 8, 0).sort((a, b) => Number(a.data % 1000n) - Number(b.data % 1000n));
  t.same(
    ready.map((e) => e.data).sort(),
    [0xdeadbeefcafebaben, BigInt(PIPE_R), BigInt(PIPE_W)].sort(),
    'readiness reported with the recorded data values',
  );
  for (const fd of [...placed, epfd]) closeFd(fd);
});

t.test('an entry whose fd number was closed since it was added is a blocker', async (t) => {
  const run = dumpContext([holder.pid]);
  const info = fdInfoOf(holder.pid, holder.ready.stale as number);
  t.teardown(() => closeFd(info.localFd));
  const blockers = epollModule.preflight!(info, run.ctx.pids);
  t.throws(() => epollModule.dump(info, run.ctx), { code: 'E_DUMP' }, 'and dump refuses it');
  t.equal(blockers.length, 1);
  t.match(blockers[0], { code: 'epoll-stale', pid: holder.pid, fd: holder.ready.stale });
  t.match(blockers[0]!.reason, `fd ${holder.ready.x as number}`);
});

t.test('a failing add names the entry', async (t) => {
  const record = { kind: 'epoll', id: 9, flags: 2, interest: [{ fd: 12345, events: EPOLLIN, data: 1n }] };
  await t.rejects(restoreEpollInterest(record, () => { throw new Error('EBADF'); }), { code: 'E_RESTORE', message: /fd 12345/ });
});
