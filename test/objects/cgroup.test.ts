// Control group membership: recorded at dump for every process of a tree, and restored by
// moving each new process back into the same cgroups (created when missing, with a warning).
import t from 'tap';
import { existsSync, mkdirSync, readFileSync, rmdirSync, writeFileSync } from 'node:fs';
import { join } from 'node:path';
import { openImage } from '../../src/format/reader.js';
import type { ProcessRecord } from '../../src/format/records.js';
import { cgroupDirectory, cgroupMounts, parseCgroupFile, restoreCgroups } from '../../src/objects/cgroup.js';
import { VERDICT, cleanup, dumpTarget, restoreImage, startTarget } from '../lib/target.js';

const mounts = cgroupMounts();
const v2 = mounts.find((m) => m.version === 2);
// This host is hybrid (v1 controllers and a v2 hierarchy); a v2-only CI machine has no v1 pids.
const v1pids = mounts.find((m) => m.version === 1 && m.controllers.length === 1 && m.controllers[0] === 'pids');

const membership = (pid: number) => parseCgroupFile(readFileSync(`/proc/${pid}/cgroup`, 'utf8'));
const v2Path = (pid: number) => membership(pid).find((m) => m.hierarchy === 0)?.path;
const v1PidsPath = (pid: number) => membership(pid).find((m) => m.controllers.join() === 'pids')?.path;

/** Removes cgroup directories deepest first (they must be empty of processes). */
function removeCgroups(dirs: string[]): void {
  for (const dir of [...dirs].sort((a, b) => b.length - a.length)) if (existsSync(dir)) rmdirSync(dir);
}

t.test('/proc/PID/cgroup lines of a hybrid host name v2 and each v1 hierarchy by its controllers', async (t) => {
  const parsed = parseCgroupFile('12:cpu,cpuacct:/a\n1:name=systemd:/system.slice/x.service\n0::/system.slice/x.service\n');
  t.same(parsed, [
    { hierarchy: 12, controllers: ['cpu', 'cpuacct'], path: '/a' },
    { hierarchy: 1, controllers: ['name=systemd'], path: '/system.slice/x.service' },
    { hierarchy: 0, controllers: [], path: '/system.slice/x.service' },
  ]);
  const hybrid = cgroupMounts(
    [
      '32 31 0:29 / /sys/fs/cgroup/cpu,cpuacct rw,relatime - cgroup cgroup rw,cpu,cpuacct',
      '40 31 0:37 / /sys/fs/cgroup/systemd rw,relatime - cgroup cgroup rw,xattr,name=systemd',
      '41 31 0:38 / /sys/fs/cgroup/unified rw,relatime - cgroup2 cgroup2 rw,nsdelegate',
    ].join('\n'),
    new Set(['cpu', 'cpuacct', 'pids']),
  );
  t.same(cgroupDirectory(parsed[0]!, hybrid), { dir: '/sys/fs/cgroup/cpu,cpuacct/a' });
  t.same(cgroupDirectory(parsed[1]!, hybrid), { dir: '/sys/fs/cgroup/systemd/system.slice/x.service' });
  t.same(cgroupDirectory(parsed[2]!, hybrid), { dir: '/sys/fs/cgroup/unified/system.slice/x.service' });
  const v2only = cgroupMounts('30 23 0:26 / /sys/fs/cgroup rw - cgroup2 cgroup2 rw', new Set(['cpu']));
  t.same(cgroupDirectory(parsed[2]!, v2only), { dir: '/sys/fs/cgroup/system.slice/x.service' });
  t.match(cgroupDirectory(parsed[0]!, v2only).problem, /cgroup v1 hierarchy cpu,cpuacct is not mounted here/);
  const warnings = restoreCgroups(process.pid, [parsed[0]!], v2only).warnings;
  t.match(warnings, [/cgroup left as is/], 'a hierarchy this system lacks is skipped with a warning, nothing thrown');
});

t.test('a process tree in cgroups of its own is dumped with them and restored into them, missing ones created', async (t) => {
  if (!v2) throw new Error('no cgroup v2 hierarchy is mounted on this machine');
  const name = `handoff-test-cgroup-${process.pid}`;
  const v2Dirs = [join(v2!.mountPoint, name), join(v2!.mountPoint, name, 'leaf')];
  const v1Dirs = v1pids ? [join(v1pids.mountPoint, name)] : [];
  t.teardown(() => removeCgroups([...v2Dirs, ...v1Dirs]));
  for (const d of [...v2Dirs, ...v1Dirs]) mkdirSync(d, { recursive: true });

  const running = await startTarget('tree');
  const { pid, workDir } = running;
  const pids = running.pids();
  t.equal(pids.length, 4, 'root, job, grandchild and sibling run');
  for (const p of pids) {
    writeFileSync(join(v2Dirs[1]!, 'cgroup.procs'), String(p));
    if (v1pids) writeFileSync(join(v1Dirs[0]!, 'cgroup.procs'), String(p));
  }
  const image = join(workDir, 'tree.himg');
  await dumpTarget(pid, image);
  await running.kill();

  const img = openImage(image);
  const records = img.records.filter((r) => r.kind === 'process') as unknown as ProcessRecord[];
  img.close();
  t.equal(records.length, 4, 'every process is in the image');
  for (const r of records) {
    t.match(r.cgroups, [], `pid ${r.pid} has its cgroups recorded`);
    t.same(r.cgroups?.find((c) => c.hierarchy === 0), { hierarchy: 0, controllers: [], path: `/${name}/leaf` }, `pid ${r.pid}: its cgroup v2 path`);
    if (v1pids) t.same(r.cgroups?.find((c) => c.controllers.join() === 'pids')?.path, `/${name}`, `pid ${r.pid}: its v1 pids hierarchy path`);
  }

  // The v2 leaf is gone (as after a reboot): restore must create it again.
  rmdirSync(v2Dirs[1]!);
  const { running: restored, restore } = await restoreImage('tree', pid, image, workDir);
  t.match(restore.stdout, /cgroup did not exist: created/, 'the restore warns that it created the missing cgroup');
  const back = restored.pids();
  t.same([...back].sort(), [...pids].sort(), 'the same pids are back');
  for (const p of back) {
    t.equal(v2Path(p), `/${name}/leaf`, `pid ${p} is back in its cgroup v2 leaf`);
    if (v1pids) t.equal(v1PidsPath(p), `/${name}`, `pid ${p} is back in its v1 pids cgroup`);
  }
  t.equal(readFileSync(join(v2Dirs[1]!, 'cgroup.procs'), 'utf8').trim().split('\n').length, 4, 'the leaf lists all four processes');

  restored.signal('SIGUSR1');
  const verdict = await restored.waitFor(VERDICT);
  t.equal(verdict[1], 'PASS', restored.log());
  await restored.exitCode();
  await restored.reap();
  cleanup(workDir);
});
