"""Masked image modelling and partial-label learning pieces (methods.md §2), each a small pure
function so that tests can check them on hand-computed cases."""
from __future__ import annotations

import torch
import torch.nn.functional as F


# -- masked image modelling --------------------------------------------------------------------------
def random_mask(batch: int, tokens: int, ratio: float, generator: torch.Generator | None = None,
                device=None) -> torch.Tensor:
    """[batch, tokens] bool with exactly round(ratio * tokens) True per row, at random places."""
    n = int(round(ratio * tokens))
    order = torch.rand(batch, tokens, generator=generator).argsort(1)
    mask = torch.zeros(batch, tokens, dtype=torch.bool)
    mask.scatter_(1, order[:, :n], True)
    return mask.to(device) if device is not None else mask


def masked_mse(pred: torch.Tensor, target: torch.Tensor, mask: torch.Tensor) -> torch.Tensor:
    """Mean squared error over the masked patches only: pred, target [B, L, D], mask [B, L]."""
    per_patch = ((pred.float() - target.float()) ** 2).mean(-1)
    m = mask.float()
    return (per_patch * m).sum() / m.sum().clamp_min(1)


def pixel_targets(images: torch.Tensor, patch: int) -> torch.Tensor:
    """MAE's pixel target: each patch's pixels [B, L, C*patch*patch] (row-major patches, channel,
    row, column), normalised by the patch's own mean and standard deviation."""
    B, C, H, W = images.shape
    p = images.float().unfold(2, patch, patch).unfold(3, patch, patch)  # B, C, H/p, W/p, p, p
    p = p.permute(0, 2, 3, 1, 4, 5).reshape(B, (H // patch) * (W // patch), C * patch * patch)
    return (p - p.mean(-1, keepdim=True)) / (p.var(-1, keepdim=True, unbiased=False) + 1e-6).sqrt()


def block_normalise(hog: torch.Tensor, floor: float) -> torch.Tensor:
    """HOG targets [B, L, D] of raw magnitude sums -> each patch's D values L2-normalised as one
    block (Dalal-Triggs block normalisation, the ViT patch as the block). The norm is floored at
    `floor` x the batch's mean patch norm: per-cell normalisation (MaskFeat's) at 4 px cells on
    blurry 48 px faces turns every flat cell into a unit-norm histogram of noise; with the floor a
    flat patch stays near zero and an edge-rich one (eyes, mouth) near unit norm."""
    n = hog.norm(dim=-1, keepdim=True)
    return hog / torch.maximum(n, floor * n.mean()).clamp_min(1e-12)


# -- partial labels ----------------------------------------------------------------------------------
def initial_confidence(candidates: torch.Tensor) -> torch.Tensor:
    """C = Y / |Y| over each face's candidate set."""
    y = candidates.float()
    return y / y.sum(1, keepdim=True).clamp_min(1)


def revise(phi: torch.Tensor, confidence: torch.Tensor, candidates: torch.Tensor, tau: float = 0.5) -> torch.Tensor:
    """The revision step: top-2 of phi * C_prev; when their gap exceeds tau, C collapses to the
    top class (one-hot), else C = phi renormalised inside the candidate set (PRODEN).
    phi [B, K] in (0, 1), confidence [B, K], candidates [B, K] bool -> new confidence [B, K]."""
    score = phi * confidence
    top = score.topk(min(2, score.shape[1]), dim=1)
    v1 = top.values[:, 0]
    v2 = top.values[:, 1] if score.shape[1] > 1 else torch.zeros_like(v1)
    onehot = F.one_hot(top.indices[:, 0], score.shape[1]).to(confidence.dtype)
    inside = phi * candidates.to(phi.dtype)
    renorm = inside / inside.sum(1, keepdim=True).clamp_min(1e-12)
    return torch.where((v1 - v2 > tau).unsqueeze(1), onehot, renorm.to(confidence.dtype))


def confidence_ce(logits: torch.Tensor, confidence: torch.Tensor) -> torch.Tensor:
    """Cross-entropy of the softmax over the label queries' logits against the confidences."""
    return -(confidence * F.log_softmax(logits.float(), 1)).sum(1).mean()


def uniform_loss(queries: torch.Tensor) -> torch.Tensor:
    """log mean_{i != j} exp(-2 ||q_i - q_j||^2) over the L2-normalised queries [K, D]: lowest
    when the label queries spread out over the sphere."""
    q = F.normalize(queries.float(), dim=1)
    d2 = (2 - 2 * q @ q.T).clamp_min(0)  # unit rows: ||a - b||^2 = 2 - 2 a.b (smooth, unlike cdist at 0)
    K = q.shape[0]
    off = ~torch.eye(K, dtype=torch.bool, device=q.device)
    return torch.logsumexp(-2 * d2[off], 0) - torch.log(torch.tensor(float(off.sum()), device=q.device))
