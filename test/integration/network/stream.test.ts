// A TCP connection with a real peer streaming both ways is handed off: the handed-off endpoint
// (net-stream) runs in the root namespace, the peer (net-peer) in a namespace of its own behind
// a veth. Neither reads at first, so at dump time both queues of the handed-off socket hold
// data; the peer keeps writing (and its kernel keeps retransmitting and probing) while the
// endpoint is dumped, killed and restored. Then both read and write until 32 MiB went each
// way; each checks every byte against the numbered stream and the exact total, and a reset
// fails either. Here the handed-off endpoint is the server: its listener (same port) is handed
// off with the accepted connection.
import t from 'tap';
import { networkTest, streamScenario } from '../../lib/peers.js';

for (const family of ['v4', 'v6'] as const) {
  t.test(`a peer streaming both ways over IP${family} to a server loses no byte, gets none twice and sees no reset across dump, kill and restore of the server`, (t) =>
    networkTest(t, (ctx) => streamScenario(t, ctx, { family, role: 'server' })),
  );
}
