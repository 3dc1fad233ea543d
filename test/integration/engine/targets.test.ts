// Every C target is frozen, dumped, killed, restored and then checks its own state: the
// verdict comes from the restored process itself.
import t from 'tap';
import { TARGET_NAMES, cleanup, runRoundTrip } from '../../lib/target.js';

for (const name of TARGET_NAMES) {
  t.test(`the ${name} target keeps its state across dump, kill and restore`, async (t) => {
    const r = await runRoundTrip(name);
    t.equal(r.verdict, 'PASS', `${name}: ${r.verdict}\n${r.log}`);
    t.equal(r.exitCode, 0);
    cleanup(r.workDir);
  });
}

t.test('a restored tree dumped and restored a second time still passes', async (t) => {
  for (const name of ['tree', 'threads', 'signals'] as const) {
    const r = await runRoundTrip(name, { rounds: 2 });
    t.equal(r.verdict, 'PASS', `${name} twice: ${r.verdict}\n${r.log}`);
    cleanup(r.workDir);
  }
});

t.test('a dump with --leave-running leaves the original running with its state', async (t) => {
  const r = await runRoundTrip('timers', { leaveRunning: true });
  t.equal(r.verdict, 'PASS', r.log);
  cleanup(r.workDir);
});

t.test('an image written while the original already runs again (--leave-running) restores it as it was when frozen', async (t) => {
  const r = await runRoundTrip('memory', { dumpLeavingRunning: true });
  t.equal(r.verdict, 'PASS', r.log);
  t.match(r.dumps[0]!.stdout, /frozen/, 'the dump reports its frozen time');
  cleanup(r.workDir);
});

t.test('the vdso target passes when the restore must use vDSO trampolines', async (t) => {
  process.env.HANDOFF_FORCE_VDSO_TRAMPOLINE = '1';
  process.env.HANDOFF_LOG = 'info';
  try {
    for (const name of ['vdso', 'clocks'] as const) {
      const r = await runRoundTrip(name);
      t.equal(r.verdict, 'PASS', `${name}: ${r.verdict}\n${r.log}`);
      t.match(r.restores.map((x) => x.stdout + x.stderr).join(''), /trampolines installed/, 'the restore took the trampoline path');
      cleanup(r.workDir);
    }
  } finally {
    delete process.env.HANDOFF_FORCE_VDSO_TRAMPOLINE;
    delete process.env.HANDOFF_LOG;
  }
});
