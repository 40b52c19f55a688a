"""The fault table: how a run ends when it is killed, its disk fills, its store cannot be written, it is resumed
with other settings, its data is incomplete, or a parallel search is stopped — one row per fault, each through
the real commands (issue 13; README, "When things go wrong").

What every row holds to: no MLflow run left RUNNING and none FINISHED without what it promises; a mistake or
a fault ends in one line naming the key or file and the fix, with a non-zero exit; a user's files are never
overwritten. ``before`` says what the commands did before issue 13, ``after`` what the row asserts now.
Rows start together in a small pool (each is mostly import time) and each test waits for its own; every row
has its own MLflow store, so one row's clean-up of dead runs never touches another's.
"""

from __future__ import annotations

import contextlib
import hashlib
import os
import shutil
import signal
import subprocess
import time
from collections.abc import Callable, Iterator
from concurrent.futures import ThreadPoolExecutor
from dataclasses import dataclass
from pathlib import Path

import optuna
import pytest
import torch
import yaml
from mlflow.entities import LoggedModelStatus
from mlflow.tracking import MlflowClient

from helpers.configs import tiny_overrides
from helpers.console import script
from helpers.idx import write_idx_gz
from mlplab.tracking import liveness

WORKERS = 4
ROW_TIMEOUT_S = 240
# SIGTERM to a 2-worker search until its exit: 9-11 s on an idle 2-core machine (each worker closes its run in
# ~6 s, the parent's interpreter exits in ~3 s), 21 s among the suite's other rows; it used to run every trial.
STOP_WITHIN_S = 40


@dataclass
class Env:
    """One row's world: its folder, its MLflow store, the synthetic data, and how to run the commands."""

    tmp: Path
    data: Path
    store: Path  # the sqlite file

    @property
    def uri(self) -> str:
        return f"sqlite:///{self.store}"

    def client(self) -> MlflowClient:
        return MlflowClient(self.uri)

    def train_args(self, job: str, *extra: str) -> list[str]:
        return [*tiny_overrides(self.data), "tracking=local", f"tracking.uri={self.uri}", "tracking.experiment=faults",
                f"hydra.run.dir={self.tmp / job}", *extra]

    def search_args(self, *extra: str) -> list[str]:
        return [*tiny_overrides(self.data), "tracking=local", f"tracking.uri={self.uri}", "tracking.experiment=faults",
                f"hydra.run.dir={self.tmp / 'search'}", f"search.storage={self.tmp / 'optuna.journal'}",
                f"search.experiment_dir={self.tmp / 'experiment'}", "search.final_test=false", *extra]

    def env(self) -> dict[str, str]:
        env = {k: v for k, v in os.environ.items() if k not in ("HYDRA_FULL_ERROR", "MLPLAB_DEBUG")}
        return {**env, "PYTHONUNBUFFERED": "1"}

    def run(self, command: str, args: list[str], timeout: float = 180) -> subprocess.CompletedProcess:
        return subprocess.run([str(script(command)), *args], cwd=self.tmp, env=self.env(), capture_output=True,
                              text=True, timeout=timeout)

    def start(self, command: str, args: list[str]) -> subprocess.Popen:
        return subprocess.Popen([str(script(command)), *args], cwd=self.tmp, env=self.env(), stdout=subprocess.PIPE,
                                stderr=subprocess.PIPE, text=True)

    def study(self) -> optuna.Study:
        """The row's study, from its journal file."""
        journal = optuna.storages.journal.JournalFileBackend(str(self.tmp / "optuna.journal"))
        return optuna.load_study(study_name="q2_lr", storage=optuna.storages.JournalStorage(journal))

    def runs(self, status: str | None = None) -> list:
        client = self.client()
        experiments = [e.experiment_id for e in client.search_experiments()]
        found = client.search_runs(experiments, max_results=1000)
        return [r for r in found if status is None or r.info.status == status]


def wait_for(ready: Callable[[], bool], process: subprocess.Popen | None = None, timeout: float = 120) -> None:
    deadline = time.monotonic() + timeout
    while not ready():
        assert process is None or process.poll() is None, process.communicate()
        assert time.monotonic() < deadline, "what the row waits for never happened"
        time.sleep(0.05)


def finish(process: subprocess.Popen, timeout: float = 120) -> subprocess.CompletedProcess:
    try:
        out, err = process.communicate(timeout=timeout)
    except subprocess.TimeoutExpired:
        process.kill()
        process.communicate()
        raise
    return subprocess.CompletedProcess(process.args, process.returncode, out, err)


def one_line(process: subprocess.CompletedProcess, *fragments: str, exit_code: int | None = None) -> str:
    """The command failed with exactly one line on stderr, holding every fragment, and no traceback."""
    lines = [line for line in process.stderr.splitlines() if line.strip()]
    assert process.returncode != 0 and (exit_code is None or process.returncode == exit_code), process.stderr
    assert len(lines) == 1, process.stderr
    for fragment in fragments:
        assert fragment in lines[0], lines[0]
    assert "Traceback" not in process.stderr and "weights_only=False" not in process.stderr
    return lines[0]


def no_run_running(env: Env) -> None:
    assert not env.runs("RUNNING"), [(r.info.run_name, r.data.tags.get("status")) for r in env.runs("RUNNING")]


def no_unfinished_models(env: Env) -> None:
    client = env.client()
    experiments = [e.experiment_id for e in client.search_experiments()]
    pending = [m for m in client.search_logged_models(experiment_ids=experiments) if m.status == LoggedModelStatus.PENDING]
    assert not pending


@contextlib.contextmanager
def tmpfs(folder: Path, size: str) -> Iterator[Path]:
    """A small file system of its own, to fill up; unmounted after."""
    folder.mkdir(parents=True, exist_ok=True)
    mounted = subprocess.run(["mount", "-t", "tmpfs", "-o", f"size={size}", "tmpfs", str(folder)], capture_output=True)
    if mounted.returncode != 0:
        pytest.skip(f"cannot mount a tmpfs here ({mounted.stderr.decode().strip() or 'not root'}): full-disk rows need one")
    try:
        yield folder
    finally:
        subprocess.run(["umount", "-l", str(folder)], check=False)


def digest(folder: Path) -> dict[str, str]:
    return {str(p.relative_to(folder)): hashlib.sha256(p.read_bytes()).hexdigest() for p in sorted(folder.rglob("*"))
            if p.is_file()}


# ---- point 1: runs left RUNNING ---------------------------------------------------------------------------

def kill9_mid_epoch(env: Env) -> None:
    job = env.tmp / "killed"
    process = env.start("mlplab-train", env.train_args("killed", "trainer.epochs=100000"))
    wait_for(lambda: (job / "checkpoint.pt").exists(), process)
    process.kill()
    finish(process)
    (lost,) = env.runs("RUNNING")  # nothing could close it from inside
    assert lost.data.tags[liveness.PID] == str(process.pid)
    after = env.run("mlplab-train", env.train_args("next"))
    assert after.returncode == 0, after.stderr
    run = env.client().get_run(lost.info.run_id)
    assert run.info.status == "KILLED" and run.data.tags["status"] == liveness.LOST
    assert f"process {process.pid} on " in run.data.tags["status_detail"]
    assert "ended 1 run(s) whose process had died" in after.stdout + after.stderr
    no_run_running(env)


def close_stale_on_demand(env: Env) -> None:
    process = env.start("mlplab-train", env.train_args("killed", "trainer.epochs=100000"))
    wait_for(lambda: (env.tmp / "killed" / "checkpoint.pt").exists(), process)
    process.kill()
    finish(process)
    client = env.client()
    experiment = client.get_experiment_by_name("faults").experiment_id
    two_hours_ago = str(int(time.time() * 1000) - 2 * 3600 * 1000)
    elsewhere = client.create_run(experiment, run_name="on another host", tags={
        liveness.HOST: "another-host", liveness.PID: "4242", liveness.STARTED: "1", liveness.ALIVE: two_hours_ago})
    mine = env.run("mlplab-runs", ["--uri", env.uri, "--close-stale"])
    assert mine.returncode == 0 and "ended 1 run(s) KILLED with status=process_lost" in mine.stdout, mine.stderr
    assert client.get_run(elsewhere.info.run_id).info.status == "RUNNING"  # another host's pid proves nothing here
    theirs = env.run("mlplab-runs", ["--uri", env.uri, "--close-stale", "--other-hosts-after", "1"])
    assert theirs.returncode == 0 and elsewhere.info.run_id in theirs.stdout, theirs.stderr
    assert client.get_run(elsewhere.info.run_id).data.tags["status"] == liveness.LOST
    no_run_running(env)


def full_disk_writing_the_checkpoint(env: Env) -> None:
    with tmpfs(env.tmp / "disk", "500k") as disk:  # one checkpoint (334 kB) fits, its successor's side file not
        process = env.run("mlplab-train", env.train_args("disk/job", "trainer.epochs=3"))
        written = sorted(p.name for p in (disk / "job").iterdir())
    one_line(process, "No space left on device", "checkpoint.pt", exit_code=2)
    (run,) = env.runs()
    assert run.info.status == "FAILED" and run.data.tags["status"] == "failed"
    assert "No space left on device" in run.data.tags["status_detail"]
    assert env.client().get_metric_history(run.info.run_id, "train_loss")[0].step == 1  # the epoch measured is kept
    assert "model.pt" not in written and not [name for name in written if ".partial" in name]


def full_disk_writing_the_model(env: Env) -> None:
    with tmpfs(env.tmp / "disk", "200k") as disk:  # no room for model.pt (321 kB)
        process = env.run("mlplab-train", env.train_args("disk/job", "trainer.checkpoint=false"))
        written = sorted(p.name for p in (disk / "job").iterdir())
    one_line(process, "No space left on device", "model.pt", exit_code=2)
    (run,) = env.runs()
    assert run.info.status == "FAILED" and "model.pt" in run.data.tags["status_detail"]
    assert not [name for name in written if ".partial" in name]


def sigterm_after_the_model_is_written(env: Env) -> None:
    job = env.tmp / "job"
    process = env.start("mlplab-train", env.train_args("job", "trainer.epochs=3"))
    wait_for(lambda: (job / "model.pt").exists(), process)
    process.send_signal(signal.SIGTERM)
    ended = finish(process)
    (run,) = env.runs()
    if ended.returncode == 0:  # it had closed its run before the signal came: then all of it was written
        assert run.info.status == "FINISHED" and "model_uri" in run.data.tags
    else:
        assert ended.returncode == 143, ended.stderr
        assert run.info.status == "KILLED" and run.data.tags["status"] == "killed"
    no_run_running(env)
    no_unfinished_models(env)


# ---- point 2: a signal while the run is closed ------------------------------------------------------------

def sigterm_while_the_artifacts_are_logged(env: Env) -> None:
    artifacts = env.store.parent / "artifacts"
    process = env.start("mlplab-train", env.train_args("job", "trainer.epochs=2"))
    wait_for(lambda: any(artifacts.glob("*/artifacts/config.yaml")), process)  # the closing has begun
    process.send_signal(signal.SIGTERM)
    ended = finish(process)
    assert ended.returncode == 143, ended.stdout + ended.stderr
    (run,) = env.runs()
    assert run.info.status == "KILLED" and run.data.tags["status"] == "killed"
    assert "while logging the run's artifacts" in run.data.tags["status_detail"]
    assert "model_uri" not in run.data.tags
    no_unfinished_models(env)


# ---- point 3: where the model goes ------------------------------------------------------------------------

def the_model_in_the_runs_experiment(env: Env) -> None:
    process = env.run("mlplab-train", env.train_args("job"))
    assert process.returncode == 0, process.stderr
    (run,) = env.runs()
    model = env.client().get_logged_model(run.data.tags["model_uri"].removeprefix("models:/"))
    assert model.experiment_id == run.info.experiment_id != "0"
    where = Path(model.artifact_location.removeprefix("file://"))
    assert where.is_relative_to(env.store.parent / "artifacts") and (where / "MLmodel").is_file()
    assert not (env.tmp / "mlruns").exists()  # nothing under the cwd


# ---- point 4: distinct trials -----------------------------------------------------------------------------

def parallel_workers_and_a_continuation_repeat_no_trial(env: Env) -> None:
    common = ["search=q2_lr", "search.sampler=random", "search.pruner=none", "tracking=off"]
    first = env.run("mlplab-search", env.search_args(*common, "search.workers=3", "search.n_trials=6"))
    assert first.returncode == 0, first.stderr
    again = env.run("mlplab-search", env.search_args(*common, "search.n_trials=9"))
    assert again.returncode == 0, again.stderr
    study = env.study()
    values = [tuple(sorted(t.params.items())) for t in study.trials]
    assert len(values) == 9 and len(set(values)) == 9, values


# ---- point 5: an honest resume ----------------------------------------------------------------------------

def resume_with_another_learning_rate(env: Env) -> None:
    assert env.run("mlplab-train", env.train_args("first", "optimizer.lr=1.0", "trainer.epochs=2")).returncode == 0
    checkpoint = env.tmp / "first" / "checkpoint.pt"
    refused = env.run("mlplab-train", env.train_args("resumed", "optimizer.lr=0.1", "optimizer=sgdm",
                                                     "trainer.epochs=3", f"trainer.resume={checkpoint}"))
    one_line(refused, f"trainer.resume={checkpoint} was trained with", "optimizer.name=sgd (now sgdm)",
             "optimizer.lr=1.0 (now 0.1)", "only trainer.epochs", exit_code=2)
    other_data = write_idx_gz(env.tmp / "other-data" / "FashionMNIST" / "raw", seed=5).parent.parent
    swapped = env.run("mlplab-train", env.train_args("swapped", "optimizer.lr=1.0", "trainer.epochs=3",
                                                     f"trainer.resume={checkpoint}", f"data.root={other_data}"))
    one_line(swapped, "was trained on other data files", "data.root", exit_code=2)
    allowed = env.run("mlplab-train", env.train_args("continued", "optimizer.lr=1.0", "trainer.epochs=3",
                                                     f"trainer.resume={checkpoint}", "trainer.evaluate_test=false"))
    assert allowed.returncode == 0, allowed.stderr
    assert torch.load(env.tmp / "continued" / "checkpoint.pt", weights_only=True)["epoch"] == 3
    no_run_running(env)


# ---- point 6: the user's data files -----------------------------------------------------------------------

def a_partial_set_of_data_files(env: Env) -> None:
    raw = env.tmp / "root" / "FashionMNIST" / "raw"
    raw.mkdir(parents=True)
    source = env.data / "FashionMNIST" / "raw"
    for name in ("train-images-idx3-ubyte.gz", "train-labels-idx1-ubyte.gz"):
        shutil.copy(source / name, raw)
    before = digest(env.tmp / "root")
    refused = env.run("mlplab-train", env.train_args("job", f"data.root={env.tmp / 'root'}"))
    one_line(refused, f"{raw} holds only train-images-idx3-ubyte.gz, train-labels-idx1-ubyte.gz",
             "put t10k-images-idx3-ubyte.gz, t10k-labels-idx1-ubyte.gz", exit_code=2)
    assert digest(env.tmp / "root") == before
    for name in ("t10k-images-idx3-ubyte.gz", "t10k-labels-idx1-ubyte.gz"):
        shutil.copy(source / name, raw)
    before = digest(env.tmp / "root")
    whole = env.run("mlplab-train", env.train_args("whole", f"data.root={env.tmp / 'root'}"))
    assert whole.returncode == 0, whole.stderr
    assert digest(env.tmp / "root") == before  # unpacked into mlplab's cache, not beside the user's files
    no_run_running(env)


# ---- point 7: a full or unwritable store ------------------------------------------------------------------

def a_full_artifact_store(env: Env) -> None:
    assert env.run("mlplab-train", env.train_args("warm", "tracking.log_model=false")).returncode == 0  # the experiment
    with tmpfs(env.store.parent / "artifacts", "64k"):
        process = env.run("mlplab-train", env.train_args("job"))
    one_line(process, "cannot write the MLflow store", "No space left on device", "tracking.uri", exit_code=2)
    latest = max(env.runs(), key=lambda r: r.info.start_time)
    assert latest.info.status == "FAILED" and "No space left on device" in latest.data.tags["status_detail"]
    no_run_running(env)


def an_artifact_folder_that_cannot_be_written(env: Env) -> None:
    assert env.run("mlplab-train", env.train_args("warm", "tracking.log_model=false")).returncode == 0
    shutil.rmtree(env.store.parent / "artifacts")
    (env.store.parent / "artifacts").write_text("a file where the artifact folder should be\n")
    process = env.run("mlplab-train", env.train_args("job"))
    one_line(process, "cannot write the MLflow store", "tracking.uri", exit_code=2)
    latest = max(env.runs(), key=lambda r: r.info.start_time)
    assert latest.info.status == "FAILED" and "while logging the run's artifacts" in latest.data.tags["status_detail"]
    no_run_running(env)


def a_full_database(env: Env) -> None:
    store = env.tmp / "small" / "mlflow.db"
    with tmpfs(store.parent, "2m"):
        shutil.copy(env.store, store)
        filler = store.parent / "filler"
        subprocess.run(["dd", "if=/dev/zero", f"of={filler}", "bs=4k", "count=100000"], capture_output=True)
        process = env.run("mlplab-train", env.train_args("job", f"tracking.uri=sqlite:///{store}"))
        filler.unlink()
        left = MlflowClient(f"sqlite:///{store}").search_runs(["0", "1"], "attributes.status = 'FINISHED'")
    one_line(process, f"cannot write the MLflow store sqlite:///{store}", "tracking.uri", exit_code=2)
    assert not left


# ---- point 8: a bad search fails once, before the study ---------------------------------------------------

def a_search_that_cannot_work(env: Env) -> None:
    conf = env.tmp / "conf" / "search"
    conf.mkdir(parents=True)
    (conf / "bad_choice.yaml").write_text(yaml.safe_dump({"name": "bad_choice", "space": {
        "model.activation": {"type": "categorical", "choices": ["sigmoid", "swish"]}}}))
    searchpath = f"hydra.searchpath=[file://{env.tmp / 'conf'}]"
    one_line(env.run("mlplab-search", env.search_args(searchpath, "search=bad_choice")),
             "search.space.model.activation can sample 'swish', which training refuses", exit_code=2)
    one_line(env.run("mlplab-search", env.search_args("search=q2_lr", "data.validation_size=0")),
             "data.validation_size=0 leaves a search nothing to choose on", exit_code=2)
    one_line(env.run("mlplab-search", env.search_args("search=q2_lr", "search.metric=val_loss")),
             "search.metric=val_loss with search.direction=maximize would seek the worst model", exit_code=2)
    assert not (env.tmp / "optuna.journal").exists()  # refused before any study was made


# ---- point 9: stopping a parallel search ------------------------------------------------------------------

def sigterm_to_a_parallel_search(env: Env) -> None:
    process = env.start("mlplab-search", env.search_args("search=q2_lr", "search.workers=2", "search.n_trials=8",
                                                         "search.pruner=none", "trainer.epochs=100000"))
    # both trials' runs exist (a signal before a run is made leaves none to end)
    wait_for(lambda: len(env.runs("RUNNING")) >= 3, process, timeout=180)
    signalled = time.monotonic()
    process.send_signal(signal.SIGTERM)
    ended = finish(process)
    assert time.monotonic() - signalled < STOP_WITHIN_S
    assert ended.returncode == 143, ended.stderr
    study = env.study()
    assert {t.state for t in study.trials} == {optuna.trial.TrialState.FAIL}, [t.state for t in study.trials]
    trials = [r for r in env.runs() if r.data.tags.get("mlplab.kind") == "train"]
    assert len(trials) == 2 and {r.info.status for r in trials} == {"KILLED"}
    no_run_running(env)


def kill9_to_a_search_worker(env: Env) -> None:
    process = env.start("mlplab-search", env.search_args("search=q2_lr", "search.workers=2", "search.n_trials=3",
                                                         "search.pruner=none", "trainer.epochs=100000"))

    def running() -> list:
        try:
            return env.study().get_trials(states=(optuna.trial.TrialState.RUNNING,))
        except KeyError:  # no study yet
            return []

    wait_for(lambda: any("worker" in t.user_attrs for t in running()), process, timeout=180)
    victim = next(t for t in running() if "worker" in t.user_attrs)
    wait_for(lambda: any(r.data.tags.get("job_num") == str(victim.number) for r in env.runs()), process)
    os.kill(int(victim.user_attrs["worker"].rpartition(":")[2]), signal.SIGKILL)
    study = env.study()
    wait_for(lambda: study.trials[victim.number].state == optuna.trial.TrialState.FAIL, process, timeout=10)
    assert process.poll() is None  # found at once, by the search still running

    def lost() -> list:
        return [r for r in env.runs("KILLED") if r.data.tags.get("job_num") == str(victim.number)]

    wait_for(lambda: bool(lost()), process, timeout=10)  # its run ended next, by the same search
    assert lost()[0].data.tags["status"] == "worker_lost"
    process.send_signal(signal.SIGTERM)
    finish(process)
    no_run_running(env)


# ---- point 10: the smaller faults ------------------------------------------------------------------------

def two_jobs_in_one_folder(env: Env) -> None:
    args = env.train_args("shared", "trainer.epochs=20", "tracking=off")
    first, second = env.start("mlplab-train", args), env.start("mlplab-train", args)
    for ended in (finish(first), finish(second)):
        assert ended.returncode == 0, ended.stderr
    assert torch.load(env.tmp / "shared" / "checkpoint.pt", weights_only=True)["epoch"] == 20
    assert not list((env.tmp / "shared").glob("*.partial*"))


def mlplab_runs_on_a_bad_store(env: Env) -> None:
    (env.tmp / "not-a-db").write_text("hello\n")
    for uri, fragment in ((f"sqlite:///{env.tmp / 'not-a-db'}", "not-a-db is not an MLflow store"),
                          ("http://127.0.0.1:9", "cannot reach the MLflow server http://127.0.0.1:9")):
        one_line(env.run("mlplab-runs", ["--uri", uri]), "mlplab-runs: error:", fragment, exit_code=2)


def resume_from_what_is_not_a_checkpoint(env: Env) -> None:
    assert env.run("mlplab-train", env.train_args("first", "tracking=off")).returncode == 0
    (env.tmp / "random.pt").write_bytes(os.urandom(5000))
    (env.tmp / "truncated.pt").write_bytes((env.tmp / "first" / "checkpoint.pt").read_bytes()[:4000])
    for path, fragment in ((env.tmp / "first" / "model.pt", "holds a model's weights (model.pt), not a checkpoint"),
                           (env.tmp / "random.pt", "is not a checkpoint"), (env.tmp / "truncated.pt", "is not a checkpoint")):
        one_line(env.run("mlplab-train", env.train_args("again", "trainer.epochs=2", f"trainer.resume={path}")),
                 f"trainer.resume={path}", fragment, exit_code=2)
    no_run_running(env)


def a_diverged_run(env: Env) -> None:
    process = env.run("mlplab-train", env.train_args("job", "optimizer=adam", "optimizer.lr=1e30", "model.activation=relu"))
    one_line(process, "training diverged", "lower optimizer.lr", exit_code=1)
    (run,) = env.runs()
    assert run.info.status == "FAILED" and run.data.tags["status"] == "diverged"


def bad_values_named_by_key(env: Env) -> None:
    for override, fragment in (("optimizer.betas=[2,0.5]", "optimizer.betas"), ("optimizer.eps=-1", "optimizer.eps"),
                               ("trainer.seed=100000000000000000000", "trainer.seed"), ("optimizer.lr=inf", "optimizer.lr"),
                               ("regularization.l2=inf", "regularization.l2")):
        one_line(env.run("mlplab-train", env.train_args("job", "optimizer=adam", override)), fragment, exit_code=2)


@dataclass(frozen=True)
class Fault:
    id: str
    point: int
    before: str  # what the commands did before issue 13
    after: str  # what the row asserts now
    check: Callable[[Env], None]


FAULTS = [
    Fault("kill9_mid_epoch", 1, "run RUNNING for good", "next command ends it KILLED, status=process_lost", kill9_mid_epoch),
    Fault("close_stale_on_demand", 1, "no command to clean up", "mlplab-runs --close-stale; other hosts after a timeout",
          close_stale_on_demand),
    Fault("full_disk_checkpoint", 1, "run RUNNING, metrics lost", "one line, run FAILED with reason, epochs kept",
          full_disk_writing_the_checkpoint),
    Fault("full_disk_model", 1, "run RUNNING", "one line, run FAILED naming model.pt", full_disk_writing_the_model),
    Fault("sigterm_after_model", 1, "run RUNNING", "exit 143, KILLED (or FINISHED with everything)",
          sigterm_after_the_model_is_written),
    Fault("sigterm_while_closing", 2, "FINISHED, no model, PENDING model row", "exit 143, KILLED, no PENDING model",
          sigterm_while_the_artifacts_are_logged),
    Fault("model_location", 3, "experiment 0, under the cwd", "the run's experiment, under the store's artifacts",
          the_model_in_the_runs_experiment),
    Fault("distinct_trials", 4, "3 workers × 6 trials: 3 distinct", "9 distinct over workers and a continuation",
          parallel_workers_and_a_continuation_repeat_no_trial),
    Fault("resume_changed", 5, "trains at the checkpoint's lr, says the new one", "one line naming each changed key",
          resume_with_another_learning_rate),
    Fault("partial_data", 6, "overwrites the user's files or trains on others", "one line naming the missing files",
          a_partial_set_of_data_files),
    Fault("full_artifact_store", 7, "65–700 lines of MLflow logs", "one line, run FAILED", a_full_artifact_store),
    Fault("unwritable_artifacts", 7, "exit 2 but a FINISHED run", "one line, run FAILED",
          an_artifact_folder_that_cannot_be_written),
    Fault("full_database", 7, "a flood of MLflow tracebacks", "one line naming the store", a_full_database),
    Fault("bad_search", 8, "crash, RUNNING trial, each trial failing", "one line before the study", a_search_that_cannot_work),
    Fault("sigterm_search", 9, "exit 16 s later, all trials run", "workers stopped, trials FAIL, runs KILLED, < 15 s",
          sigterm_to_a_parallel_search),
    Fault("kill9_worker", 9, "cleaned up only by a later command", "trial FAIL and run KILLED at once",
          kill9_to_a_search_worker),
    Fault("shared_job_folder", 10, "race on checkpoint.partial", "both finish, a whole checkpoint", two_jobs_in_one_folder),
    Fault("runs_bad_store", 10, "tracebacks", "one line", mlplab_runs_on_a_bad_store),
    Fault("resume_not_a_checkpoint", 10, "torch's advice to use weights_only=False", "one line naming trainer.resume",
          resume_from_what_is_not_a_checkpoint),
    Fault("diverged_exit", 10, "exit 0", "exit 1 with one line", a_diverged_run),
    Fault("bad_values", 10, "inf accepted, lines without the key", "one line naming the key", bad_values_named_by_key),
]


def run_fault(fault: Fault, tmp: Path, data: Path, template_store: Path) -> Env:
    (tmp / "store").mkdir(parents=True)
    shutil.copy(template_store, tmp / "store" / "mlflow.db")
    env = Env(tmp, data, tmp / "store" / "mlflow.db")
    fault.check(env)
    return env


@pytest.fixture(scope="module")
def outcomes(request, tmp_path_factory, data_root, template_store):
    wanted = [item.callspec.params["fault"] for item in request.session.items
              if item.path == request.path and hasattr(item, "callspec")]
    base = tmp_path_factory.mktemp("faults")
    with ThreadPoolExecutor(WORKERS) as pool:
        yield {fault.id: pool.submit(run_fault, fault, base / fault.id, data_root, template_store) for fault in wanted}


@pytest.mark.parametrize("fault", FAULTS, ids=[f"{f.point}-{f.id}" for f in FAULTS])
def test_every_fault_ends_recorded_and_in_one_line(fault, outcomes):
    outcomes[fault.id].result(timeout=ROW_TIMEOUT_S * 3)


def test_the_table_covers_every_numbered_point_of_the_issue():
    assert {fault.point for fault in FAULTS} == set(range(1, 11))


def test_the_search_spaces_the_rows_use_exist():
    assert yaml.safe_load((Path(__file__).parents[1] / "conf" / "search" / "q2_lr.yaml").read_text())["space"]
