"""Shared fixtures: small synthetic IDX data sets written as .gz files, and config composition.

The synthetic images are learnable on purpose: class k lights up its own 6×6 patch on top of noise,
so a test can assert that training really learns (accuracy far above chance), not just that it ran.
"""

from __future__ import annotations

import gzip
import os
import shutil
import struct
import subprocess
import sys
from pathlib import Path

import numpy as np
import pytest

from mlplab.cli import compose_train
from mlplab.config import TrainConfig

REPO = Path(__file__).resolve().parents[1]
CONSOLE_SCRIPT = Path(sys.executable).parent / "mlplab-train"  # installed beside the interpreter running the tests
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


@pytest.fixture(scope="session")
def data_root(tmp_path_factory) -> Path:
    """A data root holding synthetic Fashion-MNIST and MNIST as .gz files in torchvision's raw folders."""
    root = tmp_path_factory.mktemp("data")
    write_idx_gz(root / "FashionMNIST" / "raw", seed=0)
    write_idx_gz(root / "MNIST" / "raw", seed=10)
    return root


@pytest.fixture(scope="session", autouse=True)
def keep_the_project_store_clean(tmp_path_factory):
    """Any run a test records without naming a store lands in a throw-away one, never in mlruns/."""
    previous = os.environ.get("MLFLOW_TRACKING_URI")
    os.environ["MLFLOW_TRACKING_URI"] = f"sqlite:///{tmp_path_factory.mktemp('default-store') / 'mlflow.db'}"
    yield
    if previous is None:
        os.environ.pop("MLFLOW_TRACKING_URI", None)
    else:
        os.environ["MLFLOW_TRACKING_URI"] = previous


@pytest.fixture(scope="session")
def template_store(tmp_path_factory) -> Path:
    """A migrated, empty MLflow sqlite store (migration costs ~1.5 s: do it once, copy it per test)."""
    from mlplab.tracking import client_for

    folder = tmp_path_factory.mktemp("store")
    client_for(f"sqlite:///{folder / 'mlflow.db'}")
    return folder / "mlflow.db"


@pytest.fixture
def mlflow_uri(template_store, tmp_path) -> str:
    store = tmp_path / "mlruns"
    store.mkdir()
    shutil.copy(template_store, store / "mlflow.db")
    return f"sqlite:///{store / 'mlflow.db'}"


def tiny_overrides(data_root: Path) -> list[str]:
    """Overrides that make any config train in well under a second on the synthetic data."""
    return [f"data.root={data_root}", "data.validation_size=100", "data.download=false", "tracking=off",
            "trainer.epochs=1", "trainer.batch_size=50", "trainer.progress=false", "trainer.device=cpu"]


def compose_config(overrides: list[str]) -> TrainConfig:
    return compose_train(overrides)


@pytest.fixture
def tiny_config(data_root):
    def make(*overrides: str) -> TrainConfig:
        return compose_config(tiny_overrides(data_root) + list(overrides))

    return make


def run_cli(args: list[str], cwd: Path, env_extra: dict | None = None, timeout: float = 300) -> subprocess.CompletedProcess:
    """Run ``mlplab-train`` as a user would, in its own process."""
    env = {**os.environ, "PYTHONUNBUFFERED": "1", **(env_extra or {})}
    env.pop("HYDRA_FULL_ERROR", None)
    command = [str(CONSOLE_SCRIPT), *args]
    return subprocess.run(command, cwd=cwd, env=env, capture_output=True, text=True, timeout=timeout)


def signal_when(command: list[str], cwd: Path, ready: Path, signum: int, timeout: float = 120) -> subprocess.CompletedProcess:
    """Start ``command``, wait until ``ready`` exists (e.g. a first checkpoint), send ``signum``, collect it."""
    import time

    process = subprocess.Popen(command, cwd=cwd, stdout=subprocess.PIPE, stderr=subprocess.PIPE, text=True)
    deadline = time.time() + timeout
    while not ready.exists() and time.time() < deadline and process.poll() is None:
        time.sleep(0.1)
    process.send_signal(signum)
    try:
        stdout, stderr = process.communicate(timeout=timeout)
    except subprocess.TimeoutExpired:
        process.kill()  # a process that ignored the signal must not outlive the test
        process.communicate()
        raise
    return subprocess.CompletedProcess(command, process.returncode, stdout, stderr)
