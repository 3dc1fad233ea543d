// A Node.js HTTP server (libuv: epoll, eventfd wake-ups, timers, a worker thread answering
// through message ports) handed off over IPv6 while a client in the peer namespace holds a
// keep-alive connection. The request sent while the server is gone is answered on the same
// connection (the server counts requests per socket), the worker thread still answers with its
// running count, the interval timer keeps ticking, and a new connection is served too.
import t from 'tap';
import { mkdtempSync, writeFileSync } from 'node:fs';
import { tmpdir } from 'node:os';
import { join } from 'node:path';
import { CLI_LOCK_TABLE, freePort, httpFrame, httpGet, imageSockets, networkTest, nftTables, parseHttp, type RelayPeer } from '../../lib/peers.js';
import { cleanup, dumpTarget, restoreImage, startTarget } from '../../lib/target.js';

const SERVER = `
import http from 'node:http';
import { Worker } from 'node:worker_threads';
const [host, port] = process.argv.slice(2);
let ticks = 0;
const interval = setInterval(() => ticks++, 10);
const worker = new Worker(
  "const { parentPort } = require('node:worker_threads'); let n = 0; parentPort.on('message', (m) => parentPort.postMessage({ n: ++n, echo: m }));",
  { eval: true },
);
const waiting = [];
worker.on('message', (m) => waiting.shift()(m));
const ask = (m) => new Promise((resolve) => { waiting.push(resolve); worker.postMessage(m); });
let connections = 0;
const server = http.createServer(async (req, res) => {
  const s = req.socket;
  s.handoffId ??= ++connections;
  s.handoffRequests = (s.handoffRequests ?? 0) + 1;
  const answer = await ask(req.url);
  const body = JSON.stringify({ pid: process.pid, connection: s.handoffId, request: s.handoffRequests, ticks, worker: answer });
  res.writeHead(200, { 'content-type': 'application/json', 'content-length': Buffer.byteLength(body) });
  res.end(body);
  if (req.url === '/exit') res.on('finish', () => { clearInterval(interval); worker.terminate().then(() => server.close()); server.closeAllConnections(); });
});
server.keepAliveTimeout = 600_000;
server.requestTimeout = 0;
server.headersTimeout = 600_000;
server.listen(Number(port), host, () => console.log('READY ' + process.pid));
`;

interface Reply {
  pid: number;
  connection: number;
  request: number;
  ticks: number;
  worker: { n: number; echo: string };
}

async function get(client: RelayPeer, path: string): Promise<Reply> {
  const r = parseHttp(await client.request(httpGet(path), httpFrame));
  if (r.status !== 200) throw new Error(`GET ${path}: ${r.status} ${r.body}`);
  return JSON.parse(r.body) as Reply;
}

t.test('a node HTTP server with a worker thread and timers serves the next request on a kept-alive connection after dump, kill and restore', (t) =>
  networkTest(t, async (ctx) => {
    const workDir = mkdtempSync(join(tmpdir(), 'handoff-node-http-'));
    t.teardown(() => cleanup(workDir));
    const script = join(workDir, 'server.mjs');
    writeFileSync(script, SERVER);
    const host = ctx.peers.host.v6;
    const port = await freePort();
    const server = ctx.track(await startTarget('node-http', { command: [process.execPath, script, host, String(port)], env: ctx.env, workDir }));

    const client = await ctx.relay(host, port);
    const first = await get(client, '/first');
    t.same([first.pid, first.request, first.worker], [server.pid, 1, { n: 1, echo: '/first' }], 'the first request is answered with the worker thread');

    const image = join(workDir, 'image.himg');
    await dumpTarget(server.pid, image);
    t.ok((await nftTables()).includes(CLI_LOCK_TABLE), 'the dump leaves the network locked');
    t.ok((await imageSockets(image)).some((s) => s.kind === 'tcp' && s.state === 'ESTABLISHED' && s.remote?.endsWith(`:${client.port}`)), 'the image holds the client connection');
    await server.kill();
    client.send(httpGet('/second'));

    const { running } = await restoreImage('node-http', server.pid, image, workDir);
    ctx.track(running);
    t.notOk((await nftTables()).includes(CLI_LOCK_TABLE), 'the restore removes the lock');
    const second = JSON.parse(parseHttp(await client.read(httpFrame)).body) as Reply;
    t.same([second.pid, second.connection, second.request], [server.pid, first.connection, 2], 'the request sent during the downtime is answered on the same connection as its second');
    t.same(second.worker, { n: 2, echo: '/second' }, 'the worker thread answers with its count continued');
    t.ok(second.ticks >= first.ticks, `the interval timer count did not go back (${first.ticks} -> ${second.ticks})`);
    let third = await get(client, '/third');
    for (let i = 0; i < 100 && third.ticks <= second.ticks; i++) {
      await new Promise((r) => setTimeout(r, 20));
      third = await get(client, '/third');
    }
    t.ok(third.ticks > second.ticks, 'the interval timer keeps ticking after the restore');
    t.equal(third.connection, first.connection, 'on the same connection');

    const other = await ctx.relay(host, port);
    const fresh = await get(other, '/fresh');
    t.not(fresh.connection, first.connection, 'a new connection to the restored listener is served as a new one');
    t.equal(fresh.request, 1);

    const bye = await get(client, '/exit');
    t.equal(bye.connection, first.connection);
    t.equal(await running.exitCode(), 0, 'the restored server exits cleanly once its handles are closed');
    await other.close();
  }),
);
