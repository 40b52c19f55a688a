"""Random shifts and mirrors drawn each epoch: every output is one of the image's variants, computed here
independently by rolling and blanking, and all of them occur."""

import pytest
import torch

from mlplab.data.augment import random_variants
from mlplab.config import DataConfig
from mlplab.data.splits import load
from mlplab.training.loop import train

SIDE, BACKGROUND = 6, -7.0


def variant(image: torch.Tensor, mirrored: bool, dy: int, dx: int) -> torch.Tensor:
    """The image mirrored, then moved down dy and right dx; the rows and columns it leaves are blank."""
    moved = torch.roll(image.flip(-1) if mirrored else image, shifts=(dy, dx), dims=(0, 1)).clone()
    if dy > 0:
        moved[:dy] = BACKGROUND
    if dy < 0:
        moved[dy:] = BACKGROUND
    if dx > 0:
        moved[:, :dx] = BACKGROUND
    if dx < 0:
        moved[:, dx:] = BACKGROUND
    return moved


def draws(max_shift: int, flip: bool, n: int = 2000, seed: int = 0):
    """(mirrored, dy, dx) of each output, found by matching it against every candidate variant."""
    image = torch.arange(1.0, SIDE * SIDE + 1).reshape(SIDE, SIDE)  # distinct pixels: a variant is unique
    out = random_variants(image.reshape(1, -1).repeat(n, 1), max_shift, flip, BACKGROUND,
                          torch.Generator().manual_seed(seed)).reshape(n, SIDE, SIDE)
    candidates = {(m, dy, dx): variant(image, m, dy, dx) for m in (False, True)
                  for dy in range(-max_shift, max_shift + 1) for dx in range(-max_shift, max_shift + 1)}
    found = []
    for picture in out:
        matches = [key for key, candidate in candidates.items() if torch.equal(picture, candidate)]
        assert len(matches) >= 1, f"not a shift or mirror of the image:\n{picture}"
        found.append(matches[0])
    return found, candidates


@pytest.mark.parametrize("max_shift, flip", [(1, True), (2, False), (0, True), (2, True)])
def test_every_output_is_a_variant_and_every_variant_occurs(max_shift, flip):
    found, candidates = draws(max_shift, flip)
    expected = {key for key in candidates if flip or not key[0]}
    assert set(found) == expected
    share = sum(m for m, _, _ in found) / len(found)
    assert share == (pytest.approx(0.5, abs=0.05) if flip else 0.0)
    # each shift equally likely: 2000 draws over (2s+1)² cells
    counts = torch.tensor([sum(1 for f in found if f[1:] == (dy, dx)) for dy in range(-max_shift, max_shift + 1)
                           for dx in range(-max_shift, max_shift + 1)], dtype=torch.float)
    assert counts.min() > 0.6 * counts.mean()


def test_same_generator_state_gives_the_same_variants_and_the_input_is_untouched():
    x = torch.rand(50, 784)
    before = x.clone()
    a = random_variants(x, 2, True, 0.0, torch.Generator().manual_seed(3))
    b = random_variants(x, 2, True, 0.0, torch.Generator().manual_seed(3))
    c = random_variants(x, 2, True, 0.0, torch.Generator().manual_seed(4))
    assert torch.equal(a, b) and not torch.equal(a, c)
    assert torch.equal(x, before)


def test_background_is_a_blank_pixels_value_after_standardising(data_root):
    def config(standardize: bool) -> DataConfig:
        return DataConfig(root=str(data_root), validation_size=100, download=False, standardize=standardize)

    raw, standardized = load(config(False), torch.device("cpu")), load(config(True), torch.device("cpu"))
    assert raw.background == 0.0
    blank = raw.train.x == 0
    assert torch.allclose(standardized.train.x[blank], torch.tensor(standardized.background))


def test_training_sees_new_variants_each_epoch_and_resumes_exactly(tiny_config, tmp_path):
    common = ("data.random_shift=1", "data.random_flip=true", "regularization=dropout")
    plain = train(tiny_config("trainer.epochs=3"), tmp_path / "plain")
    full = train(tiny_config("trainer.epochs=3", *common), tmp_path / "full")
    assert full.history[0]["train_loss"] != plain.history[0]["train_loss"]
    train(tiny_config("trainer.epochs=1", *common), tmp_path / "half")
    train(tiny_config("trainer.epochs=3", f"trainer.resume={tmp_path / 'half' / 'checkpoint.pt'}", *common), tmp_path / "resumed")
    a = torch.load(tmp_path / "full" / "model.pt", weights_only=True)
    b = torch.load(tmp_path / "resumed" / "model.pt", weights_only=True)
    assert all(torch.equal(a[k], b[k]) for k in a)
