// What cannot be handed off is refused before anything is frozen, with the pid and fd; a dump
// that dies half-way leaves its target running untouched; a corrupt image restores nothing.
import t from 'tap';
import { execa } from 'execa';
import { existsSync, readFileSync, readdirSync, writeFileSync } from 'node:fs';
import { join } from 'node:path';
import { cleanup, handoff, python3, startTarget, VERDICT } from '../../lib/target.js';

const sleep = (ms: number) => new Promise((r) => setTimeout(r, ms));

t.test('a process in another network namespace is refused by the preflight and keeps running', async (t) => {
  const ns = `hsafe${process.pid}`;
  await execa('ip', ['netns', 'add', ns]);
  t.teardown(() => execa('ip', ['netns', 'del', ns], { reject: false }));
  const running = await startTarget('ns-sleeper', { noReady: true, command: ['ip', 'netns', 'exec', ns, 'sleep', '600'] });
  t.teardown(() => running.kill());
  await sleep(300);
  const pid = running.pids().at(-1)!;
  const r = await handoff(['dump', '--pid', String(pid), '--image', join(running.workDir, 'img'), '--json']);
  t.equal(r.exitCode, 4, 'exit code 4: blocked');
  const err = JSON.parse(r.stdout) as { code: string; blockers: { code: string; pid: number }[] };
  t.equal(err.code, 'E_BLOCKED');
  t.ok(err.blockers.some((b) => b.code === 'B_NAMESPACE' && b.pid === pid), JSON.stringify(err.blockers));
  t.notOk(existsSync(join(running.workDir, 'img')), 'no image written');
  t.match(readFileSync(`/proc/${pid}/status`, 'utf8'), /State:\s+S/, 'still running, not stopped or traced');
  cleanup(running.workDir);
});

t.test('a channel shared with a process outside the dump is named with pid and fd', async (t) => {
  // The target's stdout is connected to this test process (Node uses a socketpair for it).
  const child = execa(python3(), ['-c', 'import time,sys; print("READY", flush=True); time.sleep(600)'], { stdout: 'pipe', stdin: 'ignore', reject: false });
  t.teardown(async () => {
    child.kill('SIGKILL');
    await child;
  });
  await new Promise<void>((resolve) => child.stdout!.once('data', () => resolve()));
  const r = await handoff(['dump', '--pid', String(child.pid), '--image', `/tmp/handoff-safety-${process.pid}.img`, '--json']);
  t.equal(r.exitCode, 4);
  const err = JSON.parse(r.stdout) as { blockers: { code: string; pid: number; fd?: number }[] };
  t.ok(err.blockers.some((b) => b.pid === child.pid && b.fd === 1), JSON.stringify(err.blockers));
});

t.test('killing the dump half-way leaves the target running with its state', async (t) => {
  // 768 MiB of state takes the dump long enough to be killed in the middle of writing it.
  const code = `
import hashlib, os, signal, sys, time
data = bytearray(768 << 20)
for i in range(0, len(data), 4096): data[i:i+8] = i.to_bytes(8, 'little')
digest = hashlib.sha256(data).hexdigest()
got = []
signal.signal(signal.SIGUSR1, lambda *a: got.append(1))
print('READY', os.getpid(), flush=True)
while not got: time.sleep(0.05)
print('PASS' if hashlib.sha256(data).hexdigest() == digest else 'FAIL state changed', flush=True)
`;
  const running = await startTarget('big-state', { command: [python3(), '-c', code], readyTimeoutMs: 120_000 });
  t.teardown(() => running.kill());
  const image = join(running.workDir, 'img');
  const dump = execa(process.execPath, [join(import.meta.dirname, '../../../bin/handoff.js'), 'dump', '--pid', String(running.pid), '--image', image], { reject: false });
  // Wait until the dump has frozen the target and is writing, then kill it.
  for (let i = 0; i < 400; i++) {
    if (readdirSync(running.workDir).some((f) => f.endsWith('.tmp'))) break;
    await sleep(10);
  }
  await sleep(150);
  dump.kill('SIGKILL');
  const d = await dump;
  t.ok(d.signal === 'SIGKILL' || d.exitCode !== 0, 'the dump was killed before finishing');
  t.notOk(existsSync(image), 'no image under the final name');
  running.signal('SIGUSR1');
  const m = await running.waitFor(VERDICT, 60_000);
  t.equal(m[1], 'PASS', running.log());
  cleanup(running.workDir);
});

t.test('a truncated image is refused before any process is created', async (t) => {
  const running = await startTarget('registers');
  const image = join(running.workDir, 'img');
  const d = await handoff(['dump', '--pid', String(running.pid), '--image', image]);
  t.equal(d.exitCode, 0, d.stderr);
  await running.kill();
  const bytes = readFileSync(image);
  writeFileSync(image, bytes.subarray(0, bytes.length - 100), { mode: 0o600 });
  const r = await handoff(['restore', '--image', image, '--detach', '--json']);
  t.equal(r.exitCode, 3);
  t.match(JSON.parse(r.stdout), { code: 'E_IMAGE_TRUNCATED' });
  t.notOk(existsSync(`/proc/${running.pid}`), 'nothing was created with the recorded pid');
  cleanup(running.workDir);
});

t.test('a large image with one flipped bit deep in its memory is refused, and what the restore built meanwhile is gone', async (t) => {
  // Above DEFER_MIN_BYTES the digest is hashed by a worker while memory is being filled: the
  // restore must still end with the image error, kill what it created and leave nothing behind.
  const code = `
import os, time
data = bytearray(96 << 20)
for i in range(0, len(data), 4096): data[i] = 1
print('READY', os.getpid(), flush=True)
time.sleep(600)
`;
  const running = await startTarget('big-corrupt', { command: [python3(), '-c', code], readyTimeoutMs: 120_000 });
  t.teardown(() => running.kill());
  const image = join(running.workDir, 'img');
  const d = await handoff(['dump', '--pid', String(running.pid), '--image', image]);
  t.equal(d.exitCode, 0, d.stderr);
  await running.kill();
  const bytes = readFileSync(image);
  t.ok(bytes.length > 96 << 20, `the image is large (${bytes.length} bytes)`);
  bytes[Math.floor(bytes.length * 0.6)]! ^= 0x01;
  writeFileSync(image, bytes, { mode: 0o600 });
  const r = await handoff(['restore', '--image', image, '--detach', '--json']);
  t.equal(r.exitCode, 3, 'exit code 3: bad image');
  t.match(JSON.parse(r.stdout), { code: 'E_IMAGE_DIGEST' });
  const left = existsSync(`/proc/${running.pid}`) ? readFileSync(`/proc/${running.pid}/status`, 'utf8').split('\n').slice(0, 8).join(' | ') : '';
  t.equal(left, '', 'no process with the recorded pid is left');
  cleanup(running.workDir);
});
