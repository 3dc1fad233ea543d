// handoff prepare: hand process trees over to a new kernel through kexec.
import { UsageError } from '../errors.js';
import { out, type Command } from './command.js';

export const command: Command = {
  name: 'prepare',
  summary: 'preflight, stage a new kernel, and with --exec freeze, dump and kexec into it',
  help: `Usage: handoff prepare TARGETS --kernel FILE [--initrd FILE] [--append ARGS | --reuse-cmdline]
                       (--image DIR | --pmem DEVICE) [--unix-outside closed|reconnect] [--exec] [--json]

Targets (any number, combined): --pid PID (the process and its descendants), --cgroup PATH
(every process in that cgroup v2, grouped into trees), --unit NAME (a systemd unit's cgroup).

Without --exec: runs the preflight (every blocker of every target, this kernel's features,
the new kernel's version from its bzImage header against the image minimum 5.10 and the
features the image will use, its /boot/config-RELEASE, room in the store), stages the
kernel (kexec_file_load, else kexec_load) and installs the resume hook (systemd units or
/etc/init.d/handoff-resume). Nothing is frozen; undo with handoff abort.

With --exec, additionally and in one go: freeze, lock the network, dump each tree into the
store, fsync, and jump (kexec -e, or systemctl kexec under systemd). Any failure before the
jump thaws everything, removes the network lock, unloads the kernel and empties the store.

Stores: --image DIR (a directory on a persistent file system: manifest.json + one image per
tree) or --pmem /dev/pmem0 (RAM reserved with memmap=SIZE!OFFSET on both kernels' command
lines; no disk I/O). The new kernel gets handoff.resume=file:DIR or pmem:DEVICE.

--unix-outside closed|reconnect: a unix socket whose peer is in no target is restored as closed
(or, for a datagram socket, reconnected to the peer's name) instead of being a blocker; see
handoff dump --help.`,
  options: {
    pid: { type: 'string', short: 'p', multiple: true },
    cgroup: { type: 'string', multiple: true },
    unit: { type: 'string', multiple: true },
    kernel: { type: 'string', short: 'k' },
    initrd: { type: 'string' },
    append: { type: 'string' },
    'reuse-cmdline': { type: 'boolean' },
    image: { type: 'string', short: 'o' },
    pmem: { type: 'string' },
    exec: { type: 'boolean' },
    'init-script': { type: 'boolean' },
    'unix-outside': { type: 'string' },
    json: { type: 'boolean' },
  },
  async run(values) {
    const pids = ((values.pid as string[] | undefined) ?? []).map((p) => {
      const n = Number(p);
      if (!Number.isInteger(n) || n <= 0) throw new UsageError(`prepare: bad --pid ${p}`);
      return n;
    });
    const cgroups = (values.cgroup as string[] | undefined) ?? [];
    const units = (values.unit as string[] | undefined) ?? [];
    if (!pids.length && !cgroups.length && !units.length) throw new UsageError('prepare: name targets with --pid, --cgroup or --unit');
    if (typeof values.kernel !== 'string') throw new UsageError('prepare: --kernel FILE is required');
    if ((typeof values.image === 'string') === (typeof values.pmem === 'string')) throw new UsageError('prepare: give exactly one of --image DIR and --pmem DEVICE');
    const { resolve } = await import('node:path');
    const { prepare } = await import('../handoff/prepare.js');
    const { unixOutsideOption } = await import('./dump.js');
    const unixOutside = unixOutsideOption(values['unix-outside'], 'prepare');
    const json = values.json === true;
    const r = await prepare({
      targets: { pids, cgroups, units },
      kernel: resolve(values.kernel),
      initrd: typeof values.initrd === 'string' ? resolve(values.initrd) : undefined,
      append: values.append as string | undefined,
      reuseCmdline: values['reuse-cmdline'] === true,
      store: typeof values.image === 'string' ? { type: 'file', path: resolve(values.image) } : { type: 'pmem', device: values.pmem as string },
      exec: values.exec === true,
      hookKind: values['init-script'] ? 'init-script' : undefined,
      unixOutside,
      onProgress: json ? undefined : (phase, detail) => {
        if (phase === 'preflight') {
          const d = detail as { trees: { root: number; pids: number[] }[]; warnings: string[]; newKernel?: string };
          out(`preflight: ${d.trees.length} tree(s) [${d.trees.map((t) => `${t.root}: ${t.pids.length} process(es)`).join(', ')}], new kernel ${d.newKernel ?? 'unknown'}`);
          for (const w of d.warnings) out(`  warning: ${w}`);
        } else {
          out(`${phase}: ${JSON.stringify(detail ?? {})}`);
        }
      },
    });
    if (json) out(JSON.stringify(r, null, 2));
    else out(`prepared: kernel staged (${r.staged.method}), resume hook installed (${r.hook.kind}); nothing frozen. Run again with --exec to hand off, or handoff abort.`);
    return 0;
  },
};
