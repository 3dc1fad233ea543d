// Self-check of the test targets and their harness, without the dump/restore engine: every
// target passes its own checks when simply signalled, and fails when one piece of its state
// is broken on purpose (HANDOFF_CORRUPT), which proves each check can fail.
import t from 'tap';
import { existsSync, readFileSync } from 'node:fs';
import { execa } from 'execa';
import { PROGRAMS, TARGETS, TARGET_NAMES, TARGETS_BUILD, VERDICT, cleanup, processTree, startTarget, type ProgramName } from '../lib/target.js';

// Short sleeps for the blocking target: nothing is dumped here.
const env = { HANDOFF_SLEEP_MS: '300' };

async function verdictOf(name: string, corrupt?: string): Promise<{ verdict: string; exitCode: number; log: string }> {
  const target = await startTarget(name, { env, ...(corrupt ? { corrupt } : {}) });
  try {
    target.signal('SIGUSR1');
    const m = await target.waitFor(VERDICT);
    const exitCode = await target.exitCode();
    await target.reap();
    return { verdict: m[1], exitCode, log: target.log() };
  } finally {
    await target.kill().catch(() => {});
    cleanup(target.workDir);
  }
}

for (const name of TARGET_NAMES) {
  t.test(`the ${name} target passes its checks when signalled without a dump`, async (t) => {
    const r = await verdictOf(name);
    t.equal(r.verdict, 'PASS', r.log);
    t.equal(r.exitCode, 0);
  });

  t.test(`the ${name} target fails when its state is broken`, async (t) => {
    for (const mode of TARGETS[name]) {
      const r = await verdictOf(name, mode);
      t.match(r.verdict, /^FAIL \S/, `${name} with ${mode} broken: ${r.verdict}`);
      t.equal(r.exitCode, 1, `${name} with ${mode} broken exits 1`);
    }
  });
}

const programCorruptions: Record<ProgramName, string> = { 'python-threads': 'chain', 'node-timers': 'chain', 'shell-tree': 'orphan' };
for (const name of Object.keys(PROGRAMS) as ProgramName[]) {
  t.test(`the ${name} program passes its checks when signalled and fails when broken`, async (t) => {
    const ok = await verdictOf(name);
    t.equal(ok.verdict, 'PASS', ok.log);
    t.equal(ok.exitCode, 0);
    const broken = await verdictOf(name, programCorruptions[name]);
    t.match(broken.verdict, /^FAIL \S/, broken.log);
    t.not(broken.exitCode, 0);
  });
}

t.test('a target refuses an unknown corruption mode before READY', async (t) => {
  await t.rejects(startTarget('memory', { corrupt: 'no-such-mode' }), /unknown corruption mode 'no-such-mode'/);
});

t.test('kill() takes down and reaps a whole tree, orphans included', async (t) => {
  const target = await startTarget('tree');
  const pids = processTree(target.pid);
  t.equal(pids.length, 4, 'root, job, sibling and grandchild');
  await target.kill();
  for (const pid of pids) t.notOk(existsSync(`/proc/${pid}`), `pid ${pid} is free`);
  await target.reap();
  cleanup(target.workDir);
});

t.test('the reaper adopts and reaps orphans and records how each one died', async (t) => {
  const status = `/tmp/handoff-reaper-${process.pid}.status`;
  const r = await execa(`${TARGETS_BUILD}/reaper`, [status, 'sh', '-c', '(sleep 0.2; exit 3) & sh -c "sleep 0.2; kill -9 \\$\\$" & exit 5'], { reject: false });
  t.equal(r.exitCode, 5, 'exits with the command status');
  const lines = readFileSync(status, 'utf8').trim().split('\n');
  t.match(lines[0], /^command \d+ exit 5$/);
  t.ok(lines.some((l) => / exit 3$/.test(l)), 'the orphan that exited 3');
  t.ok(lines.some((l) => / signal 9$/.test(l)), 'the orphan killed by SIGKILL');
  cleanup(status);
});
