"""How one training step is taken: ``trainer.engine=autograd`` (PyTorch's autograd backpropagates) or
``trainer.engine=seed`` (the seed's four equations, ``nn/backprop.py``).

With plain SGD the seed engine applies the update in place as each δ^ℓ is computed —
W ← (1 − ηλ/n)W − (η/m) δᵀa — one fused kernel per layer; this is what makes tiny mini-batches (Nielsen's
m = 10) fast: per-step overhead, not arithmetic, dominates them. Any other optimiser gets the gradients in
``.grad`` and takes its step. Every engine leaves the weights alone when the cost is not finite.
"""

from __future__ import annotations

import math
from typing import Optional

import torch

from ..nn.backprop import SeedBackprop
from ..nn.costs import Cost
from ..nn.model import MLP
from ..nn.regularization import WeightPenalty

aten = torch.ops.aten


class SeedEngine:
    """One training step by ``SeedBackprop``: C, then δ, then the update (fused for plain SGD)."""

    def __init__(self, net: MLP, cost: Cost, activation: str, penalty: WeightPenalty,
                 optimizer: torch.optim.Optimizer, plain_sgd: bool):
        self.backprop = SeedBackprop(net, cost.name, activation)
        self.net, self.cost, self.penalty, self.optimizer = net, cost, penalty, optimizer
        self.fused = plain_sgd and activation != "prelu"
        self.params = dict(net.named_parameters())
        self.eye = torch.eye(net.sizes[-1], device=net.layers[0].weight.device, dtype=net.layers[0].weight.dtype)
        self.quadratic_sigmoid = cost.name == "quadratic" and net.output == "sigmoid"
        self.ones = torch.ones(0, device=self.eye.device, dtype=self.eye.dtype)  # for Σ over a batch's rows

    def step(self, x: torch.Tensor, y: torch.Tensor, y_onehot: Optional[torch.Tensor] = None,
             z_out: Optional[torch.Tensor] = None) -> tuple[torch.Tensor, float]:
        """(z^L, C) of the batch (z^L written into ``z_out`` if given); the weights move only when C is finite.
        ``y_onehot`` is e_y of the labels ``y``, if the caller has it at hand."""
        if y_onehot is None:
            y_onehot = self.eye[y]
        if self.fused:
            with torch.inference_mode():  # no autograd bookkeeping in any op: about a tenth of a tiny step
                return self._fused_step(x, y, y_onehot, z_out)
        fwd, grads = self.backprop.gradients(x, y_onehot)
        z = fwd.z[-1] if z_out is None else z_out.copy_(fwd.z[-1])
        loss = float(self.cost.fn(z, y, self.net.output))
        if not math.isfinite(loss):
            return z, loss
        for name, param in self.params.items():
            param.grad = grads[name]
        if self.penalty.active:
            self.penalty.add_gradients(self.net.weights())
        self.optimizer.step()
        return z, loss

    def _fused_step(self, x: torch.Tensor, y: torch.Tensor, y_onehot: torch.Tensor,
                    z_out: Optional[torch.Tensor]) -> tuple[torch.Tensor, float]:
        """Plain SGD: C, then W ← (1 − ηλ/n)W − η(λ₁/n) sign W − (η/m) δᵀa,  b ← b − (η/m) Σ δ as each δ is known."""
        m = x.shape[0]
        fwd = self.backprop.feedforward(x, z_out)
        z, a = fwd.z[-1], fwd.a[-1]
        output_delta = None
        if self.quadratic_sigmoid:  # Nielsen's setting: C and δ^L share a − y
            difference = a - y_onehot
            flat = difference.view(-1)
            loss = 0.5 * float(torch.dot(flat, flat)) / m  # ½‖a − y‖² summed, averaged over the batch
            output_delta = aten.sigmoid_backward(difference, a)  # (a − y) ⊙ σ'(z)
        else:
            loss = float(self.cost.fn(z, y, self.net.output))
        if not math.isfinite(loss):
            return z, loss

        eta = self.optimizer.param_groups[0]["lr"]
        if self.ones.shape[0] != m:  # the last mini-batch of an epoch may be shorter
            self.ones = torch.ones(m, device=self.eye.device, dtype=self.eye.dtype)
        W, b, ones, step = self.backprop.W, self.backprop.b, self.ones, -eta / m
        decay, l1 = 1 - eta * self.penalty.l2_over_n, eta * self.penalty.l1_over_n

        def update(layer: int, delta: torch.Tensor) -> None:
            if decay != 1:
                W[layer].mul_(decay)
            if l1:
                W[layer].add_(torch.sign(W[layer]), alpha=-l1)
            delta_t = delta.t()
            W[layer].addmm_(delta_t, fwd.a[layer], alpha=step)
            b[layer].addmv_(delta_t, ones, alpha=step)  # Σ_rows δ folded into the update: one kernel

        self.backprop.errors(fwd, y_onehot, update, output_delta)
        return z, loss


class AutogradEngine:
    """The same step with PyTorch's autograd doing the backpropagation."""

    def __init__(self, net: MLP, cost: Cost, penalty: WeightPenalty, optimizer: torch.optim.Optimizer):
        self.net, self.cost, self.penalty, self.optimizer = net, cost, penalty, optimizer

    def step(self, x: torch.Tensor, y: torch.Tensor, y_onehot: Optional[torch.Tensor] = None,
             z_out: Optional[torch.Tensor] = None) -> tuple[torch.Tensor, float]:
        """As ``SeedEngine.step``; autograd has no use for ``y_onehot``."""
        z = self.net(x)
        if z_out is not None:
            z_out.copy_(z.detach())
        loss = self.cost.fn(z, y, self.net.output)  # C = (1/|B|) Σ_{i∈B} Cᵢ
        value = loss.item()
        if not math.isfinite(value):  # stop before a non-finite gradient touches the weights
            return z.detach(), value
        self.optimizer.zero_grad(set_to_none=True)
        loss.backward()
        if self.penalty.active:
            self.penalty.add_gradients(self.net.weights())
        self.optimizer.step()
        return z.detach(), value


ENGINES = ("autograd", "seed")


def make_engine(name: str, net: MLP, cost: Cost, activation: str, penalty: WeightPenalty,
                optimizer: torch.optim.Optimizer, plain_sgd: bool):
    if name == "seed":
        return SeedEngine(net, cost, activation, penalty, optimizer, plain_sgd)
    return AutogradEngine(net, cost, penalty, optimizer)
