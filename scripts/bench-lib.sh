# Shared by the bench-* scripts: release builds of `tessera` and the examples, a work
# directory that is removed on exit, a network of storage node processes on 127.0.0.1, and
# bench-util.sh's helpers. Source it, don't run it.
#
# TESSERA_BIN (the tessera binary) and TESSERA_EXAMPLES (the folder of the example binaries)
# run the benchmarks with binaries built elsewhere, on a machine without Rust.
tessera_root="$(cd "$(dirname "${BASH_SOURCE[0]}")/.." && pwd)"
if [ -n "${TESSERA_BIN:-}" ]; then
    bin=$TESSERA_BIN
    examples=${TESSERA_EXAMPLES:?set TESSERA_EXAMPLES beside TESSERA_BIN}
else
    source "$tessera_root/scripts/setup.sh"
    cargo build --quiet --release --locked --manifest-path "$tessera_root/Cargo.toml" \
        -p tessera-cli -p tessera-examples --bin tessera --example parquet_dataset --example read_parquet \
        --example static_site --example repair --example audit_traffic --example outsource
    bin="${CARGO_TARGET_DIR:-$tessera_root/target}/release/tessera"
    examples="${CARGO_TARGET_DIR:-$tessera_root/target}/release/examples"
fi
source "$tessera_root/scripts/network-lib.sh"
source "$tessera_root/scripts/bench-util.sh"
