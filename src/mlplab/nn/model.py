"""The multilayer network of the slides: a^ℓ = σ(W^ℓ a^{ℓ-1} + b^ℓ), ℓ = 1..L.

``forward`` returns the output layer's weighted input z^L; the output activation (sigmoid or softmax)
is applied by ``output_activation`` so that the costs in ``costs.py`` can use the numerically stable
log-sigmoid / log-softmax forms of the seed's formulas.
"""

from __future__ import annotations

import contextlib
from typing import Iterator

import torch
from torch import nn

from .activations import activation as find_activation
from .costs import activate


def make_activation(name: str, leaky_slope: float) -> nn.Module:
    return find_activation(name).module(leaky_slope)


def resolve_output(output: str, loss: str) -> str:
    """``auto`` pairs the output layer with its cost as the slides do: softmax with log-likelihood."""
    if output != "auto":
        return output
    return "softmax" if loss == "log_likelihood" else "sigmoid"


class MLP(nn.Module):
    def __init__(self, sizes: list[int], activation: str, output: str, dropout: float = 0.0, leaky_slope: float = 0.01):
        super().__init__()
        if output not in ("sigmoid", "softmax"):
            raise ValueError(f"output must be sigmoid or softmax, not {output!r}")
        self.sizes = list(sizes)
        self.activation, self.leaky_slope, self.output = activation, leaky_slope, output
        # W^ℓ has shape (n_ℓ, n_{ℓ-1}): row j holds the weights "j back to k", as in the slides.
        self.layers = nn.ModuleList(nn.Linear(n_in, n_out) for n_in, n_out in zip(sizes[:-1], sizes[1:]))
        self.activations = nn.ModuleList(make_activation(activation, leaky_slope) for _ in sizes[1:-1])
        # Dropout deletes hidden units only (never inputs or outputs), and only in training mode.
        self.dropout = nn.Dropout(dropout) if dropout > 0 else nn.Identity()

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        a = x
        for layer, sigma in zip(self.layers[:-1], self.activations):
            a = self.dropout(sigma(layer(a)))
        return self.layers[-1](a)

    def output_activation(self, z: torch.Tensor) -> torch.Tensor:
        return activate(z, self.output)

    def weights(self) -> list[torch.Tensor]:
        """The weight matrices W^1..W^L: what L1/L2 regularisation acts on (biases are left alone)."""
        return [layer.weight for layer in self.layers]


def side_by_side(nets: list[MLP]) -> MLP:
    """k trained MLPs of one shape as a single MLP whose z^L is the mean of theirs: the hidden layers stand
    side by side (block-diagonal weights, so no unit sees another network's units) and the output layer
    averages. An ensemble that averages weighted inputs is therefore an MLP of k times the width."""
    first, k = nets[0], len(nets)
    shape = (first.sizes, first.activation, first.leaky_slope, first.output)
    if any((net.sizes, net.activation, net.leaky_slope, net.output) != shape for net in nets):
        raise ValueError("side_by_side needs networks of one shape, activation and output activation")
    if first.activation == "prelu":
        raise ValueError("side_by_side cannot merge prelu networks: each learnt its own slope")
    sizes = [first.sizes[0], *(k * n for n in first.sizes[1:-1]), first.sizes[-1]]
    merged = MLP(sizes, first.activation, first.output, leaky_slope=first.leaky_slope)
    with torch.no_grad():
        last = len(first.layers) - 1
        for index, layer in enumerate(merged.layers):
            weights = [net.layers[index].weight for net in nets]
            biases = [net.layers[index].bias for net in nets]
            if index == last:  # z^L = (1/k) Σ_i (W_i a_i + b_i), every a_i the input itself when L = 1
                layer.weight.copy_(torch.cat(weights, dim=1) / k if last else torch.stack(weights).mean(dim=0))
                layer.bias.copy_(torch.stack(biases).mean(dim=0))
            else:
                layer.weight.copy_(torch.cat(weights) if index == 0 else torch.block_diag(*weights))
                layer.bias.copy_(torch.cat(biases))
    return merged


@contextlib.contextmanager
def in_eval_mode(net: nn.Module) -> Iterator[nn.Module]:
    """``net`` without dropout for a while, then back in the mode it was in."""
    was_training = net.training
    net.eval()
    try:
        yield net
    finally:
        net.train(was_training)


def layer_string(sizes: list[int]) -> str:
    """[784, 100, 10] → "784-100-10", as runs and summaries name a network."""
    return "-".join(map(str, sizes))


def build(cfg, loss: str, dropout: float) -> MLP:
    """The network of a model config (``model.sizes``, ``activation``, ``output``, ``leaky_slope``)."""
    return MLP(cfg.sizes, cfg.activation, resolve_output(cfg.output, loss), dropout, cfg.leaky_slope)
