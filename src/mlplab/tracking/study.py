"""An Optuna study in MLflow: one parent run per study, every trial (and the retrained best) a child run.
The Optuna side lives in ``search/``; these functions take plain values."""

from __future__ import annotations

from pathlib import Path
from typing import Any, Optional, Sequence

from . import liveness
from .run import TrackedRun, close_running_children, now_ms, provenance
from .store import client_for, resolve_uri

SUMMARY_METRICS = ("best_test_accuracy", "best_retrained_val_accuracy")  # metrics of the parent; ``best_value``
# is a metric too, stepped by trial number; the counts are tags (as metrics the UI drew them as bar charts)
SUMMARY_COUNTS = ("trials", "complete", "pruned", "fail")


def open_study_run(tracking, study_name: str, tags: dict[str, str]) -> TrackedRun:
    return TrackedRun.open(tracking, f"study {study_name}", {**provenance("study", with_torch=False), **tags})


def existing(tracking, run_id: str) -> TrackedRun:
    return TrackedRun(client_for(resolve_uri(tracking)), run_id)


def reopen(tracking, run_id: str) -> TrackedRun:
    """A study's parent run again, RUNNING while the study goes on."""
    run = existing(tracking, run_id)
    liveness.close_stale_once(run.client)  # first: a parent whose last process was killed is among them
    run.client.update_run(run_id, status="RUNNING")
    run.set_tags(liveness.where_tags())  # this process carries it on
    return run


def close_lost_trial_runs(tracking, parent_run_id: str, failed_trials: set[int]) -> None:
    """A worker killed outright (kill -9) cannot end its trial's MLflow run: whoever finds the trial failed
    ends the run KILLED, tagged ``status=worker_lost``, so no run stays RUNNING."""
    close_running_children(tracking, parent_run_id, failed_trials, "KILLED",
                           {"status": "worker_lost", "trial_state": "FAIL"})


def tag_trial_run(tracking, run_id: str, trial_number: int, state: str) -> None:
    existing(tracking, run_id).set_tags(
        {"trial_number": str(trial_number), "trial_state": state})


def record_study(parent: TrackedRun, summary: dict[str, Any], figures: Sequence[Path],
                 best_so_far: Sequence[tuple[int, float]] = ()) -> None:
    """The study's summary on its parent run: ``best_value`` stepped by trial number (the best up to each
    completed trial, so the UI draws the study's history), the retrained best's figures as metrics, the counts
    as tags, the best params as ``best.<key>`` params (a resumed study keeps its first record of each), and the
    figures. A resumed study adds only the steps it has not recorded yet."""
    from mlflow.entities import Metric

    now = now_ms()
    recorded = {m.step for m in parent.client.get_metric_history(parent.run_id, "best_value")}
    metrics = [Metric("best_value", float(value), now, number) for number, value in best_so_far if number not in recorded]
    metrics += [Metric(key, float(summary[key]), now, 0) for key in SUMMARY_METRICS
                if isinstance(summary.get(key), (int, float))]
    parent.log_batch(metrics, {"best_trial": str(summary["best_trial"]),
                               **{key: str(summary.get(key, 0)) for key in SUMMARY_COUNTS}})
    existing = parent.client.get_run(parent.run_id).data.params
    parent.log_params({f"best.{k}": str(v) for k, v in summary["best_params"].items() if f"best.{k}" not in existing})
    for path in figures:
        parent.log_artifact(path)


def close_study_run(tracking, run_id: Optional[str], status: str) -> None:
    if run_id:
        run = existing(tracking, run_id)
        run.set_tags({"status": status.lower()})  # a resumed parent may carry an earlier ending's tag
        run.close(status)
