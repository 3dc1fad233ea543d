#!/usr/bin/env bash
# Fetches the Debian cloud kernels of the test matrix into vm-images/cache/kernels/<series>/:
#   vmlinuz, release (uname -r), modules/*.ko (decompressed), modules/load-order.
# Uses an apt configuration of its own (sources, lists, cache under vm-images/cache/apt),
# never the machine's. A series already extracted is not fetched again.
set -euo pipefail
here="$(cd "$(dirname "$0")" && pwd)"
cache="$here/cache"
apt_dir="$cache/apt"
kernels="$cache/kernels"

# series -> Debian suite whose linux-image-cloud-amd64 meta package picks the kernel
declare -A SUITE=([5.10]=bullseye [6.1]=bookworm [6.12]=trixie [7]=forky)
SERIES_ORDER=(5.10 6.1 6.12 7)
[ $# -gt 0 ] && SERIES_ORDER=("$@")

# Modules the guest needs, with their dependencies resolved from modules.dep.
# A name that is built into a kernel (modules.builtin) or absent there is skipped.
WANT_MODULES=(
  virtio virtio_ring virtio_pci virtio_net virtio_blk virtio_console virtio_rng
  failover net_failover
  nf_tables nft_ct nf_conntrack nf_defrag_ipv4 nf_defrag_ipv6 nf_reject_ipv4 nf_reject_ipv6
  nft_reject nft_reject_inet nft_counter nft_limit nf_tables_inet
  libnvdimm nd_pmem nd_e820 nd_btt dax_pmem
  9p 9pnet 9pnet_virtio netfs fscache
  qemu_fw_cfg ext4 crc32c_generic
)

need_fetch=()
for s in "${SERIES_ORDER[@]}"; do
  [ -n "${SUITE[$s]:-}" ] || { echo "fetch-kernels: unknown series $s" >&2; exit 2; }
  [ -f "$kernels/$s/.complete" ] || need_fetch+=("$s")
done
if [ ${#need_fetch[@]} -eq 0 ]; then
  echo "fetch-kernels: all cached (${SERIES_ORDER[*]})" >&2
  exit 0
fi

# Reuse the Debian mirror host this machine already uses.
mirror="$(grep -rhv '^[[:space:]]*#' /etc/apt/sources.list /etc/apt/sources.list.d/ 2>/dev/null \
  | grep -oE 'https?://[^ ]+/debian/?( |$)' | head -1 | tr -d ' ' || true)"
mirror="${mirror%/}"
[ -n "$mirror" ] || mirror="http://deb.debian.org/debian"
keyring=/usr/share/keyrings/debian-archive-keyring.gpg

mkdir -p "$apt_dir"/{lists/partial,cache/archives/partial,parts} "$cache/debs"
: > "$apt_dir/sources.list.new"
# Always every suite of the matrix, so fetching one series does not invalidate the lists.
for suite in "${SUITE[@]}"; do
  echo "deb [signed-by=$keyring] $mirror $suite main" >> "$apt_dir/sources.list.new"
done
sort -u "$apt_dir/sources.list.new" > "$apt_dir/sources.list.sorted"
rm "$apt_dir/sources.list.new"
APT_OPTS=(
  -o "Dir::Etc::sourcelist=$apt_dir/sources.list"
  -o "Dir::Etc::sourceparts=$apt_dir/parts"
  -o "Dir::State::Lists=$apt_dir/lists"
  -o "Dir::Cache=$apt_dir/cache"
  -o "APT::Architectures::=amd64"
  -o "Acquire::Languages=none"
  -o "Debug::NoLocking=1"
  -o "APT::Sandbox::User=root"
)
# Refresh the indexes when the suite list changed or they are older than a day.
if ! cmp -s "$apt_dir/sources.list.sorted" "$apt_dir/sources.list" 2>/dev/null \
   || [ -z "$(find "$apt_dir/lists" -maxdepth 1 -name '*InRelease' -mmin -1440 2>/dev/null | head -1)" ]; then
  mv "$apt_dir/sources.list.sorted" "$apt_dir/sources.list"
  echo "fetch-kernels: apt-get update ($mirror)" >&2
  apt-get "${APT_OPTS[@]}" update -qq
else
  rm "$apt_dir/sources.list.sorted"
fi

# Decompresses one module file (kernels 6.x in trixie+ ship .ko.xz/.ko.zst) to dest.
decompress_module() {
  case "$1" in
    *.ko.xz) xz -dc "$1" > "$2" ;;
    *.ko.zst) zstd -qdc "$1" > "$2" ;;
    *.ko.gz) gzip -dc "$1" > "$2" ;;
    *) cp "$1" "$2" ;;
  esac
}

for s in "${need_fetch[@]}"; do
  suite="${SUITE[$s]}"
  # The meta package's version in this suite, then the ABI package(s) it depends on.
  meta_uri="$(apt-get "${APT_OPTS[@]}" download --print-uris "linux-image-cloud-amd64/$suite" | head -1)"
  meta_ver="$(sed -E "s/.*linux-image-cloud-amd64_([^_]+)_amd64\.deb.*/\1/" <<<"$meta_uri")"
  meta_ver="${meta_ver//%3a/:}"
  deps="$(apt-cache "${APT_OPTS[@]}" show "linux-image-cloud-amd64=$meta_ver" | sed -n 's/^Depends: //p' | head -1)"
  image_pkg="$(grep -oE 'linux-image-[^ ,]+-cloud-amd64' <<<"$deps" | grep -v '^linux-image-cloud-amd64$' | head -1)"
  [ -n "$image_pkg" ] || { echo "fetch-kernels: no image package for $suite ($deps)" >&2; exit 1; }
  abi="${image_pkg#linux-image-}"
  # Since 6.19 the image package is split: the kernel in linux-binary-ABI, modules in linux-modules-ABI.
  img_deps="$(apt-cache "${APT_OPTS[@]}" show "$image_pkg" | sed -n 's/^Depends: //p' | head -1)"
  pkgs=("$image_pkg")
  for extra in "linux-binary-$abi" "linux-modules-$abi"; do
    grep -q "$extra" <<<"$img_deps" && pkgs+=("$extra")
  done
  echo "fetch-kernels: $s <- $suite: ${pkgs[*]}" >&2
  debs="$cache/debs/$s"
  rm -rf "$debs" && mkdir -p "$debs"
  (cd "$debs" && apt-get "${APT_OPTS[@]}" download -qq "${pkgs[@]}")
  root="$debs/root"
  mkdir -p "$root"
  for deb in "$debs"/*.deb; do dpkg-deb -x "$deb" "$root"; done

  out="$kernels/$s"
  rm -rf "$out" && mkdir -p "$out/modules"
  # Older packages put the kernel at /boot/vmlinuz-REL, newer (6.19+) at /usr/lib/modules/REL/vmlinuz.
  vmlinuz="$(ls "$root"/boot/vmlinuz-* "$root"/usr/lib/modules/*/vmlinuz 2>/dev/null | head -1 || true)"
  [ -n "$vmlinuz" ] || { echo "fetch-kernels: no vmlinuz in ${pkgs[*]}" >&2; exit 1; }
  case "$vmlinuz" in
    */boot/vmlinuz-*) release="${vmlinuz##*/vmlinuz-}" ;;
    *) release="$(basename "$(dirname "$vmlinuz")")" ;;
  esac
  cp "$vmlinuz" "$out/vmlinuz"
  echo "$release" > "$out/release"
  cp "$root/boot/config-$release" "$out/config" 2>/dev/null \
    || cp "$root/usr/lib/modules/$release/config" "$out/config" 2>/dev/null || true
  moddir=""
  for d in "$root/lib/modules/$release" "$root/usr/lib/modules/$release"; do
    [ -f "$d/modules.dep" ] && moddir="$d"
  done
  if [ -z "$moddir" ]; then
    # Packages ship no modules.dep (postinst makes it): depmod -b wants BASE/lib/modules.
    [ -d "$root/usr/lib/modules" ] && [ ! -e "$root/lib" ] && ln -s usr/lib "$root/lib"
    # (Split 6.19+ packages lack modules.order/builtin: depmod's warnings about them are noise.)
    depmod -b "$root" "$release" 2> >(grep -v 'could not open modules' >&2)
    moddir="$root/lib/modules/$release"
    [ -f "$moddir/modules.dep" ] || moddir=""
  fi
  [ -n "$moddir" ] || { echo "fetch-kernels: no modules.dep for $release" >&2; exit 1; }
  # Resolve wanted names to files, dependencies first (modules.dep lists deps of each module).
  node - "$moddir" "${WANT_MODULES[@]}" > "$out/modules/load-order" <<'JS'
const fs = require('node:fs');
const [dir, ...want] = process.argv.slice(2);
const dep = new Map();
const byName = new Map();
const base = (p) => p.split('/').pop().replace(/\.ko(\.(xz|zst|gz))?$/, '').replace(/-/g, '_');
for (const line of fs.readFileSync(`${dir}/modules.dep`, 'utf8').split('\n')) {
  if (!line.includes(':')) continue;
  const [mod, rest] = line.split(':');
  dep.set(mod, rest.trim() ? rest.trim().split(/\s+/) : []);
  byName.set(base(mod), mod);
}
const order = [];
const seen = new Set();
const visit = (mod) => {
  if (seen.has(mod)) return;
  seen.add(mod);
  for (const d of dep.get(mod) ?? []) visit(d);
  order.push(mod);
};
for (const name of want) {
  const mod = byName.get(name.replace(/-/g, '_'));
  if (mod) visit(mod);
}
for (const mod of order) console.log(mod);
JS
  : > "$out/modules/load-order.names"
  while read -r rel; do
    name="$(basename "$rel")"; name="${name%%.ko*}"
    decompress_module "$moddir/$rel" "$out/modules/$name.ko"
    echo "$name" >> "$out/modules/load-order.names"
  done < "$out/modules/load-order"
  mv "$out/modules/load-order.names" "$out/modules/load-order"
  grep -hoE '[^/]+\.ko' "$moddir/modules.builtin" 2>/dev/null | sed 's/\.ko$//' > "$out/modules/builtin" || true
  rm -rf "$debs"
  touch "$out/.complete"
  echo "fetch-kernels: $s = $release ($(du -sh "$out" | cut -f1))" >&2
done
