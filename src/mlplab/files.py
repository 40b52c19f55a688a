"""One way to write a file: beside it under a name of its own, then renamed into place. A reader never sees
a half-written file, a process killed mid-write leaves only a stray ``*.partial-*``, and two writers of one
path never share a temporary name."""

from __future__ import annotations

import json
import math
import os
import time
from pathlib import Path
from typing import Callable


def partial_path(path: Path) -> Path:
    """A temporary name beside ``path`` that no other process or call uses."""
    return path.with_name(f"{path.name}.partial-{os.getpid()}-{time.monotonic_ns()}")


def write_atomic(path: Path, write: Callable[[Path], object]) -> Path:
    """``write(temporary)`` fills a temporary file, which then replaces ``path``; on any failure it is removed."""
    path.parent.mkdir(parents=True, exist_ok=True)
    partial = partial_path(path)
    try:
        write(partial)
        os.replace(partial, path)
    except OSError as error:  # said of the file the user knows, not of its temporary name
        partial.unlink(missing_ok=True)
        raise type(error)(error.errno, error.strerror, str(path)) from error
    except BaseException:
        partial.unlink(missing_ok=True)
        raise
    return path


def write_bytes(path: Path, data: bytes) -> Path:
    return write_atomic(path, lambda partial: partial.write_bytes(data))


def write_text(path: Path, text: str) -> Path:
    return write_atomic(path, lambda partial: partial.write_text(text))


def write_json(path: Path, data: dict) -> Path:
    """A job's record: JSON has no NaN or infinity, so a diverged loss is written as null."""
    return write_text(path, json.dumps(finite_or_none(data), indent=2))


def finite_or_none(value):
    if isinstance(value, float) and not math.isfinite(value):
        return None
    if isinstance(value, dict):
        return {k: finite_or_none(v) for k, v in value.items()}
    if isinstance(value, (list, tuple)):
        return [finite_or_none(v) for v in value]
    return value
