"""The hidden-layer activations of the slides, each one object: σ as a module, σ'(z), g ⊙ σ'(z) (PyTorch's
fused backward kernel where it has one), and the largest slope (what "saturated" is measured against).
Adding an activation means adding one entry to ``ACTIVATIONS``; the config takes its choices from there.
"""

from __future__ import annotations

from dataclasses import dataclass
from typing import Callable, Union

import torch
from torch import nn

aten = torch.ops.aten
Slope = Union[float, torch.Tensor]  # leaky_relu's fixed slope, or prelu's learnt one


class Step(nn.Module):
    """Heaviside H(z) = 1_{z>0}, the perceptron's activation. Its derivative is 0 almost everywhere."""

    def forward(self, z: torch.Tensor) -> torch.Tensor:
        return (z > 0).to(z.dtype)


def _slope_where_negative(z: torch.Tensor, slope: Slope) -> torch.Tensor:
    return torch.where(z > 0, torch.ones_like(z), torch.as_tensor(slope, dtype=z.dtype, device=z.device))


@dataclass(frozen=True)
class Activation:
    name: str
    module: Callable[[float], nn.Module]  # σ, given leaky_slope (used by leaky_relu and prelu only)
    prime: Callable[[torch.Tensor, torch.Tensor, Slope], torch.Tensor]  # σ'(z) from z, a = σ(z) and the slope
    backward: Callable[[torch.Tensor, torch.Tensor, torch.Tensor, Slope], torch.Tensor]  # g ⊙ σ'(z) from g, z, a
    max_slope: float  # max σ'


ACTIVATIONS: dict[str, Activation] = {a.name: a for a in (
    Activation("step", lambda slope: Step(),
               lambda z, a, s: torch.zeros_like(z),  # nothing flows back through a perceptron layer
               lambda g, z, a, s: g * torch.zeros_like(z), 1.0),
    Activation("sigmoid", lambda slope: nn.Sigmoid(),
               lambda z, a, s: a * (1 - a),
               lambda g, z, a, s: aten.sigmoid_backward(g, a), 0.25),  # g ⊙ a(1 − a)
    Activation("tanh", lambda slope: nn.Tanh(),
               lambda z, a, s: 1 - a * a,
               lambda g, z, a, s: aten.tanh_backward(g, a), 1.0),  # g ⊙ (1 − a²)
    Activation("relu", lambda slope: nn.ReLU(),
               lambda z, a, s: (z > 0).to(z.dtype),
               lambda g, z, a, s: aten.threshold_backward(g, a, 0), 1.0),  # g where z > 0, else 0
    Activation("leaky_relu", lambda slope: nn.LeakyReLU(slope),
               _slope_where_negative,
               lambda g, z, a, s: aten.leaky_relu_backward(g, z, s, False), 1.0),
    Activation("prelu", lambda slope: nn.PReLU(init=slope),  # one learnt slope per layer, starting at leaky_slope
               _slope_where_negative,
               lambda g, z, a, s: g * _slope_where_negative(z, s), 1.0),
)}


def activation(name: str) -> Activation:
    try:
        return ACTIVATIONS[name]
    except KeyError:
        raise ValueError(f"unknown activation {name!r}: use one of {', '.join(ACTIVATIONS)}") from None
