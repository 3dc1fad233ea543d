// Typed bindings for native/src/tty.c: the terminal ioctls behind src/objects/tty.ts.
// Every function throws SyscallError on failure.
import { SyscallError } from '../errors.js';
import { bind, T } from './lib.js';

const raw = {
  getInt: bind('hnd_tty_get_int', T.i32, [T.i32, T.i32]),
  setInt: bind('hnd_tty_set_int', T.i32, [T.i32, T.i32, T.i32]),
  ioctlArg: bind('hnd_tty_ioctl_arg', T.i32, [T.i32, T.i32, T.i32]),
  getattr: bind('hnd_tty_getattr', T.i32, [T.i32, T.u8array]),
  setattr: bind('hnd_tty_setattr', T.i32, [T.i32, T.u8array]),
  termiosSize: bind('hnd_tty_termios_size', T.i32, []),
  getwinsz: bind('hnd_tty_getwinsz', T.i32, [T.i32, T.u8array]),
  setwinsz: bind('hnd_tty_setwinsz', T.i32, [T.i32, T.u8array]),
  drainMaster: bind('hnd_tty_drain_master', T.i64, [T.i32, T.u8array, T.i64, T.i32, T.u8array, T.i64]),
  sti: bind('hnd_tty_sti', T.i64, [T.i32, T.u8array, T.i64]),
};

/** ioctl request numbers (x86-64, asm-generic/ioctls.h). */
export const TIOC = {
  SCTTY: 0x540e,
  GPGRP: 0x540f,
  SPGRP: 0x5410,
  STI: 0x5412,
  FIONREAD: 0x541b,
  NOTTY: 0x5422,
  PKT: 0x5420,
  GSID: 0x5429,
  EXCL: 0x540c,
  NXCL: 0x540d,
  GPTN: 0x80045430 | 0,
  SPTLCK: 0x40045431,
  GPKT: 0x80045438 | 0,
  GPTLCK: 0x80045439 | 0,
  GEXCL: 0x80045440 | 0,
  GPTPEER: 0x5441,
} as const;

const ENOSPC = 28;

function check(name: string, r: number, details: Record<string, unknown> = {}): number {
  if (r < 0) throw new SyscallError(name, -r, details);
  return r;
}

export function getInt(fd: number, request: number, name: string): number {
  return check(`ioctl(${name})`, raw.getInt(fd, request), { fd });
}
export function setInt(fd: number, request: number, value: number, name: string): void {
  check(`ioctl(${name})`, raw.setInt(fd, request, value), { fd });
}
export function ioctlArg(fd: number, request: number, arg: number, name: string): number {
  return check(`ioctl(${name})`, raw.ioctlArg(fd, request, arg), { fd });
}

/** Size of struct termios2 (44 on x86-64). */
export function termiosSize(): number {
  return raw.termiosSize();
}
/** struct termios2 as TCGETS2 fills it. */
export function getattr(fd: number): Buffer {
  const out = Buffer.alloc(termiosSize());
  check('ioctl(TCGETS2)', raw.getattr(fd, out), { fd });
  return out;
}
export function setattr(fd: number, termios: Uint8Array): void {
  if (termios.length !== termiosSize()) throw new SyscallError('ioctl(TCSETS2)', 22, { fd, size: termios.length });
  check('ioctl(TCSETS2)', raw.setattr(fd, Buffer.from(termios)), { fd });
}

export interface Winsize {
  rows: number;
  cols: number;
  xpixel: number;
  ypixel: number;
}
export function getWinsize(fd: number): Winsize {
  const b = Buffer.alloc(8);
  check('ioctl(TIOCGWINSZ)', raw.getwinsz(fd, b), { fd });
  return { rows: b.readUInt16LE(0), cols: b.readUInt16LE(2), xpixel: b.readUInt16LE(4), ypixel: b.readUInt16LE(6) };
}
export function setWinsize(fd: number, w: Winsize): void {
  const b = Buffer.alloc(8);
  b.writeUInt16LE(w.rows, 0);
  b.writeUInt16LE(w.cols, 2);
  b.writeUInt16LE(w.xpixel, 4);
  b.writeUInt16LE(w.ypixel, 6);
  check('ioctl(TIOCSWINSZ)', raw.setwinsz(fd, b), { fd });
}

/**
 * Everything queued for reading on a pty master (up to `cap` bytes), read without changing the
 * description's flags. `overflow` is true when more was queued: the bytes returned were taken
 * all the same and must be put back.
 */
export function drainMaster(fd: number, packet: boolean, cap: number): { data: Buffer; overflow: boolean } {
  const out = Buffer.alloc(cap);
  const scratch = Buffer.alloc(cap + 1);
  const n = raw.drainMaster(fd, out, cap, packet ? 1 : 0, scratch, scratch.length);
  if (n === -ENOSPC) return { data: out, overflow: true };
  check('read(pty master)', n, { fd });
  return { data: out.subarray(0, n), overflow: false };
}

/** TIOCSTI for every byte; returns how many the terminal took. */
export function sti(fd: number, data: Uint8Array): number {
  if (data.length === 0) return 0;
  return check('ioctl(TIOCSTI)', raw.sti(fd, Buffer.from(data), data.length), { fd });
}
