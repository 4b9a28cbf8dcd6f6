"""tessera.publish, tessera.datasets, tessera.fetch, and their errors."""

import os

import pyarrow as pa
import pyarrow.parquet as pq
import pytest

import tessera


def test_publish_a_table_list_and_fetch_it(work, join, key):
    table = pa.table({"n": list(range(2_500)), "s": [f"row {i}" for i in range(2_500)]})
    out = tessera.publish(table, "pytable", key=key, rows_per_file=1_000, bootstrap=join["bootstrap"])
    assert out["reference"].endswith("/pytable@v1")
    assert (out["shards"], out["rows"]) == (3, 2_500)
    listed = tessera.datasets(bootstrap=join["bootstrap"])
    assert any(d["reference"] == out["reference"] and d["cid"] == out["cid"] for d in listed)
    target = os.path.join(work, "py-fetched")
    got = tessera.fetch(out["reference"], target, bootstrap=join["bootstrap"])
    assert got["cid"] == out["cid"] and len(got["fetched"]) == 3
    back = pa.concat_tables(
        pq.read_table(os.path.join(target, n)) for n in sorted(os.listdir(target)) if n.endswith(".parquet")
    )
    assert back.column("n").to_pylist() == list(range(2_500))
    # Again: everything is in place.
    again = tessera.fetch(out["cid"], target, bootstrap=join["bootstrap"])
    assert again["fetched"] == [] and len(again["present"]) == 3


def test_errors_say_what_failed(join):
    with pytest.raises(tessera.TesseraError, match="no dataset"):
        tessera.fetch("nobody-has-this", "/tmp/never", bootstrap=join["bootstrap"])
    with pytest.raises(tessera.TesseraError, match="bootstrap address"):
        tessera.datasets(bootstrap=["not an address"])
    with pytest.raises(ValueError, match="remainder"):
        tessera.StreamingDataset("x", remainder="Pad")


def test_the_training_example_runs_and_resumes(published, join, work, tmp_path):
    import json
    import subprocess
    import sys

    example = os.path.join(os.path.dirname(__file__), "..", "..", "examples", "python", "train.py")
    cmd = [sys.executable, example, published["reference"], "--bootstrap", join["bootstrap"][0],
           "--batch-size", "100", "--workers", "0", "--checkpoint", str(tmp_path / "ckpt.json")]
    first = json.loads(subprocess.run(cmd + ["--steps", "10"], check=True, capture_output=True, text=True).stdout)
    rest = json.loads(subprocess.run(cmd, check=True, capture_output=True, text=True).stdout)
    assert (first["rows"], rest["rows"]) == (1_000, 3_100)
