"""SLURM jobs through submitit, as sweeps (``hydra/launcher=slurm``) and studies (``search.executor=slurm``)
use them: an executor whose jobs run in this command's Python environment, one sacct call per poll for all
of them, and what SLURM's ending of a job without a result means for its MLflow run."""

from __future__ import annotations

import os
import shutil
import signal
import subprocess
import sys
import time
from typing import Any, Callable, Optional, Sequence

from .errors import MlplabError

POLL_S = 1.0
# SLURM's ending of a job that handed back no result → (its run's MLflow status, the run's ``status`` tag)
LOST_STATES = {"CANCELLED": ("KILLED", "killed"), "TIMEOUT": ("KILLED", "killed"), "PREEMPTED": ("KILLED", "killed"),
               "DEADLINE": ("KILLED", "killed"), "NODE_FAIL": ("KILLED", "killed"), "BOOT_FAIL": ("FAILED", "failed"),
               "OUT_OF_MEMORY": ("FAILED", "failed"), "FAILED": ("FAILED", "failed")}


def job_id() -> Optional[str]:
    """The SLURM job this process runs in (``<array job>_<task>`` for an array task, as squeue shows it)."""
    env = os.environ
    if "SLURM_JOB_ID" not in env:
        return None
    return f"{env['SLURM_ARRAY_JOB_ID']}_{env['SLURM_ARRAY_TASK_ID']}" if "SLURM_ARRAY_TASK_ID" in env else env["SLURM_JOB_ID"]


def restarts() -> int:
    """How many times SLURM has requeued the job this process runs in."""
    return int(os.environ.get("SLURM_RESTART_COUNT") or 0)


class Requeued(SystemExit):
    """This attempt of the job ends: submitit checkpointed it and had SLURM requeue it, on the signal SLURM sends
    ``signal_delay_s`` before the time limit (or on a pre-emption); the next attempt resumes."""

    status = "killed"
    detail = ("requeued on SLURM's warning of its time limit or a pre-emption (USR2): the next attempt resumes "
              "from its last checkpoint")


class OutOfTime(Exception):
    """SLURM's time limit is near and submitit did not requeue the job (its requeues are used up)."""

    status = "killed"


def hand_requeues_to_the_run() -> None:
    """submitit's handler of SLURM's warning signal (USR2) ends the job by ``sys.exit(-1)``, or by an error when it
    will not requeue: both are said as what they are, so the run ends KILLED with the reason. Call in the job,
    after submitit installed its handlers."""
    submitits = signal.getsignal(signal.SIGUSR2)
    if not callable(submitits):
        return

    def on_warning(signum, frame):
        import submitit

        # This attempt ends now, whatever submitit decides: the SIGTERM with which SLURM takes back a requeued job
        # must not cut short the run's closing, nor turn its "requeued" into "interrupted".
        signal.signal(signal.SIGTERM, signal.SIG_IGN)
        try:
            submitits(signum, frame)
        except submitit.core.utils.UncompletedJobError as error:
            raise OutOfTime(f"out of time: SLURM's time limit is near and the job is not requeued ({error})") from None
        except SystemExit:
            raise Requeued(-1) from None

    signal.signal(signal.SIGUSR2, on_warning)


def executor(folder: str, params: dict[str, Any], max_num_timeout: int = 0):
    """A submitit SLURM executor; ``params`` as submitit's (cpus_per_task, mem_gb, timeout_min, …, the others
    prefixed ``slurm_``). ``setup`` None: the jobs activate the virtual environment this command runs in."""
    import submitit

    if shutil.which("sbatch") is None or shutil.which("srun") is None:
        raise SubmissionError("cannot submit to SLURM: sbatch and srun are not installed here: run this on your "
                              "cluster's login node (scripts/slurm-cluster.sh start makes a cluster on this machine)")
    params = dict(params)
    if params.get("setup") is None:
        params["setup"] = [f"source {sys.prefix}/bin/activate"] if sys.prefix != sys.base_prefix else []
    made = submitit.AutoExecutor(cluster="slurm", folder=folder, slurm_max_num_timeout=max_num_timeout)
    shared = {"timeout_min", "cpus_per_task", "gpus_per_node", "tasks_per_node", "mem_gb", "nodes", "name",
              "stderr_to_stdout"}
    made.update_parameters(**{k if k in shared else f"slurm_{k}": v for k, v in params.items()})
    return made


class SubmissionError(MlplabError):
    """sbatch refused the jobs, or is not there."""


def submit_array(made, fn: Callable, *arguments: Sequence) -> list:
    """``made.map_array(fn, *arguments)``: one array job; a refusal as one line saying what to do."""
    import submitit

    try:
        return made.map_array(fn, *arguments)
    except (submitit.core.utils.FailedJobError, subprocess.CalledProcessError, OSError) as error:
        lines = [line.strip() for line in str(error).splitlines() if line.strip()]
        said = next((line for line in reversed(lines) if "fatal" in line or "error:" in line), lines[-1] if lines else "")
        raise SubmissionError(f"SLURM refused the jobs ({said}): check the partition, account and "
                              "resources asked for, or SLURM_CONF (source the env file scripts/slurm-cluster.sh start writes)") from None


def state_of(job) -> tuple[str, str]:
    """(SLURM's state, e.g. ``CANCELLED by 0``; its first word, e.g. ``CANCELLED``)."""
    state = (job.state or "UNKNOWN").upper()
    return state, state.split()[0].rstrip("+")


def completed(job) -> bool:
    """Whether the job's function returned: SLURM says COMPLETED, or submitit's result file says so while sacct
    still shows the job RUNNING (its process exiting)."""
    if state_of(job)[1] == "COMPLETED":
        return True
    try:
        return job.paths.result_pickle.exists() and job.exception() is None
    except Exception:  # noqa: BLE001 - a result it cannot read back: not known to be complete
        return False


def gave_no_result(job) -> bool:
    """Whether SLURM ended the job (cancelled, out of time, …) before its function handed back anything: then
    there is no result to wait for (submitit waits 15 s for a slow filesystem to show one). FAILED is not one of
    these: a function that raised leaves its error in the result file."""
    word = state_of(job)[1]
    return word in LOST_STATES and word != "FAILED" and not job.paths.result_pickle.exists()


def wait_all(jobs: Sequence, on_end: Callable[[int, Any], None]) -> None:
    """Until every job has ended: ``on_end(index, job)`` for each as it ends (in the order they end)."""
    waiting = set(range(len(jobs)))
    while waiting:
        jobs[0].watcher.update()  # one sacct call for them all
        for index in sorted(waiting):
            if jobs[index].done():
                waiting.discard(index)
                on_end(index, jobs[index])
        if waiting:
            time.sleep(POLL_S)


def cancel(jobs: Sequence, grace_s: float) -> bool:
    """``scancel`` the jobs, then wait (at most ``grace_s``) until SLURM has let go of them: a cancelled job is
    CANCELLED in sacct at once, but its processes go on closing their runs on SIGTERM while squeue still lists it
    as completing. True when none is left."""
    for job in jobs:
        job.cancel(check=False)
    ids = ",".join(job.job_id for job in jobs)
    deadline = time.monotonic() + grace_s
    while True:
        listed = subprocess.run(["squeue", "-h", "-o", "%i", "-j", ids], capture_output=True, text=True)
        if listed.returncode == 0 and not listed.stdout.split():
            return True
        if time.monotonic() >= deadline:
            return False
        time.sleep(POLL_S / 4)
