"""Gradient-descent rules and learning-rate schedules.

Optimisers: ``sgd`` is the slides' rule w ← w − η·(1/|B|) Σ ∂Cᵢ/∂w; ``sgdm`` adds heavy-ball momentum,
``nesterov`` Nesterov's look-ahead momentum, ``adam`` Adam. Schedules change η between epochs:
``piecewise`` is MATLAB's ``LearnRateSchedule='piecewise'`` (η·drop_factor every drop_period epochs),
``halve_on_plateau`` is Nielsen's rule (halve η after ``patience`` epochs without a better validation
accuracy; stop once η has fallen to η₀/128), ``reduce_on_plateau`` the same with any factor and a floor
instead of a stop, ``cosine`` anneals η₀ → 0 over the run. The config takes its choices from
``OPTIMIZERS`` and ``SCHEDULES``.
"""

from __future__ import annotations

import math
from typing import Callable, Iterable

import torch

OPTIMIZERS: dict[str, Callable[[Iterable[torch.Tensor], object], torch.optim.Optimizer]] = {
    "sgd": lambda params, cfg: torch.optim.SGD(params, lr=cfg.lr),
    "sgdm": lambda params, cfg: torch.optim.SGD(params, lr=cfg.lr, momentum=cfg.momentum),
    "nesterov": lambda params, cfg: torch.optim.SGD(params, lr=cfg.lr, momentum=cfg.momentum, nesterov=True),
    "adam": lambda params, cfg: torch.optim.Adam(params, lr=cfg.lr, betas=tuple(cfg.betas), eps=cfg.eps),
}


def build_optimizer(params: Iterable[torch.Tensor], cfg) -> torch.optim.Optimizer:
    """The optimiser an optimizer config names (``cfg.name``, ``lr``, ``momentum``, ``betas``, ``eps``)."""
    return OPTIMIZERS[cfg.name](params, cfg)


def set_lr(optimizer: torch.optim.Optimizer, lr: float) -> None:
    for group in optimizer.param_groups:
        group["lr"] = lr


class Plateau:
    """The best value watched so far, its epoch, and the epochs since it; a tie is no improvement. Serves the
    plateau schedules and early stopping."""

    def __init__(self) -> None:
        self.best, self.best_epoch, self.epochs_since_best = -math.inf, None, 0

    def update(self, epoch: int, value: float) -> bool:
        """True when ``value`` beats the best so far."""
        if value > self.best:
            self.best, self.best_epoch, self.epochs_since_best = value, epoch, 0
            return True
        self.epochs_since_best += 1
        return False


class Schedule:
    """η for the next epoch, given the epoch just finished and the monitored accuracy."""

    def __init__(self, cfg, lr0: float, epochs: int):
        self.cfg, self.lr0, self.epochs = cfg, lr0, epochs
        self.lr = lr0
        self.plateau = Plateau()
        self.stop = False  # set when halve_on_plateau has run η down to its floor

    def after_epoch(self, epoch: int, accuracy: float) -> float:
        """``epoch`` counts finished epochs from 1. Returns the learning rate for the next epoch."""
        self.plateau.update(epoch, accuracy)
        self.lr = SCHEDULES[self.cfg.name](self, epoch)
        return self.lr

    def on_plateau(self) -> bool:
        """``patience`` epochs without a better accuracy: true once, then the count starts again."""
        if self.plateau.epochs_since_best < self.cfg.patience:
            return False
        self.plateau.epochs_since_best = 0
        return True

    def state_dict(self) -> dict:
        return {"lr": self.lr, "best": self.plateau.best, "epochs_since_best": self.plateau.epochs_since_best,
                "stop": self.stop}

    def load_state_dict(self, state: dict) -> None:
        self.lr, self.plateau.best = float(state["lr"]), float(state["best"])
        self.plateau.epochs_since_best, self.stop = int(state["epochs_since_best"]), bool(state["stop"])


def _halve_on_plateau(s: Schedule, epoch: int) -> float:
    if not s.on_plateau():
        return s.lr
    lr = s.lr / 2.0
    s.stop = lr <= s.lr0 * s.cfg.min_lr_ratio * (1 + 1e-12)
    return lr


SCHEDULES: dict[str, Callable[[Schedule, int], float]] = {
    "constant": lambda s, epoch: s.lr,
    "piecewise": lambda s, epoch: s.lr0 * s.cfg.drop_factor ** (epoch // s.cfg.drop_period),
    "halve_on_plateau": _halve_on_plateau,
    "reduce_on_plateau": lambda s, epoch: max(s.lr * s.cfg.factor, s.lr0 * s.cfg.min_lr_ratio) if s.on_plateau() else s.lr,
    "cosine": lambda s, epoch: 0.5 * s.lr0 * (1.0 + math.cos(math.pi * min(epoch, s.epochs) / s.epochs)),
}


def replayed(values: Iterable[tuple[int, float]]) -> Plateau:
    """A plateau tracker that has watched (epoch, value) pairs, e.g. a resumed run's history."""
    plateau = Plateau()
    for epoch, value in values:
        plateau.update(epoch, value)
    return plateau

