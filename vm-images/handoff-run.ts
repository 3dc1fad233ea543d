// One kexec handoff in a guest, driven from the host (test/vm/handoff.test.ts and the demo):
// boot `from`, start handoff-workload (vm-images/guest/workload.c), talk to it from the host
// through the port forward (vm-images/peer.ts checks every reply), run `handoff prepare
// --exec` into `to` in the guest; the guest's init runs `handoff resume` on the new kernel;
// keep talking until `afterResume` more replies came, then verify and collect everything.
import { Peer, type PeerResult } from './peer.js';
import { startGuest, type Marker, type Series } from './qemu.js';

export type StoreKind = 'file' | 'pmem';

export interface HandoffRunOptions {
  from: Series;
  to: Series;
  store: StoreKind;
  /** Replies to wait for after resume before verifying. */
  afterResume?: number;
  /** What the guest does instead of a plain prepare --exec (abort paths). */
  mode?: 'handoff' | 'bad-kernel' | 'kill-during-dump' | 'kill-after-dump';
  timeoutMs?: number;
  onMarker?: (m: Marker) => void;
  onLine?: (line: string) => void;
  /** Called once the host peer is connected (the demo follows its replies). */
  onPeer?: (peer: Peer) => void;
}

export interface HandoffRunResult {
  markers: Marker[];
  peer: PeerResult;
  /** Parsed resume report (JSON), when the new kernel produced one. */
  report?: Record<string, unknown> & { trees?: { ok: boolean; error?: { message: string } }[]; blackoutMs?: number };
  log: string;
  find(name: string, boot?: string): Marker | undefined;
}

export const WORKLOAD_PORT = 7000;
const PMEM_APPEND = 'memmap=64M!512M';

export function guestScript(options: HandoffRunOptions): string {
  const store = options.store === 'file' ? '--image /var/lib/handoff/store' : '--pmem /dev/pmem0';
  const mode = options.mode ?? 'handoff';
  return String.raw`
mark() { echo "@@handoff $*"; }
lines() { if [ -f /var/lib/handoff/work/log.txt ]; then wc -l < /var/lib/handoff/work/log.txt; else echo 0; fi; }
wait_lines() { i=0; while [ "$(lines)" -lt "$1" ]; do sleep 0.2; i=$((i+1)); if [ $i -gt 900 ]; then mark peer-missing; return 1; fi; done; return 0; }
mark uname release=$(uname -r) boot=$HANDOFF_BOOT
if [ "$HANDOFF_BOOT" = 1 ]; then
  # Workload pids well above anything the next kernel's boot uses (restore needs the same pids).
  echo 5000 > /proc/sys/kernel/ns_last_pid
  mkdir -p /var/lib/handoff/work
  handoff-workload ${WORKLOAD_PORT} /var/lib/handoff/work/log.txt &
  W=$!
  wait_lines 10 || exit 1
  handoff-media
  rel=$(cat /boot/series/${options.to})
  kernel=/boot/vmlinuz-$rel
  MODE=${mode}
  if [ $MODE = bad-kernel ]; then
    # A corrupt kernel file: its name gives the release (preflight passes), the kexec syscall refuses it.
    head -c 4194304 /dev/urandom > /tmp/vmlinuz-$rel; kernel=/tmp/vmlinuz-$rel
  fi
  mark prepare-start mode=$MODE uptime=$(cut -d' ' -f1 /proc/uptime)
  if [ $MODE = kill-after-dump ]; then export HANDOFF_TEST_STALL=after-dump HANDOFF_LOG=debug; fi
  handoff prepare --pid $W --kernel $kernel --initrd /boot/initrd.img --reuse-cmdline --append "handoff.boot=2" ${store} --exec > /tmp/prepare.out 2>&1 &
  P=$!
  if [ $MODE = kill-during-dump ]; then
    # While the memory is being written (the temporary image grows): before lock and sockets.
    i=0; until ls -a /var/lib/handoff/store /run/handoff 2>/dev/null | grep -q 'tree-.*\.tmp$'; do sleep 0.05; i=$((i+1)); [ $i -gt 2000 ] && break; done
    kill -9 $P; mark killed-prepare phase=dump
  elif [ $MODE = kill-after-dump ]; then
    i=0; until grep -q '^stalled' /tmp/prepare.out; do sleep 0.1; i=$((i+1)); [ $i -gt 1200 ] && break; done
    mark tables-before-kill $(nft list tables | tr '\n' ' ')
    kill -9 $P; mark killed-prepare phase=after-dump
  fi
  wait $P; rc=$?
  mark prepare-exit rc=$rc
  sed 's/^/prepare: /' /tmp/prepare.out
  # Only the abort paths get here: give the watchdog a moment, then report what is left.
  n=0; while [ -f /run/handoff/pending.json ] && [ $n -lt 100 ]; do sleep 0.1; n=$((n+1)); done
  mark after-abort tables=$(nft list tables | grep -c handoff) kexec_loaded=$(cat /sys/kernel/kexec_loaded) pending=$([ -f /run/handoff/pending.json ] && echo yes || echo no) workload=$(kill -0 $W 2>/dev/null && echo alive || echo gone)
  for p in $W $(cat /proc/$W/task/$W/children 2>/dev/null); do echo "workload $p: $(grep State /proc/$p/status)"; done
  netstat -tn 2>/dev/null | grep ':${WORKLOAD_PORT}'
  sed 's/^/watchdog: /' /run/handoff/watchdog.log 2>/dev/null
  mark abort-ready lines=$(lines)
  sleep 900
else
  mark report "$(tr -d '\n' < /run/handoff/last-report.json 2>/dev/null)"
  ls /var/lib/handoff | sed 's/^/store-dir: /'
  mark resumed-ps $(ps -o pid,comm 2>/dev/null | grep handoff-wo | tr -s ' ' | tr '\n' ',')
  sleep 900
fi
`;
}

/**
 * Under TCG a kexec'd kernel has now and then panicked in its own early ACPI initialisation
 * (acpi_bus_attach -> down_write on NULL), before any user space runs; with panic=-1 and
 * -no-reboot QEMU then just exits. Such a run may be retried once, loudly; nothing that
 * happened after the new kernel reached user space (booted boot=2) ever is.
 * Returns the panic line when `log` shows that, else undefined.
 */
export function newKernelPanickedEarly(log: string): string | undefined {
  if (/@@handoff booted [^\n]*boot=2/.test(log)) return undefined;
  const panic = /^.*Kernel panic - not syncing.*$/m.exec(log)?.[0];
  if (panic) return panic;
  // A triple fault of the new kernel ends QEMU (-no-reboot) without a word on the console.
  if (/@@handoff kexec-exec/.test(log)) return 'QEMU stopped after kexec -e and the new kernel never reached user space';
  return undefined;
}

/** One handoff in a guest, retried once for newKernelPanickedEarly. */
export async function runHandoff(options: HandoffRunOptions): Promise<HandoffRunResult> {
  try {
    return await runHandoffOnce(options);
  } catch (err) {
    const panic = newKernelPanickedEarly(String(err instanceof Error ? err.message : err));
    if (!panic) throw err;
    process.stderr.write(`runHandoff: the new kernel panicked before user space (${options.from} -> ${options.to}): ${panic.trim()}; retrying once\n`);
    return await runHandoffOnce(options);
  }
}

async function runHandoffOnce(options: HandoffRunOptions): Promise<HandoffRunResult> {
  const guest = await startGuest({
    kernel: options.from,
    script: guestScript(options),
    append: options.store === 'pmem' ? PMEM_APPEND : '',
    scratchMiB: 256,
    memoryMiB: 1024,
    hostForwards: [{ guestPort: WORKLOAD_PORT }],
    timeoutMs: options.timeoutMs ?? 420_000,
    onMarker: options.onMarker,
    onLine: options.onLine,
  });
  let peer: Peer | undefined;
  try {
    await guest.waitForMarker('workload-ready');
    peer = await Peer.connect(guest.forwards[0]!.hostPort);
    peer.start(100);
    options.onPeer?.(peer);
    const mode = options.mode ?? 'handoff';
    if (mode === 'handoff') {
      // The guest powers off only by our kill: resume-done (or QEMU dying) ends this wait.
      const first = await Promise.race([guest.waitForMarker('resume-done'), guest.waitForMarker('abort-ready')]);
      if (first.name === 'resume-done') await guest.waitForMarker('resumed-ps', undefined, 60_000).catch(() => undefined);
    } else {
      await guest.waitForMarker('abort-ready');
    }
    await peer.waitFor(options.afterResume ?? 20);
    const result = await peer.finish();
    const reportMarker = guest.markers.find((m) => m.name === 'report');
    let report: HandoffRunResult['report'];
    try {
      report = reportMarker?.text ? JSON.parse(reportMarker.text) : undefined;
    } catch {
      report = undefined;
    }
    const markers = guest.markers;
    return {
      markers,
      peer: result,
      report,
      log: guest.log(),
      find: (name, boot) => markers.find((m) => m.name === name && (boot === undefined || m.fields.boot === boot)),
    };
  } finally {
    guest.kill();
    await guest.done;
  }
}
