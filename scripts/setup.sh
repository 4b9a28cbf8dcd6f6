# Sourced by scripts/test, scripts/tessera and .ci/run. Installs what a fresh machine lacks for
# Tessera's build:
#
# - Rust: the toolchain must already be installed (rustup); this script only finds it.
# - RocksDB: Tessera links the system library (Debian's librocksdb-dev, RocksDB 7.8), so no
#   build compiles RocksDB's C++ (about 30 minutes on 2 cores). Where no system RocksDB exists,
#   the rocksdb crate compiles its bundled copy instead.
# - libclang: bindgen, used by the rocksdb crate, needs it.

tessera_root="$(cd "$(dirname "${BASH_SOURCE[0]}")/.." && pwd)"

tessera_setup() {
  if ! command -v cargo >/dev/null 2>&1 && [ -x "$HOME/.cargo/bin/cargo" ]; then
    export PATH="$HOME/.cargo/bin:$PATH"
  fi
  if ! command -v cargo >/dev/null 2>&1; then
    echo "tessera: no Rust toolchain found; install Rust 1.89 or newer with rustup first" >&2
    return 1
  fi

  if command -v dpkg >/dev/null 2>&1; then
    local missing=() pkg
    for pkg in libclang-dev librocksdb-dev; do
      dpkg -s "$pkg" >/dev/null 2>&1 || missing+=("$pkg")
    done
    if [ "${#missing[@]}" -gt 0 ]; then
      echo "tessera: installing ${missing[*]} (RocksDB and its bindings)" >&2
      local sudo=""
      [ "$(id -u)" -eq 0 ] || sudo="sudo"
      $sudo env DEBIAN_FRONTEND=noninteractive apt-get update -qq >&2
      $sudo env DEBIAN_FRONTEND=noninteractive apt-get install -y -qq "${missing[@]}" >&2
    fi
  fi

  if [ -z "${ROCKSDB_LIB_DIR:-}" ]; then
    local lib
    # awk reads to the end: exiting early would kill ldconfig with SIGPIPE, and under
    # `set -o pipefail` (CI) that fails the whole script.
    lib="$(ldconfig -p 2>/dev/null | awk '/librocksdb\.so / && !found { print $NF; found = 1 }')"
    if [ -n "$lib" ]; then
      export ROCKSDB_LIB_DIR="$(dirname "$lib")"
    fi
  fi
}

tessera_setup
