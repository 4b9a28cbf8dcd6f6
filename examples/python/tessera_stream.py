"""Stream a Tessera dataset version into a PyTorch training job.

Each data-loader worker of each rank runs one `tessera stream` process and reads its Arrow IPC
output with pyarrow. Tessera does the partitioning (every sample of an epoch goes to exactly one
worker of one rank), the seeded shuffle, prefetching, the shard cache and the verification of
every shard against its CID; this class only starts the process and hands its batches on.

    dataset = TesseraStream("alice/crawl@v3", rank=rank, world_size=world_size, seed=7,
                            batch_size=256, bootstrap=["/ip4/.../p2p/12D3..."])
    loader = torch.utils.data.DataLoader(dataset, batch_size=None, num_workers=4)
    for epoch in range(epochs):
        dataset.set_epoch(epoch)
        for batch in loader:          # a pyarrow.RecordBatch of up to 256 samples
            consumed += batch.num_rows  # save (epoch, consumed) with the checkpoint
            ...

The items are whole batches, so the DataLoader is given `batch_size=None`. To resume mid-epoch
from a checkpoint, call `dataset.set_epoch(epoch)` and then `dataset.resume(consumed)` with the
number of samples this rank had consumed; the stream continues with exactly the samples not yet
delivered.

PyTorch is optional: without it the class still works as a plain iterable (one worker), and
`iter_worker(worker, workers)` gives any one worker's part.
"""

from __future__ import annotations

import os
import subprocess
from typing import Callable, Iterator, Optional, Sequence

import pyarrow as pa
import pyarrow.ipc

try:
    import torch
    from torch.utils.data import IterableDataset, get_worker_info
except ImportError:  # PyTorch is optional
    torch = None

    class IterableDataset:  # type: ignore[no-redef]
        """Stand-in for torch.utils.data.IterableDataset."""

    def get_worker_info():  # type: ignore[no-redef]
        return None


class TesseraStream(IterableDataset):
    """One rank's part of a dataset version, epoch by epoch, as Arrow record batches."""

    def __init__(
        self,
        reference: str,
        *,
        rank: int = 0,
        world_size: int = 1,
        seed: int = 0,
        epoch: int = 0,
        batch_size: int = 1024,
        columns: Optional[Sequence[str]] = None,
        remainder: str = "drop",
        bootstrap: Sequence[str] = (),
        cache: Optional[str] = None,
        tessera: Optional[str] = None,
        extra_args: Sequence[str] = (),
        transform: Optional[Callable[[pa.RecordBatch], object]] = None,
    ):
        if not 0 <= rank < world_size:
            raise ValueError(f"rank {rank} is not in 0..{world_size}")
        self.reference = reference
        self.rank = rank
        self.world_size = world_size
        self.seed = seed
        self.epoch = epoch
        self.batch_size = batch_size
        self.columns = list(columns) if columns else None
        self.remainder = remainder
        self.bootstrap = list(bootstrap)
        self.cache = cache
        self.tessera = tessera or os.environ.get("TESSERA", "tessera")
        self.extra_args = list(extra_args)
        self.transform = transform
        self.consumed = 0

    def set_epoch(self, epoch: int) -> None:
        """Starts `epoch` from its beginning on the next iteration."""
        self.epoch = epoch
        self.consumed = 0

    def resume(self, consumed: int) -> None:
        """Continues the current epoch after the first `consumed` samples of this rank."""
        self.consumed = consumed

    def command(self, worker: int = 0, workers: int = 1) -> list[str]:
        """The `tessera stream` command line of one worker."""
        cmd = [
            self.tessera, "stream", self.reference,
            "--rank", str(self.rank), "--world-size", str(self.world_size),
            "--worker", str(worker), "--workers", str(workers),
            "--seed", str(self.seed), "--epoch", str(self.epoch),
            "--batch-size", str(self.batch_size), "--remainder", self.remainder,
            "--format", "arrow-ipc",
        ]
        if self.consumed:
            cmd += ["--consumed", str(self.consumed)]
        if self.columns:
            cmd += ["--columns", ",".join(self.columns)]
        if self.cache:
            cmd += ["--cache", self.cache]
        for addr in self.bootstrap:
            cmd += ["--bootstrap", addr]
        return cmd + self.extra_args

    def __iter__(self) -> Iterator[object]:
        info = get_worker_info()
        if info is None:
            return self.iter_worker(0, 1)
        return self.iter_worker(info.id, info.num_workers)

    def iter_worker(self, worker: int, workers: int) -> Iterator[object]:
        """Worker `worker` of `workers`'s batches of this rank's part of the epoch."""
        proc = subprocess.Popen(self.command(worker, workers), stdout=subprocess.PIPE)
        finished = False
        try:
            with pa.ipc.open_stream(proc.stdout) as reader:
                for batch in reader:
                    yield self.transform(batch) if self.transform else batch
            finished = True
        except pa.ArrowInvalid as e:
            # The process stopped before writing a whole stream; its exit status says why.
            if proc.wait() == 0:
                raise
            raise StreamFailed(self.command(worker, workers), proc.returncode) from e
        finally:
            if not finished:
                # The consumer stopped early (or failed): the process has nothing more to do.
                proc.stdout.close()
                proc.terminate()
            proc.wait()
            if proc.stdout and not proc.stdout.closed:
                proc.stdout.close()
        if proc.returncode != 0:
            raise StreamFailed(self.command(worker, workers), proc.returncode)


class StreamFailed(RuntimeError):
    """`tessera stream` exited with an error (its message went to stderr)."""

    def __init__(self, command: list[str], code: int):
        super().__init__(f"`{' '.join(command[:3])} ...` exited with status {code}")
        self.command = command
        self.code = code


def to_torch(batch: pa.RecordBatch) -> dict:
    """A batch as a dict of columns: numeric columns as tensors (copies, safe to change in
    place), others as Python lists."""
    out = {}
    for name, column in zip(batch.schema.names, batch.columns):
        if torch is not None and (pa.types.is_integer(column.type) or pa.types.is_floating(column.type)):
            # A copy: a tensor over the batch's own read-only buffers would let an in-place op
            # write into Arrow's memory (PyTorch warns that this is undefined behaviour).
            out[name] = torch.from_numpy(column.to_numpy(zero_copy_only=False, writable=True))
        else:
            out[name] = column.to_pylist()
    return out
