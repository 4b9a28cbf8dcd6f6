"""A training loop fed by Tessera: `pip install` the wheel (scripts/test-python builds it),
then

    python examples/python/train.py PUBLISHER/NAME@vN --bootstrap /ip4/.../p2p/... [--steps N]

Each data-loader worker reads its share of the epoch in-process, shuffled and verified; the
loop checkpoints the loader's state and resumes from it, with the same or another number of
workers. Run it under `torchrun` for several ranks: rank and world size come from there.
"""

import argparse
import json
import os

import tessera

try:  # torchdata's loader keeps each worker's state; without it, read in this process
    from torchdata.stateful_dataloader import StatefulDataLoader
except ImportError:
    StatefulDataLoader = None


def main() -> None:
    parser = argparse.ArgumentParser()
    parser.add_argument("reference")
    parser.add_argument("--bootstrap", action="append", default=[])
    parser.add_argument("--batch-size", type=int, default=256)
    parser.add_argument("--workers", type=int, default=2)
    parser.add_argument("--steps", type=int, default=None, help="stop after this many batches")
    parser.add_argument("--checkpoint", default="tessera-checkpoint.json")
    args = parser.parse_args()

    ds = tessera.StreamingDataset(args.reference, batch_size=args.batch_size, seed=7, bootstrap=args.bootstrap)
    if os.path.exists(args.checkpoint):
        with open(args.checkpoint) as f:
            ds.load_state_dict(json.load(f))
    if StatefulDataLoader is not None and args.workers > 0:
        loader = StatefulDataLoader(ds, batch_size=None, num_workers=args.workers)
    else:
        loader = ds
    rows = 0
    for step, batch in enumerate(loader, 1):
        rows += batch.num_rows  # the model's step goes here
        if args.steps is not None and step == args.steps:
            break
    with open(args.checkpoint, "w") as f:
        json.dump(loader.state_dict(), f)
    print(json.dumps({"rows": rows, "epoch": ds.epoch}))


if __name__ == "__main__":
    main()
