// `handoff unlock`: removes the network lock table by hand (after a failed prepare/resume,
// or when a handoff was abandoned). Harmless when no lock is present.
import { DEFAULT_TABLE, droppedPackets, unlock } from '../handoff/netlock.js';
import { out, type Command } from './command.js';

export const command: Command = {
  name: 'unlock',
  summary: 'remove the network lock (nftables table inet handoff) left by an interrupted handoff',
  help: `Usage: handoff unlock [--table NAME] [--netns NAME] [--json]

Deletes the nftables table that drops the packets of handed-off connections
(default: inet ${DEFAULT_TABLE}). Connections that were being handed off and are not
restored will then be reset by the kernel when their peers retransmit.

Options:
  --table NAME   table name (default ${DEFAULT_TABLE})
  --netns NAME   act inside this named network namespace (ip netns)
  --json         print the result as JSON`,
  options: {
    table: { type: 'string' },
    netns: { type: 'string' },
    json: { type: 'boolean' },
  },
  async run(values) {
    const opts = { table: values.table as string | undefined, netns: values.netns as string | undefined };
    const dropped = await droppedPackets(opts);
    const removed = await unlock(opts);
    const table = `inet ${opts.table ?? DEFAULT_TABLE}`;
    if (values.json) out(JSON.stringify({ removed, table, droppedPackets: dropped ?? 0 }));
    else out(removed ? `removed table ${table} (it had dropped ${dropped ?? 0} packets)` : `no table ${table}: nothing to unlock`);
    return 0;
  },
};
