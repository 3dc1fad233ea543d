// Assertions shared by the handoff VM test files (test/vm/handoff-*.test.ts).
import { kernelRelease, type Series } from './qemu.js';
import type { HandoffRunResult } from './handoff-run.js';

interface Tap {
  equal(a: unknown, b: unknown, msg: string): void;
  ok(a: unknown, msg: string): void;
  same(a: unknown, b: unknown, msg: string): void;
  comment(...args: unknown[]): void;
  passing(): boolean;
}

/** A successful handoff: new kernel, every tree restored, session unbroken, state intact. */
export function checkHandoff(t: Tap, r: HandoffRunResult, from: Series, to: Series): void {
  t.equal(r.find('uname', '1')?.fields.release, kernelRelease(from), `boots on ${from}`);
  t.equal(r.find('uname', '2')?.fields.release, kernelRelease(to), `runs ${to} after the kexec`);
  t.equal(r.find('prepare-exit'), undefined, 'prepare did not come back (it jumped)');
  t.equal(r.find('resume-early')?.fields.rc, '0', 'the early step locked the network before the interfaces came up');
  t.equal(r.find('resume-done')?.fields.rc, '0', 'resume restored every tree');
  t.equal(r.report?.failed, 0, 'the report lists no failed tree');
  t.same(r.report?.trees?.map((x) => x.ok), [true], 'the workload tree was restored');
  t.equal(r.peer.broken, undefined, 'the TCP session was never reset or closed');
  t.same(r.peer.errors, [], 'every reply was right: counters of both processes continued, timer ticks never went back');
  t.ok((r.peer.verify ?? '').startsWith('verify ok'), `memory pattern and file contents intact (${r.peer.verify})`);
  t.ok(r.peer.replies.length > 30, `the session carried on after the resume (${r.peer.replies.length} requests)`);
  t.ok(typeof r.report?.blackoutMs === 'number' && r.report.blackoutMs > 0, 'the report measures the blackout');
  t.comment(`blackout ${((r.report?.blackoutMs ?? NaN) / 1000).toFixed(1)} s (report), longest reply wait seen by the peer ${(r.peer.longestGapMs / 1000).toFixed(1)} s`);
  if (!t.passing()) t.comment(r.log.split('\n').filter((l) => l.trim() && !l.startsWith('[')).slice(-60).join('\n'));
}

/** An aborted handoff: the workload ran on untouched and nothing of the prepare is left. */
export function checkAborted(t: Tap, r: HandoffRunResult): void {
  const after = r.find('after-abort');
  t.equal(r.find('uname', '2'), undefined, 'no kexec happened');
  t.equal(after?.fields.workload, 'alive', 'the workload is still running');
  t.equal(after?.fields.tables, '0', 'no nftables lock table is left');
  t.equal(after?.fields.kexec_loaded, '0', 'no kernel is left staged');
  t.equal(after?.fields.pending, 'no', 'no pending prepare is recorded');
  t.equal(r.peer.broken, undefined, 'the TCP session was never reset or closed');
  t.same(r.peer.errors, [], 'every reply was right');
  t.ok((r.peer.verify ?? '').startsWith('verify ok'), `memory pattern and file contents intact (${r.peer.verify})`);
  if (!t.passing()) t.comment(r.log.split('\n').filter((l) => l.trim() && !l.startsWith('[')).slice(-60).join('\n'));
}
