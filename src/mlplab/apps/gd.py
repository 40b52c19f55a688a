"""``mlplab-gd``: Assignment 6, Question 1 — gradient descent on f(x) from x = start with several learning rates
(``conf/gd.yaml``; the algorithm is ``course/gd.py``)."""

from __future__ import annotations

import dataclasses
import math
from dataclasses import dataclass, field
from pathlib import Path

from ..config import TrackingConfig, require
from ..course.expression import parse_function
from ..course.gd import GdResult, run, table
from ..figures.course import gd_convergence
from ..files import write_json
from ..tracking.run import TrackedRun, recorded_run
from .hydra_app import hydra_job, run_hydra_app


@dataclass
class GdConfig:
    function: str = "x**4/4 - 3*x**3 + 7*x - 5"
    start: float = 0.0
    learning_rates: list[float] = field(default_factory=lambda: [0.01, 0.05, 0.1])
    iterations: int = 30
    tolerance: float = 1e-6  # on |f(x_k) − f*|
    tracking: TrackingConfig = field(default_factory=lambda: TrackingConfig(experiment="assignment6-q1"))
    name: str = "q1"

    def __post_init__(self) -> None:
        parse_function(self.function)  # a ConfigError naming the offending part
        require(len(self.learning_rates) >= 1, "learning_rates needs at least one rate, e.g. learning_rates=[0.01,0.05,0.1]")
        require(all(lr > 0 for lr in self.learning_rates), f"learning_rates={self.learning_rates}: every rate must be > 0")
        require(len(set(self.learning_rates)) == len(self.learning_rates), f"learning_rates={self.learning_rates} repeats a rate")
        require(self.iterations >= 1, f"iterations={self.iterations} must be >= 1")
        require(self.tolerance > 0, f"tolerance={self.tolerance} must be > 0")
        require(math.isfinite(self.start), f"start={self.start} must be a finite number")


def record(result: GdResult, recorder: TrackedRun, out_dir: Path, plots: bool = True) -> Path:
    """Log ``result`` on ``recorder``'s run (f(x_k) series per rate, the answer, the figure); write
    ``result.json`` and ``gd.png`` into ``out_dir`` either way. Returns the figure's path."""
    recorder.log_series({f"f_{r.lr:g}": r.f for r in result.rates})
    recorder.log_metrics({"x_star": result.x_star, "f_star": result.f_star, "best_lr": result.best_lr,
                          **{f"iterations_to_tol_{r.lr:g}": r.iterations_to_tol for r in result.rates},
                          **{f"final_gap_{r.lr:g}": r.final_gap for r in result.rates}})
    recorder.set_tags({"best_lr": result.best_lr, "criterion": result.criterion,
                       **{f"approach_{r.lr:g}": r.approach for r in result.rates}})
    path = write_json(out_dir / "result.json", {**dataclasses.asdict(result), "mlflow_run_id": recorder.run_id})
    figure = gd_convergence(result, out_dir / "gd.png")  # the figure Q1 asks for, tracked or not
    if recorder.run_id is not None:
        recorder.log_artifact(path)
        if plots:
            recorder.log_artifact(figure)
    return figure


def task(cfg) -> float:
    typed, out_dir, overrides = hydra_job(cfg)
    with recorded_run(typed.tracking, f"{typed.name}: {typed.function}", "gd", typed, overrides) as recorder:
        result = run(typed)
        record(result, recorder, out_dir, typed.tracking.plots)
    print(table(result), flush=True)
    return result.f_star


def main() -> None:
    run_hydra_app(task, "gd", schema=GdConfig)
