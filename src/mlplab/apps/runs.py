"""``mlplab-runs``: the runs of an experiment as a table, and reruns from a run's record.

    mlplab-runs                                  # the default experiment, best final validation accuracy first
    mlplab-runs -e assignment6-q2 -m test_accuracy -n 10
    mlplab-runs --kind study                     # the studies (--kind sweep: the sweeps), best first
    mlplab-runs --rerun <run id>                 # train again from the logged config (same seed, same data)
    mlplab-runs --close-stale                    # end the runs whose process died (kill -9, OOM) on this host
    mlplab-runs --close-stale --other-hosts-after 6   # and other hosts' runs not heard of for 6 hours
"""

from __future__ import annotations

import argparse
import sys
import tempfile
import time
from pathlib import Path
from typing import Callable, Optional

import mlplab.interrupts as interrupts
from ..config import TrainConfig
from ..errors import MlplabError, debugging
from ..keys import short_names
from ..masking import mask_secrets
from ..tracking.recorder import SELECTION_METRIC, MlflowRecorder
from ..tracking import liveness
from ..tracking.run import distinguishing_params
from ..tracking.store import client_for, default_uri
from ..training.loop import train
from ..training.result import summary_line
from .hydra_app import explain


class RunsError(MlplabError):
    pass


WIDTH = 80  # the table fits a terminal of this many columns
KINDS = {"train": ("final_val_accuracy", "test_accuracy"),  # what a kind's runs are ranked and tested by
         "sweep": ("best_final_val_accuracy", "best_test_accuracy"),
         "study": ("best_value", "best_test_accuracy")}


def figure(value: Optional[float], percent: bool) -> str:
    """A metric rounded for reading: accuracies as percentages to 0.1, anything else to 4 figures."""
    if value is None:
        return "-"
    return f"{100 * value:.1f}" if percent else f"{value:.4g}"


def short_value(text: str) -> str:
    """A param's value as short as it reads: numbers to 3 figures, lists of layer sizes as 784-100-10."""
    if text.startswith("[") and text.endswith("]"):
        return "-".join(part.strip() for part in text[1:-1].split(","))
    try:
        number = float(text)
    except ValueError:
        return text
    return text if number.is_integer() and "." not in text and "e" not in text.lower() else f"{number:.3g}"


def kind_of(run) -> str:
    """What a run is part of: a sweep's job, a study's trial or its retrained best, or nothing."""
    tags = run.data.tags
    if tags.get("mlplab.role") == "retrain":
        return f"best {tags.get('retrain_of_trial', '?')}"
    if tags.get("mlplab.role") == "trial" or "trial_number" in tags:
        return f"trial {tags.get('trial_number', '?')}"
    if "job_num" in tags:
        return f"job {tags['job_num']}"
    return tags.get("mlplab.kind", "-") if tags.get("mlplab.kind") != "train" else "-"


def count_columns(kind: str) -> list[tuple[str, Callable]]:
    """A training run's epochs and seconds; a parent's number of jobs or trials."""
    if kind == "train":
        return [("ep", lambda run: figure(run.data.metrics.get("epochs_run"), False)),
                ("sec", lambda run: "-" if run.data.metrics.get("train_seconds") is None
                 else f"{run.data.metrics['train_seconds']:.0f}")]
    tag = "children" if kind == "sweep" else "trials"
    return [("jobs" if kind == "sweep" else "trials", lambda run: run.data.tags.get(tag, "-"))]


def cut(text: str, width: int) -> str:
    return text if len(text) <= width else text[: max(width - 1, 0)] + "…"


def table(runs, metric: str, test_metric: str = "test_accuracy", kind: str = "train") -> str:
    """The runs, one line each, within ``WIDTH`` columns: the figures rounded, and only the params that tell
    them apart (never the tracking settings, the data folder, progress bars)."""
    keys = distinguishing_params(runs)
    names = short_names(keys)
    percent = "accuracy" in metric or metric == "best_value"
    label = {"final_val_accuracy": "val%", "best_final_val_accuracy": "val%", "best_value": "best"}.get(metric, metric[:10])
    counts = count_columns(kind)
    header = ["run", "kind", "status", label, "test%", *(name for name, _ in counts), "name", "differs"]
    rows = []
    for run in runs:
        m = run.data.metrics
        rows.append([run.info.run_id[:8], kind_of(run), run.data.tags.get("status", run.info.status.lower()),
                     figure(m.get(metric), percent), figure(m.get(test_metric), True),
                     *(value(run) for _, value in counts), run.info.run_name or "",
                     " ".join(f"{name}={short_value(run.data.params.get(key, '-'))}" for key, name in zip(keys, names))])
    fixed = [max(len(r[i]) for r in [header, *rows]) for i in range(len(header) - 2)]
    room = WIDTH - sum(fixed) - 2 * (len(header) - 1)
    differs_wanted = max(len(r[-1]) for r in [header, *rows])
    name_width = max(min(max(len(r[-2]) for r in [header, *rows]), room - min(differs_wanted, room // 2)), 4)
    widths = [*fixed, name_width, max(room - name_width, 7)]
    lines = ["  ".join(cut(c, w).ljust(w) for c, w in zip(row, widths)).rstrip() for row in [header, *rows]]
    lines.insert(1, "  ".join("-" * w for w in widths))
    return "\n".join(line[:WIDTH] for line in lines)


def list_runs(uri: str, experiment: str, metric: Optional[str], limit: int, kind: str) -> str:
    client = client_for(uri)
    found = client.get_experiment_by_name(experiment)
    if found is None:
        names = sorted(e.name for e in client.search_experiments())
        raise RunsError(f"no experiment {experiment!r} in {mask_secrets(uri)}: use -e with one of {', '.join(names) or '(none yet)'}")
    default_metric, test_metric = KINDS[kind]
    metric = metric or default_metric
    if kind == "sweep" and not metric.startswith("best_"):  # a sweep's parent carries its best child's figures
        metric = f"best_{metric}"
    runs = client.search_runs([found.experiment_id], filter_string=f"tags.`mlplab.kind` = '{kind}'",
                              order_by=[f"metrics.{metric} DESC", "attributes.start_time DESC"], max_results=limit)
    if not runs:
        return f"no {kind} runs in experiment {experiment!r}"
    return table(runs, metric, test_metric, kind)


def rerun(uri: str, run_id: str, out_root: Path) -> str:
    """Train again from the run's logged ``config.yaml`` and record it as a new run tagged ``rerun_of``."""
    from omegaconf import OmegaConf

    client = client_for(uri)
    try:
        original = client.get_run(run_id)
    except Exception as error:  # noqa: BLE001 - MLflow raises its own type for an unknown id
        raise RunsError(f"no run {run_id!r} in {mask_secrets(uri)}: copy an id from `mlplab-runs`") from error
    with tempfile.TemporaryDirectory() as folder:
        path = client.download_artifacts(run_id, "config.yaml", folder)
        logged = OmegaConf.load(path)
    cfg: TrainConfig = OmegaConf.to_object(OmegaConf.merge(OmegaConf.structured(TrainConfig), logged))
    cfg.tracking.uri, cfg.tracking.mode = uri, "local" if uri.startswith("sqlite") else cfg.tracking.mode
    out_dir = out_root / f"rerun-{run_id[:8]}-{time.strftime('%Y%m%d-%H%M%S')}"
    recorder = MlflowRecorder(cfg, [f"rerun_of={run_id}"])
    result = train(cfg, out_dir, recorder=recorder)
    client.set_tag(recorder.run_id, "rerun_of", run_id)
    before = original.data.metrics.get(SELECTION_METRIC)
    same = "identical" if before == result.val_accuracy else "DIFFERENT"
    return (f"{summary_line(cfg, result, out_dir)}\nrerun of {run_id}: {SELECTION_METRIC} "
            f"{before} → {result.val_accuracy} ({same}); new run {recorder.run_id}")


def main(argv: Optional[list[str]] = None) -> None:
    parser = argparse.ArgumentParser(prog="mlplab-runs", description="List an experiment's runs, or rerun one.")
    parser.add_argument("--uri", default=None, help="tracking URI (default: $MLFLOW_TRACKING_URI or the project store)")
    parser.add_argument("-e", "--experiment", default="mlplab")
    parser.add_argument("-m", "--metric", default=None,
                        help=f"sort by this metric, highest first (default: {SELECTION_METRIC}; a study's best_value)")
    parser.add_argument("-n", "--limit", type=int, default=20)
    parser.add_argument("--kind", default="train", choices=tuple(KINDS), help="training runs, sweep parents or study parents")
    parser.add_argument("--rerun", metavar="RUN_ID", help="train again from this run's logged config")
    parser.add_argument("--out", type=Path, default=Path("outputs"), help="where a rerun's job folder goes")
    parser.add_argument("--close-stale", action="store_true",
                        help="end KILLED (status=process_lost) the RUNNING runs whose process has died on this host")
    parser.add_argument("--other-hosts-after", type=float, metavar="HOURS",
                        help="with --close-stale: also other hosts' RUNNING runs not heard of for HOURS")
    args = parser.parse_args(argv)
    if args.other_hosts_after is not None and (not args.close_stale or args.other_hosts_after <= 0):
        parser.error("--other-hosts-after needs --close-stale and a number of hours > 0, e.g. --other-hosts-after 6")
    uri = args.uri or default_uri()
    interrupts.install()
    try:
        if args.close_stale:
            print(close_stale(uri, args.other_hosts_after))
        elif args.rerun:
            print(rerun(uri, args.rerun, args.out))
        else:
            print(list_runs(uri, args.experiment, args.metric, args.limit, args.kind))
    except KeyboardInterrupt:
        print("mlplab-runs: interrupted", file=sys.stderr)
        sys.exit(130)
    except Exception as error:  # noqa: BLE001 - every error ends in one line (or a traceback when debugging)
        if debugging():
            raise
        print(f"mlplab-runs: error: {explain(error)}", file=sys.stderr)
        sys.exit(2)


def close_stale(uri: str, other_hosts_after_hours: Optional[float]) -> str:
    after_s = other_hosts_after_hours * 3600 if other_hosts_after_hours is not None else None
    lost = liveness.close_stale(client_for(uri), after_s)
    lines = [f"{run.run_id}  {run.run_name[:40]}  (pid {run.pid} on {run.host})" for run in lost]
    return "\n".join([*lines, f"ended {len(lost)} run(s) KILLED with status={liveness.LOST}"])
