// Half-closed connections handed off through the CLI: net-halfclose (root namespace) holds a
// connection to a peer in its own namespace that is in CLOSE_WAIT (the peer sent its data and
// FIN, nothing read yet) or FIN_WAIT2 (our data and FIN sent and acknowledged, the peer still
// to send). Dumped, killed and restored, the process finds the same state: it reads every byte
// and then end of stream exactly where the peer put its FIN, and in CLOSE_WAIT it can still
// send, the peer receiving every byte and then the FIN. Neither side sees a reset.
import t from 'tap';
import { mkdtempSync } from 'node:fs';
import { tmpdir } from 'node:os';
import { join } from 'node:path';
import { freePort, imageSockets, networkTest, nftTables, CLI_LOCK_TABLE } from '../../lib/peers.js';
import { TARGETS_BUILD, VERDICT, cleanup, dumpTarget, restoreImage, startTarget } from '../../lib/target.js';

const BYTES = 20000;

// The numbered stream of net-stream.h; close-wait: send then FIN, then read to EOF;
// fin-wait2: read to EOF, then on "GO" send and close.
const PEER = `
import socket, sys
mode, host, port, total = sys.argv[1], sys.argv[2], int(sys.argv[3]), int(sys.argv[4])
def stream(start, n):
    return bytes(((i >> 3) >> (8 * (i & 7))) & 0xff for i in range(start, start + n))
l = socket.socket(socket.AF_INET6 if ':' in host else socket.AF_INET)
l.setsockopt(socket.SOL_SOCKET, socket.SO_REUSEADDR, 1)
l.bind((host, port)); l.listen(1)
print('LISTENING', flush=True)
c, _ = l.accept()
def read_all():
    rx = 0
    while True:
        d = c.recv(65536)
        if not d:
            return rx
        if d != stream(rx, len(d)):
            print('BAD', rx, flush=True); sys.exit(3)
        rx += len(d)
try:
    if mode == 'close-wait':
        c.sendall(stream(0, total)); c.shutdown(socket.SHUT_WR)
        print('EOF', read_all(), flush=True)
    else:
        print('EOF', read_all(), flush=True)
        sys.stdin.readline()
        c.sendall(stream(0, total)); c.close()
        print('SENT', flush=True)
except Exception as e:
    print('ERROR', type(e).__name__, flush=True)
`;

for (const [mode, family] of [['close-wait', 'v4'], ['fin-wait2', 'v4'], ['close-wait', 'v6']] as const) {
  const state = mode === 'close-wait' ? 'CLOSE_WAIT' : 'FIN_WAIT2';
  t.test(`a process holding a ${state} connection (IP${family}) is handed off with its FIN history; no byte lost, no reset`, (t) =>
    networkTest(t, async (ctx) => {
      const workDir = mkdtempSync(join(tmpdir(), 'handoff-net-halfclose-'));
      t.teardown(() => cleanup(workDir));
      const host = ctx.peers.peer[family];
      const port = await freePort();
      const peer = ctx.spawnPeer(['python3', '-c', PEER, mode, host, String(port), String(BYTES)]);
      await peer.waitLine((l) => l === 'LISTENING', 'LISTENING');
      const target = ctx.track(await startTarget('net-halfclose', { command: [join(TARGETS_BUILD, 'net-halfclose')], args: [mode, host, String(port), String(BYTES)], env: ctx.env, workDir }));
      if (mode === 'fin-wait2') t.equal(await peer.waitLine((l) => l.startsWith('EOF'), 'EOF'), `EOF ${BYTES}`, 'the peer got our bytes and FIN before the dump');

      const image = join(workDir, 'image.himg');
      await dumpTarget(target.pid, image);
      const sockets = await imageSockets(image);
      t.same(sockets.filter((s) => s.kind === 'tcp').map((s) => s.state), [state], `the image holds the connection in ${state}`);
      await target.kill();

      const { running } = await restoreImage('net-halfclose', target.pid, image, workDir);
      ctx.track(running);
      t.notOk((await nftTables()).includes(CLI_LOCK_TABLE), 'the restore removes the lock');
      running.signal('SIGUSR1');
      if (mode === 'fin-wait2') {
        await running.waitFor(/^CHECKED$/m, 30_000);
        peer.proc.stdin!.write('GO\n');
        await peer.waitLine((l) => l === 'SENT' || /^(ERROR|BAD)/.test(l), 'SENT');
      } else {
        t.equal(await peer.waitLine((l) => /^(EOF|ERROR|BAD)/.test(l), 'EOF'), `EOF ${BYTES}`, 'the peer received every byte the restored process sent, then its FIN');
      }
      t.same(peer.lines.lines.filter((l) => /^(ERROR|BAD)/.test(l)), [], 'the peer saw no reset and no wrong byte');
      const verdict = await running.waitFor(VERDICT, 60_000);
      t.equal(verdict[1], 'PASS', `the restored process found its ${state} connection intact`, { log: running.log() });
      t.equal(await running.exitCode(), 0);
    }),
  );
}
