// The streaming scenario of stream.test.ts with the roles swapped: the handed-off process
// connected out to the peer (which listens in its namespace), so the image holds one
// established connection and no listener. Both queues are full at dump time; 32 MiB go each
// way afterwards, every byte checked on both sides, a reset fails either.
import t from 'tap';
import { mkdtempSync } from 'node:fs';
import { tmpdir } from 'node:os';
import { join } from 'node:path';
import { freePort, networkTest, streamScenario } from '../../lib/peers.js';
import { TARGETS_BUILD, cleanup, startTarget } from '../../lib/target.js';

for (const family of ['v4', 'v6'] as const) {
  t.test(`a client streaming both ways over IP${family} to its peer loses no byte, repeats none and sees no reset across dump, kill and restore of the client`, (t) =>
    networkTest(t, (ctx) => streamScenario(t, ctx, { family, role: 'client' })),
  );
}

t.test('the peer reports a reset when the client dies without a handoff (the check can fail)', (t) =>
  networkTest(t, async (ctx) => {
    const workDir = mkdtempSync(join(tmpdir(), 'handoff-net-stream-'));
    t.teardown(() => cleanup(workDir));
    const host = ctx.peers.peer.v4;
    const port = await freePort();
    const peer = ctx.spawnPeer([join(TARGETS_BUILD, 'net-peer'), 'listen', host, String(port), '1048576']);
    await peer.waitLine((l) => l === 'LISTENING', 'LISTENING');
    const endpoint = ctx.track(await startTarget('net-stream', { command: [join(TARGETS_BUILD, 'net-stream')], args: ['connect', host, String(port), '1048576'], env: ctx.env, workDir }));
    await peer.waitLine((l) => l.startsWith('FULL '), 'FULL');
    // Closing a socket with unread data makes the kernel send a reset.
    await endpoint.kill();
    peer.proc.stdin!.write('GO\n');
    t.match(await peer.waitLine((l) => l.startsWith('PEER '), 'verdict'), /^PEER FAIL .*Connection reset by peer/);
  }),
);
