"""mlplab from Python — a notebook, a script: compose a config as the command line would, train it, run a study over it,
each recorded in MLflow exactly as ``mlplab-train`` / ``mlplab-search`` record them (the store and experiment
the config names; ``tracking=off`` records nothing).

    import mlplab
    cfg = mlplab.compose("experiment=q2_shallow", "trainer.epochs=5")
    result = mlplab.train(cfg)        # a Result: result.test_accuracy, result.history, result.mlflow_run_id, …

    summary = mlplab.study("search=q2_lr", "search.n_trials=10", "trainer.epochs=5")

(``study``, not ``search``: ``mlplab.search`` is the package of the search layer, and Python binds a subpackage
to its parent's attribute of that name once it is imported, whatever was there.)

Jobs write where Hydra would put them, under the working directory: ``outputs/<date>/<time>-<name>/``.
"""

from __future__ import annotations

import time
from pathlib import Path
from typing import Any, Optional, Sequence

from .hydra_app import compose as compose_typed

OVERRIDES_ATTR = "_mlplab_overrides"  # compose's overrides, kept on the config for the run's `overrides` tag


def compose(*overrides: str):
    """The typed training config (``mlplab.config.TrainConfig``) that ``mlplab-train <overrides>`` would run,
    its range checks done: a bad value raises ``mlplab.errors.ConfigError`` with the one line the CLI prints."""
    cfg = compose_typed(list(overrides))
    setattr(cfg, OVERRIDES_ATTR, list(overrides))
    return cfg


def job_dir(name: str, root: Path = Path("outputs")) -> Path:
    """``outputs/<date>/<time>-<name>`` as Hydra names a run's folder; a second job within the same second gets
    its own folder (a user's files are never overwritten)."""
    stamp = time.strftime("%Y-%m-%d/%H-%M-%S")
    folder, n = root / f"{stamp}-{name}", 1
    while folder.exists():
        n += 1
        folder = root / f"{stamp}-{name}-{n}"
    return folder


def train(cfg, out_dir: Optional[Path] = None, overrides: Optional[Sequence[str]] = None):
    """Train ``cfg`` (from ``compose``) as ``mlplab-train`` does and return its ``Result``; prints its one line.
    ``overrides``: what the run's ``overrides`` tag says (default: those ``compose`` was given)."""
    from ..tracking.sweep import recorder_for
    from ..training.loop import train as train_job
    from ..training.result import summary_line

    overrides = list(overrides if overrides is not None else getattr(cfg, OVERRIDES_ATTR, []))
    out_dir = Path(out_dir) if out_dir is not None else job_dir(cfg.name)
    result = train_job(cfg, out_dir, recorder=recorder_for(cfg, overrides))
    print(summary_line(cfg, result, out_dir), flush=True)
    return result


def study(*overrides: str, out_dir: Optional[Path] = None) -> dict[str, Any]:
    """An Optuna study as ``mlplab-search <overrides>`` runs it (``conf/search.yaml``): its summary dict (best
    value, trial and params; the retrained best's test accuracy), and its one line printed."""
    from ..search.study import run_study
    from .search import summary_line, training_config

    app = compose_typed(list(overrides), config_name="search")
    summary = run_study(training_config(app), app.search, Path(out_dir) if out_dir else job_dir(app.name), overrides)
    print(summary_line(summary, app.search.metric), flush=True)
    return summary

