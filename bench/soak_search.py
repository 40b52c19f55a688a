"""Soak: a 50-trial study whose workers are killed at random, then a consistency check of both stores.

    .venv/bin/python bench/soak_search.py [--trials 50] [--workers 3] [--seed 0]

Keeps ``--workers`` ``mlplab-search`` processes working on one study (sqlite Optuna storage with
heartbeats, a fresh sqlite MLflow store), on a small slice of real Fashion-MNIST. Every few seconds a random
worker gets SIGKILL, SIGTERM or SIGINT and a fresh worker takes its place, until the study has its trials.
Then it checks what must hold however the workers died:
- exactly ``--trials`` trials count (COMPLETE or PRUNED), and no trial is left RUNNING;
- every MLflow run is FINISHED, FAILED or KILLED — none RUNNING — and every trial that trained has its run.
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
from pathlib import Path

import optuna

SEARCH = Path(sys.executable).parent / "mlplab-search"
optuna.logging.set_verbosity(optuna.logging.WARNING)
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

    def start(n: int) -> subprocess.Popen:
        return subprocess.Popen([*command, f"hydra.run.dir={folder / f'worker{n}'}"], cwd=folder,
                                stdout=subprocess.DEVNULL, stderr=subprocess.DEVNULL)

    watch = optuna.storages.RDBStorage(storage)  # one connection for the supervisor's frequent looks
    started, kills = time.time(), collections.Counter()
    spawned = args.workers
    workers = [start(n) for n in range(args.workers)]
    next_kill = time.time() + rng.uniform(*args.kill_every)
    while True:
        time.sleep(0.2)
        finished = done(watch, args.trials)
        if finished and all(w.poll() is not None for w in workers):
            break
        for i, worker in enumerate(workers):
            if worker.poll() is not None and not finished:
                workers[i], spawned = start(spawned), spawned + 1  # a worker that ended early is replaced
        if time.time() >= next_kill and not finished:
            i, signum = rng.randrange(len(workers)), rng.choice(SIGNALS)
            if workers[i].poll() is None:
                workers[i].send_signal(signum)
                workers[i].wait()
                kills[signal.Signals(signum).name] += 1
                workers[i], spawned = start(spawned), spawned + 1
            next_kill = time.time() + rng.uniform(*args.kill_every)
    # A killed worker's last trial is failed by the next worker that looks; one last worker looks.
    time.sleep(4.5)
    subprocess.run([*command, f"hydra.run.dir={folder / 'final'}"], cwd=folder, capture_output=True, check=True)
    return check(storage, mlflow_uri, args.trials, kills, spawned + 1, time.time() - started, folder)


def done(storage, trials: int) -> bool:
    try:
        study = optuna.load_study(study_name="soak", storage=storage)
    except KeyError:
        return False
    return sum(t.state in (optuna.trial.TrialState.COMPLETE, optuna.trial.TrialState.PRUNED) for t in study.trials) >= trials


def check(storage, mlflow_uri, trials, kills, processes, seconds, folder) -> int:
    from mlflow.tracking import MlflowClient

    study = optuna.load_study(study_name="soak", storage=storage)
    states = collections.Counter(t.state.name for t in study.trials)
    client = MlflowClient(mlflow_uri)
    runs = client.search_runs([client.get_experiment_by_name("soak").experiment_id], max_results=5000)
    statuses = collections.Counter(r.info.status for r in runs)
    trial_runs = {int(r.data.tags["job_num"]) for r in runs if r.data.tags.get("job_num", "").isdigit()}
    counted = states["COMPLETE"] + states["PRUNED"]
    checks = {
        f"counted trials == {trials}": counted == trials,
        "no trial RUNNING": states["RUNNING"] == 0,
        "no MLflow run RUNNING": statuses["RUNNING"] == 0,
        # a worker killed between asking for a trial and starting its run leaves a trial without one
        "every trial that trained has an MLflow run": {t.number for t in study.trials if t.intermediate_values} <= trial_runs,
    }
    print(f"{seconds:.0f} s, {processes} worker processes, kills: {dict(kills)} (store: {folder})")
    print(f"trials: {dict(states)}; MLflow runs: {dict(statuses)}")
    for name, ok in checks.items():
        print(f"{'ok  ' if ok else 'FAIL'} {name}")
    return 0 if all(checks.values()) else 1


if __name__ == "__main__":
    sys.exit(main())
