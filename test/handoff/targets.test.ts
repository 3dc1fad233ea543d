// prepare's targets: a cgroup named by its path as systemd shows it (ControlGroup=) resolves to
// the trees of its processes, on the cgroup v2 mount wherever it is (this host is hybrid:
// /sys/fs/cgroup/unified).
import t from 'tap';
import { spawn } from 'node:child_process';
import { existsSync, mkdirSync, readFileSync, rmdirSync, writeFileSync } from 'node:fs';
import { join } from 'node:path';
import { cgroupMounts } from '../../src/objects/cgroup.js';
import { cgroupDir, resolveTargets } from '../../src/handoff/targets.js';

const sleep = (ms: number) => new Promise((r) => setTimeout(r, ms));

t.test('a cgroup path resolves to one root per tree of its processes', async (t) => {
  const v2 = cgroupMounts().find((m) => m.version === 2);
  if (!v2) throw new Error('no cgroup v2 hierarchy is mounted on this machine');
  const name = `/handoff-test-targets-${process.pid}`;
  const dir = join(v2.mountPoint, name);
  mkdirSync(dir);
  const shell = spawn('sh', ['-c', 'sleep 60 & wait'], { stdio: 'ignore' });
  const lone = spawn('sleep', ['60'], { stdio: 'ignore' });
  const shellExit = new Promise((ok) => shell.once('exit', ok));
  t.teardown(async () => {
    // The sleep is reaped by its shell (whose wait then returns): PID 1 here never reaps orphans.
    if (child) process.kill(child, 'SIGKILL');
    await shellExit;
    lone.kill('SIGKILL');
    for (let i = 0; i < 100 && readFileSync(join(dir, 'cgroup.procs'), 'utf8').trim(); i++) await sleep(50);
    if (existsSync(dir)) rmdirSync(dir);
  });
  let child: number | undefined;
  for (let i = 0; i < 100 && !child; i++) {
    await sleep(20);
    child = Number(readFileSync(`/proc/${shell.pid}/task/${shell.pid}/children`, 'utf8').trim()) || undefined;
  }
  for (const pid of [shell.pid!, child!, lone.pid!]) writeFileSync(join(dir, 'cgroup.procs'), String(pid));
  t.equal(cgroupDir(name), dir, 'the path is found on the v2 mount');
  t.same((await resolveTargets({ cgroups: [name] })).sort(), [shell.pid, lone.pid].sort(), 'the shell (with its sleep) and the lone sleep are the trees');
  t.throws(() => cgroupDir('/handoff-no-such-cgroup'), { code: 'E_USAGE' }, 'a missing cgroup is a usage error');
});
