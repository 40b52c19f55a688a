"""Backpropagation by the seed's four equations, batched: what ``trainer.engine=seed`` trains with.

For a mini-batch of m examples (rows), with a^0 = x:

    feedforward   z^ℓ = a^{ℓ-1} (W^ℓ)ᵀ + b^ℓ,   a^ℓ = σ(z^ℓ)                 keeping every z^ℓ and a^ℓ
    output error  δ^L = ∂C/∂z^L          quadratic (a−y)⊙σ'(z), cross-entropy a−y, log-likelihood a−e_y
    backpropagate δ^ℓ = (δ^{ℓ+1} W^{ℓ+1}) ⊙ σ'(z^ℓ)
    gradients     ∂C/∂W^ℓ = (1/m) (δ^ℓ)ᵀ a^{ℓ-1},   ∂C/∂b^ℓ = (1/m) Σ_rows δ^ℓ

plus λ/n·W (L2) or λ/n·sign W (L1) on the weights. Dropout multiplies a hidden a^ℓ by a mask (kept units
scaled by 1/(1−p)); the same mask then multiplies the error flowing back into that layer.

σ'(z) and δ^L come from the activation and cost objects (``activations.py``, ``costs.py``). ``errors``
can hand each δ^ℓ to an update as soon as it is known, which is how ``training/engines.py`` fuses the SGD
step into the backward pass. It works on the same ``nn.Module`` as autograd does, so everything else
(checkpoints, MLflow's model, evaluation) is shared; ``tests/test_backprop.py`` checks it against autograd.
"""

from __future__ import annotations

from dataclasses import dataclass
from typing import Callable, Optional

import torch

from .activations import Step, activation as find_activation
from .costs import COSTS, activate
from .model import MLP


# ---- one mini-batch --------------------------------------------------------------------------------------

@dataclass
class Forward:
    """What feedforward keeps for backpropagation: z^ℓ and a^ℓ per layer (a[0] = x), dropout masks."""

    z: list[torch.Tensor]
    a: list[torch.Tensor]
    masks: list[Optional[torch.Tensor]]
    unmasked: list[torch.Tensor]  # σ(z^ℓ) before dropout: what σ'(z^ℓ) is computed from

    def keep(self, index: torch.Tensor) -> "Forward":
        """A population's forward pass for the members at ``index`` only (a shared input stays as it is)."""
        pick = lambda t: t if t is None or t.dim() < 3 else t.index_select(0, index)  # noqa: E731
        return Forward([pick(t) for t in self.z], [pick(t) for t in self.a], [pick(t) for t in self.masks],
                       [pick(t) for t in self.unmasked])

    def add_layer(self, z: torch.Tensor, output: Optional[str], sigma: Optional[Callable] = None,
                  draw_mask: Optional[Callable] = None) -> None:
        """z^ℓ and its activation: the output layer's (``output``: sigmoid or softmax), else the hidden σ with
        the dropout mask ``draw_mask(a)`` draws (None: every unit kept)."""
        if output is not None:
            a, mask = activate(z, output), None
        else:
            a = sigma(z)
            self.unmasked.append(a)
            mask = draw_mask(a)
            if mask is not None:
                a = a * mask
        self.z.append(z)
        self.a.append(a)
        self.masks.append(mask)


class SeedBackprop:
    """Feedforward and backpropagation by hand over an ``MLP``'s own parameters (no autograd graph)."""

    def __init__(self, net: MLP, cost: str, activation: str):
        self.net, self.cost, self.activation = net, COSTS[cost], find_activation(activation)
        # Detached aliases: same storage as the parameters (updates in place reach the module), no autograd.
        self.W = [layer.weight.detach() for layer in net.layers]
        self.Wt = [W.t() for W in self.W]  # views, valid after in-place updates
        self.sigmas = [sigma.forward for sigma in net.activations]  # skip nn.Module's call overhead per step
        self.b = [layer.bias.detach() for layer in net.layers]
        self.prelu = [sigma.weight for sigma in net.activations] if activation == "prelu" else []
        self.slopes = self.prelu or [getattr(sigma, "negative_slope", 0.0) for sigma in net.activations]
        dropout = net.dropout
        self.p = dropout.p if isinstance(dropout, torch.nn.Dropout) else 0.0
        if activation == "step":
            assert all(isinstance(sigma, Step) for sigma in net.activations)

    def feedforward(self, x: torch.Tensor, z_out: Optional[torch.Tensor] = None) -> Forward:
        """``z_out``, if given, receives z^L."""
        fwd = Forward(z=[], a=[x], masks=[], unmasked=[])
        last = len(self.W) - 1
        for layer, (Wt, b) in enumerate(zip(self.Wt, self.b)):
            z = torch.addmm(b, fwd.a[-1], Wt, out=z_out if layer == last else None)
            if layer == last:
                fwd.add_layer(z, self.net.output)
            else:
                fwd.add_layer(z, None, self.sigmas[layer], self._dropout_mask)
        return fwd

    def _dropout_mask(self, a: torch.Tensor) -> Optional[torch.Tensor]:
        """Kept units scaled by 1/(1−p), drawn exactly as ``F.dropout`` draws them (same RNG stream)."""
        if not self.p or not self.net.training:
            return None
        return torch.empty_like(a).bernoulli_(1 - self.p).div_(1 - self.p)

    def errors(self, fwd: Forward, y_onehot: torch.Tensor, update: Optional[Callable] = None,
               output_delta: Optional[torch.Tensor] = None) -> list[torch.Tensor]:
        """δ^L … δ^1 (returned in layer order). ``update(ℓ, δ^ℓ)`` is called as soon as W^ℓ is no longer
        needed for δ^{ℓ-1}, so an in-place SGD step can follow the error down the network. ``output_delta``
        is δ^L when the caller already has it."""
        L = len(self.W)
        deltas: list[Optional[torch.Tensor]] = [None] * L
        if output_delta is None:
            output_delta = self.cost.delta(self.net.output, fwd.z[-1], fwd.a[-1], y_onehot)
        delta = output_delta
        deltas[-1] = delta
        for layer in range(L - 2, -1, -1):
            g = torch.mm(delta, self.W[layer + 1])  # ∂C/∂a^ℓ (dropped units get the mask's zero below)
            if update is not None:
                update(layer + 1, delta)
            if fwd.masks[layer] is not None:
                g = g * fwd.masks[layer]
            z, a = fwd.z[layer], fwd.unmasked[layer]
            delta = self.activation.backward(g, z, a, self.slopes[layer])
            deltas[layer] = delta
        if update is not None:
            update(0, delta)
        return deltas

    @torch.no_grad()
    def gradients(self, x: torch.Tensor, y_onehot: torch.Tensor) -> tuple[Forward, dict[str, torch.Tensor]]:
        """∂C/∂θ of the data cost for every parameter, by name as in ``net.named_parameters()``."""
        fwd = self.feedforward(x)
        deltas = self.errors(fwd, y_onehot)
        m = x.shape[0]
        grads = {}
        for layer, delta in enumerate(deltas):
            grads[f"layers.{layer}.weight"] = delta.t() @ fwd.a[layer] / m
            grads[f"layers.{layer}.bias"] = delta.sum(dim=0) / m
        for layer in range(len(self.prelu)):  # PReLU's slope α is a parameter: ∂C/∂α = (1/m) Σ g ⊙ min(z, 0)
            g = deltas[layer + 1] @ self.W[layer + 1]  # ∂C/∂a^ℓ, as in ``errors``
            if fwd.masks[layer] is not None:
                g = g * fwd.masks[layer]
            grads[f"activations.{layer}.weight"] = (g * fwd.z[layer].clamp(max=0)).sum().reshape(1) / m
        return fwd, grads
