// The abort paths of handoff prepare --exec in a guest: whatever goes wrong before the jump,
// the workload runs on as if nothing happened - no lock, no staged kernel, no byte lost.
import t from 'tap';
import { prepareImages } from '../../vm-images/qemu.js';
import { runHandoff } from '../../vm-images/handoff-run.js';
import { checkAborted } from '../../vm-images/handoff-checks.js';

t.before(async () => {
  await prepareImages();
});

t.test('a kernel file the kexec syscall refuses (corrupt) stops prepare before anything is frozen', async (t) => {
  const r = await runHandoff({ from: '6.1', to: '6.12', store: 'file', mode: 'bad-kernel' });
  t.not(r.find('prepare-exit')?.fields.rc, '0', 'prepare failed');
  t.match(r.log, /E_KEXEC/, 'with the kexec error');
  checkAborted(t, r);
});

t.test('kill -9 of prepare while it writes the memory: the watchdog undoes it (file store)', async (t) => {
  const r = await runHandoff({ from: '6.1', to: '6.12', store: 'file', mode: 'kill-during-dump' });
  t.ok(r.find('killed-prepare'), 'prepare was killed mid-dump');
  checkAborted(t, r);
});

t.test('kill -9 of prepare with the trees frozen, the network locked and sockets in repair mode (pmem store)', async (t) => {
  const r = await runHandoff({ from: '6.1', to: '6.12', store: 'pmem', mode: 'kill-after-dump' });
  t.match(r.find('tables-before-kill')?.text ?? '', /handoff_t1/, 'the lock was in place when prepare was killed');
  checkAborted(t, r);
});
