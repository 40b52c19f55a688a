"""One epoch of the Q2 network three ways, in one process, against the FLOP limit.

    .venv/bin/python bench/epoch_speed.py [--epochs 7] [--device cpu] [--skip-dataloader]

Every variant trains 784-100-10 (sigmoid, cross-entropy, SGD η = 1, batch 300) on the 60 000 real
Fashion-MNIST training images and then runs one evaluation pass over the 10 000 test images:
- mlplab: ``mlplab.training.loop.train`` — the harness as users run it (metrics, checkpoint, everything), timed
  between consecutive end-of-epoch callbacks;
- plain: the shortest honest PyTorch loop over tensors already on the device (index slices of a
  permutation), one epoch of it run inside each of mlplab's callbacks so both see the same machine;
- dataloader: torchvision ``FashionMNIST`` + ``ToTensor`` + ``DataLoader`` — the textbook way.
The FLOP limit is the epoch's matrix-multiply work (forward 2·n·Σ fan_in·fan_out, backward twice that)
divided by a measured sgemm rate. The printed figures are medians over the timed epochs after a warm-up.
"""

from __future__ import annotations

import argparse
import statistics
import tempfile
import time
from pathlib import Path

import torch
from torch.utils.data import DataLoader
from torchvision import datasets, transforms

from mlplab.data import splits as data_module
from mlplab.data.idx import locate
from mlplab.config import DataConfig, TrainConfig
from mlplab.nn.initializers import initialize
from mlplab.nn.costs import cross_entropy
from mlplab.nn.model import MLP
from mlplab.training.loop import train

SIZES, BATCH, LR = [784, 100, 10], 300, 1.0


def sgemm_gflops(device: torch.device, n: int = 2048, repeats: int = 10) -> float:
    a, b = torch.randn(n, n, device=device), torch.randn(n, n, device=device)
    for _ in range(2):
        a @ b
    sync(device)
    started = time.perf_counter()
    for _ in range(repeats):
        a @ b
    sync(device)
    return 2 * n**3 * repeats / (time.perf_counter() - started) / 1e9


def sync(device: torch.device) -> None:
    if device.type == "cuda":
        torch.cuda.synchronize()


def epoch_flops(n_train: int, n_eval: int) -> float:
    forward = 2 * sum(a * b for a, b in zip(SIZES[:-1], SIZES[1:]))
    return 3 * forward * n_train + forward * n_eval


def new_model(device: torch.device) -> MLP:
    net = MLP(SIZES, "sigmoid", "sigmoid")
    initialize(net, TrainConfig().initializer, seed=0)
    return net.to(device)


class PlainLoop:
    """The shortest honest PyTorch loop over tensors already on the device (index slices of a permutation)."""

    def __init__(self, splits: data_module.Splits, device: torch.device):
        self.splits, self.device = splits, device
        self.net = new_model(device)
        self.optimizer = torch.optim.SGD(self.net.parameters(), lr=LR)

    def epoch(self) -> float:
        started = time.perf_counter()
        x_train, y_train = self.splits.train.x, self.splits.train.y
        permutation = torch.randperm(len(y_train), device=self.device)
        for start in range(0, len(y_train), BATCH):
            batch = permutation[start : start + BATCH]
            loss = cross_entropy(self.net(x_train[batch]), y_train[batch], "sigmoid")
            self.optimizer.zero_grad(set_to_none=True)
            loss.backward()
            self.optimizer.step()
        with torch.inference_mode():
            (self.net(self.splits.validation.x).argmax(1) == self.splits.validation.y).float().mean().item()
        sync(self.device)
        return time.perf_counter() - started


def time_mlplab_and_plain(splits: data_module.Splits, epochs: int, device: torch.device) -> tuple[list[float], list[float]]:
    """Interleaved, so drifts in the machine's speed hit both alike: a plain epoch runs inside each of
    mlplab's end-of-epoch callbacks, and mlplab's epoch time is measured between callbacks."""
    cfg = TrainConfig()
    cfg.trainer.epochs, cfg.trainer.batch_size, cfg.trainer.progress = epochs + 1, BATCH, False
    cfg.trainer.device, cfg.optimizer.lr = device.type, LR
    plain = PlainLoop(splits, device)
    mlplab_times, plain_times = [], []
    callback_left = [time.perf_counter()]

    def between_epochs(metrics) -> None:
        mlplab_times.append(time.perf_counter() - callback_left[0])
        plain_times.append(plain.epoch())
        callback_left[0] = time.perf_counter()

    with tempfile.TemporaryDirectory() as out:
        train(cfg, Path(out), quiet=True, splits=splits, on_epoch=between_epochs)
    return mlplab_times[1:], plain_times[1:]  # the first epoch of each is the warm-up


def time_dataloader(root: Path, epochs: int, device: torch.device) -> list[float]:
    to_tensor = transforms.ToTensor()
    train_set = datasets.FashionMNIST(str(root), train=True, transform=to_tensor)
    test_set = datasets.FashionMNIST(str(root), train=False, transform=to_tensor)
    train_loader = DataLoader(train_set, batch_size=BATCH, shuffle=True)
    test_loader = DataLoader(test_set, batch_size=10_000)
    net = new_model(device)
    optimizer = torch.optim.SGD(net.parameters(), lr=LR)
    times = []
    for _ in range(epochs + 1):
        started = time.perf_counter()
        for images, labels in train_loader:
            images, labels = images.to(device).flatten(1), labels.to(device)
            loss = cross_entropy(net(images), labels, "sigmoid")
            optimizer.zero_grad(set_to_none=True)
            loss.backward()
            optimizer.step()
        with torch.inference_mode():
            for images, labels in test_loader:
                (net(images.to(device).flatten(1)).argmax(1) == labels.to(device)).float().mean().item()
        sync(device)
        times.append(time.perf_counter() - started)
    return times[1:]


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--epochs", type=int, default=7, help="timed epochs per variant (after one warm-up)")
    parser.add_argument("--device", default="cuda" if torch.cuda.is_available() else "cpu")
    parser.add_argument("--skip-dataloader", action="store_true", help="the slowest variant")
    args = parser.parse_args()
    device = torch.device(args.device)

    data_cfg = DataConfig(validation_size=0)
    root, _ = locate(data_cfg)
    loaded = data_module.load(data_cfg, device)
    # The test images stand in as the validation pass, so all 60 000 training images are trained on.
    splits = data_module.Splits(loaded.train, loaded.test, loaded.test, loaded.num_classes, loaded.class_names, loaded.source)

    peak = sgemm_gflops(device)
    limit = epoch_flops(len(splits.train), len(splits.test)) / (peak * 1e9)
    mlplab_times, plain_times = time_mlplab_and_plain(splits, args.epochs, device)
    rows = [("mlplab trainer", statistics.median(mlplab_times)), ("plain tensor loop", statistics.median(plain_times))]
    if not args.skip_dataloader:
        rows.append(("DataLoader + ToTensor", statistics.median(time_dataloader(root, args.epochs, device))))
    plain = rows[1][1]

    print(f"device {device}, torch {torch.__version__}, {torch.get_num_threads()} threads; "
          f"sgemm peak {peak:.0f} GFLOP/s; epoch = {len(splits.train)} training + {len(splits.test)} evaluation images")
    print(f"| loop | s / epoch | × plain loop | × FLOP limit ({limit:.3f} s) |")
    print("|---|---:|---:|---:|")
    for name, seconds in rows:
        print(f"| {name} | {seconds:.3f} | {seconds / plain:.2f} | {seconds / limit:.1f} |")


if __name__ == "__main__":
    main()
