// handoff abort: undo a prepare that will not jump.
import { UsageError } from '../errors.js';
import { out, type Command } from './command.js';

export const command: Command = {
  name: 'abort',
  summary: 'undo a prepare: unload the staged kernel, remove the network lock, empty the store',
  help: `Usage: handoff abort [--force] [--json]

Undoes what a prepare left behind: TCP sockets left in repair mode are switched back, the
network lock tables are removed, the staged kernel is unloaded, the store is emptied and
the pending record (/run/handoff/pending.json) removed. Processes run on (a killed prepare's
ptrace freeze ends with it). Refuses while a prepare --exec is still running, unless
--force (which kills it first). prepare --exec starts "abort --watch PID" itself, which does
all this when the preparing process dies before the jump. Once prepare has killed the
processes for the jump (systemctl kexec), the store holds their only copy: the watchdog then
keeps everything for handoff resume, and abort refuses (E_ABORT_LOSES_PROCESSES, exit 6)
unless --force.`,
  options: {
    watch: { type: 'string' },
    force: { type: 'boolean' },
    json: { type: 'boolean' },
  },
  async run(values) {
    const watch = values.watch === undefined ? undefined : Number(values.watch);
    if (watch !== undefined && !(Number.isInteger(watch) && watch > 0)) throw new UsageError('abort: bad --watch PID');
    const { abort } = await import('../handoff/abort.js');
    const r = await abort({ watch, force: values.force === true });
    if (values.json) out(JSON.stringify(r, null, 2));
    else if (r.nothing && watch !== undefined) return 0;
    else if (r.keptForResume) out('handoff abort: the processes were already stopped for the jump; the staged kernel, the lock and the store are kept for handoff resume');
    else if (r.nothing) out(`handoff abort: nothing pending${r.unlockedTables.length ? `; removed leftover lock tables ${r.unlockedTables.join(' ')}` : ''}`);
    else out(`handoff abort: ${r.repairedSockets.length} TCP connection(s) made sure to be out of repair mode, lock tables removed: ${r.unlockedTables.join(' ') || 'none'}, staged kernel ${r.kernelUnloaded ? 'unloaded' : 'none'}, store emptied`);
    return 0;
  },
};
