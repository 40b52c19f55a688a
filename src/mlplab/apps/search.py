"""``mlplab-search``: an Optuna study over training configs (``conf/search.yaml``), its summary in one line."""

from __future__ import annotations

import dataclasses
from typing import Any, Optional

from .hydra_app import hydra_job, run_hydra_app


def summary_line(summary: dict[str, Any], metric: str) -> str:
    line = (f"study {summary['study']}: {summary['trials']} trials ({summary.get('complete', 0)} complete, "
            f"{summary.get('pruned', 0)} pruned, {summary.get('fail', 0)} failed)")
    if summary.get("best_value") is not None:
        line += f"; best {metric} {summary['best_value']:.4f} (trial {summary['best_trial']}: {summary['best_params']})"
        if "best_test_accuracy" in summary:
            line += f"; retrained once: test accuracy {100 * summary['best_test_accuracy']:.2f}%"
        if "experiment_file" in summary:
            line += f"; rerun with mlplab-train experiment=search_{summary['study']}"
    return line


def training_config(app):
    """The training config every trial starts from: the search app's config less its ``search`` part."""
    from ..config import TrainConfig

    return TrainConfig(**{f.name: getattr(app, f.name) for f in dataclasses.fields(TrainConfig)})


def task(cfg) -> Optional[float]:
    import optuna  # Optuna, torch and MLflow only once a study runs: completion and --help answer at once

    from ..search.study import run_study

    app, out_dir, overrides = hydra_job(cfg)
    base = training_config(app)
    optuna.logging.set_verbosity(optuna.logging.WARNING)
    summary = run_study(base, app.search, out_dir, overrides)
    print(summary_line(summary, app.search.metric), flush=True)
    return summary.get("best_value")


def main() -> None:
    run_hydra_app(task, "search")
