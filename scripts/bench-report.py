#!/usr/bin/env python3
"""Writes the benchmark suite's table (Markdown) and figures (JSON) from what scripts/bench
collected: JSON lines from the bench scripts, and criterion's estimates of the core benches,
each figure next to its baseline from the same run.

    bench-report.py RECORDS CRITERION_DIR PROOFS_LOG OUT_MD OUT_JSON COMMAND
"""

import datetime
import glob
import json
import os
import platform
import re
import sys

records_path, criterion_dir, proofs_log, out_md, out_json, command = sys.argv[1:7]

# Criterion: (group, function, parameter) -> (mean ns, bytes per iteration or None).
criterion = {}
for path in glob.glob(os.path.join(criterion_dir, "**", "new", "benchmark.json"), recursive=True):
    with open(path) as f:
        bench = json.load(f)
    with open(os.path.join(os.path.dirname(path), "estimates.json")) as f:
        mean = json.load(f)["mean"]["point_estimate"]
    throughput = (bench.get("throughput") or {}).get("Bytes")
    key = (bench["group_id"], bench["function_id"], bench.get("value_str"))
    criterion[key] = (mean, throughput)

records = []


def core(section, name, figure, baseline_name, baseline, unit):
    a, b = criterion.get(figure), criterion.get(baseline)
    if not a or not b:
        print(f"bench-report: no criterion figure for {name}", file=sys.stderr)
        return
    if unit == "GB/s":
        value, base = a[1] / a[0], b[1] / b[0]  # bytes per ns = GB/s
    else:  # ms
        value, base = a[0] / 1e6, b[0] / 1e6
    records.append({"section": section, "name": name, "value": value, "unit": unit,
                    "baseline": baseline_name, "baseline_value": base})


R = "range_response_1MiB"
core("wire codec", "encode a 1 MiB piece range response (into parts: the body is not copied)", (R, "tessera", None),
     "serde_ipld_dagcbor, same bytes", (R, "serde", None), "GB/s")
core("wire codec", "read a 1 MiB piece range response", (R + "_read", "tessera", None),
     "serde_ipld_dagcbor, same message", (R + "_read", "serde", None), "GB/s")
core("wire codec", "read a 1 MiB piece range response off a stream in 16 KiB frames", (R + "_from_stream", "codec", None),
     "read_to_end of the same stream", (R + "_from_stream", "read_to_end", None), "GB/s")
E = "erasure_10+4_40MiB"
core("erasure coding", "encode 10+4, 1 MiB stripes, every piece hashed", (E, "encode_tessera", "1048576"),
     "reed-solomon-erasure bare", (E, "encode_bare", "1048576"), "GB/s")
core("erasure coding", "rebuild with 4 data pieces lost, output hashed", (E, "rebuild_tessera", "1048576"),
     "reed-solomon-erasure bare", (E, "rebuild_bare", "1048576"), "GB/s")
core("erasure coding", "read with every data piece (copy, verify)", (E, "read_all_data_tessera", "1048576"),
     "reed-solomon-erasure bare encode", (E, "encode_bare", "1048576"), "GB/s")
H = "hash_64MiB"
core("hashing", "BLAKE3, streamed in 256 KiB reads", (H, "blake3_tessera_stream", None),
     "blake3::hash bare", (H, "blake3_bare", None), "GB/s")
core("hashing", "SHA-256 (for comparison)", (H, "sha256_bare", None),
     "blake3::hash bare", (H, "blake3_bare", None), "GB/s")
O = "outboard_64MiB"
core("proofs", "outboard (proof tree) of a 64 MiB piece", (O, "outboard_compute", None),
     "blake3::hash bare", (O, "blake3_bare", None), "GB/s")
C = "challenge_64MiB_688_samples"
core("proofs", "prove a challenge, 688 samples, 64 MiB piece", (C, "prove", None),
     "hashing the whole piece", (O, "blake3_bare", None), "ms")
core("proofs", "verify that proof", (C, "verify", None),
     "hashing the whole piece", (O, "blake3_bare", None), "ms")
R = "range_1MiB_from_file"
core("proofs", "prove a 1 MiB range read from a file", (R, "prove_range", None),
     "pread of the range", (R, "pread_bare", None), "ms")
core("proofs", "verify that range", (R, "verify_range", None),
     "pread of the range", (R, "pread_bare", None), "ms")
with open(proofs_log) as f:
    found = re.search(r"proof for a 64 MiB piece with \d+ samples: (\d+) bytes body", f.read())
if found:
    records.append({"section": "proofs", "name": "proof size, 688 samples, 64 MiB piece",
                    "value": int(found.group(1)) / 1024, "unit": "KiB",
                    "baseline": "the piece", "baseline_value": 64 * 1024})

with open(records_path) as f:
    records += [json.loads(line) for line in f if line.strip()]
for r in records:
    r["ratio"] = r["value"] / r["baseline_value"] if r["baseline_value"] else None

when = datetime.datetime.now(datetime.timezone.utc).strftime("%Y-%m-%d %H:%M UTC")
machine = f"{platform.machine()}, {os.cpu_count()} CPUs"


def fmt(v):
    return f"{v:,.0f}" if abs(v) >= 100 else f"{v:,.2f}" if abs(v) >= 1 else f"{v:.3g}"


lines = [
    "# Benchmarks",
    "",
    f"Produced by `{command}` on {when}, {machine}, release build.",
    "",
    "Every figure sits next to a baseline measured in the same run, so the ratio says more than",
    "the absolute number on a shared, noisy machine. For times (s, ms) a ratio below 1 is faster",
    "than the baseline; for rates (GB/s, MB/s, rows/s, pages/s) above 1 is faster. The network",
    "figures run every node, client and site on the same machine as the baseline.",
    "",
]
for section in dict.fromkeys(r["section"] for r in records):
    lines += [f"## {section}", "", "| figure | value | baseline (same run) | ratio |", "|---|---|---|---|"]
    for r in (r for r in records if r["section"] == section):
        ratio = "-" if r["ratio"] is None else f"{r['ratio']:.2f}x"
        lines.append(f"| {r['name']} | {fmt(r['value'])} {r['unit']} | {r['baseline']}: "
                     f"{fmt(r['baseline_value'])} {r['unit']} | {ratio} |")
    lines.append("")
# The studies below the tables are written by hand: kept as they are.
history = ""
if os.path.exists(out_md):
    with open(out_md) as f:
        text = f.read()
    at = text.find("\n## History\n")
    if at >= 0:
        history = text[at:]
with open(out_md, "w") as f:
    f.write("\n".join(lines).rstrip("\n") + "\n" + history)
with open(out_json, "w") as f:
    json.dump({"command": command, "when": when, "machine": machine, "figures": records}, f, indent=1)
print("\n".join(lines))
