#!/usr/bin/env bash
# Builds the guest images into vm-images/cache/images/:
#   initrd.img  zstd-compressed cpio: busybox, kexec, nft, node + libraries, the project
#               under /opt/handoff, the modules of every fetched kernel, /init.
#   media.img   uncompressed cpio used as a read-only virtio disk (/dev/vda in the guest):
#               initrd.img, vmlinuz-<release> of every kernel, series/<series> -> release.
#               The guest extracts it (handoff-media) when it kexecs.
# Rebuilt only when an input changed (a digest of names, sizes and mtimes of all inputs).
set -euo pipefail
here="$(cd "$(dirname "$0")" && pwd)"
project="$(dirname "$here")"
cache="$here/cache"
kernels="$cache/kernels"
out="$cache/images"
stage="$cache/stage"

[ "$(id -u)" = 0 ] || { echo "build-initramfs: must run as root (device nodes, file owners)" >&2; exit 1; }
for cmd in busybox kexec nft node cpio zstd gcc; do
  command -v "$cmd" >/dev/null || { echo "build-initramfs: $cmd missing (run scripts/setup.sh)" >&2; exit 1; }
done
ls "$kernels"/*/.complete >/dev/null 2>&1 || { echo "build-initramfs: no kernels (run fetch-kernels.sh)" >&2; exit 1; }

NODE="$(readlink -f "$(command -v node)")"
BINARIES=("$(readlink -f "$(command -v busybox)")" "$(command -v kexec)" "$(command -v nft)" "$NODE")
# shellcheck source=vm-images/common.sh
. "$here/common.sh"
# The project's run-time files (node_modules: only the production dependency tree).
project_paths package.json bin dist native/build formats test/targets/build
DIGEST_FILES=("$here/build-initramfs.sh" "$here/common.sh" "$here"/guest/*)
STAT_FILES=("${BINARIES[@]}")

digest="$(inputs_digest)"
if [ -f "$out/initrd.img" ] && [ -f "$out/media.img" ] && [ "$(cat "$out/digest" 2>/dev/null)" = "$digest" ]; then
  echo "build-initramfs: up to date" >&2
  exit 0
fi
started=$(date +%s.%N)

rm -rf "$stage" && mkdir -p "$stage"/{bin,sbin,usr/bin,usr/sbin,lib,lib64,etc,root,proc,sys,dev,tmp,run,boot,opt/handoff}
cd "$stage"

# busybox-static: one binary, applets as symlinks.
cp "$(readlink -f "$(command -v busybox)")" bin/busybox
for applet in $(bin/busybox --list); do
  [ -e "bin/$applet" ] || ln -s busybox "bin/$applet"
done
cp "$(command -v kexec)" usr/sbin/kexec && copy_libs "$(command -v kexec)"
cp "$(command -v nft)" usr/sbin/nft && copy_libs "$(command -v nft)"
cp "$NODE" usr/bin/node && copy_libs "$NODE"

# The project. Native add-ons and libhandoff.so bring their libraries too.
install_project
# Scripts start with #!/usr/bin/env node; busybox puts its applets in /bin only.
[ -e usr/bin/env ] || ln -s /bin/busybox usr/bin/env

# Kernel modules of every kernel, and which series each release belongs to.
for k in "$kernels"/*/; do
  release="$(cat "$k/release")"
  mkdir -p "lib/modules/$release"
  cp "$k"/modules/*.ko "$k/modules/load-order" "lib/modules/$release/" 2>/dev/null || true
done

cp "$here/guest/init" init
cp "$here/guest/handoff-media" "$here/guest/handoff-kexec" usr/bin/
# The workload of the handoff tests and demo (static: no libraries to carry).
gcc -O2 -Wall -Wextra -Werror -static -o usr/bin/handoff-workload "$here/guest/workload.c"
# The resume hook `handoff prepare` installs on systems without systemd. The guest's root
# file system is this initramfs, rebuilt on every boot, so it is installed here already
# (it does nothing unless handoff.resume= is on the kernel command line).
mkdir -p etc/init.d
node --input-type=module -e "import { initScript } from '$project/dist/src/handoff/hooks.js'; process.stdout.write(initScript({ node: '/usr/bin/node', bin: '/opt/handoff/bin/handoff.js' }))" > etc/init.d/handoff-resume
chmod 755 etc/init.d/handoff-resume
printf 'root:x:0:0:root:/root:/bin/sh\nnobody:x:65534:65534:nobody:/nonexistent:/bin/false\n' > etc/passwd
printf 'root:x:0:\nnogroup:x:65534:\n' > etc/group
printf '127.0.0.1 localhost\n::1 localhost\n10.0.2.2 host\n' > etc/hosts
: > etc/fstab
mknod -m 600 dev/console c 5 1
mknod -m 666 dev/null c 1 3

mkdir -p "$out"
find . -mindepth 1 | LC_ALL=C sort | cpio -o -H newc --quiet -R 0:0 | zstd -q -T0 -6 > "$out/initrd.img.new"
# Pad to a whole 4 KiB: a virtio disk ends at a sector boundary, and the kernel skips
# zero padding after an initramfs archive.
truncate -s %4096 "$out/initrd.img.new"
mv "$out/initrd.img.new" "$out/initrd.img"

media="$cache/media-stage"
rm -rf "$media" && mkdir -p "$media/series"
ln "$out/initrd.img" "$media/initrd.img"
for k in "$kernels"/*/; do
  release="$(cat "$k/release")"
  ln "$k/vmlinuz" "$media/vmlinuz-$release"
  # The build configuration, where prepare's preflight looks for it (/boot/config-RELEASE).
  [ -f "$k/config" ] && ln "$k/config" "$media/config-$release"
  echo "$release" > "$media/series/$(basename "$k")"
done
(cd "$media" && find . -mindepth 1 | LC_ALL=C sort | cpio -o -H newc --quiet -R 0:0) > "$out/media.img.new"
truncate -s %4096 "$out/media.img.new"
mv "$out/media.img.new" "$out/media.img"
rm -rf "$media" "$stage"
echo "$digest" > "$out/digest"
echo "build-initramfs: initrd $(du -h "$out/initrd.img" | cut -f1), media $(du -h "$out/media.img" | cut -f1)," \
  "$(awk "BEGIN{printf \"%.1f\", $(date +%s.%N) - $started}") s" >&2
