// Unix sockets: connected pairs with queued data in both directions, bound listeners (path and
// abstract), and the blockers for peers outside the set and descriptors in flight.
import t from 'tap';
import { errno } from '../lib/errno.js';
import net from 'node:net';
import { existsSync } from 'node:fs';
import { execa } from 'execa';
import { closeSync, fstatSync, mkdtempSync, readSync, readdirSync, rmSync, writeSync } from 'node:fs';
import { tmpdir } from 'node:os';
import { join } from 'node:path';
import { closeFd, takeFd } from '../../src/native/fd.js';
import * as S from '../../src/native/socket.js';
import { unixModule, type UnixRecord } from '../../src/objects/unix.js';
import { LineWatcher, uniqueTag } from '../lib/netns.js';
import { dumpContext, fdInfoOf, preflightContext, restoreContext, schemaErrors, type TestDumpContext } from '../lib/socket-context.js';

const PAIR = `
import socket, sys, os, array
kind, mode = sys.argv[1], sys.argv[2]
typ = {'stream': socket.SOCK_STREAM, 'dgram': socket.SOCK_DGRAM, 'seqpacket': socket.SOCK_SEQPACKET}[kind]
a, b = socket.socketpair(socket.AF_UNIX, typ)
a.send(b'hello from a'); a.send(b'second')
b.send(b'to a')
if mode == 'shut': b.shutdown(socket.SHUT_WR)
if mode == 'fds': socket.send_fds(a, [b'with fd'], [sys.stdout.fileno()])
child = os.fork() if mode == 'split' else -1
if child == 0:
    a.close(); sys.stdin.read(); sys.exit(0)
if mode == 'split': b.close()
print('fds', a.fileno(), child if mode == 'split' else b.fileno(), flush=True)
sys.stdin.read()
`;

const LISTENER = `
import socket, sys
name = sys.argv[1]
s = socket.socket(socket.AF_UNIX, socket.SOCK_STREAM)
s.bind(name if not name.startswith('@') else '\\0' + name[1:])
s.listen(9)
print('fd', s.fileno(), flush=True)
sys.stdin.read()
`;

async function holder(script: string, args: string[]) {
  const p = execa('python3', ['-c', script, ...args], { stdin: 'pipe', stdout: 'pipe', reject: false, buffer: false });
  const line = await new LineWatcher(p.stdout!).wait((l) => /^(fds?) /.test(l));
  return { p, fds: line.split(' ').slice(1).map(Number) };
}

function readAll(fd: number): Buffer[] {
  const out: Buffer[] = [];
  for (;;) {
    try {
      const b = S.recv(fd, 4096, S.MSG_DONTWAIT);
      if (b.length === 0) return out;
      out.push(b);
    } catch (err) {
      if ((err as { errno?: number }).errno === 11) return out;
      throw err;
    }
  }
}

for (const kind of ['stream', 'dgram', 'seqpacket'] as const) {
  t.test(`a ${kind} socketpair comes back connected with both queues`, async (t) => {
    const h = await holder(PAIR, [kind, kind === 'stream' ? 'shut' : 'plain']);
    const [fa, fb] = h.fds as [number, number];
    const ia = fdInfoOf(h.p.pid!, fa);
    const ib = fdInfoOf(h.p.pid!, fb);
    const pids = new Set([h.p.pid!]);
    t.ok(unixModule.matches(ia));
    t.same(unixModule.preflight!(ia, pids), [], 'no blocker: both ends are in the set');
    const dctx = dumpContext([h.p.pid!]);
    const ida = unixModule.dump(ia, dctx);
    const idb = unixModule.dump(ib, dctx);
    const [ra, rb] = dctx.records as [UnixRecord, UnixRecord];
    t.equal(schemaErrors(ra), '');
    t.equal(schemaErrors(rb), '');
    t.equal(ra.peer, idb, 'a names b as its peer');
    t.equal(rb.peer, ida, 'b names a as its peer');
    t.equal(ra.state, 'connected');
    const bQueue = rb.queue.map((m) => Buffer.from(m.data).toString());
    t.same(bQueue, kind === 'stream' ? ['hello from asecond'] : ['hello from a', 'second'], 'b queue copied with message boundaries');
    t.same(ra.queue.map((m) => Buffer.from(m.data).toString()), ['to a']);
    if (kind === 'stream') {
      t.equal(rb.shutdown, 2, 'b shut down for writing');
      t.equal(ra.shutdown, 1, 'a sees no more reads coming');
    }
    // The original queues are untouched by the dump.
    t.equal(S.ioctlInt(ib.localFd, S.SIOCINQ), kind === 'dgram' ? 12 : 18, 'original b queue intact');
    h.p.kill('SIGKILL');
    await h.p;
    closeFd(ia.localFd);
    closeFd(ib.localFd);

    const rctx = restoreContext(dctx.records);
    const na = unixModule.restore(ra, rctx) as number;
    const nb = unixModule.restore(rb, rctx) as number;
    await rctx.finish();
    t.not(na, nb);
    t.same(readAll(nb).map(String), kind === 'stream' ? ['hello from asecond'] : ['hello from a', 'second'], 'b reads what was queued');
    t.same(readAll(na).map(String), ['to a'], 'a reads what was queued');
    S.sendAll(na, Buffer.from('after'));
    t.same(readAll(nb).map(String), ['after'], 'the restored ends are connected to each other');
    if (kind === 'stream') t.throws(() => S.sendAll(nb, Buffer.from('x')), errno(32), 'b stays shut down for writing (EPIPE)');
    closeFd(na);
    closeFd(nb);
  });
}

for (const named of ['path', 'abstract'] as const) {
  t.test(`a listener bound to a ${named} name accepts again after restore`, async (t) => {
    const tag = uniqueTag();
    const name = named === 'path' ? `/tmp/handoff-test-${tag}.sock` : `@handoff-test-${tag}`;
    t.teardown(() => {
      if (named === 'path' && existsSync(name)) execa('rm', ['-f', name]);
    });
    const h = await holder(LISTENER, [name]);
    const info = fdInfoOf(h.p.pid!, h.fds[0]!);
    t.same(unixModule.preflight!(info, new Set([h.p.pid!])), []);
    const dctx = dumpContext([h.p.pid!]);
    unixModule.dump(info, dctx);
    const record = dctx.records[0] as UnixRecord;
    t.equal(schemaErrors(record), '');
    t.equal(record.state, 'listening');
    t.equal(record.backlog, 9);
    if (named === 'path') t.same(record.address, { path: name });
    else t.same(Buffer.from((record.address as { abstract: Uint8Array }).abstract).toString(), name.slice(1));
    h.p.kill('SIGKILL');
    await h.p;
    closeFd(info.localFd);

    const rctx = restoreContext(dctx.records);
    const fd = unixModule.restore(record, rctx) as number;
    await rctx.finish();
    const server = net.createServer();
    const got = new Promise<string>((resolve) => server.on('connection', (c) => c.once('data', (d) => resolve(String(d)))));
    await new Promise<void>((resolve) => server.listen({ fd }, resolve));
    // Connect natively: Node's own client does not do abstract names on every version.
    const client = S.socket(S.AF_UNIX, S.SOCK_STREAM);
    S.connectSocket(client, S.encodeSockAddr(named === 'path' ? { family: 'unix', path: name } : { family: 'unix', abstract: Buffer.from(name.slice(1)) }));
    S.sendAll(client, Buffer.from('hi'));
    t.equal(await got, 'hi', 'a client connects to the restored listener');
    closeFd(client);
    server.close();
  });
}

// ---------------------------------------------------------------- descriptors in flight

const IN_FLIGHT = `
import socket, sys, os
kind, path, extra = sys.argv[1], sys.argv[2], sys.argv[3]
typ = {'stream': socket.SOCK_STREAM, 'dgram': socket.SOCK_DGRAM, 'seqpacket': socket.SOCK_SEQPACKET}[kind]
a, b = socket.socketpair(socket.AF_UNIX, typ)
c, d = socket.socketpair(socket.AF_UNIX, socket.SOCK_STREAM)
d.send(b'waiting in c')
r, w = os.pipe()
os.write(w, b'pipe-bytes')
f = open(path, 'w+b', buffering=0)
f.write(b'0123456789')
f.seek(4)
a.send(b'plain before')
socket.send_fds(a, [b'pipe and file'], [r, f.fileno()])
# b travels in its own queue (a cycle); c lives only in flight.
socket.send_fds(a, [b'sockets'], [b.fileno(), c.fileno()])
if extra == 'pidfd': socket.send_fds(a, [b'pidfd'], [os.pidfd_open(os.getpid())])
tcp = socket.socket(socket.AF_INET, socket.SOCK_STREAM)
if extra == 'tcp': socket.send_fds(a, [b'tcp'], [tcp.fileno()])
a.send(b'plain after')
os.close(r)
c.close()
print('fds', a.fileno(), b.fileno(), d.fileno(), w, f.fileno(), flush=True)
sys.stdin.read()
`;

/** Reads one message with its descriptors (peeked for the fds, then consumed). */
function takeMessage(fd: number): { data: string; fds: number[] } | undefined {
  const m = S.peekMessage(fd, 0, 1 << 16);
  if (!m || (m.data.length === 0 && S.getsockoptInt(fd, S.SOL_SOCKET, S.SO.TYPE) === S.SOCK_STREAM)) return undefined;
  S.recv(fd, Math.max(m.length, 1), S.MSG_DONTWAIT);
  return { data: m.data.toString(), fds: m.fds };
}

/** Dumps the holder's fds the way the core does (shared open files found with kcmp). */
function dumpFds(pid: number, fds: number[], dctx: TestDumpContext): number[] {
  return fds.map((fd) => dctx.dumpFd(takeFd(pid, fd)));
}

const openFds = () => readdirSync('/proc/self/fd').length;

for (const kind of ['stream', 'dgram', 'seqpacket'] as const) {
  t.test(`descriptors in flight in a ${kind} queue come back in their messages, working`, async (t) => {
    const dir = mkdtempSync(join(tmpdir(), 'handoff-unix-'));
    t.teardown(() => rmSync(dir, { recursive: true, force: true }));
    const h = await holder(IN_FLIGHT, [kind, join(dir, 'file'), 'none']);
    const [a, b, d, w, f] = h.fds as [number, number, number, number, number];
    const pids = [h.p.pid!];
    const ib = fdInfoOf(h.p.pid!, b);
    const before = openFds();
    t.same(unixModule.preflight!(ib, new Set(pids), preflightContext(pids)), [], 'every descriptor in flight can be handed off');
    t.equal(openFds(), before, 'the preflight closed every descriptor it peeked');
    closeFd(ib.localFd);

    const dctx = dumpContext(pids);
    const [ida, idb, idd, idw, idf] = dumpFds(h.p.pid!, [a, b, d, w, f], dctx);
    for (const r of dctx.records) t.equal(schemaErrors(r), '', `${r.kind} ${r.id} validates`);
    const rb = dctx.records.find((r) => r.id === idb) as UnixRecord;
    const kinds = (ids: number[]) => ids.map((id) => (id === idb ? 'self' : dctx.records.find((r) => r.id === id)!.kind));
    t.same(
      rb.queue.map((m) => [Buffer.from(m.data).toString(), kinds(m.fds)]),
      kind === 'stream'
        ? [['plain beforepipe and file', ['pipe-end', 'file']], ['sockets', ['self', 'unix']], ['plain after', []]]
        : [['plain before', []], ['pipe and file', ['pipe-end', 'file']], ['sockets', ['self', 'unix']], ['plain after', []]],
      'each message names the objects that travel with it',
    );
    t.equal(rb.queue.find((m) => m.fds.length === 2 && m.fds.includes(idb))!.fds[0], idb, 'the receiving socket is one object, in flight in its own queue');
    t.equal(rb.queue.find((m) => m.fds.length === 2 && !m.fds.includes(idb))!.fds[1], idf, 'the file in flight is the open file the process holds');
    const ic = rb.queue.find((m) => m.fds.includes(idb))!.fds[1]!;
    t.equal((dctx.records.find((r) => r.id === ic) as UnixRecord).peer, idd, 'the socket living only in flight keeps its peer');
    const queued = S.ioctlInt(takeFd(h.p.pid!, b), S.SIOCINQ);
    t.ok(queued > 0, 'the original queue is still there');
    h.p.kill('SIGKILL');
    await h.p;
    dctx.close();

    const rctx = restoreContext(dctx.records);
    const [na, nb, nd, nw, nf] = [ida, idb, idd, idw, idf].map((id) => rctx.objectFd(id!)) as [number, number, number, number, number];
    await rctx.finish();
    const messages: { data: string; fds: number[] }[] = [];
    for (let m = takeMessage(nb); m; m = takeMessage(nb)) messages.push(m);
    t.same(
      messages.map((m) => [m.data, m.fds.length]),
      rb.queue.map((m) => [Buffer.from(m.data).toString(), m.fds.length]),
      'the restored socket reads the same messages with as many descriptors',
    );
    const withFile = messages.find((m) => m.data.endsWith('pipe and file'))!;
    const [pipeRead, file] = withFile.fds as [number, number];
    const buf = Buffer.alloc(32);
    t.equal(buf.subarray(0, readSync(pipeRead, buf)).toString(), 'pipe-bytes', 'the pipe in flight holds its bytes');
    writeSync(nw, 'more');
    t.equal(buf.subarray(0, readSync(pipeRead, buf)).toString(), 'more', 'and is the pipe the process writes to');
    t.equal(buf.subarray(0, readSync(file, buf, 0, 2, null)).toString(), '45', 'the file in flight reads from its offset');
    t.equal(buf.subarray(0, readSync(nf, buf, 0, 2, null)).toString(), '67', 'and shares it with the process fd');
    const [self, c] = messages.find((m) => m.data === 'sockets')!.fds as [number, number];
    t.equal(fstatSync(self).ino, fstatSync(nb).ino, 'the socket in flight is the receiving socket itself');
    t.same(readAll(c).map(String), ['waiting in c'], 'the socket living only in flight kept its queue');
    S.sendAll(nd, Buffer.from('hi c'));
    t.same(readAll(c).map(String), ['hi c'], 'and its peer');
    S.sendAll(na, Buffer.from('after'));
    t.same(readAll(nb).map(String), ['after'], 'the pair still talks');
    for (const m of messages) for (const fd of m.fds) closeSync(fd);
    for (const fd of rctx.objects().values()) closeFd(fd);
  });
}

t.test('a descriptor in flight of a kind that cannot be handed off is a blocker naming the socket that holds it', async (t) => {
  const dir = mkdtempSync(join(tmpdir(), 'handoff-unix-'));
  t.teardown(() => rmSync(dir, { recursive: true, force: true }));
  const h = await holder(IN_FLIGHT, ['dgram', join(dir, 'file'), 'pidfd']);
  const b = h.fds[1]!;
  const info = fdInfoOf(h.p.pid!, b);
  const before = openFds();
  const blockers = unixModule.preflight!(info, new Set([h.p.pid!]), preflightContext([h.p.pid!]));
  t.equal(openFds(), before, 'peeked descriptors were closed');
  t.match(blockers, [{ code: 'B_FD_KIND', pid: h.p.pid, fd: b, reason: /in flight.*pidfd/ }]);
  closeFd(info.localFd);
  h.p.kill('SIGKILL');
  await h.p;
});

t.test('a TCP socket in flight is a blocker: the network lock covers only connections a process holds', async (t) => {
  const dir = mkdtempSync(join(tmpdir(), 'handoff-unix-'));
  t.teardown(() => rmSync(dir, { recursive: true, force: true }));
  const h = await holder(IN_FLIGHT, ['seqpacket', join(dir, 'file'), 'tcp']);
  const info = fdInfoOf(h.p.pid!, h.fds[1]!);
  t.match(unixModule.preflight!(info, new Set([h.p.pid!]), preflightContext([h.p.pid!])), [{ code: 'unix-scm-rights-tcp', pid: h.p.pid, fd: h.fds[1] }]);
  closeFd(info.localFd);
  h.p.kill('SIGKILL');
  await h.p;
});

// ---------------------------------------------------------------- peers outside the dumped set

t.test('a peer outside the dumped set is a blocker naming pid, fd and peer, unless told what to do', async (t) => {
  const h = await holder(PAIR, ['stream', 'split']);
  const info = fdInfoOf(h.p.pid!, h.fds[0]!);
  const blockers = unixModule.preflight!(info, new Set([h.p.pid!]), preflightContext([h.p.pid!]));
  t.equal(blockers.length, 1);
  t.match(blockers[0], { code: 'unix-peer-outside', pid: h.p.pid, fd: h.fds[0], reason: /peer socket \(inode \d+\).*--unix-outside=closed\|reconnect/ });
  t.same(unixModule.preflight!(info, new Set([h.p.pid!]), preflightContext([h.p.pid!], { unixOutside: 'closed' })), [], 'no blocker with --unix-outside');
  t.throws(() => unixModule.dump(info, dumpContext([h.p.pid!])), { code: 'E_BLOCKED' }, 'the dump refuses it too');
  closeFd(info.localFd);
  h.p.kill('SIGKILL');
  process.kill(h.fds[1]!, 'SIGKILL'); // the forked child holding the other end
  await h.p;
});

for (const [kind, mode] of [['stream', 'closed'], ['dgram', 'closed'], ['stream', 'reconnect'], ['seqpacket', 'reconnect']] as const) {
  t.test(`a ${kind} socket whose peer is outside comes back closed with --unix-outside=${mode}`, async (t) => {
    const h = await holder(PAIR, [kind, 'split']);
    const info = fdInfoOf(h.p.pid!, h.fds[0]!);
    const dctx = dumpContext([h.p.pid!], { unixOutside: mode });
    unixModule.dump(info, dctx);
    const record = dctx.records[0] as UnixRecord;
    t.equal(schemaErrors(record), '');
    t.equal(record.peer, undefined, 'no peer record');
    t.same(record.peerOutside, { restore: mode }, 'the choice is recorded (an unnamed peer has no address)');
    t.same(record.queue.map((m) => Buffer.from(m.data).toString()), ['to a']);
    h.p.kill('SIGKILL');
    process.kill(h.fds[1]!, 'SIGKILL');
    await h.p;
    closeFd(info.localFd);

    const rctx = restoreContext(dctx.records);
    const fd = unixModule.restore(record, rctx) as number;
    await rctx.finish();
    t.equal(S.recv(fd, 100, S.MSG_DONTWAIT).toString(), 'to a', 'the queued data first');
    if (kind === 'dgram') {
      t.throws(() => S.recv(fd, 100, S.MSG_DONTWAIT), errno(11), 'then nothing');
      t.throws(() => S.sendAll(fd, Buffer.from('x')), errno(111), 'writes: ECONNREFUSED, the peer has gone');
    } else {
      t.equal(S.recv(fd, 100, S.MSG_DONTWAIT).length, 0, 'then EOF');
      t.throws(() => S.sendAll(fd, Buffer.from('x')), errno(32), 'writes: EPIPE');
    }
    closeFd(fd);
  });
}

const DGRAM_CLIENT = `
import socket, sys
me, server = sys.argv[1], sys.argv[2]
s = socket.socket(socket.AF_UNIX, socket.SOCK_DGRAM)
s.bind(me)
s.connect(server)
s.send(b'hello server')
print('fd', s.fileno(), flush=True)
sys.stdin.read()
`;

// An unconnected datagram server (like a syslog daemon): prints what it gets, answers with sendto.
const DGRAM_SERVER = `
import socket, sys, select, os
me = sys.argv[1]
s = socket.socket(socket.AF_UNIX, socket.SOCK_DGRAM)
s.bind(me)
print('fds', s.fileno(), flush=True)
while True:
    r, _, _ = select.select([s, sys.stdin], [], [])
    if s in r:
        data, addr = s.recvfrom(100)
        print('got', data.decode(), addr, flush=True)
    if sys.stdin in r:
        chunk = os.read(0, 4096).decode()
        if not chunk: break
        for line in chunk.split('\\n'):
            if not line.strip(): continue
            to, text = line.split()
            s.sendto(text.encode(), to)
            print('sent', text, flush=True)
`;

t.test('a datagram socket is reconnected to its outside peer by name with --unix-outside=reconnect', async (t) => {
  const dir = mkdtempSync(join(tmpdir(), 'handoff-unix-'));
  t.teardown(() => rmSync(dir, { recursive: true, force: true }));
  const serverPath = join(dir, 'server.sock');
  const clientPath = join(dir, 'client.sock');
  // The server is another process, outside the dumped set.
  const server = await holder(DGRAM_SERVER, [serverPath]);
  t.teardown(() => server.p.kill('SIGKILL'));
  const serverOut = new LineWatcher(server.p.stdout!);
  const h = await holder(DGRAM_CLIENT, [clientPath, serverPath]);
  t.teardown(() => h.p.kill('SIGKILL'));
  t.match(await serverOut.waitFor('got'), `got hello server ${clientPath}`);
  server.p.stdin!.write(`${clientPath} reply-1\n${clientPath} reply-2\n`);
  const info = fdInfoOf(h.p.pid!, h.fds[0]!);
  await serverOut.waitFor('sent reply-2');

  t.match(unixModule.preflight!(info, new Set([h.p.pid!]), preflightContext([h.p.pid!])), [{ code: 'unix-peer-outside', reason: new RegExp(serverPath) }], 'without the option: a blocker naming the peer');
  const dctx = dumpContext([h.p.pid!], { unixOutside: 'reconnect' });
  unixModule.dump(info, dctx);
  const record = dctx.records[0] as UnixRecord;
  t.equal(schemaErrors(record), '');
  t.same(record.peerOutside, { restore: 'reconnect', address: { path: serverPath } });
  t.same(record.address, { path: clientPath });
  t.same(record.queue.map((m) => Buffer.from(m.data).toString()), ['reply-1', 'reply-2']);
  h.p.kill('SIGKILL');
  await h.p;
  closeFd(info.localFd);

  const rctx = restoreContext(dctx.records);
  const fd = unixModule.restore(record, rctx) as number;
  await rctx.finish();
  t.same(readAll(fd).map(String), ['reply-1', 'reply-2'], 'the queued datagrams, in order');
  t.same(S.getsockname(fd), { family: 'unix', path: clientPath }, 'bound to its name again');
  t.same(S.getpeername(fd), { family: 'unix', path: serverPath }, 'connected to the peer again');
  S.sendAll(fd, Buffer.from('back-again'));
  t.match(await serverOut.waitFor('got back-again'), clientPath, 'the outside peer gets what it sends, from its name');
  closeFd(fd);

  // The same image once the peer has gone: restored as closed.
  server.p.kill('SIGKILL');
  await server.p;
  rmSync(serverPath);
  const again = restoreContext(dctx.records);
  const closed = unixModule.restore(record, again) as number;
  t.same(readAll(closed).map(String), ['reply-1', 'reply-2'], 'without its peer: the queue still comes back');
  t.throws(() => S.sendAll(closed, Buffer.from('x')), errno(111), 'and writes are refused');
  closeFd(closed);
});

// ---------------------------------------------------------------- through the CLI, a real target

// Outside the dumped tree: a stream listener that greets each connection, and a datagram
// server that answers "hello server" with "reply-1" (sendto) and prints what it gets.
const OUTSIDE_SERVER = `
import socket, sys, select, os
d = sys.argv[1]
ls = socket.socket(socket.AF_UNIX, socket.SOCK_STREAM); ls.bind(d + '/stream.sock'); ls.listen(4)
dg = socket.socket(socket.AF_UNIX, socket.SOCK_DGRAM); dg.bind(d + '/dgram.sock')
conns = []
print('fds', ls.fileno(), flush=True)
while True:
    r, _, _ = select.select([ls, dg], [], [])
    if ls in r:
        c, _ = ls.accept(); conns.append(c)
        try: c.send(b'from outside')
        except OSError: pass
    if dg in r:
        data, addr = dg.recvfrom(100)
        print('got', data.decode(), flush=True)
        try:
            if data == b'hello server': dg.sendto(b'reply-1', addr)
        except OSError: pass
`;

t.test('the net-queues target through the CLI: a peer outside the tree blocks the dump, --unix-outside restores it', async (t) => {
  const { cleanup, dumpTarget, runRoundTrip, startTarget } = await import('../lib/target.js');
  const dir = mkdtempSync(join(tmpdir(), 'handoff-outside-'));
  t.teardown(() => rmSync(dir, { recursive: true, force: true }));
  const server = await holder(OUTSIDE_SERVER, [dir]);
  t.teardown(() => server.p.kill('SIGKILL'));
  const got = new LineWatcher(server.p.stdout!);

  await t.test('without the option: blocked, naming pid, fd and peer, and the target runs on', async (t) => {
    const running = await startTarget('net-queues', { env: { HANDOFF_UNIX_OUTSIDE: 'closed', HANDOFF_UNIX_SERVER: dir } });
    const err = await dumpTarget(running.pid, join(running.workDir, 'image.himg')).catch((e: Error) => e);
    t.match(String(err), /exited 4/);
    t.match(String(err), new RegExp(`unix-peer-outside.*pid ${running.pid}|pid ${running.pid}.*unix-peer-outside`, 's'));
    t.match(String(err), /dgram\.sock/, 'the datagram peer is named');
    t.ok(running.pids().length > 0, 'nothing was frozen or killed');
    await running.kill();
    cleanup(running.workDir);
  });

  for (const mode of ['closed', 'reconnect'] as const) {
    await t.test(`--unix-outside ${mode}`, async (t) => {
      const r = await runRoundTrip('net-queues', { env: { HANDOFF_UNIX_OUTSIDE: mode, HANDOFF_UNIX_SERVER: dir }, dumpArgs: ['--unix-outside', mode] });
      t.equal(r.verdict, 'PASS', `${r.verdict}\n${r.log}`);
      if (mode === 'reconnect') t.equal(await got.waitFor('got after restore'), 'got after restore', 'the outside server got what the restored socket sent');
      cleanup(r.workDir);
    });
  }
});

t.test('a dump with --leave-running leaves every queued message, descriptor in flight and datagram to the original', async (t) => {
  const { cleanup, runRoundTrip } = await import('../lib/target.js');
  const r = await runRoundTrip('net-queues', { leaveRunning: true });
  t.equal(r.verdict, 'PASS', `${r.verdict}\n${r.log}`);
  cleanup(r.workDir);
});
