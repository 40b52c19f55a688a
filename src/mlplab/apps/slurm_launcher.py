"""``hydra/launcher=slurm``: every job of a multirun a SLURM array task, through Hydra's submitit launcher,
with what a sweep on a cluster needs beyond it:

- a job that fails, is cancelled (``scancel``), runs out of time or dies with its node is reported in one
  line as it ends, its MLflow run ended FAILED or KILLED with SLURM's reason (a job killed outright cannot
  end it itself), and the sweep goes on; at the end one line names every job that did not finish;
- in the job, SIGTERM (``scancel``, pre-emption) ends the run KILLED at once, as on a laptop (submitit
  would ignore it and let SLURM's SIGKILL leave the run RUNNING);
- a job that SLURM requeues (``scontrol requeue``, pre-emption, or submitit's own requeue before the time
  limit) starts again with ``trainer.resume`` at its last checkpoint, so it ends with the weights an
  uninterrupted run would have; the interrupted attempt's run is ended KILLED, tagged ``status=requeued``;
- Ctrl-C on the launching command cancels the sweep's jobs.
"""

from __future__ import annotations

import logging
import sys
from pathlib import Path
from typing import Any, Optional, Sequence

from hydra.core.singleton import Singleton
from hydra.core.utils import JobReturn, JobStatus, filter_overrides, run_job, setup_globals
from hydra_plugins.hydra_submitit_launcher.submitit_launcher import BaseSubmititLauncher
from omegaconf import OmegaConf, open_dict

import mlplab.interrupts as interrupts
import mlplab.slurm as slurm
from ..errors import MlplabError
from ..masking import MaskingStream

log = logging.getLogger(__name__)
CANCEL_GRACE_S = 20  # Ctrl-C: how long the cancelled jobs get to close their runs before this command returns


class SweepIncomplete(MlplabError):
    """Jobs of a SLURM sweep that did not finish (the others did: their results stand)."""


class SlurmLauncher(BaseSubmititLauncher):
    _EXECUTOR = "slurm"

    # ---- in the job, on a compute node ------------------------------------------------------------------
    def __call__(self, sweep_overrides: list[str], job_dir_key: str, job_num: int, job_id: str,
                 singleton_state: dict) -> JobReturn:
        import submitit

        interrupts.install()  # after submitit's handlers: SIGTERM ends the run KILLED instead of being ignored
        slurm.hand_requeues_to_the_run()
        if not isinstance(sys.stdout, MaskingStream):  # the job's log, as the command's own output
            sys.stdout, sys.stderr = MaskingStream(sys.stdout), MaskingStream(sys.stderr)
        Singleton.set_state(singleton_state)
        setup_globals()
        overrides = list(sweep_overrides)
        config, job_dir = self._job_config(overrides, job_num)
        with open_dict(config.hydra.job):
            config.hydra.job.id = submitit.JobEnvironment().job_id
        if slurm.restarts() > 0:
            config = self._resumed(config, overrides, job_dir, job_num)
        return run_job(hydra_context=self.hydra_context, task_function=self.task_function, config=config,
                       job_dir_key=job_dir_key, job_subdir_key="hydra.sweep.subdir")

    def _resumed(self, config, overrides: list[str], job_dir: Path, job_num: int):
        """A requeued job: the interrupted attempt's run ended, and ``trainer.resume`` at its checkpoint."""
        restarts = slurm.restarts()
        close_job_runs(config, {job_num}, "KILLED", {"status": "requeued", "slurm_restarts": restarts})
        checkpoint = job_dir / "checkpoint.pt"
        if not checkpoint.is_file() or any(o.startswith("trainer.resume=") for o in overrides):
            print(f"#{job_num}: requeued ({restarts}), starting afresh (no checkpoint in {job_dir})", flush=True)
            return config
        print(f"#{job_num}: requeued ({restarts}), resuming from {checkpoint}", flush=True)  # the job's log
        with open_dict(config):
            config.trainer.resume = str(checkpoint)
        return config

    def _job_config(self, overrides: list[str], job_num: int):
        """(the job's config, its output folder)."""
        config = self.hydra_context.config_loader.load_sweep_config(self.config, overrides)
        with open_dict(config.hydra.job):
            config.hydra.job.num = job_num
        return config, Path(str(OmegaConf.select(config, "hydra.sweep.dir")), str(OmegaConf.select(config, "hydra.sweep.subdir")))

    # ---- in the launching command -----------------------------------------------------------------------
    def launch(self, job_overrides: Sequence[Sequence[str]], initial_job_idx: int) -> Sequence[JobReturn]:
        assert self.config is not None
        params = dict(self.params)
        executor = slurm.executor(params.pop("submitit_folder"), params, params.pop("max_num_timeout", 0))
        sweep_dir = Path(str(self.config.hydra.sweep.dir))
        sweep_dir.mkdir(parents=True, exist_ok=True)
        log.info(f"Submitting {len(job_overrides)} jobs to SLURM as one array; sweep output dir: {sweep_dir}")
        params = []
        for idx, overrides in enumerate(job_overrides, initial_job_idx):
            log.info(f"\t#{idx} : {' '.join(filter_overrides(overrides))}")
            params.append((list(overrides), "hydra.sweep.dir", idx, f"job_id_for_{idx}", Singleton.get_state()))
        jobs = slurm.submit_array(executor, self, *zip(*params))
        log.info(f"SLURM job {jobs[0].job_id.split('_')[0]}: {len(jobs)} array tasks (squeue, sacct -j to follow; "
                 f"logs in {sweep_dir / '.submitit'})")
        try:
            returns = self._collect(jobs, [list(o) for o in job_overrides], initial_job_idx)
        except KeyboardInterrupt:
            with interrupts.deferred():  # a second Ctrl-C must not leave the jobs running on their own
                gone = slurm.cancel(jobs, CANCEL_GRACE_S)  # they end their runs KILLED on SIGTERM
                log.info(f"cancelled the sweep's {len(jobs)} SLURM jobs" + ("" if gone else " (some still completing)"))
            raise
        self._report(returns, job_overrides, initial_job_idx, sweep_dir)
        return returns

    def _collect(self, jobs, overrides: list[list[str]], first: int) -> list[JobReturn]:
        """Each job's JobReturn as it ends; a job that ended without one (cancelled, out of time, killed) gets
        a FAILED one, its run ended, and a line in the log at once."""
        returns: list[Optional[JobReturn]] = [None] * len(jobs)

        def ended(index: int, job) -> None:
            try:
                if slurm.gave_no_result(job):
                    returns[index] = self._lost(job, None, overrides[index], first + index)
                else:
                    returns[index] = job.result()
            except Exception as error:  # noqa: BLE001 - the job ended without a result: say how, and go on
                returns[index] = self._lost(job, error, overrides[index], first + index)

        slurm.wait_all(jobs, ended)
        return returns  # type: ignore[return-value]

    def _lost(self, job, error: Optional[Exception], overrides: list[str], job_num: int) -> JobReturn:
        state, word = slurm.state_of(job)
        status, tag = slurm.LOST_STATES.get(word, ("FAILED", "failed"))
        reason = f"SLURM job {job.job_id} ended {state}"
        if word not in slurm.LOST_STATES:  # a result it could not hand back: the job's own error says more
            reason += f": {str(error).strip().splitlines()[-1] if str(error).strip() else type(error).__name__}"
        config, _ = self._job_config(overrides, job_num)
        closed = close_job_runs(config, {job_num}, status,
                                {"status": tag, "slurm_state": state, "slurm_job_id": job.job_id})
        log.warning(f"#{job_num} {' '.join(filter_overrides(overrides))}: {reason}"
                    + (f"; its run ended {status}" if closed else "") + f" (log: {job.paths.stderr})")
        ret = JobReturn(overrides=overrides, status=JobStatus.FAILED)
        ret.return_value = SweepIncomplete(reason)
        return ret

    def _report(self, returns: list[JobReturn], job_overrides, first: int, sweep_dir: Path) -> None:
        """One closing line: how each job ended (from its result.json); jobs without a result fail the sweep
        with one line naming them all, once every job has ended."""
        endings: dict[str, list[int]] = {}
        for index, ret in enumerate(returns):
            ending = job_ending(ret, self._job_config(list(job_overrides[index]), first + index)[1])
            endings.setdefault(ending, []).append(first + index)
        log.info(f"SLURM sweep of {len(returns)} jobs: " + ", ".join(
            f"{len(nums)} {ending}" + ("" if ending == "finished" else f" (#{', #'.join(map(str, nums))})")
            for ending, nums in endings.items()))
        failed = [(first + i, ret) for i, ret in enumerate(returns) if ret.status == JobStatus.FAILED]
        if failed:
            summary = SweepIncomplete(f"{len(failed)} of {len(returns)} jobs of the SLURM sweep did not finish: " + "; ".join(
                f"#{num} {reason_of(ret)}" for num, ret in failed) + f" (their logs: {sweep_dir / '.submitit'})")
            for _, ret in failed:
                ret.return_value = summary


def job_ending(ret: JobReturn, job_dir: Path) -> str:
    """finished, diverged, early_stopped, … as the job's result.json says; "did not finish" for a failed job."""
    import json

    if ret.status != JobStatus.COMPLETED:
        return "did not finish"
    try:
        return str(json.loads((job_dir / "result.json").read_text())["status"])
    except (OSError, ValueError, KeyError):  # a task that writes no result.json
        return "finished"


def reason_of(ret: JobReturn) -> str:
    """A failed job's one line: SLURM's ending, or the error its task raised."""
    error = ret._return_value  # ``return_value`` raises it
    if isinstance(error, SweepIncomplete):
        return str(error)
    lines = str(error).strip().splitlines()
    return f"failed: {lines[0] if lines else type(error).__name__}"


def close_job_runs(config, job_nums: set[int], status: str, tags: dict[str, Any]) -> list[str]:
    """The sweep's child runs of ``job_nums`` still RUNNING, ended ``status`` (their process cannot)."""
    from types import SimpleNamespace

    from ..tracking.run import close_running_children
    from ..tracking.sweep import parent_run_of

    parent = parent_run_of(Path(str(OmegaConf.select(config, "hydra.sweep.dir"))))
    if OmegaConf.select(config, "tracking.mode", default="off") == "off" or parent is None:
        return []
    tracking = SimpleNamespace(uri=OmegaConf.select(config, "tracking.uri", default=None))
    return close_running_children(tracking, parent, job_nums, status, {k: str(v) for k, v in tags.items()})
