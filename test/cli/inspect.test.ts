// `handoff inspect` on the built CLI (npm test builds dist/ first).
import t from 'tap';
import { spawnSync } from 'node:child_process';
import { join } from 'node:path';

const root = join(import.meta.dirname, '..', '..');
const full = join(root, 'test', 'golden', 'v1', 'full.himg');

function handoff(...args: string[]) {
  const r = spawnSync(process.execPath, [join(root, 'bin', 'handoff.js'), ...args], { encoding: 'utf8' });
  return { code: r.status, stdout: r.stdout, stderr: r.stderr };
}

t.test('inspect prints header, processes, threads, memory, fds and sockets', async (t) => {
  const r = handoff('inspect', full);
  t.equal(r.code, 0, r.stderr);
  t.match(r.stdout, /format 1\.2/);
  t.match(r.stdout, /kernel 6\.1\.0-28-cloud-amd64/);
  t.match(r.stdout, /restores on 5\.10\+/);
  t.match(r.stdout, /4242\s+1\s+4242\s+4242\s+alive\s+4242,4342\s+golden/);
  t.match(r.stdout, /4244\s+4242\s+.*zombie/);
  t.match(r.stdout, /heap\s+1\s+16\.0 KiB\s+12\.0 KiB/);
  t.match(r.stdout, /file descriptors: .*tcp 2/);
  t.match(r.stdout, /tcp #20 ESTABLISHED 127\.0\.0\.1:6379 -> 127\.0\.0\.1:51234/);
  t.match(r.stdout, /unix\/dgram #33 unconnected @golden-abstract/);
});

t.test('inspect --json gives the same summary as data', async (t) => {
  const r = handoff('inspect', full, '--json');
  t.equal(r.code, 0, r.stderr);
  const s = JSON.parse(r.stdout) as {
    header: { minKernel: string };
    processes: { pid: number; ppid: number; comm: string; threads: number[] }[];
    memory: { storedBytes: number; byType: Record<string, { storedBytes: number }> };
    fds: Record<string, number>;
    sockets: { kind: string }[];
  };
  t.equal(s.header.minKernel, '5.10');
  t.same(s.processes.map((p) => [p.pid, p.ppid, p.comm, p.threads.length]), [[4242, 1, 'golden', 2], [4243, 4242, 'child', 1], [4244, 4242, 'reaped-later', 0]]);
  t.equal(s.memory.storedBytes, 5 * 4096);
  t.equal(s.memory.byType.stack!.storedBytes, 4096);
  t.equal(s.fds['pipe-end'], 2);
  t.equal(s.sockets.filter((k) => k.kind === 'tcp').length, 2);
});

t.test('inspect of a damaged image fails with exit 3', async (t) => {
  const r = handoff('inspect', join(root, 'package.json'));
  t.equal(r.code, 3);
  t.match(r.stderr, /E_IMAGE_MAGIC/);
});
