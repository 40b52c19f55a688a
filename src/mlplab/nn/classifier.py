"""A trained MLP as a classifier any client can use: raw pixels in, class probabilities out.

Training feeds the network standardised pixels and reads its weighted input zᴸ; a client has ordinary images.
``Classifier`` carries the run's own standardisation (the training split's mean and standard deviation, or
none) and its class names, takes float pixels in [0, 1] as ``(N, 784)`` or ``(N, 28, 28)``, and returns
probabilities: the softmax of zᴸ for a softmax output, the sigmoid output aᴸ normalised to sum to 1 for a
sigmoid one (its arg max is the network's prediction either way). It is what MLflow logs as the run's model;
this module and the few it imports (``model``, ``activations``, ``costs``) travel with that model, so loading
it needs torch and MLflow, not mlplab.
"""

from __future__ import annotations

import torch
from torch import nn

from .model import MLP


class Classifier(nn.Module):
    def __init__(self, net: MLP, mean: float, std: float, class_names: list[str]):
        super().__init__()
        self.net = net
        self.register_buffer("mean", torch.tensor(float(mean), dtype=torch.float32))
        self.register_buffer("std", torch.tensor(float(std), dtype=torch.float32))
        self.class_names = list(class_names)

    def forward(self, pixels: torch.Tensor) -> torch.Tensor:
        x = pixels.reshape(pixels.shape[0], -1).to(torch.float32)
        # the same two float32 operations, in the same order, as the training data's standardisation
        z = self.net((x - self.mean) / self.std)
        if self.net.output == "softmax":
            return torch.softmax(z, dim=1)
        a = torch.sigmoid(z)
        return a / a.sum(dim=1, keepdim=True)


SHIPPED_MODULES = ("__init__.py", "nn/__init__.py", "nn/classifier.py", "nn/model.py", "nn/activations.py",
                   "nn/costs.py")  # mlplab's files a logged model needs (its code_paths); a test loads it without mlplab
