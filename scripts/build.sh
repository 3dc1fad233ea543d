#!/usr/bin/env bash
# Builds the native core (gcc -Wall -Werror), the test targets and the TypeScript.
set -euo pipefail
cd "$(dirname "$0")/.."
make -s -C native
if [ -f test/targets/Makefile ]; then make -s -C test/targets; fi
npx tsc -p tsconfig.json
