"""What a training job reports: one ``EpochMetrics`` per epoch, and the ``Result`` written as ``result.json``
(its fields are a contract: other tools read them)."""

from __future__ import annotations

from dataclasses import asdict, dataclass, field
from pathlib import Path
from typing import Optional

from ..files import write_json
from ..masking import mask_secrets
from ..nn.model import layer_string

STATUSES = ("finished", "diverged", "early_stopped", "killed", "failed", "pruned")


@dataclass
class EpochMetrics:
    epoch: int
    lr: float
    train_loss: float  # mean data cost over the epoch's mini-batches (the weights move during the epoch)
    train_accuracy: float
    val_loss: Optional[float]
    val_accuracy: Optional[float]
    seconds: float  # wall time of the epoch, its validation pass included
    images_seen: int
    diagnostics: dict = field(default_factory=dict)  # trainer.diagnostics: diagnostics.slowdown per layer

    @property
    def monitored(self) -> float:
        """What early stopping and the plateau schedules watch: validation accuracy, else training accuracy."""
        return self.val_accuracy if self.val_accuracy is not None else self.train_accuracy


def monitored_accuracy(metrics: dict) -> float:
    return metrics["val_accuracy"] if metrics["val_accuracy"] is not None else metrics["train_accuracy"]


@dataclass
class Result:
    status: str  # one of STATUSES
    val_accuracy: Optional[float] = None  # of the final model (the best epoch's with trainer.keep_best)
    best_val_accuracy: Optional[float] = None
    best_epoch: Optional[int] = None
    test_accuracy: Optional[float] = None
    test_loss: Optional[float] = None
    train_seconds: float = 0.0
    epochs_run: int = 0
    mlflow_run_id: Optional[str] = None
    detail: str = ""
    device: str = ""
    history: list[dict] = field(default_factory=list)
    validation_checks: list[dict] = field(default_factory=list)  # the every-k-images values

    def write(self, out_dir: Path) -> Path:
        return write_json(out_dir / "result.json", asdict(self))

    def end(self, status: str, detail: str = "") -> None:
        self.status, self.detail = status, detail

    @property
    def completed(self) -> bool:
        """Trained to the end (or stopped early on purpose): what a FINISHED run must be."""
        return self.status in ("finished", "early_stopped")

    def end_by(self, error: BaseException, during: str = "") -> None:
        """The ending ``error`` makes: killed by a signal, pruned by a pruner (its ``status``), else failed."""
        if isinstance(error, KeyboardInterrupt):
            status, detail = "killed", "interrupted (SIGINT/SIGTERM)"
        elif isinstance(error, SystemExit):  # a handler that exits mid-epoch, e.g. submitit's before a time limit
            status = getattr(error, "status", "killed")
            detail = getattr(error, "detail", f"exited (sys.exit({error.code!r}) during training)")
        else:
            status = getattr(error, "status", "failed")
            detail = str(error) if status != "failed" else f"{type(error).__name__}: {error}"
        self.end(status, f"{detail} ({during})" if during else detail)


def epoch_line(m: EpochMetrics, epochs: int) -> str:
    line = (f"epoch {m.epoch:>3}/{epochs}  lr {m.lr:.4g}  train loss {m.train_loss:.4f} "
            f"acc {100 * m.train_accuracy:.2f}%")
    if m.val_accuracy is not None:
        line += f"  val loss {m.val_loss:.4f} acc {100 * m.val_accuracy:.2f}%"
    return line + f"  {m.seconds:.2f}s"


def percent(x: Optional[float]) -> str:
    return "n/a" if x is None else f"{100 * x:.2f}%"


def describe(cfg) -> str:
    """A network in a few words: "784-100-10 sigmoid sgd lr=0.1" (also the default MLflow run name)."""
    return f"{layer_string(cfg.model.sizes)} {cfg.model.activation} {cfg.optimizer.name} lr={cfg.optimizer.lr:g}"


def summary_line(cfg, result: Result, out_dir: Path) -> str:
    """The one line a finished job prints: its figures, its record, and its MLflow run (with the UI's page for
    it when the store is a server)."""
    line = (f"{cfg.name} {describe(cfg)}: {result.status} after {result.epochs_run} epochs in {result.train_seconds:.1f}s"
            f" — val {percent(result.val_accuracy)}, test {percent(result.test_accuracy)}"
            f"{'' if result.test_loss is None else f' (loss {result.test_loss:.4f})'} → {out_dir / 'result.json'}")
    if result.mlflow_run_id:
        line += f" · MLflow run {result.mlflow_run_id}"
        uri = cfg.tracking.uri or ""
        if uri.startswith(("http://", "https://")):  # MLflow's UI opens a run by id alone at #/runs/<id>
            line += f" ({mask_secrets(uri.rstrip('/'))}/#/runs/{result.mlflow_run_id})"
    return line


def sweep_summary_line(sweep_dir: Path, name: str) -> str:
    """The line a sweep ends with: how its jobs ended, and the best job by validation accuracy — the keys it
    was swept on, its figures, its MLflow run and its record. Read from the jobs' result.json files, so it is
    the same with tracking on or off, on one machine or a cluster."""
    import json
    from collections import Counter

    import yaml

    jobs = []
    for path in sorted(sweep_dir.glob("*/result.json"), key=lambda p: (len(p.parent.name), p.parent.name)):
        try:
            jobs.append((path.parent, json.loads(path.read_text())))
        except (OSError, ValueError):
            continue  # a record being written or cut short: the count says so
    endings = Counter(record.get("status", "unknown") for _, record in jobs)
    line = f"sweep {name}: {len(jobs)} jobs ({', '.join(f'{n} {status}' for status, n in endings.most_common())})"
    ranked = [(folder, record) for folder, record in jobs if record.get("val_accuracy") is not None]
    if not ranked:
        return line + "; no job has a validation accuracy"
    overrides = {}
    for folder, _ in ranked:
        try:
            listed = yaml.safe_load((folder / ".hydra" / "overrides.yaml").read_text()) or []
        except (OSError, yaml.YAMLError):
            listed = []
        overrides[folder] = dict(item.split("=", 1) for item in listed if "=" in item)
    swept = sorted({key for o in overrides.values() for key in o if len({o.get(key) for o in overrides.values()}) > 1})
    folder, best = max(ranked, key=lambda entry: entry[1]["val_accuracy"])
    values = " ".join(f"{key}={overrides[folder].get(key, '-')}" for key in swept) or "the only one"
    line += (f"; best job {folder.name} ({values}): val {percent(best['val_accuracy'])}, "
             f"test {percent(best.get('test_accuracy'))}")
    if best.get("mlflow_run_id"):
        line += f", MLflow run {best['mlflow_run_id']}"
    return line + f" → {folder / 'result.json'}"
