// The contract between the dump/restore core and the modules in src/objects that handle one
// kind of file descriptor object each (files, pipes, sockets, eventfd...). The core takes every
// fd of a target into the dumper (pidfd_getfd), finds which fds share one open file description
// (kcmp) and asks the first module whose `matches` is true to dump it once. On restore the module
// recreates the object in the restorer and returns a local fd; the core then installs that fd into
// each owning process at its recorded number (pidfd_getfd injected into the target, then dup3).
import type { Blocker } from '../errors.js';
import type { Logger } from '../log.js';

/** What the core knows about one fd of a target when it asks a module to dump it. */
export interface FdInfo {
  pid: number;
  fd: number;
  /** A duplicate of the fd in the dumper process (same open file description). */
  localFd: number;
  /** readlink(/proc/PID/fd/FD), e.g. "/var/log/x (deleted)", "pipe:[123]", "socket:[456]", "anon_inode:[eventfd]". */
  link: string;
  /** Parsed /proc/PID/fdinfo/FD: pos, flags (octal, as a number), mnt_id, ino, plus every other key raw. */
  fdinfo: { pos: number; flags: number; [key: string]: string | number };
  /** fstat of the fd (taken on localFd). */
  stat: { mode: number; ino: number; dev: number; rdev: number; size: number; uid: number; gid: number };
}

export type ImageRecord = { kind: string; [field: string]: unknown };

/** Choices of the user that change what is a blocker and how objects are dumped. */
export interface ObjectOptions {
  /**
   * A connected unix socket whose peer is in no dumped process is a blocker unless this says
   * how to restore it: 'closed' (its peer has gone: queued data, then EOF / EPIPE) or
   * 'reconnect' (a datagram socket connects to the peer's name again; others fall back to closed).
   */
  unixOutside?: 'closed' | 'reconnect';
}

/** What a module's preflight may use besides the fd itself. */
export interface PreflightContext {
  options: ObjectOptions;
  /**
   * Blockers of a descriptor that belongs to no process (one in flight in a unix socket's
   * queue), given as a local fd of this process, found by the module that would dump it.
   */
  inFlight(localFd: number): Blocker[];
}

export interface DumpContext {
  /** Appends a record to the image (validated against the schema in tests). */
  emit(record: ImageRecord): void;
  /** A fresh object id, unique in the image; fd records reference objects by it. */
  newId(): number;
  /** Pids being dumped (a peer outside this set is a blocker for sockets and pipes). */
  pids: ReadonlySet<number>;
  options: ObjectOptions;
  /**
   * Dumps a descriptor that belongs to no process (one in flight in a unix socket's queue),
   * given as a local fd of the dumper, through the module that handles it, and returns its
   * object id (the id already given when it shares an open file description with an fd seen
   * before). The core takes the fd over and closes it when the dump ends.
   */
  dumpFd(localFd: number): number;
  /** Hooks run after all fds are dumped (e.g. to read a pipe once both ends are known). */
  atEnd(fn: () => void): void;
  /**
   * Undoes what dumping did to the ORIGINAL objects (a socket left in repair mode...). Runs
   * when the dump fails and when the processes are left running after it.
   */
  onAbort(fn: () => void): void;
  log: Logger;
}

export interface RestoreContext {
  /** Every record of the image in order; page payloads are references, not bytes. */
  records: readonly ImageRecord[];
  /** Object record (anything with an `id`) by id. */
  byId(id: number): ImageRecord | undefined;
  /** Memoises objects that several fds or processes share (both ends of one pipe...). */
  shared<T>(key: string, create: () => T): T;
  /**
   * A local fd for object `id`, recreated once through its module: the same one the core
   * installs into processes (descriptors in flight refer to objects this way). Owned by the core.
   */
  objectFd(id: number): number;
  /** Runs after every process is restored and before the network unlock (TCP repair off...). */
  atFinish(fn: () => void | Promise<void>): void;
  /** Bytes of a payload stored in the image (deleted file or memfd contents...). */
  readPayload(ref: { offset: number; length: number }): Uint8Array;
  /** Runs if the restore fails (close what was opened). */
  onAbort(fn: () => void): void;
  log: Logger;
}

export interface FdObjectModule {
  /** Record kinds this module writes and reads. */
  kinds: readonly string[];
  /** True when this module handles the fd. */
  matches(info: FdInfo): boolean;
  /** Problems that make the fd impossible to hand off, reported before anything is frozen. */
  preflight?(info: FdInfo, pids: ReadonlySet<number>, ctx?: PreflightContext): Blocker[];
  /** Writes the object's record(s) and returns the id that fd records refer to. */
  dump(info: FdInfo, ctx: DumpContext): number;
  /** Recreates the object behind `record` and returns a local fd for it in the restorer. */
  restore(record: ImageRecord, ctx: RestoreContext): number | Promise<number>;
}
