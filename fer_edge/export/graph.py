"""What gets exported: the inference graph with the normalisation inside, so that every
runtime feeds raw 0-255 pixels and cannot get mean/std wrong."""
from __future__ import annotations

import torch
from torch import nn


class InferenceGraph(nn.Module):
    """pixels [N, C, H, W] float32 in 0..255 (and, for landmark models, landmarks [N, 5, 2] in
    pixels of that input) -> logits [N, classes], or [N, heads, classes] for multi-head models."""

    def __init__(self, model: nn.Module, mean, std, predict=None):
        super().__init__()
        self.model = model
        self.predict = predict
        self.register_buffer("scale", (1.0 / (255.0 * torch.tensor(std, dtype=torch.float32))).view(1, -1, 1, 1))
        self.register_buffer("shift", (torch.tensor(mean, dtype=torch.float32) / torch.tensor(std, dtype=torch.float32)).view(1, -1, 1, 1))

    def forward(self, pixels: torch.Tensor, *extra: torch.Tensor) -> torch.Tensor:
        x = pixels * self.scale - self.shift  # (p/255 - mean) / std
        return self.predict(self.model, x, *extra) if self.predict is not None else self.model(x, *extra)
