// handoff resume: on the new kernel, put the handed-off processes back.
import { out, type Command } from './command.js';
import type { StoreSpec } from '../handoff/store.js';

export const command: Command = {
  name: 'resume',
  summary: 'restore the processes handed off across kexec (--early: network lock only)',
  help: `Usage: handoff resume [--early] [--image DIR | --pmem DEVICE] [--json]

Finds the store from handoff.resume= on the kernel command line (or --image/--pmem) and
does nothing when there is none. --early (before any network interface is up): verifies
every image and installs its network lock. Without --early: restores every process tree
(one failing does not stop the others), removes the locks and reports what was restored,
the time of each phase and the blackout from freeze to running. The store is kept
(DIR renamed DIR.resumed; the pmem header marked resumed). The last report is also in
/run/handoff/last-report.json. Exit 6 when a tree could not be restored.`,
  options: {
    early: { type: 'boolean' },
    image: { type: 'string' },
    pmem: { type: 'string' },
    json: { type: 'boolean' },
  },
  async run(values) {
    const { resolve } = await import('node:path');
    const store: StoreSpec | undefined = typeof values.image === 'string' ? { type: 'file', path: resolve(values.image) } : typeof values.pmem === 'string' ? { type: 'pmem', device: values.pmem } : undefined;
    const { resume, resumeEarly, reportText } = await import('../handoff/resume.js');
    if (values.early) {
      const r = await resumeEarly({ store });
      if (values.json) out(JSON.stringify(r, null, 2));
      else if (r.nothing) out('handoff resume --early: nothing to resume');
      else out(`handoff resume --early: ${r.locked.length} lock table(s) installed (${r.locked.map((l) => `${l.table}: ${l.connections} connection(s), ${l.ports} port(s)`).join('; ') || 'no TCP'}) in ${r.ms.toFixed(1)} ms`);
      return 0;
    }
    const r = await resume({ store });
    out(values.json ? JSON.stringify(r, null, 2) : reportText(r));
    return r.failed ? 6 : 0;
  },
};
