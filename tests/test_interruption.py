"""Interrupted mid-epoch by Ctrl-C or SIGTERM: the run is KILLED, its checkpoint resumes bit-identically."""

import json
import signal

import pytest
import torch

from helpers.configs import tiny_overrides
from helpers.console import CONSOLE_SCRIPT, run_cli, signal_when
from mlplab.tracking.store import client_for

# Dropout and Nesterov momentum: the checkpoint must carry both random generators and the optimiser state.
STATEFUL = ["regularization=dropout", "optimizer=nesterov", "optimizer.lr=0.1", "trainer.batch_size=10"]


@pytest.mark.parametrize("signum,exit_code", [(signal.SIGINT, 130), (signal.SIGTERM, 143)])
def test_interrupted_run_is_killed_and_resumes_to_the_uninterrupted_weights(data_root, mlflow_uri, tmp_path, signum, exit_code):
    common = [*tiny_overrides(data_root), *STATEFUL, "tracking=local", f"tracking.uri={mlflow_uri}"]
    interrupted = tmp_path / "interrupted"
    run = signal_when([str(CONSOLE_SCRIPT), *common, "trainer.epochs=100000", f"hydra.run.dir={interrupted}"],
                      tmp_path, interrupted / "checkpoint.pt", signum)
    assert run.returncode == exit_code, run.stderr
    result = json.loads((interrupted / "result.json").read_text())
    assert result["status"] == "killed"
    assert client_for(mlflow_uri).get_run(result["mlflow_run_id"]).info.status == "KILLED"

    done = torch.load(interrupted / "checkpoint.pt", weights_only=True)["epoch"]  # the last epoch that ended
    total = done + 2
    resumed, straight = tmp_path / "resumed", tmp_path / "straight"
    assert run_cli([*common, f"trainer.epochs={total}", f"trainer.resume={interrupted / 'checkpoint.pt'}",
                    f"hydra.run.dir={resumed}"], cwd=tmp_path).returncode == 0
    assert run_cli([*common, f"trainer.epochs={total}", f"hydra.run.dir={straight}"], cwd=tmp_path).returncode == 0
    a = torch.load(resumed / "model.pt", weights_only=True)
    b = torch.load(straight / "model.pt", weights_only=True)
    assert all(torch.equal(a[k], b[k]) for k in b)
    assert json.loads((resumed / "result.json").read_text())["epochs_run"] == total
