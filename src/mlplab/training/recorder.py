"""What the trainer tells whoever records a run (MLflow, in ``tracking/recorder.py``), defined here so the
trainer depends on no tracking library: it is handed a ``Recorder``, as a Lightning trainer is handed
loggers. ``NoRecorder`` records nothing (``tracking=off``)."""

from __future__ import annotations

from dataclasses import dataclass
from pathlib import Path
from typing import Optional, Protocol

import torch

from ..data.splits import Splits
from ..nn.model import MLP
from .evaluate import confusion_counts, predict
from .result import Result


@dataclass
class Outcome:
    """What a job leaves at its end besides ``result.json``: the final network and the data it learnt from
    (either None if the job never got that far), and the split its confusion matrix may be measured on — the
    test split only when the job evaluates it, so a search trial or a model still being chosen never looks
    at the test images."""

    net: Optional[MLP] = None
    splits: Optional[Splits] = None
    evaluated_on: str = "test"  # or "validation"

    def confusion(self) -> Optional[tuple[torch.Tensor, str, list[str]]]:
        """(counts[i, j] of class i predicted as j, the split's name, the class names), or None."""
        if self.net is None or self.splits is None:
            return None
        split = self.splits.test if self.evaluated_on == "test" else self.splits.validation
        if split is None:
            return None
        counts = confusion_counts(predict(self.net, split.x), split.y, self.splits.num_classes)
        return counts, self.evaluated_on, self.splits.class_names


class Recorder(Protocol):
    run_id: Optional[str]  # None until started, and for a recorder that records nothing

    def start(self) -> None: ...

    def on_data(self, splits: Splits, device: torch.device) -> None: ...

    def on_epoch(self, metrics: dict) -> None: ...

    def on_check(self, check: dict) -> None:
        """A validation every ``trainer.validate_every`` images: images_seen, val_loss, val_accuracy."""

    def end(self, result: Result, out_dir: Path, outcome: Outcome) -> None:
        """Called once, whatever the ending, after ``result.json`` was written (if it could be). When what the
        run promises cannot be recorded (a full disk, a signal), it ends ``result`` failed or killed, closes
        the run so, and raises that error."""


class NoRecorder:
    run_id: Optional[str] = None

    def start(self) -> None: ...

    def on_data(self, splits: Splits, device: torch.device) -> None: ...

    def on_epoch(self, metrics: dict) -> None: ...

    def on_check(self, check: dict) -> None: ...

    def end(self, result: Result, out_dir: Path, outcome: Outcome) -> None: ...
