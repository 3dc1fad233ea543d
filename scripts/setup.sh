#!/usr/bin/env bash
# One-stop setup for a fresh Debian 12 machine (root): system packages, npm packages,
# native core, TypeScript build. Idempotent and quick when everything is already there.
set -euo pipefail
cd "$(dirname "$0")/.."

# command -> Debian package that provides it
declare -A NEED=(
  [gcc]=gcc [make]=make [cc]=gcc
  [qemu-system-x86_64]=qemu-system-x86 [kexec]=kexec-tools
  [busybox]=busybox-static [nft]=nftables [ip]=iproute2
  [cpio]=cpio [zstd]=zstd [xz]=xz-utils [python3]=python3
  [redis-server]=redis-server [redis-cli]=redis-tools [nginx]=nginx
  [gzip]=gzip [sha256sum]=coreutils [setsid]=util-linux [curl]=curl
  [ss]=iproute2 [strace]=strace [dpkg-deb]=dpkg
  [depmod]=kmod [setpriv]=util-linux [flock]=util-linux [mke2fs]=e2fsprogs
  [debootstrap]=debootstrap
)
missing=()
for cmd in "${!NEED[@]}"; do
  command -v "$cmd" >/dev/null 2>&1 || missing+=("${NEED[$cmd]}")
done
# libc static archive for the static helper programs
[ -f /usr/lib/x86_64-linux-gnu/libc.a ] || missing+=(libc6-dev)
if [ ${#missing[@]} -gt 0 ]; then
  mapfile -t missing < <(printf '%s\n' "${missing[@]}" | sort -u)
  echo "setup: installing ${missing[*]}" >&2
  if [ "$(id -u)" != 0 ]; then echo "setup: need root to install system packages" >&2; exit 1; fi
  export DEBIAN_FRONTEND=noninteractive
  apt-get update -qq
  # Services shipped by these packages must not start here: tests start their own.
  printf '#!/bin/sh\nexit 101\n' > /usr/sbin/policy-rc.d && chmod +x /usr/sbin/policy-rc.d
  apt-get install -y -qq --no-install-recommends "${missing[@]}" >/dev/null
  rm -f /usr/sbin/policy-rc.d
fi

if [ ! -d node_modules ] || [ package-lock.json -nt node_modules/.package-lock.json ]; then
  npm ci --no-audit --no-fund --loglevel=error
fi

bash scripts/build.sh
