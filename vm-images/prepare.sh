#!/usr/bin/env bash
# Makes sure the VM test images exist: fetches missing kernels, rebuilds the initramfs if
# an input changed; with --systemd also the systemd guest (build-systemd-rootfs.sh).
# Serialized with a lock, as several test files may call it at once.
set -euo pipefail
here="$(cd "$(dirname "$0")" && pwd)"
mkdir -p "$here/cache"
exec 9>"$here/cache/.prepare.lock"
flock 9
bash "$here/fetch-kernels.sh"
bash "$here/build-initramfs.sh"
if [ "${1:-}" = --systemd ]; then bash "$here/build-systemd-rootfs.sh"; fi
