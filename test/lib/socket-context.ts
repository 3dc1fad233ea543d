// Drives one fd-object module the way the dump/restore core does (FdInfo from /proc, a
// record list, atFinish/onAbort hooks), so socket modules can be proven on their own.
import { validators, describeErrors } from '../../src/format/schema.js';
import { logger } from '../../src/log.js';
import { fdInfo } from '../../src/dump/fdinfo.js';
import type { DumpContext, FdInfo, ImageRecord, RestoreContext } from '../../src/objects/types.js';

/** What the core hands a module for fd `fd` of process `pid` (the core's own function). */
export const fdInfoOf = (pid: number, fd: number): FdInfo => fdInfo(pid, fd);

export interface TestDumpContext extends DumpContext {
  records: ImageRecord[];
  /** Runs the atEnd hooks. */
  finish(): void;
  /** Runs the abort hooks (what the core does when a dump fails). */
  abort(): void;
}

export function dumpContext(pids: number[]): TestDumpContext {
  const records: ImageRecord[] = [];
  const atEnd: (() => void)[] = [];
  const aborts: (() => void)[] = [];
  let next = 1;
  return {
    records,
    emit: (r) => records.push(r),
    newId: () => next++,
    pids: new Set(pids),
    atEnd: (fn) => atEnd.push(fn),
    onAbort: (fn: () => void) => aborts.push(fn),
    finish: () => atEnd.splice(0).forEach((fn) => fn()),
    abort: () => aborts.splice(0).forEach((fn) => fn()),
    log: logger('test-dump'),
  } as TestDumpContext;
}

export interface TestRestoreContext extends RestoreContext {
  /** Runs the atFinish hooks in order. */
  finish(): Promise<void>;
  abort(): void;
}

export function restoreContext(records: ImageRecord[]): TestRestoreContext {
  const shared = new Map<string, unknown>();
  const finish: (() => void | Promise<void>)[] = [];
  const aborts: (() => void)[] = [];
  return {
    records,
    byId: (id) => records.find((r) => r.id === id),
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
}

/** Schema errors of a record, or '' when it validates (or no schema for its kind exists yet). */
export function schemaErrors(record: ImageRecord): string {
  const validate = validators().get(record.kind);
  if (!validate) return `no schema for kind ${record.kind}`;
  const copy = structuredClone(record);
  return validate(copy) ? '' : describeErrors(validate.errors);
}
