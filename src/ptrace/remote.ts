// Running system calls inside a stopped process. A RemoteTask owns one thread in a ptrace
// stop, the address of a `syscall; int3` sequence in the target, and (optionally) a scratch
// area in the target's memory for syscall arguments that are pointers.
import { SyscallError, errnoName } from '../errors.js';
import * as pt from '../native/ptrace.js';

export const SYSCALL_INSN = Buffer.from([0x0f, 0x05, 0xcc]); // syscall; int3

export class RemoteTask {
  constructor(
    readonly pid: number,
    readonly tid: number,
    /** Address of SYSCALL_INSN in the target. */
    public insn: number,
    /** Scratch memory in the target (read-write), if any. */
    public scratch = 0,
    public scratchSize = 0,
  ) {}

  /** Raw syscall: the kernel's return value, negative errno on failure. */
  raw(nr: number, ...args: (number | bigint)[]): bigint {
    return pt.remoteSyscall(this.tid, this.insn, nr, args);
  }

  /** Syscall that must succeed; returns the result as a number. */
  call(name: string, nr: number, ...args: (number | bigint)[]): number {
    const r = this.raw(nr, ...args);
    if (r < 0n && r > -4096n) throw new SyscallError(`remote ${name}`, Number(-r), { pid: this.pid, tid: this.tid });
    return Number(r);
  }

  /** Writes `data` at `offset` in the scratch area; returns its address in the target. */
  put(data: Buffer, offset = 0): number {
    if (offset + data.length > this.scratchSize) throw new RangeError(`scratch overflow: ${offset + data.length} > ${this.scratchSize}`);
    pt.vmWrite(this.pid, this.scratch + offset, data);
    return this.scratch + offset;
  }

  /** A NUL-terminated string in the scratch area. */
  putString(text: string, offset = 0): number {
    return this.put(Buffer.from(text + '\0'), offset);
  }

  get(length: number, offset = 0): Buffer {
    const b = Buffer.alloc(length);
    pt.vmRead(this.pid, this.scratch + offset, b);
    return b;
  }
}

export function describeErrno(r: bigint): string {
  return r < 0n ? errnoName(Number(-r)) : String(r);
}
