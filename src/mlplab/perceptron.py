"""The perceptron algorithm of the seed slides ("Perceptrons" to "Some remarks about the Perceptron algorithm").

A perceptron is one neuron with the Heaviside step as activation: it predicts +1 where w·x + b ≥ 0 and −1
elsewhere. Training minimises ℓ(w, b) = −Σ_{i∈M} yᵢ(w·xᵢ + b) over unit vectors w by alternating two steps:

- given w, b: find the misclassified set M;
- given M: w ← w + ρ Σ_M yᵢxᵢ, b ← b + ρ Σ_M yᵢ, then renormalise b ← b/‖w‖, w ← w/‖w‖.

**Points on the boundary.** The slide writes M = {i | yᵢ(w·xᵢ + b) < 0}. Read strictly, w = 0, b = 0 (or any
hyperplane through every point) would be "perfect", so here a point with yᵢ(w·xᵢ + b) = 0 counts as
misclassified: M = {i | yᵢ(w·xᵢ + b) ≤ 0}. An empty M then means every point lies strictly on its own side.
(Its loss term is 0 either way; only |M| and the stopping rule see the difference.)

**The learning rate matters here.** For the plain perceptron the slide's remark holds: separable data are
separated in finitely many steps, for any ρ. Renormalising after every step changes that: w is back at unit
length, so a step ρ‖Σ_M yᵢxᵢ‖ much larger than 1 swamps it every time, and the iteration can cycle even on
separable data (tests/test_perceptron.py shows one). Choose ρ so that the first steps are a fraction of 1:
on 784-pixel images with thousands of points in M, ρ ≈ 1e-5.

**Stopping.** ``converged`` when M is empty; ``cycled`` when a state repeats; ``max_iterations`` otherwise;
``degenerate`` in the rare case that an update makes w exactly 0 and it cannot be renormalised.

**What the cycle check can and cannot see.** The step is a deterministic map of the state (w, b), so a
state that comes back means the iteration repeats forever — the cycles the slide warns of for data that are
not linearly separable. A state is remembered as a hash of (w, b) rounded to ``cycle_decimals`` decimals
together with its misclassified mask; the mask keeps two nearby states on opposite sides of a data point
apart. It detects a cycle the iteration has settled into (on non-separable MNIST pairs with a large ρ the
step swamps the unit-length w and it alternates between two states within a few iterations). It cannot
detect (1) a cycle longer than ``max_iterations`` (the slide: "can be long and therefore hard to detect"),
(2) an orbit that only approaches a cycle more slowly than the rounding resolves, nor (3) wandering that
never repeats: those end as ``max_iterations``. Rounding can, rarely, miss a revisit whose coordinates
straddle a rounding boundary, or call two states within 10^-decimals of each other the same.
"""

from __future__ import annotations

import dataclasses
import hashlib
import time
from dataclasses import dataclass, field
from pathlib import Path
from typing import Optional

import torch
from hydra.core.config_store import ConfigStore

from .cli import hydra_job, write_json
from .config import DEVICES, ConfigError, DataConfig, TrackingConfig, one_of, require
from .tracking import AppRun, recorded_run

STATUSES = ("converged", "max_iterations", "cycled", "degenerate")


# ---- the algorithm ---------------------------------------------------------------------------------------

@dataclass
class PerceptronResult:
    w: torch.Tensor  # [d], ‖w‖ = 1
    b: float
    status: str  # one of STATUSES
    iterations: int  # updates made
    misclassified: list[int]  # |M| of the state before each update and of the final state: iterations + 1 values
    loss: list[float]  # ℓ(w, b) of the same states
    train_error: float  # share of training points the final (w, b) predicts wrongly
    cycle_length: Optional[int] = None  # with status "cycled": how many updates the cycle takes

    def predict(self, x: torch.Tensor) -> torch.Tensor:
        return predict(x, self.w, self.b)


def heaviside(z: torch.Tensor) -> torch.Tensor:
    """The step activation, H(0) = 1."""
    return (z >= 0).to(z.dtype)


def predict(x: torch.Tensor, w: torch.Tensor, b: float | torch.Tensor) -> torch.Tensor:
    """±1 labels: the Heaviside neuron's 1/0 output mapped to +1/−1."""
    z = x.to(w.dtype) @ w + b
    return (2 * heaviside(z) - 1).to(torch.int64)


def error_rate(x: torch.Tensor, y: torch.Tensor, w: torch.Tensor, b: float | torch.Tensor) -> float:
    return (predict(x, w, b) != y).double().mean().item() if len(y) else 0.0


def misclassified(x: torch.Tensor, y: torch.Tensor, w: torch.Tensor, b: torch.Tensor) -> tuple[torch.Tensor, torch.Tensor]:
    """Given w, b: the mask of M = {i | yᵢ(w·xᵢ + b) ≤ 0} and the loss ℓ = −Σ_M yᵢ(w·xᵢ + b)."""
    margins = y * (x @ w + b)
    return margins <= 0, (-margins).clamp(min=0).sum()


def update(x: torch.Tensor, y: torch.Tensor, w: torch.Tensor, b: torch.Tensor, mask: torch.Tensor,
           lr: float) -> tuple[torch.Tensor, torch.Tensor]:
    """Given M: one gradient step on ℓ, then w back to unit length (b scaled with it). ‖w‖ = 0 is returned as is."""
    y_in_m = torch.where(mask, y, torch.zeros_like(y))  # yᵢ for i ∈ M, 0 elsewhere: Σ_M as one matmul
    w = w + lr * (y_in_m @ x)
    b = b + lr * y_in_m.sum()
    norm = w.norm()
    return (w, b) if norm == 0 else (w / norm, b / norm)


def initial_state(dim: int, seed: int, dtype=torch.float64, device=None) -> tuple[torch.Tensor, torch.Tensor]:
    """A random (w, b) from N(0, I), renormalised like every update: w is uniform on the unit sphere."""
    v = torch.randn(dim + 1, generator=torch.Generator().manual_seed(seed), dtype=dtype)  # same start on any device
    norm = v[:dim].norm()
    return (v[:dim] / norm).to(device), (v[dim] / norm).to(device)


def _state_key(w: torch.Tensor, b: torch.Tensor, mask: torch.Tensor, decimals: int) -> bytes:
    rounded = torch.cat([w, b.reshape(1)]).round(decimals=decimals) + 0.0  # + 0.0 turns -0.0 into 0.0
    return hashlib.blake2b(rounded.cpu().numpy().tobytes() + mask.cpu().numpy().tobytes(), digest_size=16).digest()


def fit(x: torch.Tensor, y: torch.Tensor, lr: float, max_iterations: int = 1000, seed: int = 0,
        cycle_decimals: int = 9, start: Optional[tuple[torch.Tensor, float]] = None,
        dtype: torch.dtype = torch.float64) -> PerceptronResult:
    """Run the slide's alternating algorithm on ``x`` [n, d] with labels ``y`` in {−1, +1}.

    ``start`` = (w, b) replaces the random start (it is used as given, not renormalised). Everything runs on
    ``x``'s device in ``dtype`` (float64: ‖w‖ = 1 to ~1e-15 and exactly repeatable cycles).
    """
    if x.ndim != 2 or y.ndim != 1 or len(x) != len(y):
        raise ValueError(f"fit needs x [n, d] and y [n], got {tuple(x.shape)} and {tuple(y.shape)}")
    if not bool(((y == 1) | (y == -1)).all()):
        raise ValueError("perceptron labels must be -1 or +1")
    if lr <= 0 or max_iterations < 1:
        raise ValueError(f"fit needs lr > 0 and max_iterations >= 1, got lr={lr}, max_iterations={max_iterations}")
    x, y = x.to(dtype), y.to(dtype)
    if start is None:
        w, b = initial_state(x.shape[1], seed, dtype, x.device)
    else:
        w = start[0].to(device=x.device, dtype=dtype)
        b = torch.as_tensor(start[1], device=x.device, dtype=dtype)

    counts: list[int] = []
    losses: list[float] = []
    seen: dict[bytes, int] = {}  # state key → the iteration it was first seen at
    status, cycle_length = "max_iterations", None
    for iteration in range(max_iterations + 1):
        mask, loss = misclassified(x, y, w, b)
        counts.append(int(mask.sum()))
        losses.append(loss.item())
        if counts[-1] == 0:
            status = "converged"
            break
        key = _state_key(w, b, mask, cycle_decimals)
        if key in seen:
            status, cycle_length = "cycled", iteration - seen[key]
            break
        seen[key] = iteration
        if iteration == max_iterations:
            break
        w, b = update(x, y, w, b, mask, lr)
        if w.norm() == 0:
            status = "degenerate"
            break
    iterations = len(counts) - 1 if status != "degenerate" else len(counts)
    return PerceptronResult(w, b.item(), status, iterations, counts, losses, error_rate(x, y, w, b), cycle_length)


def signed_labels(labels01: torch.Tensor) -> torch.Tensor:
    """mlplab.data re-indexes two classes to 0/1 in the order given: class 0 → −1, class 1 → +1."""
    return 2 * labels01.to(torch.int64) - 1


# ---- the app: mlplab-perceptron ---------------------------------------------------------------------------

@dataclass
class PerceptronConfig:
    data: DataConfig = field(default_factory=lambda: DataConfig(classes=[1, 9], validation_size=2000))
    tracking: TrackingConfig = field(default_factory=lambda: TrackingConfig(experiment="perceptron"))
    lr: float = 1e-5  # ρ
    max_iterations: int = 1000
    seed: int = 0  # the random unit-vector start
    cycle_decimals: int = 9  # states equal to this many decimals (and with the same M) count as a revisit
    device: str = "auto"
    name: str = "perceptron"

    def __post_init__(self) -> None:
        require(self.lr > 0, f"lr={self.lr} must be > 0, e.g. lr=1e-5")
        require(self.max_iterations >= 1, f"max_iterations={self.max_iterations} must be >= 1")
        require(1 <= self.cycle_decimals <= 15, f"cycle_decimals={self.cycle_decimals} must lie in 1..15")
        one_of("device", self.device, DEVICES)
        require(self.data.classes is not None and len(self.data.classes) == 2,
                 f"data.classes={self.data.classes}: a perceptron separates exactly two classes, e.g. data.classes=[1,9]")


def register() -> None:
    ConfigStore.instance().store(group="schema", name="perceptron", node=PerceptronConfig, package="_global_")


@dataclass
class AppResult:
    status: str
    iterations: int
    misclassified: int  # |M| at the end
    loss: float
    train_error: float
    val_error: Optional[float]
    test_error: float
    b: float
    w_norm: float
    cycle_length: Optional[int]
    seconds: float
    device: str
    mlflow_run_id: Optional[str] = None


def _resolve_device(name: str) -> torch.device:
    if name == "cuda" and not torch.cuda.is_available():
        raise ConfigError("device=cuda but no CUDA device is visible: use device=auto or cpu")
    from .train import resolve_device

    return resolve_device(name)


def progress_figure(result: PerceptronResult, path: Path, title: str = "") -> Path:
    """|M| and ℓ against the iteration, side by side."""
    from matplotlib.figure import Figure
    from matplotlib.ticker import MaxNLocator

    from .plots import save

    figure = Figure(figsize=(10, 4.2))
    figure.subplots_adjust(left=0.08, right=0.98, bottom=0.12, top=0.84, wspace=0.25)
    count_axes, loss_axes = figure.subplots(1, 2)
    steps = range(len(result.misclassified))
    count_axes.plot(steps, result.misclassified, marker=".", markersize=3)
    count_axes.set(xlabel="iteration", ylabel="|M|", title="misclassified training points")
    loss_axes.plot(steps, result.loss, marker=".", markersize=3, color="tab:red")
    loss_axes.set(xlabel="iteration", ylabel="ℓ(w, b)", title="perceptron loss −Σ_M yᵢ(w·xᵢ + b)")
    for axes in (count_axes, loss_axes):
        axes.grid(alpha=0.3)
        axes.xaxis.set_major_locator(MaxNLocator(integer=True))
        if min(axes.get_lines()[0].get_ydata()) > 0:
            axes.set_yscale("log")
    figure.suptitle(f"{title + ': ' if title else ''}{result.status} after {result.iterations} iterations")
    return save(figure, path)


def train(cfg: PerceptronConfig, out_dir: Path, run: Optional[AppRun] = None) -> AppResult:
    """Load the two classes, fit, evaluate, record; ``result.json`` goes to ``out_dir``."""
    from .data import load

    run = run or AppRun(cfg.tracking, cfg.name, "perceptron")
    device = _resolve_device(cfg.device)
    splits = load(cfg.data, device)
    began = time.perf_counter()
    fitted = fit(splits.train.x, signed_labels(splits.train.y), cfg.lr, cfg.max_iterations, cfg.seed, cfg.cycle_decimals)
    seconds = time.perf_counter() - began

    def error(split) -> Optional[float]:
        return None if split is None else error_rate(split.x, signed_labels(split.y), fitted.w, fitted.b)

    result = AppResult(fitted.status, fitted.iterations, fitted.misclassified[-1], fitted.loss[-1],
                       fitted.train_error, error(splits.validation), error(splits.test), fitted.b,
                       fitted.w.norm().item(), fitted.cycle_length, seconds, str(device), run.run_id)
    run.log_series({"misclassified": fitted.misclassified, "loss": fitted.loss})
    run.log_metrics({"train_error": result.train_error, "val_error": result.val_error, "test_error": result.test_error,
                     "iterations": result.iterations, "final_misclassified": result.misclassified,
                     "final_loss": result.loss, "fit_seconds": seconds})
    run.set_tags({"status": result.status, "classes": " vs ".join(splits.class_names)})
    write_json(out_dir / "result.json", dataclasses.asdict(result))
    if run.run_id is not None:
        if cfg.tracking.plots:
            run.log_artifact(progress_figure(fitted, out_dir / "perceptron.png", run_title(cfg)))
        run.log_artifact(out_dir / "result.json")
    return result


def run_title(cfg: PerceptronConfig) -> str:
    a, b = cfg.data.classes
    return f"perceptron {cfg.data.name} {a} vs {b} lr={cfg.lr:g}"


def summary_line(cfg: PerceptronConfig, result: AppResult, out_dir: Path) -> str:
    def pct(value: Optional[float]) -> str:
        return "n/a" if value is None else f"{100 * value:.2f}%"

    return (f"{run_title(cfg)}: {result.status} after {result.iterations} iterations in {result.seconds:.1f}s "
            f"(|M|={result.misclassified}) — error train {pct(result.train_error)}, val {pct(result.val_error)}, "
            f"test {pct(result.test_error)} → {out_dir / 'result.json'}")


def cli() -> None:
    from .cli import run_hydra_app

    register()
    run_hydra_app(_hydra_task, config_name="perceptron")


def _hydra_task(cfg) -> float:
    typed, out_dir, overrides = hydra_job(cfg)
    with recorded_run(typed.tracking, run_title(typed), "perceptron", typed, overrides) as run:
        result = train(typed, out_dir, run)
    print(summary_line(typed, result, out_dir), flush=True)
    return result.val_error if result.val_error is not None else result.test_error
