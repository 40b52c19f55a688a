"""MNIST / Fashion-MNIST as whole tensors on the device.

torchvision's ``MNIST`` / ``FashionMNIST`` parse the IDX files; everything after that is tensor work: a
split is one ``[n, 784]`` float tensor scaled to [0, 1] and one ``[n]`` label tensor, and the trainer
takes mini-batches as index slices of a permutation. Files are looked for in ``data.root``, then in
Debian's ``dataset-fashion-mnist`` folder, then fetched by torchvision's download when allowed.
"""

from __future__ import annotations

import gzip
import hashlib
import math
import os
import shutil
import socket
import struct
import zlib
from dataclasses import dataclass
from pathlib import Path
from typing import TYPE_CHECKING

import torch

from .config import DataConfig

if TYPE_CHECKING:
    from torchvision import datasets

DEBIAN_FASHION_MNIST = Path("/usr/share/datasets/fashion-mnist")
IDX_FILES = (
    "train-images-idx3-ubyte",
    "train-labels-idx1-ubyte",
    "t10k-images-idx3-ubyte",
    "t10k-labels-idx1-ubyte",
)
DOWNLOAD_TIMEOUT_S = 30


@dataclass(frozen=True)
class Dataset:
    """Which torchvision class parses a data set, and where its files can come from."""

    title: str
    class_name: str  # in torchvision.datasets, which is imported only when data is loaded (it costs ~2 s)
    system_dir: Path | None  # a folder a system package installs the .gz files into
    system_package: str | None

    @property
    def torchvision_class(self) -> type:
        from torchvision import datasets

        return getattr(datasets, self.class_name)


DATASETS = {
    "fashion_mnist": Dataset("Fashion-MNIST", "FashionMNIST", DEBIAN_FASHION_MNIST, "dataset-fashion-mnist"),
    "mnist": Dataset("MNIST", "MNIST", None, None),
}


class DataError(RuntimeError):
    """The data cannot be had; the message is one line naming the remedy."""


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

    @property
    def input_size(self) -> int:
        return self.train.x.shape[1]


def raw_dir(root: Path, dataset: Dataset) -> Path:
    """Where torchvision looks for the decompressed IDX files."""
    return root / dataset.class_name / "raw"


def _has_idx_files(folder: Path) -> bool:
    return all((folder / name).is_file() for name in IDX_FILES)


def _decompress_from(source: Path, target: Path) -> bool:
    """Decompress ``<name>.gz`` files from ``source`` into ``target``; False when any is missing."""
    if not all((source / f"{name}.gz").is_file() for name in IDX_FILES):
        return False
    target.mkdir(parents=True, exist_ok=True)
    for name in IDX_FILES:
        packed_path, partial = source / f"{name}.gz", target / f"{name}.partial"
        # Write beside and rename, so an interrupted copy never looks like a complete file.
        try:
            with gzip.open(packed_path, "rb") as packed, open(partial, "wb") as out:
                shutil.copyfileobj(packed, out)
        except BaseException as error:
            partial.unlink(missing_ok=True)
            if isinstance(error, (EOFError, gzip.BadGzipFile, zlib.error)):
                raise DataError(f"{packed_path} is truncated or corrupt: replace it with a good copy") from error
            raise
        partial.replace(target / name)
    return True


def check_idx_files(folder: Path) -> None:
    """Each IDX file starts with its magic number (0x00000803 images, 0x00000801 labels) and holds exactly the
    bytes its header announces, and each split has as many labels as images. (torchvision checks the first
    with a bare assert and the last not at all.)"""
    counts = {}
    for name in IDX_FILES:
        path, ndim = folder / name, 3 if "images" in name else 1
        fix = f"replace it with a good copy (or delete it to unpack {name}.gz again)"
        with open(path, "rb") as stream:
            header = stream.read(4 + 4 * ndim)
        if len(header) < 4 + 4 * ndim or header[:4] != struct.pack(">I", 0x800 + ndim):
            raise DataError(f"{path} is not an IDX file (it starts 0x{header[:4].hex()}, not {0x800 + ndim:#010x}): {fix}")
        dims = struct.unpack(f">{ndim}I", header[4:])
        size, expected = path.stat().st_size, len(header) + math.prod(dims)
        if size != expected:
            raise DataError(f"{path} holds {size} bytes, not the {expected} its header announces: {fix}")
        counts[name] = dims[0]
    for split, prefix in (("training", "train"), ("test", "t10k")):
        images, labels = counts[f"{prefix}-images-idx3-ubyte"], counts[f"{prefix}-labels-idx1-ubyte"]
        if images != labels:
            raise DataError(f"{folder} has {images} {split} images but {labels} labels: "
                            f"replace them with matching {prefix}-images and {prefix}-labels files")


def _try_download(root: Path, dataset: Dataset) -> bool:
    previous = socket.getdefaulttimeout()
    socket.setdefaulttimeout(DOWNLOAD_TIMEOUT_S)
    try:
        dataset.torchvision_class(str(root), train=True, download=True)
        dataset.torchvision_class(str(root), train=False, download=True)
        return True
    except Exception:  # noqa: BLE001 - any failure here means "no network"; the caller says what to do
        return False
    finally:
        socket.setdefaulttimeout(previous)


def data_root(cfg: DataConfig) -> Path:
    root = cfg.root or os.environ.get("MLPLAB_DATA") or "~/.cache/mlplab"
    return Path(root).expanduser().resolve()


def locate(cfg: DataConfig) -> tuple[Path, Dataset]:
    """Make sure the decompressed IDX files are under ``<root>/<Class>/raw``; return the root."""
    dataset = DATASETS[cfg.name]
    root = data_root(cfg)
    target = raw_dir(root, dataset)
    if _has_idx_files(target):
        return root, dataset
    # .gz files put in the raw folder or the root itself, then the system package's folder.
    for source in (target, root, dataset.system_dir):
        if source is not None and _decompress_from(source, target):
            return root, dataset
    if cfg.download and _try_download(root, dataset):
        return root, dataset
    remedy = f"put {', '.join(n + '.gz' for n in IDX_FILES)} in {target}"
    if dataset.system_package:
        remedy = f"run `apt-get install {dataset.system_package}` or {remedy}"
    tried = "download disabled" if not cfg.download else "download failed (no network?)"
    raise DataError(f"{dataset.title} not found under {root} ({tried}): {remedy}")


def checksum(folder: Path) -> str:
    """SHA-256 over the four IDX files, cached beside them (keyed by size and mtime): ~0.2 s the first time."""
    files = [folder / name for name in IDX_FILES]
    key = ";".join(f"{f.name}:{f.stat().st_size}:{f.stat().st_mtime_ns}" for f in files)
    cache = folder / ".mlplab-sha256"
    if cache.is_file():
        cached_key, _, cached = cache.read_text().partition("\n")
        if cached_key == key:
            return cached
    digest = hashlib.sha256()
    for f in files:
        with open(f, "rb") as stream:
            for block in iter(lambda: stream.read(1 << 20), b""):
                digest.update(block)
    try:
        cache.write_text(f"{key}\n{digest.hexdigest()}")
    except OSError:
        pass  # a read-only data folder only costs the recomputation next time
    return digest.hexdigest()


def _as_split(parsed: datasets.MNIST, device: torch.device) -> Split:
    x = parsed.data.reshape(parsed.data.shape[0], -1).to(device=device, dtype=torch.float32).div_(255.0)
    return Split(x, parsed.targets.to(device=device, dtype=torch.int64))


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


def load(cfg: DataConfig, device: torch.device) -> Splits:
    """Load, split, subset, expand and scale a data set; every split ends up on ``device``."""
    root, dataset = locate(cfg)
    check_idx_files(raw_dir(root, dataset))
    parsed_train = dataset.torchvision_class(str(root), train=True, download=False)
    parsed_test = dataset.torchvision_class(str(root), train=False, download=False)
    class_names = list(parsed_train.classes)
    full_train, test = _as_split(parsed_train, device), _as_split(parsed_test, device)

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

    background = 0.0
    if cfg.standardize:
        mean, std = train.x.mean(), train.x.std()
        for split in (train, validation, test):
            if split is not None:
                split.x.sub_(mean).div_(std)
        background = float(-mean / std)

    return Splits(train, validation, test, len(class_names), class_names, raw_dir(root, dataset), background)
