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



class StackedOptimizer:
    """The rules of ``OPTIMIZERS`` applied to K members at once: every parameter is stacked (K, …) and each
    member has its own η (and momentum μ); the arithmetic is torch.optim's, step for step, so a member moves
    as it would alone. Member k's state converts to and from its own ``torch.optim`` optimiser's (for its
    checkpoint)."""

    def __init__(self, cfg, momentum: list[float]):
        self.name, self.betas, self.eps = cfg.name, tuple(cfg.betas), cfg.eps
        self.momentum = torch.tensor(momentum)
        self.state: list[dict[str, torch.Tensor]] = []  # per parameter: buffers stacked like it
        self.steps = 0

    def step(self, params: list[torch.Tensor], grads: list[torch.Tensor], lr: torch.Tensor) -> None:
        """One step of every member; ``lr`` holds the K learning rates."""
        if not self.state:
            self.state = [{} for _ in params]
            self.momentum = self.momentum.to(device=lr.device, dtype=lr.dtype)
        self.steps += 1
        with torch.no_grad():
            for p, g, state in zip(params, grads, self.state):
                per_member = (-1,) + (1,) * (p.dim() - 1)
                p.addcmul_(self._direction(g, state, per_member), self._step_size(lr).view(per_member), value=-1)

    def _direction(self, g: torch.Tensor, state: dict, per_member: tuple) -> torch.Tensor:
        if self.name == "sgd":
            return g
        if self.name in ("sgdm", "nesterov"):  # torch.optim.SGD: buf ← μ·buf + g (buf = g at first); nesterov g + μ·buf
            mu = self.momentum.view(per_member)
            if "momentum_buffer" not in state:
                state["momentum_buffer"] = g.clone()
            else:
                state["momentum_buffer"].mul_(mu).add_(g)
            buf = state["momentum_buffer"]
            return g.add(buf * mu) if self.name == "nesterov" else buf
        beta1, beta2 = self.betas  # torch.optim.Adam, without weight decay or amsgrad
        if "exp_avg" not in state:
            state["exp_avg"], state["exp_avg_sq"] = torch.zeros_like(g), torch.zeros_like(g)
        state["exp_avg"].lerp_(g, 1 - beta1)
        state["exp_avg_sq"].mul_(beta2).addcmul_(g, g, value=1 - beta2)
        bias_correction2_sqrt = (1 - beta2 ** self.steps) ** 0.5
        return state["exp_avg"] / (state["exp_avg_sq"].sqrt() / bias_correction2_sqrt).add_(self.eps)

    def _step_size(self, lr: torch.Tensor) -> torch.Tensor:
        return lr / (1 - self.betas[0] ** self.steps) if self.name == "adam" else lr

    def keep(self, rows: list[int]) -> None:
        if not self.state:
            self.momentum = self.momentum[rows]
            return
        index = torch.tensor(rows, device=self.momentum.device)
        self.momentum = self.momentum.index_select(0, index)
        for state in self.state:
            for key, value in state.items():
                state[key] = value.index_select(0, index)

    def write_member(self, row: int, optimizer: torch.optim.Optimizer) -> None:
        """Member ``row``'s state into its own optimiser, as if that had taken every step."""
        state = optimizer.state_dict()
        for index, buffers in enumerate(self.state):
            member = {key: value[row].clone() for key, value in buffers.items()}
            if self.name == "adam":
                member["step"] = torch.tensor(float(self.steps))
            state["state"][index] = member
        optimizer.load_state_dict(state)
