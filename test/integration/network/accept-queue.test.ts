// Connections still waiting in a listener's accept queue are not lost: net-accept (root
// namespace) accepts one connection per 100 ms; eight clients in the peer namespace connect at
// once and send their request, and the server is dumped while most of them are still queued
// (one accept per 300 ms here, so the drain surely has work left when the dump starts).
// The dump drops new SYNs to the port and lets the server accept the queue before it freezes
// it, so the image holds every connection; after the restore each client gets its answer on
// the connection it opened, and a client that connects while the server is gone waits (its SYN
// retried, never reset) and is served too.
import t from 'tap';
import { mkdtempSync } from 'node:fs';
import { tmpdir } from 'node:os';
import { join } from 'node:path';
import { freePort, imageSockets, networkTest, nftTables, CLI_LOCK_TABLE } from '../../lib/peers.js';
import { TARGETS_BUILD, VERDICT, cleanup, handoff, python3, restoreImage, startTarget } from '../../lib/target.js';

// Opens `count` connections numbered from `first`, sends "hello <i>" on each, then prints each
// answer (or the error that ended the connection).
const CLIENTS = `
import socket, sys, threading
host, port, first, count = sys.argv[1], int(sys.argv[2]), int(sys.argv[3]), int(sys.argv[4])
fam = socket.AF_INET6 if ':' in host else socket.AF_INET
socks = []
for i in range(first, first + count):
    s = socket.socket(fam, socket.SOCK_STREAM)
    s.connect((host, port))
    s.sendall(b'hello %d\\n' % i)
    socks.append((i, s))
print('CONNECTED', count, flush=True)
out = threading.Lock()
def say(*words):
    with out:
        print(*words, flush=True)
def wait(i, s):
    try:
        say('REPLY', i, s.makefile('rb').readline().decode().strip())
    except Exception as e:
        say('ERROR', i, type(e).__name__)
ts = [threading.Thread(target=wait, args=x) for x in socks]
for x in ts: x.start()
for x in ts: x.join()
print('DONE', flush=True)
`;

const QUEUED = 8;

t.test('clients waiting in a slow server\'s accept queue are all served after dump, kill and restore, none reset', (t) =>
  networkTest(t, async (ctx) => {
    const workDir = mkdtempSync(join(tmpdir(), 'handoff-net-accept-'));
    t.teardown(() => cleanup(workDir));
    const host = ctx.peers.host.v4;
    const port = await freePort();
    const server = ctx.track(await startTarget('net-accept', { command: [join(TARGETS_BUILD, 'net-accept')], args: [host, String(port), String(QUEUED + 1), '300'], env: ctx.env, workDir }));
    const early = ctx.spawnPeer(['python3', '-c', CLIENTS, host, String(port), '0', String(QUEUED)]);
    await early.waitLine((l) => l === `CONNECTED ${QUEUED}`, 'CONNECTED');
    const acceptedBefore = server.log().match(/^ACCEPTED \d+$/gm)?.length ?? 0;
    t.ok(acceptedBefore < QUEUED - 2, `most clients still wait in the accept queue when the dump starts (${acceptedBefore} accepted)`);

    const image = join(workDir, 'image.himg');
    const dump = await handoff(['dump', '--pid', String(server.pid), '--image', image, '--accept-drain-ms', '10000']);
    t.equal(dump.exitCode, 0, 'the dump succeeds', { output: dump.stderr + dump.stdout });
    const sockets = await imageSockets(image);
    t.equal(sockets.filter((s) => s.kind === 'tcp' && s.state === 'ESTABLISHED').length, QUEUED, 'the image holds every client connection, all accepted before the freeze');
    t.equal(sockets.filter((s) => s.kind === 'tcp' && s.state === 'LISTEN').length, 1, 'and the listener');
    t.ok((await nftTables()).includes(CLI_LOCK_TABLE), 'the network stays locked until the restore');
    await server.kill();

    // A client arriving while the server is gone: the lock drops its SYN, its kernel retries.
    const late = ctx.spawnPeer(['python3', '-c', CLIENTS, host, String(port), String(QUEUED), '1']);
    await new Promise((r) => setTimeout(r, 300));
    t.same(late.lines.lines, [], 'a client connecting during the handoff waits');

    const { running } = await restoreImage('net-accept', server.pid, image, workDir);
    ctx.track(running);
    running.signal('SIGUSR1');
    await early.waitLine((l) => l === 'DONE', 'DONE', 60_000);
    await late.waitLine((l) => l === 'DONE', 'DONE', 60_000);
    const replies = [...early.lines.lines, ...late.lines.lines].filter((l) => /^(REPLY|ERROR)/.test(l)).sort();
    const expected = Array.from({ length: QUEUED + 1 }, (_, i) => `REPLY ${i} served ${i}`).sort();
    t.same(replies, expected, 'every client got its answer on the connection it opened; none was reset');
    const verdict = await running.waitFor(VERDICT, 60_000);
    t.equal(verdict[1], 'PASS', 'the restored server served each client once', { log: running.log() });
  }),
);

t.test('a listener that does not accept in time blocks the dump before anything is frozen, and leaves no rule', (t) =>
  networkTest(t, async (ctx) => {
    const workDir = mkdtempSync(join(tmpdir(), 'handoff-net-accept-'));
    t.teardown(() => cleanup(workDir));
    const host = ctx.peers.host.v4;
    const port = await freePort();
    const server = ctx.track(await startTarget('net-accept', { command: [join(TARGETS_BUILD, 'net-accept')], args: [host, String(port), String(QUEUED), '5000'], env: ctx.env, workDir }));
    const clients = ctx.spawnPeer(['python3', '-c', CLIENTS, host, String(port), '0', String(QUEUED)]);
    await clients.waitLine((l) => l === `CONNECTED ${QUEUED}`, 'CONNECTED');
    // One accept per 5 s: the queue cannot empty in 300 ms.
    const dump = await handoff(['dump', '--pid', String(server.pid), '--image', join(workDir, 'image.himg'), '--accept-drain-ms', '300']);
    t.equal(dump.exitCode, 4, 'exit 4: blocked', { output: dump.stderr + dump.stdout });
    t.match(dump.stderr, new RegExp(`pid ${server.pid} fd 3 .*\\[tcp-accept-queue\\]`), 'the blocker names the pid and the listener fd');
    t.notOk((await nftTables()).includes(CLI_LOCK_TABLE), 'the SYN guard is removed');
    // Never frozen: it goes on accepting and, told to, serves everyone.
    server.signal('SIGUSR1');
    await clients.waitLine((l) => l === 'DONE', 'DONE', 60_000);
    t.equal(clients.lines.lines.filter((l) => l.startsWith('REPLY')).length, QUEUED, 'the untouched server serves every client');
    t.equal((await server.waitFor(VERDICT, 60_000))[1], 'PASS');
  }),
);

// A unix server whose clients are its own children: they connect at once, the server accepts
// one connection per 300 ms. Unix connects cannot be held off like SYNs, but the drain works
// the same: the dump lets the server accept its queue before the freeze.
const UNIX_SERVER = String.raw`
import os, signal, socket, sys, time
path, clients = sys.argv[1], int(sys.argv[2])
srv = socket.socket(socket.AF_UNIX, socket.SOCK_STREAM)
srv.bind(path)
srv.listen(32)
kids = []
for i in range(clients):
    pid = os.fork()
    if pid == 0:
        c = socket.socket(socket.AF_UNIX, socket.SOCK_STREAM)
        c.connect(path)
        c.sendall(b'hello %d\n' % i)
        os._exit(0 if c.makefile('rb').readline() == b'served %d\n' % i else 1)
    kids.append(pid)
got = []
signal.signal(signal.SIGUSR1, lambda *a: got.append(1))
time.sleep(0.2)
print('READY', os.getpid(), flush=True)
conns = []
while len(conns) < clients:
    time.sleep(0.3)
    conns.append(srv.accept()[0])
    print('ACCEPTED', len(conns), flush=True)
while not got: time.sleep(0.05)
for c in conns:
    n = int(c.makefile('rb').readline().split()[1])
    c.sendall(b'served %d\n' % n)
bad = [k for k in kids if os.waitpid(k, 0)[1] != 0]
print('PASS' if not bad else 'FAIL clients %s not served' % bad, flush=True)
`;

t.test('unix clients waiting in a slow server\'s accept queue are accepted before the freeze and served after the restore', async (t) => {
  const workDir = mkdtempSync(join(tmpdir(), 'handoff-unix-accept-'));
  t.teardown(() => cleanup(workDir));
  const clients = 6;
  const server = await startTarget('unix-accept', { command: [python3(), '-c', UNIX_SERVER, join(workDir, 'server.sock'), String(clients)], workDir });
  t.teardown(() => server.kill());
  const acceptedBefore = server.log().match(/^ACCEPTED \d+$/gm)?.length ?? 0;
  t.ok(acceptedBefore < clients - 2, `most clients still wait in the accept queue when the dump starts (${acceptedBefore} accepted)`);
  const image = join(workDir, 'image.himg');
  const dump = await handoff(['dump', '--pid', String(server.pid), '--tree', '--image', image, '--accept-drain-ms', '10000']);
  t.equal(dump.exitCode, 0, 'the dump succeeds', { output: dump.stderr + dump.stdout });
  t.equal(server.log().match(/^ACCEPTED \d+$/gm)?.length, clients, 'the server accepted every client before it was frozen');
  await server.kill();
  const { running } = await restoreImage('unix-accept', server.pid, image, workDir);
  t.teardown(() => running.kill());
  running.signal('SIGUSR1');
  t.equal((await running.waitFor(VERDICT, 60_000))[1], 'PASS', 'every client got its answer on the connection it opened');
});

t.test('a unix listener whose queue does not empty in time blocks the dump before anything is frozen', async (t) => {
  const workDir = mkdtempSync(join(tmpdir(), 'handoff-unix-accept-'));
  t.teardown(() => cleanup(workDir));
  const server = await startTarget('unix-accept', { command: [python3(), '-c', UNIX_SERVER, join(workDir, 'server.sock'), '14'], workDir });
  t.teardown(() => server.kill());
  // 14 clients, one accept per 300 ms: the queue cannot empty in 100 ms, however slow the CLI starts.
  const dump = await handoff(['dump', '--pid', String(server.pid), '--tree', '--image', join(workDir, 'image.himg'), '--accept-drain-ms', '100']);
  t.equal(dump.exitCode, 4, 'exit 4: blocked', { output: dump.stderr + dump.stdout });
  t.match(dump.stderr, new RegExp(`pid ${server.pid} fd \\d+: \\[unix-accept-queue\\]`), 'the blocker names the pid and the listener fd');
  server.signal('SIGUSR1');
  t.equal((await server.waitFor(VERDICT, 60_000))[1], 'PASS', 'never frozen: it goes on and serves every client');
});
