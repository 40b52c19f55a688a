"""What drawing each epoch's random variants costs, against the epoch it feeds, in one process.

    .venv/bin/python bench/augment_cost.py [--epochs 3] [--device cpu]

``data.random_shift=1 data.random_flip=true`` makes one gather over the 50 000 real Fashion-MNIST training
images before every epoch. Printed: the median time of that gather, the median epoch time of mlplab's
trainer with it on (the gather included) for the Q2 network (784-100-10, batch 300) and the Q3 network
(784-1024-512-10, batch 128), and the gather's share of each epoch; then the memory the stored
``data.expand`` copies take against the one working copy the gather needs.
"""

from __future__ import annotations

import argparse
import statistics
import tempfile
import time
from pathlib import Path

import torch

from mlplab.data import splits as data_module
from mlplab.data.augment import random_variants
from mlplab.apps.hydra_app import compose
from mlplab.training.loop import train

NETWORKS = {
    "Q2 784-100-10, batch 300": ["experiment=q2_shallow"],
    "Q3 784-1024-512-10, batch 128": ["experiment=q3_improved", "model.sizes=[784,1024,512,10]"],
}


def gather_seconds(splits: data_module.Splits, repeats: int = 7) -> float:
    generator = torch.Generator().manual_seed(0)
    times = []
    for _ in range(repeats):
        started = time.perf_counter()
        random_variants(splits.train.x, 1, True, splits.background, generator)
        if splits.train.x.is_cuda:
            torch.cuda.synchronize()
        times.append(time.perf_counter() - started)
    return statistics.median(times)


def epoch_seconds(overrides: list[str], splits: data_module.Splits, epochs: int, device: str) -> float:
    cfg = compose(overrides + ["data.random_shift=1", "data.random_flip=true", f"trainer.epochs={epochs}",
                                     f"trainer.device={device}", "tracking=off", "trainer.progress=false",
                                     "trainer.checkpoint=false", "trainer.keep_best=false"])
    with tempfile.TemporaryDirectory() as out:
        result = train(cfg, Path(out), quiet=True, splits=splits)
    return statistics.median(h["seconds"] for h in result.history[1:] or result.history)


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--epochs", type=int, default=3, help="epochs per network (the first is a warm-up)")
    parser.add_argument("--device", default="cpu")
    args = parser.parse_args()
    cfg = compose(["experiment=q3_improved"])  # standardised Fashion-MNIST, 10 000 validation images
    splits = data_module.load(cfg.data, torch.device(args.device))
    gather = gather_seconds(splits)
    print(f"gather over {len(splits.train)} images: {gather:.3f} s")
    for name, overrides in NETWORKS.items():
        epoch = epoch_seconds(overrides, splits, args.epochs, args.device)
        print(f"{name}: epoch {epoch:.2f} s, of which the gather is {100 * gather / epoch:.1f} %")
    image_bytes = splits.train.x[0].numel() * splits.train.x.element_size()
    print(f"memory: data.expand stores {5 * len(splits.train) * image_bytes / 2**20:.0f} MiB of training images, "
          f"random variants {2 * len(splits.train) * image_bytes / 2**20:.0f} MiB (the images and one working copy)")


if __name__ == "__main__":
    main()
