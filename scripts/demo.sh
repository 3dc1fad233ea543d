#!/usr/bin/env bash
# npm run demo (after scripts/setup.sh): kernel images for the guests, then the demo driver.
# DEMO_FROM / DEMO_TO (5.10, 6.1, 6.12, 7) and DEMO_STORE (pmem, file) change the scenario.
set -euo pipefail
cd "$(dirname "$0")/.."
[ "$(id -u)" = 0 ] || { echo "demo: run as root (the guest images hold device nodes and root-owned files)" >&2; exit 1; }
bash vm-images/prepare.sh
exec node dist/scripts/demo.js
