/* libhandoff: exported functions are prefixed hnd_, return >= 0 on success or -errno. */
#ifndef HANDOFF_H
#define HANDOFF_H
#include <stdint.h>
#define HND_EXPORT __attribute__((visibility("default")))
#endif
