"""MNIST / Fashion-MNIST as whole tensors on the device.

A split is one ``[n, 784]`` float tensor scaled to [0, 1] and one ``[n]`` label tensor; the trainer takes
mini-batches as index slices of a permutation (``batches.py``). The validation images are carved from the
training split by ``data.split_seed`` alone.
"""

from __future__ import annotations

from dataclasses import dataclass
from pathlib import Path

import torch

from ..errors import DataError
from .idx import check_idx_files, locate, raw_dir, read_idx


@dataclass
class Split:
    x: torch.Tensor  # [n, 784] float in [0, 1] (or standardised)
    y: torch.Tensor  # [n] int64 class index

    def __len__(self) -> int:
        return self.y.shape[0]


@dataclass
class Splits:
    train: Split
    validation: Split | None
    test: Split
    num_classes: int
    class_names: list[str]
    source: Path  # the folder the IDX files were read from
    background: float = 0.0  # a blank pixel's value after scaling (what random shifts fill in)
    pixel_mean: float = 0.0  # x ← (x − pixel_mean) / pixel_std was applied to every split (0 and 1: not at all)
    pixel_std: float = 1.0

    @property
    def input_size(self) -> int:
        return self.train.x.shape[1]


def _as_split(images: torch.Tensor, labels: torch.Tensor, device: torch.device) -> Split:
    x = images.reshape(images.shape[0], -1).to(device=device, dtype=torch.float32).div_(255.0)
    return Split(x, labels.to(device=device, dtype=torch.int64))


def _keep_classes(split: Split, classes: list[int]) -> Split:
    """Keep only ``classes`` and re-index their labels to 0..k-1 in the order given."""
    relabel = torch.full((10,), -1, dtype=torch.int64, device=split.y.device)
    relabel[torch.tensor(classes, device=split.y.device)] = torch.arange(len(classes), device=split.y.device)
    new_labels = relabel[split.y]
    keep = new_labels >= 0
    return Split(split.x[keep], new_labels[keep])


def _take(split: Split, index: torch.Tensor) -> Split:
    return Split(split.x[index], split.y[index])


def shifted_copies(x: torch.Tensor, side: int = 28) -> torch.Tensor:
    """The four 1-pixel shifts (down, up, right, left) of each image, zero-filled like expand_mnist."""
    images = x.reshape(-1, side, side)
    shifts = []
    for dim, step in ((1, 1), (1, -1), (2, 1), (2, -1)):
        moved = torch.roll(images, shifts=step, dims=dim)
        edge = 0 if step > 0 else side - 1  # the row/column that wrapped around
        moved.select(dim, edge).zero_()
        shifts.append(moved.reshape(x.shape[0], -1))
    return torch.cat(shifts)


def load(cfg, device: torch.device) -> Splits:
    """Load, split, subset, expand and scale a data set (``cfg`` is the data config); every split ends up on
    ``device``."""
    root, dataset = locate(cfg)
    check_idx_files(raw_dir(root, dataset))
    raw = raw_dir(root, dataset)
    class_names = list(dataset.class_names)
    full_train, test = (_as_split(read_idx(raw / f"{prefix}-images-idx3-ubyte"), read_idx(raw / f"{prefix}-labels-idx1-ubyte"),
                                  device) for prefix in ("train", "t10k"))

    if cfg.classes is not None:
        full_train, test = _keep_classes(full_train, cfg.classes), _keep_classes(test, cfg.classes)
        class_names = [class_names[c] for c in cfg.classes]

    # The validation images are fixed by data.split_seed alone, so runs with other seeds compare fairly.
    generator = torch.Generator().manual_seed(cfg.split_seed)
    order = torch.randperm(len(full_train), generator=generator).to(device)
    if cfg.validation_size >= len(full_train):
        raise DataError(
            f"data.validation_size={cfg.validation_size} leaves no training images "
            f"({len(full_train)} available): lower it"
        )
    validation = _take(full_train, order[: cfg.validation_size]) if cfg.validation_size else None
    train_index = order[cfg.validation_size :]
    if cfg.fraction < 1.0:
        train_index = train_index[: max(1, round(cfg.fraction * len(train_index)))]
    train = _take(full_train, train_index)

    if cfg.expand:
        train = Split(torch.cat([train.x, shifted_copies(train.x)]), train.y.repeat(5))

    background, mean, std = 0.0, 0.0, 1.0
    if cfg.standardize:
        mean, std = train.x.mean(), train.x.std()
        for split in (train, validation, test):
            if split is not None:
                split.x.sub_(mean).div_(std)
        background, mean, std = float(-mean / std), float(mean), float(std)

    return Splits(train, validation, test, len(class_names), class_names, raw_dir(root, dataset), background,
                  mean, std)
