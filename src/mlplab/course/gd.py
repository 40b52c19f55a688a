"""Gradient descent on a function of one variable: Assignment 6, Question 1 of the seed slides.

"Use gradient descent to find the local minimum of f(x) = x⁴/4 − 3x³ + 7x − 5 around x = 0. Try three
different learning rates (0.01, 0.05, 0.1) and plot the convergence of the function values in at least 30
iterations. What is the local minimum value and which learning rate is the best?"

x_{k+1} = x_k − η f'(x_k), with f'(x) from torch autograd in float64; the function is an expression in x
(``expression.py``).

The reference minimum x* is found apart from the runs being judged: Newton's method (with a gradient
step where f'' ≤ 0, and backtracking so f never rises) from the start and from each run's last iterate;
only points with f'(x*) ≈ 0 and f''(x*) > 0 count, and the one nearest the start is "the local minimum
around x = start". A rate reaches the tolerance at the first k from which |f(x_j) − f*| < tolerance for
every later j. **Best rate**: the fewest iterations to reach the tolerance among rates that did not
diverge; ties go to a monotone approach (x_k − x* never changes sign), then to the smaller rate. If no rate
reaches it, the smallest final |f(x_K) − f*| wins, and the criterion text says so.
"""

from __future__ import annotations

import math
from dataclasses import dataclass
from typing import Optional

from ..errors import ConfigError
from .expression import Function, derivative, derivatives, parse_function, value


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


def run(cfg) -> GdResult:
    """Descend with every rate, find x* independently, judge each rate, pick the best (``cfg``: the
    ``mlplab-gd`` config: function, start, learning_rates, iterations, tolerance)."""
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
