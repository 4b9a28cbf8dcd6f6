# Shared by the bench-* scripts: a release build of `tessera`, a work directory that is removed
# on exit, and a network of storage node processes on 127.0.0.1. Source it, don't run it.
source "$(dirname "${BASH_SOURCE[0]}")/setup.sh"

cargo build --quiet --release --locked --manifest-path "$tessera_root/Cargo.toml" -p tessera-cli
bin="${CARGO_TARGET_DIR:-$tessera_root/target}/release/tessera"
source "$tessera_root/scripts/network-lib.sh"

now() { date +%s.%N; }
elapsed() { awk -v a="$1" -v b="$2" 'BEGIN { print b - a }'; }
mbps() { awk -v b="$1" -v s="$2" 'BEGIN { printf "%.0f", b / 1e6 / s }'; }
ratio() { awk -v a="$1" -v b="$2" 'BEGIN { printf "%.2f", a / b }'; }
peak_kib() { awk '/VmHWM/ { print $2 }' "/proc/$1/status"; }
