// Typed bindings for native/src/probe.c. Each probe returns 0 (or a positive fact, e.g. a
// size) when the feature really works, or -errno; interpretation lives in src/kernel/features.ts.
import { bind, T } from './lib.js';

export const probePtraceSeize = bind('hnd_probe_ptrace_seize', T.i32, []);
/** Size of a seized child's rseq area (0: none registered) or -errno. */
export const probePtraceRseq = bind('hnd_probe_ptrace_rseq', T.i32, []);
export const probePidfdOpen = bind('hnd_probe_pidfd_open', T.i32, []);
export const probePidfdGetfd = bind('hnd_probe_pidfd_getfd', T.i32, []);
/** The pid the child got (== want on success) or -errno; -EEXIST when `want` was taken meanwhile. */
export const probeClone3SetTid = bind('hnd_probe_clone3_set_tid', T.i32, [T.i32]);
export const probeTimens = bind('hnd_probe_timens', T.i32, []);
export const probeTcpRepair = bind('hnd_probe_tcp_repair', T.i32, [T.i32]);
/** -EINVAL: allowed; -EPERM: refused; -ENOSYS: not built in. Never loads anything. */
export const probeKexecLoad = bind('hnd_probe_kexec_load', T.i32, []);
/** -EBADF: allowed; -EPERM: refused; -ENOSYS: not built in. Never loads anything. */
export const probeKexecFileLoad = bind('hnd_probe_kexec_file_load', T.i32, []);
export const probeKcmp = bind('hnd_probe_kcmp', T.i32, []);
/** sizeof(struct prctl_mm_map) or -errno. */
export const probePrctlMmMap = bind('hnd_probe_prctl_mm_map', T.i32, []);
export const probeProcessVmReadv = bind('hnd_probe_process_vm_readv', T.i32, []);
export const pageSize = bind('hnd_page_size', T.i32, []);
/** Regions found (1: our stack page is present) or -errno; -ENOTTY before 6.7. */
export const probePagemapScan = bind('hnd_probe_pagemap_scan', T.i32, []);
