"""Weight and bias initialisers, named after their formula (n_in = inputs to the neuron).

- standard_normal  w ~ N(0, 1)                       Nielsen's "large" initialiser, the slides' naive idea
- scaled_normal    w ~ N(0, 1/√n_in) (std)           Nielsen's default_weight_initializer
- uniform_fan_in   w ~ U(−1/√n_in, 1/√n_in)          the slides' "glorot" formula
- glorot_uniform   w ~ U(±√(6/(n_in + n_out)))       Glorot & Bengio (2010)
- he_normal        w ~ N(0, √(2/n_in)) (std)         He et al. (2015), for ReLU
Biases: standard_normal (the slides and Nielsen) or zeros.
"""

from __future__ import annotations

import math
from typing import Callable

import torch

from .model import MLP

WeightInit = Callable[[torch.Tensor, torch.Generator], None]


def standard_normal(w: torch.Tensor, g: torch.Generator) -> None:
    w.normal_(0.0, 1.0, generator=g)


def scaled_normal(w: torch.Tensor, g: torch.Generator) -> None:
    w.normal_(0.0, 1.0 / math.sqrt(w.shape[1]), generator=g)


def uniform_fan_in(w: torch.Tensor, g: torch.Generator) -> None:
    bound = 1.0 / math.sqrt(w.shape[1])
    w.uniform_(-bound, bound, generator=g)


def glorot_uniform(w: torch.Tensor, g: torch.Generator) -> None:
    n_out, n_in = w.shape
    bound = math.sqrt(6.0 / (n_in + n_out))
    w.uniform_(-bound, bound, generator=g)


def he_normal(w: torch.Tensor, g: torch.Generator) -> None:
    w.normal_(0.0, math.sqrt(2.0 / w.shape[1]), generator=g)


WEIGHT_INITIALIZERS: dict[str, WeightInit] = {
    "standard_normal": standard_normal,
    "scaled_normal": scaled_normal,
    "uniform_fan_in": uniform_fan_in,
    "glorot_uniform": glorot_uniform,
    "he_normal": he_normal,
}


def bias_standard_normal(b: torch.Tensor, g: torch.Generator) -> None:
    b.normal_(0.0, 1.0, generator=g)


def bias_zeros(b: torch.Tensor, g: torch.Generator) -> None:
    b.zero_()


BIAS_INITIALIZERS = {"standard_normal": bias_standard_normal, "zeros": bias_zeros}


@torch.no_grad()
def initialize(model: MLP, cfg, seed: int) -> None:
    """Draw every layer's W and b (``cfg.weights``, ``cfg.biases`` name the initialisers) from a generator
    seeded by ``seed``, on the CPU, so any device agrees."""
    g = torch.Generator().manual_seed(seed)
    weight_init, bias_init = WEIGHT_INITIALIZERS[cfg.weights], BIAS_INITIALIZERS[cfg.biases]
    for layer in model.layers:
        w = torch.empty(layer.weight.shape)
        b = torch.empty(layer.bias.shape)
        weight_init(w, g)
        bias_init(b, g)
        layer.weight.copy_(w)
        layer.bias.copy_(b)
