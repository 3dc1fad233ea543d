// The vDSO across kernels. The new kernel's vDSO and vvar can simply be moved to the old
// addresses when the layouts match. When they differ (another kernel version), the new ones go
// to a free place, and the old vDSO's address range gets a page of trampolines: each symbol
// the old vDSO exported jumps to the same symbol of the new one, or, when the new vDSO lacks
// it, makes the equivalent system call. Programs keep the function pointers their libc took
// from the old vDSO at start-up, so this is what they call.
import { ProcessError } from '../errors.js';
import { logger } from '../log.js';

const log = logger('vdso');

const SHT_DYNSYM = 11;
const STT_FUNC = 2;

/** Exported function symbols of an ELF image (the vDSO) -> offset from its base. */
export function vdsoSymbols(image: Buffer): Map<string, number> {
  if (image.readUInt32BE(0) !== 0x7f454c46 || image[4] !== 2) throw new ProcessError('E_RESTORE', 'vDSO image is not a 64-bit ELF');
  const shoff = Number(image.readBigUInt64LE(0x28));
  const shentsize = image.readUInt16LE(0x3a);
  const shnum = image.readUInt16LE(0x3c);
  const section = (i: number) => {
    const at = shoff + i * shentsize;
    return { type: image.readUInt32LE(at + 4), offset: Number(image.readBigUInt64LE(at + 0x18)), size: Number(image.readBigUInt64LE(at + 0x20)), link: image.readUInt32LE(at + 0x28), entsize: Number(image.readBigUInt64LE(at + 0x38)) };
  };
  const out = new Map<string, number>();
  for (let i = 0; i < shnum; i++) {
    const s = section(i);
    if (s.type !== SHT_DYNSYM) continue;
    const strtab = section(s.link);
    for (let at = s.offset; at + 24 <= s.offset + s.size; at += s.entsize || 24) {
      const nameOff = image.readUInt32LE(at);
      const info = image[at + 4]!;
      const value = Number(image.readBigUInt64LE(at + 8));
      if ((info & 0xf) !== STT_FUNC || value === 0) continue;
      const start = strtab.offset + nameOff;
      const name = image.toString('latin1', start, image.indexOf(0, start));
      out.set(name, value);
    }
  }
  return out;
}

/** System calls that do what each vDSO function does (x86_64 numbers). */
const SYSCALL_OF: Record<string, number> = {
  clock_gettime: 228, gettimeofday: 96, time: 201, getcpu: 309, clock_getres: 229, getrandom: 318,
};

function baseName(symbol: string): string {
  return symbol.startsWith('__vdso_') ? symbol.slice(7) : symbol;
}

/**
 * Bytes for the old vDSO's range: at every old symbol's offset, `movabs rax, NEW; jmp rax`, or
 * `mov eax, NR; syscall; ret` when the new vDSO has no such function.
 */
export function trampolinePage(oldImage: Buffer, oldSize: number, newImage: Buffer, newBase: number): Buffer {
  const page = Buffer.alloc(oldSize, 0xcc); // int3 everywhere else
  const oldSyms = vdsoSymbols(oldImage);
  const newSyms = vdsoSymbols(newImage);
  for (const [name, offset] of oldSyms) {
    if (offset + 12 > oldSize) continue;
    const target = newSyms.get(name);
    if (target !== undefined) {
      page[offset] = 0x48;
      page[offset + 1] = 0xb8;
      page.writeBigUInt64LE(BigInt(newBase + target), offset + 2);
      page[offset + 10] = 0xff;
      page[offset + 11] = 0xe0;
    } else {
      const nr = SYSCALL_OF[baseName(name)];
      if (nr === undefined) {
        log.warn('old vDSO symbol has no counterpart; calls to it will trap', { name });
        continue;
      }
      page[offset] = 0xb8;
      page.writeUInt32LE(nr, offset + 1);
      page[offset + 5] = 0x0f;
      page[offset + 6] = 0x05;
      page[offset + 7] = 0xc3;
    }
  }
  return page;
}
