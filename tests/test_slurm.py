"""Sweeps on a real SLURM cluster: the throw-away one-node cluster of scripts/slurm-cluster.sh (munged, MariaDB
+ slurmdbd, slurmctld, slurmd on free 127.0.0.1 ports), started for this module and stopped after it."""

from __future__ import annotations

import json
import os
import shutil
import signal
import subprocess
import sys
import time
import types
from pathlib import Path
from typing import Optional

import optuna
import pytest
import torch
from mlflow.tracking import MlflowClient

from helpers.configs import tiny_overrides
from helpers.console import CONSOLE_SCRIPT, collect, script
from helpers.postgres import postgres_server, server_binaries
from helpers.servers import tracking_server

CLUSTER_SCRIPT = Path(__file__).resolve().parents[1] / "scripts" / "slurm-cluster.sh"
SEARCH_SCRIPT = script("mlplab-search")
DAEMONS = ("munged", "mariadbd", "slurmdbd", "slurmctld", "slurmd")


def cluster_possible() -> bool:
    """As root (the daemons run as root), with the daemons installed or apt-get to install them."""
    installed = all(shutil.which(d) for d in ("slurmctld", "slurmd", "slurmdbd", "munged", "mariadbd"))
    return os.geteuid() == 0 and (installed or shutil.which("apt-get") is not None)


@pytest.fixture(scope="module")
def slurm(tmp_path_factory):
    """The cluster's environment for commands (SLURM_CONF); after the module, its daemons stopped and gone."""
    if not cluster_possible():
        pytest.skip("the throw-away SLURM cluster needs root, and SLURM installed or apt-get to install it")
    state = tmp_path_factory.mktemp("slurm")
    started = subprocess.run([str(CLUSTER_SCRIPT), "start", str(state)], capture_output=True, text=True, timeout=600)
    pids = {name: int((state / "pids" / name).read_text()) for name in DAEMONS if (state / "pids" / name).is_file()}
    try:
        assert started.returncode == 0, started.stderr
        env = {**os.environ, "SLURM_CONF": str(state / "slurm.conf"), "PYTHONUNBUFFERED": "1"}
        env.pop("HYDRA_FULL_ERROR", None)
        yield env
    finally:
        stopped = subprocess.run([str(CLUSTER_SCRIPT), "stop", str(state)], capture_output=True, text=True, timeout=120)
        assert stopped.returncode == 0, stopped.stderr
        assert [name for name, pid in pids.items() if alive(pid)] == []  # nothing it started outlives it
        assert job_steps_of(state) == []


def alive(pid: int) -> bool:
    try:
        os.kill(pid, 0)
    except ProcessLookupError:
        return False
    return Path(f"/proc/{pid}").exists() and "zombie" not in Path(f"/proc/{pid}/status").read_text().lower()


def job_steps_of(state: Path) -> list[str]:
    """slurmstepd processes of this cluster still running (they would hold its jobs)."""
    found = []
    for proc in Path("/proc").iterdir():
        try:
            cmdline = (proc / "cmdline").read_bytes().replace(b"\0", b" ").decode()
        except OSError:
            continue
        if cmdline.startswith("slurmstepd") and str(state) in (proc / "environ").read_bytes().decode(errors="replace"):
            found.append(cmdline)
    return found


def sweep(data_root, mlflow_uri, sweep_dir: Path, *overrides: str) -> list[str]:
    return [str(CONSOLE_SCRIPT), "-m", *tiny_overrides(data_root), "tracking=local", f"tracking.uri={mlflow_uri}",
            "tracking.experiment=slurm", "hydra/launcher=slurm", "hydra.launcher.cpus_per_task=1",
            f"hydra.sweep.dir={sweep_dir}", *overrides]


def children(mlflow_uri: str):
    client = MlflowClient(mlflow_uri)
    runs = client.search_runs([e.experiment_id for e in client.search_experiments()], max_results=100)
    parents = [r for r in runs if r.data.tags.get("mlplab.kind") == "sweep"]
    assert len(parents) == 1
    parent = parents[0]
    return parent, sorted((r for r in runs if r.data.tags.get("mlflow.parentRunId") == parent.info.run_id),
                          key=lambda r: (int(r.data.tags["job_num"]), r.info.start_time))


def squeue(env) -> list[str]:
    out = subprocess.run(["squeue", "-h", "-o", "%i"], env=env, capture_output=True, text=True, check=True).stdout
    return out.split()


def wait_for(condition, seconds: float, what: str) -> None:
    deadline = time.monotonic() + seconds
    while not condition():
        assert time.monotonic() < deadline, f"{what} did not happen in {seconds:.0f} s"
        time.sleep(0.2)


def test_a_four_job_sweep_lands_as_four_finished_children_of_one_parent(slurm, data_root, mlflow_uri, tmp_path):
    run = subprocess.run(sweep(data_root, mlflow_uri, tmp_path / "sweep", "optimizer.lr=0.1,0.5,1,2"), cwd=tmp_path,
                         env=slurm, capture_output=True, text=True, timeout=300)
    assert run.returncode == 0, run.stderr
    parent, runs = children(mlflow_uri)
    assert parent.info.status == "FINISHED" and parent.data.tags["children"] == "4"
    assert [r.info.status for r in runs] == ["FINISHED"] * 4
    assert sorted(r.data.params["optimizer.lr"] for r in runs) == ["0.1", "0.5", "1.0", "2.0"]
    (array,) = {r.data.tags["slurm_job_id"].split("_")[0] for r in runs}  # one array, one task per job
    assert sorted(r.data.tags["slurm_job_id"] for r in runs) == [f"{array}_{i}" for i in range(4)]
    for num, child in enumerate(runs):
        result = json.loads((tmp_path / "sweep" / str(num) / "result.json").read_text())
        assert result["status"] == "finished" and result["mlflow_run_id"] == child.info.run_id
        assert child.data.metrics["val_accuracy"] == pytest.approx(result["val_accuracy"])
    assert "SLURM sweep of 4 jobs: 4 finished" in run.stdout + run.stderr


def test_a_diverging_and_a_cancelled_job_end_failed_and_killed_and_the_sweep_reports_both(slurm, data_root, mlflow_uri, tmp_path):
    # jobs: #0 would run for hours: it is cancelled; #1 and #3 diverge (Adam at lr 1e30), #2 finishes. #0 is in the
    # array's first pair of tasks, so the others run while it waits for its cancel.
    command = sweep(data_root, mlflow_uri, tmp_path / "sweep", "optimizer=adam", "model.activation=relu",
                    "trainer.epochs=100000,2", "optimizer.lr=0.001,1e30")
    process = subprocess.Popen(command, cwd=tmp_path, env=slurm, stdout=subprocess.PIPE, stderr=subprocess.PIPE, text=True)
    try:
        wait_for(lambda: (tmp_path / "sweep" / "0" / "checkpoint.pt").is_file(), 240, "job #0's first epoch")
        (task,) = [job for job in squeue(slurm) if job.endswith("_0")]
        subprocess.run(["scancel", task], env=slurm, check=True)
    finally:
        stdout, stderr = collect(process, timeout=240)
    assert process.returncode == 2, stderr
    last = stderr.strip().splitlines()[-1]
    assert last.startswith("mlplab-train: error: 1 of 4 jobs of the SLURM sweep did not finish: #0 SLURM job")
    assert f"{task} ended CANCELLED" in last
    assert "1 did not finish (#0), 2 diverged (#1, #3), 1 finished" in stdout + stderr
    parent, runs = children(mlflow_uri)
    assert [(r.info.status, r.data.tags["status"]) for r in runs] == [
        ("KILLED", "killed"), ("FAILED", "diverged"), ("FINISHED", "finished"), ("FAILED", "diverged")]
    assert parent.info.status == "FAILED"  # the sweep did not give every job's result
    assert squeue(slurm) == []


def test_a_job_warned_of_its_time_limit_then_requeued_resumes_twice_and_ends_with_the_uninterrupted_weights(slurm, data_root, mlflow_uri, tmp_path):
    # SLURM's warning before the time limit (USR2, hydra.launcher.signal_delay_s ahead; sent here by scancel so as
    # not to wait for a real limit) makes submitit checkpoint and requeue the job; then an administrator's
    # `scontrol requeue` (as a pre-emption does) interrupts the second attempt. Each attempt resumes the last.
    common = ["trainer.epochs=400", "optimizer=sgdm", "regularization=dropout"]  # momentum and masks must resume too
    alone = subprocess.Popen([str(CONSOLE_SCRIPT), *tiny_overrides(data_root), *common, f"hydra.run.dir={tmp_path / 'alone'}"],
                             cwd=tmp_path, stdout=subprocess.PIPE, stderr=subprocess.PIPE, text=True)  # meanwhile, here
    process = subprocess.Popen(sweep(data_root, mlflow_uri, tmp_path / "sweep", *common), cwd=tmp_path, env=slurm,
                               stdout=subprocess.PIPE, stderr=subprocess.PIPE, text=True)
    checkpoint = tmp_path / "sweep" / "0" / "checkpoint.pt"
    try:
        wait_for(checkpoint.is_file, 240, "the job's first epoch")
        (job,) = squeue(slurm)
        subprocess.run(["scancel", "--signal=USR2", job], env=slurm, check=True)
        wait_for(lambda: restarts(slurm, job) == 1, 120, "submitit's requeue")
        resumed_at = time.time()
        wait_for(lambda: checkpoint.stat().st_mtime > resumed_at, 240, "the second attempt's first epoch")
        subprocess.run(["scontrol", "requeue", job], env=slurm, check=True)
    finally:
        stdout, stderr = collect(process, timeout=300)
        _, alone_stderr = collect(alone, timeout=300)
    assert process.returncode == 0, stderr
    assert alone.returncode == 0, alone_stderr
    resumed, uninterrupted = (torch.load(d / "model.pt", weights_only=True) for d in (tmp_path / "sweep" / "0", tmp_path / "alone"))
    assert resumed.keys() == uninterrupted.keys()
    assert all(torch.equal(resumed[k], uninterrupted[k]) for k in resumed)  # bit-identical
    _, runs = children(mlflow_uri)
    (warned, requeued, last) = runs
    assert (warned.info.status, warned.data.tags["status"]) == ("KILLED", "killed")
    assert warned.data.tags["status_detail"].startswith("requeued on SLURM's warning of its time limit")
    assert (requeued.info.status, requeued.data.tags["status"], requeued.data.tags["slurm_restarts"]) == ("KILLED", "killed", "1")
    assert (last.info.status, last.data.tags["status"], last.data.tags["slurm_restarts"]) == ("FINISHED", "finished", "2")
    assert last.data.params["trainer.resume"] == str(checkpoint)
    result = json.loads((tmp_path / "sweep" / "0" / "result.json").read_text())
    assert result["status"] == "finished" and result["epochs_run"] == 400 and len(result["history"]) == 400


def restarts(env, job: str) -> int:
    """How many times SLURM has requeued ``job`` so far, once it runs again (-1 while it is not running)."""
    shown = subprocess.run(["scontrol", "show", "job", job], env=env, capture_output=True, text=True).stdout
    fields = dict(field.split("=", 1) for field in shown.split() if "=" in field)
    return int(fields.get("Restarts", -1)) if fields.get("JobState") == "RUNNING" else -1


@pytest.mark.skipif(server_binaries() is None, reason="PostgreSQL's server binaries are missing (make setup installs them)")
def test_a_two_worker_study_on_slurm_retries_a_killed_workers_trial_and_ends_with_exactly_n_trials_in_the_mlflow_server(slurm, data_root, tmp_path):
    with postgres_server(also=("mlflow",)) as storage, \
            tracking_server(storage.rsplit("/", 1)[0] + "/mlflow", tmp_path / "served-artifacts") as server:
        process = subprocess.Popen(
            [str(SEARCH_SCRIPT), *tiny_overrides(data_root), "tracking=server", f"tracking.uri={server}",
             "tracking.experiment=slurm-study", "search=q2_lr", "search.n_trials=4", "search.pruner=none",
             "trainer.epochs=60", "search.heartbeat_seconds=2", "search.workers=2", "search.executor=slurm",
             "search.slurm.cpus_per_task=1", f"search.storage={storage}", "search.write_experiment=false",
             "search.final_test=false", f"hydra.run.dir={tmp_path / 'study'}"],
            cwd=tmp_path, env=slurm, stdout=subprocess.PIPE, stderr=subprocess.PIPE, text=True)
        try:  # worker 1 is killed on its node (kill -9) in its first trial: only its heartbeat stops
            wait_for(lambda: running_trial_of(storage, "_1") is not None, 240, "worker 1's first trial")
            lost = running_trial_of(storage, "_1")
            wait_for(lambda: str(lost.number) in {r.data.tags.get("job_num") for r in running_trial_runs(server)}, 60,
                     "its MLflow run")
            os.kill(submitit_python_of(lost.user_attrs["worker"].removeprefix("slurm:")), signal.SIGKILL)
        finally:
            stdout, stderr = collect(process, timeout=400)
        assert process.returncode == 0, stderr
        assert f"ended FAILED: its running trial is retried once its heartbeat is stale" in stdout + stderr
        assert (stdout + stderr).count("its running trial is retried") == 1  # the other worker completed
        trials = optuna.load_study(study_name="q2_lr", storage=storage).trials
        states = [t.state for t in trials]
        assert states.count(optuna.trial.TrialState.COMPLETE) == 4 and states.count(optuna.trial.TrialState.FAIL) == 1
        assert trials[lost.number].state == optuna.trial.TrialState.FAIL
        (retry,) = [t for t in trials if t.system_attrs.get("failed_trial") == lost.number]  # Optuna's retry of it
        assert retry.state == optuna.trial.TrialState.COMPLETE and retry.params == lost.params
        client = MlflowClient(server)
        (experiment,) = [e for e in client.search_experiments() if e.name == "slurm-study"]
        runs = client.search_runs([experiment.experiment_id])
        (parent,) = [r for r in runs if r.data.tags.get("mlplab.kind") == "study"]
        trial_runs = {int(r.data.tags["job_num"]): r for r in runs if r.data.tags.get("mlflow.parentRunId") == parent.info.run_id}
        assert parent.info.status == "FINISHED"
        assert sorted(trial_runs) == [t.number for t in trials]  # every trial a child run, the lost one too
        # ended by the launcher once the trial failed (worker_lost), or first by the other worker, which sees on this one
        # node that the run's process is gone (process_lost)
        assert trial_runs[lost.number].info.status == "KILLED"
        assert trial_runs[lost.number].data.tags["status"] in ("worker_lost", "process_lost")
        assert all(r.info.status == "FINISHED" for number, r in trial_runs.items() if number != lost.number)
        workers = {r.data.tags["slurm_job_id"] for r in trial_runs.values()}  # the trials ran in the two SLURM jobs
        assert len(workers) == 2 and all(w.rsplit("_", 1)[-1] in ("0", "1") for w in workers)
        assert {t.user_attrs["worker"] for t in trials} == {f"slurm:{w}" for w in workers}
        artifacts = client.list_artifacts(trial_runs[retry.number].info.run_id)  # uploaded through the server
        assert artifacts and (tmp_path / "served-artifacts").is_dir()
    assert squeue(slurm) == []


def running_trial_of(storage: str, task: str):
    """The RUNNING trial of the SLURM worker whose array task ends with ``task``, if it has one."""
    try:
        trials = optuna.load_study(study_name="q2_lr", storage=storage).trials
    except KeyError:  # the study is not made yet
        return None
    return next((t for t in trials if t.state == optuna.trial.TrialState.RUNNING
                 and t.user_attrs.get("worker", "").endswith(task)), None)


def submitit_python_of(task: str) -> int:
    """The pid of the Python process that SLURM array task ``task`` (e.g. ``12_1``) runs submitit's job in."""
    array, index = task.split("_")
    for proc in Path("/proc").iterdir():
        try:
            cmdline = (proc / "cmdline").read_bytes().split(b"\0")
            environ = set((proc / "environ").read_bytes().split(b"\0"))
        except OSError:
            continue
        if b"submitit.core._submit" in cmdline and {f"SLURM_ARRAY_JOB_ID={array}".encode(),
                                                    f"SLURM_ARRAY_TASK_ID={index}".encode()} <= environ:
            return int(proc.name)
    raise AssertionError(f"no submitit process of SLURM task {task}")


def test_a_sweep_sbatch_refuses_ends_in_one_line_naming_the_fix(slurm, data_root, mlflow_uri, tmp_path):
    run = subprocess.run(sweep(data_root, mlflow_uri, tmp_path / "sweep", "optimizer.lr=0.1",
                               "hydra.launcher.partition=no_such_partition"), cwd=tmp_path, env=slurm,
                         capture_output=True, text=True, timeout=120)
    assert run.returncode == 2
    last = run.stderr.strip().splitlines()[-1]
    assert last.startswith("mlplab-train: error: SLURM refused the jobs (sbatch: error: ") and "partition" in last
    parent, runs = children(mlflow_uri)
    assert parent.info.status == "FAILED" and runs == []  # the sweep's parent does not stay RUNNING


def test_a_sweep_without_slurm_installed_ends_in_one_line(data_root, mlflow_uri, tmp_path):
    env = {**os.environ, "PATH": str(CONSOLE_SCRIPT.parent)}  # no sbatch, no srun
    env.pop("HYDRA_FULL_ERROR", None)
    run = subprocess.run(sweep(data_root, mlflow_uri, tmp_path / "sweep", "optimizer.lr=0.1"), cwd=tmp_path, env=env,
                         capture_output=True, text=True, timeout=120)
    assert run.returncode == 2
    assert run.stderr.strip().splitlines()[-1] == (
        "mlplab-train: error: cannot submit to SLURM: sbatch and srun are not installed here: run this on your "
        "cluster's login node (scripts/slurm-cluster.sh start makes a cluster on this machine)")


def test_ctrl_c_on_a_slurm_study_cancels_its_workers_and_ends_their_trials_and_runs(slurm, data_root, mlflow_uri, tmp_path):
    journal = tmp_path / "study.journal"
    process = subprocess.Popen(
        [str(SEARCH_SCRIPT), *tiny_overrides(data_root), "tracking=local", f"tracking.uri={mlflow_uri}",
         "tracking.experiment=slurm-study", "search=q2_lr", "search.n_trials=4", "search.pruner=none",
         "trainer.epochs=100000", "search.workers=2", "search.executor=slurm", "search.slurm.cpus_per_task=1",
         f"search.storage={journal}", "search.write_experiment=false", "search.final_test=false",
         f"hydra.run.dir={tmp_path / 'study'}"], cwd=tmp_path, env=slurm, stdout=subprocess.PIPE,
        stderr=subprocess.PIPE, text=True)
    try:
        wait_for(lambda: len(running_trial_runs(mlflow_uri)) == 2, 240, "both workers' trials")
        started = time.monotonic()
        process.send_signal(signal.SIGINT)
    finally:
        _, stderr = collect(process, timeout=120)
    assert process.returncode == 130, stderr
    assert time.monotonic() - started < 30
    assert squeue(slurm) == []
    storage = optuna.storages.JournalStorage(optuna.storages.journal.JournalFileBackend(str(journal)))
    trials = optuna.load_study(study_name="q2_lr", storage=storage).trials
    assert [t.state for t in trials] == [optuna.trial.TrialState.FAIL] * 2  # interrupted: no budget used
    assert all(t.user_attrs.get("interrupted") for t in trials)
    client = MlflowClient(mlflow_uri)
    runs = client.search_runs([e.experiment_id for e in client.search_experiments()])
    assert sorted(r.info.status for r in runs) == ["KILLED"] * 3  # the study's parent and both trials


def running_trial_runs(mlflow_uri: str) -> list:
    client = MlflowClient(mlflow_uri)
    runs = client.search_runs([e.experiment_id for e in client.search_experiments()], "attributes.status = 'RUNNING'")
    return [r for r in runs if "job_num" in r.data.tags]


def test_a_job_exited_mid_epoch_by_submitits_time_limit_handler_is_killed_not_failed():
    from mlplab.tracking.run import RUN_STATUS
    from mlplab.training.result import Result

    result = Result(status="finished")
    result.end_by(SystemExit(-1))  # submitit requeues the job, then exits: the run is KILLED, the requeue resumes it
    assert (result.status, RUN_STATUS[result.status]) == ("killed", "KILLED")
    assert result.detail == "exited (sys.exit(-1) during training)"


@pytest.mark.parametrize("submitit_does, status, detail", [
    ("requeue", "killed", "requeued on SLURM's warning of its time limit or a pre-emption (USR2): the next attempt "
                          "resumes from its last checkpoint"),
    ("refuse", "killed", "out of time: SLURM's time limit is near and the job is not requeued (Job not requeued "
                         "because: timed-out too many times.)")])
def test_the_time_limit_warning_ends_the_run_saying_whether_it_was_requeued(submitit_does, status, detail):
    import submitit

    from mlplab.slurm import hand_requeues_to_the_run
    from mlplab.training.result import Result

    def submitits_handler(signum, frame):  # as submitit's checkpoint_and_try_requeue ends
        if submitit_does == "requeue":
            sys.exit(-1)
        raise submitit.core.utils.UncompletedJobError("Job not requeued because: timed-out too many times.")

    previous = {signum: signal.signal(signum, submitits_handler if signum == signal.SIGUSR2 else signal.getsignal(signum))
                for signum in (signal.SIGUSR2, signal.SIGTERM)}
    try:
        hand_requeues_to_the_run()
        result = Result(status="finished")
        with pytest.raises(BaseException) as ended:
            signal.raise_signal(signal.SIGUSR2)
        result.end_by(ended.value)
        assert signal.getsignal(signal.SIGTERM) == signal.SIG_IGN  # SLURM's SIGTERM must not cut the closing short
    finally:
        for signum, handler in previous.items():
            signal.signal(signum, handler)
    assert (result.status, result.detail) == (status, detail)


class FakeJob:
    """What ``slurm.completed`` and ``slurm.gave_no_result`` read of a submitit job."""

    def __init__(self, state: str, folder: Path, returned: Optional[str] = None):
        self.state, self.paths = state, types.SimpleNamespace(result_pickle=folder / "result.pkl")
        self.returned = returned
        if returned:
            self.paths.result_pickle.write_text(returned)

    def exception(self):
        return None if self.returned == "success" else RuntimeError("the job's error")


@pytest.mark.parametrize("state, returned, completed, gave_no_result", [
    ("COMPLETED", "success", True, False),
    ("RUNNING", "success", True, False),  # its function returned; sacct has not caught up with its exit yet
    ("RUNNING", "error", False, False),
    ("FAILED", "error", False, False),  # the error is in the result file: worth reading
    ("FAILED", None, False, False),  # killed on its node: submitit may still find a late result file
    ("CANCELLED by 0", None, False, True),
    ("TIMEOUT", None, False, True),
    ("CANCELLED by 0", "success", True, False)])  # cancelled while exiting: its work was done
def test_how_a_jobs_ending_is_read(tmp_path, state, returned, completed, gave_no_result):
    from mlplab import slurm as slurm_module

    job = FakeJob(state, tmp_path, returned)
    assert slurm_module.completed(job) is completed
    assert slurm_module.gave_no_result(job) is gave_no_result
