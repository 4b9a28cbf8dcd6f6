"""`StreamingDataset`: one rank's part of a dataset version, batch by batch, for training.

Each data-loader worker reads its own batches in-process through Tessera's Rust reader (no
subprocess, no copy: batches arrive through the Arrow C data interface). Tessera splits every
epoch among ranks and workers so that each sample goes to exactly one worker of one rank,
shuffles it with the seed, prefetches and caches shards, and checks each shard against its
CID before any of its rows is used.

    ds = tessera.StreamingDataset("alice/crawl@v3", batch_size=256, seed=7)
    loader = torchdata.stateful_dataloader.StatefulDataLoader(ds, batch_size=None, num_workers=4)
    for batch in loader:                    # a pyarrow.RecordBatch of up to 256 samples
        ...
        checkpoint["data"] = loader.state_dict()
    # later, with any world size, batch size or number of workers:
    ds.load_state_dict(checkpoint["data"])  # or loader.load_state_dict(...) with the same workers

The items are whole batches, so the DataLoader gets `batch_size=None`. Rank and world size
come from `torch.distributed` when it is initialized, else from `RANK` and `WORLD_SIZE`, else
they are 0 and 1; the worker from `torch.utils.data.get_worker_info()`.

Resuming: a state records the epoch's samples its job reads and how many each rank has
consumed. A job of the same shape goes on where it stood. A job of another world size, batch
size or worker count reads exactly the samples of the epoch that had not been delivered,
split among its own ranks (which may then differ by one sample, so the last batches may be
short). Ranks of a data-parallel job step together, so any rank's state stands for the job.
"""

from __future__ import annotations

import copy
import json
import os
from typing import Any, Callable, Dict, Iterator, List, Optional, Sequence, Tuple

import pyarrow as pa

from . import _native

try:
    import torch
    from torch.utils.data import IterableDataset, get_worker_info
except ImportError:  # PyTorch is optional
    torch = None

    class IterableDataset:  # type: ignore[no-redef]
        """Stand-in for torch.utils.data.IterableDataset."""

    def get_worker_info():  # type: ignore[no-redef]
        return None


# Marks a dict as a StreamingDataset's state, wherever a data loader nests it.
STATE_KEY = "tessera_stream"
OUTPUTS = ("arrow", "numpy", "torch")


class StreamingDataset(IterableDataset):
    """One rank's part of a dataset version, epoch by epoch, as batches."""

    def __init__(
        self,
        reference: str,
        *,
        batch_size: int = 1024,
        seed: int = 0,
        epoch: int = 0,
        columns: Optional[Sequence[str]] = None,
        remainder: str = "drop",
        block_shards: int = 4,
        prefetch: int = 4,
        output: str = "arrow",
        transform: Optional[Callable[[Any], Any]] = None,
        rank: Optional[int] = None,
        world_size: Optional[int] = None,
        cache: Optional[str] = None,
        cache_limit: int = 10 << 30,
        bootstrap: Sequence[str] = (),
        network: Optional[str] = None,
        config: Optional[str] = None,
        key: Optional[str] = None,
    ):
        """`reference`: a manifest CID or `[PUBLISHER/]NAME[@latest|@vN]`. `output`: "arrow"
        (pyarrow RecordBatch), "numpy" (dict of numpy arrays) or "torch" (dict of tensors for
        numeric columns, numpy arrays for the others). `remainder`: "drop" leaves out the
        samples that do not fill a batch on every rank, "pad" fills the last batches from
        the start of the epoch. `block_shards`: shards whose samples are shuffled together
        (memory grows with it). `cache`: the shard cache directory (default
        ~/.cache/tessera/shards), shared by workers and versions."""
        if output not in OUTPUTS:
            raise ValueError(f"output {output!r}: one of {', '.join(OUTPUTS)}")
        if remainder not in ("drop", "pad"):
            raise ValueError(f"remainder {remainder!r}: 'drop' or 'pad'")
        if (rank is None) != (world_size is None):
            raise ValueError("give rank and world_size together")
        if rank is not None and not 0 <= rank < world_size:
            raise ValueError(f"rank {rank} is not in 0..{world_size}")
        self.reference = reference
        self.batch_size = batch_size
        self.seed = seed
        self.epoch = epoch
        self.columns = list(columns) if columns else None
        self.remainder = remainder
        self.block_shards = block_shards
        self.prefetch = prefetch
        self.output = output
        self.transform = transform
        self.rank = rank
        self.world_size = world_size
        self.cache = cache
        self.cache_limit = cache_limit
        self.join = {"bootstrap": list(bootstrap), "network": network, "config": config}
        self.key = key
        self._worker: Optional[Tuple[int, int]] = None
        # The saved state the next iteration resumes, and where this process's iteration stands.
        self._resume: Optional[Dict[str, Any]] = None
        self._state: Optional[Dict[str, Any]] = None
        self._shape: Optional[Dict[str, int]] = None

    # -- who reads --------------------------------------------------------------------------

    def partition(self) -> Tuple[int, int, int, int]:
        """(rank, world_size, worker, workers) of the process calling it."""
        if self.rank is not None:
            rank, world = self.rank, self.world_size
        elif torch is not None and torch.distributed.is_available() and torch.distributed.is_initialized():
            rank, world = torch.distributed.get_rank(), torch.distributed.get_world_size()
        else:
            rank, world = int(os.environ.get("RANK", 0)), int(os.environ.get("WORLD_SIZE", 1))
        if self._worker is not None:
            worker, workers = self._worker
        else:
            info = get_worker_info()
            worker, workers = (info.id, info.num_workers) if info is not None else (0, 1)
        return rank, world, worker, workers

    def for_worker(self, worker: int, workers: int) -> "StreamingDataset":
        """A copy that reads worker `worker` of `workers`' part, for data loaders other than
        PyTorch's: deliver the workers' batches in turn (worker 0's first, then 1's, ...)."""
        if not 0 <= worker < workers:
            raise ValueError(f"worker {worker} is not in 0..{workers}")
        view = copy.copy(self)
        view._worker = (worker, workers)
        return view

    def set_epoch(self, epoch: int) -> None:
        """The epoch the next iteration reads: each has its own order. A resumed state of
        another epoch is let go."""
        if self._resume is not None and self._resume.get("epoch") != epoch:
            self._resume = None
        self.epoch = epoch

    # -- reading ----------------------------------------------------------------------------

    def __iter__(self) -> Iterator[Any]:
        rank, world, worker, workers = self.partition()
        resume = self._resume
        stream = _native.open_stream(
            self.reference,
            rank=rank,
            world_size=world,
            worker=worker,
            workers=workers,
            seed=self.seed,
            epoch=self.epoch,
            batch_size=self.batch_size,
            block_shards=self.block_shards,
            remainder=self.remainder,
            columns=self.columns,
            prefetch=self.prefetch,
            cache=self.cache,
            cache_limit=self.cache_limit,
            state=json.dumps(resume) if resume is not None else None,
            key=self.key,
            **self.join,
        )
        self._shape = {"rank": rank, "world_size": world, "worker": worker, "workers": workers}
        self._state = json.loads(stream.state())
        self.epoch = self._state["epoch"]
        while True:
            got = stream.next_batch()
            if got is None:
                break
            batch = pa.RecordBatch._import_from_c_capsule(*got)
            # Counted before it is handed out: a data loader asks for the state right after.
            self._state = json.loads(stream.state())
            yield self._convert(batch)
        if self._resume is resume:
            self._resume = None

    def _convert(self, batch: pa.RecordBatch) -> Any:
        if self.output == "numpy":
            out: Any = {n: c.to_numpy(zero_copy_only=False) for n, c in zip(batch.schema.names, batch.columns)}
        elif self.output == "torch":
            if torch is None:
                raise RuntimeError("output='torch' needs PyTorch installed")
            out = {}
            for name, column in zip(batch.schema.names, batch.columns):
                if pa.types.is_integer(column.type) or pa.types.is_floating(column.type):
                    # A copy: a tensor over Arrow's read-only buffers would let an in-place
                    # op write into them (PyTorch warns of undefined behaviour).
                    out[name] = torch.from_numpy(column.to_numpy(zero_copy_only=False, writable=True))
                else:
                    out[name] = column.to_numpy(zero_copy_only=False)
        else:
            out = batch
        return self.transform(out) if self.transform is not None else out

    # -- checkpoints ------------------------------------------------------------------------

    def state_dict(self) -> Dict[str, Any]:
        """Where this process's iteration stands: after the last batch it handed out. In a
        data loader's worker, the worker's; torchdata's StatefulDataLoader gathers them."""
        state = self._state if self._state is not None else self._resume
        return {STATE_KEY: 1, "state": state, "shape": self._shape}

    def load_state_dict(self, state_dict: Any) -> None:
        """Resumes from a saved state: this dataset's `state_dict()`, one of its workers', or
        a whole data loader's state (torchdata's StatefulDataLoader) holding them. The next
        iteration reads the saved epoch's samples not yet delivered."""
        states = [s for s in _find_states(state_dict) if s.get("state") is not None]
        if not states:
            if any(True for _ in _find_states(state_dict)):
                self._resume = None  # saved before any batch: start the epoch afresh
                return
            raise ValueError("no StreamingDataset state in what was given")
        # The workers' batches go out in order, so the furthest worker's position covers
        # every batch delivered before it.
        best = max((s["state"] for s in states), key=lambda s: (s["epoch"], s["consumed"]))
        self._resume = best
        self._state = None
        self.epoch = best["epoch"]


def _find_states(value: Any) -> List[Dict[str, Any]]:
    """Every StreamingDataset state nested in `value` (dicts and lists, as data loaders keep
    them)."""
    found: List[Dict[str, Any]] = []
    stack = [value]
    while stack:
        item = stack.pop()
        if isinstance(item, dict):
            if item.get(STATE_KEY) == 1:
                found.append(item)
            else:
                stack.extend(item.values())
        elif isinstance(item, (list, tuple)):
            stack.extend(item)
    return found
