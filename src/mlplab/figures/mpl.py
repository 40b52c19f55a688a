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
