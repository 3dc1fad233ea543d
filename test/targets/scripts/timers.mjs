// node-timers: the real Node.js runtime with an interval timer, a long timeout, and worker
// threads extending SHA-256 chains. After SIGUSR1 the interval keeps ticking, new timers fire,
// the long timeout has not fired early, performance.now() has not gone back, and every worker
// answers with a chain the main thread recomputes. Same protocol as the C targets.
// HANDOFF_CORRUPT=chain breaks one worker's answer.
import { createHash } from 'node:crypto';
import { Worker } from 'node:worker_threads';

const WORKERS = 2;
const failures = [];
const sha = (b) => createHash('sha256').update(b).digest();
let ticks = 0;
const interval = setInterval(() => ticks++, 10);
let longFired = false;
const longTimer = setTimeout(() => (longFired = true), 3_600_000);
const before = performance.now();

const source = `
const { parentPort, workerData } = require('node:worker_threads');
const { createHash } = require('node:crypto');
let h = createHash('sha256').update(String(workerData)).digest();
let steps = 0;
let asked = false;
parentPort.on('message', () => { asked = true; });
function run() {
  for (let i = 0; i < 1000; i++) { h = createHash('sha256').update(h).digest(); steps++; }
  if (asked) parentPort.postMessage({ h: h.toString('hex'), steps });
  else setTimeout(run, 1);
}
run();
`;
const workers = Array.from({ length: WORKERS }, (_, i) => new Worker(source, { eval: true, workerData: i }));
await Promise.all(workers.map((w) => new Promise((res) => w.once('online', res))));

const signalled = new Promise((res) => process.on('SIGUSR1', res));
console.log(`READY ${process.pid}`);
await signalled;

const start = ticks;
await new Promise((res) => {
  const check = setInterval(() => {
    if (ticks >= start + 5) {
      clearInterval(check);
      res();
    }
  }, 5);
});
await new Promise((res) => setTimeout(res, 20));
if (performance.now() < before) failures.push('performance.now() went back');
if (longFired) failures.push('the one-hour timeout fired');
const answers = await Promise.all(workers.map((w) => new Promise((res) => { w.once('message', res); w.postMessage('report'); })));
if (process.env.HANDOFF_CORRUPT === 'chain') answers[1].h = answers[1].h.replace(/^./, (c) => (c === '0' ? '1' : '0'));
answers.forEach(({ h, steps }, i) => {
  let expect = sha(String(i));
  for (let s = 0; s < steps; s++) expect = sha(expect);
  if (expect.toString('hex') !== h) failures.push(`worker ${i} chain differs after ${steps} steps`);
});
clearInterval(interval);
clearTimeout(longTimer);
await Promise.all(workers.map((w) => w.terminate()));
console.log(failures.length ? `FAIL ${failures.join('; ')}` : 'PASS');
process.exit(failures.length ? 1 : 0);
