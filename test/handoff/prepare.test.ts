// handoff prepare / abort / resume on this machine, without a kexec: the preflight refuses
// with every blocker and changes nothing; abort and resume with nothing pending are no-ops.
import t from 'tap';
import { spawn } from 'node:child_process';
import { existsSync, mkdirSync, mkdtempSync, rmSync, writeFileSync } from 'node:fs';
import { tmpdir } from 'node:os';
import { join } from 'node:path';
import { execa } from 'execa';

const bin = new URL('../../bin/handoff.js', import.meta.url).pathname;
const runDir = mkdtempSync(join(tmpdir(), 'handoff-run-'));
const env = { ...process.env, HANDOFF_RUN_DIR: runDir };
const handoff = (...args: string[]) => execa('node', [bin, ...args], { reject: false, env });

function fakeKernel(dir: string, release: string): string {
  const b = Buffer.alloc(0x4000);
  b.write('HdrS', 0x202, 'latin1');
  b.writeUInt16LE(0x3000 - 0x200, 0x20e);
  b.write(`${release} (test) #1 SMP\0`, 0x3000, 'latin1');
  const p = join(dir, 'vmlinuz');
  writeFileSync(p, b);
  return p;
}

t.test('prepare lists every blocker at once, including a new kernel older than the image minimum, and changes nothing', async (t) => {
  const dir = mkdtempSync(join(tmpdir(), 'handoff-prep-'));
  const kernel = fakeKernel(dir, '4.19.0-old');
  const target = spawn('sleep', ['60'], { stdio: 'ignore' });
  t.teardown(() => target.kill('SIGKILL'));
  const store = join(dir, 'store');
  const r = await handoff('prepare', '--pid', String(target.pid), '--kernel', kernel, '--image', store, '--append', 'console=ttyS0', '--json');
  t.equal(r.exitCode, 4, 'exit 4: blocked');
  const out = JSON.parse(String(r.stdout)) as { code: string; blockers: { code: string; reason: string }[] };
  t.equal(out.code, 'E_BLOCKED');
  t.ok(out.blockers.some((b) => b.code === 'B_KERNEL_TOO_OLD' && /4\.19\.0-old.*5\.10/.test(b.reason)), 'the old kernel is named with the minimum');
  t.notOk(existsSync(join(runDir, 'pending.json')), 'no pending prepare recorded');
  t.notOk(existsSync(join(store, 'manifest.json')), 'no store written');
  t.equal(target.exitCode, null, 'the target still runs');
  t.equal(target.signalCode, null, 'and was not signalled');
});

t.test('prepare refuses a pmem store whose region the next kernel would not keep', async (t) => {
  const dir = mkdtempSync(join(tmpdir(), 'handoff-prep-'));
  const kernel = fakeKernel(dir, '6.12.1-test');
  const device = join(dir, 'pmem0');
  writeFileSync(device, Buffer.alloc(1 << 20));
  const target = spawn('sleep', ['60'], { stdio: 'ignore' });
  t.teardown(() => target.kill('SIGKILL'));
  const r = await handoff('prepare', '--pid', String(target.pid), '--kernel', kernel, '--pmem', device, '--append', 'console=ttyS0', '--json');
  t.equal(r.exitCode, 4, 'blocked');
  const out = JSON.parse(String(r.stdout)) as { blockers: { code: string }[] };
  t.ok(out.blockers.some((b) => b.code === 'B_STORE_SPACE' || b.code === 'B_PMEM_CMDLINE' || b.code === 'B_KERNEL_FEATURE'), 'store or kexec problems are listed');
});

t.test('prepare without targets is a usage error', async (t) => {
  const r = await handoff('prepare', '--kernel', '/nonexistent', '--image', '/tmp/x');
  t.equal(r.exitCode, 2);
});

t.test('abort and resume with nothing pending do nothing', async (t) => {
  const a = await handoff('abort');
  t.equal(a.exitCode, 0);
  t.match(String(a.stdout), /nothing pending/);
  const dir = mkdtempSync(join(tmpdir(), 'handoff-none-'));
  const r = await handoff('resume', '--image', join(dir, 'store'));
  t.equal(r.exitCode, 0);
  t.match(String(r.stdout), /nothing to resume/);
  const e = await handoff('resume', '--early', '--image', join(dir, 'store'));
  t.equal(e.exitCode, 0);
  t.match(String(e.stdout), /nothing to resume/);
});

t.test('once the processes were killed for the jump, the watchdog keeps the store and abort refuses to discard their only copy', async (t) => {
  const dir = mkdtempSync(join(tmpdir(), 'handoff-kept-'));
  const store = join(dir, 'store');
  mkdirSync(store, { mode: 0o700 });
  const manifest = join(store, 'manifest.json');
  writeFileSync(manifest, '{}', { mode: 0o600 });
  // A preparer and a workload that are both gone, as after `systemctl kexec` killed prepare.
  const gone = await execa('sh', ['-c', 'echo $$']);
  const deadPid = Number(gone.stdout);
  const pending = { preparer: deadPid, startedAtMs: Date.now(), phase: 'executing', roots: [deadPid], pids: [deadPid], lockTables: [], store: { type: 'file', path: store }, tempFiles: [], kernelStaged: false };
  writeFileSync(join(runDir, 'pending.json'), JSON.stringify(pending), { mode: 0o600 });
  t.teardown(() => rmSync(join(runDir, 'pending.json'), { force: true }));

  const watch = await handoff('abort', '--watch', String(deadPid), '--json');
  t.equal(watch.exitCode, 0, String(watch.stderr));
  t.match(JSON.parse(String(watch.stdout)), { keptForResume: true });
  t.ok(existsSync(manifest), 'the watchdog left the store alone');
  t.ok(existsSync(join(runDir, 'pending.json')), 'and the pending record');

  const refused = await handoff('abort', '--json');
  t.equal(refused.exitCode, 6, 'a plain abort refuses (exit 6)');
  t.match(JSON.parse(String(refused.stdout)), { code: 'E_ABORT_LOSES_PROCESSES', pids: [deadPid] });
  t.ok(existsSync(manifest), 'the store is still there');

  const forced = await handoff('abort', '--force', '--json');
  t.equal(forced.exitCode, 0, 'with --force it discards them');
  t.notOk(existsSync(manifest), 'the store is emptied');
  t.notOk(existsSync(join(runDir, 'pending.json')), 'nothing pending any more');
});
