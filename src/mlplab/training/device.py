"""Which device a job runs on."""

from __future__ import annotations

import torch

from ..errors import ConfigError


def resolve_device(name: str, key: str = "trainer.device") -> torch.device:
    """``auto`` is CUDA where it is visible, else the CPU; ``cuda`` without one is the user's to fix."""
    if name == "auto":
        return torch.device("cuda" if torch.cuda.is_available() else "cpu")
    if name == "cuda" and not torch.cuda.is_available():
        raise ConfigError(f"{key}=cuda but no CUDA device is visible: use {key}=auto or cpu")
    return torch.device(name)
