// handoff inspect IMAGE: a readable summary of an image (after full verification).
import { EXIT, UsageError } from '../errors.js';
import { out, type Command } from './command.js';
import type { ImageRecordV1, MemoryAreaRecord } from '../format/records.js';
import type { Image } from '../format/reader.js';

export const command: Command = {
  name: 'inspect',
  summary: 'summarise an image: header, processes, threads, memory, fds, sockets',
  help: `Usage: handoff inspect IMAGE [--json]

Verifies the image like \`handoff validate\`, then prints its header, the process tree
(pid, ppid, state, threads, comm), memory by area type (mapped and stored bytes), file
descriptors by object kind and the sockets.
  --json   print the summary as JSON`,
  options: { json: { type: 'boolean' } },
  async run(values, positionals) {
    if (positionals.length !== 1) throw new UsageError('inspect: exactly one IMAGE expected');
    const { openImage } = await import('../format/reader.js');
    const img = openImage(positionals[0]!);
    try {
      const s = summarise(img);
      out(values.json ? JSON.stringify(s, null, 2) : render(s));
    } finally {
      img.close();
    }
    return EXIT.ok;
  },
};

type Summary = ReturnType<typeof summarise>;
type SocketSummary = { id: number; kind: string; family?: string; state?: string; local?: string; remote?: string; peer?: number; sendQueue?: number; recvQueue?: number; queued?: number };

function summarise(img: Image) {
  const h = img.header;
  const recs = img.records;
  const byKind: Record<string, number> = {};
  for (const r of recs) byKind[r.kind] = (byKind[r.kind] ?? 0) + 1;
  const threads = new Map<number, number[]>();
  for (const r of recs) if (r.kind === 'thread') threads.set(r.pid, [...(threads.get(r.pid) ?? []), r.tid]);
  const processes = recs.flatMap((r) => (r.kind === 'process' ? [{ pid: r.pid, ppid: r.ppid, pgid: r.pgid, sid: r.sid, state: r.state, comm: r.comm, exe: r.exe, threads: threads.get(r.pid) ?? [] }] : []));

  const areas = new Map<number, MemoryAreaRecord[]>();
  const memory: Record<string, { areas: number; mappedBytes: number; storedBytes: number }> = {};
  for (const r of recs) {
    if (r.kind !== 'memory-area') continue;
    areas.set(r.pid, [...(areas.get(r.pid) ?? []), r]);
    const m = (memory[r.type] ??= { areas: 0, mappedBytes: 0, storedBytes: 0 });
    m.areas++;
    m.mappedBytes += r.end - r.start;
  }
  let storedBytes = 0;
  for (const r of recs) {
    if (r.kind !== 'pages') continue;
    const bytes = r.count * h.pageSize;
    storedBytes += bytes;
    const area = (areas.get(r.pid) ?? []).find((a) => r.addr >= a.start && r.addr < a.end);
    if (area) memory[area.type]!.storedBytes += bytes;
  }

  const objects = new Map<number, ImageRecordV1>();
  for (const r of recs) if ('id' in r && typeof r.id === 'number') objects.set(r.id, r);
  const fds: Record<string, number> = {};
  for (const r of recs) {
    if (r.kind !== 'fd') continue;
    const o = objects.get(r.object);
    const k = o ? (o.kind === 'file' ? `file:${o.type}` : o.kind) : 'unknown';
    fds[k] = (fds[k] ?? 0) + 1;
  }
  const sockets = recs.flatMap((r): SocketSummary[] => {
    if (r.kind === 'tcp') return [{ id: r.id, kind: 'tcp', family: r.family, state: r.state, local: `${addr(r.local)}`, remote: r.state === 'LISTEN' ? undefined : addr(r.remote), sendQueue: r.repair?.sendQueue.length, recvQueue: r.repair?.recvQueue.length }];
    if (r.kind === 'udp') return [{ id: r.id, kind: 'udp', family: r.family, local: addr(r.local), remote: r.remote ? addr(r.remote) : undefined }];
    if (r.kind === 'unix') {
      const address = r.address ? ('path' in r.address ? r.address.path : `@${Buffer.from(r.address.abstract).toString('latin1')}`) : undefined;
      return [{ id: r.id, kind: `unix/${r.type}`, state: r.state, local: address, peer: r.peer, queued: r.queue.length }];
    }
    return [];
  });
  return {
    path: img.path,
    bytes: img.size,
    sha256: Buffer.from(img.trailer.sha256).toString('hex'),
    header: { version: `${h.version.major}.${h.version.minor}`, minKernel: h.minKernel, sourceKernel: h.sourceKernel, arch: h.arch, pageSize: h.pageSize, tool: `${h.tool.name} ${h.tool.version}`, created: h.created, hostname: h.hostname, features: h.features },
    records: byKind,
    skippedOptional: img.skipped,
    processes,
    memory: { storedBytes, byType: memory },
    fds,
    sockets,
  };
}

function addr(a: { address: string; port: number }): string {
  return a.address.includes(':') ? `[${a.address}]:${a.port}` : `${a.address}:${a.port}`;
}

function bytes(n: number): string {
  return n >= 1 << 30 ? `${(n / 2 ** 30).toFixed(1)} GiB` : n >= 1 << 20 ? `${(n / 2 ** 20).toFixed(1)} MiB` : n >= 1024 ? `${(n / 1024).toFixed(1)} KiB` : `${n} B`;
}

function table(rows: (string | number)[][]): string[] {
  const widths = rows[0]!.map((_, i) => Math.max(...rows.map((r) => String(r[i]).length)));
  return rows.map((r) => '  ' + r.map((c, i) => String(c).padEnd(widths[i]!)).join('  ').trimEnd());
}

function render(s: Summary): string {
  const h = s.header;
  const lines = [
    `image ${s.path}: ${bytes(s.bytes)}, format ${h.version}, sha256 ${s.sha256.slice(0, 16)}...`,
    `created ${h.created} on ${h.hostname} by ${h.tool}; kernel ${h.sourceKernel} (${h.arch}, page ${h.pageSize}); restores on ${h.minKernel}+`,
    `features: ${h.features.map((f) => `${f.name} (${f.minKernel}+)`).join(', ') || 'none'}`,
    `records: ${Object.entries(s.records).map(([k, n]) => `${k} ${n}`).join(', ')}${s.skippedOptional.length ? `; ${s.skippedOptional.length} unknown optional skipped` : ''}`,
    '',
    `processes (${s.processes.length}):`,
    ...table([['PID', 'PPID', 'PGID', 'SID', 'STATE', 'TIDS', 'COMM'], ...s.processes.map((p) => [p.pid, p.ppid, p.pgid, p.sid, p.state, p.threads.length ? p.threads.join(',') : '-', p.comm])]),
    '',
    `memory (${bytes(s.memory.storedBytes)} of pages stored):`,
    ...table([['TYPE', 'AREAS', 'MAPPED', 'STORED'], ...Object.entries(s.memory.byType).map(([t, m]) => [t, m.areas, bytes(m.mappedBytes), bytes(m.storedBytes)])]),
    '',
    `file descriptors: ${Object.entries(s.fds).map(([k, n]) => `${k} ${n}`).join(', ') || 'none'}`,
    '',
    `sockets (${s.sockets.length}):`,
    ...s.sockets.map((k) => {
      const parts = [`${k.kind} #${k.id}`, k.state, k.local, k.remote ? `-> ${k.remote}` : '', k.peer !== undefined ? `peer #${k.peer}` : '',
        k.sendQueue !== undefined ? `queues send ${k.sendQueue} B, recv ${k.recvQueue} B` : '', k.queued ? `${k.queued} queued` : ''];
      return '  ' + parts.filter((p) => p !== '' && p !== undefined).join(' ');
    }),
  ];
  return lines.join('\n');
}
