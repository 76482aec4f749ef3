"""CAFE's network (methods.md §5): a frozen generic face encoder F, a trainable mask generator
whose sigmoid mask M selects F's channels, and a linear classifier on F(x) * M.

Encoders (all frozen: no gradient, always in eval mode, their weights never change):
`FrozenFeatures` of a ViT (our label-free MIM-HOG encoder loaded by path, or a randomly
initialised one: the control) or of a CNN (e.g. the supervised FERPlus baseline's backbone).
Both the encoder and the mask generator read the same aligned face; the exported graph takes it
once and runs both branches. With mask_from="encoder" the mask is computed from F(x) itself by a
small MLP (`FeatureMaskGenerator`), so everything the classifier sees passes through the frozen
encoder: the paper's image-fed generator can classify on its own and make F irrelevant
(benchmarks/results/cafe/README.md, the mask probe), this variant cannot.
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


class FeatureMaskGenerator(nn.Module):
    """The mask generator of mask_from="encoder": LayerNorm -> Linear -> GELU on F(x) [B, dim]; its
    hidden features [B, hidden] go through CAFENet's to_mask like a CNN generator's embedding."""

    def __init__(self, dim: int, hidden: int = 512):
        super().__init__()
        self.out_dim = hidden
        self.net = nn.Sequential(nn.LayerNorm(dim), nn.Linear(dim, hidden), nn.GELU())

    def forward(self, f: torch.Tensor) -> torch.Tensor:
        return self.net(f)


class CAFENet(nn.Module):
    """F(x) * M(x) -> linear classifier. mask: "sigmoid" (the paper), "none" (the raw generator
    output multiplies F: the "no sigmoid" ablation). With encoder=None the mask generator is a
    plain classifier (the same-budget baseline): logits = fc(generator features). mask_from: "image"
    (the paper: the generator reads the face) or "encoder" (the generator reads F(x))."""

    def __init__(self, encoder: nn.Module | None, generator: nn.Module, num_classes: int, mask: str = "sigmoid",
                 mask_from: str = "image"):
        super().__init__()
        if mask not in ("sigmoid", "none"):
            raise ValueError(f"mask: expected sigmoid or none, got {mask!r}")
        if mask_from not in ("image", "encoder") or (mask_from == "encoder" and encoder is None):
            raise ValueError(f"mask_from: expected image, or encoder with an encoder, got {mask_from!r}")
        self.encoder, self.generator, self.mask, self.mask_from = encoder, generator, mask, mask_from
        dim = encoder.out_dim if encoder is not None else generator.out_dim
        self.to_mask = nn.Linear(generator.out_dim, dim) if encoder is not None else None
        self.fc = nn.Linear(dim, num_classes)

    def encoder_and_mask(self, x: torch.Tensor) -> tuple[torch.Tensor, torch.Tensor]:
        """(F(x), M(x)), both [B, dim]; the model needs an encoder."""
        f = self.encoder(x)
        m = self.to_mask(self.generator(f if self.mask_from == "encoder" else x))
        return f, (torch.sigmoid(m) if self.mask == "sigmoid" else m)

    def features(self, x: torch.Tensor) -> torch.Tensor:
        """F~ = F(x) * M(x) [B, dim] (the generator's embedding alone for the plain baseline)."""
        if self.encoder is None:
            return self.generator(x)
        f, m = self.encoder_and_mask(x)
        return f * m

    def forward(self, x: torch.Tensor, with_features: bool = False):
        f = self.features(x)
        logits = self.fc(f)
        return (logits, f) if with_features else logits
