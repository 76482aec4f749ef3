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
                coeff: float, entropy_grad: bool = True) -> torch.Tensor:
    """CDAN-E on a batch whose first n_source rows are source, the rest target: features pass
    through gradient reversal; the probs in the discriminator's outer product are detached (as in
    CDAN); each sample is weighted by w = 1 + exp(-H(p)), normalised within its domain half;
    BCE with source = 1, target = 0.

    entropy_grad (default True, as CDAN's reference code, which AGLRLS builds on): the entropy
    carries the reversed gradient (-coeff) into the classifier, so that the classifier is pushed
    to make the samples the discriminator separates best less certain; the normalising sums are
    constants. False detaches the weight entirely (fer_edge's first AGLRLS runs)."""
    p = probs.detach()
    logits = disc(grad_reverse(features, coeff), p)
    target = torch.zeros_like(logits)
    target[:n_source] = 1.0
    h = entropy(probs) if entropy_grad else entropy(p)
    w = 1.0 + torch.exp(-(grad_reverse(h, coeff) if entropy_grad else h))
    src, tgt = torch.zeros_like(w), torch.zeros_like(w)
    src[:n_source], tgt[n_source:] = 1.0, 1.0
    src_sum, tgt_sum = (w * src).sum().clamp_min(1e-12), (w * tgt).sum().clamp_min(1e-12)
    if entropy_grad:
        src_sum, tgt_sum = src_sum.detach(), tgt_sum.detach()
    weight = w * src / src_sum + w * tgt / tgt_sum
    bce = nn.functional.binary_cross_entropy_with_logits(logits, target, reduction="none")
    return (weight * bce).sum() / (weight.sum().detach() if entropy_grad else weight.sum())
