"""Semi-supervised pieces of Ada-CM and LEAF (methods.md §4), each a pure function for tests."""
from __future__ import annotations

import math

import numpy as np
import torch
import torch.nn.functional as F


def adaptive_thresholds(probs: np.ndarray, labels: np.ndarray, epoch: int, floor: float = 0.8) -> np.ndarray:
    """Ada-CM's per-class thresholds after `epoch` (1-based): for each class c, the mean
    confidence of the labelled faces of class c that the model gets right, times
    0.97 / (1 + e^-epoch), never below `floor`; a class with no correct face gets `floor`."""
    probs, labels = np.asarray(probs, np.float64), np.asarray(labels)
    pred, conf = probs.argmax(1), probs.max(1)
    out = np.full(probs.shape[1], floor)
    scale = 0.97 / (1 + math.exp(-epoch))
    for c in range(probs.shape[1]):
        ok = (labels == c) & (pred == c)
        if ok.any():
            out[c] = max(floor, conf[ok].mean() * scale)
    return out


def confident(probs: torch.Tensor, thresholds: torch.Tensor) -> torch.Tensor:
    """[B] bool: the top probability reaches its class's threshold."""
    top, cls = probs.max(1)
    return top >= thresholds.to(probs.device, probs.dtype)[cls]


def ambiguous_sets(q: torch.Tensor, mass: float = 0.9, max_positives: int = 3):
    """LEAF's ambiguous pseudo labels. Sort the top (max_positives + 1) probabilities of q [B, C],
    cumulative sums S_1..; the positive set P is the top-i classes for the smallest i in
    1..max_positives with S_{i+1} >= mass (i = max_positives if none); N is every other class.
    Weight w = log(1 + 50 (S_{i+1}/(i+1) - q_(i+1))) / log(1 + 50 S_{i+1}/(i+1)), capped at 1:
    near 1 when the (i+1)-th class is far below the mean of the top i+1, i.e. P is a clear set.
    Returns (positive mask [B, C] bool, w [B], i [B])."""
    B, C = q.shape
    m = min(max_positives + 1, C)
    top, idx = q.topk(m, dim=1)
    cum = top.cumsum(1)
    size = torch.full((B,), m - 1, dtype=torch.long, device=q.device)
    for i in range(m - 2, 0, -1):  # smallest i wins: assign from the largest down
        size = torch.where(cum[:, i] >= mass, torch.full_like(size, i), size)
    rows = torch.arange(B, device=q.device)
    s_next, q_next = cum[rows, size], top[rows, size]  # S_{i+1} and q_(i+1) (0-based column i)
    mean_next = s_next / (size + 1).to(q.dtype)
    w = torch.log1p(50 * (mean_next - q_next)) / torch.log1p(50 * mean_next)
    w = w.clamp(max=1.0)
    ranks = torch.arange(m, device=q.device).unsqueeze(0)
    pos = torch.zeros(B, C, dtype=torch.bool, device=q.device)
    pos.scatter_(1, idx, ranks < size.unsqueeze(1))
    return pos, w, size


def ambiguous_loss(logits: torch.Tensor, positives: torch.Tensor) -> torch.Tensor:
    """Per-face log(1 + sum_P e^{-z} * sum_N e^{z}) = softplus(logsumexp_P(-z) + logsumexp_N(z)):
    every positive class above every negative one, without ranking inside P. [B]."""
    z = logits.float()
    neg_inf = torch.finfo(z.dtype).min
    lse_p = torch.logsumexp(torch.where(positives, -z, neg_inf), 1)
    lse_n = torch.logsumexp(torch.where(positives, neg_inf, z), 1)
    return F.softplus(lse_p + lse_n)


def contrastive_pairs(z1: torch.Tensor, z2: torch.Tensor, temperature: float = 0.07) -> torch.Tensor:
    """SimCLR / SupCon without labels between two views (rows L2-normalised): each of the 2n
    features has the other view of its face as its positive and the other 2n - 2 as negatives."""
    n = z1.shape[0]
    if n == 0:
        return z1.sum() * 0.0
    f = F.normalize(torch.cat([z1, z2]).float(), dim=1)
    sim = f @ f.T / temperature
    sim = sim.masked_fill(torch.eye(2 * n, dtype=torch.bool, device=f.device), float("-inf"))
    target = torch.cat([torch.arange(n, 2 * n), torch.arange(0, n)]).to(f.device)
    return F.cross_entropy(sim, target)
