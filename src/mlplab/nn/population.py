"""K networks of one shape as one batched network: a population, trained in lockstep.

Member k's W^ℓ is ``W[ℓ][k]``, shaped (n_ℓ, n_{ℓ-1}) as in ``model.MLP``; a batch is (K, m, n), one mini-batch
per member. When the members share their mini-batches (one shuffle seed) the batch is (m, n_0) and the first
layer is one GEMM against the members' W^1 side by side, their z^1 its (m, K·n_1) columns. Everything else is
the seed's feedforward and four equations (``backprop.py``) with a batch dimension in front:

    z^ℓ = a^{ℓ-1} (W^ℓ)ᵀ + b^ℓ                    a batched GEMM (``batched_linear``; ``shared_linear`` for W^1)
    δ^L = ∂C/∂z^L,   δ^ℓ = (δ^{ℓ+1} W^{ℓ+1}) ⊙ σ'(z^ℓ)    a batched GEMM
    ∂C/∂W^ℓ = (1/m) (δ^ℓ)ᵀ a^{ℓ-1},   ∂C/∂b^ℓ = (1/m) Σ_rows δ^ℓ

No member sees another's units, so each member's gradient is the one it would have alone. Dropout draws each
member's masks from its own generator, exactly as its solo run draws them from the global one.
"""

from __future__ import annotations

from typing import Optional

import torch

from .activations import activation as find_activation
from .backprop import Forward
from .costs import COSTS
from .model import MLP


# Per member, the multiply-adds above which one GEMM per member beats torch's batched GEMM on a CPU: for
# (128×784)·(784×1024) ×3, bmm took 12.5 ms against 6.1 ms for three addmm (the small ones of Nielsen's
# network are the other way round: there the per-call overhead is what counts).
LOOP_ABOVE_MACS = 1 << 21


def _looped(a: torch.Tensor, b: torch.Tensor) -> bool:
    """Whether a[k] @ b[k] for every member is better taken one member at a time (see LOOP_ABOVE_MACS)."""
    return a.device.type == "cpu" and a.shape[1] * a.shape[2] * b.shape[2] > LOOP_ABOVE_MACS


def batched_mm(a: torch.Tensor, b: torch.Tensor) -> torch.Tensor:
    """a[k] @ b[k] for every member k, (K, m, n) @ (K, n, p) → (K, m, p)."""
    if _looped(a, b):
        # unbind, not a[k]: autograd then stacks the members' gradients once instead of adding K full-size ones
        return torch.stack([torch.mm(x, y) for x, y in zip(a.unbind(0), b.unbind(0))])
    return torch.bmm(a, b)


def batched_linear(a: torch.Tensor, W: torch.Tensor, b: torch.Tensor) -> torch.Tensor:
    """z[k] = a[k] W[k]ᵀ + b[k] for every member k: a (K, m, n_in), W (K, n_out, n_in), b (K, n_out) → (K, m, n_out).
    With fewer outputs than rows (an output layer of 10 classes under a mini-batch of 300) it is formed as
    zᵀ = W aᵀ + b and handed back transposed: MKL's batched GEMM with 10 output columns ran 2.5× slower
    than with 300 (154 µs against 60 µs for the Q2 network's output layer, 5 members)."""
    Wt = W.transpose(1, 2)
    if _looped(a, Wt):
        return batched_mm(a, Wt) + b.unsqueeze(1)
    if W.shape[1] < a.shape[1]:
        return torch.baddbmm(b.unsqueeze(2), W, a.transpose(1, 2)).transpose(1, 2)
    return torch.baddbmm(b.unsqueeze(1), a, Wt)


def shared_linear(x: torch.Tensor, W: torch.Tensor, b: torch.Tensor) -> torch.Tensor:
    """One mini-batch x (m, n_in) against every member's layer at once: one GEMM whose (m, K·n_out) columns
    are the members' z side by side, handed back as the members' (K, m, n_out) view of it."""
    K, n_out, n_in = W.shape
    if W.requires_grad and torch.is_grad_enabled():
        z = SharedLinear.apply(x, W, b)
    else:
        z = torch.addmm(b.reshape(-1), x, W.reshape(K * n_out, n_in).t())
    return z.view(-1, K, n_out).transpose(0, 1)


class SharedLinear(torch.autograd.Function):
    """``shared_linear``'s GEMM with its derivative in the members' own layout: ∂C/∂W = (∂C/∂z)ᵀ x lands as
    (K·n_out, n_in), W's own memory order, and ∂C/∂b as the column sums, so autograd neither transposes nor
    copies the network's largest gradient every step."""

    @staticmethod
    def forward(ctx, x: torch.Tensor, W: torch.Tensor, b: torch.Tensor) -> torch.Tensor:  # type: ignore[override]
        ctx.save_for_backward(x)
        ctx.shape = W.shape
        K, n_out, n_in = W.shape
        return torch.addmm(b.reshape(-1), x, W.reshape(K * n_out, n_in).t())

    @staticmethod
    def backward(ctx, grad_z: torch.Tensor):  # type: ignore[override]
        (x,) = ctx.saved_tensors
        K, n_out, n_in = ctx.shape
        return None, torch.mm(grad_z.t(), x).view(K, n_out, n_in), grad_z.sum(dim=0).view(K, n_out)


class StackedMLP:
    """The members' parameters stacked: ``W[ℓ]`` (K, n_ℓ, n_{ℓ-1}), ``b[ℓ]`` (K, n_ℓ). With ``requires_grad``
    they are autograd leaves (``trainer.engine=autograd``); otherwise the four equations give the gradients."""

    def __init__(self, nets: list[MLP], cost: str, requires_grad: bool,
                 dropout: list[float], dropout_rngs: list[Optional[torch.Generator]]):
        first = nets[0]
        if first.activation == "prelu":
            raise ValueError("a population cannot train prelu networks: each member learns its own slope")
        self.sizes, self.output, self.cost = first.sizes, first.output, COSTS[cost]
        self.activation = find_activation(first.activation)
        self.sigmas = [sigma.forward for sigma in first.activations]  # stateless: one serves every member
        self.slopes = [getattr(sigma, "negative_slope", 0.0) for sigma in first.activations]
        with torch.no_grad():
            self.W = [torch.stack([net.layers[i].weight for net in nets]).requires_grad_(requires_grad)
                      for i in range(len(first.layers))]
            self.b = [torch.stack([net.layers[i].bias for net in nets]).requires_grad_(requires_grad)
                      for i in range(len(first.layers))]
        self.dropout, self.dropout_rngs = list(dropout), list(dropout_rngs)

    def __len__(self) -> int:
        return self.W[0].shape[0]

    def parameters(self) -> list[torch.Tensor]:
        """In ``MLP.parameters()`` order (W^1, b^1, W^2, …), so optimiser states line up with a member's."""
        return [p for pair in zip(self.W, self.b) for p in pair]

    def keep(self, rows: list[int]) -> None:
        """Only the members at ``rows`` go on (the others stopped)."""
        index = torch.tensor(rows, device=self.W[0].device)
        with torch.no_grad():
            for params in (self.W, self.b):
                for i, p in enumerate(params):
                    params[i] = p.index_select(0, index).requires_grad_(p.requires_grad)
        self.dropout = [self.dropout[r] for r in rows]
        self.dropout_rngs = [self.dropout_rngs[r] for r in rows]

    @torch.no_grad()
    def write_member(self, row: int, net: MLP) -> None:
        """Member ``row``'s weights into its own network."""
        for layer, W, b in zip(net.layers, self.W, self.b):
            layer.weight.copy_(W[row])
            layer.bias.copy_(b[row])

    # ---- feedforward -------------------------------------------------------------------------------------
    def feedforward(self, x: torch.Tensor, training: bool = True) -> Forward:
        """z^ℓ and a^ℓ of every member (each (K, m, n_ℓ)); ``x`` is (m, n_0) when the batch is shared, else
        (K, m, n_0). ``training``: dropout masks drawn."""
        fwd = Forward(z=[], a=[x], masks=[], unmasked=[])
        last = len(self.W) - 1
        for layer, (W, b) in enumerate(zip(self.W, self.b)):
            a = fwd.a[-1]
            z = shared_linear(a, W, b) if a.dim() == 2 else batched_linear(a, W, b)
            if layer == last:
                fwd.add_layer(z, self.output)
            else:
                fwd.add_layer(z, None, self.sigmas[layer], self._dropout_masks if training else lambda a: None)
        return fwd

    def _dropout_masks(self, a: torch.Tensor) -> Optional[torch.Tensor]:
        """Each member's mask from its own generator, drawn as ``F.dropout`` draws it (kept units × 1/(1−p)); a
        member without dropout keeps every unit."""
        if not any(self.dropout):
            return None
        mask = torch.ones_like(a)
        for k, (p, rng) in enumerate(zip(self.dropout, self.dropout_rngs)):
            if p:
                mask[k] = torch.empty_like(a[k]).bernoulli_(1 - p, generator=rng).div_(1 - p)
        return mask

    # ---- the four equations ------------------------------------------------------------------------------
    def output_error(self, fwd: Forward, y_onehot: torch.Tensor) -> tuple[torch.Tensor, torch.Tensor]:
        """(C of every member, its mini-batch mean; δ^L of every member)."""
        return self.cost.means_and_delta(fwd.z[-1], fwd.a[-1], y_onehot, self.output)

    def gradients(self, fwd: Forward, delta: torch.Tensor) -> list[torch.Tensor]:
        """∂C/∂θ of every member's data cost (its mini-batch mean) from its δ^L, in ``parameters()`` order."""
        grads: list[torch.Tensor] = [None] * (2 * len(self.W))  # type: ignore[list-item]

        def take(layer: int, delta: torch.Tensor) -> None:
            grads[2 * layer], grads[2 * layer + 1] = self._outer(delta, fwd.a[layer]), delta.sum(dim=1)

        self._backpropagate(fwd, delta * (1.0 / delta.shape[1]), take)
        return grads

    def descend(self, fwd: Forward, delta: torch.Tensor, step: torch.Tensor,
                decay: Optional[torch.Tensor] = None, l1: Optional[torch.Tensor] = None) -> None:
        """Plain SGD fused into backpropagation from δ^L, as ``engines.SeedEngine`` takes it alone: each layer
        moves as soon as its δ is known, W ← (1 − ηλ/n)W − η(λ₁/n) sign W − (η/m) δᵀa, b ← b − (η/m) Σ δ.
        ``step``: each member's −η/m; ``decay``: its 1 − ηλ/n; ``l1``: its −ηλ₁/n."""
        per_member = (-1, 1, 1)

        def update(layer: int, delta: torch.Tensor) -> None:  # δ arrives scaled by −η/m
            W, a_in = self.W[layer], fwd.a[layer]
            if decay is not None:
                W.mul_(decay.view(per_member))
            if l1 is not None:
                W.addcmul_(torch.sign(W), l1.view(per_member))
            if a_in.dim() == 2:  # the shared batch: one GEMM into every member's W^1
                K, m, n_out = delta.shape
                W.view(K * n_out, -1).addmm_(delta.transpose(1, 2).reshape(K * n_out, m), a_in)
            elif _looped(delta.transpose(1, 2), a_in):
                for k in range(W.shape[0]):
                    W[k].addmm_(delta[k].t(), a_in[k])
            else:
                W.baddbmm_(delta.transpose(1, 2), a_in)
            self.b[layer].add_(delta.sum(dim=1))

        self._backpropagate(fwd, delta * step.view(per_member), update)

    def _backpropagate(self, fwd: Forward, delta: torch.Tensor, take) -> None:
        """From δ^L (scaled: the equations are linear in δ, so every layer's comes out scaled alike) down to δ^1,
        each handed to ``take(ℓ, δ^ℓ)`` once W^ℓ has served δ^{ℓ-1}."""
        for layer in range(len(self.W) - 1, -1, -1):
            g = batched_mm(delta, self.W[layer]) if layer else None  # ∂C/∂a^{ℓ-1}·scale, before W^ℓ moves
            take(layer, delta)
            if layer:
                if fwd.masks[layer - 1] is not None:
                    g = g * fwd.masks[layer - 1]
                delta = self.activation.backward(g, fwd.z[layer - 1], fwd.unmasked[layer - 1], self.slopes[layer - 1])

    @staticmethod
    def _outer(delta: torch.Tensor, a_in: torch.Tensor) -> torch.Tensor:
        """δᵀ a^{ℓ-1} of every member: one GEMM against a shared batch, else a batched one."""
        if a_in.dim() == 2:
            K, m, n_out = delta.shape
            return torch.mm(delta.transpose(1, 2).reshape(K * n_out, m), a_in).view(K, n_out, -1)
        return batched_mm(delta.transpose(1, 2), a_in)
