"""Each initialiser draws from the distribution its name says."""

import math

import pytest
import torch

from mlplab.config import InitializerConfig
from mlplab.nn.initializers import initialize
from mlplab.nn.model import MLP

N_IN, N_OUT = 400, 600


def drawn(weights: str, biases: str = "standard_normal", seed: int = 0):
    net = MLP([N_IN, N_OUT, 10], "sigmoid", "sigmoid")
    initialize(net, InitializerConfig(weights=weights, biases=biases), seed)
    return net.layers[0].weight.detach().double(), net.layers[0].bias.detach().double()


@pytest.mark.parametrize("name, std", [
    ("standard_normal", 1.0),
    ("scaled_normal", 1 / math.sqrt(N_IN)),
    ("he_normal", math.sqrt(2 / N_IN)),
])
def test_normal_initialisers_have_zero_mean_and_the_named_std(name, std):
    w, _ = drawn(name)
    # 240 000 draws: the sample std is within ~0.3 % of the truth, the mean within ~0.6 % of a std.
    assert w.mean().item() == pytest.approx(0.0, abs=0.01 * std)
    assert w.std().item() == pytest.approx(std, rel=0.01)


@pytest.mark.parametrize("name, bound", [
    ("uniform_fan_in", 1 / math.sqrt(N_IN)),
    ("glorot_uniform", math.sqrt(6 / (N_IN + N_OUT))),
])
def test_uniform_initialisers_fill_exactly_their_bounds(name, bound):
    w, _ = drawn(name)
    assert w.abs().max().item() <= bound
    assert w.abs().max().item() > 0.999 * bound
    assert w.std().item() == pytest.approx(bound / math.sqrt(3), rel=0.01)  # the std of U(−c, c)


def test_biases_are_standard_normal_or_zero():
    _, b = drawn("scaled_normal", "standard_normal")
    assert b.std().item() == pytest.approx(1.0, rel=0.1)
    _, b = drawn("scaled_normal", "zeros")
    assert torch.count_nonzero(b) == 0


def test_same_seed_draws_the_same_weights_and_another_seed_does_not():
    assert torch.equal(drawn("he_normal", seed=3)[0], drawn("he_normal", seed=3)[0])
    assert not torch.equal(drawn("he_normal", seed=3)[0], drawn("he_normal", seed=4)[0])
