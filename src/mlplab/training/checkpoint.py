"""Checkpoints: everything needed to continue a run exactly where an epoch ended.

The weights, the optimiser's state (momentum buffers, Adam moments), the schedule, both random
generators (shuffling and dropout), the history so far, and the config and data it was trained with.
Loaded with ``weights_only=True``: a checkpoint is data, never code.

Resuming is honest by refusing: a resumed run must be the run it continues, so every config key must match
the checkpoint's except those in ``MAY_CHANGE`` (how long, where, and how it is watched), and the data must
be the same files (by checksum). Otherwise it stops in one line naming each key that differs.
"""

from __future__ import annotations

import io
from pathlib import Path
from typing import Optional

import torch

from ..errors import ConfigError
from ..files import write_bytes
from ..keys import dotted, matches
from ..nn.model import MLP
from .optim import Schedule


# The keys a resumed run may change: how many epochs, where it runs and writes, and what it watches and
# records — none of them changes what the weights become.
MAY_CHANGE = ("trainer.epochs", "trainer.resume", "trainer.checkpoint", "trainer.progress", "trainer.threads",
              "trainer.device", "trainer.evaluate_test", "trainer.diagnostics", "trainer.validate_every",
              "data.root", "data.download", "tracking.*", "name")
CHECKPOINT_KEYS = {"sizes", "epoch", "model", "optimizer", "schedule", "shuffle_rng", "torch_rng", "history"}


def may_change(key: str) -> bool:
    return matches(key, MAY_CHANGE)


def save_checkpoint(path: Path, net: MLP, optimizer: torch.optim.Optimizer, schedule: Schedule,
                    shuffle: torch.Generator, epoch: int, history: list[dict],
                    best_state: Optional[dict], validation_checks: list[dict], config: dict, data_sha256: str,
                    dropout_rng: Optional[torch.Generator] = None) -> None:
    """``dropout_rng``: the generator the run draws its dropout masks from, if not torch's global one (a
    population member's); saved where a resumed solo run continues its stream."""
    cpu_dropout = dropout_rng if dropout_rng is not None and dropout_rng.device.type == "cpu" else None
    state = {
        "config": dotted(config),
        "data_sha256": data_sha256,
        "sizes": net.sizes,
        "epoch": epoch,
        "model": net.state_dict(),
        "optimizer": optimizer.state_dict(),
        "schedule": schedule.state_dict(),
        "shuffle_rng": shuffle.get_state(),
        "torch_rng": cpu_dropout.get_state() if cpu_dropout is not None else torch.get_rng_state(),
        "cuda_rng": torch.cuda.get_rng_state_all() if torch.cuda.is_available() else [],
        "history": history,
        "best_state": best_state,
        "validation_checks": validation_checks,
    }
    save_tensors(path, state)  # atomic: a crash mid-write leaves no truncated checkpoint


def load_checkpoint(path: Path, net: MLP, optimizer: torch.optim.Optimizer, schedule: Schedule,
                    shuffle: torch.Generator, config: dict, data_sha256: str) -> dict:
    """Continue from ``path`` (``trainer.resume``) if it is a checkpoint of this very run: the same config,
    but for ``MAY_CHANGE``, and the same data."""
    state = read_checkpoint(path)
    sizes = config["model"]["sizes"]
    if list(state["sizes"]) != list(sizes):
        raise ConfigError(f"trainer.resume={path} holds a {state['sizes']} network but model.sizes={sizes}: "
                          "resume with the same model.sizes")
    differing = {key: (was, now) for key, now in dotted(config).items()
                 if not may_change(key) and (was := state["config"].get(key, "(not set)")) != now}
    if differing:
        changes = ", ".join(f"{key}={was} (now {now})" for key, (was, now) in differing.items())
        raise ConfigError(f"trainer.resume={path} was trained with {changes}: resume with the checkpoint's values, "
                          f"or start afresh without trainer.resume (on resume only {', '.join(MAY_CHANGE)} may change)")
    if state.get("data_sha256") and state["data_sha256"] != data_sha256:
        raise ConfigError(f"trainer.resume={path} was trained on other data files (sha256 {state['data_sha256'][:12]}…, "
                          f"now {data_sha256[:12]}…): point data.root at the files it was trained on, or start afresh")
    net.load_state_dict(state["model"])
    optimizer.load_state_dict(state["optimizer"])
    schedule.load_state_dict(state["schedule"])
    shuffle.set_state(state["shuffle_rng"])
    torch.set_rng_state(state["torch_rng"])
    if state["cuda_rng"] and torch.cuda.is_available():
        torch.cuda.set_rng_state_all(state["cuda_rng"])
    return state


def read_checkpoint(path: Path) -> dict:
    """The checkpoint's contents, or one line saying why ``path`` is not a checkpoint to resume from. (torch's
    own message for a file that is not plain data advises turning ``weights_only`` off, which would run whatever
    code the file holds: never that.)"""
    fix = "resume from the checkpoint.pt of a job run with trainer.checkpoint=true"
    if not path.is_file():
        raise ConfigError(f"trainer.resume={path}: no such checkpoint file: {fix}")
    try:
        state = torch.load(path, map_location="cpu", weights_only=True)
    except Exception as error:  # noqa: BLE001 - truncated, random bytes, a pickle of code: all the same to the user
        raise ConfigError(f"trainer.resume={path} is not a checkpoint (truncated, or not written by mlplab: "
                          f"{type(error).__name__}): {fix}") from None
    if isinstance(state, dict) and state and all(isinstance(v, torch.Tensor) for v in state.values()):
        raise ConfigError(f"trainer.resume={path} holds a model's weights (model.pt), not a checkpoint: resume from "
                          "checkpoint.pt in the same job folder")
    if not isinstance(state, dict) or not CHECKPOINT_KEYS <= state.keys():
        raise ConfigError(f"trainer.resume={path} is not a checkpoint written by mlplab: {fix}")
    if "config" not in state:
        raise ConfigError(f"trainer.resume={path} was written by an older mlplab, which did not record its config: "
                          "start afresh without trainer.resume")
    return state


def save_tensors(path: Path, obj) -> None:
    """``torch.save`` into memory, then one plain write: a full disk is then an OSError naming the file (torch's
    own writer reports it as an opaque "unexpected pos" RuntimeError)."""
    buffer = io.BytesIO()
    torch.save(obj, buffer)
    write_bytes(path, buffer.getbuffer())
