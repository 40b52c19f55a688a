"""Where the IDX files of MNIST / Fashion-MNIST are, and whether they are whole.

torchvision's ``MNIST`` / ``FashionMNIST`` parse the decompressed files in ``<root>/<Class>/raw``. They are
looked for there, then as ``.gz`` files in the raw folder or ``data.root``, then in Debian's
``dataset-fashion-mnist`` folder, then fetched by torchvision's download when allowed.
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

from ..errors import DataError
from ..files import write_atomic

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


def raw_dir(root: Path, dataset: Dataset) -> Path:
    """Where torchvision looks for the decompressed IDX files."""
    return root / dataset.class_name / "raw"


def _has_idx_files(folder: Path) -> bool:
    return all((folder / name).is_file() for name in IDX_FILES)


def _decompress_from(source: Path, target: Path) -> bool:
    """Decompress ``<name>.gz`` files from ``source`` into ``target``; False when any is missing."""
    if not all((source / f"{name}.gz").is_file() for name in IDX_FILES):
        return False
    for name in IDX_FILES:
        packed_path = source / f"{name}.gz"

        def unpack(partial: Path) -> None:
            with gzip.open(packed_path, "rb") as packed, open(partial, "wb") as out:
                shutil.copyfileobj(packed, out)

        try:
            write_atomic(target / name, unpack)  # an interrupted copy never looks like a complete file
        except (EOFError, gzip.BadGzipFile, zlib.error) as error:
            raise DataError(f"{packed_path} is truncated or corrupt: replace it with a good copy") from error
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


def data_root(cfg) -> Path:
    """``data.root``, else $MLPLAB_DATA, else ~/.cache/mlplab."""
    root = cfg.root or os.environ.get("MLPLAB_DATA") or "~/.cache/mlplab"
    return Path(root).expanduser().resolve()


def locate(cfg) -> tuple[Path, Dataset]:
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


