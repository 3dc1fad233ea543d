// Real peers for the network integration tests (test/integration/network/).
//
// The server under test runs in the root network namespace (the namespace `handoff dump` and
// `handoff restore` run in: the dump installs its nftables lock there and the restore recreates
// sockets there). Its peers run in a namespace of their own, reached through a veth pair whose
// root end gets a random /30 and a random IPv6 /64, so the only traffic is between the two.
//
// The CLI always uses the nftables table "inet handoff", so two handoffs of TCP sockets at the
// same time would replace each other's lock: networkTest() serialises the tests that use it
// (across tap's parallel jobs) with a lock directory, and checks afterwards that no table of
// ours and no process of the test is left.
import { execa, type ResultPromise } from 'execa';
import { mkdirSync, mkdtempSync, readFileSync, readdirSync, rmSync, writeFileSync } from 'node:fs';
import { tmpdir } from 'node:os';
import { join } from 'node:path';
import { randomInt } from 'node:crypto';
import type { Test } from 'tap';
import { TARGETS_BUILD, VERDICT, cleanup, dumpTarget, handoff, restoreImage, startTarget, type Running } from './target.js';
import { LineWatcher, uniqueTag } from './netns.js';

const sleep = (ms: number) => new Promise((r) => setTimeout(r, ms));

/** The nftables table the CLI locks the network with. */
export const CLI_LOCK_TABLE = 'inet handoff';

export interface PeerNamespace {
  ns: string;
  /** The root namespace's end (where the server listens). */
  host: { v4: string; v6: string; link: string };
  /** The peer namespace's end. */
  peer: { v4: string; v6: string };
  destroy(): Promise<void>;
}

async function pickSubnet(): Promise<{ v4: [string, string]; v6: [string, string] }> {
  const { stdout } = await execa('ip', ['-o', 'addr']);
  for (;;) {
    const net = `10.${randomInt(200, 250)}.${randomInt(0, 256)}`;
    const last = randomInt(0, 64) * 4;
    if (stdout.includes(`${net}.`)) continue;
    const v6 = `fd48:${randomInt(1, 0xffff).toString(16)}:${randomInt(1, 0xffff).toString(16)}`;
    if (stdout.includes(`${v6}::`)) continue;
    return { v4: [`${net}.${last + 1}`, `${net}.${last + 2}`], v6: [`${v6}::1`, `${v6}::2`] };
  }
}

/** A namespace for peers, joined to the root namespace by a veth pair. */
export async function createPeerNamespace(tag = uniqueTag()): Promise<PeerNamespace> {
  const ns = `hpr${tag}`;
  const link = `hx${tag}`.slice(0, 15);
  const { v4, v6 } = await pickSubnet();
  const destroy = async () => {
    await execa('ip', ['netns', 'del', ns], { reject: false });
    await execa('ip', ['link', 'del', link], { reject: false });
  };
  try {
    await execa('ip', ['netns', 'add', ns]);
    await execa('ip', ['link', 'add', link, 'type', 'veth', 'peer', 'name', 'veth0', 'netns', ns]);
    await execa('ip', ['addr', 'add', `${v4[0]}/30`, 'dev', link]);
    await execa('ip', ['addr', 'add', `${v6[0]}/64`, 'dev', link, 'nodad']);
    await execa('ip', ['link', 'set', link, 'up']);
    await execa('ip', ['-n', ns, 'link', 'set', 'lo', 'up']);
    await execa('ip', ['-n', ns, 'addr', 'add', `${v4[1]}/30`, 'dev', 'veth0']);
    await execa('ip', ['-n', ns, 'addr', 'add', `${v6[1]}/64`, 'dev', 'veth0', 'nodad']);
    await execa('ip', ['-n', ns, 'link', 'set', 'veth0', 'up']);
  } catch (err) {
    await destroy();
    throw err;
  }
  return { ns, host: { v4: v4[0], v6: v6[0], link }, peer: { v4: v4[1], v6: v6[1] }, destroy };
}

/** A free TCP port in the root namespace (nothing bound to it now). */
export async function freePort(): Promise<number> {
  const { stdout } = await execa('ss', ['-Htan']);
  for (;;) {
    const port = randomInt(20000, 60000);
    if (!stdout.includes(`:${port} `)) return port;
  }
}

type Spawned = ResultPromise<{ stdin: 'pipe'; stdout: 'pipe'; stderr: 'pipe'; reject: false; buffer: false; env: Record<string, string> }>;

/** A process started inside the peer namespace, its stdout read line by line. */
export interface NsProcess {
  proc: Spawned;
  lines: LineWatcher;
  /** stderr so far. */
  stderr(): string;
  /** Waits for a stdout line; rejects when the process exits first or after timeoutMs. */
  waitLine(test: (line: string) => boolean, what: string, timeoutMs?: number): Promise<string>;
  kill(): Promise<void>;
}

export function spawnInNamespace(ns: string, argv: string[], env: Record<string, string>): NsProcess {
  const proc = execa('ip', ['netns', 'exec', ns, ...argv], { stdin: 'pipe', stdout: 'pipe', stderr: 'pipe', reject: false, buffer: false, env }) as Spawned;
  const lines = new LineWatcher(proc.stdout!);
  let err = '';
  proc.stderr!.on('data', (d: Buffer) => (err += d.toString()));
  let exited = false;
  const exit = proc.then(() => {
    exited = true;
  });
  return {
    proc,
    lines,
    stderr: () => err,
    async waitLine(test, what, timeoutMs = 60_000) {
      let timer: NodeJS.Timeout | undefined;
      const timeout = new Promise<'timeout'>((r) => (timer = setTimeout(() => r('timeout'), timeoutMs)));
      const gone = exit.then(() => sleep(50)).then(() => 'exited' as const);
      try {
        const r = await Promise.race([lines.wait(test), timeout, gone]);
        if (r === 'timeout' || r === 'exited') {
          const seen = lines.lines.find(test);
          if (seen !== undefined) return seen;
          throw new Error(`${argv.join(' ')}: no ${what} (${r}); stdout:\n${lines.lines.join('\n')}\nstderr:\n${err}`);
        }
        return r;
      } finally {
        clearTimeout(timer);
      }
    },
    async kill() {
      if (!exited) proc.kill('SIGKILL');
      await exit;
    },
  };
}

// A byte relay in the peer namespace: one TCP connection, driven through stdin/stdout lines so
// the test decides exactly what is sent when. "SEND <base64>" writes, "END" half-closes; it
// reports "CONNECTED <port>", "RECV <base64>", "EOF", "ERROR <code>", "CLOSED".
const RELAY = `
const net = require('node:net');
const readline = require('node:readline');
const s = net.connect({ host: process.env.RELAY_HOST, port: Number(process.env.RELAY_PORT) });
s.setNoDelay(true);
s.on('connect', () => console.log('CONNECTED ' + s.localPort));
s.on('data', (d) => console.log('RECV ' + d.toString('base64')));
s.on('end', () => console.log('EOF'));
s.on('error', (e) => console.log('ERROR ' + e.code));
s.on('close', () => { console.log('CLOSED'); process.exit(0); });
readline.createInterface({ input: process.stdin }).on('line', (l) => {
  if (l.startsWith('SEND ')) s.write(Buffer.from(l.slice(5), 'base64'));
  else if (l === 'END') s.end();
});
`;

/** Length of the first complete message at the start of buf, or undefined if incomplete. */
export type Framer = (buf: Buffer) => number | undefined;

/** One client connection held by a relay process in the peer namespace. */
export class RelayPeer {
  private received: Buffer = Buffer.alloc(0);
  private consumed = 0;
  /** Local port of the connection in the peer namespace. */
  port = 0;
  private constructor(readonly process: NsProcess) {}

  static async connect(ns: string, host: string, port: number, env: Record<string, string>): Promise<RelayPeer> {
    const p = spawnInNamespace(ns, [process.execPath, '-e', RELAY], { ...env, RELAY_HOST: host, RELAY_PORT: String(port) });
    const peer = new RelayPeer(p);
    const line = await p.waitLine((l) => /^(CONNECTED|ERROR|CLOSED)/.test(l), 'connection');
    if (!line.startsWith('CONNECTED')) {
      await p.kill();
      throw new Error(`relay could not connect to ${host}:${port}: ${line}`);
    }
    peer.port = Number(line.split(' ')[1]);
    return peer;
  }

  send(data: string | Buffer): void {
    this.process.proc.stdin!.write(`SEND ${Buffer.from(data).toString('base64')}\n`);
  }

  /** What ended the connection ("EOF", "ERROR ECONNRESET", ...), or undefined while open. */
  ended(): string | undefined {
    return this.process.lines.lines.find((l) => l === 'EOF' || l.startsWith('ERROR') || l === 'CLOSED');
  }

  private collect(): Buffer {
    const chunks = this.process.lines.lines.slice(this.consumed).filter((l) => l.startsWith('RECV '));
    this.consumed = this.process.lines.lines.length;
    if (chunks.length) this.received = Buffer.concat([this.received, ...chunks.map((l) => Buffer.from(l.slice(5), 'base64'))]);
    return this.received;
  }

  /** Waits for the next complete message (framed by `frame`) and removes it from the input. */
  async read(frame: Framer, timeoutMs = 60_000): Promise<Buffer> {
    const deadline = Date.now() + timeoutMs;
    for (;;) {
      const buf = this.collect();
      const n = frame(buf);
      if (n !== undefined) {
        this.received = buf.subarray(n);
        return buf.subarray(0, n);
      }
      const end = this.ended();
      if (end) throw new Error(`connection ended (${end}) with ${buf.length} byte(s) of an incomplete reply: ${JSON.stringify(buf.toString('latin1').slice(0, 200))}`);
      if (Date.now() > deadline) throw new Error(`no complete reply within ${timeoutMs} ms; have ${JSON.stringify(buf.toString('latin1').slice(0, 200))}`);
      await sleep(10);
    }
  }

  /** Sends a request and reads one framed reply. */
  async request(data: string | Buffer, frame: Framer, timeoutMs?: number): Promise<Buffer> {
    this.send(data);
    return this.read(frame, timeoutMs);
  }

  close(): Promise<void> {
    return this.process.kill();
  }
}

/** RESP (redis): the length of one complete reply. */
export const respFrame: Framer = (buf) => {
  const end = respEnd(buf, 0);
  return end < 0 ? undefined : end;
};

function respEnd(buf: Buffer, at: number): number {
  const nl = buf.indexOf('\r\n', at);
  if (nl < 0) return -1;
  const type = String.fromCharCode(buf[at]!);
  const n = Number(buf.toString('latin1', at + 1, nl));
  if (type === '+' || type === '-' || type === ':') return nl + 2;
  if (type === '$') return n < 0 ? nl + 2 : buf.length >= nl + 2 + n + 2 ? nl + 2 + n + 2 : -1;
  if (type === '*') {
    let pos = nl + 2;
    for (let i = 0; i < n; i++) {
      pos = respEnd(buf, pos);
      if (pos < 0) return -1;
    }
    return pos;
  }
  throw new Error(`not a RESP reply: ${JSON.stringify(buf.toString('latin1', at, at + 40))}`);
}

/** A RESP request (array of bulk strings). */
export function resp(...args: (string | number)[]): Buffer {
  const parts = args.map((a) => Buffer.from(String(a)));
  return Buffer.concat([Buffer.from(`*${parts.length}\r\n`), ...parts.flatMap((p) => [Buffer.from(`$${p.length}\r\n`), p, Buffer.from('\r\n')])]);
}

/** Decodes one RESP reply into strings, numbers, null, arrays; errors as { error }. */
export function parseResp(buf: Buffer): unknown {
  const [value] = decode(buf, 0);
  return value;
  function decode(b: Buffer, at: number): [unknown, number] {
    const nl = b.indexOf('\r\n', at);
    const head = b.toString('latin1', at + 1, nl);
    switch (String.fromCharCode(b[at]!)) {
      case '+':
        return [head, nl + 2];
      case '-':
        return [{ error: head }, nl + 2];
      case ':':
        return [Number(head), nl + 2];
      case '$': {
        const n = Number(head);
        if (n < 0) return [null, nl + 2];
        return [b.toString('utf8', nl + 2, nl + 2 + n), nl + 2 + n + 2];
      }
      default: {
        const out: unknown[] = [];
        let pos = nl + 2;
        for (let i = 0; i < Number(head); i++) {
          const [v, next] = decode(b, pos);
          out.push(v);
          pos = next;
        }
        return [out, pos];
      }
    }
  }
}

/** HTTP/1.1 responses with Content-Length: the length of one complete response. */
export const httpFrame: Framer = (buf) => {
  const headEnd = buf.indexOf('\r\n\r\n');
  if (headEnd < 0) return undefined;
  const m = /\r\ncontent-length:\s*(\d+)/i.exec(buf.toString('latin1', 0, headEnd));
  if (!m) throw new Error(`response without Content-Length: ${buf.toString('latin1', 0, headEnd)}`);
  const total = headEnd + 4 + Number(m[1]);
  return buf.length >= total ? total : undefined;
};

export function httpGet(path: string, host = 'handoff.test'): string {
  return `GET ${path} HTTP/1.1\r\nHost: ${host}\r\nConnection: keep-alive\r\n\r\n`;
}

export function parseHttp(buf: Buffer): { status: number; headers: Record<string, string>; body: string } {
  const text = buf.toString('utf8');
  const headEnd = text.indexOf('\r\n\r\n');
  const [statusLine, ...rest] = text.slice(0, headEnd).split('\r\n');
  const headers: Record<string, string> = {};
  for (const h of rest) {
    const i = h.indexOf(':');
    headers[h.slice(0, i).trim().toLowerCase()] = h.slice(i + 1).trim();
  }
  return { status: Number(statusLine!.split(' ')[1]), headers, body: text.slice(headEnd + 4) };
}

// ---- serialising the tests that use the CLI's lock table ----

const MUTEX = '/tmp/handoff-test-cli-netlock';

function alive(pid: number): boolean {
  try {
    process.kill(pid, 0);
    return true;
  } catch (err) {
    return (err as NodeJS.ErrnoException).code === 'EPERM';
  }
}

async function acquireMutex(): Promise<() => void> {
  for (;;) {
    try {
      mkdirSync(MUTEX);
      writeFileSync(`${MUTEX}/owner`, String(process.pid));
      return () => rmSync(MUTEX, { recursive: true, force: true });
    } catch (err) {
      if ((err as NodeJS.ErrnoException).code !== 'EEXIST') throw err;
    }
    let owner = 0;
    try {
      owner = Number(readFileSync(`${MUTEX}/owner`, 'utf8'));
    } catch {
      /* being created: the owner is writing its pid */
    }
    if (owner && !alive(owner)) rmSync(MUTEX, { recursive: true, force: true });
    await sleep(100);
  }
}

// ---- what a test leaves behind ----

/** Tables listed by `nft list tables`. */
export async function nftTables(): Promise<string[]> {
  const { stdout } = await execa('nft', ['list', 'tables']);
  return stdout.split('\n').map((l) => l.replace(/^table /, '').trim()).filter(Boolean);
}

/** Live processes whose environment carries this test's marker. */
export function markedProcesses(tag: string): { pid: number; cmdline: string }[] {
  const marker = Buffer.from(`\0HANDOFF_NET_TEST=${tag}\0`);
  const out: { pid: number; cmdline: string }[] = [];
  for (const entry of readdirSync('/proc')) {
    if (!/^\d+$/.test(entry) || Number(entry) === process.pid) continue;
    try {
      const env = Buffer.concat([Buffer.from([0]), readFileSync(`/proc/${entry}/environ`), Buffer.from([0])]);
      if (env.includes(marker)) out.push({ pid: Number(entry), cmdline: readFileSync(`/proc/${entry}/cmdline`, 'latin1').replace(/\0/g, ' ').trim() });
    } catch {
      /* gone, or a kernel thread */
    }
  }
  return out;
}

export interface NetworkTest {
  tag: string;
  peers: PeerNamespace;
  /** Environment for every process of the test: the marker that finds leftovers. */
  env: Record<string, string>;
  /** Registers a process tree to kill at the end (the latest handle of each target). */
  track(running: Running): Running;
  /** Starts a relay connection from the peer namespace. */
  relay(host: string, port: number): Promise<RelayPeer>;
  /** Starts any program in the peer namespace. */
  spawnPeer(argv: string[]): NsProcess;
}

/**
 * Runs one network scenario: a fresh peer namespace, the CLI lock to ourselves, and afterwards
 * (success or failure) every process killed, the namespace deleted, and the checks that no
 * nftables table of ours and no process of the test remains.
 */
export async function networkTest(t: Test, fn: (ctx: NetworkTest) => Promise<void>): Promise<void> {
  const release = await acquireMutex();
  const tag = uniqueTag();
  const env = { HANDOFF_NET_TEST: tag };
  const trees: Running[] = [];
  const spawned: NsProcess[] = [];
  let peers: PeerNamespace | undefined;
  try {
    t.notOk((await nftTables()).includes(CLI_LOCK_TABLE), 'no lock table before the test');
    peers = await createPeerNamespace(tag);
    const ctx: NetworkTest = {
      tag,
      peers,
      env,
      track(running) {
        trees.push(running);
        return running;
      },
      async relay(host, port) {
        const r = await RelayPeer.connect(peers!.ns, host, port, env);
        spawned.push(r.process);
        return r;
      },
      spawnPeer(argv) {
        const p = spawnInNamespace(peers!.ns, argv, env);
        spawned.push(p);
        return p;
      },
    };
    await fn(ctx);
  } finally {
    try {
      for (const p of spawned) await p.kill();
      for (const r of trees) await r.kill().catch((err: unknown) => t.fail(`cannot kill ${r.name}: ${String(err)}`));
      await peers?.destroy();
      if ((await nftTables()).includes(CLI_LOCK_TABLE)) {
        // Left by a failed handoff: the test's own assertions (or its error) say why.
        const u = await handoff(['unlock']);
        t.comment(`handoff unlock after the test: ${u.stdout}${u.stderr}`);
      }
      t.notOk((await nftTables()).includes(CLI_LOCK_TABLE), 'no nftables table of ours is left');
      let left = markedProcesses(tag);
      for (let i = 0; i < 50 && left.length; i++) {
        await sleep(20);
        left = markedProcesses(tag);
      }
      t.same(left, [], 'no process of the test is left');
      // Whatever the verdict, the next test starts clean.
      for (const { pid } of left) {
        try {
          process.kill(pid, 'SIGKILL');
        } catch {
          /* gone */
        }
      }
    } finally {
      release();
    }
  }
}

/** Waits until a TCP port accepts connections in the root namespace. */
export async function waitForListener(address: string, port: number, timeoutMs = 30_000): Promise<void> {
  const deadline = Date.now() + timeoutMs;
  for (;;) {
    const { stdout } = await execa('ss', ['-Htln', `sport = :${port}`]);
    if (stdout.includes(`${address.includes(':') ? `[${address}]` : address}:${port}`)) return;
    if (Date.now() > deadline) throw new Error(`nothing listens on ${address}:${port} after ${timeoutMs} ms`);
    await sleep(50);
  }
}

/** The sockets of an image as `handoff inspect --json` lists them. */
export async function imageSockets(image: string): Promise<{ kind: string; state?: string; local?: string; remote?: string; sendQueue?: number; recvQueue?: number }[]> {
  const r = await handoff(['inspect', image, '--json']);
  if (r.exitCode !== 0) throw new Error(`handoff inspect ${image} exited ${r.exitCode}: ${r.stderr}`);
  return (JSON.parse(r.stdout) as { sockets: never[] }).sockets;
}

/** Waits until a file (a log) matches re. */
export async function waitForText(path: string, re: RegExp, timeoutMs = 30_000): Promise<RegExpMatchArray> {
  const deadline = Date.now() + timeoutMs;
  for (;;) {
    let text = '';
    try {
      text = readFileSync(path, 'utf8');
    } catch {
      /* not created yet */
    }
    const m = text.match(re);
    if (m) return m;
    if (Date.now() > deadline) throw new Error(`${path}: no ${re} within ${timeoutMs} ms:\n${text}`);
    await sleep(20);
  }
}

// ---- the streaming scenario (net-stream handed off, net-peer checking) ----

const STREAM_TOTAL = 32 * 1024 * 1024;

/**
 * net-stream in the root namespace, net-peer in the peer namespace, 32 MiB each way with both
 * queues of the handed-off socket full at dump time. role 'server': net-stream listens and the
 * peer connects (the listener is handed off too); 'client': the peer listens, net-stream connects.
 */
export async function streamScenario(t: Test, ctx: NetworkTest, opts: { family: 'v4' | 'v6'; role: 'server' | 'client' }): Promise<void> {
  const workDir = mkdtempSync(join(tmpdir(), 'handoff-net-stream-'));
  t.teardown(() => cleanup(workDir));
  const port = await freePort();
  const total = String(STREAM_TOTAL);
  let peer: NsProcess;
  let endpoint: Running;
  if (opts.role === 'server') {
    const host = ctx.peers.host[opts.family];
    const starting = startTarget('net-stream', { command: [join(TARGETS_BUILD, 'net-stream')], args: ['listen', host, String(port), total], env: ctx.env, workDir });
    starting.catch(() => {});
    await waitForText(join(workDir, 'target.log'), /^LISTENING/m);
    peer = ctx.spawnPeer([join(TARGETS_BUILD, 'net-peer'), 'connect', host, String(port), total]);
    await peer.waitLine((l) => l === 'CONNECTED', 'CONNECTED');
    endpoint = ctx.track(await starting);
  } else {
    const host = ctx.peers.peer[opts.family];
    peer = ctx.spawnPeer([join(TARGETS_BUILD, 'net-peer'), 'listen', host, String(port), total]);
    await peer.waitLine((l) => l === 'LISTENING', 'LISTENING');
    endpoint = ctx.track(await startTarget('net-stream', { command: [join(TARGETS_BUILD, 'net-stream')], args: ['connect', host, String(port), total], env: ctx.env, workDir }));
  }
  await peer.waitLine((l) => l.startsWith('FULL '), 'FULL');
  t.comment(endpoint.log().match(/^QUEUES.*$/m)?.[0] ?? '');

  const image = join(workDir, 'image.himg');
  await dumpTarget(endpoint.pid, image);
  t.ok((await nftTables()).includes(CLI_LOCK_TABLE), 'the dump leaves the network locked');
  const sockets = await imageSockets(image);
  const connection = sockets.find((s) => s.kind === 'tcp' && s.state === 'ESTABLISHED');
  t.ok(connection, 'the image holds the established connection');
  t.ok((connection?.sendQueue ?? 0) > 0, `its send queue holds data (${connection?.sendQueue} bytes)`);
  t.ok((connection?.recvQueue ?? 0) > 0, `its receive queue holds data (${connection?.recvQueue} bytes)`);
  if (opts.role === 'server') t.ok(sockets.some((s) => s.kind === 'tcp' && s.state === 'LISTEN'), 'the image holds the listener');
  await endpoint.kill();

  const { running } = await restoreImage('net-stream', endpoint.pid, image, workDir);
  ctx.track(running);
  t.notOk((await nftTables()).includes(CLI_LOCK_TABLE), 'the restore removes the lock');
  running.signal('SIGUSR1');
  peer.proc.stdin!.write('GO\n');
  const peerVerdict = await peer.waitLine((l) => l.startsWith('PEER '), 'verdict', 120_000);
  const verdict = await running.waitFor(VERDICT, 120_000);
  t.equal(peerVerdict, `PEER PASS sent=${total} received=${total}`, 'the peer got every byte once, in order, and no reset');
  t.equal(verdict[1], 'PASS', 'the restored endpoint got every byte once, in order, and no reset', { log: running.log() });
  t.equal(await running.exitCode(), 0, 'the restored endpoint exits 0');
}
