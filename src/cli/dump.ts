// handoff dump: checkpoint a process (tree) into an image on this machine.
import { UsageError } from '../errors.js';
import { out, type Command } from './command.js';

export const command: Command = {
  name: 'dump',
  summary: 'checkpoint a process (or a tree) into an image',
  help: `Usage: handoff dump --pid PID [--tree] --image FILE [--leave-running] [--lock-table NAME] [--accept-drain-ms MS]
                   [--unix-outside closed|reconnect] [--json]

Freezes the process (and with --tree every descendant), writes everything user-visible about
it into FILE (mode 0600) and kills it, or thaws it with --leave-running. Anything that cannot
be handed off is reported with its pid and fd before anything is frozen (exit 4). If the dump
fails at any point the processes are thawed and run on untouched.
TCP connections are locked (nftables table inet NAME, default "handoff") before their sockets
are read; after a kill the lock stays until \`handoff restore\` (same --lock-table) has them back.
Before the freeze, new SYNs to the dumped listeners are dropped (clients retry) and the
processes get --accept-drain-ms (default 2000) to accept what waits in their accept queues
(unix listeners too, though their connects cannot be held off); a listener still holding
connections then is a blocker.
A unix socket whose peer is in no dumped process is a blocker, unless --unix-outside says how
to restore it: closed (its peer has gone: the queued data, then EOF; writes fail) or reconnect
(a datagram socket connects to the peer's name again; stream and seqpacket sockets, an unnamed
peer or one no longer there at restore fall back to closed).`,
  options: {
    pid: { type: 'string', short: 'p' },
    tree: { type: 'boolean', short: 't' },
    image: { type: 'string', short: 'o' },
    'leave-running': { type: 'boolean' },
    'lock-table': { type: 'string' },
    'accept-drain-ms': { type: 'string' },
    'unix-outside': { type: 'string' },
    json: { type: 'boolean' },
  },
  async run(values) {
    const pid = Number(values.pid);
    if (!Number.isInteger(pid) || pid <= 0) throw new UsageError('dump: --pid PID is required');
    if (typeof values.image !== 'string') throw new UsageError('dump: --image FILE is required');
    const { dump } = await import('../dump/index.js');
    const lockTable = typeof values['lock-table'] === 'string' ? values['lock-table'] : undefined;
    const drain = values['accept-drain-ms'];
    const acceptDrainMs = typeof drain === 'string' ? Number(drain) : undefined;
    if (acceptDrainMs !== undefined && !(Number.isInteger(acceptDrainMs) && acceptDrainMs >= 0)) throw new UsageError('dump: --accept-drain-ms takes a number of milliseconds');
    const unixOutside = unixOutsideOption(values['unix-outside'], 'dump');
    const r = await dump({ pid, tree: values.tree === true, image: values.image, leaveRunning: values['leave-running'] === true, lockTable, acceptDrainMs, unixOutside });
    if (values.json) out(JSON.stringify(r, null, 2));
    else out(`dumped ${r.pids.length} process(es), ${r.threads} thread(s) into ${r.image}: ${r.bytes} bytes (${r.pagesBytes} of memory), frozen ${r.frozenMs.toFixed(1)} ms`);
    return 0;
  },
};

/** --unix-outside closed|reconnect (undefined when not given). */
export function unixOutsideOption(value: unknown, verb: string): 'closed' | 'reconnect' | undefined {
  if (value === undefined) return undefined;
  if (value === 'closed' || value === 'reconnect') return value;
  throw new UsageError(`${verb}: --unix-outside takes closed or reconnect`);
}
