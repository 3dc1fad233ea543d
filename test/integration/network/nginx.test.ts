// nginx (a master and two workers, the listener shared between them, socketpair channels,
// workers under another uid) handed off with --tree while a client in the peer namespace holds
// a keep-alive connection. The next request, sent while nginx is gone, is answered on the same
// connection by the same worker as its second request; a new connection is served too; the
// restored master shuts down gracefully on SIGQUIT.
import t from 'tap';
import { mkdtempSync, writeFileSync } from 'node:fs';
import { tmpdir } from 'node:os';
import { join } from 'node:path';
import { CLI_LOCK_TABLE, freePort, httpFrame, httpGet, imageSockets, networkTest, nftTables, parseHttp, waitForListener, type RelayPeer } from '../../lib/peers.js';
import { cleanup, dumpTarget, restoreImage, startTarget } from '../../lib/target.js';

async function get(client: RelayPeer, path: string): Promise<{ status: number; body: Record<string, string> }> {
  const r = parseHttp(await client.request(httpGet(path), httpFrame));
  return { status: r.status, body: Object.fromEntries(r.body.trim().split(' ').map((kv) => kv.split('=') as [string, string])) };
}

t.test('nginx master and workers serve the next request on a kept-alive connection after dump --tree, kill and restore', (t) =>
  networkTest(t, async (ctx) => {
    const workDir = mkdtempSync(join(tmpdir(), 'handoff-nginx-'));
    t.teardown(() => cleanup(workDir));
    const host = ctx.peers.host.v4;
    const port = await freePort();
    const conf = join(workDir, 'nginx.conf');
    const temp = ['client_body', 'proxy', 'fastcgi', 'uwsgi', 'scgi'].map((k) => `  ${k}_temp_path ${join(workDir, k)};`);
    writeFileSync(
      conf,
      [
        'daemon off;',
        'master_process on;',
        'worker_processes 2;',
        'user www-data;',
        `pid ${join(workDir, 'nginx.pid')};`,
        `error_log ${join(workDir, 'error.log')} info;`,
        'events { worker_connections 64; }',
        'http {',
        `  access_log ${join(workDir, 'access.log')};`,
        ...temp,
        '  keepalive_timeout 600s;',
        '  keepalive_requests 1000;',
        '  server {',
        `    listen ${host}:${port};`,
        '    location / { default_type text/plain; return 200 "worker=$pid connection=$connection request=$connection_requests uri=$uri\\n"; }',
        '  }',
        '}',
        '',
      ].join('\n'),
    );
    const master = ctx.track(await startTarget('nginx', { command: ['nginx', '-p', workDir, '-c', conf, '-e', join(workDir, 'error.log')], noReady: true, env: ctx.env, workDir }));
    await waitForListener(host, port);

    const client = await ctx.relay(host, port);
    const first = await get(client, '/first');
    t.equal(first.status, 200);
    t.equal(first.body.request, '1', 'first request on the connection');
    t.equal(master.pids().length, 3, 'a master and two workers run');
    t.ok(master.pids().includes(Number(first.body.worker)), 'a worker of this nginx answers');

    const image = join(workDir, 'image.himg');
    await dumpTarget(master.pid, image);
    t.ok((await nftTables()).includes(CLI_LOCK_TABLE), 'the dump leaves the network locked');
    t.ok((await imageSockets(image)).some((s) => s.kind === 'tcp' && s.state === 'ESTABLISHED' && s.remote?.endsWith(`:${client.port}`)), 'the image holds the client connection');
    await master.kill();
    // Sent while there is no nginx: retransmitted into the lock until the restore.
    client.send(httpGet('/second'));

    const { running } = await restoreImage('nginx', master.pid, image, workDir);
    ctx.track(running);
    t.notOk((await nftTables()).includes(CLI_LOCK_TABLE), 'the restore removes the lock');
    t.equal(running.pids().length, 3, 'the master and both workers are back');
    const second = parseHttp(await client.read(httpFrame));
    t.equal(second.status, 200, 'the request sent during the downtime is answered');
    const body = Object.fromEntries(second.body.trim().split(' ').map((kv) => kv.split('=')));
    t.same(body, { worker: first.body.worker, connection: first.body.connection, request: '2', uri: '/second' }, 'by the same worker, on the same connection, as its second request');
    const third = await get(client, '/third');
    t.same(third.body, { worker: first.body.worker, connection: first.body.connection, request: '3', uri: '/third' }, 'and the connection keeps serving');

    const other = await ctx.relay(host, port);
    const fresh = await get(other, '/fresh');
    t.equal(fresh.status, 200, 'a new connection to the restored listener is served');
    t.equal(fresh.body.request, '1');
    await other.close();

    running.signal('SIGQUIT');
    t.equal(await running.exitCode(), 0, 'the restored master shuts down gracefully');
    const end = await client.process.waitLine((l) => /^(EOF|ERROR|CLOSED)/.test(l), 'end of the connection');
    t.equal(end, 'EOF', 'the idle keep-alive connection is closed with a FIN, not a reset');
  }),
);
