"""Fixtures for the package's tests, run by scripts/test-python against storage node
processes on 127.0.0.1: TESSERA_BOOTSTRAP is a node's address, TESSERA_WORK a scratch
directory."""

import os

import pyarrow as pa
import pyarrow.parquet as pq
import pytest

import tessera

ROWS = [700, 1300, 400, 1000, 700]  # 4,100 samples in 5 shards
BATCH = 100


@pytest.fixture(scope="session")
def work():
    return os.environ["TESSERA_WORK"]


@pytest.fixture(scope="session")
def join(work):
    """What every call takes to join the test network, and the shard cache it shares."""
    return {"bootstrap": [os.environ["TESSERA_BOOTSTRAP"]], "cache": os.path.join(work, "py-cache")}


@pytest.fixture(scope="session")
def key(work):
    return os.path.join(work, "py.key")


@pytest.fixture(scope="session")
def published(work, join, key):
    """A dataset of 5 Parquet files whose rows have ids 0..4100, published once."""
    data = os.path.join(work, "py-data")
    os.makedirs(data, exist_ok=True)
    start = 0
    for i, rows in enumerate(ROWS):
        ids = list(range(start, start + rows))
        table = pa.table({"id": pa.array(ids, pa.int64()), "text": [f"sample {x}" for x in ids]})
        pq.write_table(table, os.path.join(data, f"part-{i}.parquet"), row_group_size=256)
        start += rows
    out = tessera.publish(data, "pytest", key=key, bootstrap=join["bootstrap"])
    return {"dir": data, **out}
