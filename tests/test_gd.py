"""Assignment 6 Question 1: gradient descent on f(x) = x⁴/4 − 3x³ + 7x − 5 from x = 0, through mlplab-gd."""

from __future__ import annotations

import functools

import json
import math

import numpy as np
import pytest

from helpers.console import run_cli
from mlplab.errors import ConfigError
from mlplab.apps.gd import GdConfig
from mlplab.course.gd import RateResult, best_rate, descend, run
from mlplab.course.expression import derivative, derivatives, parse_function, value
from mlplab.figures.course import gd_convergence as plot

DEFAULT = "x**4/4 - 3*x**3 + 7*x - 5"


@pytest.fixture
def run_gd():
    """run_cli, pointed at the mlplab-gd console script."""
    return functools.partial(run_cli, command="mlplab-gd")


def independent_answer(tolerance: float = 1e-6, iterations: int = 30) -> dict:
    """Q1 worked out with numpy alone: x* as the root of f'(x) = x³ − 9x² + 7 nearest 0, then plain loops."""
    f = np.poly1d([0.25, -3, 0, 7, -5])
    roots = np.roots(f.deriv().coeffs)
    x_star = float(min(roots[np.isreal(roots)].real, key=abs))
    answer = {"x_star": x_star, "f_star": float(f(x_star)), "f2": float(f.deriv(2)(x_star))}
    for lr in (0.01, 0.05, 0.1):
        xs = [0.0]
        for _ in range(iterations):
            xs.append(xs[-1] - lr * float(f.deriv()(xs[-1])))
        gaps = [abs(float(f(x)) - answer["f_star"]) for x in xs]
        inside = [k for k in range(len(gaps)) if all(g < tolerance for g in gaps[k:])]
        answer[lr] = (inside[0] if inside else None, xs)
    return answer


def test_autograd_derivative_equals_the_hand_derivative():
    f = parse_function(DEFAULT)
    for x in (-3.0, -0.84, 0.0, 0.5, 2.0, 8.9):
        assert derivative(f, x) == pytest.approx(x**3 - 9 * x**2 + 7, rel=1e-14, abs=1e-12)
        assert derivatives(f, x, order=2)[1] == pytest.approx(3 * x**2 - 18 * x, rel=1e-14, abs=1e-12)


def test_parsed_expressions_evaluate_like_python():
    f = parse_function("-(x - 1)**2 + 2/x - +3")
    assert value(f, 4.0) == pytest.approx(-(4.0 - 1) ** 2 + 2 / 4.0 - 3)


def test_gd_on_a_quadratic_matches_the_closed_form():
    # f = (x − 3)², f' = 2(x − 3): x_{k+1} − 3 = (1 − 2·0.1)(x_k − 3), so x_k = 3 − 3·0.8^k from x_0 = 0.
    xs, fs = descend(parse_function("(x - 3)**2"), start=0.0, lr=0.1, iterations=30)
    assert len(xs) == 31
    for k, x in enumerate(xs):
        assert x == pytest.approx(3 - 3 * 0.8**k, abs=1e-12)
        assert fs[k] == pytest.approx((3 * 0.8**k) ** 2, abs=1e-12)


def test_default_problem_finds_the_local_minimum_near_zero():
    result = run(GdConfig())
    f = parse_function(DEFAULT)
    independent = independent_answer()
    assert abs(derivative(f, result.x_star)) < 1e-9
    assert result.f2_star > 0 and result.f2_star == pytest.approx(independent["f2"], rel=1e-9)
    assert result.x_star == pytest.approx(independent["x_star"], abs=1e-12)
    assert round(result.x_star, 6) == -0.843294
    assert result.f_star == pytest.approx(independent["f_star"], abs=1e-12)
    assert round(result.f_star, 6) == -8.977514


def test_default_rate_ranking_matches_the_independent_computation():
    result = run(GdConfig())
    independent = independent_answer()
    for r in result.rates:
        assert r.iterations_to_tol == independent[r.lr][0]
        assert r.x == pytest.approx(independent[r.lr][1], abs=1e-12)
    # By hand: f''(x*) ≈ 17.31, so near x* the error multiplies by 1 − η·17.31 per step:
    # η = 0.01 → 0.83 (slow, one side), η = 0.05 → 0.13 (fast, one side), η = 0.1 → −0.73 (alternating sides).
    assert [r.iterations_to_tol for r in result.rates] == [None, 6, 20]
    assert [r.approach for r in result.rates] == ["monotone", "monotone", "oscillating"]
    assert [r.converged for r in result.rates] == [False, True, True]
    assert result.best_lr == 0.05
    assert "fewest iterations" in result.criterion


def test_a_diverging_rate_is_reported_and_never_chosen():
    result = run(GdConfig(learning_rates=[0.1, 0.5]))
    diverged = result.rate(0.5)
    assert diverged.diverged and diverged.approach == "diverged" and not diverged.converged
    assert not math.isfinite(diverged.x[-1] + diverged.f[-1]) and len(diverged.x) <= 31
    assert result.best_lr == 0.1


def test_ties_go_to_the_monotone_approach_then_the_smaller_rate():
    def rate(lr, iterations, sign_changes):
        return RateResult(lr, [], [], False, True, iterations, sign_changes,
                          "monotone" if sign_changes == 0 else "oscillating", 0.0)

    assert best_rate([rate(0.1, 5, 3), rate(0.2, 5, 0), rate(0.3, 6, 0)], 1e-6)[0] == 0.2
    assert best_rate([rate(0.2, 5, 0), rate(0.1, 5, 0)], 1e-6)[0] == 0.1


@pytest.mark.parametrize("expression, named", [
    ("__import__('os')", "a call (__import__)"),
    ("x.__class__", "Attribute"),
    ("os.system('ls')", "a call"),
    ("lambda: x", "Lambda"),
    ("y + 1", "the name 'y'"),
    ("x ^ 2", "'^' is not a power"),
    ("x % 2", "the operator Mod"),
    ("True + x", "the constant True"),
    ("'x' * 2", "the constant 'x'"),
    ("[x][0]", "Subscript"),
    ("x +", "not an expression"),
    ("7", "does not depend on x"),
])
def test_unsafe_or_unsupported_expressions_are_rejected_with_the_reason(expression, named):
    with pytest.raises(ConfigError, match=named.replace("(", r"\(").replace(")", r"\)").replace("^", r"\^")):
        parse_function(expression)
    with pytest.raises(ConfigError):
        GdConfig(function=expression)


@pytest.mark.parametrize("overrides, message", [
    ({"learning_rates": [0.01, 0.0]}, "every rate must be > 0"),
    ({"learning_rates": []}, "at least one rate"),
    ({"iterations": 0}, "iterations=0 must be >= 1"),
    ({"tolerance": 0.0}, "tolerance=0.0 must be > 0"),
])
def test_config_range_checks(overrides, message):
    with pytest.raises(ConfigError, match=message):
        GdConfig(**overrides)


def test_a_function_without_a_minimum_is_a_config_error():
    with pytest.raises(ConfigError, match="no local minimum"):
        run(GdConfig(function="x"))


def test_plot_draws_every_rate_in_both_panels(tmp_path):
    """Matplotlib's first three colours are the rates' lines; each must fill both panels (f(x_k), and
    |f(x_k) − f*|), and a rate that is not asked for must not appear."""
    from PIL import Image

    def pixels_near(image, color, tolerance=30):
        found = (np.abs(image.astype(int) - np.array(color)) <= tolerance).all(axis=2)
        half = found.shape[1] // 2
        return int(found[:, :half].sum()), int(found[:, half:].sum())

    c0, c1, c2 = (31, 119, 180), (255, 127, 14), (44, 160, 44)
    two = np.array(Image.open(plot(run(GdConfig(learning_rates=[0.01, 0.05])), tmp_path / "two.png")).convert("RGB"))
    for color in (c0, c1):
        assert min(pixels_near(two, color)) > 200, color
    assert max(pixels_near(two, c2)) < 20  # no third rate
    three = np.array(Image.open(plot(run(GdConfig()), tmp_path / "three.png")).convert("RGB"))
    assert min(pixels_near(three, c2)) > 200


def test_app_prints_the_answer_and_records_a_finished_run(mlflow_uri, tmp_path, run_gd):
    from mlflow.tracking import MlflowClient

    out = tmp_path / "run"
    run_ = run_gd([f"tracking.uri={mlflow_uri}", f"hydra.run.dir={out}"], cwd=tmp_path)
    assert run_.returncode == 0, run_.stderr
    assert "x* = -0.8432935927" in run_.stdout and "best rate 0.05" in run_.stdout
    result = json.loads((out / "result.json").read_text())
    assert result["best_lr"] == 0.05 and [r["iterations_to_tol"] for r in result["rates"]] == [None, 6, 20]

    client = MlflowClient(mlflow_uri)
    logged = client.get_run(result["mlflow_run_id"])
    assert logged.info.status == "FINISHED"
    assert client.get_experiment(logged.info.experiment_id).name == "assignment6-q1"
    assert logged.data.metrics["best_lr"] == 0.05
    assert logged.data.metrics["x_star"] == pytest.approx(-0.8432935926715502, abs=1e-12)
    assert logged.data.metrics["iterations_to_tol_0.05"] == 6 and "iterations_to_tol_0.01" not in logged.data.metrics
    history = client.get_metric_history(logged.info.run_id, "f_0.05")
    assert sorted(m.step for m in history) == list(range(31))
    assert logged.data.params["learning_rates"] == "[0.01, 0.05, 0.1]"
    assert {a.path for a in client.list_artifacts(logged.info.run_id)} == {"gd.png", "result.json"}


def test_app_rejects_a_bad_rate_in_one_line(tmp_path, run_gd):
    run_ = run_gd(["learning_rates=[0.1,-1]", "tracking=off"], cwd=tmp_path)
    assert run_.returncode != 0
    assert run_.stderr.strip().splitlines() == ["mlplab-gd: error: learning_rates=[0.1, -1.0]: every rate must be > 0"]
