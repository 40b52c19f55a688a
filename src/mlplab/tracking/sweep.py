"""A Hydra multirun in MLflow: one parent run per sweep (``SweepCallback``, named in conf/train.yaml), every
job's run its nested child, and the best child recorded on the parent when the sweep ends."""

from __future__ import annotations

import tempfile
from pathlib import Path
from typing import Any, Optional

from hydra.experimental.callback import Callback

from ..files import write_text
from ..training.recorder import NoRecorder, Recorder
from .recorder import SELECTION_METRIC, MlflowRecorder
from ..training.result import sweep_summary_line
from .run import TrackedRun, distinguishing_params, now_ms, provenance

PARENT_RUN_FILE = ".mlflow_parent_run_id"  # written into a sweep's directory for its jobs to find
_open_sweeps: list[TrackedRun] = []  # the parents of sweeps this process has started


class SweepCallback(Callback):
    def on_multirun_start(self, config, **kwargs) -> None:
        tracking = config.tracking
        if tracking.mode == "off":
            return
        sweep_dir = Path(str(config.hydra.sweep.dir)).resolve()
        overrides = list(config.hydra.overrides.task)
        tags = {**provenance("sweep", overrides, with_torch=False), "sweep_id": str(sweep_dir)}
        parent = TrackedRun.open(tracking, f"sweep {config.name}: {tags['overrides']}", tags)
        _open_sweeps.append(parent)
        write_text(sweep_dir / PARENT_RUN_FILE, parent.run_id)

    def on_multirun_end(self, config, **kwargs) -> None:
        close_open_sweeps("FINISHED")
        print(sweep_summary_line(Path(str(config.hydra.sweep.dir)).resolve(), config.name), flush=True)


def close_open_sweeps(status: str) -> None:
    """Record each open sweep's best child on its parent run and close the parent. (A sweep ended by an
    exception never reaches ``on_multirun_end``: the app calls this with FAILED or KILLED.)"""
    while _open_sweeps:
        parent = _open_sweeps.pop()
        try:
            summarize_sweep(parent)
        finally:
            parent.close(status)


def summarize_sweep(parent: TrackedRun) -> Optional[Any]:
    """The children ranked by final validation accuracy; the best one's figures and names on the parent."""
    from mlflow.entities import Metric

    client = parent.client
    children = client.search_runs([client.get_run(parent.run_id).info.experiment_id],
                                  filter_string=f"tags.mlflow.parentRunId = '{parent.run_id}'",
                                  order_by=[f"metrics.{SELECTION_METRIC} DESC"], max_results=5000)
    ranked = [c for c in children if SELECTION_METRIC in c.data.metrics]
    tags, metrics = {"children": str(len(children))}, []
    swept = distinguishing_params(children)
    if swept:  # the keys the sweep varied, with their values, as the parent's params; and its figure
        tags["swept_keys"] = " ".join(swept)
        parent.log_params({f"swept.{key}": ", ".join(values_of(children, key)) for key in swept})
        if ranked:
            with tempfile.TemporaryDirectory(prefix="mlplab-sweep-") as folder:
                parent.log_artifact(sweep_figure(parent, ranked, swept, Path(folder)))
    if ranked:
        best, now = ranked[0], now_ms()
        metrics = [Metric(f"best_{SELECTION_METRIC}", best.data.metrics[SELECTION_METRIC], now, 0)]
        if "test_accuracy" in best.data.metrics:
            metrics.append(Metric("best_test_accuracy", best.data.metrics["test_accuracy"], now, 0))
        tags.update({"best_run_id": best.info.run_id, "best_run_name": best.info.run_name or "",
                     "best_overrides": best.data.tags.get("overrides", "")})
    parent.log_batch(metrics, tags)
    return ranked[0] if ranked else None


def values_of(runs, key: str) -> list[str]:
    """The distinct values ``runs`` took for param ``key``: in numeric order when they are all numbers."""
    values = list(dict.fromkeys(run.data.params.get(key, "-") for run in runs))
    try:
        return sorted(values, key=float)
    except ValueError:
        return values


def sweep_figure(parent: TrackedRun, ranked, swept: list[str], folder: Path) -> Path:
    """``final_val_accuracy`` of each child against each swept key (matplotlib: drawn once per sweep)."""
    from ..figures import mpl

    points = {key: [(run.data.params.get(key, "-"), run.data.metrics[SELECTION_METRIC]) for run in ranked]
              for key in swept}
    name = parent.client.get_run(parent.run_id).info.run_name or "sweep"
    return mpl.metric_against_keys(points, folder / f"sweep_{SELECTION_METRIC}.png", SELECTION_METRIC, name)


def parent_run_of(sweep_dir: Path) -> Optional[str]:
    """The MLflow run id of the sweep whose output folder is ``sweep_dir``, if it has one."""
    path = sweep_dir / PARENT_RUN_FILE
    return path.read_text().strip() if path.is_file() else None


def recorder_for(cfg, overrides: list[str], sweep_dir: Optional[Path] = None,
                 job_num: Optional[int] = None, tags: Optional[dict] = None) -> Recorder:
    """The recorder a job's config asks for; in a sweep, its run becomes the sweep's child. ``tags``: more
    tags for its run (e.g. the population it trained in)."""
    if cfg.tracking.mode == "off":
        return NoRecorder()
    parent = parent_run_of(sweep_dir) if sweep_dir is not None else None
    return MlflowRecorder(cfg, overrides, parent, str(sweep_dir) if sweep_dir else None, job_num, tags)
