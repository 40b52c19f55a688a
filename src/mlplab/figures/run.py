"""The two figures every training run records, learning curves and the confusion matrix, drawn straight
into pixels with Pillow.

Why not matplotlib, as for the study's and the report's figures (``mpl.py``): a run's figures are drawn at
its end, on its clock, and matplotlib spends 100–170 ms on each of these here, most of it laying out ticks
and text in Python. That alone would take the default 7 s job past the 3 % tracking budget
(bench/tracking_overhead.py); these take ~15 ms each. Everything is drawn at ``SCALE``× and reduced, which
antialiases the lines; coordinates below are in output pixels.
"""

from __future__ import annotations

import importlib.util
import math
from dataclasses import dataclass
from functools import lru_cache
from pathlib import Path
from typing import Optional, Sequence

import torch
from PIL import Image, ImageDraw, ImageFont

SCALE = 2
INK, FRAME, GRID = (25, 25, 25), (70, 70, 70), (228, 228, 228)
SERIES_COLORS = ((31, 119, 180), (255, 127, 14))  # matplotlib's C0 and C1: training, validation
# ColorBrewer's 9-class Blues, which matplotlib's "Blues" colormap interpolates linearly.
BLUES = ((247, 251, 255), (222, 235, 247), (198, 219, 239), (158, 202, 225), (107, 174, 214), (66, 146, 198),
         (33, 113, 181), (8, 81, 156), (8, 48, 107))

RGB = tuple[int, int, int]


@lru_cache(maxsize=None)
def font(size: int) -> ImageFont.FreeTypeFont:
    """DejaVu Sans, the font of the other figures (it ships with matplotlib; found without importing it)."""
    package = importlib.util.find_spec("matplotlib").submodule_search_locations[0]
    return ImageFont.truetype(str(Path(package) / "mpl-data" / "fonts" / "ttf" / "DejaVuSans.ttf"), size * SCALE)


def text_width(text: str, size: int = 10) -> float:
    """In output pixels."""
    return font(size).getlength(text) / SCALE


def blues(value: float) -> RGB:
    """The Blues colour of ``value`` in [0, 1]."""
    position = min(max(value, 0.0), 1.0) * (len(BLUES) - 1)
    i = min(int(position), len(BLUES) - 2)
    frac = position - i
    return tuple(round(a + (b - a) * frac) for a, b in zip(BLUES[i], BLUES[i + 1]))


def nice_ticks(low: float, high: float, most: int = 6, integer: bool = False) -> list[float]:
    """Round values inside [low, high], evenly spaced by 1, 2, 2.5 or 5 × 10^k, at most ``most`` of them
    (whole numbers only with ``integer``)."""
    raw = max((high - low) / max(most - 1, 1), 1e-12, 1.0 if integer else 0.0)
    magnitude = 10 ** math.floor(math.log10(raw))
    mantissas = (1, 2, 5, 10) if integer and magnitude == 1 else (1, 2, 2.5, 5, 10)
    step = next(m * magnitude for m in mantissas if m * magnitude >= raw * (1 - 1e-9))
    first = math.ceil(low / step - 1e-9)
    count = math.floor(high / step + 1e-9) - first + 1
    return [(first + i) * step for i in range(max(count, 0))]


def tick_label(value: float, ticks: Sequence[float]) -> str:
    """As many decimals as the spacing needs, no more (0.25, 0.5 → "0.25", "0.50"; 10, 20 → "10", "20")."""
    step = abs(ticks[1] - ticks[0]) if len(ticks) > 1 else abs(value) or 1.0
    decimals = max(0, -math.floor(math.log10(step) + 1e-9))
    if round(step * 10**decimals, 6) % 1:  # 2.5 × 10^k needs one more
        decimals += 1
    return f"{value:.{decimals}f}"


class Canvas:
    """A white picture, ``width`` × ``height`` output pixels."""

    def __init__(self, width: int, height: int):
        self.image = Image.new("RGB", (round(width) * SCALE, round(height) * SCALE), "white")
        self.draw = ImageDraw.Draw(self.image)

    def line(self, points: Sequence[tuple[float, float]], color: RGB, width: float = 1) -> None:
        self.draw.line([(x * SCALE, y * SCALE) for x, y in points], fill=color, width=max(1, round(width * SCALE)),
                       joint="curve")

    def rectangle(self, box: tuple[float, float, float, float], fill: Optional[RGB] = None,
                  outline: Optional[RGB] = None) -> None:
        self.draw.rectangle([c * SCALE for c in box], fill=fill, outline=outline, width=SCALE)

    def dot(self, x: float, y: float, radius: float, color: RGB) -> None:
        r = radius * SCALE
        self.draw.ellipse([x * SCALE - r, y * SCALE - r, x * SCALE + r, y * SCALE + r], fill=color)

    def gradient(self, box: tuple[float, float, float, float], colors: Sequence[RGB]) -> None:
        """``colors`` from the top of ``box`` to its bottom, interpolated."""
        strip = Image.new("RGB", (1, len(colors)))
        strip.putdata(list(colors))
        left, top, right, bottom = (round(c * SCALE) for c in box)
        self.image.paste(strip.resize((right - left, bottom - top), Image.Resampling.BILINEAR), (left, top))

    def text(self, x: float, y: float, text: str, size: int = 10, anchor: str = "la", color: RGB = INK) -> None:
        """Pillow's anchors: l/m/r horizontally, then a(scender)/m/s(baseline)/d(escender) vertically."""
        self.draw.text((x * SCALE, y * SCALE), text, font=font(size), fill=color, anchor=anchor)

    def turned_text(self, x: float, y: float, text: str, degrees: float, size: int = 10, anchor: str = "mm") -> None:
        """Text turned ``degrees`` anticlockwise; ``anchor`` names the point of its bounding box put at (x, y):
        l/m/r then t/m/b."""
        f = font(size)
        left, top, right, bottom = f.getbbox(text)
        layer = Image.new("L", (right + 2, bottom + 2), 0)
        ImageDraw.Draw(layer).text((0, 0), text, font=f, fill=255)
        layer = layer.rotate(degrees, expand=True, resample=Image.Resampling.BICUBIC)
        w, h = layer.size
        dx = {"l": 0, "m": w / 2, "r": w}[anchor[0]]
        dy = {"t": 0, "m": h / 2, "b": h}[anchor[1]]
        self.image.paste(INK, (round(x * SCALE - dx), round(y * SCALE - dy)), layer)

    def save(self, path: Path) -> Path:
        self.image.reduce(SCALE).save(path, compress_level=1)
        return path


@dataclass
class Panel:
    """A plotting area: its box on the canvas and the data ranges it shows."""

    left: float
    top: float
    width: float
    height: float
    x_range: tuple[float, float]
    y_range: tuple[float, float]

    def at(self, x: float, y: float) -> tuple[float, float]:
        (x0, x1), (y0, y1) = self.x_range, self.y_range
        return self.left + (x - x0) / (x1 - x0) * self.width, self.top + (y1 - y) / (y1 - y0) * self.height

    @property
    def bottom(self) -> float:
        return self.top + self.height


def padded(values: Sequence[float], share: float = 0.05, least: float = 0.5) -> tuple[float, float]:
    """[min, max] widened by ``share`` of its span on each side (by ``least`` if the span is 0)."""
    low, high = min(values), max(values)
    pad = (high - low) * share or least
    return low - pad, high + pad


def draw_panel(canvas: Canvas, panel: Panel, series: dict[str, tuple[list[float], list[float]]], title: str,
               y_label: str, x_label: str = "epoch") -> None:
    """Grid, frame, ticks and labels, then each series as a line with dots."""
    (x0, x1), (y0, y1) = panel.x_range, panel.y_range
    x_ticks, y_ticks = nice_ticks(x0, x1, 8, integer=True), nice_ticks(y0, y1, 8)
    right = panel.left + panel.width
    for x in x_ticks:
        px, _ = panel.at(x, y0)
        canvas.line([(px, panel.top), (px, panel.bottom)], GRID)
        canvas.line([(px, panel.bottom), (px, panel.bottom + 4)], FRAME)
        canvas.text(px, panel.bottom + 6, tick_label(x, x_ticks), 9, "ma")
    for y in y_ticks:
        _, py = panel.at(x0, y)
        canvas.line([(panel.left, py), (right, py)], GRID)
        canvas.line([(panel.left - 4, py), (panel.left, py)], FRAME)
        canvas.text(panel.left - 6, py, tick_label(y, y_ticks), 9, "rm")
    canvas.rectangle((panel.left, panel.top, right, panel.bottom), outline=FRAME)
    for color, (xs, ys) in zip(SERIES_COLORS, series.values()):
        points = [panel.at(x, y) for x, y in zip(xs, ys) if math.isfinite(y)]
        if len(points) > 1:
            canvas.line(points, color, 1.5)
        for px, py in points:
            canvas.dot(px, py, 2.5, color)
    canvas.text(panel.left + panel.width / 2, panel.top - 8, title, 10, "ms")
    canvas.text(panel.left + panel.width / 2, panel.bottom + 24, x_label, 10, "ma")
    widest = max((text_width(tick_label(y, y_ticks), 9) for y in y_ticks), default=0)
    canvas.turned_text(panel.left - 14 - widest, panel.top + panel.height / 2, y_label, 90, 10, "rm")


def draw_legend(canvas: Canvas, right: float, y: float, labels: Sequence[str]) -> None:
    """A line sample and its label for each series, in a row ending at ``right``."""
    x = right - sum(30 + text_width(label, 10) + 16 for label in labels)
    for color, label in zip(SERIES_COLORS, labels):
        canvas.line([(x, y), (x + 24, y)], color, 1.5)
        canvas.dot(x + 12, y, 2.5, color)
        canvas.text(x + 30, y, label, 10, "lm")
        x += 30 + text_width(label, 10) + 16


def learning_curves(history: list[dict], path: Path, title: str = "") -> Path:
    """Cost and accuracy per epoch, training against validation."""
    canvas = Canvas(1000, 420)
    epochs = [h["epoch"] for h in history]
    splits = {label: split for label, split in (("training", "train"), ("validation", "val"))
              if all(h[f"{split}_loss"] is not None for h in history)}
    panels = (("loss", 1.0, "cost C", "cost (training: mean over the epoch's mini-batches)"),
              ("accuracy", 100.0, "accuracy (%)", "accuracy"))
    for i, (measure, factor, y_label, panel_title) in enumerate(panels):
        series = {label: (epochs, [factor * h[f"{split}_{measure}"] for h in history]) for label, split in splits.items()}
        values = [v for _, ys in series.values() for v in ys if math.isfinite(v)] or [0.0, 1.0]
        panel = Panel(left=80 + 500 * i, top=70, width=395, height=290, x_range=padded(epochs, 0.04),
                      y_range=padded(values))
        draw_panel(canvas, panel, series, panel_title, y_label)
    canvas.text(500, 10, title, 13, "ma")
    draw_legend(canvas, 975, 40, list(splits))
    return canvas.save(path)


def confusion_matrix(counts: torch.Tensor, class_names: list[str], path: Path, title: str = "", split: str = "test") -> Path:
    """Row-normalised confusion matrix, each row labelled with its class's accuracy; cells holding at least
    1 % of their row show their count. A colour bar at the right reads the shares."""
    counts = counts.cpu().double()
    k = len(class_names)
    rates = (counts / counts.sum(dim=1, keepdim=True).clamp(min=1)).tolist()
    per_class = (counts.diag() / counts.sum(dim=1).clamp(min=1)).tolist()
    whole = counts.tolist()
    row_labels = [f"{name} ({100 * acc:.1f}%)" for name, acc in zip(class_names, per_class)]
    heading = f"{title + ': ' if title else ''}{split} accuracy {100 * float(counts.diag().sum() / counts.sum().clamp(min=1)):.2f}%"

    cell = 52
    left = 50 + max(text_width(label, 10) for label in row_labels)
    bottom = 50 + max(text_width(name, 10) for name in class_names) * math.sqrt(0.5)
    top, right = 48, 80
    width = max(left + k * cell + right, text_width(heading, 12) + 20)
    canvas = Canvas(width, top + k * cell + bottom)

    for i in range(k):
        for j in range(k):
            x, y = left + j * cell, top + i * cell
            canvas.rectangle((x, y, x + cell, y + cell), fill=blues(rates[i][j]))
            if rates[i][j] >= 0.01:  # the counts that matter
                canvas.text(x + cell / 2, y + cell / 2, f"{int(whole[i][j])}", 9, "mm",
                            (255, 255, 255) if rates[i][j] > 0.5 else INK)
        canvas.text(left - 6, top + (i + 0.5) * cell, row_labels[i], 10, "rm")
        canvas.turned_text(left + (i + 0.5) * cell + 4, top + k * cell + 6, class_names[i], 45, 10, "rt")
    grid_bottom = top + k * cell
    canvas.rectangle((left, top, left + k * cell, grid_bottom), outline=FRAME)
    canvas.text(left + k * cell / 2, canvas.image.height / SCALE - 8, "predicted", 10, "ms")
    canvas.turned_text(14, top + k * cell / 2, "true class (per-class accuracy)", 90, 10, "lm")
    canvas.text(width / 2, 12, heading, 12, "ma")

    bar_left = left + k * cell + 16
    canvas.gradient((bar_left, top, bar_left + 14, grid_bottom), [blues(1 - i / 255) for i in range(256)])  # 1 at the top
    canvas.rectangle((bar_left, top, bar_left + 14, grid_bottom), outline=FRAME)
    for value in (0.0, 0.25, 0.5, 0.75, 1.0):
        y = grid_bottom - value * k * cell
        canvas.line([(bar_left + 14, y), (bar_left + 18, y)], FRAME)
        canvas.text(bar_left + 21, y, f"{value:g}", 9, "lm")
    return canvas.save(path)
