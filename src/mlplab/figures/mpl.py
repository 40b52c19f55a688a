"""Matplotlib helpers for the figures drawn once per study or app: the report's, the perceptron's, gradient
descent's, the slowdown diagnostics'. (The two figures every training run records are in ``run.py``:
drawn on the run's clock, they need to be cheaper than matplotlib is.)

Matplotlib's object-oriented API with the Agg canvas: no pyplot global state, no display needed.
"""

from __future__ import annotations

from pathlib import Path

from matplotlib.backends.backend_agg import FigureCanvasAgg
from matplotlib.figure import Figure
from matplotlib.ticker import MaxNLocator


def save(figure: Figure, path: Path) -> Path:
    FigureCanvasAgg(figure)
    figure.savefig(path, dpi=100, pil_kwargs={"compress_level": 1})  # margins are set by hand: bbox_inches="tight" would draw the figure twice
    return path


def epoch_panels(panels: int, width: float) -> tuple[Figure, list]:
    """A row of ``panels`` axes with epochs along x (whole numbers), gridded."""
    figure = Figure(figsize=(width, 4.2))
    figure.subplots_adjust(left=0.6 / width, right=0.98, bottom=0.12, top=0.84, wspace=0.25)
    axes = list(figure.subplots(1, panels))
    for panel in axes:
        panel.set_xlabel("epoch")
        panel.grid(alpha=0.3)
        panel.xaxis.set_major_locator(MaxNLocator(integer=True))
    return figure, axes


def finish(figure: Figure, axes: list, path: Path, title: str = "") -> Path:
    for panel in axes:
        panel.legend(fontsize=8)
    if title:
        figure.suptitle(title)
    return save(figure, path)


SLOWDOWN_PANELS = (("mean_sigma_prime", "mean σ'(z)"), ("saturated", "saturated share (σ' < 1 % of max)"),
                   ("grad_norm", "‖∂C/∂W‖"))


def slowdown(history: list[dict], path: Path, title: str = "") -> Path:
    """The learning-slowdown diagnostics per layer and epoch (``training.diagnostics.slowdown``), one panel each."""
    figure, axes = epoch_panels(len(SLOWDOWN_PANELS), 13)
    epochs = [h["epoch"] for h in history]
    layers = sorted({key.split("/")[0] for key in history[0]["diagnostics"]}, key=lambda name: int(name[5:]))
    for panel, (measure, label) in zip(axes, SLOWDOWN_PANELS):
        for layer in layers:
            panel.plot(epochs, [h["diagnostics"][f"{layer}/{measure}"] for h in history], marker=".", label=layer)
        panel.set_title(label)
        if measure == "grad_norm":
            panel.set_yscale("log")
    return finish(figure, axes, path, title)


def _as_number(text: str):
    try:
        return float(text)
    except ValueError:
        return None


def metric_against_keys(points: dict[str, list[tuple[str, float]]], path: Path, metric: str, title: str = "") -> Path:
    """One panel per swept key: each job's ``metric`` (in %) against its value of that key, the best job
    ringed. Numeric keys on a number line (logarithmic where the values are positive and span 20× or more),
    the others as categories in the order first met."""
    keys = list(points)
    width = 1.2 + 4.2 * len(keys)
    figure = Figure(figsize=(width, 4.2))
    figure.subplots_adjust(left=0.8 / width, right=0.98, bottom=0.14, top=0.84, wspace=0.3)
    axes = list(figure.subplots(1, len(keys), squeeze=False)[0])
    best = max((value for pairs in points.values() for _, value in pairs), default=None)
    for panel, key in zip(axes, keys):
        pairs = points[key]
        numbers = [_as_number(text) for text, _ in pairs]
        if all(n is not None for n in numbers):
            xs = numbers
            if min(xs) > 0 and max(xs) >= 20 * min(xs):
                panel.set_xscale("log")
        else:
            order = list(dict.fromkeys(text for text, _ in pairs))
            xs = [order.index(text) for text, _ in pairs]
            panel.set_xticks(range(len(order)), order, rotation=20, fontsize=8)
        ys = [100 * value for _, value in pairs]
        panel.scatter(xs, ys, s=22, color="C0", zorder=3)
        for x, (_, value) in zip(xs, pairs):
            if value == best:
                panel.scatter([x], [100 * value], s=110, facecolors="none", edgecolors="C3", linewidths=1.5, zorder=4)
        panel.set_xlabel(key)
        panel.set_ylabel(f"{metric} (%)")
        panel.grid(alpha=0.3)
    if title:
        figure.suptitle(title)
    return save(figure, path)
