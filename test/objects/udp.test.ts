// UDP sockets come back bound and connected as they were, in their network namespace, and
// exchange datagrams with a peer in another namespace.
import t from 'tap';
import { closeFd } from '../../src/native/fd.js';
import * as S from '../../src/native/socket.js';
import { udpModule, type UdpRecord } from '../../src/objects/udp.js';
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
