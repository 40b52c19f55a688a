"""``mlplab-train``: one training job over ``conf/train.yaml`` (a Hydra multirun: one job per configuration,
their MLflow runs the children of the sweep's)."""

from __future__ import annotations

import sys
from pathlib import Path
from typing import Optional

from ..tracking.sweep import close_open_sweeps, recorder_for
from ..training.loop import train
from ..training.result import summary_line
from .hydra_app import EXIT_DIVERGED, hydra_job, in_multirun, run_hydra_app


def task(cfg) -> Optional[float]:
    from hydra.core.hydra_config import HydraConfig

    typed, out_dir, overrides = hydra_job(cfg)
    multirun = in_multirun()
    hydra_cfg = HydraConfig.get()
    recorder = recorder_for(typed, overrides, sweep_dir=Path(hydra_cfg.sweep.dir).resolve() if multirun else None,
                            job_num=hydra_cfg.job.num if multirun else None)
    result = train(typed, out_dir, quiet=multirun, recorder=recorder)
    print(summary_line(typed, result, out_dir), flush=True)
    if result.status == "diverged" and not multirun:  # a result, not a success: scripts must see it
        print(f"{Path(sys.argv[0]).name}: error: training diverged ({result.detail}): lower optimizer.lr "
              f"(now {typed.optimizer.lr:g}) or use a schedule", file=sys.stderr)
        raise SystemExit(EXIT_DIVERGED)
    return result.val_accuracy  # what a sweep optimises


def main() -> None:
    run_hydra_app(task, "train", on_abort=close_open_sweeps)
