"""Gradient-descent rules and learning-rate schedules.

Optimisers: ``sgd`` is the slides' rule w ← w − η·(1/|B|) Σ ∂Cᵢ/∂w; ``sgdm`` adds heavy-ball momentum,
``nesterov`` Nesterov's look-ahead momentum, ``adam`` Adam. Schedules change η between epochs:
``piecewise`` is MATLAB's ``LearnRateSchedule='piecewise'`` (η·drop_factor every drop_period epochs),
``halve_on_plateau`` is Nielsen's rule (halve η after ``patience`` epochs without a better validation
accuracy; stop once η has fallen to η₀/128), ``reduce_on_plateau`` the same with any factor and a floor
instead of a stop, ``cosine`` anneals η₀ → 0 over the run.
"""

from __future__ import annotations

import math
from typing import Iterable

import torch

from .config import OptimizerConfig, ScheduleConfig


def build_optimizer(params: Iterable[torch.Tensor], cfg: OptimizerConfig) -> torch.optim.Optimizer:
    if cfg.name == "sgd":
        return torch.optim.SGD(params, lr=cfg.lr)
    if cfg.name in ("sgdm", "nesterov"):
        return torch.optim.SGD(params, lr=cfg.lr, momentum=cfg.momentum, nesterov=cfg.name == "nesterov")
    if cfg.name == "adam":
        return torch.optim.Adam(params, lr=cfg.lr, betas=tuple(cfg.betas), eps=cfg.eps)
    raise ValueError(f"unknown optimizer {cfg.name!r}")


class Schedule:
    """η for the next epoch, given the epoch just finished and the monitored accuracy."""

    def __init__(self, cfg: ScheduleConfig, lr0: float, epochs: int):
        self.cfg, self.lr0, self.epochs = cfg, lr0, epochs
        self.lr = lr0
        self.best = -math.inf
        self.epochs_since_best = 0
        self.stop = False  # set when halve_on_plateau has run η down to its floor

    def after_epoch(self, epoch: int, accuracy: float) -> float:
        """``epoch`` counts finished epochs from 1. Returns the learning rate for the next epoch."""
        if accuracy > self.best:
            self.best, self.epochs_since_best = accuracy, 0
        else:
            self.epochs_since_best += 1
        name, cfg = self.cfg.name, self.cfg
        if name == "piecewise":
            self.lr = self.lr0 * cfg.drop_factor ** (epoch // cfg.drop_period)
        elif name == "cosine":
            self.lr = 0.5 * self.lr0 * (1.0 + math.cos(math.pi * min(epoch, self.epochs) / self.epochs))
        elif name in ("halve_on_plateau", "reduce_on_plateau") and self.epochs_since_best >= cfg.patience:
            self.epochs_since_best = 0
            floor = self.lr0 * cfg.min_lr_ratio
            if name == "halve_on_plateau":
                self.lr /= 2.0
                self.stop = self.lr <= floor * (1 + 1e-12)
            else:
                self.lr = max(self.lr * cfg.factor, floor)
        return self.lr

    def state_dict(self) -> dict:
        return {"lr": self.lr, "best": self.best, "epochs_since_best": self.epochs_since_best, "stop": self.stop}

    def load_state_dict(self, state: dict) -> None:
        self.lr, self.best = float(state["lr"]), float(state["best"])
        self.epochs_since_best, self.stop = int(state["epochs_since_best"]), bool(state["stop"])


def set_lr(optimizer: torch.optim.Optimizer, lr: float) -> None:
    for group in optimizer.param_groups:
        group["lr"] = lr
