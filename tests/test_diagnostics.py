"""Learning-slowdown diagnostics: the numbers they report, and the seed's point they exist to show."""

import torch

from mlplab.training.diagnostics import slowdown
from mlplab.nn.model import MLP
from mlplab.training.loop import train


def test_diagnostics_of_a_one_unit_network_match_a_hand_computation():
    net = MLP([1, 1, 1], "sigmoid", "sigmoid").double()
    with torch.no_grad():
        net.layers[0].weight.fill_(10.0), net.layers[0].bias.fill_(0.0)
        net.layers[1].weight.fill_(1.0), net.layers[1].bias.fill_(0.0)
    x = torch.tensor([[1.0], [0.0]], dtype=torch.float64)  # z¹ = 10 (saturated) and 0 (slope ¼)
    found = slowdown(net, "quadratic", "sigmoid", x, torch.tensor([0, 0]))
    s = torch.sigmoid(torch.tensor(10.0, dtype=torch.float64))
    assert abs(found["layer1/mean_sigma_prime"] - (float(s * (1 - s)) + 0.25) / 2) < 1e-12
    assert found["layer1/saturated"] == 0.5
    a2 = torch.sigmoid(torch.stack([s, torch.tensor(0.5, dtype=torch.float64)]))
    assert abs(found["layer2/mean_sigma_prime"] - float((a2 * (1 - a2)).mean())) < 1e-12
    # ∂C/∂w² = mean over the two images of (a² − 1)σ'(z²)a¹ with target y = e_0 → the only output is class 0
    expected = ((a2 - 1) * a2 * (1 - a2) * torch.stack([s, torch.tensor(0.5, dtype=torch.float64)])).mean().abs()
    assert abs(found["layer2/grad_norm"] - float(expected)) < 1e-12


def test_quadratic_cost_with_large_weights_saturates_where_cross_entropy_learns(tiny_config, tmp_path):
    """The seed's slowdown: same large N(0,1) start; the quadratic cost's output δ carries σ'(z) ≈ 0."""
    common = ("trainer.epochs=2", "trainer.diagnostics=true", "initializer=standard_normal", "optimizer.lr=0.5",
              "data.standardize=true")
    quadratic = train(tiny_config(*common, "loss=quadratic"), tmp_path / "q")
    cross_entropy = train(tiny_config(*common, "loss=cross_entropy"), tmp_path / "ce")
    first_q = quadratic.history[0]["diagnostics"]
    assert set(first_q) == {f"layer{l}/{m}" for l in (1, 2) for m in ("mean_sigma_prime", "saturated", "grad_norm")}
    assert first_q["layer1/saturated"] > 0.2  # standardised pixels into N(0,1) weights: |z| ≫ 4.6 for many units
    assert cross_entropy.val_accuracy > quadratic.val_accuracy


def test_diagnostics_are_logged_per_epoch_with_their_figure(tiny_config, mlflow_uri, tmp_path):
    from test_tracking import metric_history, record, tracked

    cfg = tracked(tiny_config, mlflow_uri, "trainer.epochs=2", "trainer.diagnostics=true")
    result, run = record(cfg, tmp_path / "job")
    logged = metric_history(mlflow_uri, run.info.run_id, "slowdown/layer1/saturated")
    assert logged == [(h["epoch"], h["diagnostics"]["layer1/saturated"]) for h in result.history]
    from mlplab.tracking.store import client_for

    artifacts = {a.path for a in client_for(mlflow_uri).list_artifacts(run.info.run_id)}
    assert "slowdown.png" in artifacts
