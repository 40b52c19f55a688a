"""What SLURM costs a sweep on one node, measured in one run on real Fashion-MNIST (the Q2 network).

    .venv/bin/python bench/slurm_overhead.py [--jobs 16] [--epochs 2] [--rounds 1]

Starts the throw-away cluster of scripts/slurm-cluster.sh (or uses the one $SLURM_CONF names), then:

1. Per job, from the job logs of a ``hydra/launcher=slurm`` sweep: submission → the job's Python starting
   (SLURM's scheduling and launch), and the job's start → its first epoch ending (imports, data, MLflow), against
   the same job run as a local process (``mlplab-train``: process start → first epoch).
2. A ``--jobs``-job sweep (``optimizer.lr`` over that many values, ``--epochs`` epochs, tracked in a throw-away
   sqlite store), the whole command's wall time with ``hydra/launcher=slurm`` (1 CPU per task: as many at once
   as the node has cores), ``joblib`` (as many processes as cores) and ``population`` (one process), alternated
   over ``--rounds`` rounds.
"""

from __future__ import annotations

import argparse
import datetime as dt
import os
import re
import statistics
import subprocess
import sys
import tempfile
import time
from pathlib import Path

ROOT = Path(__file__).resolve().parent.parent
TRAIN = ROOT / ".venv" / "bin" / "mlplab-train"
CLUSTER = ROOT / "scripts" / "slurm-cluster.sh"
STAMP = re.compile(r"\[(\d{4}-\d\d-\d\d \d\d:\d\d:\d\d,\d{3})\]")
SUBMITIT_STAMP = re.compile(r"\((\d{4}-\d\d-\d\d \d\d:\d\d:\d\d,\d{3})\) - Starting with JobEnvironment")


def when(text: str) -> float:
    return dt.datetime.strptime(text, "%Y-%m-%d %H:%M:%S,%f").timestamp()


def first_epoch_at(log: str) -> float:
    for line in log.splitlines():
        if "epoch " in line and "/" in line and (m := STAMP.search(line)):
            return when(m.group(1))
    raise SystemExit(f"no epoch line in the log:\n{log[-2000:]}")


def sweep(launcher: list[str], rates: list[float], epochs: int, folder: Path, env: dict) -> tuple[float, str]:
    """(the whole command's wall time, its log)."""
    command = [str(TRAIN), "-m", *launcher, "experiment=q2_shallow", f"optimizer.lr={','.join(map(str, rates))}",
               f"trainer.epochs={epochs}", "trainer.progress=false", f"tracking.uri=sqlite:///{folder / 'mlflow.db'}",
               f"hydra.sweep.dir={folder / 'sweep'}"]
    started = time.perf_counter()
    done = subprocess.run(command, capture_output=True, text=True, cwd=folder, env=env)
    took = time.perf_counter() - started
    if done.returncode != 0:
        raise SystemExit(f"{' '.join(launcher)} failed:\n{done.stderr[-3000:]}")
    return took, done.stdout + done.stderr


def per_job_overhead(env: dict, folder: Path) -> dict[str, float]:
    """Seconds: submission → job start, job start → first epoch; and a local process's start → first epoch."""
    slurm_dir = folder / "one"
    slurm_dir.mkdir()
    _, output = sweep(["hydra/launcher=slurm", "hydra.launcher.cpus_per_task=1"], [0.1], 1, slurm_dir, env)
    (line,) = [line for line in output.splitlines() if "array tasks" in line]  # logged once submitted
    submitted = when(STAMP.search(line).group(1))
    (log,) = (slurm_dir / "sweep" / ".submitit").glob("*/*_0_log.out")
    text = log.read_text()
    job_start = when(SUBMITIT_STAMP.search(text).group(1))
    local_dir = folder / "local"
    local_dir.mkdir()
    started = time.time()
    done = subprocess.run([str(TRAIN), "experiment=q2_shallow", "trainer.epochs=1", "trainer.progress=false",
                           f"tracking.uri=sqlite:///{local_dir / 'mlflow.db'}", f"hydra.run.dir={local_dir / 'run'}"],
                          capture_output=True, text=True, cwd=local_dir, env=env)
    if done.returncode != 0:
        raise SystemExit(done.stderr[-2000:])
    local_first = first_epoch_at((local_dir / "run" / "train.log").read_text() if (local_dir / "run" / "train.log").is_file()
                                 else done.stdout + done.stderr)
    return {"submit_to_start": job_start - submitted, "start_to_first_epoch": first_epoch_at(text) - job_start,
            "local_start_to_first_epoch": local_first - started}


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--jobs", type=int, default=16)
    parser.add_argument("--epochs", type=int, default=2)
    parser.add_argument("--rounds", type=int, default=1)
    args = parser.parse_args()
    env = {**os.environ, "PYTHONUNBUFFERED": "1"}
    state = None
    if "SLURM_CONF" not in env:
        state = Path(tempfile.mkdtemp(prefix="mlplab-slurm-bench-"))
        subprocess.run([str(CLUSTER), "start", str(state)], check=True, capture_output=True)
        env["SLURM_CONF"] = str(state / "slurm.conf")
    try:
        cores = os.cpu_count() or 1
        rates = [round(0.05 * (i + 1), 3) for i in range(args.jobs)]
        with tempfile.TemporaryDirectory(prefix="mlplab-bench-") as tmp:
            overhead = per_job_overhead(env, Path(tmp))
            print(f"per job: submission → start {overhead['submit_to_start']:.1f} s; start → first epoch "
                  f"{overhead['start_to_first_epoch']:.1f} s (a local process: {overhead['local_start_to_first_epoch']:.1f} s)")
            launchers = {"slurm": ["hydra/launcher=slurm", "hydra.launcher.cpus_per_task=1"],
                         "joblib": ["hydra/launcher=joblib", f"hydra.launcher.n_jobs={cores}"],
                         "population": ["hydra/launcher=population"]}
            times: dict[str, list[float]] = {name: [] for name in launchers}
            for round_ in range(args.rounds):
                for name, launcher in launchers.items():
                    folder = Path(tmp) / f"{name}-{round_}"
                    folder.mkdir()
                    times[name].append(sweep(launcher, rates, args.epochs, folder, env)[0])
                    print(f"  round {round_ + 1}: {name} {times[name][-1]:.1f} s", flush=True)
        median = {name: statistics.median(t) for name, t in times.items()}
        print(f"{args.jobs}-job sweep, {args.epochs} epochs, whole command (median of {args.rounds}):")
        for name, seconds in median.items():
            print(f"  {name:10s} {seconds:7.1f} s   {seconds / median['joblib']:.2f}× joblib's time")
    finally:
        if state is not None:
            subprocess.run([str(CLUSTER), "stop", str(state)], capture_output=True)


if __name__ == "__main__":
    sys.exit(main())
