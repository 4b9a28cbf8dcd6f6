# A network of storage node processes on 127.0.0.1, in a work directory that is removed (and
# the nodes stopped) on exit. Set $bin to the tessera binary, then source this.
work=$(mktemp -d "${TMPDIR:-/tmp}/tessera-XXXXXX")
pids=()
# The addresses each node listens on; a benchmark of the default listen set adds QUIC.
listen_flags=(--listen /ip4/127.0.0.1/tcp/0)
cleanup() {
    # A frozen (SIGSTOPped) node only stops once it runs again.
    for pid in "${pids[@]}"; do kill "$pid" 2>/dev/null && kill -CONT "$pid" 2>/dev/null || true; done
    wait 2>/dev/null || true
    rm -rf "$work"
}
trap cleanup EXIT

start_node() { # index, capacity, extra flags...
    local i=$1 capacity=$2; shift 2
    "$bin" storage-node --data-dir "$work/node-$i" "${listen_flags[@]}" \
        --capacity "$capacity" "$@" > "$work/node-$i.out" 2>"$work/node-$i.err" &
    pids+=($!)
    until grep -q '^data' "$work/node-$i.out" 2>/dev/null; do
        if ! kill -0 "${pids[-1]}" 2>/dev/null; then
            echo "storage node $i did not start:" >&2
            cat "$work/node-$i.err" >&2
            return 1
        fi
        sleep 0.05
    done
}

# A URL's body; curl where the machine has it.
http_get() {
    if command -v curl >/dev/null 2>&1; then
        curl -s "$1"
    else
        python3 -c 'import sys, urllib.request; sys.stdout.write(urllib.request.urlopen(sys.argv[1]).read().decode())' "$1"
    fi
}

# Starts NODES nodes of CAPACITY each, all joined through node 0, and waits until node 0 sees
# them all. Sets $bootstrap (node 0's address) and $status (node 0's HTTP status URL).
start_network() { # nodes, capacity
    local nodes=$1 capacity=$2
    start_node 0 "$capacity" --http 127.0.0.1:0
    bootstrap=$(awk '/^listening/ { print $2; exit }' "$work/node-0.out")
    status=$(awk '/^http/ { print $2; exit }' "$work/node-0.out")
    for i in $(seq 1 $((nodes - 1))); do start_node "$i" "$capacity" --bootstrap "$bootstrap"; done
    until http_get "$status" 2>/dev/null | grep -q "\"peers_connected\":$((nodes - 1))"; do
        sleep 0.1
    done
}
