// Every error the tool raises is a HandoffError with a stable `code`.
// Codes are part of the CLI contract (printed, and in --json output); never rename one.
// Exit codes group them so scripts can branch without parsing text.

export const EXIT = {
  ok: 0,
  failure: 1, // internal or unexpected
  usage: 2, // bad command line
  image: 3, // image unreadable, corrupt, incompatible or unsafe
  blocked: 4, // preflight found state that cannot be handed off
  kernel: 5, // kernel lacks a needed feature / native core missing
  process: 6, // a target process vanished or misbehaved during dump/restore
  network: 7, // network lock / socket repair failed
} as const;

export type ErrorDetails = {
  pid?: number;
  tid?: number;
  fd?: number;
  offset?: number;
  path?: string;
  [key: string]: unknown;
};

export class HandoffError extends Error {
  readonly code: string;
  readonly exitCode: number;
  readonly details: ErrorDetails;

  constructor(code: string, message: string, details: ErrorDetails = {}, options: { cause?: unknown; exitCode?: number } = {}) {
    super(message, options.cause === undefined ? undefined : { cause: options.cause });
    this.name = new.target.name;
    this.code = code;
    this.details = details;
    this.exitCode = options.exitCode ?? EXIT.failure;
  }

  toJSON(): Record<string, unknown> {
    const cause = this.cause instanceof Error ? { name: this.cause.name, message: this.cause.message, code: (this.cause as { code?: unknown }).code } : this.cause;
    return { error: this.name, code: this.code, message: this.message, ...this.details, ...(cause === undefined ? {} : { cause }) };
  }
}

/** Command line misuse. */
export class UsageError extends HandoffError {
  constructor(message: string, details: ErrorDetails = {}) {
    super('E_USAGE', message, details, { exitCode: EXIT.usage });
  }
}

/**
 * Anything wrong with an image: truncated, corrupt, failing its schema or digest,
 * too new, unsafe permissions. `offset` is the byte offset where the problem was found.
 */
export class ImageError extends HandoffError {
  constructor(code: ImageErrorCode, message: string, details: ErrorDetails = {}, cause?: unknown) {
    super(code, message, details, { cause, exitCode: EXIT.image });
  }
}

export type ImageErrorCode =
  | 'E_IMAGE_IO' // could not open/read/write the image file
  | 'E_IMAGE_MAGIC' // not a handoff image
  | 'E_IMAGE_VERSION' // format major version this reader does not know
  | 'E_IMAGE_TRUNCATED' // ends before its trailer
  | 'E_IMAGE_CBOR' // not well-formed CBOR at offset
  | 'E_IMAGE_SCHEMA' // a record fails the JSON Schema
  | 'E_IMAGE_UNKNOWN_KIND' // a mandatory record kind this reader does not know
  | 'E_IMAGE_DIGEST' // integrity digest mismatch
  | 'E_IMAGE_LIMIT' // a declared length or count beyond the reader's limits
  | 'E_IMAGE_ALIGN' // page payload not at a page-aligned offset
  | 'E_IMAGE_TRAILING' // bytes after the trailer
  | 'E_IMAGE_UNSAFE' // owned by or writable by someone other than root
  | 'E_IMAGE_KERNEL' // image needs a kernel or feature this one lacks
  | 'E_IMAGE_INCONSISTENT'; // records contradict each other (dangling reference...)

/** The native core could not be loaded, or a native call failed unexpectedly. */
export class NativeError extends HandoffError {
  constructor(code: 'E_NATIVE_LOAD' | 'E_NATIVE_CALL', message: string, details: ErrorDetails = {}, cause?: unknown) {
    super(code, message, details, { cause, exitCode: EXIT.kernel });
  }
}

/** A syscall (local or remote) failed; errno is kept. */
export class SyscallError extends HandoffError {
  readonly errno: number;
  constructor(syscall: string, errno: number, details: ErrorDetails = {}) {
    super('E_SYSCALL', `${syscall} failed: ${errnoName(errno)} (${errno})${describe(details)}`, { syscall, errno, ...details }, { exitCode: EXIT.process });
    this.errno = errno;
  }
}

export type Blocker = { code: string; pid: number; fd?: number; address?: string; reason: string };

/** Preflight found state that cannot be handed off; lists every blocker, not just the first. */
export class BlockedError extends HandoffError {
  readonly blockers: Blocker[];
  constructor(blockers: Blocker[]) {
    super('E_BLOCKED', `cannot hand off: ${blockers.length} blocker(s)\n` + blockers.map((b) => `  pid ${b.pid}${b.fd === undefined ? '' : ` fd ${b.fd}`}${b.address ? ` ${b.address}` : ''}: [${b.code}] ${b.reason}`).join('\n'), { blockers }, { exitCode: EXIT.blocked });
    this.blockers = blockers;
  }
}

/** A target process or thread misbehaved or vanished. */
export class ProcessError extends HandoffError {
  constructor(code: 'E_NO_PROCESS' | 'E_PID_IN_USE' | 'E_PTY_IN_USE' | 'E_FREEZE' | 'E_DUMP' | 'E_RESTORE' | 'E_PTRACE' | 'E_REMOTE_SYSCALL', message: string, details: ErrorDetails = {}, cause?: unknown) {
    super(code, message, details, { cause, exitCode: EXIT.process });
  }
}

/** The running kernel lacks something the operation needs. */
export class KernelError extends HandoffError {
  constructor(code: 'E_KERNEL_FEATURE' | 'E_KERNEL_VERSION' | 'E_NOT_ROOT' | 'E_KEXEC', message: string, details: ErrorDetails = {}, cause?: unknown) {
    super(code, message, details, { cause, exitCode: EXIT.kernel });
  }
}

/** Network lock or socket repair problems. */
export class NetworkError extends HandoffError {
  constructor(code: 'E_NETLOCK' | 'E_TCP_REPAIR' | 'E_SOCKET', message: string, details: ErrorDetails = {}, cause?: unknown) {
    super(code, message, details, { cause, exitCode: EXIT.network });
  }
}

const ERRNO_NAMES: Record<number, string> = {
  1: 'EPERM', 2: 'ENOENT', 3: 'ESRCH', 4: 'EINTR', 5: 'EIO', 9: 'EBADF', 10: 'ECHILD', 11: 'EAGAIN',
  12: 'ENOMEM', 13: 'EACCES', 14: 'EFAULT', 16: 'EBUSY', 17: 'EEXIST', 22: 'EINVAL', 24: 'EMFILE',
  28: 'ENOSPC', 38: 'ENOSYS', 95: 'EOPNOTSUPP', 98: 'EADDRINUSE', 110: 'ETIMEDOUT',
};

export function errnoName(errno: number): string {
  return ERRNO_NAMES[Math.abs(errno)] ?? `errno ${Math.abs(errno)}`;
}

function describe(details: ErrorDetails): string {
  const parts: string[] = [];
  if (details.pid !== undefined) parts.push(`pid ${details.pid}`);
  if (details.tid !== undefined) parts.push(`tid ${details.tid}`);
  if (details.fd !== undefined) parts.push(`fd ${details.fd}`);
  if (details.path !== undefined) parts.push(`path ${details.path}`);
  return parts.length ? ` (${parts.join(', ')})` : '';
}

/** Wraps anything thrown into a HandoffError, keeping the original as `cause`. */
export function asHandoffError(err: unknown): HandoffError {
  if (err instanceof HandoffError) return err;
  const message = err instanceof Error ? err.message : String(err);
  return new HandoffError('E_INTERNAL', message, {}, { cause: err });
}
