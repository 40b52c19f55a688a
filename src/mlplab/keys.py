"""Nested configs as dotted keys: ``{"optimizer": {"lr": 0.1}}`` → ``{"optimizer.lr": 0.1}``, the form in which
overrides, MLflow params and a checkpoint's recorded config name them."""

from __future__ import annotations

from typing import Any


def dotted(config: dict, prefix: str = "") -> dict[str, Any]:
    flat: dict[str, Any] = {}
    for key, value in config.items():
        name = f"{prefix}{key}"
        if isinstance(value, dict):
            flat.update(dotted(value, f"{name}."))
        else:
            flat[name] = value
    return flat


def matches(key: str, patterns) -> bool:
    """``key`` is one of ``patterns``, where ``group.*`` stands for every key of the group."""
    return any(key == k or (k.endswith("*") and key.startswith(k[:-1])) for k in patterns)


def short_names(keys: list[str]) -> list[str]:
    """Each dotted key by its last part (``optimizer.lr`` → ``lr``), unless two of ``keys`` share it: how run
    names and tables show what differs."""
    last = [key.rsplit(".", 1)[-1] for key in keys]
    return [part if last.count(part) == 1 else key for key, part in zip(keys, last)]
