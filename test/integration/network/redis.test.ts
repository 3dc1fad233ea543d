// redis-server handed off in the middle of a conversation: a client in the peer namespace holds
// one connection (RESP spoken directly), has filled a dataset and opened a MULTI transaction.
// While the server is dumped and gone it sends another request on that connection. After the
// restore the same connection answers that request, completes the transaction, and still has
// its identity (CLIENT ID, name); the dataset is all there; a new connection works too.
import t from 'tap';
import { createHash, randomBytes } from 'node:crypto';
import { mkdtempSync, writeFileSync } from 'node:fs';
import { tmpdir } from 'node:os';
import { join } from 'node:path';
import { CLI_LOCK_TABLE, freePort, imageSockets, networkTest, nftTables, parseResp, resp, respFrame, waitForListener, type RelayPeer } from '../../lib/peers.js';
import { cleanup, dumpTarget, restoreImage, startTarget } from '../../lib/target.js';

const KEYS = 2000;
const value = (i: number) => `value-${i}-${'x'.repeat(i % 97)}`;

async function call(client: RelayPeer, ...args: (string | number)[]): Promise<unknown> {
  return parseResp(await client.request(resp(...args), respFrame));
}

t.test('redis-server keeps its client connection, the open transaction and the dataset across dump, kill and restore', (t) =>
  networkTest(t, async (ctx) => {
    const workDir = mkdtempSync(join(tmpdir(), 'handoff-redis-'));
    t.teardown(() => cleanup(workDir));
    const host = ctx.peers.host.v4;
    const port = await freePort();
    // Nothing the engine cannot hand off: no fork for persistence, no unix socket, no daemon.
    const conf = join(workDir, 'redis.conf');
    writeFileSync(conf, [`bind ${host}`, `port ${port}`, 'protected-mode no', 'daemonize no', 'supervised no', 'save ""', 'appendonly no', `dir ${workDir}`, `logfile ${join(workDir, 'redis.log')}`, ''].join('\n'));
    const server = ctx.track(await startTarget('redis-server', { command: ['redis-server', conf], noReady: true, env: ctx.env, workDir }));
    await waitForListener(host, port);

    const client = await ctx.relay(host, port);
    t.equal(await call(client, 'CLIENT', 'SETNAME', 'handoff-client'), 'OK', 'the client names its connection');
    const clientId = await call(client, 'CLIENT', 'ID');
    for (let i = 0; i < KEYS; i += 200) {
      const pairs = Array.from({ length: 200 }, (_, k) => [`key:${i + k}`, value(i + k)]).flat();
      t.equal(await call(client, 'MSET', ...pairs), 'OK', `keys ${i}..${i + 199} stored`);
    }
    const blob = randomBytes(512 * 1024).toString('base64');
    t.equal(await call(client, 'SET', 'blob', blob), 'OK');
    t.equal(await call(client, 'HSET', 'hash', 'a', '1', 'b', '2'), 2);
    t.equal(await call(client, 'RPUSH', 'list', 'one', 'two', 'three'), 3);
    t.equal(await call(client, 'SET', 'expiring', 'soon', 'EX', 3600), 'OK');
    t.equal(await call(client, 'MULTI'), 'OK', 'a transaction is open at dump time');
    t.equal(await call(client, 'SET', 'in-transaction', 'committed'), 'QUEUED');
    t.equal(await call(client, 'INCR', 'counter'), 'QUEUED');

    const image = join(workDir, 'image.himg');
    await dumpTarget(server.pid, image);
    t.ok((await nftTables()).includes(CLI_LOCK_TABLE), 'the dump leaves the network locked');
    t.ok((await imageSockets(image)).some((s) => s.kind === 'tcp' && s.state === 'ESTABLISHED' && s.remote?.endsWith(`:${client.port}`)), 'the image holds the client connection');
    await server.kill();
    // Sent while there is no server: retransmitted into the lock until the restore.
    client.send(resp('EXEC'));

    const { running } = await restoreImage('redis-server', server.pid, image, workDir);
    ctx.track(running);
    t.notOk((await nftTables()).includes(CLI_LOCK_TABLE), 'the restore removes the lock');
    t.same(parseResp(await client.read(respFrame)), ['OK', 1], 'the transaction queued before the dump completes with the EXEC sent during the downtime');
    t.equal(await call(client, 'PING'), 'PONG', 'the same connection answers PING');
    t.equal(await call(client, 'CLIENT', 'ID'), clientId, 'the server sees the same client connection');
    t.equal(await call(client, 'CLIENT', 'GETNAME'), 'handoff-client');
    t.equal(await call(client, 'DBSIZE'), KEYS + 6, 'no key is missing or extra');
    const keys = Array.from({ length: KEYS }, (_, i) => `key:${i}`);
    t.same(await call(client, 'MGET', ...keys), keys.map((_, i) => value(i)), `all ${KEYS} keys hold their values`);
    const sha = (s: unknown) => createHash('sha256').update(String(s)).digest('hex');
    t.equal(sha(await call(client, 'GET', 'blob')), sha(blob), 'the 512 KiB value is intact');
    t.same(await call(client, 'HGETALL', 'hash'), ['a', '1', 'b', '2']);
    t.same(await call(client, 'LRANGE', 'list', 0, -1), ['one', 'two', 'three']);
    const ttl = (await call(client, 'TTL', 'expiring')) as number;
    t.ok(ttl > 0 && ttl <= 3600, `the expiring key still has its time to live (${ttl} s)`);

    const second = await ctx.relay(host, port);
    t.equal(await call(second, 'GET', 'in-transaction'), 'committed', 'a new connection to the restored listener sees the committed transaction');
    await second.close();

    client.send(resp('SHUTDOWN', 'NOSAVE'));
    t.equal(await running.exitCode(), 0, 'the restored redis shuts down cleanly');
    const end = await client.process.waitLine((l) => /^(EOF|ERROR|CLOSED)/.test(l), 'end of the connection');
    t.equal(end, 'EOF', 'the server closes the connection with a FIN, not a reset');
  }),
);
