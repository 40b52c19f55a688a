"""Gradient descent on a function of one variable: Assignment 6, Question 1 of the seed slides.

"Use gradient descent to find the local minimum of f(x) = x⁴/4 − 3x³ + 7x − 5 around x = 0. Try three
different learning rates (0.01, 0.05, 0.1) and plot the convergence of the function values in at least 30
iterations. What is the local minimum value and which learning rate is the best?"

x_{k+1} = x_k − η f'(x_k), with f'(x) from torch autograd in float64. The function is an expression in x,
parsed with ``ast`` and evaluated by walking the tree (never ``eval``): numbers, x, + − * / **, unary minus
and parentheses.

The reference minimum x* is found apart from the runs being judged: Newton's method (with a gradient
step where f'' ≤ 0, and backtracking so f never rises) from the start and from each run's last iterate;
only points with f'(x*) ≈ 0 and f''(x*) > 0 count, and the one nearest the start is "the local minimum
around x = start". A rate reaches the tolerance at the first k from which |f(x_j) − f*| < tolerance for
every later j. **Best rate**: the fewest iterations to reach the tolerance among rates that did not
diverge; ties go to a monotone approach (x_k − x* never changes sign), then to the smaller rate. If no rate
reaches it, the smallest final |f(x_K) − f*| wins, and the criterion text says so.
"""

from __future__ import annotations

import ast
import dataclasses
import math
import operator
from dataclasses import dataclass, field
from pathlib import Path
from typing import Callable, Optional

import torch
from hydra.core.config_store import ConfigStore

from .config import ConfigError, TrackingConfig, require
from .cli import hydra_job, write_json
from .tracking import AppRun, recorded_run

Function = Callable[[torch.Tensor], torch.Tensor]
ALLOWED = "numbers, x, + - * / **, unary minus and parentheses"
_BINARY = {ast.Add: operator.add, ast.Sub: operator.sub, ast.Mult: operator.mul, ast.Div: operator.truediv,
           ast.Pow: operator.pow}
_UNARY = {ast.USub: operator.neg, ast.UAdd: operator.pos}


# ---- the function and its derivatives ---------------------------------------------------------------------

def _check(node: ast.AST, text: str) -> None:
    """Reject anything but the allowed node types, naming the first offender."""
    def refuse(what: str) -> None:
        raise ConfigError(f"function={text!r}: {what} is not allowed: use {ALLOWED}")

    if isinstance(node, ast.Expression):
        _check(node.body, text)
    elif isinstance(node, ast.BinOp):
        if type(node.op) not in _BINARY:
            if isinstance(node.op, ast.BitXor):
                raise ConfigError(f"function={text!r}: '^' is not a power here: write powers as **, e.g. x**2")
            refuse(f"the operator {type(node.op).__name__}")
        _check(node.left, text)
        _check(node.right, text)
    elif isinstance(node, ast.UnaryOp):
        if type(node.op) not in _UNARY:
            refuse(f"the operator {type(node.op).__name__}")
        _check(node.operand, text)
    elif isinstance(node, ast.Constant):
        if isinstance(node.value, bool) or not isinstance(node.value, (int, float)):
            refuse(f"the constant {node.value!r}")
    elif isinstance(node, ast.Name):
        if node.id != "x":
            refuse(f"the name {node.id!r}")
    elif isinstance(node, ast.Call):
        refuse(f"a call ({ast.unparse(node.func)})")
    else:
        refuse(f"{type(node).__name__} ({ast.unparse(node)})")


def parse_function(text: str) -> Function:
    """``"x**4/4 - 3*x**3 + 7*x - 5"`` → a function of a float64 tensor; ConfigError names what is not allowed."""
    try:
        tree = ast.parse(text.strip(), mode="eval")
    except SyntaxError as error:
        raise ConfigError(f"function={text!r} is not an expression ({error.msg}): use {ALLOWED}") from None
    _check(tree, text)
    if not any(isinstance(node, ast.Name) for node in ast.walk(tree)):
        raise ConfigError(f"function={text!r} does not depend on x")

    def evaluate(node: ast.AST, x: torch.Tensor) -> torch.Tensor:
        if isinstance(node, ast.BinOp):
            return _BINARY[type(node.op)](evaluate(node.left, x), evaluate(node.right, x))
        if isinstance(node, ast.UnaryOp):
            return _UNARY[type(node.op)](evaluate(node.operand, x))
        if isinstance(node, ast.Name):
            return x
        # A tensor constant: "9**9**9" overflows to inf instead of building a huge Python int.
        return torch.tensor(float(node.value), dtype=torch.float64)

    try:
        float(evaluate(tree.body, torch.tensor(0.0, dtype=torch.float64)))  # e.g. an integer literal too big for a float
    except OverflowError:
        raise ConfigError(f"function={text!r} holds a number too large for a float") from None
    return lambda x: evaluate(tree.body, x)


def derivatives(f: Function, x: float, order: int = 1) -> list[float]:
    """[f'(x)] or [f'(x), f''(x)] by autograd in float64."""
    point = torch.tensor(float(x), dtype=torch.float64, requires_grad=True)
    (first,) = torch.autograd.grad(f(point), point, create_graph=order > 1)
    if order == 1:
        return [first.item()]
    (second,) = torch.autograd.grad(first, point) if first.requires_grad else (torch.zeros(()),)
    return [first.item(), second.item()]


def derivative(f: Function, x: float) -> float:
    return derivatives(f, x)[0]


def value(f: Function, x: float) -> float:
    return f(torch.tensor(float(x), dtype=torch.float64)).item()


def descend(f: Function, start: float, lr: float, iterations: int) -> tuple[list[float], list[float]]:
    """x_0 = start, x_{k+1} = x_k − lr·f'(x_k): ([x_0 … x_K], [f(x_0) … f(x_K)]), cut after the first
    non-finite value (a diverged run)."""
    xs, fs = [float(start)], [value(f, start)]
    for _ in range(iterations):
        if not (math.isfinite(xs[-1]) and math.isfinite(fs[-1])):
            break
        x = xs[-1] - lr * derivative(f, xs[-1])
        xs.append(x)
        fs.append(value(f, x) if math.isfinite(x) else math.nan)
    return xs, fs


def polish_minimum(f: Function, guess: float, steps: int = 100) -> Optional[float]:
    """Newton's method from ``guess`` (a gradient step where f'' ≤ 0), halving each step until f does not
    rise; the point if f' ≈ 0 and f'' > 0 there, else None."""
    x = float(guess)
    if not math.isfinite(x):
        return None
    for _ in range(steps):
        g, h = derivatives(f, x, order=2)
        if not (math.isfinite(g) and math.isfinite(h)):
            return None
        step = -g / h if h > 0 else -g
        fx = value(f, x)
        for _ in range(60):  # backtracking: never accept a rise in f
            if value(f, x + step) <= fx:
                break
            step /= 2
        if step == 0 or abs(step) <= 1e-16 * (1 + abs(x)):
            break
        x += step
    g, h = derivatives(f, x, order=2)
    return x if abs(g) <= 1e-9 * (1 + abs(value(f, x))) and h > 0 else None


# ---- the experiment ---------------------------------------------------------------------------------------

@dataclass
class RateResult:
    lr: float
    x: list[float]  # x_0 … x_K (shorter when diverged)
    f: list[float]  # f(x_0) … f(x_K)
    diverged: bool  # a non-finite x or f(x)
    converged: bool  # reached |f(x_k) − f*| < tolerance and stayed there
    iterations_to_tol: Optional[int]  # the first such k
    sign_changes: int  # of x_k − x*: 0 means a monotone approach
    approach: str  # "monotone", "oscillating" or "diverged"
    final_gap: float  # |f(x_K) − f*|


@dataclass
class GdResult:
    function: str
    start: float
    iterations: int
    tolerance: float
    x_star: float
    f_star: float
    f2_star: float  # f''(x*) > 0: a minimum
    rates: list[RateResult]
    best_lr: Optional[float]  # None only when every rate diverged
    criterion: str

    def rate(self, lr: float) -> RateResult:
        return next(r for r in self.rates if r.lr == lr)


def _sign_changes(xs: list[float], x_star: float) -> int:
    """Sign changes of x_k − x*, ignoring iterates at x* to rounding (they have no side)."""
    tiny = 1e-12 * (1 + abs(x_star))
    signs = [d > 0 for d in (x - x_star for x in xs) if abs(d) > tiny]
    return sum(a != b for a, b in zip(signs, signs[1:]))


def _judge(lr: float, xs: list[float], fs: list[float], x_star: float, f_star: float, tolerance: float) -> RateResult:
    diverged = not all(math.isfinite(v) for v in xs + fs)
    gaps = [abs(v - f_star) for v in fs]
    reached = None
    if not diverged:
        for k in range(len(gaps) - 1, -1, -1):  # walk back while the gap stays under the tolerance
            if gaps[k] >= tolerance:
                break
            reached = k
    changes = _sign_changes(xs, x_star) if not diverged else 0
    approach = "diverged" if diverged else ("monotone" if changes == 0 else "oscillating")
    return RateResult(lr, xs, fs, diverged, reached is not None, reached, changes, approach,
                      gaps[-1] if not diverged else math.inf)


def best_rate(rates: list[RateResult], tolerance: float) -> tuple[Optional[float], str]:
    """The module docstring's criterion: (best rate or None, the criterion in words)."""
    rule = (f"fewest iterations until |f(x_k) - f*| < {tolerance:g} for good, among rates that did not diverge; "
            "ties: monotone approach first, then the smaller rate")
    reached = [r for r in rates if r.converged]
    if reached:
        best = min(reached, key=lambda r: (r.iterations_to_tol, r.sign_changes > 0, r.lr))
        return best.lr, rule
    finite = [r for r in rates if not r.diverged]
    if finite:
        best = min(finite, key=lambda r: (r.final_gap, r.lr))
        return best.lr, f"no rate reached the tolerance: the smallest final |f(x_K) - f*| (rule otherwise: {rule})"
    return None, "every rate diverged"


def run(cfg: GdConfig) -> GdResult:
    """Descend with every rate, find x* independently, judge each rate, pick the best."""
    f = parse_function(cfg.function)
    trajectories = {lr: descend(f, cfg.start, lr, cfg.iterations) for lr in cfg.learning_rates}
    candidates = [cfg.start] + [xs[-1] for xs, fs in trajectories.values() if math.isfinite(xs[-1] + fs[-1])]
    minima = [m for m in (polish_minimum(f, c) for c in candidates) if m is not None]
    if not minima:
        raise ConfigError(f"function={cfg.function!r} has no local minimum near start={cfg.start} that Newton's method "
                          "confirms (f'=0, f''>0) from the iterates: change the function or the start")
    x_star = min(minima, key=lambda m: (abs(m - cfg.start), value(f, m)))
    f_star = value(f, x_star)
    rates = [_judge(lr, xs, fs, x_star, f_star, cfg.tolerance) for lr, (xs, fs) in trajectories.items()]
    best, criterion = best_rate(rates, cfg.tolerance)
    return GdResult(cfg.function, cfg.start, cfg.iterations, cfg.tolerance, x_star, f_star,
                    derivatives(f, x_star, order=2)[1], rates, best, criterion)


def plot(result: GdResult, path: Path) -> Path:
    """f(x_k) against k for every rate with f* as a line; beside it |f(x_k) − f*| on a log scale."""
    from matplotlib.figure import Figure
    from matplotlib.ticker import MaxNLocator

    from .plots import save

    figure = Figure(figsize=(11, 4.4))
    figure.subplots_adjust(left=0.07, right=0.98, bottom=0.12, top=0.85, wspace=0.22)
    value_axes, gap_axes = figure.subplots(1, 2)
    for r in result.rates:
        steps = [k for k, v in enumerate(r.f) if math.isfinite(v)]
        label = f"η = {r.lr:g} ({r.approach})"
        value_axes.plot(steps, [r.f[k] for k in steps], marker=".", label=label)
        gaps = [(k, abs(r.f[k] - result.f_star)) for k in steps if abs(r.f[k] - result.f_star) > 0]
        gap_axes.plot([k for k, _ in gaps], [g for _, g in gaps], marker=".", label=label)
    value_axes.axhline(result.f_star, color="black", linestyle="--", linewidth=1,
                       label=f"f* = {result.f_star:.6f} at x* = {result.x_star:.6f}")
    finite = [v for r in result.rates if not r.diverged for v in r.f]
    if finite and any(r.diverged for r in result.rates):  # keep a diverged rate from flattening the others
        low, high = min(finite), max(finite)
        value_axes.set_ylim(low - 0.05 * (high - low + 1e-12), high + 0.05 * (high - low + 1e-12))
        gaps = [g for g in (abs(v - result.f_star) for v in finite) if g > 0] + [result.tolerance]
        gap_axes.set_ylim(min(gaps) / 3, max(gaps) * 3)
    gap_axes.axhline(result.tolerance, color="grey", linestyle=":", linewidth=1, label=f"tolerance {result.tolerance:g}")
    gap_axes.set_yscale("log")
    value_axes.set(xlabel="iteration k", ylabel="f(x_k)", title="function value")
    gap_axes.set(xlabel="iteration k", ylabel="|f(x_k) − f*|", title="distance to the minimum value")
    for axes in (value_axes, gap_axes):
        axes.grid(alpha=0.3)
        axes.xaxis.set_major_locator(MaxNLocator(integer=True))
        axes.legend(fontsize=8)
    best = "none" if result.best_lr is None else f"{result.best_lr:g}"
    figure.suptitle(f"gradient descent on f(x) = {result.function} from x0 = {result.start:g}: best η = {best}")
    return save(figure, path)


def table(result: GdResult) -> str:
    """The per-rate table and the answer, as printed by mlplab-gd."""
    lines = [f"{'rate':>8} {'x_K':>12} {'f(x_K)':>14} {'|f-f*|':>10} {'iters to tol':>12}  approach"]
    for r in result.rates:
        reached = "-" if r.iterations_to_tol is None else str(r.iterations_to_tol)
        lines.append(f"{r.lr:>8g} {r.x[-1]:>12.6g} {r.f[-1]:>14.8g} {r.final_gap:>10.2e} {reached:>12}  {r.approach}"
                     + (f" ({r.sign_changes} sign changes)" if r.sign_changes else ""))
    best = "none" if result.best_lr is None else f"{result.best_lr:g}"
    lines.append(f"local minimum: x* = {result.x_star:.10f}, f* = {result.f_star:.10f} (f''(x*) = {result.f2_star:.4f}); "
                 f"best rate {best} — {result.criterion}")
    return "\n".join(lines)


# ---- the app: mlplab-gd -----------------------------------------------------------------------------------

@dataclass
class GdConfig:
    function: str = "x**4/4 - 3*x**3 + 7*x - 5"
    start: float = 0.0
    learning_rates: list[float] = field(default_factory=lambda: [0.01, 0.05, 0.1])
    iterations: int = 30
    tolerance: float = 1e-6  # on |f(x_k) − f*|
    tracking: TrackingConfig = field(default_factory=lambda: TrackingConfig(experiment="assignment6-q1"))
    name: str = "q1"

    def __post_init__(self) -> None:
        parse_function(self.function)  # a ConfigError naming the offending part
        require(len(self.learning_rates) >= 1, "learning_rates needs at least one rate, e.g. learning_rates=[0.01,0.05,0.1]")
        require(all(lr > 0 for lr in self.learning_rates), f"learning_rates={self.learning_rates}: every rate must be > 0")
        require(len(set(self.learning_rates)) == len(self.learning_rates), f"learning_rates={self.learning_rates} repeats a rate")
        require(self.iterations >= 1, f"iterations={self.iterations} must be >= 1")
        require(self.tolerance > 0, f"tolerance={self.tolerance} must be > 0")
        require(math.isfinite(self.start), f"start={self.start} must be a finite number")


def register() -> None:
    ConfigStore.instance().store(group="schema", name="gd", node=GdConfig, package="_global_")


def cli() -> None:
    from .cli import run_hydra_app

    register()
    run_hydra_app(_hydra_task, config_name="gd")


def record(result: GdResult, recorder: AppRun, out_dir: Path, plots: bool = True) -> Path:
    """Log ``result`` on ``recorder``'s run (f(x_k) series per rate, the answer, the figure); write
    ``result.json`` and ``gd.png`` into ``out_dir`` either way. Returns the figure's path."""
    recorder.log_series({f"f_{r.lr:g}": r.f for r in result.rates})
    recorder.log_metrics({"x_star": result.x_star, "f_star": result.f_star, "best_lr": result.best_lr,
                          **{f"iterations_to_tol_{r.lr:g}": r.iterations_to_tol for r in result.rates},
                          **{f"final_gap_{r.lr:g}": r.final_gap for r in result.rates}})
    recorder.set_tags({"best_lr": result.best_lr, "criterion": result.criterion,
                       **{f"approach_{r.lr:g}": r.approach for r in result.rates}})
    path = write_json(out_dir / "result.json", {**dataclasses.asdict(result), "mlflow_run_id": recorder.run_id})
    figure = plot(result, out_dir / "gd.png")  # the figure Q1 asks for, tracked or not
    if recorder.run_id is not None:
        recorder.log_artifact(path)
        if plots:
            recorder.log_artifact(figure)
    return figure


def _hydra_task(cfg) -> float:
    typed, out_dir, overrides = hydra_job(cfg)
    with recorded_run(typed.tracking, f"{typed.name}: {typed.function}", "gd", typed, overrides) as recorder:
        result = run(typed)
        record(result, recorder, out_dir, typed.tracking.plots)
    print(table(result), flush=True)
    return result.f_star
