"""Shared fixtures: synthetic IDX data sets, throw-away MLflow stores, tiny configs. Helpers that tests import
live in ``tests/helpers/``."""

from __future__ import annotations

import os
import shutil
from pathlib import Path

import pytest

from helpers.configs import compose_config, tiny_overrides
from helpers.idx import write_idx_gz



@pytest.fixture(scope="session")
def data_root(tmp_path_factory) -> Path:
    """A data root holding synthetic Fashion-MNIST, MNIST and the MNIST sample as .gz files in torchvision's raw
    folders."""
    root = tmp_path_factory.mktemp("data")
    write_idx_gz(root / "FashionMNIST" / "raw", seed=0)
    write_idx_gz(root / "MNIST" / "raw", seed=10)
    write_idx_gz(root / "mnist_sample" / "MNIST" / "raw", seed=20)  # where data=mnist_sample looks under a root
    return root


@pytest.fixture(scope="session", autouse=True)
def keep_the_project_store_clean(tmp_path_factory):
    """Any run a test records without naming a store lands in a throw-away one, never in mlruns/; the data
    cache is the session's own."""
    previous = {key: os.environ.get(key) for key in ("MLFLOW_TRACKING_URI", "MLPLAB_CACHE")}
    os.environ["MLFLOW_TRACKING_URI"] = f"sqlite:///{tmp_path_factory.mktemp('default-store') / 'mlflow.db'}"
    os.environ["MLPLAB_CACHE"] = str(tmp_path_factory.mktemp("mlplab-cache"))  # unpacked copies, checksums
    yield
    for key, value in previous.items():
        if value is None:
            os.environ.pop(key, None)
        else:
            os.environ[key] = value


@pytest.fixture(scope="session")
def template_store(tmp_path_factory) -> Path:
    """A migrated, empty MLflow sqlite store (migration costs ~1.5 s: do it once, copy it per test)."""
    from mlplab.tracking.store import client_for

    folder = tmp_path_factory.mktemp("store")
    client_for(f"sqlite:///{folder / 'mlflow.db'}")
    return folder / "mlflow.db"


@pytest.fixture
def mlflow_uri(template_store, tmp_path) -> str:
    store = tmp_path / "mlruns"
    store.mkdir()
    shutil.copy(template_store, store / "mlflow.db")
    return f"sqlite:///{store / 'mlflow.db'}"


@pytest.fixture
def tiny_config(data_root):
    """``tiny_config(*overrides)``: the tiny training config with more overrides, a fresh copy per call."""
    def make(*overrides: str):
        return compose_config(tiny_overrides(data_root) + list(overrides))

    return make
