// TCP sockets handed off for real: a process in one network namespace holds a connection to a
// peer in another; with data in both queues and the network locked, the socket is dumped, its
// owner killed, the socket restored here in repair mode, repair switched off, the lock removed.
// The peer checks every byte it receives against a numbered pattern and reports resets.
import t, { type Test } from 'tap';
import net from 'node:net';
import { closeFd } from '../../src/native/fd.js';
import * as S from '../../src/native/socket.js';
import { lock, unlock, listTables } from '../../src/handoff/netlock.js';
import { drainListeners, listeningPort, tcpModule, type TcpRecord } from '../../src/objects/tcp.js';
import { createNetnsPair, LineWatcher, uniqueTag, type NetnsPair } from '../lib/netns.js';
import { dumpContext, fdInfoOf, restoreContext, schemaErrors } from '../lib/socket-context.js';

// Byte i of each direction's stream is i % 251: a lost, repeated or shifted byte shows.
const PATTERN = 'def pat(start, n):\n    return bytes((i % 251) for i in range(start, start + n))\n';

// The peer: accepts one connection, reports every verified byte count, sends on command.
const PEER = `
import socket, sys, threading, os
${PATTERN}
host, port = sys.argv[1], int(sys.argv[2])
s = socket.socket(socket.AF_INET6 if ':' in host else socket.AF_INET, socket.SOCK_STREAM)
s.setsockopt(socket.SOL_SOCKET, socket.SO_REUSEADDR, 1)
s.bind((host, port)); s.listen(1)
print('listening', flush=True)
c, _ = s.accept()
rx = 0
def reader():
    global rx
    try:
        while True:
            d = c.recv(65536)
            if not d:
                print('eof', rx, flush=True); return
            if d != pat(rx, len(d)):
                print('bad', rx, flush=True); os._exit(3)
            rx += len(d)
            print('rx', rx, flush=True)
    except Exception as e:
        print('error', type(e).__name__, flush=True)
threading.Thread(target=reader, daemon=True).start()
tx = 0
for line in sys.stdin:
    if line.startswith('shut'):
        c.shutdown(socket.SHUT_WR); print('shut', flush=True); continue
    n = int(line.split()[1])
    c.sendall(pat(tx, n)); tx += n
    print('sent', tx, flush=True)
`;

// The holder: connects (or accepts), never reads, sends on command.
const HOLDER = `
import socket, sys
${PATTERN}
mode, host, port = sys.argv[1], sys.argv[2], int(sys.argv[3])
fam = socket.AF_INET6 if ':' in host else socket.AF_INET
if mode == 'connect':
    s = socket.socket(fam, socket.SOCK_STREAM)
    s.setsockopt(socket.IPPROTO_TCP, socket.TCP_NODELAY, 1)
    s.setsockopt(socket.SOL_SOCKET, socket.SO_KEEPALIVE, 1)
    s.connect((host, port))
else:
    l = socket.socket(fam, socket.SOCK_STREAM)
    l.setsockopt(socket.SOL_SOCKET, socket.SO_REUSEADDR, 1)
    l.bind((host, port)); l.listen(7)
    print('listening', l.fileno(), flush=True)
    if mode == 'listen':
        sys.stdin.read(); sys.exit(0)
    s, _ = l.accept()
print('fd', s.fileno(), flush=True)
tx = 0
for line in sys.stdin:
    if line.startswith('rdshut'):
        s.shutdown(socket.SHUT_RD); print('rdshut', flush=True); continue
    if line.startswith('shut'):
        s.shutdown(socket.SHUT_WR); print('shut', flush=True); continue
    n = int(line.split()[1])
    s.sendall(pat(tx, n)); tx += n
    print('sent', tx, flush=True)
`;

function pattern(start: number, n: number): Buffer {
  const b = Buffer.alloc(n);
  for (let i = 0; i < n; i++) b[i] = (start + i) % 251;
  return b;
}

async function until(cond: () => boolean): Promise<void> {
  while (!cond()) await new Promise((r) => setTimeout(r, 20));
}

/** Reads exactly n bytes from a restored socket fd (Node takes the fd over). */
function readExactly(sock: net.Socket, n: number): Promise<Buffer> {
  return new Promise((resolve, reject) => {
    const chunks: Buffer[] = [];
    let got = 0;
    const onData = (d: Buffer) => {
      chunks.push(d);
      got += d.length;
      if (got >= n) {
        sock.off('data', onData);
        sock.pause();
        resolve(Buffer.concat(chunks));
      }
    };
    sock.on('data', onData);
    sock.once('error', reject);
    sock.resume();
  });
}

async function roundTrip(t: Test, pair: NetnsPair, family: 'inet' | 'inet6', side: 'client' | 'server') {
  const addrs = family === 'inet' ? pair.v4 : pair.v6;
  const table = `handoff_t${uniqueTag()}`;
  const lockOpts = { table, netns: pair.local };
  t.teardown(async () => {
    await unlock(lockOpts).catch(() => false);
  });
  const port = 20000 + Math.floor(Math.random() * 20000);

  // client: the holder connected to the peer; server: the peer connected to the holder's listener.
  type Proc = ReturnType<NetnsPair['spawn']>;
  let peerProc!: Proc, holder: Proc, peer!: LineWatcher;
  if (side === 'client') {
    peerProc = pair.spawn(pair.peer, 'python3', ['-c', PEER, addrs.peer, String(port)]);
    peer = new LineWatcher(peerProc.stdout!);
    await peer.waitFor('listening');
    holder = pair.spawn(pair.local, 'python3', ['-c', HOLDER, 'connect', addrs.peer, String(port)]);
  } else {
    holder = pair.spawn(pair.local, 'python3', ['-c', HOLDER, 'accept', addrs.local, String(port)]);
  }
  const held = new LineWatcher(holder.stdout!);
  if (side === 'server') {
    await held.waitFor('listening');
    // The peer "listens" nowhere here: it connects. Reuse PEER's reader by connecting through a tiny wrapper.
    peerProc = pair.spawn(pair.peer, 'python3', ['-c', PEER.replace("s.bind((host, port)); s.listen(1)\nprint('listening', flush=True)\nc, _ = s.accept()", "s.connect((host, port)); c = s\nprint('listening', flush=True)"), addrs.local, String(port)]);
    peer = new LineWatcher(peerProc.stdout!);
  }
  const fdLine = await held.waitFor('fd');
  const holderFd = Number(fdLine.split(' ')[1]);
  const holderPid = holder.pid!;

  // Phase 1: traffic both ways, all acknowledged.
  holder.stdin!.write('send 30000\n');
  await peer.waitFor('rx', 30000);
  peerProc.stdin!.write('send 40000\n');
  await peer.waitFor('sent', 40000);
  const probe = fdInfoOf(holderPid, holderFd);
  await until(() => S.ioctlInt(probe.localFd, S.SIOCINQ) === 40000);

  // Phase 2: lock, then more data each way that nobody can acknowledge.
  const local = S.getsockname(probe.localFd) as { address: string; port: number };
  const remote = S.getpeername(probe.localFd) as { address: string; port: number };
  await lock({ connections: [{ local, remote }] }, lockOpts);
  holder.stdin!.write('send 20000\n');
  await held.waitFor('sent', 50000);
  peerProc.stdin!.write('send 10000\n');
  await peer.waitFor('sent', 50000);
  await until(() => S.ioctlInt(probe.localFd, S.SIOCOUTQ) === 20000);

  t.same(tcpModule.preflight!(probe, new Set([holderPid])), [], 'an established connection has no blocker');
  const dctx = dumpContext([holderPid]);
  t.ok(tcpModule.matches(probe), 'the TCP module claims the socket');
  const id = tcpModule.dump(probe, dctx);
  const record = dctx.records[0] as TcpRecord;
  t.equal(record.id, id);
  t.equal(schemaErrors(record), '', 'the record validates against formats/v1/schema/tcp.json');
  t.equal(record.state, 'ESTABLISHED');
  t.equal(record.family, family);
  t.equal(record.repair!.recvQueue.length, 40000, 'receive queue holds what the holder never read');
  t.equal(record.repair!.sendQueue.length, 20000, 'send queue holds what the lock kept from the peer');
  t.same(Buffer.from(record.repair!.recvQueue), pattern(0, 40000), 'receive queue bytes are the peer stream from its start');
  t.same(Buffer.from(record.repair!.sendQueue), pattern(30000, 20000), 'send queue bytes continue the holder stream');
  t.equal(record.options.nodelay, side === 'client', 'TCP_NODELAY recorded');

  // The owner dies; the original socket is in repair mode and closes without FIN or RST.
  holder.kill('SIGKILL');
  await holder;
  closeFd(probe.localFd);

  const rctx = restoreContext(dctx.records);
  const fd = pair.inside(pair.local, () => tcpModule.restore(record, rctx) as number);
  t.same(S.getsockname(fd), { family, ...local }, 'restored socket has the local address');
  t.same(S.getpeername(fd), { family, ...remote }, 'restored socket has the peer address');
  t.equal(S.getsockoptInt(fd, S.IPPROTO_TCP, S.TCP.NODELAY) !== 0, side === 'client', 'TCP_NODELAY restored');
  await rctx.finish();
  t.equal(S.tcpInfo(fd).state, 1, 'ESTABLISHED after repair off');
  t.ok(await unlock(lockOpts), 'lock removed');

  const sock = new net.Socket({ fd, readable: true, writable: true });
  sock.pause();
  const received = await readExactly(sock, 50000);
  t.equal(received.length, 50000, 'exactly the 40000 queued and 10000 retransmitted bytes arrive');
  t.ok(received.equals(pattern(0, 50000)), 'no byte lost or repeated towards the restored side');
  sock.write(pattern(50000, 5000));
  await peer.waitFor('rx', 55000);
  const problems = peer.lines.filter((l) => /^(bad|eof|error)/.test(l));
  t.same(problems, [], 'the peer saw no reset, no end of stream and no wrong byte');
  sock.destroy();
  peerProc.kill('SIGKILL');
  await peerProc;
}

const sleep = (ms: number) => new Promise((r) => setTimeout(r, ms));
const EAGAIN = 11;

/** Reads from a restored (possibly blocking) fd without blocking the event loop, until `n` bytes or, with `eof`, end of stream. */
async function readFd(fd: number, n: number, eof: boolean, timeoutMs = 30_000): Promise<{ data: Buffer; eof: boolean }> {
  const chunks: Buffer[] = [];
  let got = 0;
  const deadline = Date.now() + timeoutMs;
  for (;;) {
    let b: Buffer | undefined;
    try {
      b = S.recv(fd, 65536, S.MSG_DONTWAIT);
    } catch (err) {
      if ((err as { errno?: number }).errno !== EAGAIN) throw err;
    }
    if (b && b.length === 0) return { data: Buffer.concat(chunks), eof: true };
    if (b) {
      chunks.push(b);
      got += b.length;
    }
    if (got >= n && !eof) return { data: Buffer.concat(chunks), eof: false };
    if (Date.now() > deadline) return { data: Buffer.concat(chunks), eof: false };
    if (!b) await sleep(10);
  }
}

/** RSTs a namespace's kernel has sent so far (Tcp OutRsts). */
async function outRsts(pair: NetnsPair, ns: string): Promise<number> {
  const snmp = await pair.run(ns, 'cat', ['/proc/net/snmp']);
  const [names, values] = snmp.split('\n').filter((l) => l.startsWith('Tcp:'));
  return Number(values!.split(/\s+/)[names!.split(/\s+/).indexOf('OutRsts')]);
}

type HalfState = 'CLOSE_WAIT' | 'FIN_WAIT1' | 'FIN_WAIT2' | 'LAST_ACK' | 'CLOSING';

/**
 * The peer listening in its namespace and the holder connected to it from ours, with the
 * holder's socket duplicated here (probe), and the RSTs each side had sent before.
 */
async function connectHolder(pair: NetnsPair, family: 'inet' | 'inet6') {
  const addrs = family === 'inet' ? pair.v4 : pair.v6;
  const rstsBefore = [await outRsts(pair, pair.local), await outRsts(pair, pair.peer)];
  const port = 20000 + Math.floor(Math.random() * 20000);
  const peerProc = pair.spawn(pair.peer, 'python3', ['-c', PEER, addrs.peer, String(port)]);
  const peer = new LineWatcher(peerProc.stdout!);
  await peer.waitFor('listening');
  const holder = pair.spawn(pair.local, 'python3', ['-c', HOLDER, 'connect', addrs.peer, String(port)]);
  const held = new LineWatcher(holder.stdout!);
  const holderFd = Number((await held.waitFor('fd')).split(' ')[1]);
  const probe = fdInfoOf(holder.pid!, holderFd);
  return { addrs, rstsBefore, peerProc, peer, holder, held, probe };
}

/** Dumps the holder's socket (the network locked by the caller), kills the holder, restores the socket here. */
async function dumpKillRestore(t: Test, pair: NetnsPair, c: Awaited<ReturnType<typeof connectHolder>>) {
  const dctx = dumpContext([c.holder.pid!]);
  tcpModule.dump(c.probe, dctx);
  const record = dctx.records[0] as TcpRecord;
  t.equal(schemaErrors(record), '', 'the record validates');
  c.holder.kill('SIGKILL');
  await c.holder;
  closeFd(c.probe.localFd);
  const rctx = restoreContext(dctx.records);
  const fd = pair.inside(pair.local, () => tcpModule.restore(record, rctx) as number);
  t.teardown(() => closeFd(fd));
  return { record, rctx, fd };
}

/**
 * Brings a connection to `state` (the holder connected to the peer, 3000 bytes each way
 * acknowledged first, 4000 from the peer left unread), dumps it with the network locked, kills
 * the holder, restores the socket here and proves what both ends see afterwards.
 */
async function halfClosed(t: Test, pair: NetnsPair, family: 'inet' | 'inet6', state: HalfState) {
  const lockOpts = { table: `handoff_t${uniqueTag()}`, netns: pair.local };
  // CLOSING needs our FIN lost while the peer's arrives: a one-way drop of our own.
  const oneWay = `handoff_ow${uniqueTag()}`;
  t.teardown(async () => {
    await unlock(lockOpts).catch(() => false);
    await unlock({ table: oneWay, netns: pair.local }).catch(() => false);
  });
  const conn = await connectHolder(pair, family);
  const { rstsBefore, peerProc, peer, holder, held, probe } = conn;
  const stateOf = () => S.TCP_STATES[S.tcpInfo(probe.localFd).state];
  holder.stdin!.write('send 3000\n');
  await peer.waitFor('rx', 3000);
  peerProc.stdin!.write('send 4000\n');
  await until(() => S.ioctlInt(probe.localFd, S.SIOCINQ) === 4000);
  const local = S.getsockname(probe.localFd) as { address: string; port: number };
  const remote = S.getpeername(probe.localFd) as { address: string; port: number };
  const lockConn = () => lock({ connections: [{ local, remote }] }, lockOpts);
  // What the holder sent in all, and what the peer sent in all, by the dump.
  let holderSent = 3000;
  let peerSent = 4000;

  if (state === 'CLOSE_WAIT') {
    peerProc.stdin!.write('shut\n');
    await until(() => stateOf() === 'CLOSE_WAIT');
    await lockConn();
    holder.stdin!.write('send 2000\n');
    holderSent += 2000;
    await until(() => S.ioctlInt(probe.localFd, S.SIOCOUTQ) === 2000);
  } else if (state === 'FIN_WAIT2') {
    holder.stdin!.write('shut\n');
    await until(() => stateOf() === 'FIN_WAIT2');
    await peer.waitFor('eof', 3000);
    await lockConn();
    // Sent while locked: only a retransmission after the restore can bring it.
    peerProc.stdin!.write('send 1000\n');
    peerSent += 1000;
    await peer.waitFor('sent', 5000);
  } else if (state === 'FIN_WAIT1') {
    await lockConn();
    holder.stdin!.write('send 2000\nshut\n');
    holderSent += 2000;
    await held.waitFor('shut');
    await until(() => stateOf() === 'FIN_WAIT1' && S.ioctlInt(probe.localFd, S.SIOCOUTQ) === 2001);
  } else if (state === 'LAST_ACK') {
    peerProc.stdin!.write('shut\n');
    await until(() => stateOf() === 'CLOSE_WAIT');
    await lockConn();
    holder.stdin!.write('send 2000\nshut\n');
    holderSent += 2000;
    await held.waitFor('shut');
    await until(() => stateOf() === 'LAST_ACK');
  } else {
    await pair.run(pair.local, 'nft', ['add', 'table', 'inet', oneWay]);
    await pair.run(pair.local, 'nft', ['add', 'chain', 'inet', oneWay, 'out', '{ type filter hook output priority -320; policy accept; }']);
    await pair.run(pair.local, 'nft', ['add', 'rule', 'inet', oneWay, 'out', 'tcp', 'sport', String(local.port), 'drop']);
    holder.stdin!.write('shut\n');
    await held.waitFor('shut');
    peerProc.stdin!.write('shut\n');
    await until(() => stateOf() === 'CLOSING');
    await lockConn();
    await unlock({ table: oneWay, netns: pair.local });
  }
  t.equal(stateOf(), state, `the connection is in ${state} at dump time`);

  t.same(tcpModule.preflight!(probe, new Set([holder.pid!])), [], `${state} is no blocker`);
  const { record, rctx, fd } = await dumpKillRestore(t, pair, conn);
  t.equal(record.state, state, 'the record keeps the state');
  t.same(Buffer.from(record.repair!.recvQueue), pattern(0, 4000), 'receive queue: the unread bytes, without the FIN');
  t.same(Buffer.from(record.repair!.sendQueue), pattern(3000, holderSent - 3000), 'send queue: the unacknowledged bytes, without the FIN');
  t.equal(S.TCP_STATES[S.tcpInfo(fd).state], state, `restored in ${state}`);
  t.same(S.getpeername(fd), { family, ...remote }, 'with the peer address');
  await rctx.finish();
  t.ok(await unlock(lockOpts), 'lock removed');

  // The restored side reads what the peer sent, then EOF exactly when the peer's FIN was sent.
  const peerFinSent = state === 'CLOSE_WAIT' || state === 'LAST_ACK' || state === 'CLOSING';
  const first = await readFd(fd, peerSent, peerFinSent);
  t.ok(first.data.equals(pattern(0, peerSent)), `the restored side reads the ${peerSent} bytes the peer sent, none lost or repeated`);
  t.equal(first.eof, peerFinSent, peerFinSent ? 'then end of stream' : 'and no end of stream yet');
  if (!peerFinSent) {
    // FIN_WAIT1/2: the peer may still talk; its FIN later ends our stream.
    peerProc.stdin!.write('send 500\nshut\n');
    const more = await readFd(fd, 500, true);
    t.ok(more.data.equals(pattern(peerSent, 500)), 'bytes the peer sends after the restore arrive');
    t.ok(more.eof, 'then the peer\'s FIN ends the stream');
  }
  const weSent = state === 'CLOSE_WAIT' ? holderSent + 1000 : holderSent;
  if (state === 'CLOSE_WAIT') {
    // Our side may still send; the peer gets every byte, then our FIN.
    S.sendAll(fd, pattern(holderSent, 1000));
    S.shutdown(fd, S.SHUT_WR);
  }
  await peer.waitFor('eof', weSent);
  t.pass(`the peer received all ${weSent} bytes, then the FIN`);
  const problems = peer.lines.filter((l) => /^(bad|error)/.test(l));
  t.same(problems, [], 'the peer saw no reset and no wrong byte');
  await sleep(200);
  t.same([await outRsts(pair, pair.local), await outRsts(pair, pair.peer)], rstsBefore, 'no RST was sent by either side');
  peerProc.kill('SIGKILL');
  await peerProc;
}

t.test('half-closed and closing connections keep their FIN history across dump and restore', async (t) => {
  const pair = await createNetnsPair();
  t.teardown(() => pair.destroy());
  const tablesBefore = await listTables({ netns: pair.local });
  for (const state of ['CLOSE_WAIT', 'FIN_WAIT2', 'FIN_WAIT1', 'LAST_ACK', 'CLOSING'] as const) {
    await t.test(`${state} over IPv4`, (t) => halfClosed(t, pair, 'inet', state));
  }
  await t.test('CLOSE_WAIT over IPv6', (t) => halfClosed(t, pair, 'inet6', 'CLOSE_WAIT'));
  await t.test('FIN_WAIT2 over IPv6', (t) => halfClosed(t, pair, 'inet6', 'FIN_WAIT2'));
  await t.test('a connection closed by both sides with unread data left is a blocker, not a silent loss', async (t) => {
    const port = 20000 + Math.floor(Math.random() * 20000);
    const peerProc = pair.spawn(pair.peer, 'python3', ['-c', PEER, pair.v4.peer, String(port)]);
    const peer = new LineWatcher(peerProc.stdout!);
    await peer.waitFor('listening');
    const holder = pair.spawn(pair.local, 'python3', ['-c', HOLDER, 'connect', pair.v4.peer, String(port)]);
    const held = new LineWatcher(holder.stdout!);
    const fd = Number((await held.waitFor('fd')).split(' ')[1]);
    const info = fdInfoOf(holder.pid!, fd);
    holder.stdin!.write('shut\n');
    await peer.waitFor('eof', 0);
    peerProc.stdin!.write('send 100\nshut\n');
    await until(() => S.TCP_STATES[S.tcpInfo(info.localFd).state] === 'CLOSE');
    t.match(tcpModule.preflight!(info, new Set([holder.pid!])), [{ code: 'tcp-state', pid: holder.pid, fd, reason: /100 unread byte/ }]);
    closeFd(info.localFd);
    holder.kill('SIGKILL');
    peerProc.kill('SIGKILL');
    await Promise.all([holder, peerProc]);
  });

  t.same(await listTables({ netns: pair.local }), tablesBefore, 'no nftables table of ours is left');
});

/**
 * The holder reads nothing, the peer sends 4000 bytes, then the holder calls shutdown(SHUT_RD):
 * no segment leaves and the state stays ESTABLISHED, yet its reads give the 4000 bytes and then
 * end of stream. Dumped, killed and restored, the socket must do the same, and still send.
 */
async function readShutdown(t: Test, pair: NetnsPair, family: 'inet' | 'inet6') {
  const lockOpts = { table: `handoff_t${uniqueTag()}`, netns: pair.local };
  t.teardown(async () => {
    await unlock(lockOpts).catch(() => false);
  });
  const conn = await connectHolder(pair, family);
  const { rstsBefore, peerProc, peer, holder, held, probe } = conn;
  peerProc.stdin!.write('send 4000\n');
  await until(() => S.ioctlInt(probe.localFd, S.SIOCINQ) === 4000);
  holder.stdin!.write('rdshut\n');
  await held.waitFor('rdshut');
  t.equal(S.TCP_STATES[S.tcpInfo(probe.localFd).state], 'ESTABLISHED', 'SHUT_RD leaves the connection ESTABLISHED');
  const local = S.getsockname(probe.localFd) as { address: string; port: number };
  const remote = S.getpeername(probe.localFd) as { address: string; port: number };
  await lock({ connections: [{ local, remote }] }, lockOpts);

  const { record, rctx, fd } = await dumpKillRestore(t, pair, conn);
  t.equal(record.shutdown, 1, 'the record says no more receptions');
  await rctx.finish();
  t.ok(await unlock(lockOpts), 'lock removed');
  t.ok(S.tcpRcvShutdown(fd), 'the restored socket is shut for reading');
  t.equal(S.TCP_STATES[S.tcpInfo(fd).state], 'ESTABLISHED', 'and still ESTABLISHED');
  const read = await readFd(fd, 4000, true, 3000);
  t.ok(read.data.equals(pattern(0, 4000)), 'the restored side still reads the 4000 queued bytes');
  t.ok(read.eof, 'then end of stream at once, though the peer sent no FIN');
  S.sendAll(fd, pattern(0, 1000));
  await peer.waitFor('rx', 1000);
  t.pass('it still sends: the peer received 1000 bytes');
  t.same(peer.lines.filter((l) => /^(bad|error|eof)/.test(l)), [], 'the peer saw no reset, no wrong byte and no end of stream');
  t.same([await outRsts(pair, pair.local), await outRsts(pair, pair.peer)], rstsBefore, 'no RST was sent by either side');
  peerProc.kill('SIGKILL');
  await peerProc;
}

t.test('a connection its owner shut down for reading (SHUT_RD) comes back shut for reading', async (t) => {
  const pair = await createNetnsPair();
  t.teardown(() => pair.destroy());
  await t.test('over IPv4', (t) => readShutdown(t, pair, 'inet'));
  await t.test('over IPv6', (t) => readShutdown(t, pair, 'inet6'));
});

t.test('TCP connections survive dump, owner death and restore', async (t) => {
  const pair = await createNetnsPair();
  t.teardown(() => pair.destroy());
  const tablesBefore = await listTables({ netns: pair.local });

  await t.test('IPv4 client connection', (t) => roundTrip(t, pair, 'inet', 'client'));
  await t.test('IPv6 accepted server connection', (t) => roundTrip(t, pair, 'inet6', 'server'));

  await t.test('an aborted dump leaves the original connection working', async (t) => {
    const port = 20000 + Math.floor(Math.random() * 20000);
    const peerProc = pair.spawn(pair.peer, 'python3', ['-c', PEER, pair.v4.peer, String(port)]);
    const peer = new LineWatcher(peerProc.stdout!);
    await peer.waitFor('listening');
    const holder = pair.spawn(pair.local, 'python3', ['-c', HOLDER, 'connect', pair.v4.peer, String(port)]);
    const held = new LineWatcher(holder.stdout!);
    const fd = Number((await held.waitFor('fd')).split(' ')[1]);
    const info = fdInfoOf(holder.pid!, fd);
    const dctx = dumpContext([holder.pid!]);
    tcpModule.dump(info, dctx);
    closeFd(info.localFd);
    dctx.abort();
    holder.stdin!.write('send 1000\n');
    await peer.waitFor('rx', 1000);
    t.same(peer.lines.filter((l) => /^(bad|eof|error)/.test(l)), [], 'the peer got the bytes sent after the abort');
    holder.kill('SIGKILL');
    peerProc.kill('SIGKILL');
    await Promise.all([holder, peerProc]);
  });

  await t.test('a listening socket comes back with its address and backlog', async (t) => {
    const port = 20000 + Math.floor(Math.random() * 20000);
    const holder = pair.spawn(pair.local, 'python3', ['-c', HOLDER, 'listen', pair.v6.local, String(port)]);
    const held = new LineWatcher(holder.stdout!);
    const fd = Number((await held.waitFor('listening')).split(' ')[1]);
    const info = fdInfoOf(holder.pid!, fd);
    t.same(tcpModule.preflight!(info, new Set([holder.pid!])), []);
    const dctx = dumpContext([holder.pid!]);
    tcpModule.dump(info, dctx);
    const record = dctx.records[0] as TcpRecord;
    t.equal(schemaErrors(record), '');
    t.equal(record.state, 'LISTEN');
    t.equal(record.backlog, 7);
    t.same(record.local, { address: pair.v6.local, port });
    t.equal(record.options.reuseAddr, true);
    holder.kill('SIGKILL');
    await holder;
    closeFd(info.localFd);
    const rctx = restoreContext(dctx.records);
    const lfd = pair.inside(pair.local, () => tcpModule.restore(record, rctx) as number);
    await rctx.finish();
    t.equal(S.tcpInfo(lfd).state, 10, 'LISTEN');
    t.equal(S.tcpInfo(lfd).sacked, 7, 'backlog 7');
    t.equal(S.getsockoptInt(lfd, S.SOL_SOCKET, S.SO.REUSEADDR), 1, 'SO_REUSEADDR restored');
    // A client from the peer namespace gets through to the restored listener.
    const server = net.createServer({ pauseOnConnect: false });
    const accepted = new Promise<string>((resolve) => server.on('connection', (c) => c.once('data', (d) => resolve(d.toString()))));
    await new Promise<void>((resolve) => server.listen({ fd: lfd }, resolve));
    await pair.run(pair.peer, 'python3', ['-c', `import socket; s = socket.create_connection(('${pair.v6.local}', ${port})); s.sendall(b'hello'); s.close()`]);
    t.equal(await accepted, 'hello', 'a new connection is accepted');
    server.close();
  });

  await t.test('a listener whose accept queue does not drain in time is a blocker naming pid and fd', async (t) => {
    const port = 20000 + Math.floor(Math.random() * 20000);
    const holder = pair.spawn(pair.local, 'python3', ['-c', HOLDER, 'listen', pair.v4.local, String(port)]);
    const held = new LineWatcher(holder.stdout!);
    const fd = Number((await held.waitFor('listening')).split(' ')[1]);
    const client = pair.spawn(pair.peer, 'python3', ['-c', `import socket, sys; s = socket.create_connection(('${pair.v4.local}', ${port})); print('up', flush=True); sys.stdin.read()`]);
    await new LineWatcher(client.stdout!).waitFor('up');
    const info = fdInfoOf(holder.pid!, fd);
    await until(() => S.tcpInfo(info.localFd).unacked === 1);
    t.same(tcpModule.preflight!(info, new Set([holder.pid!])), [], 'the preflight leaves the queue to the drain before the freeze');
    t.equal(listeningPort(info), port, 'the drain finds the listener');
    const started = Date.now();
    const blockers = await drainListeners([info], 300);
    t.ok(Date.now() - started >= 300, 'the drain waited its whole time');
    t.equal(blockers.length, 1);
    t.match(blockers[0], { code: 'tcp-accept-queue', pid: holder.pid, fd, reason: /1 connection/ });
    const dctx = dumpContext([holder.pid!]);
    t.throws(() => tcpModule.dump(info, dctx), { code: 'E_BLOCKED' }, 'a dump that finds it anyway refuses');
    closeFd(info.localFd);
    client.kill('SIGKILL');
    holder.kill('SIGKILL');
    await Promise.all([client, holder]);
  });

  await t.test('a half-open connection request (SYN_RECV) keeps the drain waiting too', async (t) => {
    const port = 20000 + Math.floor(Math.random() * 20000);
    const holder = pair.spawn(pair.local, 'python3', ['-c', HOLDER, 'listen', pair.v4.local, String(port)]);
    const fd = Number((await new LineWatcher(holder.stdout!).waitFor('listening')).split(' ')[1]);
    // The client's last handshake ACK never arrives: its side is connected, ours half-open.
    const table = `handoff_t${uniqueTag()}`;
    await pair.run(pair.peer, 'nft', ['add', 'table', 'inet', table]);
    t.teardown(() => pair.run(pair.peer, 'nft', ['delete', 'table', 'inet', table]));
    await pair.run(pair.peer, 'nft', ['add', 'chain', 'inet', table, 'out', '{ type filter hook output priority 0; policy accept; }']);
    await pair.run(pair.peer, 'nft', ['add', 'rule', 'inet', table, 'out', 'tcp', 'dport', String(port), 'tcp', 'flags', '&', '(syn', '|', 'ack)', '==', 'ack', 'drop']);
    const client = pair.spawn(pair.peer, 'python3', ['-c', `import socket, sys; s = socket.create_connection(('${pair.v4.local}', ${port})); print('up', flush=True); sys.stdin.read()`]);
    await new LineWatcher(client.stdout!).waitFor('up');
    const info = fdInfoOf(holder.pid!, fd);
    t.equal(S.tcpInfo(info.localFd).unacked, 0, 'nothing in the accept queue');
    const blockers = await drainListeners([info], 200);
    t.match(blockers, [{ code: 'tcp-accept-queue', pid: holder.pid, fd, reason: /0 connection\(s\) in its accept queue and 1 half-open/ }], 'the half-open request is a blocker');
    closeFd(info.localFd);
    client.kill('SIGKILL');
    holder.kill('SIGKILL');
    await Promise.all([client, holder]);
  });

  t.same(await listTables({ netns: pair.local }), tablesBefore, 'no lock table of ours is left');
});
