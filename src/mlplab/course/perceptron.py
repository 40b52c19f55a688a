"""The perceptron algorithm of the seed slides ("Perceptrons" to "Some remarks about the Perceptron algorithm").

A perceptron is one neuron with the Heaviside step as activation: it predicts +1 where w·x + b ≥ 0 and −1
elsewhere. Training minimises ℓ(w, b) = −Σ_{i∈M} yᵢ(w·xᵢ + b) over unit vectors w by alternating two steps:

- given w, b: find the misclassified set M;
- given M: w ← w + ρ Σ_M yᵢxᵢ, b ← b + ρ Σ_M yᵢ, then renormalise b ← b/‖w‖, w ← w/‖w‖.

**Points on the boundary.** The slide writes M = {i | yᵢ(w·xᵢ + b) < 0}. Read strictly, w = 0, b = 0 (or any
hyperplane through every point) would be "perfect", so here a point with yᵢ(w·xᵢ + b) = 0 counts as
misclassified: M = {i | yᵢ(w·xᵢ + b) ≤ 0}. An empty M then means every point lies strictly on its own side.
(Its loss term is 0 either way; only |M| and the stopping rule see the difference.)

**The learning rate matters here.** For the plain perceptron the slide's remark holds: separable data are
separated in finitely many steps, for any ρ. Renormalising after every step changes that: w is back at unit
length, so a step ρ‖Σ_M yᵢxᵢ‖ much larger than 1 swamps it every time, and the iteration can cycle even on
separable data (tests/test_perceptron.py shows one). Choose ρ so that the first steps are a fraction of 1:
on 784-pixel images with thousands of points in M, ρ ≈ 1e-5.

**Stopping.** ``converged`` when M is empty; ``cycled`` when a state repeats; ``max_iterations`` otherwise;
``degenerate`` in the rare case that an update makes w exactly 0 and it cannot be renormalised.

**What the cycle check can and cannot see.** The step is a deterministic map of the state (w, b), so a
state that comes back means the iteration repeats forever — the cycles the slide warns of for data that are
not linearly separable. A state is remembered as a hash of (w, b) rounded to ``cycle_decimals`` decimals
together with its misclassified mask; the mask keeps two nearby states on opposite sides of a data point
apart. It detects a cycle the iteration has settled into (on non-separable MNIST pairs with a large ρ the
step swamps the unit-length w and it alternates between two states within a few iterations). It cannot
detect (1) a cycle longer than ``max_iterations`` (the slide: "can be long and therefore hard to detect"),
(2) an orbit that only approaches a cycle more slowly than the rounding resolves, nor (3) wandering that
never repeats: those end as ``max_iterations``. Rounding can, rarely, miss a revisit whose coordinates
straddle a rounding boundary, or call two states within 10^-decimals of each other the same.
"""

from __future__ import annotations

import hashlib
from dataclasses import dataclass
from typing import Optional

import torch

STATUSES = ("converged", "max_iterations", "cycled", "degenerate")


# ---- the algorithm ---------------------------------------------------------------------------------------

@dataclass
class PerceptronResult:
    w: torch.Tensor  # [d], ‖w‖ = 1
    b: float
    status: str  # one of STATUSES
    iterations: int  # updates made
    misclassified: list[int]  # |M| of the state before each update and of the final state: iterations + 1 values
    loss: list[float]  # ℓ(w, b) of the same states
    train_error: float  # share of training points the final (w, b) predicts wrongly
    cycle_length: Optional[int] = None  # with status "cycled": how many updates the cycle takes

    def predict(self, x: torch.Tensor) -> torch.Tensor:
        return predict(x, self.w, self.b)


def heaviside(z: torch.Tensor) -> torch.Tensor:
    """The step activation, H(0) = 1."""
    return (z >= 0).to(z.dtype)


def predict(x: torch.Tensor, w: torch.Tensor, b: float | torch.Tensor) -> torch.Tensor:
    """±1 labels: the Heaviside neuron's 1/0 output mapped to +1/−1."""
    z = x.to(w.dtype) @ w + b
    return (2 * heaviside(z) - 1).to(torch.int64)


def error_rate(x: torch.Tensor, y: torch.Tensor, w: torch.Tensor, b: float | torch.Tensor) -> float:
    return (predict(x, w, b) != y).double().mean().item() if len(y) else 0.0


def misclassified(x: torch.Tensor, y: torch.Tensor, w: torch.Tensor, b: torch.Tensor) -> tuple[torch.Tensor, torch.Tensor]:
    """Given w, b: the mask of M = {i | yᵢ(w·xᵢ + b) ≤ 0} and the loss ℓ = −Σ_M yᵢ(w·xᵢ + b)."""
    margins = y * (x @ w + b)
    return margins <= 0, (-margins).clamp(min=0).sum()


def update(x: torch.Tensor, y: torch.Tensor, w: torch.Tensor, b: torch.Tensor, mask: torch.Tensor,
           lr: float) -> tuple[torch.Tensor, torch.Tensor]:
    """Given M: one gradient step on ℓ, then w back to unit length (b scaled with it). ‖w‖ = 0 is returned as is."""
    y_in_m = torch.where(mask, y, torch.zeros_like(y))  # yᵢ for i ∈ M, 0 elsewhere: Σ_M as one matmul
    w = w + lr * (y_in_m @ x)
    b = b + lr * y_in_m.sum()
    norm = w.norm()
    return (w, b) if norm == 0 else (w / norm, b / norm)


def initial_state(dim: int, seed: int, dtype=torch.float64, device=None) -> tuple[torch.Tensor, torch.Tensor]:
    """A random (w, b) from N(0, I), renormalised like every update: w is uniform on the unit sphere."""
    v = torch.randn(dim + 1, generator=torch.Generator().manual_seed(seed), dtype=dtype)  # same start on any device
    norm = v[:dim].norm()
    return (v[:dim] / norm).to(device), (v[dim] / norm).to(device)


def _state_key(w: torch.Tensor, b: torch.Tensor, mask: torch.Tensor, decimals: int) -> bytes:
    rounded = torch.cat([w, b.reshape(1)]).round(decimals=decimals) + 0.0  # + 0.0 turns -0.0 into 0.0
    return hashlib.blake2b(rounded.cpu().numpy().tobytes() + mask.cpu().numpy().tobytes(), digest_size=16).digest()


def fit(x: torch.Tensor, y: torch.Tensor, lr: float, max_iterations: int = 1000, seed: int = 0,
        cycle_decimals: int = 9, start: Optional[tuple[torch.Tensor, float]] = None,
        dtype: torch.dtype = torch.float64) -> PerceptronResult:
    """Run the slide's alternating algorithm on ``x`` [n, d] with labels ``y`` in {−1, +1}.

    ``start`` = (w, b) replaces the random start (it is used as given, not renormalised). Everything runs on
    ``x``'s device in ``dtype`` (float64: ‖w‖ = 1 to ~1e-15 and exactly repeatable cycles).
    """
    if x.ndim != 2 or y.ndim != 1 or len(x) != len(y):
        raise ValueError(f"fit needs x [n, d] and y [n], got {tuple(x.shape)} and {tuple(y.shape)}")
    if not bool(((y == 1) | (y == -1)).all()):
        raise ValueError("perceptron labels must be -1 or +1")
    if lr <= 0 or max_iterations < 1:
        raise ValueError(f"fit needs lr > 0 and max_iterations >= 1, got lr={lr}, max_iterations={max_iterations}")
    x, y = x.to(dtype), y.to(dtype)
    if start is None:
        w, b = initial_state(x.shape[1], seed, dtype, x.device)
    else:
        w = start[0].to(device=x.device, dtype=dtype)
        b = torch.as_tensor(start[1], device=x.device, dtype=dtype)

    counts: list[int] = []
    losses: list[float] = []
    seen: dict[bytes, int] = {}  # state key → the iteration it was first seen at
    status, cycle_length = "max_iterations", None
    for iteration in range(max_iterations + 1):
        mask, loss = misclassified(x, y, w, b)
        counts.append(int(mask.sum()))
        losses.append(loss.item())
        if counts[-1] == 0:
            status = "converged"
            break
        key = _state_key(w, b, mask, cycle_decimals)
        if key in seen:
            status, cycle_length = "cycled", iteration - seen[key]
            break
        seen[key] = iteration
        if iteration == max_iterations:
            break
        w, b = update(x, y, w, b, mask, lr)
        if w.norm() == 0:
            status = "degenerate"
            break
    iterations = len(counts) - 1 if status != "degenerate" else len(counts)
    return PerceptronResult(w, b.item(), status, iterations, counts, losses, error_rate(x, y, w, b), cycle_length)


def signed_labels(labels01: torch.Tensor) -> torch.Tensor:
    """The data loader re-indexes two classes to 0/1 in the order given: class 0 → −1, class 1 → +1."""
    return 2 * labels01.to(torch.int64) - 1
