"""The existing implementations our kernels are measured against (performance.md)."""
from __future__ import annotations

import torch

from fer_edge.ops import _reference as R


# --- HOG ---------------------------------------------------------------------------------------

def opencv_hog(cell: int = 8, bins: int = 9, patch: int = 16, size: int = 224):
    """OpenCV's HOGDescriptor over the same images: non-overlapping patch-sized blocks of
    cell-sized cells (the cheapest configuration for OpenCV, and the same output layout size)."""
    import cv2

    if not hasattr(cv2, "HOGDescriptor"):
        raise RuntimeError("this OpenCV has no HOGDescriptor (OpenCV 5 dropped it): install opencv-python-headless<5")
    desc = cv2.HOGDescriptor((size, size), (patch, patch), (patch, patch), (cell, cell), bins)

    def run(images_np):
        for img in images_np:
            desc.compute(img)

    return run


maskfeat_torch_hog = R.hog  # the MaskFeat reference layer + patchify


# --- k-means ---------------------------------------------------------------------------------

def faiss_kmeans_loop(k: int, iters: int):
    """One faiss spherical Clustering per problem: what a user without a batched kernel writes."""
    import faiss

    def run(x_np):
        P, N, D = x_np.shape
        for p in range(P):
            km = faiss.Kmeans(D, k, niter=iters, spherical=True, seed=p, verbose=False, min_points_per_centroid=1)
            km.train(x_np[p])
            index = faiss.IndexFlatIP(D)
            index.add(km.centroids)
            index.search(x_np[p], 1)

    return run


def torch_batched_kmeans(x, k, iters):
    return R.kmeans_cosine(x, k, iters, "first")


torch_assign = R.assign_cosine


# --- top-k gating ------------------------------------------------------------------------------

def torch_two_max(logits):
    """k=2 special case: two arg-max passes and a sigmoid of the gap (the fastest torch form)."""
    m1, i1 = logits.max(-1)
    m2, i2 = logits.scatter(-1, i1.unsqueeze(-1), float("-inf")).max(-1)
    w1 = torch.sigmoid(m1 - m2)
    return torch.stack([w1, 1 - w1], -1), torch.stack([i1, i2], -1)


def torch_softmax_topk(logits, k):
    """The common path: softmax -> topk -> renormalise."""
    probs = torch.softmax(logits, -1)
    v, i = probs.topk(k, -1)
    return v / v.sum(-1, keepdim=True), i


# --- channel max-pool --------------------------------------------------------------------------

class ArgmaxScatterPool(torch.autograd.Function):
    """Per-group max with saved arg-max and a scatter backward (CAFE-style custom function)."""

    @staticmethod
    def forward(ctx, x, sizes):
        outs, idxs = [], []
        start = 0
        for s in sizes:
            v, i = x[:, start:start + s].max(1)
            outs.append(v)
            idxs.append(i + start)
            start += s
        idx = torch.stack(idxs, 1)
        ctx.save_for_backward(idx)
        ctx.shape = x.shape
        return torch.stack(outs, 1)

    @staticmethod
    def backward(ctx, grad):
        (idx,) = ctx.saved_tensors
        return grad.new_zeros(ctx.shape).scatter_(1, idx, grad), None


def torch_split_amax(x, sizes):
    return torch.stack([g.amax(1) for g in x.split(sizes, 1)], 1)
