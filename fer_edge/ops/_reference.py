"""Pure-PyTorch twins of every fer_edge kernel, with the same signatures and semantics.

They are the oracle the tests hold the kernels against, and the fallback when the compiled
core is missing. They favour clarity over speed; `hog` here is the MaskFeat HOG layer
(facebookresearch/SlowFast `HOGLayerC`) followed by MaskFeat's patchify.
"""
from __future__ import annotations

import math
from typing import Sequence

import torch
import torch.nn.functional as F


def hog(images: torch.Tensor, cell: int = 8, bins: int = 9, patch: int = 16, norm: str = "l2") -> torch.Tensor:
    """images [B, C, H, W] uint8|float32 -> [B, (H/patch)*(W/patch), C*(patch/cell)**2*bins]."""
    x = images.float()
    B, C, H, W = x.shape
    wx = torch.tensor([[1.0, 0.0, -1.0], [2.0, 0.0, -2.0], [1.0, 0.0, -1.0]], device=x.device)
    wx = wx.view(1, 1, 3, 3).repeat(C, 1, 1, 1)
    wy = wx.transpose(2, 3)
    xp = F.pad(x, (1, 1, 1, 1), mode="reflect")
    gx = F.conv2d(xp, wx, groups=C)
    gy = F.conv2d(xp, wy, groups=C)
    mag = torch.stack([gx, gy], dim=-1).norm(dim=-1)  # [B, C, H, W]
    phase = torch.atan2(gx, gy) / math.pi * bins
    bin_idx = phase.floor().long() % bins
    hist = torch.zeros(B, C, bins, H, W, dtype=torch.float32, device=x.device)
    hist.scatter_add_(2, bin_idx.unsqueeze(2), mag.unsqueeze(2))
    hist = hist.unfold(3, cell, cell).unfold(4, cell, cell).sum(dim=(-1, -2))  # [B, C, bins, Hc, Wc]
    if norm == "l2":
        hist = F.normalize(hist, p=2, dim=2)
    u = patch // cell
    t = hist.flatten(1, 2).permute(0, 2, 3, 1)  # [B, Hc, Wc, C*bins]
    t = t.unfold(1, u, u).unfold(2, u, u)  # [B, Hp, Wp, C*bins, u, u]
    return t.flatten(1, 2).flatten(2)


# --- k-means ---------------------------------------------------------------------------------

def _mix32(x: int) -> int:
    x &= 0xFFFFFFFF
    x ^= x >> 16
    x = (x * 0x7FEB352D) & 0xFFFFFFFF
    x ^= x >> 15
    x = (x * 0x846CA68B) & 0xFFFFFFFF
    x ^= x >> 16
    return x


def uniform_draw(seed: int, problem: int, draw: int) -> float:
    """The counter-based uniform in [0, 1) the kernels use for k-means++ (csrc/kmeans/kmeans.h)."""
    seed &= 0xFFFFFFFFFFFFFFFF
    h = _mix32(seed >> 32)
    h = _mix32(h ^ (seed & 0xFFFFFFFF))
    h = _mix32(h ^ (problem & 0xFFFFFFFF))
    h = _mix32(h ^ (draw & 0xFFFFFFFF))
    return h / 4294967296.0


def _plus_plus(xn: torch.Tensor, k: int, seed: int, problem: int) -> torch.Tensor:
    N = xn.shape[0]
    idx = min(int(uniform_draw(seed, problem, 0) * N), N - 1)
    chosen = [idx]
    dist = (1.0 - xn @ xn[idx]).clamp_min(0.0)
    for c in range(1, k):
        w = dist.double() ** 2
        total = float(w.sum())
        if total > 0.0:
            target = uniform_draw(seed, problem, c) * total
            hits = (torch.cumsum(w, 0) > target).nonzero()
            idx = int(hits[0]) if len(hits) else int((w > 0).nonzero()[-1])
        else:
            idx = c % N
        chosen.append(idx)
        dist = torch.minimum(dist, (1.0 - xn @ xn[idx]).clamp_min(0.0))
    return xn[chosen]


def kmeans_cosine(x: torch.Tensor, k: int, iters: int = 10, init="kmeans++", seed: int = 0):
    """x [P, N, D] -> centroids [P, k, D] (unit), labels [P, N] int64. See csrc/kmeans/kmeans.h."""
    xn = F.normalize(x.float(), dim=-1, eps=1e-12)
    P, N, D = xn.shape
    if isinstance(init, torch.Tensor):
        cent = F.normalize(init.float(), dim=-1, eps=1e-12)
    elif init == "first":
        cent = xn[:, [c % N for c in range(k)]]
    else:
        cent = torch.stack([_plus_plus(xn[p], k, seed, p) for p in range(P)])
    for _ in range(iters):
        labels = torch.bmm(xn, cent.transpose(1, 2)).argmax(dim=-1)
        sums = torch.zeros(P, k, D, device=x.device).scatter_add_(1, labels.unsqueeze(-1).expand(-1, -1, D), xn)
        counts = torch.zeros(P, k, device=x.device).scatter_add_(1, labels, torch.ones_like(labels, dtype=torch.float32))
        norms = sums.norm(dim=-1, keepdim=True)
        keep = (counts.unsqueeze(-1) == 0) | (norms <= 0)
        cent = torch.where(keep, cent, sums / norms.clamp_min(1e-30))
    labels = torch.bmm(xn, cent.transpose(1, 2)).argmax(dim=-1)
    return cent, labels


def assign_cosine(y: torch.Tensor, centroids: torch.Tensor):
    """y [P, M, D], centroids [P, K, D] -> labels [P, M] int64, sim [P, M] (cosine)."""
    yn = F.normalize(y.float(), dim=-1, eps=1e-12)
    cn = F.normalize(centroids.float(), dim=-1, eps=1e-12)
    sim, labels = torch.bmm(yn, cn.transpose(1, 2)).max(dim=-1)
    return labels, sim


def cluster_means(x: torch.Tensor, labels: torch.Tensor, k: int, fallback: torch.Tensor | None = None):
    """Differentiable per-cluster means [P, k, D] of x [P, N, D] under labels [P, N].

    The k-means kernels return labels only; losses that need gradients through the centroids
    (CLBS/CLFM) recompute them here. Empty clusters take `fallback` [P, k, D] (or zeros).
    """
    P, N, D = x.shape
    sums = torch.zeros(P, k, D, dtype=x.dtype, device=x.device).scatter_add(1, labels.unsqueeze(-1).expand(-1, -1, D), x)
    counts = torch.zeros(P, k, dtype=x.dtype, device=x.device).scatter_add(1, labels, torch.ones_like(x[..., 0]))
    means = sums / counts.clamp_min(1).unsqueeze(-1)
    if fallback is not None:
        means = torch.where(counts.unsqueeze(-1) > 0, means, fallback.to(means.dtype))
    return means


# --- top-k gating ----------------------------------------------------------------------------

def topk_gating(logits: torch.Tensor, k: int, return_probs: bool = False):
    """logits [T, E] -> weights [T, k], indices [T, k] (descending, ties to the lower index),
    probs [T, E] or None. weights = softmax over the kept k logits."""
    vals, idx = torch.sort(logits, dim=-1, descending=True, stable=True)
    weights = torch.softmax(vals[..., :k], dim=-1)
    probs = torch.softmax(logits, dim=-1) if return_probs else None
    return weights, idx[..., :k].contiguous(), probs


# --- channel-separated max-pool --------------------------------------------------------------

def chanpool_max(x: torch.Tensor, group_sizes: Sequence[int], drop_mask: torch.Tensor | None = None,
                 return_indices: bool = False):
    """x [B, C] or [B, C, H, W] -> [B, L(, H, W)]: max over each contiguous channel group, dropped
    channels excluded; ties go to the lowest channel."""
    if drop_mask is not None:
        m = drop_mask.view(-1 if drop_mask.dim() == 2 else 1, x.shape[1], *([1] * (x.dim() - 2)))
        x = x.masked_fill(m, float("-inf"))
    outs, args = [], []
    start = 0
    for size in group_sizes:
        v, i = x[:, start:start + size].max(dim=1)
        outs.append(v)
        args.append(i + start)
        start += size
    out = torch.stack(outs, dim=1)
    return (out, torch.stack(args, dim=1)) if return_indices else out
