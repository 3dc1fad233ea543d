import t from 'tap';
import { timerfdModule } from '../../src/objects/timerfd.js';
import * as k from '../../src/native/fdkinds.js';
import { closeFd } from '../../src/native/fd.js';
import { parseFdinfo } from '../../src/kernel/proc.js';
import { dumpContext, dumpFd, fdinfoTextOf, recordById, restoreContext, startHolder } from '../lib/fdkinds-kit.js';

const CLOCK_REALTIME = 0;
const CLOCK_MONOTONIC = 1;
const holder = await startHolder(`
class TS(ctypes.Structure): _fields_ = [('s', ctypes.c_long), ('n', ctypes.c_long)]
class IT(ctypes.Structure): _fields_ = [('interval', TS), ('value', TS)]
def timer(clock, flags, settime_flags, value, interval):
    fd = libc.timerfd_create(clock, flags)
    assert fd >= 0
    it = IT(TS(interval // 10**9, interval % 10**9), TS(value // 10**9, value % 10**9))
    assert libc.timerfd_settime(fd, settime_flags, ctypes.byref(it), None) == 0
    return fd
periodic = timer(1, os.O_NONBLOCK, 0, 3600 * 10**9, 2500 * 10**6)
now = time.clock_gettime_ns(time.CLOCK_REALTIME)
absolute = timer(0, 0, 1 | 2, now + 7200 * 10**9, 0)  # TFD_TIMER_ABSTIME | TFD_TIMER_CANCEL_ON_SET
fired = timer(1, os.O_NONBLOCK, 0, 1000, 0)
while b'ticks: 0' in open('/proc/self/fdinfo/%d' % fired, 'rb').read():
    time.sleep(0.001)
disarmed = libc.timerfd_create(1, 0)
overdue = timer(1, os.O_NONBLOCK, 0, 1000, 3600 * 10**9)   # expired once, next period in an hour
while b'ticks: 0' in open('/proc/self/fdinfo/%d' % overdue, 'rb').read():
    time.sleep(0.001)
soon = timer(1, 0, 0, 300 * 10**6, 100 * 10**6)
ready({'overdue': overdue, 'soon': soon, 'periodic': periodic, 'absolute': absolute, 'fired': fired, 'disarmed': disarmed})
for line in lines():
    answer(eval(line))
`);
t.teardown(() => holder.stop());
const fds = holder.ready as Record<string, number>;

t.test('a periodic timer keeps its clock, interval and remaining time', async (t) => {
  const run = dumpContext([holder.pid]);
  const record = recordById(run.records, dumpFd(timerfdModule, run, holder.pid, fds.periodic!).id);
  t.match(record, { kind: 'timerfd', clock: CLOCK_MONOTONIC, intervalNs: 2_500_000_000, settimeFlags: 0 });
  t.ok((record.valueNs as number) > 0 && (record.valueNs as number) <= 3600e9);
  const fd = await timerfdModule.restore(record, restoreContext(run.records).ctx);
  const info = parseFdinfo(fdinfoTextOf(fd));
  t.equal(info.timerfd!.clockid, CLOCK_MONOTONIC);
  t.equal(info.flags & ~k.O.CLOEXEC, record.flags);
  const now = k.timerfdGettime(fd);
  t.equal(now.intervalNs, 2_500_000_000n);
  t.ok(now.valueNs > 0n && now.valueNs <= BigInt(record.valueNs as number), 'still armed, not later than recorded');
  closeFd(fd);
});

t.test('an absolute realtime timer is re-armed absolute with its settime flags', async (t) => {
  const run = dumpContext([holder.pid]);
  const record = recordById(run.records, dumpFd(timerfdModule, run, holder.pid, fds.absolute!).id);
  t.match(record, { clock: CLOCK_REALTIME, settimeFlags: 3, intervalNs: 0 });
  const fd = await timerfdModule.restore(record, restoreContext(run.records).ctx);
  t.equal(parseFdinfo(fdinfoTextOf(fd)).timerfd!.settimeFlags, 3);
  const now = k.timerfdGettime(fd);
  t.ok(now.valueNs > 0n && now.valueNs <= BigInt(record.valueNs as number));
  closeFd(fd);
});

t.test('expirations not yet read come back as ticks', async (t) => {
  const run = dumpContext([holder.pid]);
  const record = recordById(run.records, dumpFd(timerfdModule, run, holder.pid, fds.fired!).id);
  t.match(record, { valueNs: 0, intervalNs: 0, ticks: 1 });
  const fd = await timerfdModule.restore(record, restoreContext(run.records).ctx);
  t.equal(parseFdinfo(fdinfoTextOf(fd)).timerfd!.ticks, 1n);
  const got = k.read(fd, 8);
  t.equal(got.readBigUInt64LE(0), 1n, 'one expiration to read');
  closeFd(fd);
});

t.test('a disarmed timer stays disarmed', async (t) => {
  const run = dumpContext([holder.pid]);
  const record = recordById(run.records, dumpFd(timerfdModule, run, holder.pid, fds.disarmed!).id);
  t.match(record, { valueNs: 0, intervalNs: 0 });
  t.notOk('ticks' in record);
  const fd = await timerfdModule.restore(record, restoreContext(run.records).ctx);
  t.same(k.timerfdGettime(fd), { valueNs: 0n, intervalNs: 0n });
  closeFd(fd);
});

t.test('a restored timer fires and keeps firing at its interval', async (t) => {
  const run = dumpContext([holder.pid]);
  const record = recordById(run.records, dumpFd(timerfdModule, run, holder.pid, fds.soon!).id);
  t.match(record, { clock: CLOCK_MONOTONIC, intervalNs: 100_000_000 });
  const fd = await timerfdModule.restore(record, restoreContext(run.records).ctx);
  // Blocking reads: each returns once the timer has expired at least once more.
  t.ok(k.read(fd, 8).readBigUInt64LE(0) >= 1n, 'first expiry');
  t.ok(k.read(fd, 8).readBigUInt64LE(0) >= 1n, 'next period');
  closeFd(fd);
});

t.test('a periodic timer that expired unread keeps its tick and its next period', async (t) => {
  const run = dumpContext([holder.pid]);
  const record = recordById(run.records, dumpFd(timerfdModule, run, holder.pid, fds.overdue!).id);
  t.match(record, { intervalNs: 3600e9, ticks: 1 });
  t.ok((record.valueNs as number) > 0 && (record.valueNs as number) <= 3600e9, 'armed for the next period, not disarmed');
  t.equal(await holder.ask(`struct.unpack('Q', os.read(overdue, 8))[0]`), 1, 'the original still has its unread expiration');
  const fd = await timerfdModule.restore(record, restoreContext(run.records).ctx);
  t.equal(k.read(fd, 8).readBigUInt64LE(0), 1n);
  const now = k.timerfdGettime(fd);
  t.equal(now.intervalNs, 3_600_000_000_000n);
  t.ok(now.valueNs > 0n && now.valueNs <= BigInt(record.valueNs as number));
  closeFd(fd);
});
