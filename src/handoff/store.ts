// Where a prepared handoff lives across the kexec (DESIGN 7).
//
// File store: a directory (mode 0700, root's) holding one engine image per process tree
// (tree-ROOT.himg) and manifest.json, everything fsync'd and the directory too.
//
// RAM store: a memmap= pmem device (/dev/pmem0) whose contents survive kexec. Layout:
//   0      16 bytes  magic "HANDOFF-PMEM-V1\0"
//   16     u32 LE    state: 1 pending, 2 resumed (anything else: nothing to resume)
//   20     u32 LE    manifest length M
//   24     32 bytes  SHA-256 of the manifest bytes
//   56     8 bytes   zero
//   64     M bytes   manifest (JSON, the same as the file store's) with each tree's offset
//   then   each tree image at a 4 KiB-aligned offset, back to back
// The images are written first and the header last (after the header was zeroed), so a
// half-written store never looks pending. Resume copies each image into /run (tmpfs, still
// no disk I/O) checking its SHA-256 against the manifest; the image reader then verifies
// the image's own trailer digest as for any file.
import { closeSync, constants, existsSync, fsyncSync, mkdirSync, openSync, readFileSync, readSync, readdirSync, renameSync, rmSync, statSync, writeFileSync, writeSync } from 'node:fs';
import { createHash } from 'node:crypto';
import { basename, dirname, join } from 'node:path';
import { HandoffError, ImageError } from '../errors.js';

export const MANIFEST_NAME = 'manifest.json';
const PMEM_MAGIC = Buffer.from('HANDOFF-PMEM-V1\0', 'latin1');
const PMEM_HEADER = 64;
const ALIGN = 4096;
export const PMEM_PENDING = 1;
export const PMEM_RESUMED = 2;

export interface TreeEntry {
  /** Root pid of the tree (the dump's --pid). */
  root: number;
  pids: number[];
  threads: number;
  /** File name in the store directory. */
  image: string;
  bytes: number;
  sha256: string;
  /** nftables table holding this tree's network lock ('' when it has no TCP socket). */
  lockTable: string;
  /** Byte offset on the pmem device (RAM store only). */
  offset?: number;
  /** SHA-256 of the whole image file as copied to the device (RAM store only). */
  fileSha256?: string;
}

export interface Manifest {
  kind: 'handoff-manifest';
  version: 1;
  id: string;
  hostname: string;
  sourceKernel: string;
  targetKernel?: string;
  /** CLOCK_REALTIME when the first tree was frozen (image header `created`), ms since the epoch. */
  frozenAtMs: number;
  /** When the store was complete and synced. */
  writtenAtMs: number;
  trees: TreeEntry[];
  /** Durations on the old kernel, ms. */
  prepare: Record<string, number>;
}

export type StoreSpec = { type: 'file'; path: string } | { type: 'pmem'; device: string };

/** handoff.resume= value for a store. */
export function storeArgument(s: StoreSpec): string {
  return s.type === 'file' ? `file:${s.path}` : `pmem:${s.device}`;
}

export function parseStoreArgument(text: string): StoreSpec {
  if (text.startsWith('pmem:')) return { type: 'pmem', device: text.slice(5) };
  if (text.startsWith('file:')) return { type: 'file', path: text.slice(5) };
  return { type: 'file', path: text };
}

function fsyncPath(path: string, flags = constants.O_RDONLY): void {
  const fd = openSync(path, flags);
  try {
    fsyncSync(fd);
  } finally {
    closeSync(fd);
  }
}

function sha256(data: Buffer): string {
  return createHash('sha256').update(data).digest('hex');
}

// ---------- file store ----------

/** Creates (or empties) the store directory, root-only. */
export function prepareFileStore(dir: string): void {
  mkdirSync(dir, { recursive: true, mode: 0o700 });
  const st = statSync(dir);
  if (!st.isDirectory()) throw new HandoffError('E_STORE', `${dir} is not a directory`, { path: dir }, { exitCode: 3 });
  for (const name of readdirSync(dir)) {
    if (name === MANIFEST_NAME || name.endsWith('.himg') || name.endsWith('.tmp')) rmSync(join(dir, name), { force: true });
  }
  fsyncPath(dirname(dir));
}

export function writeManifestFile(dir: string, manifest: Manifest): void {
  const temp = join(dir, `.${MANIFEST_NAME}.tmp`);
  writeFileSync(temp, JSON.stringify(manifest, null, 2) + '\n', { mode: 0o600 });
  fsyncPath(temp);
  renameSync(temp, join(dir, MANIFEST_NAME));
  fsyncPath(dir);
}

export function readManifestFile(dir: string): Manifest {
  const path = join(dir, MANIFEST_NAME);
  let manifest: Manifest;
  try {
    manifest = JSON.parse(readFileSync(path, 'utf8')) as Manifest;
  } catch (err) {
    throw new ImageError('E_IMAGE_IO', `no readable handoff manifest at ${path}: ${(err as Error).message}`, { path }, err);
  }
  if (manifest.kind !== 'handoff-manifest' || manifest.version !== 1) throw new ImageError('E_IMAGE_MAGIC', `${path} is not a handoff manifest v1`, { path });
  return manifest;
}

/** Keeps the store after resume for forensics/retry, out of the way of the next prepare. */
export function retireFileStore(dir: string, suffix = '.resumed'): string {
  let target = dir + suffix;
  for (let i = 1; existsSync(target); i++) target = `${dir}${suffix}.${i}`;
  renameSync(dir, target);
  fsyncPath(dirname(dir));
  return target;
}

// ---------- pmem store ----------

export function deviceSize(device: string): number {
  const st = statSync(device);
  if (st.isFile()) return st.size;
  // Block devices report size 0 through stat: ask sysfs (512-byte sectors).
  const sectors = readFileSync(`/sys/class/block/${basename(device)}/size`, 'utf8').trim();
  return Number(sectors) * 512;
}

const alignUp = (n: number) => Math.ceil(n / ALIGN) * ALIGN;

/** Bytes the pmem layout needs for these images (header room is generous for the manifest). */
export function pmemBytesNeeded(imageBytes: number[], manifestRoom = 64 * 1024): number {
  return alignUp(PMEM_HEADER + manifestRoom) + imageBytes.reduce((n, b) => n + alignUp(b), 0);
}

/** Copies src to destFd at offset; returns the SHA-256 of what was copied. */
function copyFileInto(src: string, destFd: number, offset: number): string {
  const hash = createHash('sha256');
  const fd = openSync(src, 'r');
  const buf = Buffer.allocUnsafe(8 << 20);
  try {
    for (let pos = 0; ; ) {
      const n = readSync(fd, buf, 0, buf.length, pos);
      if (n === 0) break;
      hash.update(buf.subarray(0, n));
      for (let w = 0; w < n; ) w += writeSync(destFd, buf, w, n - w, offset + pos + w);
      pos += n;
    }
  } finally {
    closeSync(fd);
  }
  return hash.digest('hex');
}

/** Marks the device as holding nothing (before writing, and on abort). */
export function clearPmem(device: string): void {
  const fd = openSync(device, 'r+');
  try {
    writeSync(fd, Buffer.alloc(PMEM_HEADER), 0, PMEM_HEADER, 0);
    fsyncSync(fd);
  } finally {
    closeSync(fd);
  }
}

/**
 * Writes the images (files, usually in /run) and then the manifest header to the device.
 * Sets each tree's offset in the manifest.
 */
export function writePmem(device: string, manifest: Manifest, imagePaths: string[]): void {
  const size = deviceSize(device);
  // The manifest goes first on the device, so offsets depend on its length: reserve room.
  const draft = Buffer.from(JSON.stringify({ ...manifest, trees: manifest.trees.map((t) => ({ ...t, offset: Number.MAX_SAFE_INTEGER, fileSha256: '0'.repeat(64) })) }));
  let offset = alignUp(PMEM_HEADER + draft.length);
  for (const tree of manifest.trees) {
    tree.offset = offset;
    offset += alignUp(tree.bytes);
  }
  if (offset > size) throw new HandoffError('E_STORE_FULL', `the images need ${offset} bytes but ${device} holds ${size}`, { path: device, need: offset, have: size }, { exitCode: 3 });
  const fd = openSync(device, 'r+');
  try {
    writeSync(fd, Buffer.alloc(PMEM_HEADER), 0, PMEM_HEADER, 0);
    fsyncSync(fd);
    manifest.trees.forEach((tree, i) => (tree.fileSha256 = copyFileInto(imagePaths[i]!, fd, tree.offset!)));
    fsyncSync(fd);
    const body = Buffer.from(JSON.stringify(manifest));
    if (PMEM_HEADER + body.length > manifest.trees[0]!.offset!) throw new HandoffError('E_STORE', 'manifest grew past its room', { path: device });
    writeSync(fd, body, 0, body.length, PMEM_HEADER);
    const head = Buffer.alloc(PMEM_HEADER);
    PMEM_MAGIC.copy(head, 0);
    head.writeUInt32LE(PMEM_PENDING, 16);
    head.writeUInt32LE(body.length, 20);
    Buffer.from(sha256(body), 'hex').copy(head, 24);
    writeSync(fd, head, 0, PMEM_HEADER, 0);
    fsyncSync(fd);
  } finally {
    closeSync(fd);
  }
}

export interface PmemContents {
  state: number;
  manifest: Manifest;
}

/** The header and manifest, or undefined when the device holds no handoff. */
export function readPmemHeader(device: string): PmemContents | undefined {
  const fd = openSync(device, 'r');
  try {
    const head = Buffer.alloc(PMEM_HEADER);
    readSync(fd, head, 0, PMEM_HEADER, 0);
    if (!head.subarray(0, 16).equals(PMEM_MAGIC)) return undefined;
    const state = head.readUInt32LE(16);
    const length = head.readUInt32LE(20);
    if (length === 0 || length > 16 << 20) throw new ImageError('E_IMAGE_LIMIT', `pmem manifest length ${length} is implausible`, { path: device });
    const body = Buffer.alloc(length);
    readSync(fd, body, 0, length, PMEM_HEADER);
    if (sha256(body) !== head.subarray(24, 56).toString('hex')) throw new ImageError('E_IMAGE_DIGEST', `the handoff manifest on ${device} fails its SHA-256`, { path: device });
    const manifest = JSON.parse(body.toString('utf8')) as Manifest;
    return { state, manifest };
  } finally {
    closeSync(fd);
  }
}

export function setPmemState(device: string, state: number): void {
  const fd = openSync(device, 'r+');
  try {
    const b = Buffer.alloc(4);
    b.writeUInt32LE(state);
    writeSync(fd, b, 0, 4, 16);
    fsyncSync(fd);
  } finally {
    closeSync(fd);
  }
}

/** Copies one tree image from the device into `dest` (0600), checking the manifest digest. */
export function extractPmemImage(device: string, tree: TreeEntry, dest: string): void {
  if (tree.offset === undefined) throw new ImageError('E_IMAGE_INCONSISTENT', `tree ${tree.root} has no offset on ${device}`, { path: device });
  const src = openSync(device, 'r');
  const out = openSync(dest, constants.O_WRONLY | constants.O_CREAT | constants.O_TRUNC, 0o600);
  const hash = createHash('sha256');
  const buf = Buffer.allocUnsafe(8 << 20);
  try {
    for (let pos = 0; pos < tree.bytes; ) {
      const n = readSync(src, buf, 0, Math.min(buf.length, tree.bytes - pos), tree.offset + pos);
      if (n === 0) throw new ImageError('E_IMAGE_TRUNCATED', `${device} ends inside tree ${tree.root}'s image`, { path: device });
      hash.update(buf.subarray(0, n));
      for (let w = 0; w < n; ) w += writeSync(out, buf, w, n - w, pos + w);
      pos += n;
    }
  } finally {
    closeSync(src);
    closeSync(out);
  }
  const got = hash.digest('hex');
  if (got !== tree.fileSha256) {
    rmSync(dest, { force: true });
    throw new ImageError('E_IMAGE_DIGEST', `tree ${tree.root}'s image on ${device} fails its SHA-256 (${got} != ${tree.fileSha256})`, { path: device });
  }
}
