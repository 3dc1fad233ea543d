// Every kernel of the test matrix boots the project's initramfs under QEMU and has what
// the handoff needs: its modules load, nft can install an inet drop rule, memmap= gives
// /dev/pmem0, node runs the project.
import t from 'tap';
import { SERIES, kernelRelease, prepareImages, runGuest } from '../../vm-images/qemu.js';

t.before(async () => {
  await prepareImages();
});

const script = `
mark() { echo "@@handoff $*"; }
mark uname release=$(uname -r)
nft add table inet handoff_test &&
  nft add chain inet handoff_test input '{ type filter hook input priority -300; policy accept; }' &&
  nft add rule inet handoff_test input ip saddr 10.0.2.2 tcp dport 7000 drop &&
  nft add rule inet handoff_test input ct state established counter accept &&
  mark nft rules=$(nft -j list chain inet handoff_test input | grep -o '"rule"' | wc -l)
[ -b /dev/pmem0 ] && mark pmem bytes=$(blockdev --getsize64 /dev/pmem0)
node /opt/handoff/bin/handoff.js --version >/tmp/version 2>&1 && mark node $(cat /tmp/version)
`;

for (const series of SERIES) {
  t.test(`kernel ${series} boots with its modules, nftables, pmem and node`, async (t) => {
    const result = await runGuest({ kernel: series, script, append: 'memmap=64M!512M', timeoutMs: 180_000 });
    const find = (name: string) => result.markers.find((m) => m.name === name);
    t.equal(result.exitCode, 0, 'QEMU exited cleanly');
    t.equal(find('uname')?.fields.release, kernelRelease(series), `guest runs ${kernelRelease(series)}`);
    t.same(result.markers.filter((m) => m.name === 'module-failed').map((m) => m.text), [], 'every module loaded');
    t.equal(find('nft')?.fields.rules, '2', 'nft installed an inet drop rule and a conntrack rule');
    t.equal(find('pmem')?.fields.bytes, String(64 << 20), 'memmap=64M!512M gives a 64 MiB /dev/pmem0');
    t.match(find('node')?.text ?? '', /^handoff \d+\.\d+\.\d+/, 'node runs the project CLI');
    t.comment(`${series}: init at ${((find('booted')?.atMs ?? NaN) / 1000).toFixed(1)} s, whole run ${(result.durationMs / 1000).toFixed(1)} s`);
    if (!t.passing()) t.comment(result.log.split('\n').slice(-30).join('\n'));
  });
}
