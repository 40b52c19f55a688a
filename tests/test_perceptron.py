"""The perceptron algorithm of the slides, on hand-sized examples and through mlplab-perceptron."""

from __future__ import annotations

import functools

import contextlib
import json
import math

import pytest
import torch

from helpers.console import run_cli
from mlplab.errors import ConfigError
from mlplab.config import DataConfig
from mlplab.data.splits import load
from mlplab.apps.perceptron import PerceptronConfig
from mlplab.course.perceptron import error_rate, fit, misclassified, predict, signed_labels, update

XOR_X = torch.tensor([[0.0, 0.0], [1.0, 1.0], [0.0, 1.0], [1.0, 0.0]])
XOR_Y = torch.tensor([-1, -1, 1, 1])


@pytest.fixture
def run_perceptron():
    """run_cli, pointed at the mlplab-perceptron console script."""
    return functools.partial(run_cli, command="mlplab-perceptron")


def separable_blobs(n: int = 200, dim: int = 5, gap: float = 0.5, seed: int = 0) -> tuple[torch.Tensor, torch.Tensor]:
    """Two clouds on either side of the hyperplane u·x = 1, none closer than ``gap``."""
    g = torch.Generator().manual_seed(seed)
    u = torch.randn(dim, generator=g, dtype=torch.float64)
    u /= u.norm()
    x = torch.randn(n, dim, generator=g, dtype=torch.float64) * 2
    side = x @ u - 1
    keep = side.abs() > gap
    return x[keep], torch.where(side[keep] > 0, 1, -1)


def test_converges_on_separable_data_with_a_unit_normal_and_no_training_error():
    x, y = separable_blobs()
    result = fit(x, y, lr=0.003, max_iterations=5000, seed=3)
    assert result.status == "converged"
    assert result.w.norm().item() == pytest.approx(1.0, abs=1e-6)
    assert result.train_error == 0.0
    assert bool((y * (x @ result.w + result.b) > 0).all())  # strictly on the right side, not merely on the boundary
    assert result.misclassified[-1] == 0 and result.loss[-1] == 0.0
    assert len(result.misclassified) == len(result.loss) == result.iterations + 1
    assert result.misclassified[0] > 0  # the random start did not already separate them: it really learnt
    assert torch.equal(result.predict(x), y)


def test_renormalising_makes_a_too_large_step_cycle_even_on_separable_data():
    """The slide's convergence remark is the plain perceptron's; here w is back at unit length after every
    step, so a step ρ‖Σ_M yᵢxᵢ‖ far above 1 overshoots every time, whatever ‖w‖ the plain run would have grown."""
    x, y = separable_blobs()
    assert fit(x, y, lr=0.003, max_iterations=5000, seed=1).status == "converged"
    assert fit(x, y, lr=1.0, max_iterations=5000, seed=1).status == "cycled"


def test_xor_does_not_converge_and_keeps_errors():
    for lr, seed in ((1.0, 1), (0.01, 0)):
        result = fit(XOR_X, XOR_Y, lr=lr, max_iterations=2000, seed=seed)
        assert result.status in ("cycled", "max_iterations")
        assert result.train_error > 0
        assert min(result.misclassified) > 0  # no state of the run separated XOR


def test_a_detected_cycle_really_repeats_the_state():
    result = fit(XOR_X, XOR_Y, lr=1.0, max_iterations=2000, seed=1)
    assert result.status == "cycled" and result.cycle_length >= 1
    # Stopping the same run one cycle earlier lands on the same (w, b).
    earlier = fit(XOR_X, XOR_Y, lr=1.0, max_iterations=result.iterations - result.cycle_length, seed=1)
    assert earlier.status == "max_iterations"
    assert torch.allclose(earlier.w, result.w, atol=1e-9) and earlier.b == pytest.approx(result.b, abs=1e-9)


def test_one_iteration_matches_the_hand_computation_on_three_points():
    # w = (0, 1), b = -1/2. Margins yᵢ(w·xᵢ + b): (1,0),+1 → -1/2 ∈ M; (0,2),-1 → -3/2 ∈ M; (0,1),+1 → +1/2.
    x = torch.tensor([[1.0, 0.0], [0.0, 2.0], [0.0, 1.0]], dtype=torch.float64)
    y = torch.tensor([1.0, -1.0, 1.0], dtype=torch.float64)
    w, b = torch.tensor([0.0, 1.0], dtype=torch.float64), torch.tensor(-0.5, dtype=torch.float64)
    mask, loss = misclassified(x, y, w, b)
    assert mask.tolist() == [True, True, False] and loss.item() == pytest.approx(2.0)
    # ρ = 1/4: w + ρ((1,0) - (0,2)) = (1/4, 1/2), b + ρ(1 - 1) = -1/2; ‖w‖ = √5/4 → w = (1, 2)/√5, b = -2/√5.
    new_w, new_b = update(x, y, w, b, mask, lr=0.25)
    root5 = math.sqrt(5)
    assert new_w.tolist() == pytest.approx([1 / root5, 2 / root5], abs=1e-15)
    assert new_b.item() == pytest.approx(-2 / root5, abs=1e-15)
    # The same step inside fit; after it the third point lies exactly on the boundary and counts as misclassified.
    result = fit(x, y, lr=0.25, max_iterations=1, start=(w, -0.5))
    assert result.w.tolist() == pytest.approx(new_w.tolist(), abs=1e-15)
    assert result.misclassified == [2, 3]
    assert result.loss == pytest.approx([2.0, 1 / root5 + 2 / root5], abs=1e-12)


def test_heaviside_prediction_maps_the_boundary_to_plus_one():
    w, b = torch.tensor([1.0, 0.0], dtype=torch.float64), 0.0
    assert predict(torch.tensor([[-1.0, 5.0], [0.0, 3.0], [2.0, 0.0]]), w, b).tolist() == [-1, 1, 1]
    assert error_rate(torch.tensor([[0.0, 3.0]]), torch.tensor([-1]), w, b) == 1.0


def test_fit_refuses_labels_other_than_plus_minus_one():
    with pytest.raises(ValueError, match="-1 or \\+1"):
        fit(XOR_X, torch.tensor([0, 0, 1, 1]), lr=1.0)


def test_two_mnist_classes_become_minus_and_plus_one(data_root):
    splits = load(DataConfig(name="mnist", root=str(data_root), classes=[7, 2], validation_size=20, download=False),
                  torch.device("cpu"))
    y = signed_labels(splits.train.y)
    assert set(y.tolist()) == {-1, 1}
    result = fit(splits.train.x, y, lr=1e-3, max_iterations=300, seed=0)
    # The synthetic classes light separate patches: linearly separable.
    assert result.status == "converged" and result.train_error == 0.0
    assert error_rate(splits.test.x, signed_labels(splits.test.y), result.w, result.b) < 0.05


@pytest.mark.parametrize("overrides, message", [
    ({"lr": 0.0}, "lr=0.0 must be > 0"),
    ({"max_iterations": 0}, "max_iterations=0 must be >= 1"),
    ({"data": DataConfig(classes=[0, 1, 2])}, "exactly two classes"),
    ({"data": DataConfig()}, "exactly two classes"),
])
def test_config_range_checks(overrides, message):
    with pytest.raises(ConfigError, match=message):
        PerceptronConfig(**overrides)


def test_app_records_a_finished_run_with_per_iteration_metrics(data_root, mlflow_uri, tmp_path, run_perceptron):
    from mlflow.tracking import MlflowClient

    out = tmp_path / "run"
    run = run_perceptron([f"data.root={data_root}", "data.download=false", "data.classes=[0,1]",
                          "data.validation_size=40", f"tracking.uri={mlflow_uri}", "lr=1e-3", "max_iterations=300",
                          "device=cpu", f"hydra.run.dir={out}"], cwd=tmp_path)
    assert run.returncode == 0, run.stderr
    assert len(run.stdout.strip().splitlines()) == 1 and "converged" in run.stdout
    result = json.loads((out / "result.json").read_text())
    assert result["status"] == "converged" and result["train_error"] == 0.0 and result["w_norm"] == pytest.approx(1.0)
    assert result["val_error"] is not None and result["test_error"] < 0.05

    client = MlflowClient(mlflow_uri)
    logged = client.get_run(result["mlflow_run_id"])
    assert logged.info.status == "FINISHED"
    assert client.get_experiment(logged.info.experiment_id).name == "perceptron"
    assert logged.data.tags["status"] == "converged"
    assert logged.data.params["lr"] == "0.001" and logged.data.params["data.classes"] == "[0, 1]"
    history = client.get_metric_history(logged.info.run_id, "misclassified")
    assert sorted(m.step for m in history) == list(range(result["iterations"] + 1))
    assert len(client.get_metric_history(logged.info.run_id, "loss")) == result["iterations"] + 1
    assert {"train_error", "val_error", "test_error", "iterations"} <= set(logged.data.metrics)
    assert {a.path for a in client.list_artifacts(logged.info.run_id)} == {"perceptron.png", "result.json"}


def test_app_rejects_a_zero_learning_rate_in_one_line(tmp_path, run_perceptron):
    run = run_perceptron(["lr=0", "tracking=off"], cwd=tmp_path)
    assert run.returncode != 0
    assert run.stderr.strip().splitlines() == ["mlplab-perceptron: error: lr=0.0 must be > 0, e.g. lr=1e-5"]


@pytest.mark.parametrize("raised, status", [(None, "FINISHED"), (RuntimeError, "FAILED"), (KeyboardInterrupt, "KILLED")])
def test_an_app_run_is_always_terminated(mlflow_uri, raised, status):
    from mlflow.tracking import MlflowClient

    from mlplab.config import TrackingConfig
    from mlplab.tracking.run import recorded_run

    runs = []
    with pytest.raises(raised) if raised else contextlib.nullcontext():
        with recorded_run(TrackingConfig(uri=mlflow_uri, experiment="apprun"), "a run", "test", PerceptronConfig()) as run:
            runs.append(run.run_id)
            run.log_series({"s": [1.0, float("nan"), 3.0]})
            if raised:
                raise raised()
    logged = MlflowClient(mlflow_uri).get_run(runs[0])
    assert logged.info.status == status
    assert [(m.step, m.value) for m in MlflowClient(mlflow_uri).get_metric_history(runs[0], "s")] == [(0, 1.0), (2, 3.0)]
