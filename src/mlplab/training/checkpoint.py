"""Checkpoints: everything needed to continue a run exactly where an epoch ended.

The weights, the optimiser's state (momentum buffers, Adam moments), the schedule, both random
generators (shuffling and dropout) and the history so far. Loaded with ``weights_only=True``: a
checkpoint is data, never code.
"""

from __future__ import annotations

from pathlib import Path
from typing import Optional

import torch

from ..errors import ConfigError
from ..files import write_atomic
from ..nn.model import MLP
from .optim import Schedule


def save_checkpoint(path: Path, net: MLP, optimizer: torch.optim.Optimizer, schedule: Schedule,
                    shuffle: torch.Generator, epoch: int, history: list[dict],
                    best_state: Optional[dict], validation_checks: list[dict]) -> None:
    state = {
        "sizes": net.sizes,
        "epoch": epoch,
        "model": net.state_dict(),
        "optimizer": optimizer.state_dict(),
        "schedule": schedule.state_dict(),
        "shuffle_rng": shuffle.get_state(),
        "torch_rng": torch.get_rng_state(),
        "cuda_rng": torch.cuda.get_rng_state_all() if torch.cuda.is_available() else [],
        "history": history,
        "best_state": best_state,
        "validation_checks": validation_checks,
    }
    write_atomic(path, lambda partial: torch.save(state, partial))  # a crash mid-write leaves no truncated checkpoint


def load_checkpoint(path: Path, net: MLP, optimizer: torch.optim.Optimizer, schedule: Schedule,
                    shuffle: torch.Generator, sizes: list[int]) -> dict:
    if not path.is_file():
        raise ConfigError(f"trainer.resume={path}: no such checkpoint file")
    state = torch.load(path, map_location="cpu", weights_only=True)
    if list(state["sizes"]) != list(sizes):
        raise ConfigError(f"trainer.resume={path} holds a {state['sizes']} network but model.sizes={sizes}: "
                          "resume with the same model.sizes")
    net.load_state_dict(state["model"])
    optimizer.load_state_dict(state["optimizer"])
    schedule.load_state_dict(state["schedule"])
    shuffle.set_state(state["shuffle_rng"])
    torch.set_rng_state(state["torch_rng"])
    if state["cuda_rng"] and torch.cuda.is_available():
        torch.cuda.set_rng_state_all(state["cuda_rng"])
    return state
