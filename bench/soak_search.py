"""Soak: a 50-trial study whose workers are killed at random, then a consistency check of both stores.

    .venv/bin/python bench/soak_search.py [--trials 50] [--workers 3] [--seed 0]

Keeps ``--workers`` ``mlplab-search`` processes working on one study (sqlite Optuna storage with
heartbeats, a fresh sqlite MLflow store), on a small slice of real Fashion-MNIST. Every few seconds a random
worker gets SIGKILL, SIGTERM or SIGINT and a fresh worker takes its place, until the study has its trials.
Every third kill waits for a trial whose run is being closed (its artifacts appearing in the store) and
signals that worker then. Once, a worker runs with its job folder on a small full tmpfs (made here, unmounted
after; skipped with the reason where mounting is not allowed): its trials fail on the full disk.
Then it checks what must hold however the workers died:
- exactly ``--trials`` trials count (as the search counts them), and no trial is left RUNNING;
- every MLflow run is FINISHED, FAILED or KILLED — none RUNNING —, none FINISHED without its model, and
  every trial that trained has its run; the full-disk trials' runs say so.
Prints the figures and exits 1 if a check fails.
"""

from __future__ import annotations

import argparse
import collections
import random
import signal
import subprocess
import sys
import tempfile
import time
import warnings
from pathlib import Path

import optuna

from mlplab.search.storage import counted

SEARCH = Path(sys.executable).parent / "mlplab-search"
optuna.logging.set_verbosity(optuna.logging.WARNING)
warnings.filterwarnings("ignore", category=optuna.exceptions.ExperimentalWarning)  # counted() reads retry attrs
SIGNALS = (signal.SIGKILL, signal.SIGTERM, signal.SIGINT)


def main() -> int:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--trials", type=int, default=50)
    parser.add_argument("--workers", type=int, default=3)
    parser.add_argument("--seed", type=int, default=0)
    parser.add_argument("--kill-every", type=float, nargs=2, default=(1.0, 3.0), metavar=("MIN_S", "MAX_S"))
    parser.add_argument("--epochs", type=int, default=10, help="per trial: trials must outlive the kill interval")
    parser.add_argument("--fraction", type=float, default=0.5, help="of the training images")
    args = parser.parse_args()
    rng = random.Random(args.seed)
    folder = Path(tempfile.mkdtemp(prefix="mlplab-soak-"))
    storage, mlflow_uri = f"sqlite:///{folder / 'optuna.db'}", f"sqlite:///{folder / 'mlflow.db'}"
    command = [str(SEARCH), "search=q2_lr", f"search.n_trials={args.trials}", f"search.storage={storage}",
               "search.study_name=soak", "search.heartbeat_seconds=2", "search.write_experiment=false",
               "search.final_test=false", f"tracking.uri={mlflow_uri}", "tracking.experiment=soak",
               f"data.fraction={args.fraction}", "data.validation_size=2000", f"trainer.epochs={args.epochs}",
               "trainer.threads=1"]

    def start(n: int, run_dir: Path | None = None, *extra: str) -> subprocess.Popen:
        return subprocess.Popen([*command, f"hydra.run.dir={run_dir or folder / f'worker{n}'}", *extra], cwd=folder,
                                stdout=subprocess.DEVNULL, stderr=subprocess.DEVNULL)

    watch = optuna.storages.RDBStorage(storage)  # one connection for the supervisor's frequent looks
    started, kills = time.time(), collections.Counter()
    spawned = args.workers
    workers = [start(n) for n in range(args.workers)]
    next_kill = time.time() + rng.uniform(*args.kill_every)
    closing = ClosingWatch(folder / "artifacts", mlflow_uri)
    full_disk = FullDisk(folder / "full-disk")
    while True:
        time.sleep(0.2)
        finished = done(watch, args.trials)
        if finished and all(w.poll() is not None for w in workers) and full_disk.done():
            break
        for i, worker in enumerate(workers):
            if worker.poll() is not None and not finished:
                workers[i], spawned = start(spawned), spawned + 1  # a worker that ended early is replaced
        if not finished and full_disk.due(time.time() - started):
            full_disk.start(lambda run_dir: start(spawned, run_dir, "search.timeout=15"))
            spawned += 1
        if time.time() >= next_kill and not finished:
            during_closing = sum(kills.values()) % 3 == 2
            i = closing.worker(workers, timeout=20) if during_closing else rng.randrange(len(workers))
            signum = rng.choice(SIGNALS)
            if i is not None and workers[i].poll() is None:
                workers[i].send_signal(signum)
                workers[i].wait()
                kills[signal.Signals(signum).name + (" while closing" if during_closing else "")] += 1
                workers[i], spawned = start(spawned), spawned + 1
            next_kill = time.time() + rng.uniform(*args.kill_every)
    full_disk.close()
    # A killed worker's last trial is failed by the next worker that looks; one last worker looks.
    time.sleep(4.5)
    subprocess.run([*command, f"hydra.run.dir={folder / 'final'}"], cwd=folder, capture_output=True, check=True)
    return check(storage, mlflow_uri, args.trials, kills, spawned + 1, time.time() - started, folder, full_disk)


class ClosingWatch:
    """Finds a worker whose trial's run is being closed: its config.yaml has just reached the artifact store."""

    def __init__(self, artifacts: Path, uri: str):
        from mlflow.tracking import MlflowClient

        self.artifacts, self.client, self.seen = artifacts, MlflowClient(uri), set()

    def worker(self, workers: list[subprocess.Popen], timeout: float):
        deadline = time.time() + timeout
        while time.time() < deadline:
            for config in self.artifacts.glob("*/artifacts/config.yaml"):
                run_id = config.parent.parent.name
                if run_id in self.seen:
                    continue
                self.seen.add(run_id)
                pid = self.client.get_run(run_id).data.tags.get("mlplab.pid")
                for i, worker in enumerate(workers):
                    if str(worker.pid) == pid and worker.poll() is None:
                        return i
            time.sleep(0.02)
        return None


class FullDisk:
    """One worker whose job folder is a tmpfs too small for a trial's model.pt."""

    SIZE, AFTER_S = "256k", 20.0

    def __init__(self, folder: Path):
        self.folder, self.process, self.mounted, self.skipped = folder, None, False, ""

    def due(self, elapsed: float) -> bool:
        return self.process is None and not self.skipped and elapsed >= self.AFTER_S

    def start(self, launch) -> None:
        self.folder.mkdir(parents=True, exist_ok=True)
        mount = subprocess.run(["mount", "-t", "tmpfs", "-o", f"size={self.SIZE}", "tmpfs", str(self.folder)],
                               capture_output=True, text=True)
        if mount.returncode != 0:
            self.skipped = f"full-disk worker skipped: cannot mount a tmpfs ({mount.stderr.strip() or 'not root'})"
            return
        self.mounted, self.process = True, launch(self.folder / "job")

    def done(self) -> bool:
        return self.skipped != "" or (self.process is not None and self.process.poll() is not None)

    def close(self) -> None:
        if self.process is not None and self.process.poll() is None:
            self.process.kill()
            self.process.wait()
        if self.mounted:
            subprocess.run(["umount", "-l", str(self.folder)], check=False)


def done(storage, trials: int) -> bool:
    try:
        study = optuna.load_study(study_name="soak", storage=storage)
    except KeyError:
        return False
    return counted(study) >= trials


def check(storage, mlflow_uri, trials, kills, processes, seconds, folder, full_disk: FullDisk) -> int:
    from mlflow.tracking import MlflowClient

    study = optuna.load_study(study_name="soak", storage=storage)
    states = collections.Counter(t.state.name for t in study.trials)
    client = MlflowClient(mlflow_uri)
    runs = client.search_runs([client.get_experiment_by_name("soak").experiment_id], max_results=5000)
    statuses = collections.Counter(r.info.status for r in runs)
    trial_runs = {int(r.data.tags["job_num"]) for r in runs if r.data.tags.get("job_num", "").isdigit()}
    disk_full = [r for r in runs if "No space left on device" in r.data.tags.get("status_detail", "")]
    checks = {
        f"counted trials == {trials}": counted(study) == trials,
        "no trial RUNNING": states["RUNNING"] == 0,
        "no MLflow run RUNNING": statuses["RUNNING"] == 0,
        "no training run FINISHED without its model": not [
            r for r in runs if r.info.status == "FINISHED" and r.data.tags.get("mlplab.kind") == "train"
            and "model_uri" not in r.data.tags],
        # a worker killed between asking for a trial and starting its run leaves a trial without one
        "every trial that trained has an MLflow run": {t.number for t in study.trials if t.intermediate_values} <= trial_runs,
    }
    if not full_disk.skipped:
        checks["the full-disk worker's runs ended FAILED, saying so"] = bool(disk_full) and all(
            r.info.status == "FAILED" for r in disk_full)
    print(f"{seconds:.0f} s, {processes} worker processes, kills: {dict(kills)} (store: {folder})")
    print(f"trials: {dict(states)}; MLflow runs: {dict(statuses)}; full disk: {full_disk.skipped or f'{len(disk_full)} run(s) failed'}")
    for name, ok in checks.items():
        print(f"{'ok  ' if ok else 'FAIL'} {name}")
    return 0 if all(checks.values()) else 1


if __name__ == "__main__":
    sys.exit(main())
