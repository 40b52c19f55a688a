"""Nielsen's chapter-1 epoch three ways, in one process: the seed engine, autograd, and his network.py.

    .venv/bin/python bench/engine_speed.py [--epochs 3]

Setting: ``experiment=nielsen_ch1`` — 784-30-10 sigmoid, quadratic cost, N(0,1) weights, SGD η = 3,
mini-batch 10 — on the 50 000 training images of real Fashion-MNIST, each epoch followed by a pass over
the 10 000 validation images (as network.py's ``SGD(..., test_data=...)`` does):
- seed: ``mlplab.training.loop.train`` with ``trainer.engine=seed`` (nn/backprop.py: the four equations, fused SGD);
- autograd: the same trainer with ``trainer.engine=autograd``;
- network.py: Nielsen's own code (bench/nielsen_network.py, ported to Python 3 unchanged in substance).
The variants run in turn, one epoch each per round, so drifts in this machine's speed hit all alike; the
figures are medians over the rounds after a warm-up round. Target: network.py / seed ≥ 5.
"""

from __future__ import annotations

import argparse
import statistics
import sys
import tempfile
import time
from pathlib import Path

import numpy as np
import torch

sys.path.insert(0, str(Path(__file__).resolve().parent))

from nielsen_network import Network, as_nielsen_data  # noqa: E402

from mlplab.data import splits as data_module  # noqa: E402
from mlplab.apps.hydra_app import compose  # noqa: E402
from mlplab.training.loop import train  # noqa: E402


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--epochs", type=int, default=3, help="timed rounds (after one warm-up round)")
    args = parser.parse_args()

    cfg = compose(["experiment=nielsen_ch1", "tracking=off", "trainer.progress=false", "trainer.checkpoint=false",
                         "trainer.epochs=1", "trainer.device=cpu"])
    splits = data_module.load(cfg.data, torch.device("cpu"))
    training = as_nielsen_data(splits.train.x.numpy(), splits.train.y.numpy(), one_hot=True)
    validation = as_nielsen_data(splits.validation.x.numpy(), splits.validation.y.numpy(), one_hot=False)
    network, rng = Network(cfg.model.sizes), np.random.default_rng(0)

    def network_py() -> float:
        started = time.perf_counter()
        network.sgd_epoch(training, cfg.trainer.batch_size, cfg.optimizer.lr, rng)
        network.evaluate(validation)
        return time.perf_counter() - started

    def mlplab(engine: str):
        def epoch() -> float:
            cfg.trainer.engine = engine
            with tempfile.TemporaryDirectory() as folder:
                result = train(cfg, Path(folder), quiet=True, splits=splits)
            return result.history[0]["seconds"]  # the epoch with its validation pass, as the trainer times it

        return epoch

    variants = {"seed engine": mlplab("seed"), "autograd engine": mlplab("autograd"), "network.py": network_py}
    seconds: dict[str, list[float]] = {name: [] for name in variants}
    for round_ in range(args.epochs + 1):
        for name, epoch in variants.items():
            took = epoch()
            if round_:  # the first round warms caches and lazy initialisation
                seconds[name].append(took)
    median = {name: statistics.median(values) for name, values in seconds.items()}
    print(f"torch {torch.__version__}, {torch.get_num_threads()} threads available; nielsen_ch1 on "
          f"{len(splits.train)} Fashion-MNIST images, mini-batch {cfg.trainer.batch_size}; median of {args.epochs} rounds")
    print("| engine | s / epoch | network.py ÷ this |")
    print("|---|---:|---:|")
    for name, value in median.items():
        print(f"| {name} | {value:.3f} | {median['network.py'] / value:.2f} |")


if __name__ == "__main__":
    main()
