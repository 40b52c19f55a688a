"""Learning-slowdown diagnostics: why a network learns slowly, layer by layer (``trainer.diagnostics=true``).

The seed's point: ∂C/∂w = a_in δ_out, and δ carries a factor σ'(z). A sigmoid unit with |z| large has
σ'(z) ≈ 0 — it is saturated — so its weights barely move, however wrong it is. With the quadratic cost the
output layer's δᴸ = (a − y) ⊙ σ'(zᴸ) has that factor too; cross-entropy cancels it (δᴸ = a − y), and a
scaled initialisation keeps the hidden z small to begin with. Measured after every epoch on a fixed batch
of training images (no dropout), for each layer ℓ = 1..L:

- ``mean_sigma_prime``: the mean of σ'(z^ℓ) over units and images (for the output layer, the output
  activation's ∂aⱼ/∂zⱼ = aⱼ(1 − aⱼ), sigmoid or softmax alike);
- ``saturated``: the share of (unit, image) pairs with σ'(z) below 1 % of σ's largest slope — for the
  sigmoid |z| > 4.6; for ReLU the units that are off;
- ``grad_norm``: ‖∂C/∂W^ℓ‖ (Frobenius) of the data cost on that batch.
"""

from __future__ import annotations

import torch

from ..nn.activations import activation as find_activation
from ..nn.backprop import SeedBackprop
from ..nn.model import MLP, in_eval_mode

DIAGNOSTIC_IMAGES = 1000
SATURATED_BELOW = 0.01  # of the largest slope


def slowdown(net: MLP, cost: str, activation: str, x: torch.Tensor, y: torch.Tensor) -> dict[str, float]:
    """``{"layer1/mean_sigma_prime": …, "layer1/saturated": …, "layer1/grad_norm": …, …}`` on (x, y)."""
    with in_eval_mode(net):
        backprop = SeedBackprop(net, cost, activation)
        fwd, grads = backprop.gradients(x, torch.eye(net.sizes[-1], dtype=x.dtype, device=x.device)[y])
    sigma = find_activation(activation)
    found: dict[str, float] = {}
    layers = len(fwd.z)
    for layer in range(layers):
        z, a = fwd.z[layer], fwd.a[layer + 1]
        if layer == layers - 1:
            slope, largest = a * (1 - a), 0.25
        else:
            slope, largest = sigma.prime(z, a, backprop.slopes[layer]), sigma.max_slope
        name = f"layer{layer + 1}"
        found[f"{name}/mean_sigma_prime"] = float(slope.mean())
        found[f"{name}/saturated"] = float((slope < SATURATED_BELOW * largest).double().mean())
        found[f"{name}/grad_norm"] = float(grads[f"layers.{layer}.weight"].norm())
    return found


def diagnostic_batch(x: torch.Tensor, y: torch.Tensor) -> tuple[torch.Tensor, torch.Tensor]:
    """The first ``DIAGNOSTIC_IMAGES`` training images: the same ones every epoch, so curves compare."""
    return x[:DIAGNOSTIC_IMAGES], y[:DIAGNOSTIC_IMAGES]
