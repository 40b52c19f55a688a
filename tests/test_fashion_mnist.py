"""Real Fashion-MNIST (Debian's dataset-fashion-mnist, installed by the set-up): slow, still run in CI."""

import os
from pathlib import Path

import pytest

from helpers.configs import compose_config
from mlplab.data.idx import DEBIAN_FASHION_MNIST, IDX_FILES
from mlplab.training.loop import train

pytestmark = pytest.mark.slow

HAVE_REAL_DATA = all((DEBIAN_FASHION_MNIST / f"{name}.gz").is_file() for name in IDX_FILES)


@pytest.fixture(scope="module")
def real_root(tmp_path_factory) -> Path:
    if not HAVE_REAL_DATA:
        pytest.fail(f"real Fashion-MNIST is missing from {DEBIAN_FASHION_MNIST}: run `make setup` (apt-get install dataset-fashion-mnist)")
    # No data.root: the loader must find Debian's files by itself and unpack them into its cache (the session's own,
    # conftest.py); a data.root the user names is never swapped for them.
    assert "MLPLAB_DATA" not in os.environ, "unset MLPLAB_DATA: these tests load the default data"
    return Path(os.environ["MLPLAB_CACHE"])


def test_q2_network_reaches_85_percent_test_accuracy_within_5_epochs(real_root, tmp_path):
    # The Assignment 6 Q2 network: 784-100-10, sigmoid, logistic loss, mini-batch SGD of 300 (Nesterov momentum).
    cfg = compose_config(["experiment=q2_shallow", "data.download=false",
                          "optimizer=nesterov", "optimizer.lr=0.1", "trainer.epochs=5", "trainer.progress=false",
                          "trainer.device=cpu"])
    assert (cfg.model.sizes, cfg.model.activation, cfg.loss.name, cfg.trainer.batch_size) == (
        [784, 100, 10], "sigmoid", "cross_entropy", 300)
    result = train(cfg, tmp_path)
    assert result.device == "cpu" and (real_root / "FashionMNIST" / "raw" / IDX_FILES[0]).is_file()
    assert result.status == "finished" and result.epochs_run == 5
    assert result.test_accuracy >= 0.85, result
    assert len(result.history) == 5 and result.history[-1]["images_seen"] == 5 * 50_000


def test_default_job_learns_on_real_data_with_plain_sgd(real_root, tmp_path):
    """The README's main job (plain SGD, η = 1) after 3 epochs: well on its way, far above chance."""
    cfg = compose_config(["data.download=false", "trainer.epochs=3",
                          "trainer.progress=false", "trainer.device=cpu"])
    result = train(cfg, tmp_path)
    assert result.status == "finished" and result.test_accuracy >= 0.80
