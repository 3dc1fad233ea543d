// Resume hooks on disk: the systemd units and init script are written where asked, and the
// services of handed-off processes are held off the resume boot and released again.
import t from 'tap';
import { spawn } from 'node:child_process';
import { existsSync, mkdirSync, mkdtempSync, readFileSync, rmdirSync, writeFileSync } from 'node:fs';
import { tmpdir } from 'node:os';
import { join } from 'node:path';
import { EARLY_UNIT, HOLD_DROPIN, MAIN_UNIT, holdUnits, installHook, releaseHeldUnits, serviceUnitsOfPids } from '../../src/handoff/hooks.js';
import { cgroupMounts } from '../../src/objects/cgroup.js';

t.test('the systemd hook is two units that run only when the command line asks for a resume', async (t) => {
  const root = mkdtempSync(join(tmpdir(), 'handoff-hooks-'));
  const hook = await installHook({ root, kind: 'systemd' });
  t.same(hook.files.map((f) => f.slice(root.length)), [`/etc/systemd/system/${EARLY_UNIT}`, `/etc/systemd/system/${MAIN_UNIT}`]);
  for (const f of hook.files) t.match(readFileSync(f, 'utf8'), /ConditionKernelCommandLine=handoff\.resume/);
});

t.test('services of handed-off processes are held off the resume boot, and released leaving the admin\'s drop-ins alone', async (t) => {
  const root = mkdtempSync(join(tmpdir(), 'handoff-hold-'));
  const files = await holdUnits(['web.service', 'db.service', 'not a unit; rm -rf /'], root);
  t.equal(files.length, 2, 'a name that is not a service unit is ignored');
  const web = join(root, 'etc/systemd/system/web.service.d', HOLD_DROPIN);
  t.match(readFileSync(web, 'utf8'), /^\[Unit\]\nConditionKernelCommandLine=!handoff\.resume$/m);
  const adminDropin = join(root, 'etc/systemd/system/db.service.d/limits.conf');
  writeFileSync(adminDropin, '[Service]\nLimitNOFILE=65536\n');
  const released = await releaseHeldUnits(root);
  t.same(released.sort(), ['db.service', 'web.service']);
  t.notOk(existsSync(web), 'the hold is gone');
  t.notOk(existsSync(join(root, 'etc/systemd/system/web.service.d')), 'with its now empty directory');
  t.ok(existsSync(adminDropin), "another drop-in of the same service stays");
  t.same(await releaseHeldUnits(root), [], 'releasing twice does nothing');
});

t.test('the service a process runs in is found from its cgroup v2 path', async (t) => {
  const v2 = cgroupMounts().find((m) => m.version === 2 && m.root === '/');
  t.ok(v2, 'this machine has a cgroup v2 hierarchy mounted');
  if (!v2) return;
  const dir = join(v2.mountPoint, `handoff-hooks-${process.pid}.slice`, `handoff-hooks-${process.pid}.service`);
  mkdirSync(dir, { recursive: true });
  const child = spawn('sleep', ['30'], { stdio: 'ignore' });
  t.teardown(async () => {
    const exited = new Promise((ok) => child.once('exit', ok));
    child.kill('SIGKILL');
    await exited; // the cgroup can go once the killed child has left it
    rmdirSync(dir);
    rmdirSync(join(dir, '..'));
  });
  writeFileSync(join(dir, 'cgroup.procs'), String(child.pid));
  t.same(serviceUnitsOfPids([child.pid!, process.pid]), [`handoff-hooks-${process.pid}.service`]);
});
