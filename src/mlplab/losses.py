"""The network costs of the slides, with the seed's scaling.

C = (1/n) Σᵢ Cᵢ over a batch of n examples, where for the one-hot target y = e_{yᵢ}:
- quadratic      Cᵢ = ½ ‖aᴸ − y‖²                               (summed over output units)
- cross_entropy  Cᵢ = Σⱼ −yⱼ log aⱼᴸ − (1 − yⱼ) log(1 − aⱼᴸ)      (summed over output units)
- log_likelihood Cᵢ = −log aᴸ_{yᵢ}
Each takes the output layer's weighted input z^L and the output activation's name, and works in log
space (log-sigmoid, log-softmax) so a saturated unit gives a large finite cost, never log 0.
"""

from __future__ import annotations

import math
from typing import Callable

import torch
import torch.nn.functional as F

Cost = Callable[[torch.Tensor, torch.Tensor, str], torch.Tensor]


def log_a_and_log_1_minus_a(z: torch.Tensor, output: str) -> tuple[torch.Tensor, torch.Tensor]:
    if output == "sigmoid":
        return F.logsigmoid(z), F.logsigmoid(-z)
    # log(1 − a_j) = log Σ_{k≠j} e^{z_k} − log Σ_k e^{z_k}: exact even where a_j rounds to 1.
    c = z.shape[1]
    others = z.unsqueeze(1).expand(-1, c, c).masked_fill(torch.eye(c, dtype=torch.bool, device=z.device), -math.inf)
    log_sum = torch.logsumexp(z, dim=1, keepdim=True)
    return z - log_sum, torch.logsumexp(others, dim=2) - log_sum


def activate(z: torch.Tensor, output: str) -> torch.Tensor:
    """aᴸ from zᴸ: the output layer's sigmoid or softmax."""
    return torch.sigmoid(z) if output == "sigmoid" else torch.softmax(z, dim=1)


def quadratic(z: torch.Tensor, y: torch.Tensor, output: str) -> torch.Tensor:
    a = activate(z, output)
    target = F.one_hot(y, a.shape[1]).to(a.dtype)
    return 0.5 * (a - target).pow(2).sum() / a.shape[0]


def cross_entropy(z: torch.Tensor, y: torch.Tensor, output: str) -> torch.Tensor:
    target = F.one_hot(y, z.shape[1]).to(z.dtype)
    if output == "sigmoid":  # the fused kernel computes exactly Σⱼ of the formula above, stably
        return F.binary_cross_entropy_with_logits(z, target, reduction="sum") / z.shape[0]
    log_a, log_1ma = log_a_and_log_1_minus_a(z, output)
    # Only the true class contributes log a, only the others log(1 − a); masking avoids 0 · (−inf).
    per_unit = torch.where(target.bool(), log_a, log_1ma)
    return -per_unit.sum() / z.shape[0]


def log_likelihood(z: torch.Tensor, y: torch.Tensor, output: str) -> torch.Tensor:
    if output == "softmax":
        return F.cross_entropy(z, y)  # −log softmax(z)_y, averaged over the batch
    log_a, _ = log_a_and_log_1_minus_a(z, output)
    return -log_a.gather(1, y[:, None]).mean()


COSTS: dict[str, Cost] = {
    "quadratic": quadratic,
    "cross_entropy": cross_entropy,
    "log_likelihood": log_likelihood,
}
