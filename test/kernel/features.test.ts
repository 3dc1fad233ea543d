// probeKernel reports true facts of this machine, checked against independent evidence.
import t from 'tap';
import { execFileSync, spawnSync } from 'node:child_process';
import { existsSync, readFileSync } from 'node:fs';
import { release } from 'node:os';
import { capabilityNames, feature, missingFor, probeKernel, type KernelFacts } from '../../src/kernel/features.js';
import { children, readStatus } from '../../src/kernel/proc.js';
import { sameOpenFile } from '../../src/native/fd.js';
import { atLeast, compareVersions, parseRelease } from '../../src/kernel/release.js';

const facts: KernelFacts = probeKernel();
const get = (name: string) => {
  const f = feature(facts, name);
  if (!f) throw new Error(`no feature ${name}`);
  return f;
};
const caps = capabilityNames(readStatus(process.pid).capEff);
const has = (cap: string) => caps.includes(cap);

t.test('probing happens once and leaves no child behind', async (t) => {
  t.equal(probeKernel(), facts, 'the same cached object');
  t.same(children(process.pid), [], 'every probe child reaped');
});

t.test('identity: release, arch, page size, root', async (t) => {
  t.equal(facts.release, release());
  t.same(facts.version, parseRelease(release()));
  t.equal(facts.arch, execFileSync('uname', ['-m'], { encoding: 'utf8' }).trim());
  t.equal(facts.pageSize, Number(execFileSync('getconf', ['PAGESIZE'], { encoding: 'utf8' })));
  t.equal(facts.root, process.getuid!() === 0);
  t.same(facts.capabilities, caps);
});

t.test('every feature is well-formed', async (t) => {
  const names = facts.features.map((f) => f.name);
  t.equal(new Set(names).size, names.length, 'unique names');
  for (const f of facts.features) {
    t.type(f.available, 'boolean');
    t.ok(f.detail.length > 0, `${f.name} has a detail`);
    t.doesNotThrow(() => parseRelease(f.minKernel), `${f.name} minKernel ${f.minKernel}`);
  }
});

t.test('process features match what the kernel version and capabilities allow', async (t) => {
  t.equal(get('kernel-version').available, atLeast(facts.version, '5.10'));
  t.equal(get('ptrace-seize').available, has('CAP_SYS_PTRACE'));
  t.equal(get('ptrace-rseq-config').available, atLeast(facts.version, '5.13') && has('CAP_SYS_PTRACE'));
  t.equal(get('pidfd-open').available, atLeast(facts.version, '5.3'));
  t.equal(get('pidfd-getfd').available, atLeast(facts.version, '5.6') && has('CAP_SYS_PTRACE'));
  t.equal(get('clone3-set-tid').available, atLeast(facts.version, '5.5') && (has('CAP_SYS_ADMIN') || has('CAP_CHECKPOINT_RESTORE')));
  t.equal(get('time-namespace').available, existsSync('/proc/self/ns/time') && has('CAP_SYS_ADMIN'));
  t.equal(get('tcp-repair').available, has('CAP_NET_ADMIN'));
  t.equal(get('tcp-repair-window').available, has('CAP_NET_ADMIN') && atLeast(facts.version, '4.8'));
  t.equal(get('map-files').available, existsSync('/proc/self/map_files'));
  t.equal(get('proc-timers').available, existsSync('/proc/self/timers'));
  t.equal(get('pagemap-scan').available, atLeast(facts.version, '6.7'));
  let kcmpWorks: boolean;
  try {
    kcmpWorks = sameOpenFile(process.pid, 1, process.pid, 1);
  } catch {
    kcmpWorks = false;
  }
  t.equal(get('kcmp').available, kcmpWorks, 'as KCMP_FILE through src/native/fd.ts');
});

t.test('kexec permission follows the sysctls and CAP_SYS_BOOT', async (t) => {
  const sysctl = '/proc/sys/kernel/kexec_load_disabled';
  const built = existsSync(sysctl);
  const disabled = built && readFileSync(sysctl, 'utf8').trim() === '1';
  const expected = built && !disabled && has('CAP_SYS_BOOT');
  t.equal(get('kexec-load').available, expected, get('kexec-load').detail);
  t.equal(get('kexec').available, get('kexec-load').available || get('kexec-file-load').available);
  if (!built) t.match(get('kexec-load').detail, /ENOSYS/);
});

t.test('cgroup2 and nft are reported as the system has them', async (t) => {
  const mounted = readFileSync('/proc/self/mountinfo', 'utf8').split('\n').some((l) => l.includes(' - cgroup2 '));
  t.equal(get('cgroup2').available, mounted);
  const nft = spawnSync('nft', ['list', 'tables']);
  t.equal(get('nft').available, nft.status === 0, get('nft').detail);
});

t.test('the vDSO layout lists this kernel’s special mappings in order', async (t) => {
  const names = readFileSync('/proc/self/maps', 'utf8')
    .split('\n')
    .map((l) => l.slice(73).trim())
    .filter((n) => n.startsWith('[') && n !== '[heap]' && !n.startsWith('[stack') && !n.startsWith('[anon'));
  t.same(facts.specialMappings.map((m) => m.name), names);
  t.ok(names.includes('[vdso]'));
  if (facts.arch === 'x86_64') t.equal(names.includes('[vvar_vclock]'), atLeast(facts.version, '6.13'), 'vvar split since 6.13');
  t.ok(facts.specialMappings.every((m) => m.size > 0 && m.size % facts.pageSize === 0));
});

t.test('missingFor lists exactly the unavailable features a verb needs', async (t) => {
  for (const need of ['dump', 'restore', 'prepare'] as const) {
    t.same(missingFor(facts, need).map((f) => f.name), facts.features.filter((f) => f.neededFor.includes(need) && !f.available).map((f) => f.name));
  }
});

t.test('release parsing and comparison', async (t) => {
  t.same(parseRelease('6.18.44-fc-v669'), { major: 6, minor: 18, patch: 44 });
  t.same(parseRelease('5.10.0-30-amd64'), { major: 5, minor: 10, patch: 0 });
  t.same(parseRelease('7.0-rc1'), { major: 7, minor: 0, patch: 0 });
  t.throws(() => parseRelease('linux'));
  t.equal(compareVersions('5.10', '5.10.0'), 0);
  t.ok(compareVersions('5.9.9', '5.10') < 0);
  t.ok(atLeast('6.1.0-13-amd64', '5.10'));
  t.notOk(atLeast('5.4.0', '5.10'));
});
