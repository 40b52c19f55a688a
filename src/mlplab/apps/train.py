"""``mlplab-train``: one training job over ``conf/train.yaml`` (a Hydra multirun: one job per configuration,
their MLflow runs the children of the sweep's)."""

from __future__ import annotations

import sys
from pathlib import Path
from typing import Optional

from .hydra_app import EXIT_DIVERGED, hydra_job, in_multirun, run_hydra_app
from .launcher import LaunchedJob

# Training's modules (torch, MLflow: ~1.5 s) are imported where a job runs, so that shell completion and
# --help answer at once.


def task(cfg) -> Optional[float]:
    from hydra.core.hydra_config import HydraConfig

    from ..tracking.sweep import recorder_for
    from ..training.loop import train
    from ..training.result import summary_line

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


class TrainPopulations:
    """How ``hydra/launcher=population`` trains mlplab-train's jobs: those of one ``population_key`` together,
    each recorded as the sweep's child with the population it trained in as tags."""

    @staticmethod
    def key(cfg) -> Optional[tuple]:
        from ..config import to_typed
        from ..training.population import population_key

        try:
            return population_key(to_typed(cfg))
        except Exception:  # noqa: BLE001 - a job its config refuses runs alone, and fails there in its one line
            return None

    @staticmethod
    def run(jobs: list[LaunchedJob]) -> list[object]:
        from ..config import to_typed
        from ..tracking.sweep import recorder_for
        from ..training.population import train_population
        from ..training.result import summary_line

        typed = [to_typed(job.cfg) for job in jobs]
        population = {"population": f"{jobs[0].sweep_dir}:{','.join(str(job.job_num) for job in jobs)}",
                      "population_size": str(len(jobs))}
        recorders = [recorder_for(cfg, job.overrides, job.sweep_dir, job.job_num,
                                  {**population, "population_member": str(member)})
                     for member, (cfg, job) in enumerate(zip(typed, jobs))]
        try:
            members = train_population(typed, [job.out_dir for job in jobs], recorders=recorders)
        except Exception as error:  # noqa: BLE001 - what stops the population fails each of its jobs
            return [error for _ in jobs]
        outcomes: list[object] = []
        for cfg, job, member in zip(typed, jobs, members):
            if member.error is not None:
                outcomes.append(member.error)
                continue
            print(summary_line(cfg, member.result, job.out_dir), flush=True)
            outcomes.append(member.result.val_accuracy)
        return outcomes


def close_open_sweeps(status: str) -> None:
    from ..tracking.sweep import close_open_sweeps as close

    close(status)


def main() -> None:
    run_hydra_app(task, "train", on_abort=close_open_sweeps, populations=TrainPopulations())
