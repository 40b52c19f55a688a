"""``mlplab-perceptron``: the seed's perceptron algorithm (``course/perceptron.py``) on two classes of
Fashion-MNIST or MNIST (``conf/perceptron.yaml``), tracked in MLflow."""

from __future__ import annotations

import dataclasses
import time
from dataclasses import dataclass, field
from pathlib import Path
from typing import Optional

from ..config import DEVICES, DataConfig, TrackingConfig, one_of, require
from ..course.perceptron import error_rate, fit, signed_labels
from ..data.splits import load
from ..figures.course import perceptron_progress
from ..files import write_json
from ..tracking.run import TrackedRun, recorded_run
from ..training.device import resolve_device
from ..training.result import percent
from .hydra_app import hydra_job, run_hydra_app


@dataclass
class PerceptronConfig:
    data: DataConfig = field(default_factory=lambda: DataConfig(classes=[1, 9], validation_size=2000))
    tracking: TrackingConfig = field(default_factory=lambda: TrackingConfig(experiment="perceptron"))
    lr: float = 1e-5  # ρ
    max_iterations: int = 1000
    seed: int = 0  # the random unit-vector start
    cycle_decimals: int = 9  # states equal to this many decimals (and with the same M) count as a revisit
    device: str = "auto"
    name: str = "perceptron"

    def __post_init__(self) -> None:
        require(self.lr > 0, f"lr={self.lr} must be > 0, e.g. lr=1e-5")
        require(self.max_iterations >= 1, f"max_iterations={self.max_iterations} must be >= 1")
        require(1 <= self.cycle_decimals <= 15, f"cycle_decimals={self.cycle_decimals} must lie in 1..15")
        one_of("device", self.device, DEVICES)
        require(self.data.classes is not None and len(self.data.classes) == 2,
                 f"data.classes={self.data.classes}: a perceptron separates exactly two classes, e.g. data.classes=[1,9]")


@dataclass
class AppResult:
    status: str
    iterations: int
    misclassified: int  # |M| at the end
    loss: float
    train_error: float
    val_error: Optional[float]
    test_error: float
    b: float
    w_norm: float
    cycle_length: Optional[int]
    seconds: float
    device: str
    mlflow_run_id: Optional[str] = None


def train(cfg: PerceptronConfig, out_dir: Path, run: Optional[TrackedRun] = None) -> AppResult:
    """Load the two classes, fit, evaluate, record; ``result.json`` goes to ``out_dir``."""
    run = run or TrackedRun()
    device = resolve_device(cfg.device, key="device")
    splits = load(cfg.data, device)
    began = time.perf_counter()
    fitted = fit(splits.train.x, signed_labels(splits.train.y), cfg.lr, cfg.max_iterations, cfg.seed, cfg.cycle_decimals)
    seconds = time.perf_counter() - began

    def error(split) -> Optional[float]:
        return None if split is None else error_rate(split.x, signed_labels(split.y), fitted.w, fitted.b)

    result = AppResult(fitted.status, fitted.iterations, fitted.misclassified[-1], fitted.loss[-1],
                       fitted.train_error, error(splits.validation), error(splits.test), fitted.b,
                       fitted.w.norm().item(), fitted.cycle_length, seconds, str(device), run.run_id)
    run.log_series({"misclassified": fitted.misclassified, "loss": fitted.loss})
    run.log_metrics({"train_error": result.train_error, "val_error": result.val_error, "test_error": result.test_error,
                     "iterations": result.iterations, "final_misclassified": result.misclassified,
                     "final_loss": result.loss, "fit_seconds": seconds})
    run.set_tags({"status": result.status, "classes": " vs ".join(splits.class_names)})
    write_json(out_dir / "result.json", dataclasses.asdict(result))
    if run.run_id is not None:
        if cfg.tracking.plots:
            run.log_artifact(perceptron_progress(fitted, out_dir / "perceptron.png", run_title(cfg)))
        run.log_artifact(out_dir / "result.json")
    return result


def run_title(cfg: PerceptronConfig) -> str:
    a, b = cfg.data.classes
    return f"perceptron {cfg.data.name} {a} vs {b} lr={cfg.lr:g}"


def summary_line(cfg: PerceptronConfig, result: AppResult, out_dir: Path) -> str:
    return (f"{run_title(cfg)}: {result.status} after {result.iterations} iterations in {result.seconds:.1f}s "
            f"(|M|={result.misclassified}) — error train {percent(result.train_error)}, val {percent(result.val_error)}, "
            f"test {percent(result.test_error)} → {out_dir / 'result.json'}")


def task(cfg) -> float:
    typed, out_dir, overrides = hydra_job(cfg)
    with recorded_run(typed.tracking, run_title(typed), "perceptron", typed, overrides) as run:
        result = train(typed, out_dir, run)
    print(summary_line(typed, result, out_dir), flush=True)
    return result.val_error if result.val_error is not None else result.test_error


def main() -> None:
    run_hydra_app(task, "perceptron", schema=PerceptronConfig)
