// The host network configuration is recorded, differences on the restoring host are named,
// and missing addresses and routes are put back on request. Runs inside a network namespace
// of its own (ip netns exec), so the host's configuration is never touched.
import t from 'tap';
import { execa } from 'execa';
import { fileURLToPath } from 'node:url';
import { createNetnsPair } from '../lib/netns.js';

const netconfig = fileURLToPath(new URL('../../dist/src/objects/netconfig.js', import.meta.url));

/** Runs `code` (an ES module body with `m` = the netconfig module) inside namespace ns. */
async function inside(ns: string, code: string): Promise<unknown> {
  const script = `import * as m from ${JSON.stringify(netconfig)}; const out = await (async () => { ${code} })(); process.stdout.write(JSON.stringify(out));`;
  const r = await execa('ip', ['netns', 'exec', ns, process.execPath, '--input-type=module', '-e', script]);
  return JSON.parse(String(r.stdout));
}

t.test('a missing address and route are reported and, with reapply, added back', async (t) => {
  const pair = await createNetnsPair();
  t.teardown(() => pair.destroy());
  await pair.run(pair.local, 'ip', ['route', 'add', '10.88.0.0/16', 'via', pair.v4.peer]);
  const rec = await inside(pair.local, 'return await m.dumpNetconfig();');
  t.match(JSON.stringify(rec), /10\.77\.0\.1/, 'the address is recorded');

  await pair.run(pair.local, 'ip', ['addr', 'del', `${pair.v4.local}/24`, 'dev', 'veth0']);
  const report = (await inside(pair.local, `return await m.restoreNetconfig(${JSON.stringify(rec)}, false);`)) as { differences: string[] };
  t.ok(report.differences.some((d) => d.includes('address veth0 10.77.0.1/24 is missing')), report.differences.join('\n'));
  t.ok(report.differences.some((d) => d.includes('route 10.88.0.0/16') && d.includes('missing')), 'the route that went with it is missing too');

  const fixed = (await inside(pair.local, `return await m.restoreNetconfig(${JSON.stringify(rec)}, true);`)) as { applied: string[] };
  t.ok(fixed.applied.some((a) => a.startsWith('ip addr add 10.77.0.1/24 dev veth0') && !a.includes('failed')), fixed.applied.join('\n'));
  const after = (await inside(pair.local, `return await m.restoreNetconfig(${JSON.stringify(rec)}, false);`)) as { differences: string[] };
  t.same(after.differences, [], 'nothing differs once re-applied');
});

t.test('an identical host shows no difference', async (t) => {
  const pair = await createNetnsPair();
  t.teardown(() => pair.destroy());
  const rec = await inside(pair.local, 'return await m.dumpNetconfig();');
  const report = (await inside(pair.local, `return await m.restoreNetconfig(${JSON.stringify(rec)}, false);`)) as { differences: string[] };
  t.same(report.differences, []);
});
