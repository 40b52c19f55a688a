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

from .backprop import SeedBackprop, sigma_prime
from .model import MLP

DIAGNOSTIC_IMAGES = 1000
MAX_SLOPE = {"sigmoid": 0.25, "tanh": 1.0, "relu": 1.0, "leaky_relu": 1.0, "prelu": 1.0, "step": 1.0}
SATURATED_BELOW = 0.01  # of the largest slope


def slowdown(net: MLP, cost: str, activation: str, x: torch.Tensor, y: torch.Tensor) -> dict[str, float]:
    """``{"layer1/mean_sigma_prime": …, "layer1/saturated": …, "layer1/grad_norm": …, …}`` on (x, y)."""
    was_training = net.training
    net.eval()
    try:
        backprop = SeedBackprop(net, cost, activation)
        fwd, grads = backprop.gradients(x, torch.eye(net.sizes[-1], dtype=x.dtype, device=x.device)[y])
    finally:
        net.train(was_training)
    found: dict[str, float] = {}
    layers = len(fwd.z)
    for layer in range(layers):
        z, a = fwd.z[layer], fwd.a[layer + 1]
        if layer == layers - 1:
            slope, largest = a * (1 - a), 0.25
        else:
            slope = sigma_prime(activation, z, a, backprop.slopes[layer])
            largest = MAX_SLOPE[activation]
        name = f"layer{layer + 1}"
        found[f"{name}/mean_sigma_prime"] = float(slope.mean())
        found[f"{name}/saturated"] = float((slope < SATURATED_BELOW * largest).double().mean())
        found[f"{name}/grad_norm"] = float(grads[f"layers.{layer}.weight"].norm())
    return found


def diagnostic_batch(x: torch.Tensor, y: torch.Tensor) -> tuple[torch.Tensor, torch.Tensor]:
    """The first ``DIAGNOSTIC_IMAGES`` training images: the same ones every epoch, so curves compare."""
    return x[:DIAGNOSTIC_IMAGES], y[:DIAGNOSTIC_IMAGES]
