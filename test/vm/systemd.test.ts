// A kernel upgrade where systemd is PID 1 (vm-images/build-systemd-rootfs.sh: Debian bookworm
// from debootstrap, booted from /dev/vda): a service started by its unit is handed off by unit
// name, `handoff prepare --exec` goes through `systemctl kexec`, and on the new kernel the
// shipped units (installed by prepare) lock the network early and resume the service. Its
// workload carries on with its state and its TCP session with a peer on the host, and its
// processes are back in the unit's cgroup: `systemctl status` lists them, `systemctl stop`
// stops them.
import t from 'tap';
import { join } from 'node:path';
import { CACHE_DIR, kernelRelease, prepareImages, startGuest, type Marker } from '../../vm-images/qemu.js';
import { Peer, type PeerResult } from '../../vm-images/peer.js';

const FROM = '6.1';
const TO = '6.12';
const UNIT = 'handoff-test-workload.service';
const PORT = 7000;
const AFTER_RESUME = 30;

const script = String.raw`
mark() { echo "@@handoff $*"; }
up() { cut -d' ' -f1 /proc/uptime; }
lines() { if [ -f /var/lib/handoff/work/log.txt ]; then wc -l < /var/lib/handoff/work/log.txt; else echo 0; fi; }
wait_lines() { i=0; while [ "$(lines)" -lt "$1" ]; do sleep 0.2; i=$((i+1)); if [ $i -gt 900 ]; then mark peer-missing lines=$(lines); return 1; fi; done; }
U=${UNIT}
mark uname release=$(uname -r) boot=$HANDOFF_BOOT init=$(cat /proc/1/comm)
if [ "$HANDOFF_BOOT" = 1 ]; then
  mkdir -p /var/lib/handoff/work
  # Workload pids well above what the next boot uses before its resume (restore needs them free).
  echo 5000 > /proc/sys/kernel/ns_last_pid
  systemctl enable $U 2>/dev/null
  systemctl start $U
  mark unit-started state=$(systemctl is-active $U) main=$(systemctl show -p MainPID --value $U) cgroup=$(systemctl show -p ControlGroup --value $U)
  wait_lines 10 || exit 1
  mark prepare-start uptime=$(up)
  rel=$(cat /boot/series/${TO})
  handoff prepare --unit $U --kernel /boot/vmlinuz-$rel --initrd /boot/initrd.img --reuse-cmdline --append handoff.boot=2 \
    --image /var/lib/handoff/store --exec > /var/lib/handoff/prepare.out 2>&1
  mark prepare-exit rc=$?
  sed 's/^/prepare: /' /var/lib/handoff/prepare.out
  exit 1
fi
mono() { systemctl show -p "$2" --value "$1"; }
for u in handoff-resume-early handoff-resume; do
  mark unit-$u state=$(systemctl is-active $u.service) result=$(mono $u.service Result) startUs=$(mono $u.service ExecMainStartTimestampMonotonic) endUs=$(mono $u.service ExecMainExitTimestampMonotonic)
done
mark prepare-kexec $(grep '^kexec:' /var/lib/handoff/prepare.out | tr -d ' ')
mark report "$(tr -d '\n' < /run/handoff/last-report.json 2>/dev/null)"
resumed=$(lines)
procs=$(tr '\n' ',' < /sys/fs/cgroup$(mono $U ControlGroup)/cgroup.procs 2>/dev/null)
mark unit-resumed state=$(systemctl is-active $U) sub=$(mono $U SubState) main=$(mono $U MainPID) cgroup=$(mono $U ControlGroup) procs=$procs workload=$(pgrep -d, -f '^/usr/local/bin/handoff-workload')
systemctl status --no-pager --full --lines=0 $U 2>&1 | sed 's/^/status: /'
mark held hold=$(test -e /etc/systemd/system/$U.d/handoff-hold.conf && echo present || echo gone) enabled=$(systemctl is-enabled $U)
mark status-listed pids=$(systemctl status --no-pager --full --lines=0 $U 2>&1 | grep -o '[0-9]* /usr/local/bin/handoff-workload' | cut -d' ' -f1 | tr '\n' ',')
# The host peer goes on for a while, then asks for "verify" and says "bye".
wait_lines $((resumed + ${AFTER_RESUME})) || exit 1
i=0; while ss -Htn state established "( sport = :${PORT} )" | grep -q .; do sleep 0.2; i=$((i+1)); [ $i -gt 600 ] && break; done
systemctl stop $U
sleep 0.5
mark unit-stopped state=$(systemctl is-active $U) workload=$(pgrep -c -f '^/usr/local/bin/handoff-workload') lines=$(lines)
`;

t.before(async () => {
  const started = performance.now();
  await prepareImages({ systemd: true });
  t.comment(`images ready in ${((performance.now() - started) / 1000).toFixed(1)} s`);
});

t.test(`a systemd service is handed off by unit name from ${FROM} to ${TO} through systemctl kexec and resumed by the shipped unit`, async (t) => {
  const guest = await startGuest({
    kernel: FROM,
    script,
    initrd: join(CACHE_DIR, 'systemd', 'initrd.img'),
    media: null,
    rootDisk: join(CACHE_DIR, 'systemd', 'disk.img'),
    append: 'root=/dev/vda',
    memoryMiB: 1024,
    hostForwards: [{ guestPort: PORT }],
    timeoutMs: 420_000,
  });
  let peer: Peer | undefined;
  let result: PeerResult | undefined;
  try {
    await guest.waitForMarker('workload-ready');
    peer = await Peer.connect(guest.forwards[0]!.hostPort);
    peer.start(100);
    await guest.waitForMarker('status-listed');
    await peer.waitFor(AFTER_RESUME);
    result = await peer.finish();
    await guest.waitForMarker('unit-stopped', undefined, 120_000);
  } finally {
    // The guest powers itself off after the stop; give it a minute (the timer must not keep this process alive).
    let timer: NodeJS.Timeout | undefined;
    const done = await Promise.race([guest.done, new Promise((ok) => (timer = setTimeout(ok, 60_000))).then(() => undefined)]);
    clearTimeout(timer);
    if (!done) guest.kill();
  }
  const { durationMs } = await guest.done;
  const log = guest.log();
  const markers = guest.markers;
  const find = (name: string, boot?: string) => markers.find((m) => m.name === name && (boot === undefined || m.fields.boot === boot));

  t.same([find('uname', '1')?.fields.release, find('uname', '1')?.fields.init], [kernelRelease(FROM), 'systemd'], `boots ${FROM} with systemd as PID 1`);
  const started = find('unit-started');
  t.equal(started?.fields.state, 'active', 'the service runs, started by its unit');
  t.equal(started?.fields.cgroup, `/system.slice/${UNIT}`, 'in its own cgroup');
  t.equal(find('prepare-exit'), undefined, 'prepare did not come back (the system went down into the new kernel)');
  t.match(find('prepare-kexec')?.text ?? '', /"how":"systemd"/, 'prepare jumped through systemctl kexec');
  t.same([find('uname', '2')?.fields.release, find('uname', '2')?.fields.init], [kernelRelease(TO), 'systemd'], `runs ${TO} with systemd after the kexec`);

  const early = find('unit-handoff-resume-early');
  const main = find('unit-handoff-resume');
  t.same([early?.fields.state, early?.fields.result], ['active', 'success'], 'the shipped early unit ran (network lock before the interfaces)');
  t.same([main?.fields.state, main?.fields.result], ['active', 'success'], 'the shipped resume unit ran');
  let report: { failed?: number; trees?: { ok: boolean; units?: string[]; pids: number[] }[]; blackoutMs?: number; phases?: Record<string, unknown> } | undefined;
  try {
    report = JSON.parse(find('report')?.text ?? '');
  } catch {
    report = undefined;
  }
  t.equal(report?.failed, 0, 'the resume report lists no failed tree');
  t.same(report?.trees?.map((x) => x.ok), [true], 'the service tree was restored');
  t.same(report?.trees?.[0]?.units, [UNIT], 'resume started the unit again to take its processes back');

  const resumed = find('unit-resumed');
  const restoredPids = (report?.trees?.[0]?.pids ?? []).map(String).sort();
  t.same([resumed?.fields.state, resumed?.fields.sub], ['active', 'running'], 'the unit is active (running) again');
  t.equal(resumed?.fields.main, String(report?.trees?.[0]?.pids[0]), 'with the restored workload as its main process');
  t.equal(resumed?.fields.cgroup, `/system.slice/${UNIT}`, 'with its cgroup');
  t.same((resumed?.fields.procs ?? '').split(',').filter(Boolean).sort(), restoredPids, 'every restored process is in the unit\'s cgroup, and nothing else');
  t.same((find('status-listed')?.fields.pids ?? '').split(',').filter(Boolean).sort(), restoredPids, 'systemctl status lists the restored processes');
  t.equal(restoredPids.length, 2, 'the workload and its child');
  // Enabled, it would have started afresh on the resume boot and taken the restore's port.
  t.same([find('held')?.fields.hold, find('held')?.fields.enabled], ['gone', 'enabled'], 'the enabled unit was held off the resume boot, and the hold is gone after the resume');

  t.equal(result?.broken, undefined, 'the TCP session was never reset or closed');
  t.same(result?.errors, [], 'every reply was right: counters of both processes continued, timer ticks never went back');
  t.ok((result?.verify ?? '').startsWith('verify ok'), `memory pattern and file contents intact (${result?.verify})`);
  t.ok((result?.replies.length ?? 0) > AFTER_RESUME, `the session carried on after the resume (${result?.replies.length} requests)`);

  const stopped = find('unit-stopped');
  t.equal((resumed?.fields.workload ?? '').split(',').filter(Boolean).length, 2, 'both workload processes run before the stop');
  t.same([stopped?.fields.state, stopped?.fields.workload], ['inactive', '0'], 'systemctl stop stops the restored processes');

  // Time per phase, host clock (marker arrival) and guest clocks (uptime, unit timestamps).
  const at = (m: Marker | undefined) => (m ? (m.atMs / 1000).toFixed(1) : '-');
  const boot2 = find('booted', '2');
  const kernel2AtMs = boot2 ? boot2.atMs - Number(boot2.fields.uptime) * 1000 : NaN;
  const s = (us: string | undefined) => (Number(us) / 1e6).toFixed(1);
  t.comment(
    [
      `host time: cold boot to driver ${at(find('booted', '1'))} s, workload ready ${at(find('workload-ready'))} s, prepare start ${at(find('prepare-start'))} s,`,
      `  new kernel started ${(kernel2AtMs / 1000).toFixed(1)} s (prepare + systemd shutdown + kexec ${((kernel2AtMs - (find('prepare-start')?.atMs ?? NaN)) / 1000).toFixed(1)} s), driver on ${TO} ${at(boot2)} s, QEMU total ${(durationMs / 1000).toFixed(1)} s`,
      `${TO} uptime: early unit ${s(early?.fields.startUs)}-${s(early?.fields.endUs)} s, resume unit ${s(main?.fields.startUs)}-${s(main?.fields.endUs)} s, driver ${boot2?.fields.uptime} s`,
      `blackout ${((report?.blackoutMs ?? NaN) / 1000).toFixed(1)} s (report), longest reply wait seen by the peer ${((result?.longestGapMs ?? NaN) / 1000).toFixed(1)} s`,
      `resume report phases ${JSON.stringify(report?.phases)}`,
    ].join('\n'),
  );
  if (!t.passing()) t.comment(log.split('\n').filter((l) => l.trim()).slice(-120).join('\n'));
});
