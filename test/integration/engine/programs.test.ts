// Real programs are restored mid-work and must finish with the right result.
import t from 'tap';
import { gzipPipeJob, roundTripJob, sha256sumJob } from '../../lib/programs.js';
import { PROGRAMS, cleanup, runRoundTrip, type ProgramName } from '../../lib/target.js';

t.test('sha256sum of a large file, restored mid-file, prints the right digest', async (t) => {
  const job = await sha256sumJob(256 << 20);
  const r = await roundTripJob(job);
  t.ok(r.positionAtDump > 0 && r.positionAtDump < job.size, `dumped mid-way (${r.positionAtDump} of ${job.size})`);
  t.equal(r.exitCode, 0, job.running.log());
  t.equal(r.problem, '', 'digest is right');
  job.release?.();
  cleanup(job.running.workDir);
});

t.test('gzip streaming from a pipe, restored twice mid-stream, writes output that unpacks to the input', async (t) => {
  const job = await gzipPipeJob(16 << 20, 64 << 10, 20_000);
  const r = await roundTripJob(job, { rounds: 2 });
  t.ok(r.positionAtDump > 0, `dumped mid-way (${r.positionAtDump} of ${job.size})`);
  t.equal(r.exitCode, 0, job.running.log());
  t.equal(r.problem, '', 'output unpacks to the input');
  cleanup(job.running.workDir);
});

for (const name of Object.keys(PROGRAMS) as ProgramName[]) {
  t.test(`${name} keeps its state across dump, kill and restore`, async (t) => {
    const r = await runRoundTrip(name, { settleMs: 500 });
    t.equal(r.verdict, 'PASS', `${name}: ${r.verdict}\n${r.log}`);
    cleanup(r.workDir);
  });
}
