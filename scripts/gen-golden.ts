// Writes the golden example images of format v1 (test/golden/v1/*.himg) with fixed values,
// so the same sources always give the same bytes. Usage: node dist/scripts/gen-golden.js [DIR]
import { mkdirSync } from 'node:fs';
import { join, resolve } from 'node:path';
import { fileURLToPath } from 'node:url';
import { ImageWriter, REGISTER_NAMES, type HeaderFields, type ImageRecordV1, type Registers, type Siginfo } from '../src/format/index.js';

const PAGE = 4096;

export const GOLDEN_HEADER: HeaderFields = {
  minKernel: '5.10',
  sourceKernel: '6.1.0-28-cloud-amd64',
  arch: 'x86_64',
  pageSize: PAGE,
  tool: { name: 'handoff', version: '0.1.0' },
  created: '2026-01-01T00:00:00Z',
  hostname: 'golden',
  features: [
    { name: 'time-namespace', minKernel: '5.6' },
    { name: 'clone3-set-tid', minKernel: '5.5' },
    { name: 'tcp-repair-window', minKernel: '4.8' },
  ],
};

/** Deterministic bytes: a simple linear congruential sequence from `seed`. */
function pattern(length: number, seed: number): Buffer {
  const b = Buffer.allocUnsafe(length);
  let x = seed >>> 0;
  for (let i = 0; i < length; i++) {
    x = (Math.imul(x, 1103515245) + 12345) >>> 0;
    b[i] = x >>> 24;
  }
  return b;
}

function siginfo(signo: number, code: number): Siginfo {
  const raw = Buffer.alloc(128);
  raw.writeInt32LE(signo, 0);
  raw.writeInt32LE(0, 4);
  raw.writeInt32LE(code, 8);
  return { signo, code, errno: 0, raw };
}

function registers(tid: number): Registers {
  const regs = {} as Registers;
  REGISTER_NAMES.forEach((name, i) => (regs[name] = BigInt(tid) * 0x1000n + BigInt(i)));
  regs.rip = 0x55555555a123n;
  regs.rsp = 0x7ffffffde000n;
  regs.eflags = 0x246n;
  regs.cs = 0x33n;
  regs.ss = 0x2bn;
  regs.orig_rax = 0xffffffffffffffffn; // -1 as u64: not in a syscall
  regs.fs_base = 0x7ffff7d8a740n;
  return regs;
}

const PID = 4242;
const CHILD = 4243;
const BASE = 0x555555554000;

/** Every record kind, referencing each other consistently. */
export function fullRecords(): ImageRecordV1[] {
  const areas: ImageRecordV1[] = [
    { kind: 'memory-area', pid: PID, start: BASE, end: BASE + 2 * PAGE, prot: { read: true, write: false, exec: true }, shared: false, type: 'file', path: '/usr/bin/golden', fileOffset: 0, device: { major: 254, minor: 1 }, inode: 131090, vmFlags: ['rd', 'ex', 'mr', 'mw', 'me'] },
    { kind: 'memory-area', pid: PID, start: BASE + 2 * PAGE, end: BASE + 6 * PAGE, prot: { read: true, write: true, exec: false }, shared: false, type: 'heap', vmFlags: ['rd', 'wr', 'mr', 'mw', 'me', 'ac'] },
    { kind: 'memory-area', pid: PID, start: 0x7ffff7ff0000, end: 0x7ffff7ff2000, prot: { read: true, write: true, exec: false }, shared: true, type: 'memfd', path: '/memfd:golden (deleted)', fileOffset: 0, fileId: 3, vmFlags: ['rd', 'wr', 'sh', 'mr', 'mw', 'me', 'ms'] },
    { kind: 'memory-area', pid: PID, start: 0x7ffff7fc1000, end: 0x7ffff7fc5000, prot: { read: true, write: false, exec: false }, shared: false, type: 'vvar', vmFlags: ['rd', 'mr', 'pf', 'io', 'de', 'dd'] },
    { kind: 'memory-area', pid: PID, start: 0x7ffff7fc5000, end: 0x7ffff7fc7000, prot: { read: true, write: false, exec: true }, shared: false, type: 'vdso', vmFlags: ['rd', 'ex', 'mr', 'mw', 'me', 'de'] },
    { kind: 'memory-area', pid: PID, start: 0x7ffffffde000, end: 0x7ffffffff000, prot: { read: true, write: true, exec: false }, shared: false, type: 'stack', vmFlags: ['rd', 'wr', 'mr', 'mw', 'me', 'gd', 'ac'] },
    // The vsyscall page sits above 2^53; page-aligned addresses there are still exact doubles.
    { kind: 'memory-area', pid: PID, start: 0xffffffffff600000, end: 0xffffffffff601000, prot: { read: false, write: false, exec: true }, shared: false, type: 'vsyscall', vmFlags: ['ex'] },
    { kind: 'memory-area', pid: CHILD, start: 0x7f0000000000, end: 0x7f0000001000, prot: { read: true, write: true, exec: false }, shared: false, type: 'anonymous', vmFlags: ['rd', 'wr', 'mr', 'mw', 'me', 'ac', 'wf'] },
  ];
  const mm = {
    startCode: BASE, endCode: BASE + 2 * PAGE, startData: BASE + 2 * PAGE, endData: BASE + 3 * PAGE, startBrk: BASE + 3 * PAGE, brk: BASE + 6 * PAGE,
    startStack: 0x7fffffffe000, argStart: 0x7fffffffe100, argEnd: 0x7fffffffe120, envStart: 0x7fffffffe120, envEnd: 0x7fffffffefe0,
    auxv: pattern(16 * 20, 7), exeFile: '/usr/bin/golden',
  };
  const threadBase = (tid: number, syscall?: { nr: number; restart: 'restart' | 'eintr' | 'none' }): ImageRecordV1 => ({
    kind: 'thread', pid: PID, tid, comm: tid === PID ? 'golden' : 'worker', regs: registers(tid),
    xsave: { xfeatures: 0x2e7n, data: pattern(2696, tid) }, sigmask: 1n << 9n, // SIGUSR1 (10) blocked
    sigaltstack: { sp: 0, size: 0, flags: 2 }, // SS_DISABLE
    ...(tid === PID ? { rseq: { addr: 0x7ffff7d8ae00, len: 32, sig: 0x53053053 } } : {}),
    robustList: { head: 0x7ffff7d8aa20, len: 24 }, clearTid: 0x7ffff7d8aa10,
    pendingSignals: tid === PID ? [] : [siginfo(12, -6)], // SIGUSR2 from tgkill (SI_TKILL)
    ...(syscall ? { syscall } : {}),
  } as ImageRecordV1);
  return [
    { kind: 'clocks', monotonic: { sec: 86400, nsec: 123456789 }, boottime: { sec: 86460, nsec: 5 }, realtime: { sec: 1767225600, nsec: 0 } },
    {
      kind: 'process', pid: PID, ppid: 1, pgid: PID, sid: PID, comm: 'golden', state: 'alive', exe: '/usr/bin/golden', cwd: '/srv', root: '/', umask: 0o022,
      personality: 0, cmdline: ['golden', '--serve'],
      rlimits: [{ resource: 'RLIMIT_NOFILE', soft: 1024, hard: 524288 }, { resource: 'RLIMIT_STACK', soft: 8388608, hard: 'unlimited' }, { resource: 'RLIMIT_CORE', soft: 0, hard: 'unlimited' }],
      mm,
    },
    { kind: 'process', pid: CHILD, ppid: PID, pgid: PID, sid: PID, comm: 'child', state: 'alive', exe: '/usr/bin/golden', cwd: '/srv', root: '/', umask: 0o022, personality: 0, cmdline: ['golden', '--child'], rlimits: [], mm: { ...mm, auxv: pattern(32, 8) } },
    { kind: 'process', pid: 4244, ppid: PID, pgid: PID, sid: PID, comm: 'reaped-later', state: 'zombie', exitStatus: 256, exe: '', cwd: '/', root: '/', umask: 0o022, personality: 0, cmdline: [], rlimits: [] },
    {
      kind: 'credentials', pid: PID, uid: [1000, 1000, 1000, 1000], gid: [1000, 1000, 1000, 1000], groups: [4, 27], capInheritable: 0n, capPermitted: 0n, capEffective: 0n,
      capBounding: 0x1ffffffffffn, capAmbient: 0n, securebits: 0, noNewPrivs: true,
    },
    threadBase(PID, { nr: 232, restart: 'restart' }), // epoll_wait
    threadBase(PID + 100),
    { kind: 'thread', pid: CHILD, tid: CHILD, comm: 'child', regs: registers(CHILD), xsave: { xfeatures: 0x3n, data: pattern(576, CHILD) }, sigmask: 0n, sigaltstack: { sp: 0x7f0000000000, size: 8192, flags: 0 }, robustList: { head: 0, len: 24 }, clearTid: 0, pendingSignals: [], syscall: { nr: 35, restart: 'eintr' } },
    ...areas,
    { kind: 'pages', pid: PID, addr: BASE + 2 * PAGE, count: 2, data: pattern(2 * PAGE, 1) },
    { kind: 'pages', pid: PID, addr: BASE + 5 * PAGE, count: 1, data: pattern(PAGE, 2) },
    { kind: 'pages', pid: PID, addr: 0x7fffffffe000, count: 1, data: pattern(PAGE, 3) },
    { kind: 'pages', pid: CHILD, addr: 0x7f0000000000, count: 1, data: Buffer.alloc(PAGE, 0x5a) },
    { kind: 'file', id: 1, type: 'regular', path: '/var/log/golden.log', flags: 0o102001, mode: 0o100644, offset: 8192, size: 8192 },
    { kind: 'file', id: 2, type: 'deleted', path: '/tmp/scratch (deleted)', flags: 0o100002, mode: 0o100600, offset: 5, size: 11, contents: Buffer.from('hello world') },
    { kind: 'file', id: 3, type: 'memfd', path: '/memfd:golden (deleted)', flags: 0o100002, mode: 0o100777, offset: 0, size: 2 * PAGE, contents: pattern(2 * PAGE, 4) },
    { kind: 'file', id: 4, type: 'chardev', path: '/dev/null', flags: 0o100002, mode: 0o20666, offset: 0, rdev: { major: 1, minor: 3 } },
    { kind: 'pipe', id: 10, inode: 55123, capacity: 65536, data: Buffer.from('queued in the pipe\n') },
    { kind: 'pipe-end', id: 11, pipe: 10, end: 'read', flags: 0o4000 },
    { kind: 'pipe-end', id: 12, pipe: 10, end: 'write', flags: 0 },
    {
      kind: 'tcp', id: 20, family: 'inet', state: 'ESTABLISHED', local: { address: '127.0.0.1', port: 6379 }, remote: { address: '127.0.0.1', port: 51234 },
      options: { nodelay: true, keepalive: true, keepIdle: 60, keepIntvl: 10, keepCnt: 5, reuseAddr: true, reusePort: false, sndBuf: 2626560, rcvBuf: 131072, linger: { onoff: false, seconds: 0 } },
      repair: {
        sendSeq: 3000000000, recvSeq: 123456, sendQueue: Buffer.from('+OK\r\n'), recvQueue: Buffer.from('*1\r\n$4\r\nPING\r\n'), unsentBytes: 0, mss: 65483, sndWscale: 7, rcvWscale: 7,
        sackOk: true, timestamps: true, tsOffset: 12345678, window: { sndWl1: 123456, sndWnd: 65536, maxWindow: 65536, rcvWnd: 65483, rcvWup: 123456 },
      },
      flags: 0o4002,
      shutdown: 1,
    },
    { kind: 'tcp', id: 21, family: 'inet6', state: 'LISTEN', local: { address: '::', port: 6379 }, remote: { address: '::', port: 0 }, options: { reuseAddr: true }, backlog: 511, flags: 0o4002 },
    { kind: 'udp', id: 22, family: 'inet', local: { address: '0.0.0.0', port: 5353 }, options: { reuseAddr: true, rcvBuf: 212992 }, flags: 2 },
    { kind: 'udp', id: 23, family: 'inet6', local: { address: '::1', port: 40000 }, remote: { address: '::1', port: 53 }, options: {}, flags: 2 },
    { kind: 'unix', id: 30, type: 'stream', address: { path: '/run/golden.sock' }, state: 'listening', backlog: 128, queue: [], flags: 2, shutdown: 0 },
    { kind: 'unix', id: 31, type: 'stream', peer: 32, state: 'connected', queue: [{ data: Buffer.from('fd attached'), fds: [11] }], flags: 2, shutdown: 0 },
    { kind: 'unix', id: 32, type: 'stream', peer: 31, state: 'connected', queue: [], flags: 2, shutdown: 2 },
    { kind: 'unix', id: 33, type: 'dgram', address: { abstract: Buffer.from('golden-abstract') }, state: 'unconnected', queue: [{ data: Buffer.from('datagram'), fds: [] }], flags: 2, shutdown: 0 },
    { kind: 'epoll', id: 40, flags: 0o2000000, interest: [{ fd: 5, events: 1, data: 5n }, { fd: 7, events: 0x80000005, data: 0xdeadbeefcafebaben }] },
    { kind: 'eventfd', id: 41, count: 3n, semaphore: false, flags: 0o4002 },
    { kind: 'timerfd', id: 42, clock: 1, flags: 0o4002, intervalNs: 1000000000, valueNs: 250000000, settimeFlags: 0 },
    { kind: 'signalfd', id: 43, mask: (1n << 0n) | (1n << 14n), flags: 0o4002 }, // SIGHUP, SIGTERM
    { kind: 'inotify', id: 44, flags: 0o4000, watches: [{ wd: 1, path: '/etc/golden', mask: 0x2 | 0x100 }] },
    {
      kind: 'pty', id: 47, index: 3, termios: pattern(44, 45), winsize: { rows: 24, cols: 80, xpixel: 0, ypixel: 0 }, packet: false, locked: false, exclusive: false,
      input: [Buffer.from('ls -l\n')], inputPartial: Buffer.from('echo hel'), output: Buffer.from('$ '), session: CHILD, foreground: CHILD, controlling: [CHILD],
    },
    { kind: 'tty', id: 45, type: 'pty-master', index: 3, pty: 47, path: '/dev/ptmx', flags: 2 },
    { kind: 'tty', id: 46, type: 'pty-slave', index: 3, pty: 47, path: '/dev/pts/3', flags: 2 },
    ...[[0, 4], [1, 1], [2, 1], [3, 20], [4, 11], [5, 40], [6, 41], [7, 42], [8, 43], [9, 44], [10, 12], [11, 21], [12, 22], [13, 30], [14, 31], [15, 33], [16, 45], [17, 46], [18, 2], [19, 3], [20, 23]].map(
      ([fd, object]) => ({ kind: 'fd', pid: PID, fd: fd!, object: object!, cloexec: fd! > 2 }) as ImageRecordV1,
    ),
    { kind: 'fd', pid: CHILD, fd: 0, object: 32, cloexec: false },
    { kind: 'fd', pid: CHILD, fd: 1, object: 1, cloexec: false },
    {
      kind: 'signal-actions', pid: PID,
      actions: [
        { signal: 1, handler: 1n, flags: 0, restorer: 0n, mask: 0n },
        { signal: 13, handler: 1n, flags: 0x04000000, restorer: 0x7ffff7dde050n, mask: 0n },
        { signal: 15, handler: 0x55555555b000n, flags: 0x14000000, restorer: 0x7ffff7dde050n, mask: 1n << 14n },
      ],
    },
    { kind: 'signals-pending', pid: PID, signals: [siginfo(17, 1)] }, // SIGCHLD, CLD_EXITED
    { kind: 'itimers', pid: PID, real: { intervalUs: 500000, valueUs: 120000 }, virtual: { intervalUs: 0, valueUs: 0 }, prof: { intervalUs: 0, valueUs: 0 } },
    { kind: 'posix-timer', pid: PID, timerId: 0, clock: 1, notify: { mechanism: 'thread', signal: 34, value: 0x7ffff7d8b000n, tid: PID + 100 }, intervalNs: 0, valueNs: 999000000, overrun: 0 },
    { kind: 'netconfig', optional: true, links: [{ ifindex: 1, ifname: 'lo', flags: ['LOOPBACK', 'UP'], mtu: 65536 }], addresses: [{ ifname: 'lo', addr_info: [{ family: 'inet', local: '127.0.0.1', prefixlen: 8 }] }], routes: [], nftables: { nftables: [{ metainfo: { version: '1.0.6', json_schema_version: 1 } }] } },
  ];
}

function write(path: string, records: readonly object[]): void {
  const w = ImageWriter.create(path, GOLDEN_HEADER);
  try {
    for (const r of records) w.record(r as ImageRecordV1);
    w.finish();
  } catch (err) {
    w.abort();
    throw err;
  }
}

/** Writes every golden image into `dir`; returns their file names. */
export function writeGoldenImages(dir: string): string[] {
  mkdirSync(dir, { recursive: true });
  write(join(dir, 'full.himg'), fullRecords());
  write(join(dir, 'minimal.himg'), fullRecords().filter((r) => r.kind === 'process' && r.pid === PID));
  // Forward compatibility: unknown keys everywhere and an unknown record kind marked optional.
  write(join(dir, 'extension.himg'), [
    { ...fullRecords().find((r) => r.kind === 'process')!, futureKey: 'ignored', futureMap: { a: [1, 2] } },
    { kind: 'future-record', optional: true, anything: [1, 'two', { three: 3 }] },
    { kind: 'clocks', monotonic: { sec: 1, nsec: 2, picos: 3 }, boottime: { sec: 1, nsec: 2 }, realtime: { sec: 1, nsec: 2 }, tai: { sec: 37, nsec: 0 } },
  ]);
  return ['full.himg', 'minimal.himg', 'extension.himg'];
}

if (process.argv[1] && resolve(process.argv[1]) === fileURLToPath(import.meta.url)) {
  const dir = resolve(process.argv[2] ?? join(fileURLToPath(new URL('.', import.meta.url)), '..', '..', 'test', 'golden', 'v1'));
  for (const name of writeGoldenImages(dir)) process.stdout.write(`${join(dir, name)}\n`);
}
