"""Tessera datasets in Python.

- `StreamingDataset`: a PyTorch `IterableDataset` (a plain iterable without torch) of a
  dataset version's batches, read in-process: shuffled, split among ranks and data-loader
  workers, every shard checked against its CID, resumable with `state_dict()`.
- `fetch`, `publish`, `datasets`: the CLI's `fetch`, `publish` and `datasets list`.
- `tessera://PUBLISHER/NAME@VERSION/FILE` and `tessera://CID/FILE` open through fsspec
  (`tessera.fs.TesseraFileSystem`), for pyarrow, pandas, polars and others.

Every call joins the network through `bootstrap=[...]` when given, else through the peers in
`~/.config/tessera/client.toml`.
"""

from __future__ import annotations

import os
import tempfile
from typing import Any, Dict, List, Optional, Union

import pyarrow as pa

from . import _native
from ._native import TesseraError
from .dataset import StreamingDataset

__all__ = ["StreamingDataset", "TesseraError", "datasets", "fetch", "publish"]


def fetch(reference: str, output: Union[str, os.PathLike], **join: Any) -> Dict[str, Any]:
    """Fetches a dataset version (a CID or `[PUBLISHER/]NAME[@vN]`) into `output`, every
    shard verified; intact files already there are kept. Returns what was done: the version's
    `cid`, the files `fetched`, `present` and `rebuilt` from parity, `bytes` and `rows`."""
    return _native.fetch(reference, os.fspath(output), **join)


def publish(
    source: Union[str, os.PathLike, pa.Table],
    name: str,
    *,
    message: str = "",
    rows_per_file: int = 1_000_000,
    **options: Any,
) -> Dict[str, Any]:
    """Publishes a directory of Parquet files, or a pyarrow Table (written as Parquet files
    of `rows_per_file` rows), as the next version of your dataset `name`. Your publisher key
    is `key=` or `~/.config/tessera/publisher.key` (created when missing). Returns the
    version's `cid` (fetch it by this), its `reference` (PUBLISHER/NAME@vN), `record`,
    `version`, `shards` and `rows`."""
    if isinstance(source, pa.Table):
        import pyarrow.parquet as pq

        with tempfile.TemporaryDirectory(prefix="tessera-publish-") as tmp:
            for i, start in enumerate(range(0, max(source.num_rows, 1), rows_per_file)):
                part = source.slice(start, rows_per_file)
                pq.write_table(part, os.path.join(tmp, f"part-{i:05}.parquet"))
            return _native.publish(tmp, name, message=message, **options)
    return _native.publish(os.fspath(source), name, message=message, **options)


def datasets(**join: Any) -> List[Dict[str, Any]]:
    """The datasets the registry knows, a dict per version: `reference`, `publisher`, `name`,
    `version`, `cid`, `time_ms` and `message`."""
    return _native.datasets(**join)
