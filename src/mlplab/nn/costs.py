"""The network costs of the slides, each one object in the spirit of Nielsen's network2.py: ``fn`` is C and
``delta`` is δᴸ = ∂C/∂zᴸ, for either output activation (sigmoid or softmax).

C = (1/n) Σᵢ Cᵢ over a batch of n examples, where for the one-hot target y = e_{yᵢ}:
- quadratic      Cᵢ = ½ ‖aᴸ − y‖²                               (summed over output units)
- cross_entropy  Cᵢ = Σⱼ −yⱼ log aⱼᴸ − (1 − yⱼ) log(1 − aⱼᴸ)      (summed over output units)
- log_likelihood Cᵢ = −log aᴸ_{yᵢ}
``fn`` takes the output layer's weighted input zᴸ and works in log space (log-sigmoid, log-softmax) so a
saturated unit gives a large finite cost, never log 0. Adding a cost means adding one entry to ``COSTS``.
"""

from __future__ import annotations

import math

import torch
import torch.nn.functional as F

aten = torch.ops.aten
OUTPUTS = ("sigmoid", "softmax")  # the output layer's activation


def activate(z: torch.Tensor, output: str) -> torch.Tensor:
    """aᴸ from zᴸ: the output layer's sigmoid or softmax."""
    return torch.sigmoid(z) if output == "sigmoid" else torch.softmax(z, dim=-1)


def log_a_and_log_1_minus_a(z: torch.Tensor, output: str) -> tuple[torch.Tensor, torch.Tensor]:
    if output == "sigmoid":
        return F.logsigmoid(z), F.logsigmoid(-z)
    # log(1 − a_j) = log Σ_{k≠j} e^{z_k} − log Σ_k e^{z_k}: exact even where a_j rounds to 1.
    c = z.shape[-1]
    others = z.unsqueeze(-2).expand(*z.shape, c).masked_fill(torch.eye(c, dtype=torch.bool, device=z.device), -math.inf)
    log_sum = torch.logsumexp(z, dim=-1, keepdim=True)
    return z - log_sum, torch.logsumexp(others, dim=-1) - log_sum


def _softmax_chain(a: torch.Tensor, dC_da: torch.Tensor) -> torch.Tensor:
    """δ = Jᵀ ∂C/∂a with the softmax Jacobian J_jk = a_j(1_{j=k} − a_k): δ_k = h_k − a_k Σ_j h_j, h = a ⊙ ∂C/∂a."""
    h = a * dC_da
    return h - a * h.sum(dim=-1, keepdim=True)


class Cost:
    """Classes lie along the last dimension, examples along the one before: a population's stacked
    (K, m, classes) batch is costed like one network's (m, classes)."""

    name: str

    def fn(self, z: torch.Tensor, y: torch.Tensor, output: str) -> torch.Tensor:
        """C, the batch mean, of zᴸ with labels ``y`` (class indices)."""
        raise NotImplementedError

    def rows(self, z: torch.Tensor, a: torch.Tensor, y: torch.Tensor, output: str) -> torch.Tensor:
        """Cᵢ of every example (``fn`` is their mean) from zᴸ, aᴸ and the one-hot targets ``y`` (broadcast
        against z: a shared batch's targets serve every member), for any leading dimensions."""
        raise NotImplementedError

    def means(self, z: torch.Tensor, a: torch.Tensor, y: torch.Tensor, output: str) -> torch.Tensor:
        """C of each network of a stacked (K, m, classes) batch: the K batch means."""
        return self.rows(z, a, y, output).mean(dim=-1)

    def delta(self, output: str, z: torch.Tensor, a: torch.Tensor, y: torch.Tensor) -> torch.Tensor:
        """δᴸ for one example per row, from zᴸ, aᴸ and the one-hot targets ``y``."""
        raise NotImplementedError

    def means_and_delta(self, z: torch.Tensor, a: torch.Tensor, y: torch.Tensor,
                        output: str) -> tuple[torch.Tensor, torch.Tensor]:
        """(``means``, ``delta``) together: a population's step needs both, and a cost may share work between them."""
        return self.means(z, a, y, output), self.delta(output, z, a, y)

    def __call__(self, z: torch.Tensor, y: torch.Tensor, output: str) -> torch.Tensor:
        return self.fn(z, y, output)

    def __repr__(self) -> str:
        return f"<cost {self.name}>"


class Quadratic(Cost):
    name = "quadratic"

    def fn(self, z, y, output):
        a = activate(z, output)
        target = F.one_hot(y, a.shape[1]).to(a.dtype)
        return 0.5 * (a - target).pow(2).sum() / a.shape[0]

    def rows(self, z, a, y, output):
        return 0.5 * (a - y).square().sum(dim=-1)

    def delta(self, output, z, a, y):
        if output == "sigmoid":
            return aten.sigmoid_backward(a - y, a)  # (a − y) ⊙ σ'(z)
        return _softmax_chain(a, a - y)

    def means_and_delta(self, z, a, y, output):
        difference = a - y  # C and δᴸ share it (Nielsen's network.py: cost_derivative)
        means = difference.square().sum(dim=(-2, -1)).mul_(0.5 / difference.shape[-2])
        if output == "sigmoid":
            return means, aten.sigmoid_backward(difference, a)
        return means, _softmax_chain(a, difference)


class CrossEntropy(Cost):
    name = "cross_entropy"

    def fn(self, z, y, output):
        target = F.one_hot(y, z.shape[1]).to(z.dtype)
        if output == "sigmoid":  # the fused kernel computes exactly Σⱼ of the formula above, stably
            return F.binary_cross_entropy_with_logits(z, target, reduction="sum") / z.shape[0]
        log_a, log_1ma = log_a_and_log_1_minus_a(z, output)
        # Only the true class contributes log a, only the others log(1 − a); masking avoids 0 · (−inf).
        per_unit = torch.where(target.bool(), log_a, log_1ma)
        return -per_unit.sum() / z.shape[0]

    def rows(self, z, a, y, output):
        if output == "sigmoid":
            return F.binary_cross_entropy_with_logits(z, y.expand_as(z), reduction="none").sum(dim=-1)
        log_a, log_1ma = log_a_and_log_1_minus_a(z, output)
        return -torch.where(y.bool(), log_a, log_1ma).sum(dim=-1)

    def delta(self, output, z, a, y):
        if output == "sigmoid":
            return a - y  # σ' cancels: the cure for learning slowdown
        return self._softmax_delta(z, a, y)

    @staticmethod
    def _softmax_delta(z, a, y):
        """After a softmax, with h = a ⊙ ∂C/∂a: h_t = −1 at the true class t, h_j = r_j = a_j/(1−a_j) elsewhere,
        and δ_k = h_k − a_k Σh, which rearranges to
            δ_t = −(1 − a_t) − Σ_{j≠t} a_t r_j,     δ_k = 2a_k − Σ_{j≠t,k} a_k r_j   (k ≠ t)
        so a saturated unit (r_j huge) cancels algebraically rather than in floating point, and each
        a_k r_j ≤ 1 is formed in log space: no overflow even where zᴸ spans hundreds."""
        log_a, log_1ma = log_a_and_log_1_minus_a(z, "softmax")
        true = y.bool()
        c = z.shape[-1]
        log_r = (log_a - log_1ma).masked_fill(true, -math.inf)  # only j ≠ t
        log_terms = (log_a.unsqueeze(-1) + log_r.unsqueeze(-2)).masked_fill(
            torch.eye(c, dtype=torch.bool, device=z.device), -math.inf)
        return torch.where(true, -torch.exp(log_1ma), 2 * a) - torch.exp(log_terms).sum(dim=-1)


class LogLikelihood(Cost):
    name = "log_likelihood"

    def fn(self, z, y, output):
        if output == "softmax":
            return F.cross_entropy(z, y)  # −log softmax(z)_y, averaged over the batch
        log_a, _ = log_a_and_log_1_minus_a(z, output)
        return -log_a.gather(1, y[:, None]).mean()

    def rows(self, z, a, y, output):
        log_a = torch.log_softmax(z, dim=-1) if output == "softmax" else F.logsigmoid(z)
        return -(log_a * y).sum(dim=-1)  # log a is finite for finite z: no 0·(−inf)

    def delta(self, output, z, a, y):
        if output == "softmax":
            return a - y  # softmax + log-likelihood: the same form as sigmoid + cross-entropy
        return y * (a - 1)  # C = −log a_y after sigmoids: only the true unit's error, a_y − 1


quadratic, cross_entropy, log_likelihood = Quadratic(), CrossEntropy(), LogLikelihood()
COSTS: dict[str, Cost] = {cost.name: cost for cost in (quadratic, cross_entropy, log_likelihood)}
