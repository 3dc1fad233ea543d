// `handoff check` run as a user would: the built CLI, checked against facts of this machine.
import t from 'tap';
import { spawnSync } from 'node:child_process';
import { release } from 'node:os';
import { fileURLToPath } from 'node:url';

const bin = fileURLToPath(new URL('../../bin/handoff.js', import.meta.url));
const run = (...args: string[]) => spawnSync(process.execPath, [bin, 'check', ...args], { encoding: 'utf8' });

type Feature = { name: string; available: boolean; detail: string; minKernel: string; neededFor: string[] };
type Report = { release: string; arch: string; pageSize: number; root: boolean; ok: boolean; missing: string[]; features: Feature[] };

const json = run('--json');
const report = JSON.parse(json.stdout) as Report;
const byName = new Map(report.features.map((f) => [f.name, f]));

t.test('--json reports this machine', async (t) => {
  t.equal(report.release, release());
  t.equal(report.pageSize, 4096);
  t.equal(report.root, process.getuid!() === 0);
  if (report.root) {
    for (const name of ['ptrace-seize', 'pidfd-getfd', 'clone3-set-tid', 'tcp-repair', 'time-namespace']) t.equal(byName.get(name)?.available, true, `${name} as root on ${release()}`);
  }
});

t.test('exit status is 0 exactly when nothing dump or restore needs is missing', async (t) => {
  const missing = report.features.filter((f) => !f.available && (f.neededFor.includes('dump') || f.neededFor.includes('restore'))).map((f) => f.name);
  t.same(report.missing, missing);
  t.equal(report.ok, missing.length === 0);
  t.equal(json.status, missing.length === 0 ? 0 : 5);
});

t.test('the table shows every feature with yes or no', async (t) => {
  const text = run();
  t.equal(text.status, json.status);
  t.match(text.stdout, `kernel ${release()}`);
  for (const f of report.features) {
    const line = text.stdout.split('\n').find((l) => l.startsWith(f.name + ' '));
    t.ok(line, `a line for ${f.name}`);
    t.equal(line!.split(/ +/)[1], f.available ? 'yes' : 'no', f.name);
  }
  t.match(text.stdout, report.ok ? /^ok: /m : /^missing for /m);
});

t.test('--prepare also requires kexec and names it when missing', async (t) => {
  const prepare = run('--prepare');
  const kexec = byName.get('kexec')!;
  const expectOk = report.ok && kexec.available && report.features.filter((f) => f.neededFor.includes('prepare')).every((f) => f.available);
  t.equal(prepare.status, expectOk ? 0 : 5);
  if (!kexec.available) t.match(prepare.stdout, /missing for dump\/restore\/prepare: .*kexec \(needed for prepare/);
});

t.test('usage errors exit 2, --help exits 0', async (t) => {
  t.equal(run('--bogus').status, 2);
  const help = run('--help');
  t.equal(help.status, 0);
  t.match(help.stdout, 'Usage: handoff check');
});
