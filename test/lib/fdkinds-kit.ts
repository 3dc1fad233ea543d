// Test kit for the fd-kind modules: a holder process (python3) that creates fd objects and
// reports their numbers, FdInfo for one of its fds the way the core builds it, and minimal
// dump/restore contexts that collect records and run finish hooks.
import { spawn, type ChildProcess } from 'node:child_process';
import { readFileSync } from 'node:fs';
import { createInterface } from 'node:readline';
import { closeFd } from '../../src/native/fd.js';
import { logger } from '../../src/log.js';
import { describeErrors, validators } from '../../src/format/schema.js';
import { PAYLOAD_FIELDS } from '../../src/format/records.js';
import { FileBytes } from '../../src/format/cbor.js';
import { fdInfo } from '../../src/dump/fdinfo.js';
import type { DumpContext, FdInfo, FdObjectModule, ImageRecord, RestoreContext } from '../../src/objects/types.js';

export interface Holder {
  pid: number;
  /** What the script printed as JSON on its first line. */
  ready: Record<string, unknown>;
  /** Sends one line to the script's stdin and waits for its one-line JSON answer. */
  ask(line: string): Promise<Record<string, unknown>>;
  stop(): Promise<void>;
}

/** Python prelude for holder scripts: libc through ctypes, `ready(obj)`, `answer(obj)`, `lines()`. */
const PRELUDE = `
import os, sys, json, ctypes, select, time, struct
libc = ctypes.CDLL(None, use_errno=True)
def ready(obj): print(json.dumps(obj), flush=True)
answer = ready
def lines():
    for line in sys.stdin:
        yield line.strip()
`;

/** Starts python3 running PRELUDE + script; the script must call ready({...}) then serve lines(). */
export async function startHolder(script: string): Promise<Holder> {
  const child: ChildProcess = spawn('python3', ['-c', PRELUDE + script], { stdio: ['pipe', 'pipe', 'inherit'] });
  const rl = createInterface({ input: child.stdout! });
  const pending: ((line: string) => void)[] = [];
  const buffered: string[] = [];
  rl.on('line', (line) => {
    const waiter = pending.shift();
    if (waiter) waiter(line);
    else buffered.push(line);
  });
  const exited = new Promise<void>((resolve) => child.once('exit', () => resolve()));
  const nextLine = () =>
    new Promise<string>((resolve, reject) => {
      const line = buffered.shift();
      if (line !== undefined) return resolve(line);
      pending.push(resolve);
      void exited.then(() => reject(new Error('holder exited')));
    });
  const ready = JSON.parse(await nextLine()) as Record<string, unknown>;
  return {
    pid: child.pid!,
    ready,
    async ask(line) {
      child.stdin!.write(line + '\n');
      return JSON.parse(await nextLine()) as Record<string, unknown>;
    },
    async stop() {
      child.kill('SIGKILL');
      await exited;
    },
  };
}

/** What the core hands a module for fd `fd` of process `pid` (the core's own function). */
export const fdInfoOf = (pid: number, fd: number): FdInfo => fdInfo(pid, fd);

export interface DumpRun {
  ctx: DumpContext;
  records: ImageRecord[];
  finish(): void;
  /** Runs the modules' undo hooks, as the core does when a dump fails. */
  abort(): void;
}

export function dumpContext(pids: number[]): DumpRun {
  const records: ImageRecord[] = [];
  const atEnd: (() => void)[] = [];
  const undo: (() => void)[] = [];
  let next = 1;
  const ctx: DumpContext = {
    emit: (r) => {
      // Every record a module writes must pass the format's JSON Schema.
      // Payload fields are checked in the form the reader hands them out: references into the file.
      const decoded = { ...r };
      for (const [kind, field] of Object.entries(PAYLOAD_FIELDS))
        if (r.kind === kind && r[field] instanceof Uint8Array) decoded[field] = new FileBytes(0, (r[field] as Uint8Array).length);
      const validate = validators().get(r.kind);
      if (!validate) throw new Error(`no schema for record kind ${r.kind}`);
      if (!validate(decoded)) throw new Error(`${r.kind} record fails its schema: ${describeErrors(validate.errors)}: ${JSON.stringify(r, (_, v) => (typeof v === 'bigint' ? v.toString() : v))}`);
      records.push(r);
    },
    newId: () => next++,
    pids: new Set(pids),
    options: {},
    // The kinds tested with this kit never carry descriptors in flight (unix sockets: socket-context.ts).
    dumpFd: () => {
      throw new Error('fdkinds-kit: no descriptors in flight here');
    },
    atEnd: (fn) => void atEnd.push(fn),
    onAbort: (fn) => void undo.push(fn),
    log: logger('test-dump'),
  };
  return { ctx, records, finish: () => atEnd.forEach((fn) => fn()), abort: () => undo.forEach((fn) => fn()) };
}

/** Runs preflight + dump of one fd of pid and closes the dumper's duplicate. */
export function dumpFd(mod: FdObjectModule, run: DumpRun, pid: number, fd: number): { id: number; blockers: ReturnType<NonNullable<FdObjectModule['preflight']>> } {
  const info = fdInfoOf(pid, fd);
  try {
    if (!mod.matches(info)) throw new Error(`module ${mod.kinds.join('/')} does not match fd ${fd} (${info.link})`);
    const blockers = mod.preflight?.(info, run.ctx.pids) ?? [];
    const id = mod.dump(info, run.ctx);
    return { id, blockers };
  } finally {
    closeFd(info.localFd);
  }
}

export interface RestoreRun {
  ctx: RestoreContext;
  finish(): Promise<void>;
  abort(): void;
}

export function restoreContext(records: readonly ImageRecord[]): RestoreRun {
  const memo = new Map<string, unknown>();
  const finishers: (() => void | Promise<void>)[] = [];
  const aborters: (() => void)[] = [];
  const ctx: RestoreContext = {
    records,
    byId: (id) => records.find((r) => r.id === id),
    objectFd: () => {
      throw new Error('fdkinds-kit: no descriptors in flight here');
    },
    shared<T>(key: string, create: () => T): T {
      if (!memo.has(key)) memo.set(key, create());
      return memo.get(key) as T;
    },
    atFinish: (fn) => void finishers.push(fn),
    readPayload: () => {
      throw new Error('test records carry contents inline');
    },
    onAbort: (fn) => void aborters.push(fn),
    log: logger('test-restore'),
  };
  return {
    ctx,
    async finish() {
      for (const fn of finishers) await fn();
    },
    abort: () => aborters.forEach((fn) => fn()),
  };
}

/** The record with `id`. */
export function recordById(records: ImageRecord[], id: number): ImageRecord {
  const r = records.find((x) => x.id === id);
  if (!r) throw new Error(`no record ${id}`);
  return r;
}

/** /proc/self/fdinfo text of a local fd. */
export function fdinfoTextOf(fd: number): string {
  return readFileSync(`/proc/self/fdinfo/${fd}`, 'utf8');
}
