"""The cross-layer contrastive losses (methods.md §3), on the `kmeans` kernel.

Both losses have the same shape: cluster the deep layer's vectors (k-means, no gradient), assign
the shallow layer's vectors to the deep centroids by cosine similarity (no gradient), recompute
both sides' cluster means differentiably, and pull each shallow mean towards its deep mean:
loss = mean over clusters of 1 - cos(shallow_mean_k, deep_mean_k) (the paper's -cos plus a
constant, so the logged value is >= 0; the gradient is the same). An empty cluster takes its
centroid on either side, so it contributes exactly 0 and no gradient.

- CLBS: one problem per step, the batch's per-sample vectors (deep: layer 4, shallow: layer 2).
- CLFM: one problem per sample, over that sample's channels, each channel coded by where its
  response map peaks (`coordinate_codes`); B problems in one kernel call.
"""
from __future__ import annotations

import torch
import torch.nn.functional as F

from fer_edge import ops
from fer_edge.ops import _reference

CODINGS = ("soft", "topk")
KMEANS_IMPLS = ("native", "torch")


def coordinate_codes(maps: torch.Tensor, coding: str = "soft", temperature: float = 0.5) -> torch.Tensor:
    """[B, C, H, W] -> [B, C, 4]: where each channel's response sits, as (x, y, 1 - x, 1 - y) with
    x, y in (0, 1) (pixel centres), so that layers of different sizes share one code space.

    The two mirrored coordinates make cosine similarity see position everywhere (with (x, y)
    alone, every point on a ray from the corner would be identical). "soft": a soft-argmax of
    the standardised map (each map minus its mean over its std, / temperature), which is
    differentiable. "topk": the released code's "hash coding", the row/column of the two largest
    responses (here normalised to (0, 1) the same way) - integer indices, so a loss through it
    has no gradient; kept as the switch that reproduces the released behaviour.
    """
    if coding not in CODINGS:
        raise ValueError(f"coding: expected one of {CODINGS}, got {coding!r}")
    B, C, H, W = maps.shape
    flat = maps.float().reshape(B, C, H * W)
    ys = (torch.arange(H, device=maps.device, dtype=torch.float32) + 0.5) / H
    xs = (torch.arange(W, device=maps.device, dtype=torch.float32) + 0.5) / W
    gy, gx = torch.meshgrid(ys, xs, indexing="ij")
    gx, gy = gx.reshape(-1), gy.reshape(-1)
    if coding == "soft":
        z = (flat - flat.mean(-1, keepdim=True)) / (flat.std(-1, keepdim=True, unbiased=False) + 1e-5)
        p = torch.softmax(z / temperature, -1)
        x, y = p @ gx, p @ gy
        return torch.stack([x, y, 1 - x, 1 - y], -1)
    idx = flat.topk(min(2, H * W), -1).indices  # [B, C, 2]
    y1, x1 = gy[idx[..., 0]], gx[idx[..., 0]]
    y2, x2 = (gy[idx[..., 1]], gx[idx[..., 1]]) if H * W > 1 else (y1, x1)
    return torch.stack([y1, x1, y2, x2], -1)


def _kmeans(x: torch.Tensor, k: int, iters: int, seed: int, impl: str):
    if impl == "native":
        return ops.kmeans_cosine(x, k, iters, "kmeans++", seed=seed)
    if impl == "torch":  # the batched PyTorch twin (same init draws, same iterations): the benchmark anchor
        return _reference.kmeans_cosine(x, k, iters, "kmeans++", seed)
    raise ValueError(f"kmeans_impl: expected one of {KMEANS_IMPLS}, got {impl!r}")


def _assign(y: torch.Tensor, centroids: torch.Tensor, impl: str):
    return ops.assign_cosine(y, centroids) if impl == "native" else _reference.assign_cosine(y, centroids)


def alignment(deep: torch.Tensor, shallow: torch.Tensor, deep_labels: torch.Tensor, centroids: torch.Tensor,
              impl: str = "native") -> tuple[torch.Tensor, dict]:
    """Mean over problems and clusters of 1 - cos(shallow mean, deep mean).

    deep [P, N, D] and shallow [P, M, D] (differentiable), deep_labels [P, N] and centroids
    [P, K, D] (unit rows, no gradient). Empty clusters use the centroid on either side."""
    K = centroids.shape[1]
    with torch.no_grad():
        shallow_labels, _ = _assign(shallow.detach(), centroids, impl)
    cent = centroids.to(deep.dtype)
    deep_means = _reference.cluster_means(deep, deep_labels, K, fallback=cent)
    shallow_means = _reference.cluster_means(shallow, shallow_labels, K, fallback=cent)
    gap = 1 - F.cosine_similarity(shallow_means.float(), deep_means.float(), dim=-1, eps=1e-8)  # [P, K]
    used = torch.zeros_like(gap).scatter_(1, shallow_labels, 1.0)  # clusters that got shallow members
    return gap.mean(), {"shallow_clusters_used": float(used.sum(1).mean())}


def cluster_alignment(deep: torch.Tensor, shallow: torch.Tensor, k: int, iters: int, seed: int,
                      impl: str = "native") -> tuple[torch.Tensor, dict]:
    """k-means (k, iters, k-means++ seeded by `seed`) over each problem's deep vectors, then
    `alignment`. deep [P, N, D], shallow [P, M, D]."""
    with torch.no_grad():
        centroids, labels = _kmeans(deep.detach(), k, iters, seed, impl)
    return alignment(deep, shallow, labels, centroids, impl)


def class_centre_alignment(deep: torch.Tensor, shallow: torch.Tensor, labels: torch.Tensor,
                           num_classes: int, impl: str = "native") -> tuple[torch.Tensor, dict]:
    """The paper's Table VI control: the deep vectors' per-class centres of the batch (by the true
    label) instead of k-means clusters; classes absent from the batch do not count, and shallow
    vectors are assigned only among the present ones. deep, shallow [B, D]; labels [B]."""
    present = torch.unique(labels)
    remap = torch.full((num_classes,), -1, dtype=torch.long, device=labels.device)
    remap[present] = torch.arange(len(present), device=labels.device)
    deep_labels = remap[labels].unsqueeze(0)
    with torch.no_grad():
        centres = F.normalize(_reference.cluster_means(deep.detach().float().unsqueeze(0), deep_labels, len(present)),
                              dim=-1, eps=1e-12)
    return alignment(deep.unsqueeze(0), shallow.unsqueeze(0), deep_labels, centres, impl)
