"""Measuring a network on a whole split: a few large batches in inference mode, dropout off."""

from __future__ import annotations

import torch

from ..data.splits import Split
from ..nn.costs import Cost
from ..nn.model import MLP, in_eval_mode

EVAL_BATCH = 10_000  # large batches: fast, and bounded in memory


@torch.inference_mode()
def evaluate(model: MLP, split: Split, cost: Cost) -> tuple[float, float]:
    """(mean cost, accuracy) of ``model`` on ``split``."""
    total_cost = torch.zeros((), device=split.x.device)
    correct = torch.zeros((), device=split.x.device, dtype=torch.int64)
    with in_eval_mode(model):
        for start in range(0, len(split), EVAL_BATCH):
            x, y = split.x[start : start + EVAL_BATCH], split.y[start : start + EVAL_BATCH]
            z = model(x)
            total_cost += cost.fn(z, y, model.output) * len(y)
            correct += (z.argmax(dim=1) == y).sum()
    return float(total_cost) / len(split), int(correct) / len(split)


@torch.inference_mode()
def predict(model: MLP, x: torch.Tensor) -> torch.Tensor:
    """The class each image is assigned: argmax of a^L (the same as argmax of z^L)."""
    with in_eval_mode(model):
        return torch.cat([model(x[start : start + EVAL_BATCH]).argmax(dim=1) for start in range(0, len(x), EVAL_BATCH)])


def confusion_counts(predicted: torch.Tensor, actual: torch.Tensor, num_classes: int) -> torch.Tensor:
    """counts[i, j] = how many images of class i were predicted as class j."""
    return torch.bincount(actual * num_classes + predicted, minlength=num_classes**2).reshape(num_classes, num_classes)
