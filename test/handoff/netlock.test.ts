// The network lock really drops a connection's packets (both directions) and listener ports,
// unlock removes every trace, and no table of ours survives any test.
import t from 'tap';
import { execa } from 'execa';
import { fileURLToPath } from 'node:url';
import { closeFd } from '../../src/native/fd.js';
import * as S from '../../src/native/socket.js';
import { INJECT_MARK, droppedPackets, isLocked, listTables, lock, rulesetText, unlock } from '../../src/handoff/netlock.js';
import { createNetnsPair, LineWatcher, uniqueTag } from '../lib/netns.js';
import { fdInfoOf } from '../lib/socket-context.js';

const ECHO_PEER = `
import socket, sys
host, port = sys.argv[1], int(sys.argv[2])
s = socket.socket(socket.AF_INET6 if ':' in host else socket.AF_INET)
s.setsockopt(socket.SOL_SOCKET, socket.SO_REUSEADDR, 1)
s.bind((host, port)); s.listen(1)
print('listening', flush=True)
c, _ = s.accept()
for line in sys.stdin:
    c.sendall(line.encode()); print('sent', flush=True)
`;

const HOLDER = `
import socket, sys
host, port = sys.argv[1], int(sys.argv[2])
s = socket.create_connection((host, port))
print('fd', s.fileno(), flush=True)
sys.stdin.read()
`;

const LISTENER = `
import socket, sys
host, port = sys.argv[1], int(sys.argv[2])
s = socket.socket(socket.AF_INET6 if ':' in host else socket.AF_INET)
s.bind((host, port)); s.listen(5)
print('fd', s.fileno(), flush=True)
sys.stdin.read()
`;

// Accepts every connection and echoes each line back.
const ACCEPTOR = `
import socket, sys, threading
host, port = sys.argv[1], int(sys.argv[2])
s = socket.socket(socket.AF_INET6 if ':' in host else socket.AF_INET)
s.setsockopt(socket.SOL_SOCKET, socket.SO_REUSEADDR, 1)
s.bind((host, port)); s.listen(5)
print('listening', flush=True)
def echo(c):
    for line in c.makefile('rb'):
        c.sendall(line)
while True:
    c, _ = s.accept()
    threading.Thread(target=echo, args=(c,), daemon=True).start()
`;

// Connects, then on "go" sends its name and prints the echo.
const CLIENT = `
import socket, sys
s = socket.create_connection((sys.argv[1], int(sys.argv[2])))
print('connected', flush=True)
sys.stdin.readline()
s.sendall(sys.argv[3].encode() + b'\\n')
print('echo', s.makefile('rb').readline().decode().strip(), flush=True)
`;

async function until(cond: () => boolean | Promise<boolean>): Promise<void> {
  while (!(await cond())) await new Promise((r) => setTimeout(r, 20));
}

t.test('the network lock', async (t) => {
  const pair = await createNetnsPair();
  t.teardown(() => pair.destroy());
  const tablesBefore = await listTables({ netns: pair.local });

  for (const family of ['inet', 'inet6'] as const) {
    await t.test(`drops both directions of a locked ${family} connection until unlocked`, async (t) => {
      const opts = { table: `handoff_t${uniqueTag()}`, netns: pair.local };
      t.teardown(async () => {
        await unlock(opts);
      });
      const addrs = family === 'inet' ? pair.v4 : pair.v6;
      const port = 20000 + Math.floor(Math.random() * 20000);
      const peer = pair.spawn(pair.peer, 'python3', ['-c', ECHO_PEER, addrs.peer, String(port)]);
      const peerOut = new LineWatcher(peer.stdout!);
      await peerOut.waitFor('listening');
      const holder = pair.spawn(pair.local, 'python3', ['-c', HOLDER, addrs.peer, String(port)]);
      const fd = Number((await new LineWatcher(holder.stdout!).waitFor('fd')).split(' ')[1]);
      const info = fdInfoOf(holder.pid!, fd);
      t.teardown(() => {
        closeFd(info.localFd);
        holder.kill('SIGKILL');
        peer.kill('SIGKILL');
      });
      const local = S.getsockname(info.localFd) as { address: string; port: number };
      const remote = S.getpeername(info.localFd) as { address: string; port: number };

      t.equal(await isLocked(opts), false);
      await lock({ connections: [{ local, remote }] }, opts);
      t.equal(await isLocked(opts), true, 'locked');
      t.ok((await listTables({ netns: pair.local })).includes(`inet ${opts.table}`), 'our table exists');

      // Incoming: the peer's segment hits the drop rule and never reaches the socket.
      peer.stdin!.write('ping\n');
      await peerOut.waitFor('sent');
      await until(async () => ((await droppedPackets(opts)) ?? 0) >= 1);
      t.equal(S.ioctlInt(info.localFd, S.SIOCINQ), 0, 'peer data did not arrive while locked');
      // Outgoing: our segment is dropped too, so it stays unacknowledged in the send queue.
      const before = (await droppedPackets(opts))!;
      S.sendAll(info.localFd, Buffer.from('pong\n'));
      await until(async () => ((await droppedPackets(opts)) ?? 0) > before);
      t.equal(S.ioctlInt(info.localFd, S.SIOCOUTQ), 5, 'our data stays unacknowledged while locked');

      t.equal(await unlock(opts), true, 'unlock removes the table');
      t.equal(await isLocked(opts), false);
      t.notOk((await listTables({ netns: pair.local })).includes(`inet ${opts.table}`), 'table gone');
      await until(() => S.ioctlInt(info.localFd, S.SIOCINQ) === 5 && S.ioctlInt(info.localFd, S.SIOCOUTQ) === 0);
      t.pass('after unlock the retransmissions get through both ways');
      t.equal(await unlock(opts), false, 'a second unlock finds nothing');
    });
  }

  await t.test('drops SYNs to a locked port without resetting them', async (t) => {
    const opts = { table: `handoff_t${uniqueTag()}`, netns: pair.local };
    t.teardown(async () => {
      await unlock(opts);
    });
    const port = 20000 + Math.floor(Math.random() * 20000);
    const listener = pair.spawn(pair.local, 'python3', ['-c', LISTENER, pair.v4.local, String(port)]);
    const fd = Number((await new LineWatcher(listener.stdout!).waitFor('fd')).split(' ')[1]);
    const info = fdInfoOf(listener.pid!, fd);
    await lock({ connections: [], ports: [port] }, opts);
    const client = pair.spawn(pair.peer, 'python3', ['-c', `import socket; s = socket.create_connection(('${pair.v4.local}', ${port})); print('connected', flush=True)`]);
    const clientOut = new LineWatcher(client.stdout!);
    await until(async () => ((await droppedPackets(opts)) ?? 0) >= 1);
    t.equal(S.tcpInfo(info.localFd).unacked, 0, 'no connection reached the listener while locked');
    await unlock(opts);
    await clientOut.waitFor('connected');
    t.pass('the client, never reset, connects once the lock is gone');
    closeFd(info.localFd);
    listener.kill('SIGKILL');
    await Promise.all([client, listener]);
  });

  await t.test('a SYN guard drops only new connection requests: established traffic on the port flows, new clients wait', async (t) => {
    const opts = { table: `handoff_t${uniqueTag()}`, netns: pair.local };
    t.teardown(async () => {
      await unlock(opts);
    });
    const port = 20000 + Math.floor(Math.random() * 20000);
    const listener = pair.spawn(pair.local, 'python3', ['-c', ACCEPTOR, pair.v4.local, String(port)]);
    const out = new LineWatcher(listener.stdout!);
    await out.waitFor('listening');
    const first = pair.spawn(pair.peer, 'python3', ['-c', CLIENT, pair.v4.local, String(port), 'one']);
    const firstOut = new LineWatcher(first.stdout!);
    await firstOut.waitFor('connected');
    await lock({ connections: [], synPorts: [port] }, opts);
    const second = pair.spawn(pair.peer, 'python3', ['-c', CLIENT, pair.v4.local, String(port), 'two']);
    const secondOut = new LineWatcher(second.stdout!);
    await until(async () => ((await droppedPackets(opts)) ?? 0) >= 1);
    first.stdin!.write('go\n');
    t.equal(await firstOut.waitFor('echo'), 'echo one', 'the established connection on the guarded port still talks');
    t.equal(secondOut.lines.length, 0, 'the new client is held back');
    await unlock(opts);
    await secondOut.waitFor('connected');
    second.stdin!.write('go\n');
    t.equal(await secondOut.waitFor('echo'), 'echo two', 'after the guard, the new client connects (its SYN was retried, not reset)');
    listener.kill('SIGKILL');
    await Promise.all([first, second, listener]);
  });

  await t.test('lets locally injected, marked packets through lo while dropping the connection', async (t) => {
    const opts = { table: `handoff_t${uniqueTag()}`, netns: pair.local };
    t.teardown(async () => {
      await unlock(opts);
    });
    const text = rulesetText({ connections: [] }, opts);
    t.match(text, new RegExp(`iifname "lo" meta mark ${INJECT_MARK} notrack accept`), 'incoming: marked packets from lo pass, untracked');
    t.match(text, new RegExp(`oifname "lo" meta mark ${INJECT_MARK} notrack accept`), 'outgoing: marked packets to lo pass, untracked');
    t.ok(text.indexOf('meta mark') < text.indexOf('@conn4'), 'before the drop rules');
  });

  await t.test('the ruleset rejects anything that is not an address or a port', async (t) => {
    t.throws(() => rulesetText({ connections: [{ local: { address: '1.2.3.4; flush ruleset', port: 1 }, remote: { address: '1.2.3.5', port: 2 } }] }), { code: 'E_NETLOCK' });
    t.throws(() => rulesetText({ connections: [], ports: [70000] }), { code: 'E_NETLOCK' });
    t.throws(() => rulesetText({ connections: [] }, { table: 'x y' }), { code: 'E_NETLOCK' });
    t.match(rulesetText({ connections: [{ local: { address: '::ffff:10.0.0.1', port: 1 }, remote: { address: '::ffff:10.0.0.2', port: 2 } }] }), /10\.0\.0\.1 \. 1 \. 10\.0\.0\.2 \. 2/, 'v4-mapped addresses are locked as IPv4');
  });

  await t.test('handoff unlock removes a lock left behind', async (t) => {
    const table = `handoff_t${uniqueTag()}`;
    await lock({ connections: [], ports: [9] }, { table, netns: pair.local });
    // The verb from source, as a user would run it (dist/ may lag behind in a shared tree).
    const main = fileURLToPath(new URL('../../src/cli/main.ts', import.meta.url));
    const r = await execa('node', ['--no-warnings', '--import', '@tapjs/typescript/import', '--input-type=module', '-e',
      `const { main } = await import(${JSON.stringify(main)}); process.exitCode = await main(${JSON.stringify(['unlock', '--table', table, '--netns', pair.local, '--json'])});`], { reject: false, env: { TS_NODE_TRANSPILE_ONLY: '1' } });
    t.equal(r.exitCode, 0, String(r.stderr));
    t.match(JSON.parse(String(r.stdout)), { removed: true, table: `inet ${table}` });
    t.equal(await isLocked({ table, netns: pair.local }), false);
  });

  t.same(await listTables({ netns: pair.local }), tablesBefore, 'no table of ours remains');
});
