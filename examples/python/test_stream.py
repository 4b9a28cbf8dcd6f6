"""Tests of tessera_stream.TesseraStream against a real network of storage nodes.

scripts/test-python starts the nodes and runs this with TESSERA (the binary), TESSERA_BOOTSTRAP
(a node's address) and TESSERA_WORK (a scratch directory) set. With PyTorch installed the
workers are a real DataLoader's; without it, a stand-in runs each worker's part in turn and
interleaves the batches as the DataLoader does.
"""

import json
import os
import subprocess
import unittest

import pyarrow as pa
import pyarrow.parquet as pq

from tessera_stream import StreamFailed, TesseraStream, to_torch, torch

WORK = os.environ["TESSERA_WORK"]
BOOTSTRAP = os.environ["TESSERA_BOOTSTRAP"]
TESSERA = os.environ["TESSERA"]

ROWS = [700, 1300, 400, 1000, 700]  # 4,100 samples in 5 shards
TOTAL = sum(ROWS)
BATCH = 100


def publish() -> str:
    data = os.path.join(WORK, "py-data")
    os.makedirs(data, exist_ok=True)
    start = 0
    for i, rows in enumerate(ROWS):
        ids = list(range(start, start + rows))
        table = pa.table({"id": pa.array(ids, pa.int64()), "text": [f"sample {x}" for x in ids]})
        pq.write_table(table, os.path.join(data, f"part-{i}.parquet"), row_group_size=256)
        start += rows
    out = subprocess.run(
        [TESSERA, "publish", data, "--name", "pytest", "--key", os.path.join(WORK, "py.key"),
         "--bootstrap", BOOTSTRAP],
        check=True, stdout=subprocess.PIPE, text=True,
    )
    return out.stdout.strip()


def loader(dataset: TesseraStream, workers: int):
    """The batches a rank's DataLoader with `workers` workers hands the training loop."""
    if torch is not None:
        from torch.utils.data import DataLoader

        yield from DataLoader(dataset, batch_size=None, num_workers=workers)
        return
    # One worker's batches after another's, then interleaved round-robin like DataLoader.
    parts = [list(dataset.iter_worker(w, workers)) for w in range(workers)]
    for i in range(max(len(p) for p in parts)):
        for part in parts:
            if i < len(part):
                yield part[i]


def ids(batch) -> list:
    return batch.column("id").to_pylist()


class StreamTest(unittest.TestCase):
    @classmethod
    def setUpClass(cls):
        cls.cid = publish()
        cls.cache = os.path.join(WORK, "py-cache")

    def dataset(self, **kw) -> TesseraStream:
        kw.setdefault("seed", 11)
        return TesseraStream(self.cid, batch_size=BATCH, bootstrap=[BOOTSTRAP], cache=self.cache,
                             tessera=TESSERA, **kw)

    def epoch_ids(self, epoch: int, world_size: int = 2, workers: int = 2) -> list:
        ranks = []
        for rank in range(world_size):
            ds = self.dataset(rank=rank, world_size=world_size, epoch=epoch)
            ranks.append([ids(b) for b in loader(ds, workers)])
        return ranks

    def test_ranks_and_workers_read_every_sample_once(self):
        ranks = self.epoch_ids(0)
        # Equal batch counts, full batches: 4,100 samples over 2 ranks of 100-sample batches
        # leaves 100 out (remainder "drop").
        self.assertEqual([len(r) for r in ranks], [20, 20])
        flat = [x for r in ranks for b in r for x in b]
        self.assertTrue(all(len(b) == BATCH for r in ranks for b in r))
        self.assertEqual(len(flat), 4000)
        self.assertEqual(len(set(flat)), 4000)
        self.assertTrue(set(flat) <= set(range(TOTAL)))
        # Shuffled: not the files' order.
        self.assertNotEqual(flat[:BATCH], list(range(BATCH)))

    def test_same_seed_same_order_other_epoch_differs(self):
        self.assertEqual(self.epoch_ids(1, workers=1), self.epoch_ids(1, workers=1))
        self.assertNotEqual(self.epoch_ids(1, workers=1), self.epoch_ids(2, workers=1))

    def test_pad_reads_every_sample(self):
        ds = self.dataset(remainder="pad")
        flat = [x for b in ds for x in ids(b)]
        self.assertEqual(len(flat), 4100)
        self.assertEqual(set(flat), set(range(TOTAL)))

    def test_resume_twice_equals_uninterrupted(self):
        whole = [x for b in self.dataset(rank=1, world_size=2) for x in ids(b)]
        ds = self.dataset(rank=1, world_size=2)
        got, consumed = [], 0
        for stop_after in (3, 7, None):
            ds.resume(consumed)
            for n, batch in enumerate(ds):
                got += ids(batch)
                consumed += batch.num_rows
                if stop_after is not None and n + 1 == stop_after:
                    break  # the process is stopped with batches still in the pipe
        self.assertEqual(got, whole)

    def test_state_file(self):
        whole = [x for b in self.dataset(rank=1, world_size=2) for x in ids(b)]
        path = os.path.join(WORK, "rank1.state")
        with_state = lambda: self.dataset(rank=1, world_size=2, extra_args=["--state", path])
        self.assertEqual([x for b in with_state() for x in ids(b)], whole)
        with open(path) as f:
            state = json.load(f)
        self.assertEqual((state["consumed"], state["rank"], state["seed"]), (2000, 1, 11))
        # Resuming a finished epoch yields nothing; from 750 samples, the rest.
        self.assertEqual(list(with_state()), [])
        state["consumed"] = 750
        with open(path, "w") as f:
            json.dump(state, f)
        self.assertEqual([x for b in with_state() for x in ids(b)], whole[750:])
        # A state saved by another stream is refused.
        state["seed"] = 12
        with open(path, "w") as f:
            json.dump(state, f)
        with self.assertRaises(StreamFailed):
            list(with_state())

    def test_columns_and_torch_conversion(self):
        batch = next(iter(self.dataset(columns=["id"])))
        self.assertEqual(batch.schema.names, ["id"])
        columns = to_torch(batch)
        self.assertEqual(len(columns["id"]), BATCH)
        if torch is not None:
            self.assertTrue(isinstance(columns["id"], torch.Tensor))
            # The tensor owns its memory: an in-place op leaves the batch as it was.
            before = batch.column(0).to_pylist()
            columns["id"].add_(1)
            self.assertEqual(batch.column(0).to_pylist(), before)
            self.assertEqual(columns["id"].tolist(), [x + 1 for x in before])

    def test_errors_reach_python(self):
        with self.assertRaises(StreamFailed):
            list(self.dataset(columns=["no_such_column"]))
        with self.assertRaises(ValueError):
            TesseraStream(self.cid, rank=2, world_size=2)


if __name__ == "__main__":
    unittest.main(verbosity=2)
