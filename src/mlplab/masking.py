"""Passwords in URIs (a tracking server's, an Optuna storage's) never leave the process in clear.

``scheme://user:password@host`` is written ``scheme://user:***@host`` wherever mlplab writes: MLflow params
and tags (``tracking.flatten``), error lines (``cli.explain``), everything printed while a command runs
(``MaskingStream`` around stdout and stderr: Hydra's ``--cfg job``, logs, its multirun error report), and
the configs Hydra saves in each job's ``.hydra/`` folder (``MaskSavedConfigs``, a Hydra callback).
"""

from __future__ import annotations

import re
from pathlib import Path

from hydra.experimental.callback import Callback

_PASSWORD_IN_URI = re.compile(r"(://[^/:@\s]+):[^@/\s]+@")
SAVED_CONFIGS = ("config.yaml", "hydra.yaml", "overrides.yaml")


def mask_secrets(text: str) -> str:
    """``scheme://user:password@host`` → ``scheme://user:***@host``."""
    return _PASSWORD_IN_URI.sub(r"\1:***@", text)


class MaskingStream:
    """A text stream that writes through with passwords masked."""

    def __init__(self, stream):
        self._stream = stream

    def write(self, text: str) -> int:
        return self._stream.write(mask_secrets(text))

    def __getattr__(self, name: str):
        return getattr(self._stream, name)


class MaskSavedConfigs(Callback):
    """Hydra writes ``.hydra/{config,hydra,overrides}.yaml`` just before a job starts (and a sweep's
    ``multirun.yaml`` before its first job): mask them in place as the job starts, and the sweep's at its end."""

    def on_job_start(self, config, **kwargs) -> None:
        if config.hydra.output_subdir is not None:
            folder = Path(config.hydra.runtime.output_dir) / config.hydra.output_subdir
            for name in SAVED_CONFIGS:
                _mask_file(folder / name)
        if str(config.hydra.mode) == "RunMode.MULTIRUN":
            _mask_file(Path(config.hydra.sweep.dir) / "multirun.yaml")

    def on_multirun_end(self, config, **kwargs) -> None:
        _mask_file(Path(config.hydra.sweep.dir) / "multirun.yaml")


def _mask_file(path: Path) -> None:
    if path.is_file():
        text = path.read_text()
        masked = mask_secrets(text)
        if masked != text:
            path.write_text(masked)
