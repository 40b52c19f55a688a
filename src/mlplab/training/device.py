"""Which device a job runs on, and how many of the CPU's threads it trains with."""

from __future__ import annotations

import contextlib
from typing import Iterator, Optional

import torch

from ..errors import ConfigError

# Below this many multiply-adds in a step's widest GEMM, one CPU thread is faster than two: MKL splits so small a
# product badly and a second thread mostly waits. Measured (2 cores, x·Wᵀ and its update, 1 / 2 threads):
# 10·784·300 (2.4 M) 135 / 177 µs; 10·784·960 (7.5 M) 425 / 350 µs; 64·784·500 (25 M) 1033 / 574 µs.
ONE_THREAD_BELOW_MACS = 4_000_000
_narrowed_from: Optional[int] = None  # the threads a training context took away for its small steps


def resolve_device(name: str, key: str = "trainer.device") -> torch.device:
    """``auto`` is CUDA where it is visible, else the CPU; ``cuda`` without one is the user's to fix."""
    if name == "auto":
        return torch.device("cuda" if torch.cuda.is_available() else "cpu")
    if name == "cuda" and not torch.cuda.is_available():
        raise ConfigError(f"{key}=cuda but no CUDA device is visible: use {key}=auto or cpu")
    return torch.device(name)


@contextlib.contextmanager
def training_threads(cfg, members: int = 1) -> Iterator[None]:
    """``trainer.threads`` CPU threads while training; unless it says, one where the step's widest GEMM — over
    ``members`` networks side by side in a population — is too small to share (``ONE_THREAD_BELOW_MACS``)."""
    global _narrowed_from
    sizes = cfg.model.sizes
    widest = max(n_in * n_out for n_in, n_out in zip(sizes[:-1], sizes[1:])) * cfg.trainer.batch_size * members
    narrowed = not cfg.trainer.threads and widest < ONE_THREAD_BELOW_MACS
    previous, outer = torch.get_num_threads(), _narrowed_from
    torch.set_num_threads(cfg.trainer.threads or (1 if narrowed else previous))
    _narrowed_from = previous if narrowed else None
    try:
        yield
    finally:
        torch.set_num_threads(previous)
        _narrowed_from = outer


@contextlib.contextmanager
def evaluation_threads() -> Iterator[None]:
    """Evaluation's batches are large: the threads that training's small steps did without, given back."""
    if _narrowed_from is None:
        yield
        return
    narrowed = torch.get_num_threads()
    torch.set_num_threads(_narrowed_from)
    try:
        yield
    finally:
        torch.set_num_threads(narrowed)
