"""L2 and L1 weight penalties in the slides' convention, on weights only (biases are never decayed).

    L2: (λ/2n) Σ w²   →  ∂/∂w = (λ/n) w        so one SGD step gives w ← (1 − ηλ/n) w − η ∂C₀/∂w
    L1: (λ/n)  Σ |w|  →  ∂/∂w = (λ/n) sign(w)

n is the training-set size, not the mini-batch size (Nielsen's ``lmbda / len(training_data)``).
The trainer adds these gradients straight into ``w.grad`` after backpropagating the data cost, which is
the same update as differentiating the penalised cost, without building the penalty into the graph.
Dropout, the third regulariser of the slides, lives in the model (``model.MLP``).
"""

from __future__ import annotations

import torch


class WeightPenalty:
    def __init__(self, cfg, n_train: int):
        """``cfg.l2`` and ``cfg.l1`` are the λs; ``n_train`` is n."""
        self.l2_over_n = cfg.l2 / n_train
        self.l1_over_n = cfg.l1 / n_train

    @property
    def active(self) -> bool:
        return self.l2_over_n > 0 or self.l1_over_n > 0

    @torch.no_grad()
    def add_gradients(self, weights: list[torch.Tensor]) -> None:
        for w in weights:
            if self.l2_over_n:
                w.grad.add_(w, alpha=self.l2_over_n)
            if self.l1_over_n:
                w.grad.add_(torch.sign(w), alpha=self.l1_over_n)

    @torch.no_grad()
    def value(self, weights: list[torch.Tensor]) -> float:
        """The penalty term itself, for reporting the regularised cost."""
        total = 0.0
        for w in weights:
            if self.l2_over_n:
                total += 0.5 * self.l2_over_n * float(w.pow(2).sum())
            if self.l1_over_n:
                total += self.l1_over_n * float(w.abs().sum())
        return total
