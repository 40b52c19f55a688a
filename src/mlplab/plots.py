"""The figures a run records: learning curves and the test confusion matrix.

Matplotlib's object-oriented API with the Agg canvas: no pyplot global state, no display needed.
"""

from __future__ import annotations

from pathlib import Path

import torch
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


def learning_curves(history: list[dict], path: Path, title: str = "") -> Path:
    """Cost and accuracy per epoch, training against validation."""
    figure, (loss_axes, accuracy_axes) = epoch_panels(2, 10)
    epochs = [h["epoch"] for h in history]
    for split in ("train", "val"):
        label = "training" if split == "train" else "validation"
        if all(h[f"{split}_loss"] is not None for h in history):
            loss_axes.plot(epochs, [h[f"{split}_loss"] for h in history], marker=".", label=label)
            accuracy_axes.plot(epochs, [100 * h[f"{split}_accuracy"] for h in history], marker=".", label=label)
    loss_axes.set(ylabel="cost C", title="cost (training: mean over the epoch's mini-batches)")
    accuracy_axes.set(ylabel="accuracy (%)", title="accuracy")
    return finish(figure, [loss_axes, accuracy_axes], path, title)


SLOWDOWN_PANELS = (("mean_sigma_prime", "mean σ'(z)"), ("saturated", "saturated share (σ' < 1 % of max)"),
                   ("grad_norm", "‖∂C/∂W‖"))


def slowdown(history: list[dict], path: Path, title: str = "") -> Path:
    """The learning-slowdown diagnostics per layer and epoch (``diagnostics.slowdown``), one panel each."""
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


def confusion_counts(predicted: torch.Tensor, actual: torch.Tensor, num_classes: int) -> torch.Tensor:
    """counts[i, j] = how many images of class i were predicted as class j."""
    return torch.bincount(actual * num_classes + predicted, minlength=num_classes**2).reshape(num_classes, num_classes)


def confusion_matrix(counts: torch.Tensor, class_names: list[str], path: Path, title: str = "", split: str = "test") -> Path:
    """Row-normalised confusion matrix, each row labelled with its class's accuracy; cells holding at least
    1 % of their row show their count."""
    counts = counts.cpu().double()
    per_class = counts.diag() / counts.sum(dim=1).clamp(min=1)
    k = len(class_names)
    figure = Figure(figsize=(3.5 + 0.75 * k, 1.6 + 0.75 * k))
    figure.subplots_adjust(left=0.24, right=0.97, bottom=0.17, top=0.93)
    axes = figure.subplots()
    rates = counts / counts.sum(dim=1, keepdim=True).clamp(min=1)
    image = axes.imshow(rates.numpy(), cmap="Blues", vmin=0, vmax=1)
    for i in range(k):
        for j in range(k):
            if rates[i, j] >= 0.01:  # the counts that matter; a hundred tiny labels would cost ~0.1 s to draw
                axes.text(j, i, f"{int(counts[i, j])}", ha="center", va="center", fontsize=7,
                          color="white" if rates[i, j] > 0.5 else "black")
    axes.set_xticks(range(k), class_names, rotation=45, ha="right")
    axes.set_yticks(range(k), [f"{name} ({100 * acc:.1f}%)" for name, acc in zip(class_names, per_class.tolist())])
    axes.set(xlabel="predicted", ylabel="true class (per-class accuracy)")
    figure.colorbar(image, ax=axes, fraction=0.04)
    overall = counts.diag().sum() / counts.sum()
    figure.suptitle(f"{title + ': ' if title else ''}{split} accuracy {100 * overall:.2f}%")
    return save(figure, path)
