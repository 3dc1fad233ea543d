#!/usr/bin/env bash
# Builds the systemd guest of test/vm/systemd.test.ts into vm-images/cache/systemd/:
#   rootfs/     Debian bookworm from debootstrap (minbase + systemd, udev, nftables, kexec-tools,
#               iproute2, procps). Slow (a minute or two, network): done once, kept as long as
#               its recipe (suite, mirror, packages, this file's ROOTFS_RECIPE) is unchanged.
#   initrd.img  busybox + the modules of every fetched kernel + systemd-guest/init: loads the
#               modules (virtio_blk is one in the Debian cloud kernels), mounts root=, then
#               switch_root to systemd.
#   disk.img    ext4 made with mkfs.ext4 -d (no loop mount) from rootfs/ plus node, the project
#               at /opt/handoff, handoff-workload, the test units (systemd-guest/), networkd
#               configuration, and /boot (every kernel, its config, initrd.img, series/<series>).
#               The guest boots it as /dev/vda (root=/dev/vda) with QEMU's snapshot=on, so every
#               run starts from the same image.
# initrd.img and disk.img are rebuilt when an input changed (names, sizes, mtimes), in seconds.
set -euo pipefail
here="$(cd "$(dirname "$0")" && pwd)"
project="$(dirname "$here")"
cache="$here/cache"
kernels="$cache/kernels"
out="$cache/systemd"
rootfs="$out/rootfs"

SUITE=bookworm
MIRROR="${HANDOFF_DEBIAN_MIRROR:-http://deb.debian.org/debian}"
PACKAGES=systemd,systemd-sysv,udev,kmod,nftables,kexec-tools,iproute2,procps
ROOTFS_RECIPE=1

[ "$(id -u)" = 0 ] || { echo "build-systemd-rootfs: must run as root (debootstrap, file owners)" >&2; exit 1; }
for cmd in debootstrap mke2fs busybox node cpio zstd gcc; do
  command -v "$cmd" >/dev/null || { echo "build-systemd-rootfs: $cmd missing (run scripts/setup.sh)" >&2; exit 1; }
done
ls "$kernels"/*/.complete >/dev/null 2>&1 || { echo "build-systemd-rootfs: no kernels (run fetch-kernels.sh)" >&2; exit 1; }
mkdir -p "$out"

# ---------------------------------------------------------------- 1. the Debian root (cached)
key="$(echo "$SUITE $MIRROR $PACKAGES $ROOTFS_RECIPE" | sha256sum | cut -d' ' -f1)"
if [ "$(cat "$rootfs/.handoff-key" 2>/dev/null)" != "$key" ]; then
  started=$(date +%s.%N)
  rm -rf "$rootfs" "$rootfs.new"
  debootstrap --variant=minbase --include="$PACKAGES" "$SUITE" "$rootfs.new" "$MIRROR" > "$out/debootstrap.log" 2>&1 \
    || { tail -30 "$out/debootstrap.log" >&2; echo "build-systemd-rootfs: debootstrap failed (log: $out/debootstrap.log)" >&2; exit 1; }
  chroot "$rootfs.new" apt-get clean
  rm -rf "$rootfs.new"/var/lib/apt/lists/* "$rootfs.new"/var/cache/apt/*.bin
  echo "$key" > "$rootfs.new/.handoff-key"
  mv "$rootfs.new" "$rootfs"
  echo "build-systemd-rootfs: debootstrap $SUITE: $(du -sxh "$rootfs" | cut -f1)," \
    "$(awk "BEGIN{printf \"%.1f\", $(date +%s.%N) - $started}") s" >&2
fi

# ---------------------------------------------------------------- 2. initrd.img and disk.img
NODE="$(readlink -f "$(command -v node)")"
# shellcheck source=vm-images/common.sh
. "$here/common.sh"
project_paths package.json bin dist native/build formats
DIGEST_EXTRA="$key"
DIGEST_FILES=("$here/build-systemd-rootfs.sh" "$here/common.sh" "$here"/systemd-guest/* "$here/guest/workload.c")
STAT_FILES=("$NODE" "$(readlink -f "$(command -v busybox)")")
digest="$(inputs_digest)"
if [ -f "$out/disk.img" ] && [ -f "$out/initrd.img" ] && [ "$(cat "$out/digest" 2>/dev/null)" = "$digest" ]; then
  echo "build-systemd-rootfs: up to date" >&2
  exit 0
fi
started=$(date +%s.%N)

# The initramfs: busybox and modules only.
istage="$out/initrd-stage"
rm -rf "$istage" && mkdir -p "$istage"/{bin,sbin,dev,proc,sys,tmp,newroot}
cp "$(readlink -f "$(command -v busybox)")" "$istage/bin/busybox"
for applet in $("$istage/bin/busybox" --list); do
  [ -e "$istage/bin/$applet" ] || ln -s busybox "$istage/bin/$applet"
done
for k in "$kernels"/*/; do
  release="$(cat "$k/release")"
  mkdir -p "$istage/lib/modules/$release"
  cp "$k"/modules/*.ko "$k/modules/load-order" "$istage/lib/modules/$release/" 2>/dev/null || true
done
cp "$here/systemd-guest/init" "$istage/init"
mknod -m 600 "$istage/dev/console" c 5 1
(cd "$istage" && find . -mindepth 1 | LC_ALL=C sort | cpio -o -H newc --quiet -R 0:0 | zstd -q -T0 -6) > "$out/initrd.img.new"
mv "$out/initrd.img.new" "$out/initrd.img"
rm -rf "$istage"

# The root file system: hard links to the cached rootfs (fast), with everything we change
# written as new files (put), never edited in place, so the cache stays pristine.
stage="$out/stage"
rm -rf "$stage"
cp -al "$rootfs" "$stage"
rm -f "$stage/.handoff-key"
put() { # put PATH [MODE] < content
  mkdir -p "$(dirname "$stage$1")"
  rm -f "$stage$1"
  cat > "$stage$1"
  chmod "${2:-644}" "$stage$1"
}
put /usr/bin/node 755 < "$NODE"
copy_libs "$NODE"
install_project
gcc -O2 -Wall -Wextra -Werror -static -o "$stage/usr/local/bin/handoff-workload" "$here/guest/workload.c"

put /usr/local/sbin/handoff-test-driver 755 < "$here/systemd-guest/handoff-test-driver"
put /etc/systemd/system/handoff-test-driver.service < "$here/systemd-guest/handoff-test-driver.service"
put /etc/systemd/system/handoff-test-workload.service < "$here/systemd-guest/handoff-test-workload.service"
put /etc/systemd/network/10-eth.network < "$here/systemd-guest/10-eth.network"
mkdir -p "$stage/var/lib/handoff"
ln -s /etc/systemd/system/handoff-test-driver.service "$stage/etc/systemd/system/multi-user.target.wants/"
mkdir -p "$stage/etc/systemd/system/sockets.target.wants"
ln -s /lib/systemd/system/systemd-networkd.service "$stage/etc/systemd/system/multi-user.target.wants/"
ln -s /lib/systemd/system/systemd-networkd.socket "$stage/etc/systemd/system/sockets.target.wants/"
# What a test boot does not need and TCG makes slow; kexec-load would replace the staged kernel
# with /vmlinuz on the way down (LOAD_KEXEC=true is Debian's default).
for unit in getty.target serial-getty@ttyS0.service apt-daily.timer apt-daily-upgrade.timer dpkg-db-backup.timer \
    e2scrub_all.timer e2scrub_reap.service fstrim.timer kexec-load.service kexec.service systemd-pstore.service \
    proc-sys-fs-binfmt_misc.automount; do
  rm -f "$stage/etc/systemd/system/$unit"
  ln -s /dev/null "$stage/etc/systemd/system/$unit"
done
sed 's/^LOAD_KEXEC=.*/LOAD_KEXEC=false/' "$rootfs/etc/default/kexec" | put /etc/default/kexec
printf '[Journal]\nStorage=volatile\n' | put /etc/systemd/journald.conf.d/handoff.conf
echo guest | put /etc/hostname
printf '127.0.0.1 localhost guest\n::1 localhost\n10.0.2.2 host\n' | put /etc/hosts
: | put /etc/fstab

# /boot: every kernel (with its configuration, where prepare's preflight looks) and the initramfs.
mkdir -p "$stage/boot/series"
cp "$out/initrd.img" "$stage/boot/initrd.img"
for k in "$kernels"/*/; do
  release="$(cat "$k/release")"
  cp "$k/vmlinuz" "$stage/boot/vmlinuz-$release"
  [ -f "$k/config" ] && cp "$k/config" "$stage/boot/config-$release"
  echo "$release" > "$stage/boot/series/$(basename "$k")"
done

# Room for the image store and logs; features every kernel of the matrix mounts.
size_mib=$(( $(du -sxm "$stage" | cut -f1) + 768 ))
rm -f "$out/disk.img.new"; truncate -s "${size_mib}M" "$out/disk.img.new"
mke2fs -q -F -t ext4 -O ^orphan_file,^metadata_csum_seed -L handoff-root -d "$stage" "$out/disk.img.new" "${size_mib}M"
mv "$out/disk.img.new" "$out/disk.img"
rm -rf "$stage"
echo "$digest" > "$out/digest"
echo "build-systemd-rootfs: disk $(du -h --apparent-size "$out/disk.img" | cut -f1) ($(du -h "$out/disk.img" | cut -f1) used)," \
  "initrd $(du -h "$out/initrd.img" | cut -f1), $(awk "BEGIN{printf \"%.1f\", $(date +%s.%N) - $started}") s" >&2
