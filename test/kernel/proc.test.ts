// The /proc parsers against real processes: a C target with known state (threads,
// children, signals, descriptors, mappings, limits, timers) and plain `sleep`.
import t from 'tap';
import { execFileSync, spawn, type ChildProcessWithoutNullStreams } from 'node:child_process';
import { once } from 'node:events';
import { mkdtempSync, readlinkSync, rmSync, statSync } from 'node:fs';
import { tmpdir } from 'node:os';
import { join } from 'node:path';
import { createInterface } from 'node:readline';
import { fileURLToPath } from 'node:url';
import { ProcessError } from '../../src/errors.js';
import * as proc from '../../src/kernel/proc.js';

const dir = mkdtempSync(join(tmpdir(), 'handoff-proc-'));
t.teardown(() => rmSync(dir, { recursive: true, force: true }));
const binary = join(dir, 'proc-target');
execFileSync('gcc', ['-O1', '-Wall', '-pthread', '-o', binary, fileURLToPath(new URL('./targets/proc-target.c', import.meta.url))]);

async function start(): Promise<{ child: ChildProcessWithoutNullStreams; v: Record<string, number> }> {
  const child = spawn(binary, [dir], { cwd: dir });
  const [line] = (await once(createInterface({ input: child.stdout }), 'line')) as [string];
  const v: Record<string, number> = {};
  for (const kv of line.split(' ').slice(1)) {
    const [k, val] = kv.split('=');
    v[k!] = Number(val);
  }
  return { child, v };
}

const { child, v } = await start();
t.teardown(() => child.stdin.end());
const pid = v.pid!;

function devParts(dev: number): { major: number; minor: number } {
  return { major: ((dev >> 8) & 0xfff) | (Math.floor(dev / 2 ** 32) & ~0xfff), minor: (dev & 0xff) | ((dev >> 12) & ~0xff & 0xfffff) };
}

t.test('threads and children of every thread are listed', async (t) => {
  t.same(proc.listTasks(pid), [pid, v.tid].sort((a, b) => a! - b!));
  t.same(proc.children(pid), [v.child1, v.child2].sort((a, b) => a! - b!), 'includes the child a non-main thread forked');
  t.same(proc.children(v.child1!), []);
});

t.test('stat is parsed from the last parenthesis, so a comm with ") (" survives', async (t) => {
  const st = proc.readStat(pid);
  t.equal(st.pid, pid);
  t.equal(st.comm, 'we) ir (d');
  t.equal(st.state, 'S');
  t.equal(st.ppid, process.pid);
  t.equal(st.numThreads, 2);
  t.ok(st.startCode > 0 && st.startCode < st.endCode, 'code range');
  t.ok(st.argStart > 0 && st.argStart < st.argEnd && st.argEnd <= st.envStart && st.envStart < st.envEnd, 'arg and env ranges');
  t.ok(st.startData > 0 && st.startBrk >= st.endData, 'data and brk');
  t.ok(st.startStack > st.endCode);
  t.equal(st.exitCode, 0);
  t.equal(st.exitSignal, 17, 'SIGCHLD');
  const th = proc.readStat(pid, v.tid);
  t.equal(th.pid, v.tid, 'a thread’s own stat');
  t.equal(th.comm, 'we) ir (d');
});

t.test('status carries ids, umask, signal masks and capabilities', async (t) => {
  const s = proc.readStatus(pid);
  const mine = proc.readStatus(process.pid);
  t.equal(s.name, 'we) ir (d');
  t.equal(s.state, 'S');
  t.equal(s.umask, 0o027);
  t.equal(s.tgid, pid);
  t.equal(s.pid, pid);
  t.equal(s.ppid, process.pid);
  t.equal(s.tracerPid, 0);
  const uid = process.getuid!();
  const gid = process.getgid!();
  t.same(s.uid, [uid, uid, uid, uid]);
  t.same(s.gid, [gid, gid, gid, gid]);
  t.equal(s.nsPid[s.nsPid.length - 1], pid);
  t.equal(s.threads, 2);
  const bit = (sig: number) => 1n << BigInt(sig - 1);
  t.equal(s.sigBlk, bit(10) | bit(12), 'SIGUSR1 and SIGUSR2 blocked');
  t.equal(s.sigPnd, bit(10), 'raise(SIGUSR1) pends on the thread');
  t.equal(s.shdPnd, bit(12), 'kill(SIGUSR2) pends on the process');
  t.ok(s.sigIgn & bit(13), 'SIGPIPE ignored');
  t.ok(s.sigCgt & bit(1), 'SIGHUP caught');
  t.equal(typeof s.sigCgt, 'bigint');
  t.equal(s.capEff, mine.capEff);
  t.equal(s.capBnd, mine.capBnd);
  t.equal(s.noNewPrivs, false);
  t.equal(s.seccomp, 0);
  t.equal(s.raw.Name, 'we) ir (d');
  t.equal(proc.readStatus(pid, v.tid).pid, v.tid);
});

t.test('maps: paths with spaces and parentheses, deleted files, special areas', async (t) => {
  const maps = proc.readMaps(pid);
  const mapped = maps.find((m) => m.start === v.mapped)!;
  const file = join(dir, 'mapped file (1)');
  const st = statSync(file);
  t.same(mapped, { start: v.mapped, end: v.mapped! + 8192, prot: { read: true, write: true, exec: false }, shared: false, offset: 0, device: devParts(st.dev), inode: st.ino, path: file, deleted: false });
  const gone = maps.find((m) => m.start === v.gone)!;
  t.equal(gone.path, join(dir, 'gone'));
  t.equal(gone.deleted, true);
  t.equal(gone.shared, true);
  t.same(gone.prot, { read: true, write: false, exec: false });
  const specials = maps.filter((m) => m.special).map((m) => m.special);
  t.ok(specials.includes('[stack]') && specials.includes('[vdso]') && specials.includes('[heap]'), specials.join(' '));
  t.ok(maps.some((m) => m.path === binary && m.prot.exec), 'the executable text');
  const anon = maps.filter((m) => !m.path && !m.special);
  t.ok(anon.every((m) => m.inode === 0 && m.device.major === 0));
  for (let i = 1; i < maps.length; i++) t.ok(maps[i]!.start >= maps[i - 1]!.end, 'ascending, not overlapping');
});

t.test('smaps flags per area', async (t) => {
  const flags = proc.readSmapsFlags(pid);
  t.same(new Set(flags.keys()), new Set(proc.readMaps(pid).map((m) => m.start)), 'one entry per area');
  for (const f of ['rd', 'wr', 'mr', 'mw', 'me']) t.ok(flags.get(v.mapped!)!.includes(f), f);
  t.notOk(flags.get(v.mapped!)!.includes('sh'));
  t.ok(flags.get(v.gone!)!.includes('sh'));
  const smaps = proc.readSmaps(pid);
  t.equal(smaps.get(v.mapped!)!.kernelPageSize, 4096);
});

t.test('fdinfo of eventfd, epoll, timerfd, signalfd, inotify and an O_APPEND file', async (t) => {
  const efd = proc.readFdinfo(pid, v.efd!);
  t.equal(efd.eventfdCount, 7n);
  t.equal(efd.eventfdSemaphore, false);
  const ep = proc.readFdinfo(pid, v.ep!);
  t.equal(ep.epoll!.length, 1);
  t.equal(ep.epoll![0]!.tfd, v.efd);
  t.equal((ep.epoll![0]!.events & 0x80000001) >>> 0, 0x80000001, 'EPOLLIN | EPOLLET');
  t.equal(ep.epoll![0]!.data, 0x1234abcdn);
  t.equal(ep.epoll![0]!.ino, efd.ino);
  const tfd = proc.readFdinfo(pid, v.tfd!);
  t.equal(tfd.timerfd!.clockid, 1);
  t.equal(tfd.timerfd!.ticks, 0n);
  t.equal(tfd.timerfd!.settimeFlags, 0);
  t.same(tfd.timerfd!.interval, { sec: 1, nsec: 500000000 });
  t.ok(tfd.timerfd!.value.sec >= 50 && tfd.timerfd!.value.sec < 100, 'armed for 100 s');
  t.equal(proc.readFdinfo(pid, v.sfd!).sigmask, 1n << 9n);
  const ino = proc.readFdinfo(pid, v.ino!);
  t.equal(ino.inotify!.length, 1);
  t.equal(ino.inotify![0]!.wd, String(v.wd));
  t.equal(parseInt(ino.inotify![0]!.mask!, 16), 0x300, 'IN_CREATE | IN_DELETE');
  t.equal(parseInt(ino.inotify![0]!.ino!, 16), statSync(dir).ino);
  const afd = proc.readFdinfo(pid, v.afd!);
  t.equal(afd.pos, 5);
  t.equal(afd.flags & 0o3, 1, 'O_WRONLY');
  t.ok(afd.flags & 0o2000, 'O_APPEND');
  t.equal(afd.ino, statSync(join(dir, 'appended file')).ino);
  t.ok(proc.readMountinfo(pid).some((m) => m.mountId === afd.mntId), 'mnt_id is a mount of the process');
  const flat = proc.flatFdinfo(afd);
  t.equal(flat.pos, 5);
  t.equal(flat.flags, afd.flags);
  t.equal(flat.mnt_id, String(afd.mntId));
});

t.test('fd list with link targets', async (t) => {
  const fds = new Map(proc.listFds(pid).map((f) => [f.fd, f.link]));
  t.equal(fds.get(v.efd!), 'anon_inode:[eventfd]');
  t.equal(fds.get(v.ep!), 'anon_inode:[eventpoll]');
  t.equal(fds.get(v.tfd!), 'anon_inode:[timerfd]');
  t.equal(fds.get(v.sfd!), 'anon_inode:[signalfd]');
  t.equal(fds.get(v.ino!), 'anon_inode:inotify');
  t.equal(fds.get(v.afd!), join(dir, 'appended file'));
  t.match(fds.get(0)!, /^(pipe|socket):\[\d+\]$/, 'stdin from node: a socketpair');
});

t.test('limits, personality, POSIX timers', async (t) => {
  const limits = proc.readLimits(pid);
  t.equal(Object.keys(limits).length, 16, 'every RLIMIT_*');
  t.same(limits.RLIMIT_NOFILE, { soft: 1000, hard: 2000 });
  t.same(limits.RLIMIT_CORE, { soft: 0, hard: 'unlimited' });
  t.equal(proc.readPersonality(pid), 0x40000, 'ADDR_NO_RANDOMIZE');
  const timers = proc.readTimers(pid).sort((a, b) => a.signal - b.signal);
  t.same(timers.map((x) => ({ ...x, id: 0 })), [
    { id: 0, signal: 1, sigevValue: 0n, notify: 'signal', targetKind: 'tid', target: v.tid, clockId: 0 },
    { id: 0, signal: 14, sigevValue: 0x42n, notify: 'signal', targetKind: 'pid', target: pid, clockId: 1 },
  ]);
});

t.test('auxv, cmdline, cwd, root, exe, namespaces', async (t) => {
  const auxv = proc.readAuxv(pid);
  t.equal(auxv.length % 16, 0);
  const pairs = new Map<bigint, bigint>();
  for (let o = 0; o < auxv.length; o += 16) pairs.set(auxv.readBigUInt64LE(o), auxv.readBigUInt64LE(o + 8));
  t.equal(pairs.get(6n), 4096n, 'AT_PAGESZ');
  t.equal(auxv.readBigUInt64LE(auxv.length - 16), 0n, 'ends with AT_NULL');
  t.same(proc.readCmdline(pid), [binary, dir]);
  t.equal(proc.readCwd(pid), dir);
  t.equal(proc.readRoot(pid), '/');
  t.equal(proc.readExe(pid), binary);
  t.equal(proc.readNamespaces(pid).net, Number(readlinkSync('/proc/self/ns/net').slice(5, -1)));
  t.ok(proc.readEnviron(pid).length > 0);
});

t.test('a plain sleep', async (t) => {
  const sleep = spawn('sleep', ['100']);
  t.teardown(() => sleep.kill('SIGKILL'));
  await once(sleep, 'spawn'); // libuv returns from spawn only once exec succeeded
  const st = proc.readStat(sleep.pid!);
  t.equal(st.comm, 'sleep');
  t.equal(st.ppid, process.pid);
  t.same(proc.readCmdline(sleep.pid!), ['sleep', '100']);
  t.same(proc.listTasks(sleep.pid!), [sleep.pid]);
});

t.test('a vanished process is E_NO_PROCESS naming its pid', async (t) => {
  const gone = spawn('/bin/true');
  await once(gone, 'exit');
  for (const read of [proc.readStat, proc.readStatus, proc.readMaps, proc.listFds, proc.listTasks, proc.children, proc.readLimits, proc.readExe] as Array<(p: number) => unknown>) {
    let caught: unknown;
    try {
      read(gone.pid!);
    } catch (err) {
      caught = err;
    }
    t.ok(caught instanceof ProcessError && caught.code === 'E_NO_PROCESS' && caught.details.pid === gone.pid, read.name);
  }
  let caught: unknown;
  try {
    proc.readFdinfo(pid, 999);
  } catch (err) {
    caught = err;
  }
  t.ok(caught instanceof ProcessError && caught.code === 'E_DUMP', 'a missing fd of a live process is not E_NO_PROCESS');
});

t.test('parsers on edge-case text', async (t) => {
  const st = proc.parseStat('42 (a) (b)) R 1 42 42 0 -1 0 0 0 0 0 0 0 0 0 20 0 1 0 5 0 0 0 1 2 3 0 0 0 0 0 0 0 0 0 17 0 0 0 0 0 0 4 5 6 7 8 9 10 0\n');
  t.equal(st.comm, 'a) (b)');
  t.equal(st.state, 'R');
  t.equal(st.envEnd, 10);
  const [m] = proc.parseMaps('7f0000000000-7f0000001000 r-xp 00001000 fd:01 99                         /x/a (deleted) b (deleted)\n');
  t.equal(m!.path, '/x/a (deleted) b');
  t.equal(m!.deleted, true);
  t.equal(m!.offset, 0x1000);
  t.same(m!.device, { major: 0xfd, minor: 1 });
  const [v] = proc.parseMaps('ffffffffff600000-ffffffffff601000 --xp 00000000 00:00 0                  [vsyscall]');
  t.equal(v!.start, 0xffffffffff600000);
  t.equal(v!.end - v!.start, 4096, 'exact despite being beyond 2^53');
  const limits = proc.parseLimits('Limit                     Soft Limit           Hard Limit           Units     \nMax locked memory         9223372036854775807  unlimited            bytes     \n');
  t.same(limits.RLIMIT_MEMLOCK, { soft: 9223372036854775807n, hard: 'unlimited' });
});
