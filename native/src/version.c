#include "handoff.h"

/* ABI version of this library; src/native checks it so a stale build is refused. */
HND_EXPORT int hnd_abi_version(void) { return 1; }
