"""The same Parquet dataset fed to a PyTorch-style loop by three loaders, in one run:

- tessera.StreamingDataset, from the network (a cold cache, then a warm one);
- MosaicML Streaming, after its own conversion to MDS, from local disk;
- Hugging Face datasets, streaming the local Parquet files.

Each is one worker (the loop's own process), shuffled, in batches of BATCH rows: rows per
second per worker, and the time to the first batch. One JSON line per loader on stdout.

    python loaders.py DATA_DIR REFERENCE BOOTSTRAP WORK [BATCH]
"""

import glob
import json
import os
import sys
import time

import tessera

data, reference, bootstrap, work = sys.argv[1:5]
BATCH = int(sys.argv[5]) if len(sys.argv) > 5 else 1024
files = sorted(glob.glob(os.path.join(data, "*.parquet")))


def run(name, batches, extra=None):
    """Times a loop over `batches` (an iterator factory): first batch, then all."""
    t0 = time.perf_counter()
    first = None
    rows = 0
    for batch in batches():
        if first is None:
            first = time.perf_counter() - t0
        rows += batch
    total = time.perf_counter() - t0
    out = {"loader": name, "rows": rows, "first_batch_s": round(first, 4), "seconds": round(total, 3),
           "rows_per_s": round(rows / total)}
    out.update(extra or {})
    print(json.dumps(out), flush=True)
    return out


def tessera_batches(cache, epoch):
    def go():
        ds = tessera.StreamingDataset(reference, batch_size=BATCH, seed=7, epoch=epoch, bootstrap=[bootstrap],
                                      cache=cache)
        for batch in ds:
            yield batch.num_rows
    return go


cache = os.path.join(work, "tessera-cache")
run("tessera (network, cold cache)", tessera_batches(cache, 0))
run("tessera (network, warm cache)", tessera_batches(cache, 1))

# MosaicML Streaming: its own format first (timed apart), then its loader from local disk.
import pyarrow.parquet as pq  # noqa: E402
import torch  # noqa: E402
from streaming import MDSWriter, StreamingDataset  # noqa: E402

mds = os.path.join(work, "mds")
t0 = time.perf_counter()
schema = pq.read_schema(files[0])
kinds = {"int64": "int64", "int32": "int32", "string": "str", "large_string": "str", "double": "float64"}
columns = {f.name: kinds[str(f.type)] for f in schema}
with MDSWriter(out=mds, columns=columns, size_limit=1 << 26) as writer:
    for path in files:
        for row in pq.read_table(path).to_pylist():
            writer.write(row)
convert_s = time.perf_counter() - t0


def mosaic():
    ds = StreamingDataset(local=mds, shuffle=True, shuffle_seed=7, batch_size=BATCH)
    loader = torch.utils.data.DataLoader(ds, batch_size=BATCH, num_workers=0)
    for batch in loader:
        yield len(batch["id"])


run("MosaicML Streaming (local MDS)", mosaic, {"conversion_s": round(convert_s, 2)})

# Hugging Face datasets streaming the local Parquet files, shuffled through a buffer.
from datasets import load_dataset  # noqa: E402


def hf():
    ds = load_dataset("parquet", data_files=files, split="train", streaming=True)
    ds = ds.shuffle(seed=7, buffer_size=10_000)
    for batch in ds.iter(batch_size=BATCH):
        yield len(batch["id"])


run("Hugging Face datasets (local Parquet, streaming)", hf)
