"""Adversarial domain alignment for AGLRLS: gradient reversal and CDAN-E (methods.md §1)."""
from __future__ import annotations

import math

import torch
from torch import nn


class _Reverse(torch.autograd.Function):
    @staticmethod
    def forward(ctx, x, coeff):
        ctx.coeff = coeff
        return x.view_as(x)

    @staticmethod
    def backward(ctx, grad):
        return -ctx.coeff * grad, None


def grad_reverse(x: torch.Tensor, coeff: float) -> torch.Tensor:
    """Identity forward; gradient multiplied by -coeff backward."""
    return _Reverse.apply(x, coeff)


def grl_coeff(iteration: int, max_iter: int = 10000, alpha: float = 10.0) -> float:
    """2 / (1 + exp(-alpha * it / max_iter)) - 1: 0 at the start, -> 1."""
    return 2.0 / (1.0 + math.exp(-alpha * iteration / max_iter)) - 1.0


class CDANDiscriminator(nn.Module):
    """MLP in -> 512 -> 512 -> 1 (LeakyReLU 0.2, dropout 0.5) on the outer product feature x softmax."""

    def __init__(self, feature_dim: int, num_classes: int, hidden: int = 512):
        super().__init__()
        self.net = nn.Sequential(nn.Linear(feature_dim * num_classes, hidden), nn.LeakyReLU(0.2), nn.Dropout(0.5),
                                 nn.Linear(hidden, hidden), nn.LeakyReLU(0.2), nn.Dropout(0.5), nn.Linear(hidden, 1))

    def forward(self, features: torch.Tensor, probs: torch.Tensor) -> torch.Tensor:
        op = torch.bmm(probs.unsqueeze(2), features.unsqueeze(1)).flatten(1)  # [B, C*d]
        return self.net(op).squeeze(1)


def entropy(probs: torch.Tensor) -> torch.Tensor:
    return -(probs * torch.log(probs.clamp_min(1e-12))).sum(1)


def cdan_e_loss(disc: CDANDiscriminator, features: torch.Tensor, probs: torch.Tensor, n_source: int,
                coeff: float) -> torch.Tensor:
    """CDAN-E on a batch whose first n_source rows are source, the rest target: features pass
    through gradient reversal; probs are detached (as in CDAN); each sample is weighted by
    1 + exp(-H(p)), normalised within its domain half; BCE with source = 1, target = 0."""
    p = probs.detach()
    logits = disc(grad_reverse(features, coeff), p)
    target = torch.zeros_like(logits)
    target[:n_source] = 1.0
    w = 1.0 + torch.exp(-entropy(p))
    src, tgt = torch.zeros_like(w), torch.zeros_like(w)
    src[:n_source], tgt[n_source:] = 1.0, 1.0
    weight = w * src / (w * src).sum().clamp_min(1e-12) + w * tgt / (w * tgt).sum().clamp_min(1e-12)
    bce = nn.functional.binary_cross_entropy_with_logits(logits, target, reduction="none")
    return (weight * bce).sum() / weight.sum()
