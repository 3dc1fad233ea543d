// The in-flight record of a prepare on this boot (/run/handoff/pending.json, tmpfs: it
// must not survive a reboot). Written before anything is frozen, so that `handoff abort`
// (or the watchdog, when the preparing process is killed) knows what to undo: which
// processes, which lock tables, which store, whether a kernel is staged.
import { existsSync, mkdirSync, readFileSync, renameSync, rmSync, writeFileSync } from 'node:fs';
import { join } from 'node:path';
import type { StoreSpec } from './store.js';

export const RUN_DIR = process.env.HANDOFF_RUN_DIR ?? '/run/handoff';
export const PENDING = join(RUN_DIR, 'pending.json');
export const LAST_REPORT = join(RUN_DIR, 'last-report.json');

export interface PendingState {
  /** pid of the preparing `handoff prepare`. */
  preparer: number;
  startedAtMs: number;
  phase: 'staged' | 'dumping' | 'written' | 'executing';
  roots: number[];
  /** Every pid of every tree, as found before the freeze. */
  pids: number[];
  lockTables: string[];
  store: StoreSpec;
  /** Temporary image files (RAM store) to delete on abort. */
  tempFiles: string[];
  kernelStaged: boolean;
}

export function ensureRunDir(): void {
  mkdirSync(RUN_DIR, { recursive: true, mode: 0o700 });
}

export function writePending(state: PendingState): void {
  ensureRunDir();
  const temp = `${PENDING}.tmp`;
  writeFileSync(temp, JSON.stringify(state, null, 2) + '\n', { mode: 0o600 });
  renameSync(temp, PENDING);
}

export function readPending(): PendingState | undefined {
  if (!existsSync(PENDING)) return undefined;
  try {
    return JSON.parse(readFileSync(PENDING, 'utf8')) as PendingState;
  } catch {
    return undefined;
  }
}

export function clearPending(): void {
  rmSync(PENDING, { force: true });
}
