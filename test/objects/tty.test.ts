import t, { type Test } from 'tap';
import { readFileSync, readlinkSync } from 'node:fs';
import { ttyModule } from '../../src/objects/tty.js';
import * as k from '../../src/native/fdkinds.js';
import * as tty from '../../src/native/tty.js';
import { closeFd } from '../../src/native/fd.js';
import { dumpContext, dumpFd, recordById, restoreContext, startHolder, type Holder } from '../lib/fdkinds-kit.js';
import { cleanup, handoff, runRoundTrip } from '../lib/target.js';

// A holder with two ptys, both ends open: one raw-ish (like a full-screen program), one in
// canonical mode (like a shell reading a line), each with bytes queued both ways.
const PTYS = `
import fcntl, termios, tty as ttymod
def pty(raw, winsize):
    m, s = os.openpty()
    fcntl.ioctl(s, termios.TIOCSWINSZ, struct.pack('HHHH', *winsize))
    if raw:
        ttymod.setraw(s)
    os.set_blocking(m, False)
    os.set_blocking(s, False)
    return m, s
rm, rs = pty(True, (33, 101, 7, 9))
os.write(rm, b'typed ahead\\x03\\r\\n\\x7f')      # for the raw reader: every byte as it is
os.write(rs, b'output\\nnot read yet')          # raw: no output processing either
cm, cs = pty(False, (24, 80, 0, 0))
os.write(cm, b'first\\nsecond\\npart')           # two lines and an unfinished one
time.sleep(0.2)
# Drop the echo of the canonical pty's input (it is output like any other).
echo = os.read(cm, 100)
os.write(cs, b'prompt\\n')                      # ONLCR: the master reads prompt\\r\\n
ready({'rm': rm, 'rs': rs, 'cm': cm, 'cs': cs, 'index': [int(os.ttyname(rs)[9:]), int(os.ttyname(cs)[9:])], 'echo': echo.decode()})
def drain(fd):
    out = []
    while True:
        try:
            b = os.read(fd, 4096)
        except BlockingIOError:
            break
        if not b: break
        out.append(b.decode('latin1'))
    return out
for line in lines():
    answer(eval(line))
`;

function drain(fd: number): string[] {
  const out: string[] = [];
  for (;;) {
    try {
      const b = k.read(fd, 4096);
      if (b.length === 0) break;
      out.push(b.toString('latin1'));
    } catch (err) {
      if ((err as { errno?: number }).errno === 11) break;
      throw err;
    }
  }
  return out;
}

interface Dumped {
  holder: Holder;
  records: ReturnType<typeof dumpContext>['records'];
  ids: Record<'rm' | 'rs' | 'cm' | 'cs', number>;
  index: number[];
}

async function dumpBoth(t: Test): Promise<Dumped> {
  const holder = await startHolder(PTYS);
  const fds = holder.ready as Record<string, number>;
  t.equal(holder.ready.echo, 'first\r\nsecond\r\npart', 'the canonical pty echoed its input');
  const run = dumpContext([holder.pid]);
  const ids = {} as Dumped['ids'];
  // Slave first: the module finds the master in the holder by itself.
  for (const name of ['rs', 'rm', 'cs', 'cm'] as const) {
    const { id, blockers } = dumpFd(ttyModule, run, holder.pid, fds[name]!);
    t.same(blockers, [], `${name}: no blocker`);
    ids[name] = id;
  }
  return { holder, records: run.records, ids, index: holder.ready.index as number[] };
}

t.test('a pty pair with bytes queued both ways: dumped, the original untouched, restored at the same index', async (t) => {
  const { holder, records, ids, index } = await dumpBoth(t);
  const ptys = records.filter((r) => r.kind === 'pty');
  t.equal(ptys.length, 2, 'one pty record per pair');
  const raw = ptys.find((p) => p.index === index[0])!;
  const canon = ptys.find((p) => p.index === index[1])!;
  t.same(raw.winsize, { rows: 33, cols: 101, xpixel: 7, ypixel: 9 });
  t.same((raw.input as Uint8Array[]).map((b) => Buffer.from(b).toString('latin1')), ['typed ahead\x03\r\n\x7f'], 'raw input: one chunk, every byte');
  t.equal(Buffer.from(raw.output as Uint8Array).toString(), 'output\nnot read yet');
  t.same((canon.input as Uint8Array[]).map((b) => Buffer.from(b).toString()), ['first\n', 'second\n'], 'canonical input: the completed lines');
  t.equal(Buffer.from(canon.inputPartial as Uint8Array).toString(), 'part', 'and the line being typed');
  t.equal(Buffer.from(canon.output as Uint8Array).toString(), 'prompt\r\n');
  t.match(recordById(records, ids.rm), { kind: 'tty', pty: raw.id, type: 'pty-master', index: index[0], path: '/dev/ptmx' });
  t.match(recordById(records, ids.rs), { kind: 'tty', pty: raw.id, type: 'pty-slave', index: index[0], path: `/dev/pts/${index[0]}` });
  t.notOk(raw.session, 'not a controlling terminal');

  // The dump put every byte back, line structure included.
  t.same(await holder.ask('drain(rs)'), ['typed ahead\x03\r\n\x7f'], 'raw input still queued in the original');
  t.same(await holder.ask('drain(rm)'), ['output\nnot read yet'], 'raw output still queued in the original');
  t.same(await holder.ask('drain(cs)'), ['first\n', 'second\n'], 'canonical lines still queued, one read each');
  t.same(await holder.ask('[os.write(cm, b"ial\\n"), drain(cs)][1]'), ['partial\n'], 'the unfinished line is still being typed');
  t.same(await holder.ask('drain(cm)'), ['prompt\r\n' + 'ial\r\n'], 'canonical output still queued (then the new echo)');
  const termiosBefore = Buffer.from(canon.termios as Uint8Array);
  await holder.stop();

  const rr = restoreContext(records);
  const rm = await ttyModule.restore(recordById(records, ids.rm), rr.ctx);
  const rs = await ttyModule.restore(recordById(records, ids.rs), rr.ctx);
  const cm = await ttyModule.restore(recordById(records, ids.cm), rr.ctx);
  const cs = await ttyModule.restore(recordById(records, ids.cs), rr.ctx);
  t.teardown(() => [rm, rs, cm, cs].forEach(closeFd));
  await rr.finish();
  t.equal(readlinkSync(`/proc/self/fd/${rs}`), `/dev/pts/${index[0]}`, 'same pty index');
  t.equal(tty.getInt(rm, tty.TIOC.GPTN, 'TIOCGPTN'), index[0], 'the master is that pty');
  t.same(tty.getWinsize(rs), raw.winsize);
  t.ok(tty.getattr(rs).equals(Buffer.from(raw.termios as Uint8Array)), 'raw termios');
  t.ok(tty.getattr(cs).equals(termiosBefore), 'canonical termios');
  t.same(drain(rs), ['typed ahead\x03\r\n\x7f'], 'raw input arrives');
  t.same(drain(rm), ['output\nnot read yet'], 'raw output arrives');
  t.same(drain(cs), ['first\n', 'second\n'], 'canonical lines arrive, one read each');
  t.same(drain(cm), ['prompt\r\n'], 'canonical output arrives, and nothing was echoed while queueing');
  k.write(cm, Buffer.from('ial\n'));
  await new Promise((r) => setTimeout(r, 50));
  t.same(drain(cs), ['partial\n'], 'the unfinished line continues');
  t.same(drain(cm), ['ial\r\n'], 'and echo works again');
  k.write(rm, Buffer.from('ping'));
  await new Promise((r) => setTimeout(r, 50));
  t.same(drain(rs), ['ping'], 'the raw pty carries new bytes');
});

t.test('restoring a pty whose index is taken fails and names the holder', async (t) => {
  const { holder, records, ids, index } = await dumpBoth(t);
  t.teardown(() => holder.stop());
  const rr = restoreContext(records);
  t.throws(() => ttyModule.restore(recordById(records, ids.rs), rr.ctx), { code: 'E_PTY_IN_USE', message: new RegExp(`pty index ${index[0]} .*in use by pid ${holder.pid}`) });
  rr.abort();
});

t.test('a pty whose other end is held by a process outside the dump is a blocker naming pid and fd', async (t) => {
  // The holder keeps only the slave; the master lives in a child that is not dumped.
  const holder = await startHolder(`
import subprocess
m, s = os.openpty()
child = subprocess.Popen(['sleep', '1000'], pass_fds=[m])
os.close(m)
ready({'s': s, 'peer': child.pid})
for line in lines():
    answer(eval(line))
`);
  t.teardown(async () => {
    process.kill(holder.ready.peer as number, 'SIGKILL');
    await holder.stop();
  });
  const fd = holder.ready.s as number;
  const run = dumpContext([holder.pid]);
  const { fdInfoOf } = await import('../lib/fdkinds-kit.js');
  const info = fdInfoOf(holder.pid, fd);
  try {
    t.ok(ttyModule.matches(info));
    const blockers = ttyModule.preflight!(info, run.ctx.pids);
    t.match(blockers, [
      { code: 'pty-peer-outside', pid: holder.pid, fd, reason: new RegExp(`pid ${holder.ready.peer as number}`) },
      { code: 'pty-master-outside', pid: holder.pid, fd },
    ]);
  } finally {
    closeFd(info.localFd);
  }
});

t.test('a job on a pty, started from a shell, keeps its terminal across dump, kill and restore', async (t) => {
  const r = await runRoundTrip('pty');
  t.equal(r.verdict, 'PASS', r.log);
  t.equal(r.exitCode, 0);
  cleanup(r.workDir);
});

t.test('dumping a program whose terminal is held outside the dump is refused before anything is frozen', async (t) => {
  // Like a command started from a login terminal: its stdin is the slave, the master is elsewhere.
  const holder = await startHolder(`
import subprocess
m, s = os.openpty()
child = subprocess.Popen(['sleep', '1000'], stdin=s)
ready({'child': child.pid})
for line in lines():
    answer(eval(line))
`);
  t.teardown(async () => {
    process.kill(holder.ready.child as number, 'SIGKILL');
    await holder.stop();
  });
  const child = holder.ready.child as number;
  const r = await handoff(['dump', '--pid', String(child), '--image', '/tmp/handoff-tty-never.himg', '--json']);
  t.equal(r.exitCode, 4, 'blocked');
  const out = r.stdout + r.stderr;
  t.match(out, /pty-peer-outside/);
  t.match(out, /pty-master-outside/);
  t.match(out, new RegExp(`"pid":\\s*${child}`));
  t.match(out, /"fd":\s*0/);
  t.match(out, new RegExp(`pid ${holder.pid}`), 'names the holder of the master');
  t.equal(readFileSync(`/proc/${child}/stat`, 'utf8').split(') ')[1]![0], 'S', 'the program was never stopped');
});
