// UDP sockets come back bound and connected as they were, in their network namespace, and
// exchange datagrams with a peer in another namespace.
import t from 'tap';
import { closeFd } from '../../src/native/fd.js';
import * as S from '../../src/native/socket.js';
import { peekDatagrams, udpModule, type UdpRecord } from '../../src/objects/udp.js';
import { createNetnsPair, LineWatcher } from '../lib/netns.js';
import { dumpContext, fdInfoOf, restoreContext, schemaErrors } from '../lib/socket-context.js';

const HOLDER = `
import socket, sys
host, port, peer, pport = sys.argv[1], int(sys.argv[2]), sys.argv[3], int(sys.argv[4])
s = socket.socket(socket.AF_INET6 if ':' in host else socket.AF_INET, socket.SOCK_DGRAM)
s.setsockopt(socket.SOL_SOCKET, socket.SO_REUSEADDR, 1)
s.setsockopt(socket.SOL_SOCKET, socket.SO_RCVBUF, 300000)
s.bind((host, port))
if pport: s.connect((peer, pport))
print('fd', s.fileno(), flush=True)
sys.stdin.read()
`;

// Sends one datagram to the restored socket, then prints what comes back.
const PEER = `
import socket, sys
host, port, to, toport = sys.argv[1], int(sys.argv[2]), sys.argv[3], int(sys.argv[4])
s = socket.socket(socket.AF_INET6 if ':' in host else socket.AF_INET, socket.SOCK_DGRAM)
s.bind((host, port))
s.sendto(b'to-restored', (to, toport))
d, a = s.recvfrom(100)
print('got', d.decode(), flush=True)
`;

async function recvDatagram(fd: number): Promise<Buffer> {
  for (;;) {
    try {
      return S.recv(fd, 2048, S.MSG_DONTWAIT);
    } catch (err) {
      if ((err as { errno?: number }).errno !== 11) throw err;
      await new Promise((r) => setTimeout(r, 20));
    }
  }
}

t.test('UDP sockets round trip', async (t) => {
  const pair = await createNetnsPair();
  t.teardown(() => pair.destroy());

  for (const [family, connected] of [['inet', true], ['inet6', false]] as const) {
    await t.test(`${family} ${connected ? 'bound and connected' : 'bound'} socket`, async (t) => {
      const addrs = family === 'inet' ? pair.v4 : pair.v6;
      const port = 20000 + Math.floor(Math.random() * 20000);
      const pport = port + 1;
      const holder = pair.spawn(pair.local, 'python3', ['-c', HOLDER, addrs.local, String(port), addrs.peer, String(connected ? pport : 0)]);
      const fd = Number((await new LineWatcher(holder.stdout!).waitFor('fd')).split(' ')[1]);
      const info = fdInfoOf(holder.pid!, fd);
      t.ok(udpModule.matches(info));
      t.same(udpModule.preflight!(info, new Set([holder.pid!])), []);
      const dctx = dumpContext([holder.pid!]);
      udpModule.dump(info, dctx);
      const record = dctx.records[0] as UdpRecord;
      t.equal(schemaErrors(record), '', 'validates against udp.json');
      t.same(record.local, { address: addrs.local, port });
      t.same(record.remote, connected ? { address: addrs.peer, port: pport } : undefined);
      t.equal(record.options.reuseAddr, true);
      holder.kill('SIGKILL');
      await holder;
      closeFd(info.localFd);

      const rctx = restoreContext(dctx.records);
      const rfd = pair.inside(pair.local, () => udpModule.restore(record, rctx) as number);
      await rctx.finish();
      t.same(S.getsockname(rfd), { family, address: addrs.local, port }, 'bound to the recorded address');
      t.same(S.getpeername(rfd), connected ? { family, address: addrs.peer, port: pport } : null, 'connected as recorded');
      t.equal(S.getsockoptInt(rfd, S.SOL_SOCKET, S.SO.RCVBUF), record.options.rcvBuf, 'receive buffer size restored');

      const peer = pair.spawn(pair.peer, 'python3', ['-c', PEER, addrs.peer, String(pport), addrs.local, String(port)]);
      const peerOut = new LineWatcher(peer.stdout!);
      t.equal((await recvDatagram(rfd)).toString(), 'to-restored', 'the peer reaches the restored socket');
      if (connected) S.sendAll(rfd, Buffer.from('from-restored'));
      else {
        // Unconnected: connect now to answer (sendto is not bound in the native layer).
        S.connectSocket(rfd, S.encodeSockAddr({ family, address: addrs.peer, port: pport }));
        S.sendAll(rfd, Buffer.from('from-restored'));
      }
      t.equal(await peerOut.waitFor('got'), 'got from-restored', 'the restored socket reaches the peer');
      await peer;
      closeFd(rfd);
    });
  }
});

// Binds, answers 'connect' by connecting to the peer, keeps its queue unread.
const QUEUE_HOLDER = `
import socket, sys
host, port, peer, pport = sys.argv[1], int(sys.argv[2]), sys.argv[3], int(sys.argv[4])
s = socket.socket(socket.AF_INET6 if ':' in host else socket.AF_INET, socket.SOCK_DGRAM)
s.bind((host, port))
print('fd', s.fileno(), flush=True)
for line in sys.stdin:
    if line.strip() == 'connect':
        s.connect((peer, pport))
        print('connected', flush=True)
`;

// Sends datagrams to (to, toport), each "SRCPORT:PAYLOAD" from its own source port.
const SENDER = `
import socket, sys
host, to, toport = sys.argv[1], sys.argv[2], int(sys.argv[3])
for item in sys.argv[4:]:
    sport, data = item.split(':', 1)
    s = socket.socket(socket.AF_INET6 if ':' in host else socket.AF_INET, socket.SOCK_DGRAM)
    s.setsockopt(socket.SOL_SOCKET, socket.SO_REUSEADDR, 1)
    s.bind((host, int(sport)))
    s.sendto(data.encode(), (to, toport))
    s.close()
print('sent', flush=True)
`;

/** Reads one datagram with its sender (peek for the address, then consume it). */
function takeDatagram(fd: number): { data: string; from: S.SockAddr | undefined } | undefined {
  const m = S.peekMessage(fd, 0, 65536);
  if (!m) return undefined;
  S.recv(fd, 65536, S.MSG_DONTWAIT);
  return { data: m.data.toString(), from: m.from };
}

t.test('queued UDP datagrams come back in order, each from its own sender, and the original keeps them', async (t) => {
  const pair = await createNetnsPair();
  t.teardown(() => pair.destroy());
  for (const [family, bindAny, connect] of [['inet', false, true], ['inet6', true, false]] as const) {
    await t.test(`${family} ${bindAny ? 'wildcard-bound' : 'bound'} socket${connect ? ', connected after the first datagrams' : ''}`, async (t) => {
      const addrs = family === 'inet' ? pair.v4 : pair.v6;
      const port = 20000 + Math.floor(Math.random() * 20000);
      const pport = port + 1;
      const other = port + 2;
      const holder = pair.spawn(pair.local, 'python3', ['-c', QUEUE_HOLDER, bindAny ? (family === 'inet6' ? '::' : '0.0.0.0') : addrs.local, String(port), addrs.peer, String(pport)]);
      const out = new LineWatcher(holder.stdout!);
      const fd = Number((await out.waitFor('fd')).split(' ')[1]);
      const send = async (items: string[]) => {
        const p = pair.spawn(pair.peer, 'python3', ['-c', SENDER, addrs.peer, addrs.local, String(port), ...items]);
        await new LineWatcher(p.stdout!).waitFor('sent');
        await p;
      };
      await send([`${pport}:first from the peer`, `${other}:from another port`]);
      if (connect) {
        holder.stdin!.write('connect\n');
        await out.waitFor('connected');
      }
      await send([`${pport}:${'x'.repeat(3000)}`]);
      const info = fdInfoOf(holder.pid!, fd);
      const inqBefore = S.ioctlInt(info.localFd, S.SIOCINQ);
      const dctx = dumpContext([holder.pid!]);
      udpModule.dump(info, dctx);
      const record = dctx.records[0] as UdpRecord;
      t.equal(schemaErrors(record), '', 'validates against udp.json');
      t.same(
        record.queue?.map((d) => [Buffer.from(d.data).toString().slice(0, 20), d.from]),
        [
          ['first from the peer', { address: addrs.peer, port: pport }],
          ['from another port', { address: addrs.peer, port: other }],
          ['x'.repeat(20), { address: addrs.peer, port: pport }],
        ],
        'every datagram recorded with its sender',
      );
      t.equal(record.queue![2]!.data.length, 3000);
      t.same(record.queue![0]!.to, { address: addrs.local, port: 0 }, 'and the address it was sent to');
      t.equal(S.ioctlInt(info.localFd, S.SIOCINQ), inqBefore, 'the original queue is untouched');
      t.equal(S.getsockoptInt(info.localFd, S.SOL_SOCKET, S.SO_PEEK_OFF), -1, 'and so is its peek offset');
      holder.kill('SIGKILL');
      await holder;
      closeFd(info.localFd);

      const rctx = restoreContext(dctx.records);
      const rfd = pair.inside(pair.local, () => udpModule.restore(record, rctx) as number);
      await rctx.finish();
      if (connect) t.same(S.getpeername(rfd), { family, address: addrs.peer, port: pport }, 'connected after its queue was filled');
      const got = [takeDatagram(rfd), takeDatagram(rfd), takeDatagram(rfd), takeDatagram(rfd)];
      t.same(
        got.map((d) => d && [d.data.slice(0, 20), d.data.length, d.from]),
        [
          ['first from the peer', 19, { family, address: addrs.peer, port: pport }],
          ['from another port', 17, { family, address: addrs.peer, port: other }],
          ['x'.repeat(20), 3000, { family, address: addrs.peer, port: pport }],
          undefined,
        ],
        'the restored socket reads the same datagrams from the same senders, and nothing more',
      );
      closeFd(rfd);
    });
  }
});

t.test('reading the queue for a dump leaves every datagram for its owner', async (t) => {
  const a = S.socket(S.AF_INET, S.SOCK_DGRAM, S.IPPROTO_UDP);
  S.bindSocket(a, S.encodeSockAddr({ family: 'inet', address: '127.0.0.1', port: 0 }));
  const local = S.getsockname(a);
  for (const word of ['one', 'two']) S.udpInject({ family: 'inet', address: '127.0.0.9', port: 5353 }, local, Buffer.from(word));
  const record = { kind: 'udp', family: 'inet', queue: peekDatagrams(a, 'inet') };
  t.equal(record.queue.length, 2);
  t.same([takeDatagram(a)?.data, takeDatagram(a)?.data, takeDatagram(a)], ['one', 'two', undefined], 'the owner still reads both, once');
  closeFd(a);
});
