// TypeScript shapes of the image format v1 (formats/v1/spec.md is the normative text,
// formats/v1/image.cddl the grammar, formats/v1/schema/*.json what the reader enforces).
// Conventions: 64-bit values that can exceed 2^53 (registers, masks, capabilities, u64 event
// data) are bigint; addresses, sizes, ids, pids are number. Byte strings are Uint8Array (a
// Buffer when read); page payloads and file contents are PayloadRef once read from a file.

/** A byte range of the image file that holds a large byte string (read it with readPayload). */
export interface PayloadRef {
  offset: number;
  length: number;
}

/** Bytes inline in a record. */
export type Bytes = Uint8Array;
/** A payload: bytes when writing a small one through `record()`, a PayloadRef when read. */
export type Payload = Uint8Array | PayloadRef;

/** Every record may carry `optional: true`: a reader that does not know its kind skips it. */
export interface RecordBase {
  kind: string;
  optional?: boolean;
}

export interface Feature {
  /** e.g. "time-namespace", "tcp-repair-window", "clone3-set-tid". */
  name: string;
  /** Oldest kernel release that has it, "major.minor". */
  minKernel: string;
}

export interface HeaderRecord extends RecordBase {
  kind: 'header';
  magic: 'handoff-image';
  version: { major: 1; minor: number };
  minKernel: string;
  sourceKernel: string;
  arch: 'x86_64';
  pageSize: number;
  tool: { name: string; version: string };
  /** RFC 3339 date-time. */
  created: string;
  hostname: string;
  features: Feature[];
}

/** The fields of a header a writer supplies (kind, magic and version are filled in). */
export type HeaderFields = Omit<HeaderRecord, 'kind' | 'magic' | 'version'> & { version?: { major: 1; minor: number } };

export interface TrailerRecord extends RecordBase {
  kind: 'trailer';
  /** Number of records between header and trailer. */
  records: number;
  /** SHA-256 of every byte of the file before the trailer. */
  sha256: Bytes;
  /** Since 1.1: CRC-32 of each `size`-byte segment of those bytes, 4 bytes big-endian each. */
  segments?: { size: number; crc32: Bytes };
}

// ---------------------------------------------------------------- process tree

export type RlimitValue = number | 'unlimited';
export interface Rlimit {
  /** "RLIMIT_NOFILE", "RLIMIT_STACK"... (the names of <sys/resource.h>). */
  resource: string;
  soft: RlimitValue;
  hard: RlimitValue;
}

/** prctl(PR_SET_MM_MAP) fields plus the executable link. */
export interface MmInfo {
  startCode: number;
  endCode: number;
  startData: number;
  endData: number;
  startBrk: number;
  brk: number;
  startStack: number;
  argStart: number;
  argEnd: number;
  envStart: number;
  envEnd: number;
  /** Raw auxiliary vector (/proc/PID/auxv): pairs of native-endian u64. */
  auxv: Bytes;
  /** PR_SET_MM_EXE_FILE target path. */
  exeFile: string;
}

export interface ProcessRecord extends RecordBase {
  kind: 'process';
  pid: number;
  ppid: number;
  pgid: number;
  sid: number;
  comm: string;
  state: 'alive' | 'zombie';
  /** Zombies only: the wait status its parent will reap. */
  exitStatus?: number;
  exe: string;
  cwd: string;
  root: string;
  umask: number;
  personality: number;
  /** Informational only (the restored memory holds the real argv). */
  cmdline: string[];
  rlimits: Rlimit[];
  /** Present for alive processes, absent for zombies. */
  mm?: MmInfo;
  /** Scheduling and prctl settings. */
  tuning?: ProcessTuning;
  /** Control groups (/proc/PID/cgroup), moved back into on restore (src/objects/cgroup.ts). */
  cgroups?: CgroupMembership[];
}

export interface CgroupMembership {
  /** Hierarchy ID: 0 for cgroup v2 (informational for v1: IDs change across boots). */
  hierarchy: number;
  /** v1 controllers of the hierarchy, sorted (and name=X for a named one); [] for v2. */
  controllers: string[];
  /** Path from the root of the hierarchy, as /proc/PID/cgroup shows it. */
  path: string;
}

export interface ProcessTuning {
  /** SCHED_* policy and, for real-time policies, its priority. */
  policy?: number;
  rtPriority?: number;
  nice?: number;
  timerSlackNs?: number;
  childSubreaper?: boolean;
  thpDisable?: boolean;
  oomScoreAdj?: number;
}

export interface CredentialsRecord extends RecordBase {
  kind: 'credentials';
  pid: number;
  /** [real, effective, saved, fs] */
  uid: [number, number, number, number];
  gid: [number, number, number, number];
  groups: number[];
  capInheritable: bigint;
  capPermitted: bigint;
  capEffective: bigint;
  capBounding: bigint;
  capAmbient: bigint;
  securebits: number;
  noNewPrivs: boolean;
}

// ---------------------------------------------------------------- threads

/** Names of struct user_regs_struct (x86_64) as seen through PTRACE_GETREGS. */
export const REGISTER_NAMES = [
  'r15', 'r14', 'r13', 'r12', 'rbp', 'rbx', 'r11', 'r10', 'r9', 'r8', 'rax', 'rcx', 'rdx', 'rsi', 'rdi',
  'orig_rax', 'rip', 'cs', 'eflags', 'rsp', 'ss', 'fs_base', 'gs_base', 'ds', 'es', 'fs', 'gs',
] as const;
export type RegisterName = (typeof REGISTER_NAMES)[number];
export type Registers = Record<RegisterName, bigint>;

export interface Siginfo {
  signo: number;
  code: number;
  errno: number;
  /** The full 128-byte siginfo_t as PTRACE_PEEKSIGINFO returns it. */
  raw: Bytes;
}

export interface ThreadRecord extends RecordBase {
  kind: 'thread';
  pid: number;
  tid: number;
  comm: string;
  regs: Registers;
  /** NT_X86_XSTATE regset: xfeatures = XCR0 mask the data was saved with. */
  xsave: { xfeatures: bigint; data: Bytes };
  /** Blocked signals: bit n-1 = signal n. */
  sigmask: bigint;
  sigaltstack: { sp: number; size: number; flags: number };
  rseq?: { addr: number; len: number; sig: number };
  robustList: { head: number; len: number };
  /** set_tid_address / CLONE_CHILD_CLEARTID address (0 = none). */
  clearTid: number;
  /** Signals pending on this thread only. */
  pendingSignals: Siginfo[];
  /** The thread was stopped inside a syscall (registers already adjusted per `restart`). */
  syscall?: { nr: number; restart: 'restart' | 'eintr' | 'none' };
}

// ---------------------------------------------------------------- memory

export type MemoryAreaKind =
  | 'anonymous' | 'file' | 'heap' | 'stack' | 'vdso' | 'vvar' | 'vvar_vclock' | 'vsyscall' | 'memfd' | 'deleted' | 'shmem';

export interface DeviceNumber {
  major: number;
  minor: number;
}

export interface MemoryAreaRecord extends RecordBase {
  kind: 'memory-area';
  pid: number;
  /** [start, end) page-aligned; numbers (the vsyscall page's addresses are exact doubles too). */
  start: number;
  end: number;
  prot: { read: boolean; write: boolean; exec: boolean };
  /** MAP_SHARED (true) or MAP_PRIVATE. */
  shared: boolean;
  /** What the area is (named `type` because `kind` is the record kind, "memory-area"). */
  type: MemoryAreaKind;
  path?: string;
  fileOffset?: number;
  device?: DeviceNumber;
  inode?: number;
  /** A `file` record holding the backing of deleted / memfd mappings. */
  fileId?: number;
  /** smaps VmFlags, two-letter codes ("gd", "dd", "wf"...). */
  vmFlags: string[];
}

export interface PagesRecord extends RecordBase {
  kind: 'pages';
  pid: number;
  /** Page-aligned start address of `count` consecutive pages. */
  addr: number;
  count: number;
  /** count * pageSize bytes, at a page-aligned file offset. */
  data: Payload;
}

// ---------------------------------------------------------------- files and fds

export type FileType = 'regular' | 'directory' | 'chardev' | 'blockdev' | 'fifo' | 'memfd' | 'deleted';

export interface FileRecord extends RecordBase {
  kind: 'file';
  id: number;
  type: FileType;
  path: string;
  /** open(2) flags, O_* values. */
  flags: number;
  /** st_mode. */
  mode: number;
  /** File position (lseek). */
  offset: number;
  rdev?: DeviceNumber;
  size?: number;
  /** Whole contents of a deleted or memfd file, at a page-aligned file offset. */
  contents?: Payload;
  /** This open file description is another open of the deleted/memfd file of that record. */
  sameFileAs?: number;
  /** memfd F_SEAL_* bits (F_GET_SEALS). */
  seals?: number;
}

export interface PipeRecord extends RecordBase {
  kind: 'pipe';
  id: number;
  inode: number;
  /** F_GETPIPE_SZ. */
  capacity: number;
  /** Bytes queued in the pipe at dump time. */
  data: Bytes;
}

export interface PipeEndRecord extends RecordBase {
  kind: 'pipe-end';
  id: number;
  /** Id of the pipe record. */
  pipe: number;
  end: 'read' | 'write';
  /** O_* status flags (O_NONBLOCK...). */
  flags: number;
}

export interface FdRecord extends RecordBase {
  kind: 'fd';
  pid: number;
  fd: number;
  /** Id of the object record (file, pipe-end, tcp, udp, unix, epoll, eventfd, timerfd, signalfd, inotify, tty). */
  object: number;
  cloexec: boolean;
}

// ---------------------------------------------------------------- signals and timers

export interface SignalAction {
  signal: number;
  /** 0 = SIG_DFL, 1 = SIG_IGN, else the handler address. */
  handler: bigint;
  /** SA_* flags. */
  flags: number;
  restorer: bigint;
  mask: bigint;
}

export interface SignalActionsRecord extends RecordBase {
  kind: 'signal-actions';
  pid: number;
  actions: SignalAction[];
}

export interface SignalsPendingRecord extends RecordBase {
  kind: 'signals-pending';
  pid: number;
  /** Process-wide (shared) pending signals. */
  signals: Siginfo[];
}

export interface ItimerValue {
  intervalUs: number;
  valueUs: number;
}

export interface ItimersRecord extends RecordBase {
  kind: 'itimers';
  pid: number;
  real: ItimerValue;
  virtual: ItimerValue;
  prof: ItimerValue;
}

export interface PosixTimerRecord extends RecordBase {
  kind: 'posix-timer';
  pid: number;
  timerId: number;
  /** CLOCK_* id. */
  clock: number;
  notify: { mechanism: 'signal' | 'thread' | 'none'; signal: number; value: bigint; tid?: number };
  intervalNs: number;
  valueNs: number;
  overrun: number;
}

export interface Timespec {
  sec: number;
  nsec: number;
}

export interface ClocksRecord extends RecordBase {
  kind: 'clocks';
  monotonic: Timespec;
  boottime: Timespec;
  realtime: Timespec;
}

// ---------------------------------------------------------------- sockets

export interface InetAddress {
  /** Textual address ("127.0.0.1", "::1"). */
  address: string;
  port: number;
}

export interface SocketOptions {
  nodelay?: boolean;
  keepalive?: boolean;
  keepIdle?: number;
  keepIntvl?: number;
  keepCnt?: number;
  reuseAddr?: boolean;
  reusePort?: boolean;
  sndBuf?: number;
  rcvBuf?: number;
  linger?: { onoff: boolean; seconds: number };
  [option: string]: unknown;
}

export interface TcpRepair {
  sendSeq: number;
  recvSeq: number;
  /** Send queue (sent-but-unacked then unsent bytes). */
  sendQueue: Bytes;
  recvQueue: Bytes;
  /** Bytes at the end of sendQueue never sent (TCP_REPAIR_QUEUE semantics). */
  unsentBytes: number;
  mss: number;
  sndWscale: number;
  rcvWscale: number;
  sackOk: boolean;
  timestamps: boolean;
  /** TCP_TIMESTAMP value at dump time. */
  tsOffset?: number;
  window: { sndWl1: number; sndWnd: number; maxWindow: number; rcvWnd: number; rcvWup: number };
}

export interface TcpRecord extends RecordBase {
  kind: 'tcp';
  id: number;
  family: 'inet' | 'inet6';
  /** "ESTABLISHED", "LISTEN", "CLOSE", "FIN_WAIT1"... */
  state: string;
  local: InetAddress;
  remote: InetAddress;
  options: SocketOptions;
  backlog?: number;
  repair?: TcpRepair;
  /** O_* status flags of the open file (O_NONBLOCK...). */
  flags: number;
  /**
   * Since 1.2, connected sockets: sk_shutdown (1 no more receptions, 2 no more
   * transmissions). Bit 1 without a FIN from the peer is shutdown(SHUT_RD).
   */
  shutdown?: number;
}

export interface UdpRecord extends RecordBase {
  kind: 'udp';
  id: number;
  family: 'inet' | 'inet6';
  local: InetAddress;
  remote?: InetAddress;
  options: SocketOptions;
  flags: number;
  /** Datagrams waiting to be read, with the address each came from and was sent to. */
  queue?: UdpQueuedDatagram[];
}

export interface UdpQueuedDatagram {
  data: Bytes;
  from: InetAddress;
  /** The datagram's destination address (IP_PKTINFO), port 0. */
  to?: InetAddress;
}

export interface UnixQueuedMessage {
  data: Bytes;
  /** Object ids of SCM_RIGHTS fds carried by the message. */
  fds: number[];
}

export interface UnixRecord extends RecordBase {
  kind: 'unix';
  id: number;
  type: 'stream' | 'dgram' | 'seqpacket';
  address?: { path: string } | { abstract: Bytes };
  /** Id of the peer unix record. */
  peer?: number;
  /** "unconnected", "listening", "connected", "disconnecting". */
  state: string;
  backlog?: number;
  /** Messages queued for reading on this socket. */
  queue: UnixQueuedMessage[];
  flags: number;
  /** SHUT_* bits: 1 = no more reads, 2 = no more writes. */
  shutdown: number;
  /** The peer was outside the dumped set: restore without it, as closed or reconnected by its name (dgram). */
  peerOutside?: { restore: 'closed' | 'reconnect'; address?: { path: string } | { abstract: Bytes } };
}

// ---------------------------------------------------------------- anon-inode fds

export interface EpollRecord extends RecordBase {
  kind: 'epoll';
  id: number;
  flags: number;
  interest: { fd: number; events: number; data: bigint }[];
}

export interface EventfdRecord extends RecordBase {
  kind: 'eventfd';
  id: number;
  count: bigint;
  semaphore: boolean;
  flags: number;
}

export interface TimerfdRecord extends RecordBase {
  kind: 'timerfd';
  id: number;
  clock: number;
  flags: number;
  intervalNs: number;
  /** Time remaining until the next expiry (0 = disarmed). */
  valueNs: number;
  /** TFD_TIMER_* flags given to timerfd_settime. */
  settimeFlags: number;
  /** Expirations not yet read (restored with TFD_IOC_SET_TICKS). */
  ticks?: number;
}

export interface SignalfdRecord extends RecordBase {
  kind: 'signalfd';
  id: number;
  mask: bigint;
  flags: number;
}

export interface InotifyRecord extends RecordBase {
  kind: 'inotify';
  id: number;
  flags: number;
  watches: { wd: number; path: string; mask: number }[];
}

export interface PtyRecord extends RecordBase {
  kind: 'pty';
  id: number;
  /** N of /dev/pts/N. */
  index: number;
  /** struct termios2 as TCGETS2 returns it. */
  termios: Bytes;
  winsize: { rows: number; cols: number; xpixel: number; ypixel: number };
  packet: boolean;
  locked: boolean;
  exclusive: boolean;
  /** Queued for the slave's reader: completed lines (canonical mode) or one chunk. */
  input: Bytes[];
  /** Canonical mode: the line being typed. */
  inputPartial: Bytes;
  /** Written by the slave, not yet read from the master. */
  output: Bytes;
  /** Session whose controlling terminal it is, its foreground group, and the pids having it. */
  session?: number;
  foreground?: number;
  controlling?: number[];
}

export interface TtyRecord extends RecordBase {
  kind: 'tty';
  id: number;
  type: 'pty-master' | 'pty-slave' | 'console';
  /** N of /dev/pts/N. */
  index: number;
  /** Since 1.1: id of the pty record (a restorer refuses a terminal without it). */
  pty?: number;
  path: string;
  flags: number;
}

// ---------------------------------------------------------------- host

export interface NetconfigRecord extends RecordBase {
  kind: 'netconfig';
  /** `ip -j link`, `ip -j addr`, `ip -j route` and `nft -j list ruleset` output, parsed. */
  links: unknown[];
  addresses: unknown[];
  routes: unknown[];
  nftables: unknown;
}

export type ImageRecordV1 =
  | ProcessRecord | CredentialsRecord | ThreadRecord | MemoryAreaRecord | PagesRecord | FileRecord | PipeRecord
  | PipeEndRecord | FdRecord | SignalActionsRecord | SignalsPendingRecord | ItimersRecord | PosixTimerRecord
  | ClocksRecord | TcpRecord | UdpRecord | UnixRecord | EpollRecord | EventfdRecord | TimerfdRecord
  | SignalfdRecord | InotifyRecord | PtyRecord | TtyRecord | NetconfigRecord;

export type RecordKind = ImageRecordV1['kind'];

export const RECORD_KINDS: readonly RecordKind[] = [
  'process', 'credentials', 'thread', 'memory-area', 'pages', 'file', 'pipe', 'pipe-end', 'fd', 'signal-actions',
  'signals-pending', 'itimers', 'posix-timer', 'clocks', 'tcp', 'udp', 'unix', 'epoll', 'eventfd', 'timerfd',
  'signalfd', 'inotify', 'pty', 'tty', 'netconfig',
];

/** Kinds whose records own an `id` that fd records (and others) refer to. */
export const OBJECT_KINDS: readonly RecordKind[] = [
  'file', 'pipe', 'pipe-end', 'tcp', 'udp', 'unix', 'epoll', 'eventfd', 'timerfd', 'signalfd', 'inotify', 'pty', 'tty',
];

/** Record fields whose byte strings are payloads: never held in memory by the reader. */
export const PAYLOAD_FIELDS: Readonly<Record<string, string>> = { pages: 'data', file: 'contents' };
