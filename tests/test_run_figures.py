"""The figures every run records (run_figures.py): tick choice, colours, and what the pictures show."""

from __future__ import annotations

import numpy as np
import pytest
import torch
from PIL import Image

from mlplab.figures import run as run_figures
from mlplab.figures.run import BLUES, SERIES_COLORS, blues, nice_ticks, tick_label


def test_ticks_are_round_and_inside_the_range():
    assert nice_ticks(0, 1, 6) == pytest.approx([0, 0.2, 0.4, 0.6, 0.8, 1.0])
    assert nice_ticks(0.068, 0.57, 8) == pytest.approx([0.1, 0.2, 0.3, 0.4, 0.5])  # span/7 = 0.0717 → step 0.1
    assert nice_ticks(79.2, 90.5, 8) == pytest.approx([80, 82, 84, 86, 88, 90])  # 11.3/7 = 1.61 → step 2
    assert nice_ticks(79.2, 95.0, 8) == pytest.approx([80, 82.5, 85, 87.5, 90, 92.5, 95])  # 15.8/7 = 2.26 → step 2.5
    assert nice_ticks(-0.7, 31.7, 8, integer=True) == [0, 5, 10, 15, 20, 25, 30]
    assert nice_ticks(0.5, 1.5, 8, integer=True) == [1]  # one epoch: one whole tick, no 0.2 steps
    assert nice_ticks(0.5, 3.5, 8, integer=True) == [1, 2, 3]


def test_tick_labels_carry_the_decimals_the_spacing_needs():
    assert [tick_label(t, [80, 82.5]) for t in (80, 82.5)] == ["80.0", "82.5"]
    assert [tick_label(t, [0.1, 0.2]) for t in (0.1, 0.30000000000000004)] == ["0.1", "0.3"]
    assert [tick_label(t, [0, 0.25]) for t in (0, 0.25)] == ["0.00", "0.25"]
    assert tick_label(30, [0, 5, 10]) == "30"


def test_blues_is_matplotlibs_blues():
    import matplotlib

    reference = matplotlib.colormaps["Blues"]
    for value in [i / 20 for i in range(21)]:
        expected = [round(255 * c) for c in reference(value)[:3]]
        assert max(abs(a - b) for a, b in zip(blues(value), expected)) <= 2, value
    assert blues(-1) == BLUES[0] and blues(2) == BLUES[-1]


def near(image: Image.Image, color: tuple[int, int, int], tolerance: int = 20) -> int:
    """How many pixels are within ``tolerance`` of ``color`` in every channel."""
    pixels = torch.from_numpy(np.array(image.convert("RGB"))).reshape(-1, 3).int()
    return int(((pixels - torch.tensor(color)).abs() <= tolerance).all(dim=1).sum())


def history(epochs: int, validation: bool = True) -> list[dict]:
    return [{"epoch": e, "train_loss": 1 / e, "train_accuracy": 0.5 + e / 100,
             "val_loss": 1.2 / e if validation else None, "val_accuracy": 0.45 + e / 100 if validation else None}
            for e in range(1, epochs + 1)]


def test_learning_curves_draw_each_split_that_has_values(tmp_path):
    both = Image.open(run_figures.learning_curves(history(12), tmp_path / "both.png", "a run"))
    assert both.size == (1000, 420)
    assert near(both, SERIES_COLORS[0]) > 300 and near(both, SERIES_COLORS[1]) > 300
    training_only = Image.open(run_figures.learning_curves(history(12, validation=False), tmp_path / "train.png"))
    assert near(training_only, SERIES_COLORS[0]) > 300 and near(training_only, SERIES_COLORS[1]) == 0
    single = Image.open(run_figures.learning_curves(history(1), tmp_path / "single.png"))  # no zero-width range
    assert near(single, SERIES_COLORS[1]) > 20
    # A value that overflowed is left out, not drawn off the canvas: the other points of its series still fill
    # the loss panel (the left half) about as they do with that point simply missing.
    overflowed, missing = history(5), history(5)
    overflowed[2]["val_loss"], missing[2]["val_loss"] = float("inf"), float("nan")
    drawn = [near(Image.open(run_figures.learning_curves(h, tmp_path / f"{i}.png")).crop((0, 0, 500, 420)), SERIES_COLORS[1])
             for i, h in enumerate((overflowed, missing))]
    assert drawn[1] > 100 and abs(drawn[0] - drawn[1]) <= 0.05 * drawn[1]


def test_confusion_matrix_shades_cells_by_their_rows_share(tmp_path):
    names = ["T-shirt/top", "Trouser", "Pullover", "Dress"]
    perfect = Image.open(run_figures.confusion_matrix(torch.diag(torch.tensor([90, 10, 40, 7])), names, tmp_path / "p.png"))
    cell_area = 52 * 52
    assert near(perfect, BLUES[-1], 3) > 0.9 * 4 * cell_area  # every diagonal cell is 100 % of its row
    assert near(perfect, BLUES[0], 3) > 0.9 * 12 * cell_area  # every other cell is 0 %
    uniform = Image.open(run_figures.confusion_matrix(torch.full((4, 4), 25), names, tmp_path / "u.png", "t", "validation"))
    assert near(uniform, blues(0.25), 3) > 0.9 * 16 * cell_area and near(uniform, BLUES[-1], 3) < cell_area / 4
