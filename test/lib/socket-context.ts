// Drives one fd-object module the way the dump/restore core does (FdInfo from /proc, a
// record list, atFinish/onAbort hooks), so socket modules can be proven on their own.
import { validators, describeErrors } from '../../src/format/schema.js';
import { logger } from '../../src/log.js';
import { fdInfo } from '../../src/dump/fdinfo.js';
import { closeFd, sameOpenFile } from '../../src/native/fd.js';
import { fdModules, moduleForKind } from '../../src/objects/index.js';
import type { Blocker } from '../../src/errors.js';
import type { DumpContext, FdInfo, ImageRecord, ObjectOptions, PreflightContext, RestoreContext } from '../../src/objects/types.js';

/** What the core hands a module for fd `fd` of process `pid` (the core's own function). */
export const fdInfoOf = (pid: number, fd: number): FdInfo => fdInfo(pid, fd);

export interface TestDumpContext extends DumpContext {
  records: ImageRecord[];
  /** Runs the atEnd hooks. */
  finish(): void;
  /** Runs the abort hooks (what the core does when a dump fails). */
  abort(): void;
  /** Closes the descriptors in flight handed over through dumpFd (the core does it at the end). */
  close(): void;
}

/** The core's preflight context: descriptors in flight checked by the module that would dump them. */
export function preflightContext(pids: number[], options: ObjectOptions = {}): PreflightContext {
  const set = new Set(pids);
  const ctx: PreflightContext = {
    options,
    inFlight(localFd): Blocker[] {
      const info = fdInfo(process.pid, localFd);
      try {
        const module = fdModules.find((m) => m.matches(info));
        if (!module) return [{ code: 'B_FD_KIND', pid: process.pid, fd: localFd, reason: `unsupported kind of fd: ${info.link}` }];
        return module.preflight?.(info, set, ctx) ?? [];
      } finally {
        closeFd(info.localFd);
      }
    },
  };
  return ctx;
}

export function dumpContext(pids: number[], options: ObjectOptions = {}): TestDumpContext {
  const records: ImageRecord[] = [];
  const atEnd: (() => void)[] = [];
  const aborts: (() => void)[] = [];
  const owned: number[] = [];
  const seen: { info: FdInfo; id: number }[] = [];
  let next = 1;
  const ctx: TestDumpContext = {
    records,
    emit: (r) => records.push(r),
    newId: () => next++,
    pids: new Set(pids),
    options,
    // As the core: shared with a descriptor seen before, or dumped by the module that matches.
    dumpFd(localFd) {
      owned.push(localFd);
      const info = fdInfo(process.pid, localFd);
      owned.push(info.localFd);
      const shared = seen.find((s) => s.info.stat.ino === info.stat.ino && s.info.stat.dev === info.stat.dev && sameOpenFile(s.info.pid, s.info.fd, info.pid, info.fd));
      if (shared) return shared.id;
      const module = fdModules.find((m) => m.matches(info));
      if (!module) throw new Error(`no module for the descriptor in flight ${info.link}`);
      const id = module.dump(info, ctx);
      seen.push({ info, id });
      return id;
    },
    close: () => owned.splice(0).forEach((fd) => closeFd(fd)),
    atEnd: (fn) => atEnd.push(fn),
    onAbort: (fn: () => void) => aborts.push(fn),
    finish: () => atEnd.splice(0).forEach((fn) => fn()),
    abort: () => aborts.splice(0).forEach((fn) => fn()),
    log: logger('test-dump'),
  } as TestDumpContext;
  return ctx;
}

export interface TestRestoreContext extends RestoreContext {
  /** Runs the atFinish hooks in order. */
  finish(): Promise<void>;
  abort(): void;
  /** Object id -> local fd of every object restored through objectFd. */
  objects(): Map<number, number>;
}

export function restoreContext(records: ImageRecord[]): TestRestoreContext {
  const shared = new Map<string, unknown>();
  const finish: (() => void | Promise<void>)[] = [];
  const aborts: (() => void)[] = [];
  const objects = new Map<number, number>();
  const ctx: TestRestoreContext = {
    records,
    byId: (id) => records.find((r) => r.id === id),
    // As the core: each object recreated once by its module; the caller owns the fds (objects()).
    objectFd(id) {
      let fd = objects.get(id);
      if (fd === undefined) {
        const rec = records.find((r) => r.id === id);
        if (!rec) throw new Error(`no object ${id}`);
        const got = moduleForKind(rec.kind)!.restore(rec, ctx);
        if (typeof got !== 'number') throw new Error('asynchronous restore');
        objects.set(id, (fd = got));
      }
      return fd;
    },
    objects: () => objects,
    shared<T>(key: string, create: () => T): T {
      if (!shared.has(key)) shared.set(key, create());
      return shared.get(key) as T;
    },
    atFinish: (fn) => finish.push(fn),
    readPayload: () => {
      throw new Error('socket records carry their bytes inline; no image file in these tests');
    },
    onAbort: (fn) => aborts.push(fn),
    async finish() {
      for (const fn of finish.splice(0)) await fn();
    },
    abort: () => aborts.splice(0).forEach((fn) => fn()),
    log: logger('test-restore'),
  };
  return ctx;
}

/** Schema errors of a record, or '' when it validates (or no schema for its kind exists yet). */
export function schemaErrors(record: ImageRecord): string {
  const validate = validators().get(record.kind);
  if (!validate) return `no schema for kind ${record.kind}`;
  const copy = structuredClone(record);
  return validate(copy) ? '' : describeErrors(validate.errors);
}
