"""Training configs composed as ``mlplab-train`` composes them, made tiny for the synthetic data.

Composing costs Hydra ~0.1 s: each distinct list of overrides is composed once per session, and every
caller gets its own copy to change.
"""

from __future__ import annotations

import copy
import functools
from pathlib import Path

from mlplab.apps.hydra_app import compose
from mlplab.config import TrainConfig


def tiny_overrides(data_root: Path) -> list[str]:
    """Overrides that make any config train in well under a second on the synthetic data."""
    return [f"data.root={data_root}", "data.validation_size=100", "data.download=false", "tracking=off",
            "trainer.epochs=1", "trainer.batch_size=50", "trainer.progress=false", "trainer.device=cpu"]


@functools.lru_cache(maxsize=None)
def _composed(overrides: tuple[str, ...]) -> TrainConfig:
    return compose(list(overrides))


def compose_config(overrides: list[str]) -> TrainConfig:
    """A fresh copy of the composed config: a test may change it freely."""
    return copy.deepcopy(_composed(tuple(overrides)))
