// Typed bindings for native/src/fdkinds.c: the syscalls behind the non-socket fd kinds
// (files, pipes, memfd, eventfd, timerfd, signalfd, inotify, epoll). Every function throws
// SyscallError on failure; u64 values are bigint and cross into C as 8-byte buffers.
import { SyscallError } from '../errors.js';
import { bind, T } from './lib.js';

const raw = {
  open: bind('hnd_open', T.i32, [T.string, T.i32, T.i32]),
  fcntl: bind('hnd_fcntl', T.i32, [T.i32, T.i32, T.i32]),
  lseek: bind('hnd_lseek', T.i64, [T.i32, T.i64, T.i32]),
  ftruncate: bind('hnd_ftruncate', T.i32, [T.i32, T.i64]),
  fchmod: bind('hnd_fchmod', T.i32, [T.i32, T.i32]),
  dup: bind('hnd_dup', T.i32, [T.i32]),
  dup3: bind('hnd_dup3', T.i32, [T.i32, T.i32, T.i32]),
  unlink: bind('hnd_unlink', T.i32, [T.string]),
  preadAll: bind('hnd_pread_all', T.i64, [T.i32, T.u8array, T.i64, T.i64]),
  pwriteAll: bind('hnd_pwrite_all', T.i64, [T.i32, T.u8array, T.i64, T.i64]),
  read: bind('hnd_read', T.i64, [T.i32, T.u8array, T.i64]),
  write: bind('hnd_write', T.i64, [T.i32, T.u8array, T.i64]),
  fionread: bind('hnd_fionread', T.i32, [T.i32]),
  pipe2: bind('hnd_pipe2', T.i32, [T.u8array, T.i32]),
  tee: bind('hnd_tee', T.i64, [T.i32, T.i32, T.i64, T.i32]),
  memfdCreate: bind('hnd_memfd_create', T.i32, [T.string, T.i32]),
  eventfd: bind('hnd_eventfd', T.i32, [T.i32]),
  eventfdAdd: bind('hnd_eventfd_add', T.i32, [T.i32, T.u8array]),
  eventfdTake: bind('hnd_eventfd_take', T.i32, [T.i32, T.u8array]),
  timerfdCreate: bind('hnd_timerfd_create', T.i32, [T.i32, T.i32]),
  timerfdSettime: bind('hnd_timerfd_settime', T.i32, [T.i32, T.i32, T.i64, T.i64, T.i64, T.i64]),
  timerfdGettime: bind('hnd_timerfd_gettime', T.i32, [T.i32, T.u8array]),
  timerfdSetTicks: bind('hnd_timerfd_set_ticks', T.i32, [T.i32, T.u8array]),
  clockGettime: bind('hnd_clock_gettime', T.i32, [T.i32, T.u8array]),
  signalfd: bind('hnd_signalfd', T.i32, [T.i32, T.u8array, T.i32]),
  sigprocmask: bind('hnd_sigprocmask', T.i32, [T.i32, T.u8array]),
  inotifyInit1: bind('hnd_inotify_init1', T.i32, [T.i32]),
  inotifyAddWatch: bind('hnd_inotify_add_watch', T.i32, [T.i32, T.string, T.i32]),
  inotifyRmWatch: bind('hnd_inotify_rm_watch', T.i32, [T.i32, T.i32]),
  openByHandleAt: bind('hnd_open_by_handle_at', T.i32, [T.i32, T.i32, T.u8array, T.i32, T.i32]),
  epollCreate1: bind('hnd_epoll_create1', T.i32, [T.i32]),
  epollCtl: bind('hnd_epoll_ctl', T.i32, [T.i32, T.i32, T.i32, T.i32, T.u8array]),
  epollWait: bind('hnd_epoll_wait', T.i32, [T.i32, T.u8array, T.i32, T.i32]),
  kcmpEpollTfd: bind('hnd_kcmp_epoll_tfd', T.i32, [T.i32, T.i32, T.i32, T.i32]),
};

function check(name: string, r: number, details: Record<string, unknown> = {}): number {
  if (r < 0) throw new SyscallError(name, -r, details);
  return r;
}

function u64(v: bigint): Buffer {
  const b = Buffer.alloc(8);
  b.writeBigUInt64LE(BigInt.asUintN(64, v));
  return b;
}

/** open(2) flags and fcntl commands used by the fd-kind modules (x86-64 / generic values). */
export const O = {
  RDONLY: 0o0, WRONLY: 0o1, RDWR: 0o2, ACCMODE: 0o3, CREAT: 0o100, EXCL: 0o200, NOCTTY: 0o400, TRUNC: 0o1000,
  APPEND: 0o2000, NONBLOCK: 0o4000, DSYNC: 0o10000, ASYNC: 0o20000, DIRECT: 0o40000, LARGEFILE: 0o100000,
  DIRECTORY: 0o200000, NOFOLLOW: 0o400000, NOATIME: 0o1000000, CLOEXEC: 0o2000000, SYNC: 0o4010000,
  PATH: 0o10000000, TMPFILE: 0o20200000,
} as const;

export const F = {
  GETFL: 3, SETFL: 4, SETPIPE_SZ: 1031, GETPIPE_SZ: 1032, ADD_SEALS: 1033, GET_SEALS: 1034,
} as const;

export const MFD = { CLOEXEC: 1, ALLOW_SEALING: 2, HUGETLB: 4 } as const;

export function open(path: string, flags: number, mode = 0o600): number {
  return check('open', raw.open(path, flags, mode), { path });
}
export function fcntl(fd: number, cmd: number, arg = 0): number {
  return check('fcntl', raw.fcntl(fd, cmd, arg), { fd, cmd });
}
export function lseek(fd: number, offset: number, whence = 0): number {
  return check('lseek', raw.lseek(fd, offset, whence), { fd });
}
export function ftruncate(fd: number, size: number): void {
  check('ftruncate', raw.ftruncate(fd, size), { fd });
}
export function fchmod(fd: number, mode: number): void {
  check('fchmod', raw.fchmod(fd, mode), { fd });
}
/** A close-on-exec duplicate sharing the open file description. */
export function dup(fd: number): number {
  return check('dup', raw.dup(fd), { fd });
}
export function dup3(oldfd: number, newfd: number, flags = 0): number {
  return check('dup3', raw.dup3(oldfd, newfd, flags), { fd: oldfd, newfd });
}
export function unlink(path: string): void {
  check('unlink', raw.unlink(path), { path });
}
/** Reads up to `length` bytes at `offset` (fewer only at end of file). */
export function preadAll(fd: number, length: number, offset: number): Buffer {
  const buf = Buffer.alloc(length);
  const n = length === 0 ? 0 : check('pread', raw.preadAll(fd, buf, length, offset), { fd });
  return n === length ? buf : buf.subarray(0, n);
}
export function pwriteAll(fd: number, data: Uint8Array, offset: number): void {
  if (data.length === 0) return;
  check('pwrite', raw.pwriteAll(fd, Buffer.from(data.buffer, data.byteOffset, data.length), data.length, offset), { fd });
}
export function read(fd: number, length: number): Buffer {
  const buf = Buffer.alloc(length);
  const n = check('read', raw.read(fd, buf, length), { fd });
  return buf.subarray(0, n);
}
export function write(fd: number, data: Uint8Array): number {
  if (data.length === 0) return 0;
  return check('write', raw.write(fd, Buffer.from(data.buffer, data.byteOffset, data.length), data.length), { fd });
}
/** Bytes queued in a pipe/FIFO (or an inotify queue). */
export function fionread(fd: number): number {
  return check('ioctl(FIONREAD)', raw.fionread(fd), { fd });
}
/** [readEnd, writeEnd]. */
export function pipe2(flags: number): [number, number] {
  const out = Buffer.alloc(8);
  check('pipe2', raw.pipe2(out, flags));
  return [out.readInt32LE(0), out.readInt32LE(4)];
}
export const SPLICE_F_NONBLOCK = 2;
export function tee(fdIn: number, fdOut: number, length: number, flags: number): number {
  return check('tee', raw.tee(fdIn, fdOut, length, flags), { fd: fdIn });
}
export function memfdCreate(name: string, flags: number): number {
  return check('memfd_create', raw.memfdCreate(name, flags), { name });
}
export function eventfd(flags: number): number {
  return check('eventfd', raw.eventfd(flags));
}
export function eventfdAdd(fd: number, value: bigint): void {
  check('write(eventfd)', raw.eventfdAdd(fd, u64(value)), { fd });
}
export function eventfdTake(fd: number): bigint {
  const out = Buffer.alloc(8);
  check('read(eventfd)', raw.eventfdTake(fd, out), { fd });
  return out.readBigUInt64LE(0);
}
export function timerfdCreate(clockid: number, flags: number): number {
  return check('timerfd_create', raw.timerfdCreate(clockid, flags), { clockid });
}
const NS = 1_000_000_000n;
/** Arms (or disarms, with value 0) a timerfd; times in nanoseconds. */
export function timerfdSettime(fd: number, flags: number, valueNs: bigint, intervalNs: bigint): void {
  check('timerfd_settime', raw.timerfdSettime(fd, flags, Number(valueNs / NS), Number(valueNs % NS), Number(intervalNs / NS), Number(intervalNs % NS)), { fd });
}
export function timerfdGettime(fd: number): { valueNs: bigint; intervalNs: bigint } {
  const out = Buffer.alloc(32);
  check('timerfd_gettime', raw.timerfdGettime(fd, out), { fd });
  return {
    valueNs: out.readBigInt64LE(0) * NS + out.readBigInt64LE(8),
    intervalNs: out.readBigInt64LE(16) * NS + out.readBigInt64LE(24),
  };
}
export function timerfdSetTicks(fd: number, ticks: bigint): void {
  check('ioctl(TFD_IOC_SET_TICKS)', raw.timerfdSetTicks(fd, u64(ticks)), { fd });
}
export function clockGettimeNs(clockid: number): bigint {
  const out = Buffer.alloc(16);
  check('clock_gettime', raw.clockGettime(clockid, out), { clockid });
  return out.readBigInt64LE(0) * NS + out.readBigInt64LE(8);
}
/** mask: bit (signo - 1) per signal. fd -1 creates a new signalfd. */
export function signalfd(fd: number, mask: bigint, flags: number): number {
  return check('signalfd', raw.signalfd(fd, u64(mask), flags), { fd });
}
export const SIG = { BLOCK: 0, UNBLOCK: 1, SETMASK: 2 } as const;
export function sigprocmask(how: number, mask: bigint): void {
  check('rt_sigprocmask', raw.sigprocmask(how, u64(mask)));
}
export function inotifyInit1(flags: number): number {
  return check('inotify_init1', raw.inotifyInit1(flags));
}
export function inotifyAddWatch(fd: number, path: string, mask: number): number {
  return check('inotify_add_watch', raw.inotifyAddWatch(fd, path, mask | 0), { fd, path });
}
export function inotifyRmWatch(fd: number, wd: number): void {
  check('inotify_rm_watch', raw.inotifyRmWatch(fd, wd), { fd, wd });
}
export function openByHandleAt(mountFd: number, handleType: number, handle: Buffer, flags: number): number {
  return check('open_by_handle_at', raw.openByHandleAt(mountFd, handleType, handle, handle.length, flags), { fd: mountFd });
}
export function epollCreate1(flags: number): number {
  return check('epoll_create1', raw.epollCreate1(flags));
}
export const EPOLL_CTL = { ADD: 1, DEL: 2, MOD: 3 } as const;
export function epollCtl(epfd: number, op: number, fd: number, events: number, data: bigint): void {
  check('epoll_ctl', raw.epollCtl(epfd, op, fd, events | 0, u64(data)), { fd: epfd, target: fd });
}
export function epollWait(epfd: number, max: number, timeoutMs: number): { events: number; data: bigint }[] {
  const out = Buffer.alloc(12 * Math.min(max, 64));
  const n = check('epoll_wait', raw.epollWait(epfd, out, max, timeoutMs), { fd: epfd });
  const result: { events: number; data: bigint }[] = [];
  for (let i = 0; i < n; i++) result.push({ events: out.readUInt32LE(i * 12), data: out.readBigUInt64LE(i * 12 + 4) });
  return result;
}
/** True when fd `tfd` of `pid` is the file pid's epoll `epfd` registered under that number. */
export function epollTargetIsFd(pid: number, epfd: number, tfd: number, toff = 0): boolean {
  const r = raw.kcmpEpollTfd(pid, epfd, tfd, toff);
  if (r === -9 /* EBADF: no such fd */ || r === -2 /* ENOENT: no such entry */) return false;
  return check('kcmp(KCMP_EPOLL_TFD)', r, { pid, fd: epfd, tfd }) === 0;
}
