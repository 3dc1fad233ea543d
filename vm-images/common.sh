# Shared by build-initramfs.sh and build-systemd-rootfs.sh (sourced). Both put the project
# and node into a guest root at $stage and rebuild only when an input changed. Needs
# $project, $kernels and $stage set.

# project_paths PATH...: PROJECT_PATHS = the given project paths that exist, plus the
# production dependency tree of node_modules (what the tool needs at run time).
project_paths() {
  local p
  PROJECT_PATHS=()
  for p in "$@" $(cd "$project" && npm ls --omit=dev --parseable --all 2>/dev/null | tail -n +2 | sed "s|^$project/||"); do
    [ -e "$project/$p" ] && PROJECT_PATHS+=("$p")
  done
  return 0
}

# inputs_digest: one digest of what decides whether an image is up to date: $DIGEST_EXTRA, the
# contents of DIGEST_FILES, the names, sizes and mtimes of STAT_FILES, of the kernels and of
# the project paths.
inputs_digest() {
  local p
  {
    echo "${DIGEST_EXTRA:-}"
    sha256sum "${DIGEST_FILES[@]}"
    stat -L -c '%n %s %Y' "${STAT_FILES[@]}"
    find "$kernels" -type f -printf '%p %s %T@\n'
    for p in "${PROJECT_PATHS[@]}"; do find -L "$project/$p" -type f -printf '%p %s %T@\n'; done
  } | LC_ALL=C sort | sha256sum | cut -d' ' -f1
}

# copy_libs BINARY: the shared libraries (and loader) of BINARY into the guest root at their
# own paths, unless it has them already.
copy_libs() {
  { ldd "$1" 2>/dev/null || true; } | { grep -oE '/[^ ]+\.so[^ ]*' || true; } | while read -r lib; do
    # (ldd on a musl add-on prints error lines that look like paths: skip what is not a file.)
    [ -e "$lib" ] || continue
    [ -e "$stage$lib" ] || cp -L --parents "$lib" "$stage/"
  done
}

# install_project: the project paths under $stage/opt/handoff with the libraries of its
# native parts, without other platforms' prebuilt add-ons (they only cost space), and
# `handoff` on the PATH.
install_project() {
  local p so
  for p in "${PROJECT_PATHS[@]}"; do
    mkdir -p "$stage/opt/handoff/$(dirname "$p")"
    cp -a "$project/$p" "$stage/opt/handoff/$(dirname "$p")/"
  done
  find "$stage/opt/handoff" -type f \( -name '*.node' -o -name '*.so' \) | while read -r so; do copy_libs "$so"; done
  find "$stage/opt/handoff/node_modules" -type d -path '*prebuilds/*' ! -name 'linux-x64*' -prune -exec rm -rf {} + 2>/dev/null || true
  mkdir -p "$stage/usr/local/bin"
  ln -sf /opt/handoff/bin/handoff.js "$stage/usr/local/bin/handoff"
}
