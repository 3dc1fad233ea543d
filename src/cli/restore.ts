// handoff restore: bring the processes of an image back to life on this machine.
import { UsageError } from '../errors.js';
import { out, type Command } from './command.js';

export const command: Command = {
  name: 'restore',
  summary: 'restore the processes of an image',
  help: `Usage: handoff restore --image FILE [--detach] [--reapply-network] [--lock-table NAME] [--json]

Verifies the whole image (ownership, schema, digest, kernel), then recreates every process
with its pids, memory, threads, registers, files and signals. Without --detach, waits for the
restored root process to exit and exits with its status; with --detach, returns as soon as
the processes run on their own. A failed restore kills what it created and names the step.
The host network configuration recorded at dump time (links, addresses, routes, nftables) is
compared with this host and every difference reported; --reapply-network adds back missing
addresses and routes before any socket is restored.`,
  options: {
    image: { type: 'string', short: 'i' },
    detach: { type: 'boolean', short: 'd' },
    'reapply-network': { type: 'boolean' },
    'lock-table': { type: 'string' },
    json: { type: 'boolean' },
  },
  async run(values) {
    if (typeof values.image !== 'string') throw new UsageError('restore: --image FILE is required');
    const { restore } = await import('../restore/index.js');
    const r = await restore({ image: values.image, detach: values.detach === true, reapplyNetwork: values['reapply-network'] === true, lockTable: typeof values['lock-table'] === 'string' ? values['lock-table'] : undefined });
    if (!values.json && r.network) {
      for (const d of r.network.differences) process.stderr.write(`handoff restore: network differs: ${d}\n`);
      for (const a of r.network.applied) process.stderr.write(`handoff restore: re-applied: ${a}\n`);
    }
    if (values.json) out(JSON.stringify(r, null, 2));
    else if (values.detach) out(`restored ${r.pids.length} process(es) (${r.pids.join(', ')}), ${r.threads} thread(s): verify ${r.ms.verify.toFixed(1)} ms, restore ${r.ms.restore.toFixed(1)} ms`);
    return r.exitCode ?? 0;
  },
};
