# Shared by the bench-* scripts: figures, ratios, peak memory and CPU time, and the records
# scripts/bench collects. Builds nothing: bench-lib.sh adds the release builds and the node
# network for the benchmarks that need them. Source it, don't run it.

now() { date +%s.%N; }
elapsed() { awk -v a="$1" -v b="$2" 'BEGIN { print b - a }'; }
mbps() { awk -v b="$1" -v s="$2" 'BEGIN { printf "%.0f", b / 1e6 / s }'; }
ratio() { awk -v a="$1" -v b="$2" 'BEGIN { printf "%.2f", a / b }'; }
peak_kib() { awk '/VmHWM/ { print $2 }' "/proc/$1/status"; }

# Runs a command, writing its peak memory in KiB to FILE (0 where GNU time is missing).
measure() { measure_as '%M' "$@"; }

# Like measure, writing "PEAK_KIB USER_S SYSTEM_S" to FILE.
measure_cpu() { measure_as '%M %U %S' "$@"; }

measure_as() { # GNU time's format, file, command...
    local format=$1 file=$2; shift 2
    if [ -x /usr/bin/time ]; then
        /usr/bin/time -f "$format" -o "$file" "$@"
    else
        sed 's/%[A-Za-z]/0/g' <<< "$format" > "$file"
        "$@"
    fi
}

# CPU seconds (user and system) that the processes PID... have used so far, from /proc.
cpu_s() { # pid...
    local tck pid
    tck=$(getconf CLK_TCK)
    for pid in "$@"; do awk '{ print $14 + $15 }' "/proc/$pid/stat" 2>/dev/null || echo 0; done |
        awk -v t="$tck" '{ s += $1 } END { printf "%.2f", s / t }'
}

# Drops the files under each PATH from the page cache (after a sync), so that the next read of
# them comes from the disk: posix_fadvise(DONTNEED), which needs no privileges.
drop_cached() { # path...
    sync
    python3 - "$@" <<'PY'
import os, sys
for root in sys.argv[1:]:
    for d, _, files in os.walk(root):
        for f in files:
            try:
                fd = os.open(os.path.join(d, f), os.O_RDONLY)
            except OSError:
                continue
            try:
                os.posix_fadvise(fd, 0, 0, os.POSIX_FADV_DONTNEED)
            finally:
                os.close(fd)
PY
}

# Appends one figure and its baseline from the same run to $TESSERA_BENCH_OUT (JSON lines),
# when set: what scripts/bench collects into docs/BENCHMARKS.md.
record() { # section, name, value, unit, baseline name, baseline value
    [ -n "${TESSERA_BENCH_OUT:-}" ] || return 0
    python3 -c 'import json, sys
s, n, v, u, bn, bv = sys.argv[1:7]
print(json.dumps({"section": s, "name": n, "value": float(v), "unit": u,
                  "baseline": bn, "baseline_value": float(bv)}))' "$@" >> "$TESSERA_BENCH_OUT"
}
