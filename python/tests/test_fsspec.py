"""tessera:// through fsspec, read by pyarrow and pandas."""

import fsspec
import pandas as pd
import pyarrow.dataset as pds
import pyarrow.parquet as pq

from conftest import ROWS


def test_pandas_reads_a_file_by_url(published, join):
    url = f"tessera://{published['reference']}/part-1.parquet"
    df = pd.read_parquet(url, columns=["id"], storage_options=join)
    assert df["id"].tolist() == list(range(ROWS[0], ROWS[0] + ROWS[1]))


def test_pyarrow_reads_a_version_and_a_cid(published, join):
    fs = fsspec.filesystem("tessera", **join)
    names = fs.ls(published["reference"], detail=False)
    assert names == [f"{published['reference']}/part-{i}.parquet" for i in range(5)]
    table = pds.dataset(published["reference"], filesystem=fs, format="parquet").to_table(columns=["id"])
    assert sorted(table.column("id").to_pylist()) == list(range(sum(ROWS)))
    # By the manifest CID, a single row group's column.
    local = pq.ParquetFile(f"{published['dir']}/part-3.parquet")
    with fs.open(f"{published['cid']}/part-3.parquet") as f:
        remote = pq.ParquetFile(f)
        assert remote.metadata.num_row_groups == local.metadata.num_row_groups
        assert remote.read_row_group(1, columns=["text"]) == local.read_row_group(1, columns=["text"])
    assert fs.info(f"{published['cid']}/part-3.parquet")["size"] == fs.size(f"{published['reference']}/part-3.parquet")


def test_polars_reads_a_column_through_the_gateway_by_range(published, join):
    import os
    import time

    import polars as pl

    shard = next(f for f in fsspec.filesystem("tessera", **join).ls(published["reference"]) if f["name"].endswith("part-3.parquet"))
    url = f"{os.environ['TESSERA_HTTP']}/v1/shards/{shard['cid']}"
    got = pl.scan_parquet(url).select("text").collect()
    want = pq.read_table(f"{published['dir']}/part-3.parquet", columns=["text"])
    assert got["text"].to_list() == want.column("text").to_pylist()
    # The node's log shows the reader asked for ranges, not the whole file.
    log = ""
    for _ in range(50):
        with open(os.environ["TESSERA_NODE_LOG"]) as f:
            log = f.read()
        if "range=bytes=" in log:
            break
        time.sleep(0.1)
    assert f"cid={shard['cid']}" in log and "range=bytes=" in log, log[-2000:]


def test_a_publisher_key_is_not_taken_for_a_cid(published):
    from tessera.fs import _looks_like_cid

    assert _looks_like_cid(published["cid"])
    assert not _looks_like_cid("b" + "0" * 63)
    assert not _looks_like_cid("name@v1")
