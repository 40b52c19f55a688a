"""A search space: which training keys a study samples, and the training config of one trial.

``search.space`` maps a config key to ``{type: float|int|categorical, low, high, log, step, choices}``.
Besides any training key, ``model.width`` (every hidden layer's size) and ``model.depth`` (the number of
hidden layers) rebuild ``model.sizes``.
"""

from __future__ import annotations

import itertools
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


def check_space(base, space: dict[str, Any]) -> None:
    """Before any trial: every key of the space is a training config key (or model.width / model.depth), and
    every value it can sample — each categorical choice, each end of a range — makes a training config the
    schema accepts, alone or with some values of the other keys (``optimizer=sgdm`` needs a momentum the space
    may supply), so a study never fails trial by trial on a value it should have refused at once."""
    check_keys(base, space)
    for key, spec in space.items():
        others = [(k, _candidates(s)) for k, s in space.items() if k != key]
        for value in _candidates(spec):
            refused = _refusal(base, {key: value})
            combinations = itertools.islice(itertools.product(*(c for _, c in others)), MAX_COMBINATIONS)
            if refused and all(_refusal(base, {key: value, **dict(zip((k for k, _ in others), combination))})
                               for combination in combinations):
                raise ConfigError(f"search.space.{key} can sample {value!r}, which training refuses: {refused}")


MAX_COMBINATIONS = 256  # of the other keys' values tried with a value refused alone


def _candidates(spec: dict[str, Any]) -> list:
    return list(spec["choices"]) if spec["type"] == "categorical" else [spec["low"], spec["high"]]


def _refusal(base, values: dict[str, Any]) -> str:
    """Why the training schema refuses ``base`` with ``values``, or "" if it accepts it."""
    try:
        apply(base, values)
    except ConfigError as error:
        return str(error)
    except Exception as error:  # noqa: BLE001 - OmegaConf's type errors: a value of the wrong type
        return str(error).splitlines()[0]
    return ""


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
