"""tessera.StreamingDataset: every sample once across ranks and workers, checkpoints, and
resuming under another world size."""

import collections
import json

import pytest

import tessera
from tessera.dataset import torch

from conftest import BATCH, ROWS

TOTAL = sum(ROWS)


def dataset(published, join, **kw):
    options = {"batch_size": BATCH, "seed": 3, **join}
    options.update(kw)
    return tessera.StreamingDataset(published["reference"], **options)


class Loader:
    """A stand-in for PyTorch's DataLoader (batch_size=None) and torchdata's
    StatefulDataLoader: workers' batches handed out in turn, and each worker's dataset state
    kept as of its last batch handed out."""

    def __init__(self, ds, workers):
        self.views = [ds.for_worker(w, workers) for w in range(workers)]
        self.states = {}

    def __iter__(self):
        iters = [iter(v) for v in self.views]
        live = list(range(len(iters)))
        while live:
            for w in list(live):
                try:
                    batch = next(iters[w])
                except StopIteration:
                    live.remove(w)
                    continue
                self.states[w] = self.views[w].state_dict()
                yield batch

    def state_dict(self):
        # Nested as a data loader nests it: the dataset finds its states inside.
        return {"_snapshot": {"_worker_snapshots": {str(w): {"dataset_state": s} for w, s in self.states.items()}}}


def ids(batches):
    return [i for b in batches for i in b.column("id").to_pylist()]


def run(published, join, world, workers, stop=None, state=None, **kw):
    """Every rank's batches (and each rank's loader state), stopping each rank after `stop`."""
    out, states = [], []
    for rank in range(world):
        ds = dataset(published, join, rank=rank, world_size=world, **kw)
        if state is not None:
            ds.load_state_dict(state(rank))
        loader = Loader(ds, workers)
        got = []
        for batch in loader:
            got.append(batch)
            if stop is not None and len(got) == stop:
                break
        out.append(got)
        states.append(json.loads(json.dumps(loader.state_dict())))
    return out, states


def test_every_sample_once_over_two_ranks_and_two_workers(published, join):
    ranks, _ = run(published, join, 2, 2)
    seen = collections.Counter(i for r in ranks for i in ids(r))
    assert len(seen) == TOTAL // (2 * BATCH) * 2 * BATCH
    assert set(seen.values()) == {1}
    assert all(b.num_rows == BATCH for r in ranks for b in r)
    assert len(ranks[0]) == len(ranks[1]) == 20
    # Shuffled: the first batch mixes files.
    assert len({i // 1000 for i in ids(ranks[0][:1])}) > 1


def test_state_dict_round_trips_through_json(published, join):
    whole = ids(dataset(published, join))
    ds = dataset(published, join)
    first = []
    for batch in ds:
        first.append(batch)
        if len(first) == 7:
            break
    saved = json.loads(json.dumps(ds.state_dict()))
    assert saved["state"]["consumed"] == 7 * BATCH
    again = dataset(published, join)
    again.load_state_dict(saved)
    assert ids(first) + ids(list(again)) == whole
    # After the resumed epoch, the next iteration reads a whole epoch again.
    assert sorted(ids(list(again))) == sorted(whole)


def test_resume_from_two_ranks_of_two_workers_to_three_ranks_of_one(published, join):
    planned, _ = run(published, join, 2, 2)
    planned_ids = collections.Counter(i for r in planned for i in ids(r))
    before, states = run(published, join, 2, 2, stop=5)
    after, _ = run(published, join, 3, 1, state=lambda rank: states[min(rank, 1)], batch_size=64)
    read = collections.Counter(i for r in before + after for i in ids(r))
    assert read == planned_ids, "a sample lost or read twice"
    assert sum(len(ids(r)) for r in after) == sum(planned_ids.values()) - 2 * 5 * BATCH


def test_same_workers_resume_per_worker_state(published, join):
    # A StatefulDataLoader restarted with the same workers hands each worker its own state.
    planned, _ = run(published, join, 1, 2)
    before, states = run(published, join, 1, 2, stop=3)
    worker_states = states[0]["_snapshot"]["_worker_snapshots"]
    rest = []
    views = []
    for w in range(2):
        view = dataset(published, join).for_worker(w, 2)
        view.load_state_dict(worker_states[str(w)]["dataset_state"])
        views.append(list(view))
    assert sorted(ids(before[0]) + ids(views[0]) + ids(views[1])) == sorted(ids(planned[0]))


def test_numpy_output_and_columns(published, join):
    ds = dataset(published, join, output="numpy", columns=["id"])
    batch = next(iter(ds))
    assert list(batch) == ["id"]
    assert batch["id"].dtype.kind == "i" and len(batch["id"]) == BATCH


def test_a_state_of_another_dataset_is_refused(published, join):
    ds = dataset(published, join, seed=4)
    saved = dataset(published, join)
    next(iter(saved))
    ds.load_state_dict(saved.state_dict())
    with pytest.raises(tessera.TesseraError, match="does not fit this stream"):
        next(iter(ds))


@pytest.mark.skipif(torch is None, reason="PyTorch is not installed")
def test_with_torch_dataloader(published, join):
    seen = collections.Counter()
    for rank in range(2):
        ds = dataset(published, join, rank=rank, world_size=2)
        loader = torch.utils.data.DataLoader(ds, batch_size=None, num_workers=2)
        seen.update(i for b in loader for i in b.column("id").to_pylist())
    assert len(seen) == 4000 and set(seen.values()) == {1}


try:
    from torchdata.stateful_dataloader import StatefulDataLoader
except ImportError:
    StatefulDataLoader = None


@pytest.mark.skipif(StatefulDataLoader is None, reason="torchdata is not installed")
def test_stateful_dataloader_resumes_with_every_sample_once(published, join):
    planned = ids(dataset(published, join))
    loader = StatefulDataLoader(dataset(published, join), batch_size=None, num_workers=2)
    before = []
    for batch in loader:
        before.append(batch)
        if len(before) == 5:
            break
    saved = loader.state_dict()
    del loader
    again = StatefulDataLoader(dataset(published, join), batch_size=None, num_workers=2)
    again.load_state_dict(saved)
    after = list(again)
    assert sorted(ids(before) + ids(after)) == sorted(planned)


@pytest.mark.skipif(torch is None, reason="PyTorch is not installed")
def test_torch_output_is_tensors(published, join):
    batch = next(iter(dataset(published, join, output="torch", columns=["id"])))
    assert isinstance(batch["id"], torch.Tensor) and batch["id"].shape == (BATCH,)


def _rank_ids(rank, world, port, reference, join, out):
    """One rank of a torch.distributed job: its ids, with rank and world size from torch."""
    import torch.distributed as dist

    dist.init_process_group("gloo", init_method=f"tcp://127.0.0.1:{port}", rank=rank, world_size=world)
    try:
        ds = tessera.StreamingDataset(reference, batch_size=BATCH, seed=3, **join)
        out.put((rank, ids(ds)))
    finally:
        dist.destroy_process_group()


@pytest.mark.skipif(torch is None, reason="PyTorch is not installed")
def test_ranks_come_from_torch_distributed(published, join):
    import multiprocessing
    import socket

    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        port = s.getsockname()[1]
    ctx = multiprocessing.get_context("spawn")
    out = ctx.Queue()
    procs = [ctx.Process(target=_rank_ids, args=(r, 2, port, published["reference"], join, out))
             for r in range(2)]
    for p in procs:
        p.start()
    got = dict(out.get(timeout=120) for _ in procs)
    for p in procs:
        p.join(timeout=60)
        assert p.exitcode == 0
    # Two ranks, each its own half: every sample of the epoch's whole batches once.
    assert len(got[0]) == len(got[1]) == TOTAL // (2 * BATCH) * BATCH
    assert not set(got[0]) & set(got[1])
