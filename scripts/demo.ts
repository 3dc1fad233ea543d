// npm run demo: a kexec kernel upgrade under a live TCP session, in a QEMU guest.
// Boots Debian's 6.1 kernel, starts handoff-workload (memory, a file, pipes to a child,
// a timer, a TCP server), talks to it from this host through the port forward checking
// every reply, runs `handoff prepare --exec` into 6.12 in the guest, and the new kernel's
// init runs `handoff resume`. Prints what happened; exits 1 if anything did not work.
import { runHandoff } from '../vm-images/handoff-run.js';
import { kernelRelease, type Marker, type Series } from '../vm-images/qemu.js';
import type { Peer } from '../vm-images/peer.js';

const from = (process.env.DEMO_FROM ?? '6.1') as Series;
const to = (process.env.DEMO_TO ?? '6.12') as Series;
const store = (process.env.DEMO_STORE ?? 'pmem') as 'file' | 'pmem';
const s = (ms: number) => `${(ms / 1000).toFixed(1)} s`;
const say = (text: string) => process.stdout.write(text + '\n');

say(`handoff demo: ${from} (${kernelRelease(from)}) -> ${to} (${kernelRelease(to)}), image store: ${store === 'pmem' ? 'RAM (/dev/pmem0)' : 'file on disk'}`);
say('QEMU under TCG is slow: a boot takes ~10 s, the whole demo 1-2 minutes.\n');

let peer: Peer | undefined;
let lastShown = 0;
const ticker = setInterval(() => {
  if (!peer) return;
  const last = peer.result.replies.at(-1);
  if (last && last.n >= lastShown + 25) {
    lastShown = last.n;
    say(`  host peer: request ${last.n} -> reply "${last.n} ${last.parent} ${last.child} ${last.ticks}" (parent counter, child counter, timer ticks)`);
  }
}, 500);

const onMarker = (m: Marker) => {
  const at = s(m.atMs);
  switch (m.name) {
    case 'uname': say(`[${at}] guest boot ${m.fields.boot}: uname -r = ${m.fields.release}`); break;
    case 'workload-ready': say(`[${at}] workload running: pid ${m.fields.pid} (child ${m.fields.child}), TCP port ${m.fields.port}; host peer connecting`); break;
    case 'prepare-start': say(`[${at}] handoff prepare --exec: preflight, stage ${to}, freeze, lock, dump, kexec`); break;
    case 'resume-early': say(`[${at}] new kernel: handoff resume --early (network lock) rc=${m.fields.rc}`); break;
    case 'resume-done': say(`[${at}] new kernel: handoff resume rc=${m.fields.rc}`); break;
    case 'prepare-exit': say(`[${at}] prepare came back with rc=${m.fields.rc}: no kexec happened`); break;
    case 'resumed-ps': say(`[${at}] processes after resume: ${m.text}`); break;
  }
};

const onLine = (line: string) => {
  // The resume report as the guest printed it.
  if (/^(handoff resume|  (tree|old kernel|new kernel|frozen at|store kept))/.test(line.replace(/\r$/, ''))) say(`  guest| ${line.replace(/\r$/, '')}`);
  if (/^prepare: /.test(line)) say(`  guest| ${line.replace(/\r$/, '')}`);
};

const result = await runHandoff({ from, to, store, onMarker, onLine, onPeer: (p) => (peer = p) });
clearInterval(ticker);

const before = result.find('uname', '1')?.fields.release;
const after = result.find('uname', '2')?.fields.release;
const tree = result.report?.trees?.[0];
const problems: string[] = [];
if (after !== kernelRelease(to)) problems.push(`the guest did not come up on ${to} (${after ?? 'no second boot'})`);
if (!tree?.ok) problems.push(`the workload was not restored: ${tree?.error?.message ?? 'no resume report'}`);
if (result.peer.broken) problems.push(`the TCP session broke: ${result.peer.broken}`);
if (result.peer.errors.length) problems.push(`wrong replies: ${result.peer.errors.slice(0, 3).join('; ')}`);
if (!(result.peer.verify ?? '').startsWith('verify ok')) problems.push(`workload self-check: ${result.peer.verify ?? 'not answered'}`);

say('\nSummary');
say(`  kernel before: ${before}`);
say(`  kernel after:  ${after ?? '(none)'}`);
say(`  TCP session:   ${result.peer.replies.length} requests, every reply checked, ${result.peer.broken ? `BROKEN (${result.peer.broken})` : 'never reset'}`);
say(`  workload:      ${result.peer.verify ?? '(no answer)'} (memory pattern, file contents, counters of parent and child)`);
if (result.report?.blackoutMs !== undefined) say(`  blackout:      ${s(result.report.blackoutMs)} from freeze to running (guest clocks), longest wait seen by the host peer ${s(result.peer.longestGapMs)}`);
if (problems.length) {
  say('\nDEMO FAILED:');
  for (const p of problems) say(`  - ${p}`);
  process.exit(1);
}
say('\nDEMO OK: the processes and their TCP session moved to the new kernel.');
process.exit(0);
