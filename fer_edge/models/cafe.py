"""CAFE's network (methods.md §5): a frozen generic face encoder F, a trainable mask generator
whose sigmoid mask M selects F's channels, and a linear classifier on F(x) * M.

Encoders (all frozen: no gradient, always in eval mode, their weights never change):
`FrozenFeatures` of a ViT (our label-free MIM-HOG encoder loaded by path, or a randomly
initialised one: the control) or of a CNN (e.g. the supervised FERPlus baseline's backbone).
Both the encoder and the mask generator read the same aligned face; the exported graph takes it
once and runs both branches.
"""
from __future__ import annotations

import torch
from torch import nn


class Frozen(nn.Module):
    """Wraps an encoder so that it stays in eval mode and out of the optimiser."""

    def __init__(self, module: nn.Module):
        super().__init__()
        self.module = module
        for p in self.module.parameters():
            p.requires_grad_(False)
        self.module.eval()

    def train(self, mode: bool = True):
        super().train(mode)
        self.module.eval()  # BatchNorm statistics and dropout stay as they were
        return self


class FrozenFeatures(Frozen):
    """A frozen encoder's embedding [B, out_dim]: a ViT's normalised class token or a CNN's
    pooled feature (both backbones' `forward`)."""

    @property
    def out_dim(self) -> int:
        return self.module.out_dim

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        with torch.no_grad():
            return self.module(x)


class CAFENet(nn.Module):
    """F(x) * M(x) -> linear classifier. mask: "sigmoid" (the paper), "none" (the raw generator
    output multiplies F: the "no sigmoid" ablation). With encoder=None the mask generator is a
    plain classifier (the same-budget baseline): logits = fc(generator features)."""

    def __init__(self, encoder: nn.Module | None, generator: nn.Module, num_classes: int, mask: str = "sigmoid"):
        super().__init__()
        if mask not in ("sigmoid", "none"):
            raise ValueError(f"mask: expected sigmoid or none, got {mask!r}")
        self.encoder, self.generator, self.mask = encoder, generator, mask
        dim = encoder.out_dim if encoder is not None else generator.out_dim
        self.to_mask = nn.Linear(generator.out_dim, dim) if encoder is not None else None
        self.fc = nn.Linear(dim, num_classes)

    def features(self, x: torch.Tensor) -> torch.Tensor:
        """F~ = F(x) * M(x) [B, dim] (the generator's embedding alone for the plain baseline)."""
        g = self.generator(x)
        if self.encoder is None:
            return g
        m = self.to_mask(g)
        if self.mask == "sigmoid":
            m = torch.sigmoid(m)
        return self.encoder(x) * m

    def forward(self, x: torch.Tensor, with_features: bool = False):
        f = self.features(x)
        logits = self.fc(f)
        return (logits, f) if with_features else logits
