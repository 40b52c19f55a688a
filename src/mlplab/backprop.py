"""Backpropagation by the seed's four equations, batched: the ``trainer.engine=seed`` engine.

For a mini-batch of m examples (rows), with a^0 = x:

    feedforward   z^ℓ = a^{ℓ-1} (W^ℓ)ᵀ + b^ℓ,   a^ℓ = σ(z^ℓ)                 keeping every z^ℓ and a^ℓ
    output error  δ^L = ∂C/∂z^L          quadratic (a−y)⊙σ'(z), cross-entropy a−y, log-likelihood a−e_y
    backpropagate δ^ℓ = (δ^{ℓ+1} W^{ℓ+1}) ⊙ σ'(z^ℓ)
    gradients     ∂C/∂W^ℓ = (1/m) (δ^ℓ)ᵀ a^{ℓ-1},   ∂C/∂b^ℓ = (1/m) Σ_rows δ^ℓ

plus λ/n·W (L2) or λ/n·sign W (L1) on the weights. Dropout multiplies a hidden a^ℓ by a mask (kept units
scaled by 1/(1−p)); the same mask then multiplies the error flowing back into that layer.

With plain SGD the update is applied in place as it is computed — W ← (1 − ηλ/n)W − (η/m) δᵀa — one
fused kernel per layer; this is what makes tiny mini-batches (Nielsen's m = 10) fast: per-step overhead,
not arithmetic, dominates them. Any other optimiser gets the gradients in ``.grad`` and takes its step.
The engine works on the same ``nn.Module`` as autograd does, so everything else (checkpoints, MLflow's
model, evaluation) is shared; ``tests/test_backprop.py`` checks it against autograd.
"""

from __future__ import annotations

import math
from dataclasses import dataclass
from typing import Callable, Optional

import torch

from .losses import Cost, log_a_and_log_1_minus_a, activate
from .model import MLP, Step
from .regularization import WeightPenalty

aten = torch.ops.aten


# ---- σ'(z) -------------------------------------------------------------------------------------------

def sigma_prime(name: str, z: torch.Tensor, a: torch.Tensor, slope: float | torch.Tensor = 0.01) -> torch.Tensor:
    """σ'(z) of a hidden activation, from z and a = σ(z)."""
    if name == "sigmoid":
        return a * (1 - a)
    if name == "tanh":
        return 1 - a * a
    if name == "relu":
        return (z > 0).to(z.dtype)
    if name in ("leaky_relu", "prelu"):
        return torch.where(z > 0, torch.ones_like(z), torch.as_tensor(slope, dtype=z.dtype, device=z.device))
    if name == "step":  # H'(z) = 0 almost everywhere: nothing flows back through a perceptron layer
        return torch.zeros_like(z)
    raise ValueError(f"unknown activation {name!r}")


def times_sigma_prime(name: str, g: torch.Tensor, z: torch.Tensor, a: torch.Tensor,
                      slope: float | torch.Tensor = 0.01) -> torch.Tensor:
    """g ⊙ σ'(z) — with PyTorch's fused kernel where it has one (one op instead of three per step)."""
    if name == "sigmoid":
        return aten.sigmoid_backward(g, a)  # g ⊙ a(1 − a)
    if name == "tanh":
        return aten.tanh_backward(g, a)  # g ⊙ (1 − a²)
    if name == "relu":
        return aten.threshold_backward(g, a, 0)  # g where z > 0, else 0
    if name == "leaky_relu":
        return aten.leaky_relu_backward(g, z, slope, False)
    return g * sigma_prime(name, z, a, slope)


# ---- δ^L = ∂C/∂z^L -------------------------------------------------------------------------------------

def output_error(cost: str, output: str, z: torch.Tensor, a: torch.Tensor, y: torch.Tensor) -> torch.Tensor:
    """δ^L for one example per row, y one-hot. The seed's three pairs, then the chain rule for the rest."""
    if output == "sigmoid":
        if cost == "quadratic":
            return aten.sigmoid_backward(a - y, a)  # (a − y) ⊙ σ'(z)
        if cost == "cross_entropy":
            return a - y  # σ' cancels: the cure for learning slowdown
        if cost == "log_likelihood":  # C = −log a_y: only the true unit's error, a_y − 1
            return y * (a - 1)
    elif output == "softmax":
        if cost == "log_likelihood":
            return a - y  # softmax + log-likelihood: the same form as sigmoid + cross-entropy
        # δ = Jᵀ ∂C/∂a with the softmax Jacobian J_jk = a_j(1_{j=k} − a_k): δ_k = h_k − a_k Σ_j h_j, h = a ⊙ ∂C/∂a.
        if cost == "quadratic":
            h = a * (a - y)
            return h - a * h.sum(dim=1, keepdim=True)
        if cost == "cross_entropy":
            return _softmax_cross_entropy_error(z, a, y)
    raise ValueError(f"no output error for cost {cost!r} with output {output!r}")


def _softmax_cross_entropy_error(z: torch.Tensor, a: torch.Tensor, y: torch.Tensor) -> torch.Tensor:
    """δ for Σⱼ −yⱼ log aⱼ − (1−yⱼ) log(1−aⱼ) after a softmax. With h = a ⊙ ∂C/∂a: h_t = −1 at the true class
    t, h_j = r_j = a_j/(1−a_j) elsewhere, and δ_k = h_k − a_k Σh, which rearranges to
        δ_t = −(1 − a_t) − Σ_{j≠t} a_t r_j,     δ_k = 2a_k − Σ_{j≠t,k} a_k r_j   (k ≠ t)
    so a saturated unit (r_j huge) cancels algebraically rather than in floating point, and each a_k r_j ≤ 1
    is formed in log space: no overflow even where z^L spans hundreds."""
    log_a, log_1ma = log_a_and_log_1_minus_a(z, "softmax")
    true = y.bool()
    c = z.shape[1]
    log_r = (log_a - log_1ma).masked_fill(true, -math.inf)  # only j ≠ t
    log_terms = (log_a.unsqueeze(2) + log_r.unsqueeze(1)).masked_fill(torch.eye(c, dtype=torch.bool, device=z.device), -math.inf)
    return torch.where(true, -torch.exp(log_1ma), 2 * a) - torch.exp(log_terms).sum(dim=2)


# ---- one mini-batch --------------------------------------------------------------------------------------

@dataclass
class Forward:
    """What feedforward keeps for backpropagation: z^ℓ and a^ℓ per layer (a[0] = x), dropout masks."""

    z: list[torch.Tensor]
    a: list[torch.Tensor]
    masks: list[Optional[torch.Tensor]]
    unmasked: list[torch.Tensor]  # σ(z^ℓ) before dropout: what σ'(z^ℓ) is computed from


class SeedBackprop:
    """Feedforward and backpropagation by hand over an ``MLP``'s own parameters (no autograd graph)."""

    def __init__(self, net: MLP, cost: str, activation: str):
        self.net, self.cost, self.activation = net, cost, activation
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
                a, mask = activate(z, self.net.output), None
            else:
                a = self.sigmas[layer](z)
                fwd.unmasked.append(a)
                mask = self._dropout_mask(a)
                if mask is not None:
                    a = a * mask
            fwd.z.append(z)
            fwd.a.append(a)
            fwd.masks.append(mask)
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
        delta = output_error(self.cost, self.net.output, fwd.z[-1], fwd.a[-1], y_onehot) if output_delta is None else output_delta
        deltas[-1] = delta
        for layer in range(L - 2, -1, -1):
            g = torch.mm(delta, self.W[layer + 1])  # ∂C/∂a^ℓ (dropped units get the mask's zero below)
            if update is not None:
                update(layer + 1, delta)
            if fwd.masks[layer] is not None:
                g = g * fwd.masks[layer]
            z, a = fwd.z[layer], fwd.unmasked[layer]
            delta = times_sigma_prime(self.activation, g, z, a, self.slopes[layer])
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


class SeedEngine:
    """One training step by ``SeedBackprop``: C, then δ, then the update (fused for plain SGD)."""

    def __init__(self, net: MLP, cost_name: str, cost: Cost, activation: str, penalty: WeightPenalty,
                 optimizer: torch.optim.Optimizer, plain_sgd: bool):
        self.backprop = SeedBackprop(net, cost_name, activation)
        self.net, self.cost, self.penalty, self.optimizer = net, cost, penalty, optimizer
        self.fused = plain_sgd and activation != "prelu"
        self.params = dict(net.named_parameters())
        self.eye = torch.eye(net.sizes[-1], device=net.layers[0].weight.device, dtype=net.layers[0].weight.dtype)
        self.quadratic_sigmoid = cost_name == "quadratic" and net.output == "sigmoid"
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
        loss = float(self.cost(z, y, self.net.output))
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
            loss = float(self.cost(z, y, self.net.output))
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
        loss = self.cost(z, y, self.net.output)  # C = (1/|B|) Σ_{i∈B} Cᵢ
        value = loss.item()
        if not math.isfinite(value):  # stop before a non-finite gradient touches the weights
            return z.detach(), value
        self.optimizer.zero_grad(set_to_none=True)
        loss.backward()
        if self.penalty.active:
            self.penalty.add_gradients(self.net.weights())
        self.optimizer.step()
        return z.detach(), value


def make_engine(name: str, net: MLP, cost_name: str, cost: Cost, activation: str, penalty: WeightPenalty,
                optimizer: torch.optim.Optimizer, plain_sgd: bool):
    if name == "seed":
        return SeedEngine(net, cost_name, cost, activation, penalty, optimizer, plain_sgd)
    return AutogradEngine(net, cost, penalty, optimizer)
