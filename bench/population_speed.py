"""Populations against one job at a time, measured in one run on real Fashion-MNIST.

    .venv/bin/python bench/population_speed.py [--sweep-epochs 30] [--skip-sweep] [--rounds 2] [--other CHECKOUT]
                                               [--device cuda]

1. The Assignment 6 Q2 sweep as a user runs it: ``mlplab-train -m experiment=q2_shallow
   optimizer.lr=0.0001,0.0005,0.001,0.005,0.01`` (30 epochs, tracked in a throw-away MLflow store) with
   ``hydra/launcher=population``, ``basic`` (one job after another) and ``joblib`` (2 processes; ``--launchers``, ``--q2-rates``): the whole
   command's wall time, the launchers alternating over ``--sweep-rounds`` rounds, medians. Targets: population
   ≥ 2.5× basic, ≥ 1.5× joblib. Beside them, the floor: the sweep's first-layer GEMMs alone (every member's
   z¹ = x W¹ᵀ and ∂C/∂W¹ = δᵀx at every step, 5 × 784·100 · 300 multiply-adds each), which any way of training it
   must do; the basic launcher's time over that floor is the most any launcher could gain on this machine.
2. Nielsen's chapter-1 network (784-30-10, quadratic cost, mini-batch 10, the seed engine) at 10 learning rates:
   the epochs of the 10 jobs one after another against the epoch of their population. Target ≥ 5×.
3. How the gain grows with K (1, 2, 5, 10, 20; the Q2 network) and with the hidden width (30, 100, 1000; K = 5):
   K solo epochs against one population epoch.
4. Memory: how far resident memory rises above the loaded data while K members train one epoch, against K = 1.

Every section trains on ``--device`` (``cpu``; ``cuda`` for the GPU figures; section 4 always a CPU run's host memory).
Sections 2–4 time epochs as the trainer does (``history[i]["seconds"]``: training and the validation pass), in
one process, ``--rounds`` rounds alternating solo and population, and report medians of the rounds.
"""

from __future__ import annotations

import argparse
import json
import os
import statistics
import subprocess
import sys
import tempfile
import time
from pathlib import Path

import torch

from mlplab.apps.hydra_app import compose
from mlplab.data import splits as data_module
from mlplab.training.loop import train
from mlplab.training.population import train_population

ROOT = Path(__file__).resolve().parent.parent
Q2_RATES = (0.0001, 0.0005, 0.001, 0.005, 0.01)
NIELSEN_RATES = (0.5, 1.0, 1.5, 2.0, 2.5, 3.0, 3.5, 4.0, 4.5, 5.0)
QUIET = ["tracking=off", "trainer.progress=false", "trainer.checkpoint=false", "trainer.device=cpu"]  # see --device
DEVICE = torch.device("cpu")


def sweep_seconds(launcher: list[str], epochs: int, folder: Path, rates=Q2_RATES, source: Path | None = None) -> float:
    """The whole sweep command's wall time; ``source``: another checkout's ``src`` to run instead of this one's."""
    env = {**os.environ, **({"PYTHONPATH": str(source)} if source else {})}
    command = [str(ROOT / ".venv" / "bin" / "mlplab-train"), "-m", *launcher, "experiment=q2_shallow",
               f"optimizer.lr={','.join(map(str, rates))}", f"trainer.epochs={epochs}",
               f"tracking.uri=sqlite:///{folder / 'mlflow.db'}", f"hydra.sweep.dir={folder / 'sweep'}",
               f"trainer.device={DEVICE}"]
    started = time.perf_counter()
    done = subprocess.run(command, capture_output=True, text=True, cwd=folder, env=env)
    took = time.perf_counter() - started
    if done.returncode != 0:
        raise SystemExit(f"{' '.join(launcher)} failed:\n{done.stderr[-2000:]}")
    statuses = [json.loads(p.read_text())["status"] for p in (folder / "sweep").glob("*/result.json")]
    assert statuses == ["finished"] * len(rates), statuses
    return took


def first_layer_floor(members: int, epochs: int, n_train: int, batch: int = 300, n_in: int = 784,
                      width: int = 100, repeats: int = 3) -> float:
    """Seconds the sweep's first-layer GEMMs take alone: for every step of ``epochs`` epochs, z¹ = x W¹ᵀ of all
    members over the shared batch and ∂C/∂W¹ = δᵀx, as the population forms them (best of ``repeats`` epochs)."""
    generator = torch.Generator().manual_seed(0)
    x = torch.rand(batch, n_in, generator=generator).to(DEVICE)
    W = torch.randn(members * width, n_in, generator=generator).to(DEVICE)
    delta = torch.randn(batch, members * width, generator=generator).to(DEVICE)
    synchronize = torch.cuda.synchronize if DEVICE.type == "cuda" else (lambda: None)
    steps = -(-n_train // batch)
    best = float("inf")
    for _ in range(repeats + 1):  # the first warms MKL
        synchronize()
        started = time.perf_counter()
        for _ in range(steps):
            torch.mm(x, W.t())
            torch.mm(delta.t(), x)
        synchronize()
        best = min(best, time.perf_counter() - started)
    return best * epochs


def epoch_seconds(cfgs, splits, rounds: int) -> tuple[float, float]:
    """(Σ of the K jobs' epoch one after another, the population's epoch), medians over ``rounds``."""
    solo, together = [], []
    for round_ in range(rounds + 1):
        with tempfile.TemporaryDirectory() as folder:
            solo_time = sum(train(cfg, Path(folder) / f"solo{k}", quiet=True, splits=splits).history[0]["seconds"]
                            for k, cfg in enumerate(cfgs))
            members = train_population(cfgs, [Path(folder) / f"member{k}" for k in range(len(cfgs))], splits=splits)
            population_time = sum(m.result.history[0]["seconds"] for m in members)  # each has its share
        if round_:  # the first round warms caches and lazy initialisation
            solo.append(solo_time)
            together.append(population_time)
    return statistics.median(solo), statistics.median(together)


MEMORY_PROBE = """
import os, sys, tempfile, threading, time, pathlib, torch
from mlplab.apps.hydra_app import compose
from mlplab.data import splits as data_module
from mlplab.training.population import train_population
page = os.sysconf("SC_PAGE_SIZE")
rss = lambda: int(open("/proc/self/statm").read().split()[1]) * page
members, overrides = int(sys.argv[1]), sys.argv[2:]
cfgs = [compose(overrides + [f"optimizer.lr={0.1 * (k + 1)}"]) for k in range(members)]
splits = data_module.load(cfgs[0].data, torch.device("cpu"))
torch.optim.SGD([torch.zeros(1, requires_grad=True)]).zero_grad()  # the first optimiser imports torch._dynamo: ~150 MiB once
before, peak, running = rss(), [0], [True]
def sample():
    while running[0]:
        peak[0] = max(peak[0], rss())
        time.sleep(0.002)
watcher = threading.Thread(target=sample)
watcher.start()
folder = pathlib.Path(tempfile.mkdtemp())
train_population(cfgs, [folder / str(k) for k in range(members)], splits=splits)
running[0] = False
watcher.join()
print((peak[0] - before) / 2**20)
"""


def training_mib(members: int) -> float:
    """How far a fresh process's resident memory rises above its loaded data while it trains a Q2 population
    of ``members`` for one epoch (sampled every 2 ms)."""
    overrides = QUIET[:-1] + ["trainer.device=cpu", "experiment=q2_shallow", "trainer.epochs=1", "trainer.evaluate_test=false"]
    done = subprocess.run([sys.executable, "-c", MEMORY_PROBE, str(members), *overrides], capture_output=True,
                          text=True, check=True)
    return float(done.stdout.strip().splitlines()[-1])


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--sweep-epochs", type=int, default=30)
    parser.add_argument("--skip-sweep", action="store_true", help="sections 2-4 only")
    parser.add_argument("--sweep-only", action="store_true", help="section 1 only")
    parser.add_argument("--q2-rates", default=",".join(map(str, Q2_RATES)),
                        help="section 1's rates (Assignment 6's grid: 0.0001,0.0005,0.001,0.005,0.01,0.05,0.1,0.3,1,3,10)")
    parser.add_argument("--launchers", default="population,basic,joblib", help="section 1's launchers")
    parser.add_argument("--rounds", type=int, default=2, help="timed rounds of sections 2-3 (after a warm-up)")
    parser.add_argument("--sweep-rounds", type=int, default=2, help="rounds of section 1, the launchers alternating")
    parser.add_argument("--other", type=Path, help="section 1 also with this checkout's src (e.g. a clone at an earlier "
                                                    "commit), alternating with this one: before and after in one run")
    parser.add_argument("--device", default="cpu", help="trainer.device of every section (cuda: a GPU's figures)")
    args = parser.parse_args()
    global DEVICE
    DEVICE = torch.device(args.device)
    QUIET[-1] = f"trainer.device={DEVICE}"
    print(f"torch {torch.__version__}, {os.cpu_count()} CPUs, {torch.get_num_threads()} torch threads, device "
          f"{torch.cuda.get_device_name(DEVICE) if DEVICE.type == 'cuda' else DEVICE}; {time.strftime('%Y-%m-%d %H:%M')}")

    if not args.skip_sweep:
        known = {"population": ["hydra/launcher=population"], "basic": ["hydra/launcher=basic"],
                 "joblib": ["hydra/launcher=joblib", "hydra.launcher.n_jobs=2"]}
        launchers = {name: known[name] for name in args.launchers.split(",")}
        rates = [float(rate) for rate in args.q2_rates.split(",")]
        # (checkout, launcher) pairs, alternating over the rounds: the machine's drift falls on every one alike
        sides = {"this": None, **({"other": args.other.resolve() / "src"} if args.other else {})}
        times: dict[tuple[str, str], list[float]] = {(side, name): [] for name in launchers for side in sides}
        for round_ in range(args.sweep_rounds):
            for side, name in times:
                with tempfile.TemporaryDirectory() as folder:
                    times[side, name].append(sweep_seconds(launchers[name], args.sweep_epochs, Path(folder), rates, sides[side]))
                print(f"  round {round_ + 1}, Q2 sweep, {side} checkout, {name}: {times[side, name][-1]:.1f} s", flush=True)
        wall = {key: statistics.median(seconds) for key, seconds in times.items()}
        print(f"\n1. Q2 sweep over {len(rates)} rates ({', '.join(map(str, rates))}), {args.sweep_epochs} epochs, whole "
              f"command, median of {args.sweep_rounds}" + (f"; other checkout: {args.other}" if args.other else ""))
        print("| checkout | launcher | wall s | rounds s | its population is × faster |")
        print("|---|---|---:|---|---:|")
        for (side, name), seconds in wall.items():
            rounds = " / ".join(f"{t:.1f}" for t in times[side, name])
            first = wall[side, next(iter(launchers))]
            print(f"| {side} | {name} | {seconds:.1f} | {rounds} | {seconds / first:.2f} |")
        cfg = compose(QUIET + ["experiment=q2_shallow"])
        n_train = len(data_module.load(cfg.data, DEVICE).train)
        with torch.inference_mode():
            floor = first_layer_floor(len(rates), args.sweep_epochs, n_train, cfg.trainer.batch_size)
        print(f"| | first-layer GEMMs alone (the floor) | {floor:.1f} | | |")
        if "basic" in launchers:
            print(f"The most any launcher could gain over basic here: {wall['this', 'basic'] / floor:.2f}× "
                  f"(basic's wall time over the floor)")
    if args.sweep_only:
        return

    nielsen = [compose(QUIET + ["experiment=nielsen_ch1", "trainer.engine=seed", "trainer.epochs=1",
                                f"optimizer.lr={lr}"]) for lr in NIELSEN_RATES]
    splits = data_module.load(nielsen[0].data, DEVICE)
    solo, together = epoch_seconds(nielsen, splits, args.rounds)
    print("\n2. Nielsen chapter 1 (784-30-10, mini-batch 10, seed engine), 10 learning rates, one epoch")
    print("| one after another s | population s | × faster |")
    print("|---:|---:|---:|")
    print(f"| {solo:.2f} | {together:.2f} | {solo / together:.2f} |", flush=True)

    q2 = lambda width, lr: compose(QUIET + ["experiment=q2_shallow", "trainer.epochs=1",  # noqa: E731
                                            f"model.sizes=[784,{width},10]", f"optimizer.lr={lr}"])
    splits = data_module.load(q2(100, 0.1).data, DEVICE)
    print("\n3. The gain with K (784-100-10, batch 300) and with the width (K = 5), one epoch")
    print("| K | width | K solo epochs s | population epoch s | × faster |")
    print("|---:|---:|---:|---:|---:|")
    for members, width in [(1, 100), (2, 100), (5, 100), (10, 100), (20, 100), (5, 30), (5, 1000)]:
        cfgs = [q2(width, 0.05 * (k + 1)) for k in range(members)]
        solo, together = epoch_seconds(cfgs, splits, args.rounds)
        print(f"| {members} | {width} | {solo:.2f} | {together:.2f} | {solo / together:.2f} |", flush=True)

    print("\n4. Memory: resident memory above the loaded data while a population of the Q2 network trains one epoch")
    print("| K | MiB above the data | per member beyond the first, MiB |")
    print("|---:|---:|---:|")
    base = training_mib(1)
    print(f"| 1 | {base:.0f} | |")
    for members in (5, 20):
        grown = training_mib(members)
        print(f"| {members} | {grown:.0f} | {(grown - base) / (members - 1):.1f} |", flush=True)


if __name__ == "__main__":
    main()
