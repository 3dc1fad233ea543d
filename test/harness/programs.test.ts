// Self-check of the real-program jobs without the dump/restore engine: each job is caught
// mid-way through its input, then finishes on its own with the right output; a damaged output
// is reported.
import t, { type Test } from 'tap';
import { appendFileSync, writeFileSync } from 'node:fs';
import { gzipPipeJob, sha256sumJob, type Job } from '../lib/programs.js';
import { cleanup } from '../lib/target.js';

async function finishes(t: Test, job: Job) {
  const pos = await job.midway();
  t.ok(pos > 0 && pos < job.size, `caught mid-way (${pos} of ${job.size})`);
  t.equal(await job.running.exitCode(300_000), 0, job.running.log());
  await job.running.reap();
  t.equal(await job.verify(), '', 'output is right');
}

t.test('sha256sum of a large file is caught mid-way and prints the right digest', async (t) => {
  const job = await sha256sumJob(256 << 20);
  await finishes(t, job);
  writeFileSync(`${job.running.workDir}/sha256sum.out`, `${'0'.repeat(64)}  x\n`);
  t.match(await job.verify(), /expected/, 'a wrong digest is reported');
  cleanup(job.running.workDir);
});

t.test('gzip fed through a pipe is caught mid-way and its output unpacks to the input', async (t) => {
  const job = await gzipPipeJob(8 << 20, 256 << 10, 2000);
  await finishes(t, job);
  appendFileSync(`${job.running.workDir}/out.gz`, 'garbage');
  t.not(await job.verify(), '', 'a damaged output is reported');
  cleanup(job.running.workDir);
});
