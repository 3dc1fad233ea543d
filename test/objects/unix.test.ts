// Unix sockets: connected pairs with queued data in both directions, bound listeners (path and
// abstract), and the blockers for peers outside the set and descriptors in flight.
import t from 'tap';
import net from 'node:net';
import { existsSync } from 'node:fs';
import { execa } from 'execa';
import { closeFd } from '../../src/native/fd.js';
import * as S from '../../src/native/socket.js';
import { unixModule, type UnixRecord } from '../../src/objects/unix.js';
import { LineWatcher, uniqueTag } from '../lib/netns.js';
import { dumpContext, fdInfoOf, restoreContext, schemaErrors } from '../lib/socket-context.js';

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
    if (kind === 'stream') t.throws(() => S.sendAll(nb, Buffer.from('x')), { errno: 32 }, 'b stays shut down for writing (EPIPE)');
    closeFd(na);
    closeFd(nb);
  });
}

t.test('a peer outside the dumped set is a blocker naming pid and fd', async (t) => {
  const h = await holder(PAIR, ['stream', 'split']);
  const info = fdInfoOf(h.p.pid!, h.fds[0]!);
  const blockers = unixModule.preflight!(info, new Set([h.p.pid!]));
  t.equal(blockers.length, 1);
  t.match(blockers[0], { code: 'unix-peer-outside', pid: h.p.pid, fd: h.fds[0] });
  closeFd(info.localFd);
  h.p.kill('SIGKILL');
  process.kill(h.fds[1]!, 'SIGKILL'); // the forked child holding the other end
  await h.p;
});

t.test('descriptors in flight are a blocker, and peeking them leaks nothing', async (t) => {
  const h = await holder(PAIR, ['stream', 'fds']);
  const info = fdInfoOf(h.p.pid!, h.fds[1]!);
  const before = (await import('node:fs')).readdirSync('/proc/self/fd').length;
  const blockers = unixModule.preflight!(info, new Set([h.p.pid!]));
  t.equal((await import('node:fs')).readdirSync('/proc/self/fd').length, before, 'peeked fds were closed');
  t.match(blockers, [{ code: 'unix-scm-rights', pid: h.p.pid, fd: h.fds[1] }]);
  closeFd(info.localFd);
  h.p.kill('SIGKILL');
  await h.p;
});

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
