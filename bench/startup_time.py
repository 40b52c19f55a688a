"""Where a short job's wall time goes: shell completion per Tab, and one epoch of the default job with a new
store, from process start to exit — this checkout against another (``--other``: a checkout with its own .venv,
e.g. an earlier commit cloned elsewhere), the two alternating, medians reported. Then the pieces of the one-epoch
run measured on their own in this checkout (imports, the new sqlite store, the data).

    .venv/bin/python bench/startup_time.py --other /tmp/before --rounds 3
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

HERE = Path(__file__).resolve().parents[1]

PIECES = """
import time, json; t0 = time.time()
import torch; t1 = time.time()
import mlflow; t2 = time.time()
from mlplab.tracking.store import client_for
client_for("sqlite:///{store}/mlflow.db").search_experiments(); t3 = time.time()
from mlplab.config import DataConfig
from mlplab.data.splits import load
load(DataConfig(), torch.device("cpu")); t4 = time.time()
print(json.dumps({{"import torch": t1 - t0, "import mlflow": t2 - t1, "new sqlite store": t3 - t2, "data": t4 - t3}}))
"""


def timed(command: list[str], cwd: Path, env: dict | None = None) -> float:
    start = time.perf_counter()
    done = subprocess.run(command, cwd=cwd, capture_output=True, text=True, env={**os.environ, **(env or {})})
    if done.returncode != 0:
        raise SystemExit(f"{command[0]} failed: {done.stderr[-2000:]}")
    return time.perf_counter() - start


def completion(checkout: Path, app: str) -> float:
    line = f"mlplab-{app} opti"
    return timed([str(checkout / ".venv" / "bin" / f"mlplab-{app}"), "-sc", "query=bash"], Path(tempfile.gettempdir()),
                 {"COMP_LINE": line, "COMP_POINT": str(len(line))})


def one_epoch(checkout: Path) -> tuple[float, float]:
    """(wall s, train_seconds) of `mlplab-train trainer.epochs=1` on real Fashion-MNIST with a new store."""
    with tempfile.TemporaryDirectory() as folder:
        wall = timed([str(checkout / ".venv" / "bin" / "mlplab-train"), "trainer.epochs=1", "trainer.progress=false",
                      f"tracking.uri=sqlite:///{folder}/mlflow.db", f"hydra.run.dir={folder}/run"], Path(folder))
        return wall, json.loads(Path(folder, "run", "result.json").read_text())["train_seconds"]


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--other", type=Path, required=True, help="the checkout to compare with (its .venv built)")
    parser.add_argument("--rounds", type=int, default=3)
    args = parser.parse_args()
    sides = {"this": HERE, "other": args.other.resolve()}
    tabs = {(side, app): [] for side in sides for app in ("train", "search")}
    epochs = {side: [] for side in sides}
    for _ in range(args.rounds):
        for side, checkout in sides.items():  # alternating: the machine's drift falls on both
            for app in ("train", "search"):
                tabs[side, app].append(completion(checkout, app))
            epochs[side].append(one_epoch(checkout))
    print(f"this: {HERE}  other: {sides['other']}  rounds: {args.rounds} (medians)")
    for app in ("train", "search"):
        this, other = (statistics.median(tabs[side, app]) for side in ("this", "other"))
        print(f"completion, mlplab-{app}: this {this:.2f} s, other {other:.2f} s ({other / this:.1f}×)")
    for side in sides:
        wall = statistics.median(w for w, _ in epochs[side])
        training = statistics.median(t for _, t in epochs[side])
        print(f"one epoch, new store ({side}): wall {wall:.2f} s, of which training {training:.2f} s")
    with tempfile.TemporaryDirectory() as store:
        pieces = subprocess.run([sys.executable, "-c", PIECES.format(store=store)], capture_output=True, text=True,
                                cwd=store, check=True)
    start = time.perf_counter()
    subprocess.run([sys.executable, "-c", "pass"], check=True)
    bare = time.perf_counter() - start
    parts = json.loads(pieces.stdout.strip().splitlines()[-1])
    print("pieces (this): " + ", ".join(f"{name} {seconds:.2f} s" for name, seconds in parts.items())
          + f", a bare interpreter {bare:.2f} s")


if __name__ == "__main__":
    main()
