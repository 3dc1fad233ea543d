#!/usr/bin/env bash
# Benchmark against DESIGN.md section 10 (npm run bench). Builds the project and the bench's
# target program, then runs the driver (dist/scripts/bench.js); every option goes to it:
#   --size-mib N (2048)  --small-mib N (4)  --frozen-runs N (5)  --startup-runs N (10)
#   --dir DIR (/var/tmp: images on a real disk, not tmpfs)  --out DIR (results JSON)
#   --warm (keep the page cache; default drops it before each side)  --keep (keep images)
set -euo pipefail
cd "$(dirname "$0")/.."
if [ "$(id -u)" != 0 ]; then
  echo "bench: run as root (ptrace, /proc/sys/vm/drop_caches)" >&2
  exit 2
fi
bash scripts/build.sh
mkdir -p scripts/bench/build
gcc -O2 -Wall -Wextra -Werror -o scripts/bench/build/membench scripts/bench/membench.c
exec node dist/scripts/bench.js --membench scripts/bench/build/membench --reaper test/targets/build/reaper "$@"
