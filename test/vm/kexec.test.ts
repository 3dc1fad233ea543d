// End-to-end checks of the VM platform: a guest on 6.1 kexecs into 6.12, and a TCP peer on
// the host reaches a server inside the guest through the user-network port forward.
import t, { type Test } from 'tap';
import { connect } from 'node:net';
import { once } from 'node:events';
import { randomBytes } from 'node:crypto';
import { kernelRelease, prepareImages, runGuest, startGuest, type GuestOptions, type GuestResult, type Marker } from '../../vm-images/qemu.js';
import { newKernelPanickedEarly } from '../../vm-images/handoff-run.js';

const seconds = (ms: number) => (ms / 1000).toFixed(1) + ' s';

t.before(async () => {
  const started = performance.now();
  await prepareImages();
  t.comment(`images ready in ${seconds(performance.now() - started)}`);
});

/** runGuest, once more (said in the TAP output) if the kexec'd kernel panicked before user space. */
async function runKexecGuest(t: Test, options: GuestOptions): Promise<GuestResult> {
  const first = await runGuest(options);
  const panic = newKernelPanickedEarly(first.log);
  if (!panic || first.timedOut) return first;
  t.comment(`the kexec'd kernel panicked before user space (TCG): ${panic.trim()}; running the guest once more`);
  return runGuest(options);
}

t.test('a guest booted on 6.1 kexecs into 6.12 and its init runs again there', async (t) => {
  // HANDOFF_BOOT comes from handoff.boot= on the command line: 1 on the cold boot,
  // handoff-kexec passes 2 to the next kernel, so the script knows which side it is on.
  // memmap=64M!512M reserves RAM as legacy pmem on both kernels (handoff-kexec keeps the
  // command line): what the old kernel writes to /dev/pmem0 must be there after the kexec.
  const token = `kept-${randomBytes(8).toString('hex')}`;
  const script = `
echo "@@handoff uname release=$(uname -r) boot=$HANDOFF_BOOT"
if [ "$HANDOFF_BOOT" = 1 ]; then
  echo ${token} | dd of=/dev/pmem0 conv=fsync 2>/dev/null
  handoff-kexec 6.12 handoff.test=kexec
  echo "@@handoff kexec-failed rc=$?"
else
  echo "@@handoff cmdline $(cat /proc/cmdline)"
  echo "@@handoff pmem $(head -c ${token.length} /dev/pmem0)"
fi
`;
  const result = await runKexecGuest(t, { kernel: '6.1', script, append: 'memmap=64M!512M', memoryMiB: 1024, timeoutMs: 240_000 });
  const find = (name: string, boot?: string) => result.markers.find((m) => m.name === name && (boot === undefined || m.fields.boot === boot));
  t.equal(result.timedOut, false, 'QEMU ended before the timeout');
  t.equal(result.exitCode, 0, 'QEMU exited cleanly (guest powered off)');
  t.equal(find('kexec-failed'), undefined, 'kexec did not return');
  t.equal(find('uname', '1')?.fields.release, kernelRelease('6.1'), 'first boot runs 6.1');
  t.equal(find('uname', '2')?.fields.release, kernelRelease('6.12'), 'after the kexec the guest runs 6.12');
  t.match(find('cmdline')?.text ?? '', /handoff\.boot=2 .*handoff\.test=kexec/, 'the new kernel got the extra arguments');
  t.equal(result.markers.filter((m) => m.name === 'module-failed').length, 0, 'every module loaded on both kernels');
  t.equal(find('pmem')?.text, token, 'what 6.1 wrote to /dev/pmem0 is there on 6.12');
  t.equal(find('script-exit')?.fields.rc, '0', 'the script on 6.12 finished');

  const booted1 = find('booted', '1') as Marker;
  const kexecExec = find('kexec-exec') as Marker;
  const booted2 = find('booted', '2') as Marker;
  t.ok(booted1 && kexecExec && booted2, 'boot and kexec markers seen');
  if (booted1 && kexecExec && booted2) {
    t.comment(`boot 6.1: ${seconds(booted1.atMs)} to init (guest uptime ${booted1.fields.uptime} s)`);
    t.comment(`kexec load (media extract + kexec -s -l): ${seconds(kexecExec.atMs - booted1.atMs)} incl. script start`);
    t.comment(`kexec -e to init of 6.12: ${seconds(booted2.atMs - kexecExec.atMs)} (guest uptime ${booted2.fields.uptime} s)`);
    t.comment(`whole run: ${seconds(result.durationMs)}`);
  }
  if (!t.passing()) t.comment(result.log.split('\n').slice(-60).join('\n'));
});

t.test('a guest booted on 7.x kexecs down into 5.10, the oldest supported kernel', async (t) => {
  const script = `
echo "@@handoff uname release=$(uname -r) boot=$HANDOFF_BOOT"
if [ "$HANDOFF_BOOT" = 1 ]; then handoff-kexec 5.10; echo "@@handoff kexec-failed rc=$?"; fi
`;
  const result = await runKexecGuest(t, { kernel: '7', script, timeoutMs: 240_000 });
  const find = (name: string, boot?: string) => result.markers.find((m) => m.name === name && (boot === undefined || m.fields.boot === boot));
  t.equal(result.exitCode, 0, 'QEMU exited cleanly');
  t.equal(find('kexec-failed'), undefined, 'kexec did not return');
  t.equal(find('uname', '1')?.fields.release, kernelRelease('7'), 'first boot runs 7.x');
  t.equal(find('uname', '2')?.fields.release, kernelRelease('5.10'), 'after the kexec the guest runs 5.10');
  t.equal(result.markers.filter((m) => m.name === 'module-failed').length, 0, 'every module loaded on both kernels');
  const exec = find('kexec-exec');
  const booted2 = find('booted', '2');
  if (exec && booted2) t.comment(`kexec -e to init of 5.10: ${seconds(booted2.atMs - exec.atMs)}, whole run ${seconds(result.durationMs)}`);
  if (!t.passing()) t.comment(result.log.split('\n').slice(-60).join('\n'));
});

t.test('a TCP peer on the host talks to a server in the guest through the port forward', async (t) => {
  // The server (node, as the project's code will run in the guest) echoes each line and
  // stops after "bye"; it reports the peer address it saw.
  const server = String.raw`
const net = require('node:net');
const srv = net.createServer((s) => {
  console.log('@@handoff peer addr=' + s.remoteAddress);
  let buf = '';
  s.on('data', (d) => {
    buf += d;
    s.write(d);
    if (buf.includes('bye\n')) { s.end(); srv.close(); }
  });
});
srv.listen(7000, '0.0.0.0', () => console.log('@@handoff listening port=7000'));
`;
  const script = `cat > /tmp/echo.js <<'EOF'\n${server}\nEOF\nnode /tmp/echo.js\necho "@@handoff server-exit rc=$?"\n`;
  const guest = await startGuest({ kernel: '6.1', script, hostForwards: [{ guestPort: 7000 }], timeoutMs: 180_000 });
  try {
    await guest.waitForMarker('listening');
    const hostPort = guest.forwards[0]!.hostPort;
    const socket = connect({ host: '127.0.0.1', port: hostPort });
    await once(socket, 'connect');
    let received = '';
    socket.setEncoding('utf8');
    socket.on('data', (d: string) => (received += d));
    const ended = once(socket, 'end');
    socket.write('hello from the host\n');
    socket.write('bye\n');
    await ended;
    socket.destroy();
    t.equal(received, 'hello from the host\nbye\n', 'every byte came back through the forward');
    const peer = await guest.waitForMarker('peer');
    t.equal(peer.fields.addr, '10.0.2.2', 'the guest sees the host as the user-network gateway');
    const result = await guest.done;
    t.equal(result.markers.find((m) => m.name === 'server-exit')?.fields.rc, '0', 'the guest server exited cleanly');
    t.equal(result.exitCode, 0, 'QEMU exited cleanly');
    const booted = result.markers.find((m) => m.name === 'booted');
    t.comment(`boot to init ${seconds(booted?.atMs ?? NaN)}, whole run ${seconds(result.durationMs)}`);
    if (!t.passing()) t.comment(result.log.split('\n').slice(-60).join('\n'));
  } finally {
    guest.kill();
  }
});
