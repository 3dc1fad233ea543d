// Kexec handoff to an older kernel: the image format is meant to restore on any kernel at
// or above its minimum (5.10), in both directions.
import t from 'tap';
import { prepareImages } from '../../vm-images/qemu.js';
import { runHandoff } from '../../vm-images/handoff-run.js';
import { checkHandoff } from '../../vm-images/handoff-checks.js';

t.before(async () => {
  await prepareImages();
});

t.test('a workload tree and its TCP session survive a downgrade from 7.x to 6.1 (file store)', async (t) => {
  const r = await runHandoff({ from: '7', to: '6.1', store: 'file' });
  checkHandoff(t, r, '7', '6.1');
});

t.test('a handoff into the same kernel keeps everything (pmem store)', async (t) => {
  const r = await runHandoff({ from: '6.1', to: '6.1', store: 'pmem' });
  checkHandoff(t, r, '6.1', '6.1');
});
