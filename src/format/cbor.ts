// A bounded, incremental CBOR (RFC 8949) item parser over a file descriptor.
// Why not a generic decoder: the image holds gigabytes of page data, and a corrupt or hostile
// image must not make the reader allocate what a length field claims. This parser reads item
// heads itself, checks every declared length against the file size and the reader's limits
// before allocating, and hands large byte strings back as references into the file.
// It also feeds every byte it passes over into the running SHA-256 exactly once.
import { readSync } from 'node:fs';
import type { Hash } from 'node:crypto';
import { ImageError } from '../errors.js';
import type { PayloadRef } from './records.js';

/** A byte string left in the file. Instances (not look-alike maps) are what the reader returns. */
export class FileBytes implements PayloadRef {
  constructor(readonly offset: number, readonly length: number) {}
  toJSON(): PayloadRef {
    return { offset: this.offset, length: this.length };
  }
}

export interface DecodeLimits {
  /** Deepest nesting of arrays/maps inside one top-level item (the item itself is depth 1). */
  maxDepth: number;
  /** Bytes of one top-level item, not counting byte strings left in the file. */
  maxItemBytes: number;
  /** Longest byte string copied into memory. */
  maxInlineBytes: number;
  /** Longest text string. */
  maxTextBytes: number;
  /** Top-level byte strings at least this long are left in the file. */
  refThreshold: number;
  /** Top-level keys whose byte strings are always left in the file. */
  refKeys: ReadonlySet<string>;
}

export const DEFAULT_LIMITS: DecodeLimits = {
  maxDepth: 16,
  maxItemBytes: 64 << 20,
  maxInlineBytes: 16 << 20,
  maxTextBytes: 1 << 20,
  refThreshold: 64 << 10,
  refKeys: new Set(['data', 'contents']),
};

const WINDOW = 1 << 20;
const utf8 = new TextDecoder('utf-8', { fatal: true });

export class ItemReader {
  /** Offset of the next unread byte. */
  pos = 0;
  private win: Buffer = Buffer.allocUnsafe(WINDOW);
  private winStart = 0;
  private winEnd = 0;
  private hashedTo = 0;
  private itemStart = 0;
  private leftInFile = 0;

  constructor(
    private readonly fd: number,
    readonly size: number,
    /** null: the caller checks the digest elsewhere (a worker hashing the whole file). */
    private readonly hash: Hash | null,
    private readonly limits: DecodeLimits = DEFAULT_LIMITS,
  ) {}

  atEnd(): boolean {
    return this.pos >= this.size;
  }

  /** Hash state covering every byte before `pos` (used to check the trailer's digest). */
  digestSoFar(): Buffer | null {
    if (!this.hash) return null;
    this.flushHash();
    return this.hash.copy().digest();
  }

  /** Decodes one complete top-level item starting at `pos`. */
  readItem(): unknown {
    this.itemStart = this.pos;
    this.leftInFile = 0;
    return this.item(1, undefined);
  }

  private fail(code: 'E_IMAGE_CBOR' | 'E_IMAGE_TRUNCATED' | 'E_IMAGE_LIMIT', message: string, offset: number): never {
    throw new ImageError(code, `${message} at offset ${offset}`, { offset });
  }

  private flushHash(): void {
    if (this.hash && this.hashedTo < this.pos) {
      this.hash.update(this.win.subarray(this.hashedTo - this.winStart, this.pos - this.winStart));
      this.hashedTo = this.pos;
    }
  }

  /** Makes bytes [pos, pos+n) available in the window. */
  private ensure(n: number, at: number): void {
    if (this.pos + n <= this.winEnd) return;
    if (this.pos + n > this.size) this.fail('E_IMAGE_TRUNCATED', `item needs ${n} bytes but the file ends`, at);
    this.flushHash();
    if (n > this.win.length) this.win = Buffer.allocUnsafe(n);
    const want = Math.min(this.win.length, this.size - this.pos);
    let got = 0;
    while (got < want) {
      let r: number;
      try {
        r = readSync(this.fd, this.win, got, want - got, this.pos + got);
      } catch (err) {
        throw new ImageError('E_IMAGE_IO', `read failed at offset ${this.pos + got}: ${(err as Error).message}`, { offset: this.pos + got }, err);
      }
      if (r === 0) break;
      got += r;
    }
    this.winStart = this.pos;
    this.winEnd = this.pos + got;
    this.hashedTo = this.pos;
    if (this.pos + n > this.winEnd) this.fail('E_IMAGE_TRUNCATED', 'file shrank while reading', at);
  }

  private take(n: number, at: number): Buffer {
    this.ensure(n, at);
    const start = this.pos - this.winStart;
    this.pos += n;
    if (this.pos - this.itemStart - this.leftInFile > this.limits.maxItemBytes) {
      this.fail('E_IMAGE_LIMIT', `record larger than ${this.limits.maxItemBytes} bytes`, this.itemStart);
    }
    return this.win.subarray(start, start + n);
  }

  /** Passes over n bytes left in the file, hashing them without keeping them. */
  private skip(n: number): void {
    this.flushHash();
    if (!this.hash) {
      // Not hashing: only bounds matter (a declared length was already checked against the
      // bytes left in the file; a file shrinking meanwhile is caught by the digest worker).
      const end = this.pos + n;
      if (end > this.size) this.fail('E_IMAGE_TRUNCATED', `item needs ${n} bytes but the file ends`, this.pos);
      this.pos = this.hashedTo = end;
      this.winStart = this.winEnd = end;
      return;
    }
    const inWindow = Math.min(n, this.winEnd - this.pos);
    if (inWindow > 0) {
      this.hash.update(this.win.subarray(this.pos - this.winStart, this.pos - this.winStart + inWindow));
    }
    let off = this.pos + inWindow;
    const end = this.pos + n;
    while (off < end) {
      const len = Math.min(this.win.length, end - off);
      let r: number;
      try {
        r = readSync(this.fd, this.win, 0, len, off);
      } catch (err) {
        throw new ImageError('E_IMAGE_IO', `read failed at offset ${off}: ${(err as Error).message}`, { offset: off }, err);
      }
      if (r === 0) this.fail('E_IMAGE_TRUNCATED', 'file shrank while reading', off);
      this.hash.update(this.win.subarray(0, r));
      off += r;
    }
    this.pos = end;
    this.hashedTo = end;
    this.winStart = this.winEnd = end;
  }

  /** Reads an item head: returns major type and argument (number, or bigint above 2^53). */
  private head(at: number): { major: number; info: number; arg: number | bigint } {
    const b = this.take(1, at)[0]!;
    const major = b >> 5;
    const info = b & 31;
    if (info < 24) return { major, info, arg: info };
    if (info === 24) return { major, info, arg: this.take(1, at)[0]! };
    if (info === 25) return { major, info, arg: this.take(2, at).readUInt16BE(0) };
    if (info === 26) return { major, info, arg: this.take(4, at).readUInt32BE(0) };
    if (info === 27) {
      const v = this.take(8, at).readBigUInt64BE(0);
      return { major, info, arg: v <= BigInt(Number.MAX_SAFE_INTEGER) ? Number(v) : v };
    }
    if (info === 31) this.fail('E_IMAGE_CBOR', 'indefinite-length item (not allowed in v1)', at);
    return this.fail('E_IMAGE_CBOR', `reserved additional information ${info}`, at);
  }

  private length(arg: number | bigint, at: number): number {
    // Every declared length must fit in what is left of the file: this is what keeps a
    // flipped length bit from turning into a huge allocation or a long loop.
    if (typeof arg === 'bigint' || arg > this.size - this.pos) {
      this.fail('E_IMAGE_TRUNCATED', `declared length ${arg} runs past the end of the file`, at);
    }
    return arg;
  }

  private item(depth: number, key: string | undefined): unknown {
    const at = this.pos;
    const { major, info, arg } = this.head(at);
    switch (major) {
      case 0:
        return arg;
      case 1:
        return typeof arg === 'bigint' ? -1n - arg : arg === Number.MAX_SAFE_INTEGER ? -1n - BigInt(arg) : -1 - arg;
      case 2: {
        const n = this.length(arg, at);
        // `key` is set only for the values of a record's own map.
        if (key !== undefined && (n >= this.limits.refThreshold || this.limits.refKeys.has(key))) {
          const ref = new FileBytes(this.pos, n);
          this.leftInFile += n;
          this.skip(n);
          return ref;
        }
        if (n > this.limits.maxInlineBytes) this.fail('E_IMAGE_LIMIT', `byte string of ${n} bytes inside a record`, at);
        return Buffer.from(this.take(n, at));
      }
      case 3: {
        const n = this.length(arg, at);
        if (n > this.limits.maxTextBytes) this.fail('E_IMAGE_LIMIT', `text string of ${n} bytes`, at);
        try {
          return utf8.decode(this.take(n, at));
        } catch {
          return this.fail('E_IMAGE_CBOR', 'text string is not valid UTF-8', at);
        }
      }
      case 4: {
        const n = this.length(arg, at);
        if (depth >= this.limits.maxDepth) this.fail('E_IMAGE_LIMIT', `nesting deeper than ${this.limits.maxDepth}`, at);
        const out: unknown[] = [];
        for (let i = 0; i < n; i++) out.push(this.item(depth + 1, undefined));
        return out;
      }
      case 5: {
        const n = this.length(arg, at);
        if (depth >= this.limits.maxDepth) this.fail('E_IMAGE_LIMIT', `nesting deeper than ${this.limits.maxDepth}`, at);
        const out: Record<string, unknown> = {};
        for (let i = 0; i < n; i++) {
          const keyAt = this.pos;
          const k = this.item(depth + 1, undefined);
          if (typeof k !== 'string') this.fail('E_IMAGE_CBOR', 'map key is not a text string', keyAt);
          if (Object.prototype.hasOwnProperty.call(out, k)) this.fail('E_IMAGE_CBOR', `duplicate map key "${k}"`, keyAt);
          const v = this.item(depth + 1, depth === 1 ? k : undefined);
          // defineProperty: a key named "__proto__" becomes an ordinary own property.
          Object.defineProperty(out, k, { value: v, enumerable: true, writable: true, configurable: true });
        }
        return out;
      }
      case 6:
        return this.fail('E_IMAGE_CBOR', 'tagged item (v1 uses no tags)', at);
      default:
        return this.simple(info, arg, at);
    }
  }

  private simple(info: number, arg: number | bigint, at: number): unknown {
    if (info === 20) return false;
    if (info === 21) return true;
    if (info === 22) return null;
    if (info === 25) return halfToNumber(arg as number);
    if (info === 26) {
      const b = Buffer.allocUnsafe(4);
      b.writeUInt32BE(arg as number);
      return b.readFloatBE(0);
    }
    if (info === 27) {
      const b = Buffer.allocUnsafe(8);
      b.writeBigUInt64BE(BigInt(arg));
      return b.readDoubleBE(0);
    }
    return this.fail('E_IMAGE_CBOR', `simple value ${info === 24 ? arg : info} not used in v1`, at);
  }
}

function halfToNumber(h: number): number {
  const sign = h & 0x8000 ? -1 : 1;
  const exp = (h >> 10) & 0x1f;
  const mant = h & 0x3ff;
  if (exp === 0) return sign * mant * 2 ** -24;
  if (exp === 31) return mant ? NaN : sign * Infinity;
  return sign * (1 + mant / 1024) * 2 ** (exp - 15);
}

/** The shortest head for major type `major` with argument n (RFC 8949 §3). */
export function cborHead(major: number, n: number): Buffer {
  const m = major << 5;
  if (n < 24) return Buffer.from([m | n]);
  if (n < 0x100) return Buffer.from([m | 24, n]);
  if (n < 0x10000) {
    const b = Buffer.allocUnsafe(3);
    b[0] = m | 25;
    b.writeUInt16BE(n, 1);
    return b;
  }
  if (n < 0x100000000) {
    const b = Buffer.allocUnsafe(5);
    b[0] = m | 26;
    b.writeUInt32BE(n, 1);
    return b;
  }
  const b = Buffer.allocUnsafe(9);
  b[0] = m | 27;
  b.writeBigUInt64BE(BigInt(n), 1);
  return b;
}
