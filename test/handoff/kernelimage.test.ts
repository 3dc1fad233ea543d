// Reading the release of a kernel before booting it, and checking its configuration.
import t from 'tap';
import { mkdtempSync, writeFileSync, existsSync, readFileSync } from 'node:fs';
import { tmpdir } from 'node:os';
import { join } from 'node:path';
import { bzImageBanner, checkKernelConfig, inspectKernelImage, parseKernelConfig } from '../../src/handoff/kernelimage.js';
import { nextCommandLine, resumeArgument } from '../../src/handoff/kexec.js';

function fakeBzImage(banner: string): Buffer {
  const b = Buffer.alloc(0x4000);
  b.write('HdrS', 0x202, 'latin1');
  b.writeUInt16LE(0x3000 - 0x200, 0x20e);
  b.write(banner + '\0', 0x3000, 'latin1');
  return b;
}

t.test('the release comes from the boot protocol header', async (t) => {
  const dir = mkdtempSync(join(tmpdir(), 'handoff-k-'));
  const p = join(dir, 'kernel');
  writeFileSync(p, fakeBzImage('6.12.7-amd64 (debian-kernel@lists.debian.org) #1 SMP'));
  const info = inspectKernelImage(p);
  t.equal(info.release, '6.12.7-amd64');
  t.equal(info.source, 'bzimage-header');
  t.equal(bzImageBanner(Buffer.alloc(100)), undefined, 'no header, no banner');
  t.equal(info.truncated, undefined, 'as long as its header says');
  const h = fakeBzImage('6.12.7-amd64 #1');
  h[0x1f1] = 3;
  h.writeUInt32LE(0x1000, 0x1f4); // (3 + 1) * 512 + 64 KiB > 16 KiB file
  writeFileSync(p, h);
  t.same(inspectKernelImage(p).truncated, { size: h.length, expected: 4 * 512 + 0x10000 }, 'a truncated copy is noticed');
});

t.test('without a header the file name vmlinuz-RELEASE is used', async (t) => {
  const dir = mkdtempSync(join(tmpdir(), 'handoff-k-'));
  const p = join(dir, 'vmlinuz-5.10.0-32-amd64');
  writeFileSync(p, 'not a kernel');
  t.equal(inspectKernelImage(p).release, '5.10.0-32-amd64');
  t.equal(inspectKernelImage(p).source, 'file-name');
  const q = join(dir, 'mystery');
  writeFileSync(q, 'x');
  t.equal(inspectKernelImage(q).release, undefined, 'unknown stays unknown');
});

t.test('real kernels of the VM matrix, when fetched, name their release', async (t) => {
  const cache = new URL('../../vm-images/cache/kernels/', import.meta.url).pathname;
  for (const series of ['5.10', '6.1', '6.12', '7']) {
    const k = join(cache, series, 'vmlinuz');
    if (!existsSync(k)) continue;
    t.equal(inspectKernelImage(k).release, readFileSync(join(cache, series, 'release'), 'utf8').trim(), series);
  }
});

t.test('a configuration without what resume needs is reported option by option', async (t) => {
  const config = parseKernelConfig('CONFIG_CHECKPOINT_RESTORE=y\n# CONFIG_TIME_NS is not set\nCONFIG_NF_TABLES=m\nCONFIG_NF_TABLES_INET=y\nCONFIG_INET=y\n');
  t.same(checkKernelConfig(config, false).map((p) => p.option), ['CONFIG_TIME_NS']);
  t.same(checkKernelConfig(config, true).map((p) => p.option), ['CONFIG_TIME_NS', 'CONFIG_X86_PMEM_LEGACY']);
});

t.test('the next command line carries the store and drops an old pointer', async (t) => {
  const line = nextCommandLine({ reuse: true, append: 'quiet', resume: 'pmem:/dev/pmem0', current: 'BOOT_IMAGE=/vmlinuz root=/dev/sda1 handoff.resume=file:/old memmap=64M!512M\n' });
  t.equal(line, 'root=/dev/sda1 memmap=64M!512M quiet handoff.resume=pmem:/dev/pmem0');
  t.equal(resumeArgument(line), 'pmem:/dev/pmem0');
  t.equal(nextCommandLine({ reuse: false, append: 'console=ttyS0', resume: 'file:/x', current: 'root=/dev/sda1' }), 'console=ttyS0 handoff.resume=file:/x');
});
