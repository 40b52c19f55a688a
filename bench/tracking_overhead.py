"""What recording a run in MLflow costs: the default job with ``tracking=off`` and with the sqlite store.

    .venv/bin/python bench/tracking_overhead.py [--epochs 30] [--repeats 3]

Both variants train the default experiment (the Q2 network, 784-100-10, batch 300) on real
Fashion-MNIST in one process, alternating off / on so drifts in the machine's speed hit both alike. The
"on" variant writes to a fresh, already-migrated sqlite store (creating one costs ~1.5 s once per store,
not per run) and records everything a run records: params, tags, per-epoch metrics, the two PNGs,
result.json and the model. This machine's training speed drifts by up to ±20 % between identical runs
(whole runs of 6.5 s and 9 s alternate), so whole-run differences cannot resolve a few per cent. Tracking
happens outside the epochs' clocks, so the figures are:
- tracking overhead: (wall − training seconds) with the store minus the same with ``tracking=off``, medians
  over ``--repeats`` alternating pairs, as a share of the median training time — what the README quotes;
- the time spent inside the recorder's calls (all tracking work happens there, synchronously), which
  should account for that difference;
- the whole-run comparison, for completeness, as noisy as the machine.
Importing MLflow (paid once per process) is printed apart.
"""

from __future__ import annotations

import argparse
import statistics
import tempfile
import time
from pathlib import Path

import torch

from mlplab.data import splits as data_module
from mlplab.config import TrainConfig
from mlplab.training.device import resolve_device
from mlplab.training.loop import train


def timed(recorder, inside: dict[str, list[float]]):
    """Wrap each of the recorder's calls with a stopwatch; ``inside[name]`` collects the seconds."""
    for name in ("start", "on_data", "on_epoch", "on_check", "end"):
        method = getattr(recorder, name)

        def stopwatch(*args, _method=method, _name=name, **kwargs):
            started = time.perf_counter()
            try:
                return _method(*args, **kwargs)
            finally:
                inside.setdefault(_name, []).append(time.perf_counter() - started)

        setattr(recorder, name, stopwatch)
    return recorder


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--epochs", type=int, default=30)
    parser.add_argument("--repeats", type=int, default=3)
    args = parser.parse_args()

    started = time.perf_counter()
    import mlflow  # noqa: F401 - timed on purpose

    import_seconds = time.perf_counter() - started
    from mlplab.tracking.recorder import MlflowRecorder
    from mlplab.training.recorder import NoRecorder
    from mlplab.tracking.store import client_for

    cfg = TrainConfig()
    cfg.data.standardize = True  # as conf/train.yaml
    cfg.trainer.epochs, cfg.trainer.progress, cfg.optimizer.lr = args.epochs, False, 1.0
    device = resolve_device(cfg.trainer.device)
    splits = data_module.load(cfg.data, device)
    times: dict[str, list[float]] = {"off": [], "on": []}
    outside: dict[str, list[float]] = {"off": [], "on": []}  # wall time not spent in the epochs
    training: list[float] = []
    recorder_runs: list[float] = []  # time inside the recorder, per run
    inside: dict[str, list[float]] = {}
    with tempfile.TemporaryDirectory() as folder:
        cfg.tracking.uri = f"sqlite:///{Path(folder) / 'mlruns' / 'mlflow.db'}"
        client_for(cfg.tracking.uri)  # migrate the new store once, as the project's store is
        for repeat in range(args.repeats + 1):
            for variant in ("off", "on"):
                recorder = timed(MlflowRecorder(cfg, ["bench"]), inside) if variant == "on" else NoRecorder()
                already = sum(map(sum, inside.values()))
                started = time.perf_counter()
                result = train(cfg, Path(folder) / f"{variant}{repeat}", quiet=True, splits=splits, recorder=recorder)
                if repeat:  # the first pair warms up caches, fonts and MLflow's lazy imports
                    times[variant].append(time.perf_counter() - started)
                    outside[variant].append(times[variant][-1] - result.train_seconds)
                    training.append(result.train_seconds)
                    if variant == "on":
                        recorder_runs.append(sum(map(sum, inside.values())) - already)
                else:
                    inside.clear()
    off, on = statistics.median(times["off"]), statistics.median(times["on"])
    trained = statistics.median(training)
    overhead = statistics.median(outside["on"]) - statistics.median(outside["off"])
    per_run = {name: sum(ts) / args.repeats for name, ts in inside.items()}
    recorder_seconds = statistics.median(recorder_runs)
    print(f"device {device}, torch {torch.__version__}; {args.epochs} epochs of the default job; "
          f"medians of {args.repeats} alternating pairs; importing mlflow once: {import_seconds:.2f} s")
    print("runs (s): " + "  ".join(f"{v}={' '.join(f'{t:.2f}' for t in ts)}" for v, ts in times.items()))
    print("| tracking | s / run | training s | outside training s |")
    print("|---|---:|---:|---:|")
    for variant in ("off", "on"):
        print(f"| {'off' if variant == 'off' else 'sqlite store'} | {statistics.median(times[variant]):.2f} | "
              f"{statistics.median([t - o for t, o in zip(times[variant], outside[variant])]):.2f} | "
              f"{statistics.median(outside[variant]):.3f} |")
    print(f"\ntracking overhead: {overhead:.3f} s per run = {100 * overhead / trained:.1f} % of the median training "
          f"time ({trained:.2f} s)")
    print(f"time inside the recorder per run: {recorder_seconds:.3f} s (median) = {100 * recorder_seconds / trained:.1f} % "
          f"(means: {', '.join(f'{name} {seconds:.3f} s' for name, seconds in per_run.items())})")
    print(f"whole runs (noisy): on {on:.2f} s against off {off:.2f} s, {100 * (on - off) / off:+.1f} %")


if __name__ == "__main__":
    main()
