"""Measuring a network on a whole split: a few large batches in inference mode, dropout off."""

from __future__ import annotations

import torch

from ..data.splits import Split
from ..nn.costs import Cost
from ..nn.model import MLP, in_eval_mode
from ..nn.population import StackedMLP
from .device import evaluation_threads

EVAL_BATCH = 10_000  # large batches: fast, and bounded in memory


@torch.inference_mode()
def evaluate(model: MLP, split: Split, cost: Cost) -> tuple[float, float]:
    """(mean cost, accuracy) of ``model`` on ``split``."""
    total_cost = torch.zeros((), device=split.x.device)
    correct = torch.zeros((), device=split.x.device, dtype=torch.int64)
    with in_eval_mode(model), evaluation_threads():
        for start in range(0, len(split), EVAL_BATCH):
            x, y = split.x[start : start + EVAL_BATCH], split.y[start : start + EVAL_BATCH]
            z = model(x)
            total_cost += cost.fn(z, y, model.output) * len(y)
            correct += (z.argmax(dim=1) == y).sum()
    return float(total_cost) / len(split), int(correct) / len(split)


@torch.inference_mode()
def predict(model: MLP, x: torch.Tensor) -> torch.Tensor:
    """The class each image is assigned: argmax of a^L (the same as argmax of z^L)."""
    with in_eval_mode(model), evaluation_threads():
        return torch.cat([model(x[start : start + EVAL_BATCH]).argmax(dim=1) for start in range(0, len(x), EVAL_BATCH)])


def confusion_counts(predicted: torch.Tensor, actual: torch.Tensor, num_classes: int) -> torch.Tensor:
    """counts[i, j] = how many images of class i were predicted as class j."""
    return torch.bincount(actual * num_classes + predicted, minlength=num_classes**2).reshape(num_classes, num_classes)


STACKED_EVAL_FLOATS = 25_000_000  # a population's widest activations per evaluation batch: ~100 MB


@torch.inference_mode()
def evaluate_stacked(net: StackedMLP, split: Split, cost: Cost) -> tuple[list[float], list[float]]:
    """(mean cost, accuracy) of every member of a population on ``split``: one pass, the first layer one GEMM."""
    K = len(net)
    total_cost = torch.zeros(K, device=split.x.device)
    correct = torch.zeros(K, device=split.x.device, dtype=torch.int64)
    batch = max(256, min(EVAL_BATCH, STACKED_EVAL_FLOATS // (K * max(net.sizes[1:]))))
    eye = torch.eye(net.sizes[-1], device=split.x.device)
    with evaluation_threads():
        for start in range(0, len(split), batch):
            x, y = split.x[start : start + batch], split.y[start : start + batch]
            fwd = net.feedforward(x, training=False)
            z = fwd.z[-1]
            total_cost += cost.means(z, fwd.a[-1], eye[y], net.output) * len(y)
            correct += (z.argmax(dim=-1) == y).sum(dim=-1)
    return (total_cost / len(split)).tolist(), (correct.double() / len(split)).tolist()
