// Everything `prepare` can find out before touching anything, reported all at once:
// blockers in the targets (what the dump engine cannot carry), the running kernel's
// features, the new kernel (version against the image minimum and the features the
// image will need, its build configuration), and room in the store.
import { existsSync, readFileSync, statfsSync } from 'node:fs';
import { dirname } from 'node:path';
import { release as osRelease } from 'node:os';
import type { Blocker } from '../errors.js';
import { discover, IMAGE_FEATURES, preflight as targetBlockers } from '../dump/index.js';
import { MIN_KERNEL, missingFor, probeKernel } from '../kernel/features.js';
import { checkKernelConfig, findKernelConfig, inspectKernelImage, readConfig, releaseAtLeast, type KernelImageInfo } from './kernelimage.js';
import { deviceSize, pmemBytesNeeded, type StoreSpec } from './store.js';

export interface PreflightOptions {
  roots: number[];
  kernel: string;
  initrd?: string;
  /** The command line the new kernel will get. */
  commandLine: string;
  store: StoreSpec;
  /** Whether the kernel will be staged/executed here (kexec must be allowed). */
  kexec: boolean;
  /** A unix socket whose peer is in no target: not a blocker when set (see DumpOptions). */
  unixOutside?: 'closed' | 'reconnect';
}

export interface PreflightReport {
  trees: { root: number; pids: number[] }[];
  currentKernel: string;
  newKernel: KernelImageInfo & { config?: string };
  /** Rough upper bound of the image bytes (resident memory + 10% + 1 MiB per process). */
  estimateBytes: number;
  blockers: Blocker[];
  warnings: string[];
}

function residentBytes(pid: number): number {
  try {
    const text = readFileSync(`/proc/${pid}/status`, 'utf8');
    const kb = Number(/^VmRSS:\s+(\d+)/m.exec(text)?.[1] ?? 0);
    return kb * 1024;
  } catch {
    return 0;
  }
}

export function runPreflight(options: PreflightOptions): PreflightReport {
  const blockers: Blocker[] = [];
  const warnings: string[] = [];
  const system = (code: string, reason: string) => blockers.push({ code, pid: 0, reason });

  const trees: PreflightReport['trees'] = [];
  for (const root of options.roots) {
    try {
      const pids = discover(root, true);
      trees.push({ root, pids });
      blockers.push(...targetBlockers(pids, { unixOutside: options.unixOutside }));
    } catch (err) {
      blockers.push({ code: 'B_TARGET', pid: root, reason: (err as Error).message });
    }
  }

  const facts = probeKernel();
  for (const f of missingFor(facts, 'dump')) system('B_KERNEL_FEATURE', `this kernel lacks ${f.name}: ${f.detail}`);
  if (options.kexec) for (const f of missingFor(facts, 'prepare')) if (!missingFor(facts, 'dump').includes(f)) system('B_KERNEL_FEATURE', `this kernel lacks ${f.name}: ${f.detail}`);

  // The new kernel.
  const info: PreflightReport['newKernel'] = existsSync(options.kernel) ? inspectKernelImage(options.kernel) : { path: options.kernel, source: 'unknown' };
  if (!existsSync(options.kernel)) system('B_KERNEL_IMAGE', `kernel ${options.kernel} not found`);
  else if (!info.release) warnings.push(`cannot tell the version of ${options.kernel} (no bzImage header, no vmlinuz-RELEASE name): not checked against the image minimum ${MIN_KERNEL}`);
  if (info.truncated) system('B_KERNEL_IMAGE', `${options.kernel} is truncated: ${info.truncated.size} bytes, its header says ${info.truncated.expected}`);
  if (options.initrd && !existsSync(options.initrd)) system('B_KERNEL_IMAGE', `initrd ${options.initrd} not found`);
  if (info.release) {
    if (!releaseAtLeast(info.release, MIN_KERNEL)) system('B_KERNEL_TOO_OLD', `the new kernel ${info.release} is older than ${MIN_KERNEL}, the image format's minimum`);
    for (const f of IMAGE_FEATURES) {
      if (!releaseAtLeast(info.release, f.minKernel)) system('B_KERNEL_TOO_OLD', `the image will use ${f.name}, which needs kernel ${f.minKernel}+; the new kernel is ${info.release}`);
    }
    const config = findKernelConfig(options.kernel, info.release);
    if (config) {
      info.config = config;
      for (const p of checkKernelConfig(readConfig(config), options.store.type === 'pmem')) {
        system('B_KERNEL_CONFIG', `the new kernel is built with ${p.option}=${p.value} (${config}); needed for ${p.why}`);
      }
    } else {
      warnings.push(`no build configuration found for ${info.release} (/boot/config-${info.release}): CONFIG_CHECKPOINT_RESTORE, CONFIG_TIME_NS, CONFIG_NF_TABLES not checked`);
    }
    if (info.release !== osRelease()) {
      warnings.push(`the new kernel (${info.release}) differs from this one (${osRelease()}): its vDSO/vvar layout is only known once it runs; a different layout is bridged with trampolines from the old vDSO into the new one`);
    }
  }

  // Room for the images.
  let estimateBytes = 0;
  for (const t of trees) for (const pid of t.pids) estimateBytes += residentBytes(pid) * 1.1 + (1 << 20);
  estimateBytes = Math.ceil(estimateBytes);
  if (options.store.type === 'file') {
    const parent = existsSync(options.store.path) ? options.store.path : dirname(options.store.path);
    if (!existsSync(parent)) system('B_STORE', `${parent} does not exist`);
    else {
      const fs = statfsSync(parent);
      const free = Number(fs.bavail) * Number(fs.bsize);
      if (free < estimateBytes) system('B_STORE_SPACE', `${parent} has ${free} bytes free; the images may need up to ${estimateBytes}`);
    }
  } else {
    const dev = options.store.device;
    if (!existsSync(dev)) system('B_STORE', `${dev} does not exist (boot with memmap=SIZE!OFFSET and load nd_pmem)`);
    else {
      const size = deviceSize(dev);
      if (size < pmemBytesNeeded([estimateBytes])) system('B_STORE_SPACE', `${dev} holds ${size} bytes; the images may need up to ${pmemBytesNeeded([estimateBytes])}`);
      if (estimateBytes > freeRunBytes()) warnings.push(`the images are staged in /run (tmpfs) before they go to ${dev}: ${estimateBytes} bytes may not fit`);
    }
    // The region must be reserved the same way on the new kernel, or its contents are gone.
    const current = readFileSync('/proc/cmdline', 'utf8').split(/\s+/).filter((a) => a.startsWith('memmap='));
    const next = options.commandLine.split(/\s+/).filter((a) => a.startsWith('memmap='));
    if (current.length === 0) warnings.push(`no memmap= on this kernel's command line: cannot check that ${dev} is a reserved RAM region`);
    else if (!current.every((m) => next.includes(m))) system('B_PMEM_CMDLINE', `the new kernel's command line lacks ${current.join(' ')}: it would not keep ${dev}'s memory (use --reuse-cmdline or add it to --append)`);
  }
  return { trees, currentKernel: osRelease(), newKernel: info, estimateBytes, blockers, warnings };
}

function freeRunBytes(): number {
  try {
    const fs = statfsSync('/run');
    return Number(fs.bavail) * Number(fs.bsize);
  } catch {
    return Number.MAX_SAFE_INTEGER;
  }
}
