// x86_64 system call numbers (the user-space ABI, arch/x86/entry/syscalls/syscall_64.tbl).
export const SYS = {
  read: 0, write: 1, open: 2, close: 3, lseek: 8, mmap: 9, mprotect: 10, munmap: 11, brk: 12,
  rt_sigaction: 13, rt_sigprocmask: 14, pread64: 17, madvise: 28, dup2: 33, pause: 34, getitimer: 36,
  setitimer: 38, getpid: 39, socket: 41, exit: 60, kill: 62, fcntl: 72, fchdir: 81, umask: 95,
  getrlimit: 97, setpgid: 109, setsid: 112, setgroups: 116, setresuid: 117, setresgid: 119,
  getpgid: 121, setfsuid: 122, setfsgid: 123, getsid: 124, capset: 126, rt_sigqueueinfo: 129,
  sigaltstack: 131, personality: 135, prctl: 157, arch_prctl: 158, setrlimit: 160, setpriority: 141, sched_setscheduler: 144, chroot: 161,
  gettid: 186, tkill: 200, futex: 202, set_tid_address: 218, timer_create: 222, timer_settime: 223,
  timer_gettime: 224, timer_getoverrun: 225, clock_gettime: 228, exit_group: 231, tgkill: 234,
  openat: 257, set_robust_list: 273, get_robust_list: 274, dup3: 292, rt_tgsigqueueinfo: 297,
  prlimit64: 302, setns: 308, rseq: 334, pidfd_open: 434, clone3: 435, pidfd_getfd: 438, close_range: 436,
} as const;

export const PROT = { NONE: 0, READ: 1, WRITE: 2, EXEC: 4 } as const;
export const MAP = { SHARED: 1, PRIVATE: 2, FIXED: 0x10, ANONYMOUS: 0x20, GROWSDOWN: 0x100, NORESERVE: 0x4000, FIXED_NOREPLACE: 0x100000 } as const;
export const O = { RDONLY: 0, WRONLY: 1, RDWR: 2, CREAT: 0o100, EXCL: 0o200, NOCTTY: 0o400, TRUNC: 0o1000, APPEND: 0o2000, NONBLOCK: 0o4000, DIRECT: 0o40000, DIRECTORY: 0o200000, CLOEXEC: 0o2000000, PATH: 0o10000000 } as const;
export const PR = { SET_MM: 35, SET_MM_MAP: 14, SET_MM_MAP_SIZE: 15, GET_TID_ADDRESS: 40, SET_NAME: 15, GET_NO_NEW_PRIVS: 39, SET_NO_NEW_PRIVS: 38, SET_SECUREBITS: 28, GET_SECUREBITS: 27, CAP_AMBIENT: 47, CAP_AMBIENT_RAISE: 2, CAPBSET_DROP: 24, SET_KEEPCAPS: 8, GET_TIMERSLACK: 30, SET_TIMERSLACK: 29, GET_CHILD_SUBREAPER: 37, SET_CHILD_SUBREAPER: 36, GET_THP_DISABLE: 42, SET_THP_DISABLE: 41 } as const;
export const CLONE = { VM: 0x100, FS: 0x200, FILES: 0x400, SIGHAND: 0x800, PARENT: 0x8000, THREAD: 0x10000, SYSVSEM: 0x40000, SETTLS: 0x80000, PARENT_SETTID: 0x100000, CHILD_CLEARTID: 0x200000 } as const;
export const ARCH = { SET_FS: 0x1002, SET_GS: 0x1001 } as const;

/** Kernel-internal restart codes a stopped thread may show in rax (never seen by programs). */
export const ERESTART = { SYS: 512, NOINTR: 513, NOHAND: 514, RESTARTBLOCK: 516 } as const;

export const SIG = { HUP: 1, INT: 2, KILL: 9, USR1: 10, SEGV: 11, USR2: 12, ALRM: 14, TERM: 15, CHLD: 17, CONT: 18, STOP: 19, TRAP: 5 } as const;
