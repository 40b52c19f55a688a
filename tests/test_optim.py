"""Learning-rate schedules give the numbers their definitions say."""

import math

import pytest

from mlplab.config import ScheduleConfig
from mlplab.training.optim import Schedule


def rates(cfg: ScheduleConfig, accuracies: list[float], lr0: float = 1.0, epochs: int = 20):
    schedule = Schedule(cfg, lr0, epochs)
    out = []
    for epoch, accuracy in enumerate(accuracies, start=1):
        out.append(schedule.after_epoch(epoch, accuracy))
        if schedule.stop:
            break
    return out, schedule.stop


def test_piecewise_drops_by_factor_every_period_like_matlab():
    out, _ = rates(ScheduleConfig(name="piecewise", drop_factor=0.5, drop_period=5), [0.5] * 12, lr0=0.005)
    assert out == pytest.approx([0.005] * 4 + [0.0025] * 5 + [0.00125] * 3)


def test_halve_on_plateau_halves_after_patience_and_stops_at_one_128th():
    cfg = ScheduleConfig(name="halve_on_plateau", patience=2, min_lr_ratio=1 / 128)
    out, stopped = rates(cfg, [0.9] + [0.8] * 30)
    # after the best epoch, every 2 flat epochs halve η: 1, ½, ½, ¼, ¼, … until 1/128
    assert out[:5] == pytest.approx([1.0, 1.0, 0.5, 0.5, 0.25])
    assert stopped and out[-1] == pytest.approx(1 / 128) and len(out) == 1 + 2 * 7


def test_halve_on_plateau_resets_when_validation_improves():
    cfg = ScheduleConfig(name="halve_on_plateau", patience=2)
    out, stopped = rates(cfg, [0.5, 0.4, 0.6, 0.5, 0.7, 0.6])
    assert out == pytest.approx([1.0] * 6) and not stopped


def test_reduce_on_plateau_multiplies_by_factor_and_floors():
    cfg = ScheduleConfig(name="reduce_on_plateau", patience=1, factor=0.1, min_lr_ratio=0.01)
    out, stopped = rates(cfg, [0.9, 0.8, 0.8, 0.8, 0.8])
    assert out == pytest.approx([1.0, 0.1, 0.01, 0.01, 0.01]) and not stopped


def test_cosine_anneals_to_zero_over_the_run():
    out, _ = rates(ScheduleConfig(name="cosine"), [0.5] * 4, lr0=2.0, epochs=4)
    assert out == pytest.approx([1.0 + math.cos(math.pi * e / 4) for e in range(1, 5)])
    assert out[-1] == pytest.approx(0.0, abs=1e-12)


def test_constant_keeps_eta():
    out, _ = rates(ScheduleConfig(name="constant"), [0.1, 0.2, 0.1], lr0=0.3)
    assert out == pytest.approx([0.3] * 3)
