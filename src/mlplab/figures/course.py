"""The course apps' figures: gradient descent's convergence on f(x) (Assignment 6 Q1) and the perceptron's
progress. Drawn once per run with matplotlib (``mpl.py``)."""

from __future__ import annotations

import math
from pathlib import Path

from matplotlib.figure import Figure
from matplotlib.ticker import MaxNLocator

from .mpl import save


def gd_convergence(result, path: Path) -> Path:
    """f(x_k) against k for every rate with f* as a line; beside it |f(x_k) − f*| on a log scale."""
    figure = Figure(figsize=(11, 4.4))
    figure.subplots_adjust(left=0.07, right=0.98, bottom=0.12, top=0.85, wspace=0.22)
    value_axes, gap_axes = figure.subplots(1, 2)
    for r in result.rates:
        steps = [k for k, v in enumerate(r.f) if math.isfinite(v)]
        label = f"η = {r.lr:g} ({r.approach})"
        value_axes.plot(steps, [r.f[k] for k in steps], marker=".", label=label)
        gaps = [(k, abs(r.f[k] - result.f_star)) for k in steps if abs(r.f[k] - result.f_star) > 0]
        gap_axes.plot([k for k, _ in gaps], [g for _, g in gaps], marker=".", label=label)
    value_axes.axhline(result.f_star, color="black", linestyle="--", linewidth=1,
                       label=f"f* = {result.f_star:.6f} at x* = {result.x_star:.6f}")
    finite = [v for r in result.rates if not r.diverged for v in r.f]
    if finite and any(r.diverged for r in result.rates):  # keep a diverged rate from flattening the others
        low, high = min(finite), max(finite)
        value_axes.set_ylim(low - 0.05 * (high - low + 1e-12), high + 0.05 * (high - low + 1e-12))
        gaps = [g for g in (abs(v - result.f_star) for v in finite) if g > 0] + [result.tolerance]
        gap_axes.set_ylim(min(gaps) / 3, max(gaps) * 3)
    gap_axes.axhline(result.tolerance, color="grey", linestyle=":", linewidth=1, label=f"tolerance {result.tolerance:g}")
    gap_axes.set_yscale("log")
    value_axes.set(xlabel="iteration k", ylabel="f(x_k)", title="function value")
    gap_axes.set(xlabel="iteration k", ylabel="|f(x_k) − f*|", title="distance to the minimum value")
    for axes in (value_axes, gap_axes):
        axes.grid(alpha=0.3)
        axes.xaxis.set_major_locator(MaxNLocator(integer=True))
        axes.legend(fontsize=8)
    best = "none" if result.best_lr is None else f"{result.best_lr:g}"
    figure.suptitle(f"gradient descent on f(x) = {result.function} from x0 = {result.start:g}: best η = {best}")
    return save(figure, path)


def perceptron_progress(result, path: Path, title: str = "") -> Path:
    """|M| and ℓ against the iteration, side by side."""
    figure = Figure(figsize=(10, 4.2))
    figure.subplots_adjust(left=0.08, right=0.98, bottom=0.12, top=0.84, wspace=0.25)
    count_axes, loss_axes = figure.subplots(1, 2)
    steps = range(len(result.misclassified))
    count_axes.plot(steps, result.misclassified, marker=".", markersize=3)
    count_axes.set(xlabel="iteration", ylabel="|M|", title="misclassified training points")
    loss_axes.plot(steps, result.loss, marker=".", markersize=3, color="tab:red")
    loss_axes.set(xlabel="iteration", ylabel="ℓ(w, b)", title="perceptron loss −Σ_M yᵢ(w·xᵢ + b)")
    for axes in (count_axes, loss_axes):
        axes.grid(alpha=0.3)
        axes.xaxis.set_major_locator(MaxNLocator(integer=True))
        if min(axes.get_lines()[0].get_ydata()) > 0:
            axes.set_yscale("log")
    figure.suptitle(f"{title + ': ' if title else ''}{result.status} after {result.iterations} iterations")
    return save(figure, path)
