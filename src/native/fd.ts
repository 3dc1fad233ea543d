// Typed bindings for native/src/fd.c: taking other processes' descriptors.
import { SyscallError } from '../errors.js';
import { bind, T } from './lib.js';

const pidfdOpenRaw = bind('hnd_pidfd_open', T.i32, [T.i32]);
const pidfdGetfdRaw = bind('hnd_pidfd_getfd', T.i32, [T.i32, T.i32]);
const getfdRaw = bind('hnd_getfd', T.i32, [T.i32, T.i32]);
const kcmpFileRaw = bind('hnd_kcmp_file', T.i32, [T.i32, T.i32, T.i32, T.i32]);
const closeRaw = bind('hnd_close', T.i32, [T.i32]);

function check(name: string, r: number, details: Record<string, unknown>): number {
  if (r < 0) throw new SyscallError(name, -r, details);
  return r;
}

export function pidfdOpen(pid: number): number {
  return check('pidfd_open', pidfdOpenRaw(pid), { pid });
}

export function pidfdGetfd(pidfd: number, fd: number): number {
  return check('pidfd_getfd', pidfdGetfdRaw(pidfd, fd), { fd });
}

/** A duplicate, in this process, of descriptor `fd` of process `pid`. Caller closes it. */
export function takeFd(pid: number, fd: number): number {
  return check('pidfd_getfd', getfdRaw(pid, fd), { pid, fd });
}

/** True when the two descriptors refer to one open file description. */
export function sameOpenFile(pid1: number, fd1: number, pid2: number, fd2: number): boolean {
  return check('kcmp', kcmpFileRaw(pid1, pid2, fd1, fd2), { pid: pid1, fd: fd1 }) === 0;
}

export function closeFd(fd: number): void {
  check('close', closeRaw(fd), { fd });
}

const bufferAddressRaw = bind('hnd_buffer_address', T.i64, [T.u8array]);

/** The address of the first byte of `buf` in this process (user addresses fit a double). */
export function bufferAddress(buf: Uint8Array): number {
  const view = Buffer.isBuffer(buf) ? buf : Buffer.from(buf.buffer, buf.byteOffset, buf.byteLength);
  return Number(bufferAddressRaw(view));
}

/** Bytes between the last `align` boundary (a power of two) and the first byte of `buf`. */
export function misalignment(buf: Uint8Array, align: number): number {
  return bufferAddress(buf) % align;
}

/**
 * A buffer of `size` bytes whose first byte is on an `align` boundary (a power of two), as
 * O_DIRECT reads and writes need. Touched: its pages are faulted in now, not when first used.
 */
export function alignedBuffer(size: number, align: number): Buffer {
  const raw = Buffer.allocUnsafeSlow(size + align).fill(0);
  const skip = (align - misalignment(raw, align)) % align;
  return raw.subarray(skip, skip + size);
}
