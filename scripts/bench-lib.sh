# Shared by the bench-* scripts: a release build of `tessera`, a work directory that is removed
# on exit, and a network of storage node processes on 127.0.0.1. Source it, don't run it.
source "$(dirname "${BASH_SOURCE[0]}")/setup.sh"

cargo build --quiet --release --locked --manifest-path "$tessera_root/Cargo.toml" -p tessera-cli
bin="${CARGO_TARGET_DIR:-$tessera_root/target}/release/tessera"
work=$(mktemp -d "${TMPDIR:-/tmp}/tessera-bench-XXXXXX")
pids=()
cleanup() {
    for pid in "${pids[@]}"; do kill "$pid" 2>/dev/null || true; done
    wait 2>/dev/null || true
    rm -rf "$work"
}
trap cleanup EXIT

now() { date +%s.%N; }
elapsed() { awk -v a="$1" -v b="$2" 'BEGIN { print b - a }'; }
mbps() { awk -v b="$1" -v s="$2" 'BEGIN { printf "%.0f", b / 1e6 / s }'; }
ratio() { awk -v a="$1" -v b="$2" 'BEGIN { printf "%.2f", a / b }'; }
peak_kib() { awk '/VmHWM/ { print $2 }' "/proc/$1/status"; }

start_node() { # index, capacity, extra flags...
    local i=$1 capacity=$2; shift 2
    "$bin" storage-node --data-dir "$work/node-$i" --listen /ip4/127.0.0.1/tcp/0 \
        --capacity "$capacity" "$@" > "$work/node-$i.out" 2>/dev/null &
    pids+=($!)
    until grep -q '^data' "$work/node-$i.out" 2>/dev/null; do sleep 0.05; done
}

# Starts NODES nodes of CAPACITY each, all joined through node 0, and waits until node 0 sees
# them all. Sets $bootstrap (node 0's address) and $status (node 0's HTTP status URL).
start_network() { # nodes, capacity
    local nodes=$1 capacity=$2
    start_node 0 "$capacity" --http 127.0.0.1:0
    bootstrap=$(awk '/^listening/ { print $2; exit }' "$work/node-0.out")
    status=$(awk '/^http/ { print $2; exit }' "$work/node-0.out")
    for i in $(seq 1 $((nodes - 1))); do start_node "$i" "$capacity" --bootstrap "$bootstrap"; done
    until curl -s "$status" 2>/dev/null | grep -q "\"peers_connected\":$((nodes - 1))"; do
        sleep 0.1
    done
}
