"""Data expansion drawn afresh every epoch: each training image mirrored left to right at random and
shifted by a random whole number of pixels.

``data.expand`` stores five fixed copies of every image (Nielsen's expand_mnist); this instead trains each
epoch on one random variant of every image, so over a run the network sees up to 2·(2s+1)² variants of
it at the cost of one copy. The whole training tensor is transformed at once by one gather, with draws
from the trainer's shuffle generator, so a resumed run continues the same sequence.
"""

from __future__ import annotations

import math

import torch
import torch.nn.functional as F


def random_variants(x: torch.Tensor, max_shift: int, flip: bool, background: float,
                    generator: torch.Generator) -> torch.Tensor:
    """A new ``[n, side²]`` tensor: image i mirrored with probability ½ (when ``flip``), then moved down by
    dyᵢ and right by dxᵢ, both drawn uniformly from −s..s; uncovered pixels are set to ``background``."""
    n, side = x.shape[0], math.isqrt(x.shape[1])
    s, padded_side = max_shift, side + 2 * max_shift
    padded = F.pad(x.view(n, side, side), (s, s, s, s), value=background).view(n, -1)
    shifts = torch.randint(-s, s + 1, (2, n), generator=generator).to(x.device)
    mirrored = torch.rand(n, generator=generator).lt(0.5).to(x.device) if flip else torch.zeros(n, dtype=torch.bool, device=x.device)
    # Output pixel (r, c) reads the original's (r − dy, c − dx), or (r − dy, side−1 − (c − dx)) mirrored,
    # which sits at row + s and column + s of the padded image.
    r = torch.arange(side, device=x.device)
    rows = r + (s - shifts[0])[:, None]  # [n, side]
    cols = torch.where(mirrored[:, None], (side - 1 + s) - r + shifts[1][:, None], r + (s - shifts[1])[:, None])
    index = (rows[:, :, None] * padded_side + cols[:, None, :]).view(n, -1)
    return padded.gather(1, index)
