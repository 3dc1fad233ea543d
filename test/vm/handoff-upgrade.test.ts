// Kexec handoff end to end across kernel upgrades: a workload tree (memory, a file, pipes, a
// POSIX timer, a child process, a TCP session with a peer on the host checking every reply)
// is prepared on the old kernel and resumed by the new kernel's init. Both image stores.
import t from 'tap';
import { prepareImages } from '../../vm-images/qemu.js';
import { runHandoff } from '../../vm-images/handoff-run.js';
import { checkHandoff } from '../../vm-images/handoff-checks.js';

t.before(async () => {
  await prepareImages();
});

const cases = [
  { from: '5.10', to: '6.1', store: 'file' },
  { from: '6.1', to: '6.12', store: 'pmem' },
  { from: '6.12', to: '7', store: 'file' },
  { from: '5.10', to: '7', store: 'pmem' },
] as const;

for (const c of cases) {
  t.test(`a workload tree and its TCP session survive a handoff from ${c.from} to ${c.to} (${c.store} store)`, async (t) => {
    const r = await runHandoff({ from: c.from, to: c.to, store: c.store });
    checkHandoff(t, r, c.from, c.to);
  });
}
