// Typed bindings for native/src/ptrace.c and native/src/spawn.c: freezing, registers,
// tracee memory, remote syscalls, and creating a process with a chosen pid.
import { ProcessError, SyscallError } from '../errors.js';
import { REGISTER_NAMES } from '../format/records.js';
import { bind, T } from './lib.js';

/** struct user_regs_struct field order (x86_64 user ABI, <sys/user.h>): the format's names. */
export const REG_NAMES = REGISTER_NAMES;
export type RegName = (typeof REG_NAMES)[number];
export type Regs = Record<RegName, bigint>;

export const PTRACE_O = {
  TRACESYSGOOD: 1, TRACEFORK: 2, TRACEVFORK: 4, TRACECLONE: 8, TRACEEXEC: 0x10, TRACEVFORKDONE: 0x20,
  TRACEEXIT: 0x40, TRACESECCOMP: 0x80, EXITKILL: 0x100000, SUSPEND_SECCOMP: 0x200000,
} as const;
export const PTRACE_EVENT = { FORK: 1, VFORK: 2, CLONE: 3, EXEC: 4, VFORK_DONE: 5, EXIT: 6, SECCOMP: 7, STOP: 128 } as const;

const raw = {
  seize: bind('hnd_seize', T.i32, [T.i32, T.i32]),
  interrupt: bind('hnd_interrupt', T.i32, [T.i32]),
  detach: bind('hnd_detach', T.i32, [T.i32, T.i32]),
  cont: bind('hnd_cont', T.i32, [T.i32, T.i32]),
  setOptions: bind('hnd_set_options', T.i32, [T.i32, T.i32]),
  wait: bind('hnd_wait', T.i32, [T.i32, T.i32, T.u8array]),
  eventMsg: bind('hnd_event_msg', T.i32, [T.i32, T.u8array]),
  getRegs: bind('hnd_get_regs', T.i32, [T.i32, T.u8array]),
  setRegs: bind('hnd_set_regs', T.i32, [T.i32, T.u8array]),
  getXstate: bind('hnd_get_xstate', T.i32, [T.i32, T.u8array, T.i32]),
  setXstate: bind('hnd_set_xstate', T.i32, [T.i32, T.u8array, T.i32]),
  getSigmask: bind('hnd_get_sigmask', T.i32, [T.i32, T.u8array]),
  setSigmask: bind('hnd_set_sigmask', T.i32, [T.i32, T.u8array]),
  peekSiginfo: bind('hnd_peek_siginfo', T.i32, [T.i32, T.i32, T.u8array, T.i32]),
  getRseq: bind('hnd_get_rseq', T.i32, [T.i32, T.u8array]),
  poke: bind('hnd_poke', T.i32, [T.i32, T.i64, T.u8array, T.i32]),
  peek: bind('hnd_peek', T.i32, [T.i32, T.i64, T.u8array, T.i32]),
  vmRead: bind('hnd_vm_read', T.i64, [T.i32, T.i64, T.u8array, T.i64]),
  vmWrite: bind('hnd_vm_write', T.i64, [T.i32, T.i64, T.u8array, T.i64]),
  remoteSyscall: bind('hnd_remote_syscall', T.i32, [T.i32, T.i64, T.u8array, T.u8array]),
  remoteSyscallLast: bind('hnd_remote_syscall_last', T.i32, [T.i32, T.i64, T.u8array, T.u8array]),
  spawnStub: bind('hnd_spawn_stub', T.i32, [T.i32, T.string, T.string, T.i32]),
};

function check(name: string, r: number, tid: number): number {
  if (r < 0) throw new SyscallError(name, -r, { tid });
  return r;
}

export function seize(tid: number, options = 0): void {
  check('ptrace(SEIZE)', raw.seize(tid, options), tid);
}
export function interrupt(tid: number): void {
  check('ptrace(INTERRUPT)', raw.interrupt(tid), tid);
}
export function detach(tid: number, signal = 0): void {
  check('ptrace(DETACH)', raw.detach(tid, signal), tid);
}
/** Detach, ignoring a thread that is already gone. */
export function detachQuietly(tid: number): void {
  raw.detach(tid, 0);
}
export function cont(tid: number, signal = 0): void {
  check('ptrace(CONT)', raw.cont(tid, signal), tid);
}
export function setOptions(tid: number, options: number): void {
  check('ptrace(SETOPTIONS)', raw.setOptions(tid, options), tid);
}

export type WaitStatus =
  | { kind: 'exited'; code: number }
  | { kind: 'signaled'; signal: number }
  | { kind: 'stopped'; signal: number; event: number };

export function decodeStatus(status: number): WaitStatus {
  if ((status & 0x7f) === 0) return { kind: 'exited', code: (status >> 8) & 0xff };
  if ((status & 0xff) === 0x7f) return { kind: 'stopped', signal: (status >> 8) & 0xff, event: (status >> 16) & 0xff };
  return { kind: 'signaled', signal: status & 0x7f };
}

const WNOHANG = 1;
const statusBuf = Buffer.alloc(4);
/** waitpid(tid, __WALL); with `noHang`, undefined when nothing is ready. */
export function waitFor(tid: number, noHang = false): WaitStatus | undefined {
  const r = raw.wait(tid, noHang ? WNOHANG : 0, statusBuf);
  if (r === 0) return undefined;
  check('waitpid', r, tid);
  return decodeStatus(statusBuf.readInt32LE(0));
}

/** waitpid(-1, __WALL): the next child (or tracee) state change, blocking. */
export function waitAny(): { pid: number; status: WaitStatus } {
  const r = raw.wait(-1, 0, statusBuf);
  check('waitpid', r, -1);
  return { pid: r, status: decodeStatus(statusBuf.readInt32LE(0)) };
}

export function eventMessage(tid: number): number {
  const b = Buffer.alloc(8);
  check('ptrace(GETEVENTMSG)', raw.eventMsg(tid, b), tid);
  return Number(b.readBigUInt64LE(0));
}

const regsBuf = Buffer.alloc(REG_NAMES.length * 8);
export function getRegs(tid: number): Regs {
  check('ptrace(GETREGS)', raw.getRegs(tid, regsBuf), tid);
  const regs = {} as Regs;
  REG_NAMES.forEach((name, i) => (regs[name] = regsBuf.readBigUInt64LE(i * 8)));
  return regs;
}
export function setRegs(tid: number, regs: Regs): void {
  const b = Buffer.alloc(REG_NAMES.length * 8);
  REG_NAMES.forEach((name, i) => b.writeBigUInt64LE(BigInt.asUintN(64, regs[name]), i * 8));
  check('ptrace(SETREGS)', raw.setRegs(tid, b), tid);
}

/** The XSAVE area (legacy FPU/SSE region, header, AVX... components). */
export function getXstate(tid: number): Buffer {
  const b = Buffer.alloc(16384);
  const n = check('ptrace(GETREGSET NT_X86_XSTATE)', raw.getXstate(tid, b, b.length), tid);
  return Buffer.from(b.subarray(0, n));
}
export function setXstate(tid: number, data: Buffer): void {
  check('ptrace(SETREGSET NT_X86_XSTATE)', raw.setXstate(tid, data, data.length), tid);
}

export function getSigmask(tid: number): bigint {
  const b = Buffer.alloc(8);
  check('ptrace(GETSIGMASK)', raw.getSigmask(tid, b), tid);
  return b.readBigUInt64LE(0);
}
export function setSigmask(tid: number, mask: bigint): void {
  const b = Buffer.alloc(8);
  b.writeBigUInt64LE(BigInt.asUintN(64, mask));
  check('ptrace(SETSIGMASK)', raw.setSigmask(tid, b), tid);
}

/** Raw 128-byte siginfo records pending for the thread (or the process, with `shared`). */
export function peekSiginfo(tid: number, shared: boolean): Buffer[] {
  const max = 64;
  const b = Buffer.alloc(128 * max);
  const n = check('ptrace(PEEKSIGINFO)', raw.peekSiginfo(tid, shared ? 1 : 0, b, max), tid);
  return Array.from({ length: n }, (_, i) => Buffer.from(b.subarray(i * 128, (i + 1) * 128)));
}

export type RseqConfig = { addr: number; len: number; flags: number; sig: number };
/** rseq registration of a thread, or undefined when the kernel cannot say (< 5.13). */
export function getRseq(tid: number): RseqConfig | undefined {
  const b = Buffer.alloc(32);
  const r = raw.getRseq(tid, b);
  if (r < 0) return undefined;
  return { addr: Number(b.readBigUInt64LE(0)), len: Number(b.readBigUInt64LE(8)), flags: Number(b.readBigUInt64LE(16)), sig: Number(b.readBigUInt64LE(24)) };
}

export function poke(tid: number, addr: number, data: Buffer): void {
  check('ptrace(POKEDATA)', raw.poke(tid, addr, data, data.length), tid);
}
export function peek(tid: number, addr: number, length: number): Buffer {
  const b = Buffer.alloc(length);
  check('ptrace(PEEKDATA)', raw.peek(tid, addr, b, length), tid);
  return b;
}

/** Reads tracee memory into `into` (whole length). */
export function vmRead(pid: number, addr: number, into: Buffer, length = into.length): void {
  const r = raw.vmRead(pid, addr, into, length);
  if (r < 0) throw new SyscallError('process_vm_readv', -r, { pid, address: '0x' + addr.toString(16) });
}
export function vmWrite(pid: number, addr: number, data: Buffer): void {
  const r = raw.vmWrite(pid, addr, data, data.length);
  if (r < 0) throw new SyscallError('process_vm_writev', -r, { pid, address: '0x' + addr.toString(16) });
}

const callBuf = Buffer.alloc(7 * 8);
const resultBuf = Buffer.alloc(8);
/**
 * Executes syscall `nr` in stopped thread `tid` through the `syscall; int3` bytes at
 * `insnAddr`. Returns the raw result (negative errno on failure, as the kernel returns it).
 */
export function remoteSyscall(tid: number, insnAddr: number, nr: number, args: readonly (number | bigint)[] = []): bigint {
  callBuf.writeBigUInt64LE(BigInt(nr), 0);
  for (let i = 0; i < 6; i++) callBuf.writeBigUInt64LE(BigInt.asUintN(64, BigInt(args[i] ?? 0)), 8 + i * 8);
  const r = raw.remoteSyscall(tid, insnAddr, callBuf, resultBuf);
  if (r < 0) {
    const sig = Number(-resultBuf.readBigInt64LE(0) >> 32n);
    throw new ProcessError('E_REMOTE_SYSCALL', `remote syscall ${nr} in tid ${tid} failed: ${r === -14 && sig > 0 ? `signal ${sig}` : `errno ${-r}`}`, { tid, syscall: nr, signal: sig || undefined });
  }
  return resultBuf.readBigInt64LE(0);
}

/**
 * The last remote syscall of a restore: runs `nr` and leaves the thread in its syscall-exit
 * stop without putting its registers back (the caller loads the final ones). Lets the syscall
 * page unmap itself without the thread ever returning into it.
 */
export function remoteSyscallLast(tid: number, insnAddr: number, nr: number, args: readonly (number | bigint)[] = []): bigint {
  callBuf.writeBigUInt64LE(BigInt(nr), 0);
  for (let i = 0; i < 6; i++) callBuf.writeBigUInt64LE(BigInt.asUintN(64, BigInt(args[i] ?? 0)), 8 + i * 8);
  const r = raw.remoteSyscallLast(tid, insnAddr, callBuf, resultBuf);
  if (r < 0) throw new ProcessError('E_REMOTE_SYSCALL', `final remote syscall ${nr} in tid ${tid} failed: errno ${-r}`, { tid, syscall: nr });
  return resultBuf.readBigInt64LE(0);
}

/**
 * Creates a process with pid `pid` running the restore stub, seized with `options` and
 * stopped at its exec. `timensOffsets` non-empty: a new time namespace with these offsets.
 * Returns the pid, or throws (E_PID_IN_USE when the pid is taken).
 */
export function spawnStub(pid: number, stubPath: string, timensOffsets: string, options: number): number {
  const r = raw.spawnStub(pid, stubPath, timensOffsets, options);
  if (r === -17) throw new ProcessError('E_PID_IN_USE', `pid ${pid} is in use`, { pid });
  if (r <= -1000) throw new ProcessError('E_RESTORE', `restore stub for pid ${pid} failed at step ${-r - 1000} (120 unshare time ns, 121/122 timens offsets, 123 gate, 124 exec)`, { pid });
  if (r < 0) throw new SyscallError('clone3(set_tid)', -r, { pid });
  return r;
}

const subreaperRaw = bind('hnd_set_child_subreaper', T.i32, [T.i32]);
/** Makes this process the reaper of its orphaned descendants (PR_SET_CHILD_SUBREAPER). */
export function setChildSubreaper(on: boolean): void {
  check('prctl(PR_SET_CHILD_SUBREAPER)', subreaperRaw(on ? 1 : 0), process.pid);
}

const stepOutRaw = bind('hnd_step_out', T.i32, [T.i32, T.i64, T.i64, T.i32]);
/** Single-steps thread `tid` until its rip is outside [lo, hi); returns the steps taken. */
export function stepOut(tid: number, lo: number, hi: number, max = 1_000_000): number {
  return check('ptrace(SINGLESTEP)', stepOutRaw(tid, lo, hi, max), tid);
}
