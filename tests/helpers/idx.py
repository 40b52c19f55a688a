"""Small synthetic data sets in the real IDX format, written as .gz files.

The synthetic images are learnable on purpose: class k lights up its own 6×6 patch on top of noise, so a
test can assert that training really learns (accuracy far above chance), not just that it ran.
"""

from __future__ import annotations

import gzip
import struct
from pathlib import Path

import numpy as np

N_TRAIN, N_TEST = 700, 200


def synthetic_images(n: int, seed: int) -> tuple[np.ndarray, np.ndarray]:
    rng = np.random.default_rng(seed)
    labels = np.arange(n) % 10
    rng.shuffle(labels)
    images = rng.integers(0, 90, size=(n, 28, 28), dtype=np.uint8)
    for i, k in enumerate(labels):
        row, col = 2 + 8 * (k // 4), 2 + 6 * (k % 4)
        images[i, row : row + 6, col : col + 6] = rng.integers(180, 256, size=(6, 6), dtype=np.uint8)
    return images, labels.astype(np.uint8)


def idx_bytes(array: np.ndarray) -> bytes:
    """IDX format: magic 0x0000 08 <ndim>, big-endian int32 dimensions, then the unsigned bytes."""
    header = struct.pack(">HBB", 0, 0x08, array.ndim) + struct.pack(f">{array.ndim}I", *array.shape)
    return header + array.astype(np.uint8).tobytes()


def write_idx_gz(folder: Path, seed: int = 0) -> Path:
    folder.mkdir(parents=True, exist_ok=True)
    train_x, train_y = synthetic_images(N_TRAIN, seed)
    test_x, test_y = synthetic_images(N_TEST, seed + 1)
    for name, array in (("train-images-idx3-ubyte", train_x), ("train-labels-idx1-ubyte", train_y),
                        ("t10k-images-idx3-ubyte", test_x), ("t10k-labels-idx1-ubyte", test_y)):
        with gzip.open(folder / f"{name}.gz", "wb") as out:
            out.write(idx_bytes(array))
    return folder
