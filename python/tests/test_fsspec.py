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
