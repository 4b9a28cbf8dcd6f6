# Sourced by scripts/test, scripts/tessera and .ci/run. Installs what a fresh machine lacks for
# Tessera's build and points the build at a cached RocksDB when one exists.
#
# - Rust: the toolchain must already be installed (rustup); this script only finds it.
# - libclang: bindgen (used by the rocksdb crate) needs it, and a fresh Debian machine lacks it.
# - RocksDB: its C++ is most of a clean build (about 30 minutes on 2 cores). After the first
#   build, scripts/test copies librocksdb.a to ~/.cache/tessera, and later builds link it.

tessera_root="$(cd "$(dirname "${BASH_SOURCE[0]}")/.." && pwd)"
tessera_cache="${TESSERA_CACHE:-$HOME/.cache/tessera}"

tessera_setup() {
  if ! command -v cargo >/dev/null 2>&1 && [ -x "$HOME/.cargo/bin/cargo" ]; then
    export PATH="$HOME/.cargo/bin:$PATH"
  fi
  if ! command -v cargo >/dev/null 2>&1; then
    echo "tessera: no Rust toolchain found; install Rust 1.88 or newer with rustup first" >&2
    return 1
  fi

  if command -v dpkg >/dev/null 2>&1 && ! dpkg -s libclang-dev >/dev/null 2>&1; then
    echo "tessera: installing libclang-dev (needed to build RocksDB's bindings)" >&2
    local sudo=""
    [ "$(id -u)" -eq 0 ] || sudo="sudo"
    $sudo env DEBIAN_FRONTEND=noninteractive apt-get update -qq >&2
    $sudo env DEBIAN_FRONTEND=noninteractive apt-get install -y -qq libclang-dev >&2
  fi

  local version
  version="$(tessera_rocksdb_version)"
  if [ -n "$version" ] && [ -f "$tessera_cache/rocksdb-$version/librocksdb.a" ] \
     && [ -z "${ROCKSDB_LIB_DIR:-}" ]; then
    export ROCKSDB_LIB_DIR="$tessera_cache/rocksdb-$version" ROCKSDB_STATIC=1
  fi
}

# The librocksdb-sys version in Cargo.lock, or nothing if the workspace does not use RocksDB.
tessera_rocksdb_version() {
  awk '/^name = "librocksdb-sys"$/ { getline; gsub(/"/, "", $3); print $3 }' \
    "$tessera_root/Cargo.lock" 2>/dev/null | head -n 1
}

# Keeps the librocksdb.a of the last build for every later build on this machine.
tessera_cache_rocksdb() {
  local version target lib
  version="$(tessera_rocksdb_version)"
  [ -n "$version" ] || return 0
  [ -f "$tessera_cache/rocksdb-$version/librocksdb.a" ] && return 0
  target="${CARGO_TARGET_DIR:-$tessera_root/target}"
  lib="$(ls -t "$target"/*/build/librocksdb-sys-*/out/librocksdb.a 2>/dev/null | head -n 1)"
  [ -n "$lib" ] || return 0
  mkdir -p "$tessera_cache/rocksdb-$version"
  cp "$lib" "$tessera_cache/rocksdb-$version/librocksdb.a.tmp"
  mv "$tessera_cache/rocksdb-$version/librocksdb.a.tmp" "$tessera_cache/rocksdb-$version/librocksdb.a"
  echo "tessera: cached RocksDB in $tessera_cache/rocksdb-$version" >&2
}

tessera_setup
