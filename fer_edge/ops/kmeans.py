"""Batched spherical k-means and cosine assignment (the `kmeans` kernel) as torch custom ops."""
from __future__ import annotations

from typing import Optional

import torch

from fer_edge import _native
from fer_edge.ops import _reference, _validate
from fer_edge.ops._buffers import absent, as_buffer, stream_of

_INIT_MODES = {"first": 0, "kmeans++": 1, "given": 2}
_FLOATS = (torch.float32, torch.float64, torch.float16, torch.bfloat16)


@torch.library.custom_op("fer_edge::kmeans_cosine", mutates_args=())
def _kmeans_op(x: torch.Tensor, k: int, iters: int, init: str, init_centroids: Optional[torch.Tensor],
               seed: int) -> tuple[torch.Tensor, torch.Tensor]:
    lib = _native.native()
    if lib is None:
        _native.warn_fallback("kmeans_cosine")
        return _reference.kmeans_cosine(x, k, iters, init_centroids if init == "given" else init, seed)
    _validate.check_finite_cuda("x", x)
    P, N, D = x.shape
    centroids = torch.empty(P, k, D, dtype=torch.float32, device=x.device)
    labels = torch.empty(P, N, dtype=torch.int64, device=x.device)
    workspace = torch.empty(P, N, D + 1, dtype=torch.float32, device=x.device) if x.is_cuda else None
    bad = lib.kmeans_cosine(
        as_buffer(lib, x),
        as_buffer(lib, init_centroids) if init == "given" else absent(lib),
        as_buffer(lib, centroids), as_buffer(lib, labels),
        as_buffer(lib, workspace) if workspace is not None else absent(lib),
        k, iters, _INIT_MODES[init], seed & 0xFFFFFFFFFFFFFFFF, stream_of(x))
    if bad and _validate.finite_checks_enabled():
        _validate.raise_nonfinite("x or init")
    return centroids, labels


@_kmeans_op.register_fake
def _(x, k, iters, init, init_centroids, seed):
    P, N, D = x.shape
    return x.new_empty(P, k, D, dtype=torch.float32), x.new_empty(P, N, dtype=torch.int64)


@torch.library.custom_op("fer_edge::assign_cosine", mutates_args=())
def _assign_op(y: torch.Tensor, centroids: torch.Tensor) -> tuple[torch.Tensor, torch.Tensor]:
    lib = _native.native()
    if lib is None:
        _native.warn_fallback("assign_cosine")
        return _reference.assign_cosine(y, centroids)
    _validate.check_finite_cuda("y", y)
    _validate.check_finite_cuda("centroids", centroids)
    P, M, _ = y.shape
    labels = torch.empty(P, M, dtype=torch.int64, device=y.device)
    sim = torch.empty(P, M, dtype=torch.float32, device=y.device)
    bad = lib.assign_cosine(as_buffer(lib, y), as_buffer(lib, centroids), as_buffer(lib, labels),
                            as_buffer(lib, sim), stream_of(y))
    if bad and _validate.finite_checks_enabled():
        _validate.raise_nonfinite("y or centroids")
    return labels, sim


@_assign_op.register_fake
def _(y, centroids):
    P, M, _ = y.shape
    return y.new_empty(P, M, dtype=torch.int64), y.new_empty(P, M, dtype=torch.float32)


def kmeans_cosine(x: torch.Tensor, k: int, iters: int = 10, init="kmeans++", seed: int = 0):
    """Many independent spherical k-means problems at once (CLBS/CLFM, methods.md §3).

    Rows are L2-normalised; each of `iters` steps assigns every point to its most similar
    centroid (ties: lowest index) and moves each centroid to its members' normalised sum. An
    empty cluster keeps its previous centroid, so N < k is allowed and deterministic. The
    returned labels are the assignment to the returned centroids. No gradient flows: losses
    recompute differentiable means with `cluster_means(x, labels, k)`.

    Args:
        x: [P, N, D] floating (computed in float32).
        k: clusters per problem. iters: Lloyd steps (fixed, no early stop).
        init: "kmeans++" (cosine distance, D^2 sampling; identical on CPU, CUDA and the reference
            for a given seed), "first" (points 0..k-1), or a [P, k, D] tensor of initial centroids.
        seed: seeds k-means++ (problem p uses draws keyed on (seed, p)).

    Returns:
        centroids [P, k, D] float32 (unit rows), labels [P, N] int64.

    >>> import torch
    >>> c, l = kmeans_cosine(torch.randn(3, 20, 5), k=4, seed=1)
    >>> tuple(c.shape), tuple(l.shape)
    ((3, 4, 5), (3, 20))
    """
    _validate.tensor("x", x, ndim=3, dtypes=_FLOATS, layout="[P, N, D]")
    _validate.positive_int("k", k)
    _validate.positive_int("iters", iters, minimum=0)
    if isinstance(seed, bool) or not isinstance(seed, int):
        raise TypeError(f"seed: expected an int, got {type(seed).__name__}")
    if not 0 <= seed < 2**63:
        raise ValueError(f"seed: expected an int in [0, 2**63), got {seed}")
    init_t = None
    if isinstance(init, torch.Tensor):
        P, _, D = x.shape
        _validate.tensor("init", init, ndim=3, dtypes=_FLOATS, layout=f"[P={P}, k={k}, D={D}]")
        if tuple(init.shape) != (P, k, D):
            raise ValueError(f"init: expected shape ({P}, {k}, {D}), got {tuple(init.shape)}")
        _validate.same_device("init", init, "x", x)
        init_t, init = init.float().contiguous(), "given"
    elif init not in ("kmeans++", "first"):
        raise ValueError(f"init: expected 'kmeans++', 'first' or a [P, k, D] tensor, got {init!r}")
    return _kmeans_op(x.float().contiguous(), k, iters, init, init_t, seed)


def assign_cosine(y: torch.Tensor, centroids: torch.Tensor):
    """Assign y [P, M, D] to centroids [P, K, D] by cosine similarity (ties: lowest index).

    Returns labels [P, M] int64 and the cosine similarity to the chosen centroid [P, M] float32.

    >>> import torch
    >>> labels, sim = assign_cosine(torch.randn(2, 7, 3), torch.randn(2, 4, 3))
    >>> tuple(labels.shape), bool((sim <= 1.0001).all())
    ((2, 7), True)
    """
    _validate.tensor("y", y, ndim=3, dtypes=_FLOATS, layout="[P, M, D]")
    _validate.tensor("centroids", centroids, ndim=3, dtypes=_FLOATS, layout="[P, K, D]")
    if centroids.shape[0] != y.shape[0] or centroids.shape[2] != y.shape[2]:
        raise ValueError(f"centroids: expected shape ({y.shape[0]}, K, {y.shape[2]}) to match y {tuple(y.shape)}, "
                         f"got {tuple(centroids.shape)}")
    _validate.same_device("centroids", centroids, "y", y)
    return _assign_op(y.float().contiguous(), centroids.float().contiguous())


cluster_means = _reference.cluster_means
