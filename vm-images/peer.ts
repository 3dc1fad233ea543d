// The TCP peer of handoff-workload (vm-images/guest/workload.c), outside the guest: sends
// numbered requests one at a time and checks every reply ("N parent child ticks": the
// request number echoed, both counters equal to N, the timer's ticks never going back).
// It survives the guest's kexec because it talks to QEMU's user network, not the guest.
import { connect, type Socket } from 'node:net';
import { once } from 'node:events';

export interface PeerReply {
  n: number;
  parent: number;
  child: number;
  ticks: number;
  /** Host time the request was sent and the reply came. */
  sentAt: number;
  gotAt: number;
}

export interface PeerResult {
  replies: PeerReply[];
  /** Problems found in the replies (empty when every byte was right). */
  errors: string[];
  /** Longest wait for one reply, ms (the blackout as the peer saw it). */
  longestGapMs: number;
  verify?: string;
  /** The connection was reset or closed by the other side before we ended it. */
  broken?: string;
}

export class Peer {
  private socket!: Socket;
  private buffer = '';
  private waiting: ((line: string) => void) | undefined;
  private lines: string[] = [];
  readonly result: PeerResult = { replies: [], errors: [], longestGapMs: 0 };
  private stopped = false;
  private running: Promise<void> | undefined;

  static async connect(port: number, host = '127.0.0.1'): Promise<Peer> {
    const peer = new Peer();
    const socket = connect({ host, port });
    await once(socket, 'connect');
    socket.setNoDelay(true);
    socket.setEncoding('utf8');
    socket.on('data', (d: string) => {
      peer.buffer += d;
      let nl: number;
      while ((nl = peer.buffer.indexOf('\n')) >= 0) {
        const line = peer.buffer.slice(0, nl);
        peer.buffer = peer.buffer.slice(nl + 1);
        if (peer.waiting) {
          const w = peer.waiting;
          peer.waiting = undefined;
          w(line);
        } else peer.lines.push(line);
      }
    });
    const fail = (why: string) => {
      if (!peer.stopped) peer.result.broken ??= why;
      const w = peer.waiting;
      peer.waiting = undefined;
      w?.('');
    };
    socket.on('error', (e) => fail(`error: ${e.message}`));
    socket.on('close', () => fail('closed by the other side'));
    peer.socket = socket;
    return peer;
  }

  /** A reply that takes longer than this counts as a broken session. */
  replyTimeoutMs = 180_000;

  private request(text: string): Promise<string> {
    const queued = this.lines.shift();
    if (queued !== undefined) this.result.errors.push(`unexpected line before request ${text}: ${queued}`);
    return new Promise((resolve) => {
      const timer = setTimeout(() => {
        this.result.broken ??= `no reply to "${text}" within ${this.replyTimeoutMs / 1000} s`;
        this.waiting = undefined;
        resolve('');
      }, this.replyTimeoutMs);
      this.waiting = (line) => {
        clearTimeout(timer);
        resolve(line);
      };
      this.socket.write(text + '\n');
    });
  }

  /** One request, checked. Returns false once the connection is broken. */
  async step(): Promise<boolean> {
    if (this.result.broken) return false;
    const n = this.result.replies.length + 1;
    const sentAt = performance.now();
    const line = await this.request(String(n));
    const gotAt = performance.now();
    if (this.result.broken) return false;
    const [a, b, c, d] = line.split(' ').map(Number);
    const reply = { n: a!, parent: b!, child: c!, ticks: d!, sentAt, gotAt };
    const prev = this.result.replies.at(-1);
    if (a !== n || b !== n || c !== n) this.result.errors.push(`request ${n}: reply "${line}" (expected ${n} ${n} ${n} TICKS)`);
    if (prev && !(reply.ticks >= prev.ticks)) this.result.errors.push(`request ${n}: timer ticks went back from ${prev.ticks} to ${reply.ticks}`);
    this.result.replies.push(reply);
    this.result.longestGapMs = Math.max(this.result.longestGapMs, gotAt - sentAt);
    return true;
  }

  /** Sends requests every intervalMs until stop(). */
  start(intervalMs = 100): void {
    this.running = (async () => {
      while (!this.stopped && (await this.step())) await new Promise((r) => setTimeout(r, intervalMs));
    })();
  }

  /** Requests sent so far that got their reply. */
  get count(): number {
    return this.result.replies.length;
  }

  /** Waits until `more` further replies arrived (or the connection broke). */
  async waitFor(more: number): Promise<void> {
    const target = this.count + more;
    while (this.count < target && !this.result.broken) await new Promise((r) => setTimeout(r, 50));
  }

  /** Stops the loop, asks the workload to verify its memory and file, says bye. */
  async finish(): Promise<PeerResult> {
    this.stopped = true;
    await this.running;
    if (!this.result.broken) {
      this.result.verify = await this.request('verify');
      await this.request('bye');
    }
    this.socket.destroy();
    return this.result;
  }
}
