// The network lock: an nftables table of our own that drops every packet of the connections
// being handed off, both directions, from before their sockets are dumped until the restored
// sockets leave repair mode. While it holds, the old kernel can neither ACK new data nor send
// FIN/RST for them (killed owners, shutdown), and the new kernel cannot answer the peer's
// retransmissions with RST before the sockets exist again. The peer only sees a pause.
//
// Hooks at priority -310 (before conntrack at -200 and before raw at -300) so connection
// tracking and NAT never see the dropped packets. One `nft -f -` transaction replaces the
// table atomically; unlock deletes the table. Everything goes through the `nft` program.
//
// Two exceptions, both local:
// - Packets carrying INJECT_MARK that loop back through `lo` pass (untracked): the TCP restore
//   injects the peer's FIN (or the ACK of our FIN) into a restored half-closed socket with a
//   raw socket. They never leave the host (their destination is a local address) and the
//   restored socket's answers are still dropped by the connection rules.
// - `synPorts`: only new connection requests (SYN without ACK) to these ports are dropped,
//   while a dump lets its listeners empty their accept queues before the freeze. The clients'
//   kernels retry the SYN: a pause, not a reset.
import { execa } from 'execa';
import { isIPv4 } from 'node:net';
import { NetworkError } from '../errors.js';
import { logger } from '../log.js';

const log = logger('netlock');

export const DEFAULT_TABLE = 'handoff';

/** skb mark of the packets the TCP restore injects locally; the lock lets them through `lo`. */
export const INJECT_MARK = 0x68d0f1;

export interface Endpoint {
  address: string;
  port: number;
}

export interface LockedConnection {
  local: Endpoint;
  remote: Endpoint;
}

export interface LockSpec {
  /** TCP connections to freeze, both directions. */
  connections: LockedConnection[];
  /** Local TCP ports whose every packet is dropped (listeners: a SYN gets no RST meanwhile). */
  ports?: number[];
  /** Local TCP ports where only new connection requests (SYN, no ACK) are dropped. */
  synPorts?: number[];
}

export interface NetlockOptions {
  /** nftables table name (family inet); tests use unique names. */
  table?: string;
  /** Run nft inside this named network namespace (`ip netns exec`). */
  netns?: string;
}

function tableName(opts: NetlockOptions): string {
  const name = opts.table ?? DEFAULT_TABLE;
  if (!/^[A-Za-z][A-Za-z0-9_]{0,63}$/.test(name)) throw new NetworkError('E_NETLOCK', `invalid nftables table name '${name}'`);
  return name;
}

/** An address without zone index, checked so it cannot inject nft syntax. */
function cleanAddress(address: string): string {
  const a = address.split('%')[0]!;
  if (!/^[0-9A-Fa-f:.]+$/.test(a)) throw new NetworkError('E_NETLOCK', `invalid address '${address}'`);
  return a;
}

function cleanPort(port: number): number {
  if (!Number.isInteger(port) || port < 0 || port > 65535) throw new NetworkError('E_NETLOCK', `invalid port ${port}`);
  return port;
}

/** IPv4-mapped IPv6 connections (::ffff:a.b.c.d) travel as IPv4 packets. */
function unmapped(address: string): string {
  const m = /^::ffff:(\d+\.\d+\.\d+\.\d+)$/i.exec(address);
  return m ? m[1]! : address;
}

/** The nftables script that installs (or atomically replaces) the lock table. */
export function rulesetText(spec: LockSpec, opts: NetlockOptions = {}): string {
  const table = tableName(opts);
  const v4: string[] = [];
  const v6: string[] = [];
  for (const c of spec.connections) {
    const l = unmapped(cleanAddress(c.local.address));
    const r = unmapped(cleanAddress(c.remote.address));
    const element = `${l} . ${cleanPort(c.local.port)} . ${r} . ${cleanPort(c.remote.port)}`;
    if (isIPv4(l) !== isIPv4(r)) throw new NetworkError('E_NETLOCK', `connection mixes address families: ${l} / ${r}`);
    (isIPv4(l) ? v4 : v6).push(element);
  }
  const ports = [...new Set((spec.ports ?? []).map(cleanPort))];
  const synPorts = [...new Set((spec.synPorts ?? []).map(cleanPort))];
  const set = (name: string, type: string, elements: string[]) =>
    `  set ${name} { type ${type}; ${elements.length ? `elements = { ${elements.join(', ')} }` : ''} }`;
  return [
    // Creating then deleting makes the script work whether or not the table exists.
    `table inet ${table}`,
    `delete table inet ${table}`,
    `table inet ${table} {`,
    set('conn4', 'ipv4_addr . inet_service . ipv4_addr . inet_service', v4),
    set('conn6', 'ipv6_addr . inet_service . ipv6_addr . inet_service', v6),
    set('ports', 'inet_service', ports.map(String)),
    set('synports', 'inet_service', synPorts.map(String)),
    '  chain incoming {',
    '    type filter hook prerouting priority -310; policy accept;',
    `    iifname "lo" meta mark ${INJECT_MARK} notrack accept`,
    '    ip daddr . tcp dport . ip saddr . tcp sport @conn4 counter drop',
    '    ip6 daddr . tcp dport . ip6 saddr . tcp sport @conn6 counter drop',
    '    tcp dport @ports counter drop',
    '    tcp dport @synports tcp flags & (syn | ack) == syn counter drop',
    '  }',
    '  chain outgoing {',
    '    type filter hook output priority -310; policy accept;',
    `    oifname "lo" meta mark ${INJECT_MARK} notrack accept`,
    '    ip saddr . tcp sport . ip daddr . tcp dport @conn4 counter drop',
    '    ip6 saddr . tcp sport . ip6 daddr . tcp dport @conn6 counter drop',
    '    tcp sport @ports counter drop',
    '  }',
    '}',
    '',
  ].join('\n');
}

async function nft(args: string[], opts: NetlockOptions, input?: string): Promise<{ exitCode: number; stdout: string; stderr: string }> {
  const [file, argv] = opts.netns ? ['ip', ['netns', 'exec', opts.netns, 'nft', ...args]] : ['nft', args];
  try {
    const r = await execa(file, argv, { input, reject: false, stripFinalNewline: true });
    return { exitCode: r.exitCode ?? 1, stdout: String(r.stdout), stderr: String(r.stderr) };
  } catch (cause) {
    throw new NetworkError('E_NETLOCK', `cannot run nft (install the nftables package): ${cause instanceof Error ? cause.message : String(cause)}`, {}, cause);
  }
}

/** Installs (or replaces) the lock. */
export async function lock(spec: LockSpec, opts: NetlockOptions = {}): Promise<void> {
  const script = rulesetText(spec, opts);
  const r = await nft(['-f', '-'], opts, script);
  if (r.exitCode !== 0) throw new NetworkError('E_NETLOCK', `nft refused the lock table: ${r.stderr}`, { table: tableName(opts) });
  log.info('network locked', { table: tableName(opts), connections: spec.connections.length, ports: spec.ports?.length ?? 0, synPorts: spec.synPorts?.length ?? 0 });
}

/** Removes the lock table; returns false when there was none. */
export async function unlock(opts: NetlockOptions = {}): Promise<boolean> {
  const table = tableName(opts);
  if (!(await isLocked(opts))) return false;
  const r = await nft(['delete', 'table', 'inet', table], opts);
  if (r.exitCode !== 0) throw new NetworkError('E_NETLOCK', `nft could not delete table inet ${table}: ${r.stderr}`, { table });
  log.info('network unlocked', { table });
  return true;
}

/** Names of the inet tables present (to check that none of ours is left behind). */
export async function listTables(opts: Pick<NetlockOptions, 'netns'> = {}): Promise<string[]> {
  const r = await nft(['-j', 'list', 'tables'], opts);
  if (r.exitCode !== 0) throw new NetworkError('E_NETLOCK', `nft list tables failed: ${r.stderr}`);
  const parsed = JSON.parse(r.stdout || '{"nftables":[]}') as { nftables: { table?: { family: string; name: string } }[] };
  return parsed.nftables.flatMap((e) => (e.table ? [`${e.table.family} ${e.table.name}`] : []));
}

/** Packets dropped by the lock so far (nft counters), or undefined when not locked. */
export async function droppedPackets(opts: NetlockOptions = {}): Promise<number | undefined> {
  const table = tableName(opts);
  const r = await nft(['-j', 'list', 'table', 'inet', table], opts);
  if (r.exitCode !== 0) return undefined;
  const parsed = JSON.parse(r.stdout) as { nftables: { rule?: { expr: { counter?: { packets: number } }[] } }[] };
  let packets = 0;
  for (const e of parsed.nftables) for (const x of e.rule?.expr ?? []) packets += x.counter?.packets ?? 0;
  return packets;
}

export async function isLocked(opts: NetlockOptions = {}): Promise<boolean> {
  return (await listTables(opts)).includes(`inet ${tableName(opts)}`);
}

/**
 * Runs `fn` with the lock held and removes the lock afterwards whatever happens. Use
 * `keep` to leave it in place on success (prepare keeps it across the kexec).
 */
export async function withLock<T>(spec: LockSpec, opts: NetlockOptions, fn: () => Promise<T>, keep = false): Promise<T> {
  await lock(spec, opts);
  let ok = false;
  try {
    const result = await fn();
    ok = true;
    return result;
  } finally {
    if (!ok || !keep) {
      await unlock(opts).catch((err: unknown) => log.error('could not remove the network lock; run `handoff unlock`', { error: String(err) }));
    }
  }
}

/** The lock an image needs on the kernel that restores it, derived from its tcp records. */
export function lockSpecFromRecords(records: readonly { kind: string; [k: string]: unknown }[]): LockSpec {
  const spec: LockSpec = { connections: [], ports: [] };
  for (const r of records) {
    if (r.kind !== 'tcp') continue;
    const local = r.local as Endpoint;
    if (r.state === 'LISTEN') spec.ports!.push(local.port);
    else if (r.remote && (r.remote as Endpoint).port) spec.connections.push({ local, remote: r.remote as Endpoint });
  }
  return spec;
}
