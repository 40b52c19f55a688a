"""A search space: which training keys a study samples, and the training config of one trial.

``search.space`` maps a config key to ``{type: float|int|categorical, low, high, log, step, choices}``.
Besides any training key, ``model.width`` (every hidden layer's size) and ``model.depth`` (the number of
hidden layers) rebuild ``model.sizes``.
"""

from __future__ import annotations

import math
from typing import Any

import optuna
from omegaconf import OmegaConf

from ..errors import ConfigError

DERIVED_KEYS = ("model.width", "model.depth")  # not config keys: they rebuild model.sizes
_MISSING = object()


def grid_space(space: dict[str, Any]) -> dict[str, list]:
    return {key: list(spec["choices"]) for key, spec in space.items()}


def suggest(trial: optuna.Trial, space: dict[str, Any]) -> dict[str, Any]:
    values = {}
    for key, spec in space.items():
        if spec["type"] == "float":
            values[key] = trial.suggest_float(key, spec["low"], spec["high"], log=bool(spec.get("log")),
                                              step=spec.get("step"))
        elif spec["type"] == "int":
            values[key] = trial.suggest_int(key, spec["low"], spec["high"], log=bool(spec.get("log")),
                                            step=spec.get("step") or 1)
        else:
            values[key] = trial.suggest_categorical(key, list(spec["choices"]))
    return values


def check_keys(base, space: dict[str, Any]) -> None:
    """Every key of the space must be a training config key (or model.width / model.depth)."""
    if not space:
        raise ConfigError("search.space is empty: choose a search (search=q2_lr) or give a key, e.g. optimizer.lr")
    node = OmegaConf.structured(base)
    for key in space:
        if key not in DERIVED_KEYS and OmegaConf.select(node, key, default=_MISSING) is _MISSING:
            raise ConfigError(f"search.space.{key} is not a training config key: check its spelling "
                              "(`mlplab-train --cfg job` lists the keys; model.width and model.depth also work)")


def apply(base, values: dict[str, Any]):
    """The training config of one trial: ``base`` with the sampled values (re-validated)."""
    node = OmegaConf.structured(base)
    sizes = list(base.model.sizes)
    width = values.get("model.width", sizes[1] if len(sizes) > 2 else None)
    depth = values.get("model.depth", len(sizes) - 2)
    if ("model.width" in values or "model.depth" in values) and width is not None:
        sizes = [sizes[0], *[int(width)] * int(depth), sizes[-1]]
    for key, value in values.items():
        if key not in DERIVED_KEYS:
            OmegaConf.update(node, key, value, merge=False)
    OmegaConf.update(node, "model.sizes", sizes, merge=False)
    return OmegaConf.to_object(node)


def budget(search) -> int:
    """``search.n_trials``, or the grid's size if that is smaller (a grid point is never tried twice)."""
    if search.sampler != "grid":
        return search.n_trials
    return min(search.n_trials, math.prod(len(choices) for choices in grid_space(search.space).values()))
