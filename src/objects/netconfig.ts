// Host network configuration: links, addresses, routes and the nftables ruleset, recorded so
// that resume can tell what differs on the new kernel and, when asked, put addresses and
// routes back. Informational in the image (optional record): a restore never fails on it.
import { execa } from 'execa';
import { logger } from '../log.js';
import type { NetconfigRecord } from '../format/records.js';
import { DEFAULT_TABLE } from '../handoff/netlock.js';

const log = logger('netconfig');

async function json(cmd: string, args: string[]): Promise<unknown> {
  const r = await execa(cmd, args, { reject: false });
  if (r.exitCode !== 0) {
    log.warn(`${cmd} ${args.join(' ')} failed; recorded as empty`, { stderr: String(r.stderr).slice(0, 200) });
    return [];
  }
  return JSON.parse(String(r.stdout) || '[]') as unknown;
}

/** Names, addresses and routes as `ip -j` prints them; our own lock table is left out. */
export async function dumpNetconfig(): Promise<NetconfigRecord> {
  const [links, addresses, routes, nftables] = await Promise.all([
    json('ip', ['-j', 'link', 'show']),
    json('ip', ['-j', 'addr', 'show']),
    json('ip', ['-j', 'route', 'show', 'table', 'all']),
    json('nft', ['-j', 'list', 'ruleset']),
  ]);
  const ruleset = (nftables as { nftables?: Record<string, { table?: string; name?: string }>[] }).nftables ?? [];
  const ours = (o: Record<string, { table?: string; name?: string }>) => Object.values(o).some((v) => v?.table === DEFAULT_TABLE || (o.table && v?.name === DEFAULT_TABLE));
  return {
    kind: 'netconfig',
    optional: true,
    links: links as unknown[],
    addresses: addresses as unknown[],
    routes: routes as unknown[],
    nftables: { nftables: ruleset.filter((o) => !ours(o)) },
  };
}

type Link = { ifname: string; operstate?: string; mtu?: number; address?: string };
type AddrInfo = { ifname: string; addr_info?: { family: string; local: string; prefixlen: number; scope?: string }[] };
type Route = { dst: string; gateway?: string; dev?: string; table?: string; protocol?: string };

function addressKeys(addresses: unknown[]): Map<string, { ifname: string; local: string; prefixlen: number }> {
  const out = new Map<string, { ifname: string; local: string; prefixlen: number }>();
  for (const a of addresses as AddrInfo[]) {
    for (const i of a.addr_info ?? []) {
      if (i.scope === 'link' || i.scope === 'host') continue; // made by the kernel itself
      out.set(`${a.ifname} ${i.local}/${i.prefixlen}`, { ifname: a.ifname, local: i.local, prefixlen: i.prefixlen });
    }
  }
  return out;
}

function routeKeys(routes: unknown[]): Map<string, Route> {
  const out = new Map<string, Route>();
  for (const r of routes as Route[]) {
    if (r.protocol === 'kernel' || r.table === 'local') continue; // derived from addresses
    out.set(`${r.dst} via ${r.gateway ?? '-'} dev ${r.dev ?? '-'}${r.table ? ` table ${r.table}` : ''}`, r);
  }
  return out;
}

export interface NetconfigDiff {
  /** Human-readable lines, each a difference between the recorded and the current state. */
  differences: string[];
  /** Commands run to re-apply (with reapply). */
  applied: string[];
}

/** Compares the record with this host; with `reapply`, adds back missing addresses and routes. */
export async function restoreNetconfig(rec: NetconfigRecord, reapply: boolean): Promise<NetconfigDiff> {
  const now = await dumpNetconfig();
  const differences: string[] = [];
  const links = new Map((now.links as Link[]).map((l) => [l.ifname, l]));
  for (const l of rec.links as Link[]) {
    const c = links.get(l.ifname);
    if (!c) differences.push(`link ${l.ifname} is missing`);
    else {
      if (c.mtu !== l.mtu) differences.push(`link ${l.ifname}: mtu ${c.mtu}, was ${l.mtu}`);
      if (c.address !== l.address) differences.push(`link ${l.ifname}: address ${c.address}, was ${l.address}`);
    }
  }
  const wantAddr = addressKeys(rec.addresses);
  const haveAddr = addressKeys(now.addresses);
  const missingAddr = [...wantAddr].filter(([k]) => !haveAddr.has(k));
  for (const [k] of missingAddr) differences.push(`address ${k} is missing`);
  for (const k of haveAddr.keys()) if (!wantAddr.has(k)) differences.push(`address ${k} is new`);
  const wantRoute = routeKeys(rec.routes);
  const haveRoute = routeKeys(now.routes);
  const missingRoute = [...wantRoute].filter(([k]) => !haveRoute.has(k));
  for (const [k] of missingRoute) differences.push(`route ${k} is missing`);
  for (const k of haveRoute.keys()) if (!wantRoute.has(k)) differences.push(`route ${k} is new`);
  const rules = (x: unknown) => JSON.stringify((x as { nftables?: unknown[] }).nftables?.filter((o) => !('metainfo' in (o as object))) ?? []);
  if (rules(rec.nftables) !== rules(now.nftables)) differences.push('nftables ruleset differs');

  const applied: string[] = [];
  if (reapply) {
    for (const [, a] of missingAddr) {
      if (!links.has(a.ifname)) continue;
      const args = ['addr', 'add', `${a.local}/${a.prefixlen}`, 'dev', a.ifname];
      const r = await execa('ip', args, { reject: false });
      applied.push(`ip ${args.join(' ')}${r.exitCode ? ` (failed: ${String(r.stderr).trim()})` : ''}`);
    }
    for (const [, route] of missingRoute) {
      const args = ['route', 'add', route.dst, ...(route.gateway ? ['via', route.gateway] : []), ...(route.dev ? ['dev', route.dev] : []), ...(route.table ? ['table', route.table] : [])];
      const r = await execa('ip', args, { reject: false });
      applied.push(`ip ${args.join(' ')}${r.exitCode ? ` (failed: ${String(r.stderr).trim()})` : ''}`);
    }
  }
  for (const d of differences) log.warn(d);
  return { differences, applied };
}
