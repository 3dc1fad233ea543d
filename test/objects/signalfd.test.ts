import t from 'tap';
import { spawn } from 'node:child_process';
import { signalfdModule } from '../../src/objects/signalfd.js';
import * as k from '../../src/native/fdkinds.js';
import { closeFd } from '../../src/native/fd.js';
import { parseFdinfo } from '../../src/kernel/proc.js';
import { dumpContext, dumpFd, fdinfoTextOf, recordById, restoreContext, startHolder } from '../lib/fdkinds-kit.js';

const SIGUSR1 = 10;
const SIGTERM = 15;
const mask = (1n << BigInt(SIGUSR1 - 1)) | (1n << BigInt(SIGTERM - 1));
const holder = await startHolder(`
m = ctypes.c_uint64(${mask})
sfd = libc.signalfd(-1, ctypes.byref(m), os.O_NONBLOCK)
assert sfd >= 0
ready({'sfd': sfd})
for line in lines():
    answer(eval(line))
`);
t.teardown(() => holder.stop());

t.test('a signalfd keeps its mask and flags, and reads the signals it names', async (t) => {
  const run = dumpContext([holder.pid]);
  const record = recordById(run.records, dumpFd(signalfdModule, run, holder.pid, holder.ready.sfd as number).id);
  t.match(record, { kind: 'signalfd', mask });
  t.ok((record.flags as number) & k.O.NONBLOCK);
  const fd = await signalfdModule.restore(record, restoreContext(run.records).ctx);
  const info = parseFdinfo(fdinfoTextOf(fd));
  t.equal(info.sigmask, mask);
  t.equal(info.flags & ~k.O.CLOEXEC, record.flags);
  // A signalfd reads the signals pending for the process that reads it: hand the restored
  // fd to a child (as its fd 3) that blocks SIGUSR1, raises it and reads it back.
  const child = spawn('python3', ['-c', `
import os, signal, struct
signal.pthread_sigmask(signal.SIG_BLOCK, {signal.SIGUSR1})
os.kill(os.getpid(), signal.SIGUSR1)
info = os.read(3, 128)
print(struct.unpack_from('I', info)[0])
`], { stdio: ['ignore', 'pipe', 'inherit', fd] });
  let out = '';
  child.stdout!.on('data', (d: Buffer) => (out += d.toString()));
  const code = await new Promise<number | null>((resolve) => child.on('exit', resolve));
  t.equal(code, 0);
  t.equal(out.trim(), String(SIGUSR1), 'the restored signalfd delivered SIGUSR1');
  closeFd(fd);
});
