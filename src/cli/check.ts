// handoff check: what this kernel offers, and whether dump/restore (and prepare) can work here.
import { EXIT } from '../errors.js';
import { missingFor, probeKernel, type Need } from '../kernel/features.js';
import { out, type Command } from './command.js';

export const command: Command = {
  name: 'check',
  summary: 'probe this kernel for the features dump, restore and prepare need',
  help: `Usage: handoff check [--json] [--prepare]

Really exercises each feature (ptrace, pidfd_getfd, clone3 with set_tid, TCP repair,
time namespaces, kexec permission...) and prints one line per feature: name, yes/no,
what was found, the first kernel that has it, and what needs it.

  --json      machine-readable output (the whole probe result)
  --prepare   also require what 'handoff prepare' needs (kexec)

Exit status 0 when everything dump and restore need is available (and kexec, with
--prepare); 5 otherwise, naming what is missing.`,
  options: {
    json: { type: 'boolean' },
    prepare: { type: 'boolean' },
  },
  async run(values) {
    const facts = probeKernel();
    const needs: Need[] = values.prepare ? ['dump', 'restore', 'prepare'] : ['dump', 'restore'];
    const missing = [...new Set(needs.flatMap((n) => missingFor(facts, n)))];
    const ok = missing.length === 0;
    if (values.json) {
      out(JSON.stringify({ ...facts, ok, checked: needs, missing: missing.map((f) => f.name) }, null, 2));
      return ok ? EXIT.ok : EXIT.kernel;
    }
    const rows = facts.features.map((f) => [f.name, f.available ? 'yes' : 'no', f.minKernel, f.neededFor.join(',') || '-', f.detail]);
    const header = ['FEATURE', 'OK', 'SINCE', 'NEEDED FOR', 'DETAIL'];
    const widths = header.map((h, i) => Math.max(h.length, ...rows.map((r) => r[i]!.length)));
    const line = (r: string[]) => r.map((c, i) => (i === r.length - 1 ? c : c.padEnd(widths[i]!))).join('  ');
    const lines = [
      `kernel ${facts.release} (${facts.arch}), page size ${facts.pageSize}, ${facts.root ? 'root' : 'not root'}`,
      '',
      line(header),
      ...rows.map(line),
      '',
      ok ? `ok: everything ${needs.join('/')} needs is available` : `missing for ${needs.join('/')}: ${missing.map((f) => `${f.name} (needed for ${f.neededFor.filter((n) => needs.includes(n)).join(', ')}: ${f.detail})`).join('; ')}`,
    ];
    out(lines.join('\n'));
    return ok ? EXIT.ok : EXIT.kernel;
  },
};
