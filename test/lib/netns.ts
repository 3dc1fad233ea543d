// Network namespaces for socket tests: a pair joined by a veth, IPv4 and IPv6 addresses on
// both ends, commands run inside, always torn down. Names are unique per test process so
// parallel tap jobs never collide.
import { randomBytes } from 'node:crypto';
import { closeSync, openSync } from 'node:fs';
import { execa, type ResultPromise } from 'execa';
import { setnsNet } from '../../src/native/socket.js';

export interface NetnsPair {
  /** Namespace of the side whose sockets are dumped and restored. */
  local: string;
  /** Namespace of the peer. */
  peer: string;
  v4: { local: string; peer: string };
  v6: { local: string; peer: string };
  /** Runs a command to completion inside a namespace. */
  run(ns: string, cmd: string, args?: string[]): Promise<string>;
  /** Starts a long-running command inside a namespace (pid = the command's own pid). */
  spawn(ns: string, cmd: string, args?: string[]): ResultPromise<{ stdin: 'pipe'; stdout: 'pipe'; stderr: 'pipe'; reject: false; buffer: false }>;
  /** Runs `fn` with this thread in the namespace (sockets it creates live there). */
  inside<T>(ns: string, fn: () => T): T;
  destroy(): Promise<void>;
}

export function uniqueTag(): string {
  return `${process.pid.toString(36)}${randomBytes(3).toString('hex')}`;
}

async function ip(args: string[]): Promise<void> {
  await execa('ip', args);
}

export async function createNetnsPair(tag = uniqueTag()): Promise<NetnsPair> {
  const local = `hol${tag}`;
  const peer = `hop${tag}`;
  const v4 = { local: '10.77.0.1', peer: '10.77.0.2' };
  const v6 = { local: 'fd77::1', peer: 'fd77::2' };
  const spawned: { kill(signal?: NodeJS.Signals): boolean }[] = [];
  const destroy = async () => {
    for (const p of spawned) p.kill('SIGKILL');
    await execa('ip', ['netns', 'del', local], { reject: false });
    await execa('ip', ['netns', 'del', peer], { reject: false });
  };
  try {
    await ip(['netns', 'add', local]);
    await ip(['netns', 'add', peer]);
    // Created directly inside the namespaces: the root namespace never sees these links.
    await ip(['link', 'add', 'name', 'veth0', 'netns', local, 'type', 'veth', 'peer', 'name', 'veth0', 'netns', peer]);
    for (const [ns, a4, a6] of [[local, v4.local, v6.local], [peer, v4.peer, v6.peer]] as const) {
      await ip(['-n', ns, 'link', 'set', 'lo', 'up']);
      await ip(['-n', ns, 'addr', 'add', `${a4}/24`, 'dev', 'veth0']);
      await ip(['-n', ns, 'addr', 'add', `${a6}/64`, 'dev', 'veth0', 'nodad']);
      await ip(['-n', ns, 'link', 'set', 'veth0', 'up']);
    }
  } catch (err) {
    await destroy();
    throw err;
  }
  return {
    local,
    peer,
    v4,
    v6,
    async run(ns, cmd, args = []) {
      const r = await execa('ip', ['netns', 'exec', ns, cmd, ...args]);
      return String(r.stdout);
    },
    spawn(ns, cmd, args = []) {
      const p = execa('ip', ['netns', 'exec', ns, cmd, ...args], { stdin: 'pipe', stdout: 'pipe', stderr: 'pipe', reject: false, buffer: false });
      spawned.push(p);
      return p;
    },
    inside(ns, fn) {
      const home = openSync('/proc/thread-self/ns/net', 'r');
      const there = openSync(`/run/netns/${ns}`, 'r');
      try {
        setnsNet(there);
        try {
          return fn();
        } finally {
          setnsNet(home);
        }
      } finally {
        closeSync(there);
        closeSync(home);
      }
    },
    destroy,
  };
}

/** Reads a child's stdout line by line and waits for lines matching a test. */
export class LineWatcher {
  readonly lines: string[] = [];
  private waiters: { test: (l: string) => boolean; resolve: (l: string) => void }[] = [];
  private buf = '';
  constructor(stream: NodeJS.ReadableStream) {
    stream.setEncoding?.('utf8');
    stream.on('data', (chunk: string | Buffer) => {
      this.buf += chunk.toString();
      let nl: number;
      while ((nl = this.buf.indexOf('\n')) >= 0) {
        const line = this.buf.slice(0, nl);
        this.buf = this.buf.slice(nl + 1);
        this.lines.push(line);
        this.waiters = this.waiters.filter((w) => (w.test(line) ? (w.resolve(line), false) : true));
      }
    });
  }
  /** Resolves with the first line (already seen or future) for which `test` is true. */
  wait(test: (line: string) => boolean): Promise<string> {
    const seen = this.lines.find(test);
    if (seen !== undefined) return Promise.resolve(seen);
    return new Promise((resolve) => this.waiters.push({ test, resolve }));
  }
  waitFor(prefix: string, value?: number): Promise<string> {
    return this.wait((l) => (value === undefined ? l.startsWith(prefix) : l === `${prefix} ${value}`));
  }
}
