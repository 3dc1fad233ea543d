/* libhandoff: exported functions are prefixed hnd_, return >= 0 on success or -errno. */
#ifndef HANDOFF_H
#define HANDOFF_H
#include <stdint.h>
#define HND_EXPORT __attribute__((visibility("default")))

/* Syscall numbers (x86_64) that older C library headers lack. */
#include <sys/syscall.h>
#ifndef SYS_pidfd_open
#define SYS_pidfd_open 434
#endif
#ifndef SYS_clone3
#define SYS_clone3 435
#endif
#ifndef SYS_pidfd_getfd
#define SYS_pidfd_getfd 438
#endif
#endif
