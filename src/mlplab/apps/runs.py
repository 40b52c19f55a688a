"""``mlplab-runs``: the runs of an experiment as a table, and reruns from a run's record.

    mlplab-runs                                  # the default experiment, best final validation accuracy first
    mlplab-runs -e assignment6-q2 -m test_accuracy -n 10
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
from typing import Optional

from .. import interrupts
from ..config import TrainConfig
from ..errors import MlplabError, debugging
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


def _format(value: Optional[float], percent: bool) -> str:
    if value is None:
        return "-"
    return f"{100 * value:.2f}%" if percent else f"{value:.4g}"


def table(runs, metric: str, test_metric: str = "test_accuracy") -> str:
    keys = distinguishing_params(runs)
    percent = "accuracy" in metric
    header = ["run", "name", "status", metric, test_metric, "epochs", "seconds", "differs in"]
    rows = []
    for run in runs:
        m = run.data.metrics
        differs = " ".join(f"{k}={run.data.params.get(k, '-')}" for k in keys)
        rows.append([run.info.run_id[:8], (run.info.run_name or "")[:40], run.data.tags.get("status", run.info.status.lower()),
                     _format(m.get(metric), percent), _format(m.get(test_metric), True),
                     _format(m.get("epochs_run"), False), _format(m.get("train_seconds"), False), differs])
    widths = [max(len(str(r[i])) for r in [header, *rows]) for i in range(len(header))]
    lines = ["  ".join(str(c).ljust(w) for c, w in zip(row, widths)).rstrip() for row in [header, *rows]]
    lines.insert(1, "  ".join("-" * w for w in widths))
    return "\n".join(lines)


def list_runs(uri: str, experiment: str, metric: str, limit: int, kind: str) -> str:
    client = client_for(uri)
    found = client.get_experiment_by_name(experiment)
    if found is None:
        names = sorted(e.name for e in client.search_experiments())
        raise RunsError(f"no experiment {experiment!r} in {mask_secrets(uri)}: use -e with one of {', '.join(names) or '(none yet)'}")
    test_metric = "test_accuracy"
    if kind == "sweep":  # a sweep's parent carries its best child's figures
        metric, test_metric = (metric if metric.startswith("best_") else f"best_{metric}"), "best_test_accuracy"
    runs = client.search_runs([found.experiment_id], filter_string=f"tags.`mlplab.kind` = '{kind}'",
                              order_by=[f"metrics.{metric} DESC", "attributes.start_time DESC"], max_results=limit)
    if not runs:
        return f"no {kind} runs in experiment {experiment!r}"
    return table(runs, metric, test_metric)


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
    parser.add_argument("-m", "--metric", default=SELECTION_METRIC, help="sort by this metric, highest first")
    parser.add_argument("-n", "--limit", type=int, default=20)
    parser.add_argument("--kind", default="train", choices=("train", "sweep"), help="training runs or sweep parents")
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
