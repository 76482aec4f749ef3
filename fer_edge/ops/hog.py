"""Fused MaskFeat HOG targets (the `hog` kernel) as a torch custom op."""
from __future__ import annotations

import torch

from fer_edge import _native
from fer_edge.ops import _reference, _validate
from fer_edge.ops._buffers import as_buffer, stream_of

_NORMS = ("l2", "none")


@torch.library.custom_op("fer_edge::hog", mutates_args=())
def _hog_op(images: torch.Tensor, cell: int, bins: int, patch: int, norm: str) -> torch.Tensor:
    lib = _native.native()
    if lib is None:
        _native.warn_fallback("hog")
        return _reference.hog(images, cell, bins, patch, norm)
    _validate.check_finite_cuda("images", images)
    B, C, H, W = images.shape
    u = patch // cell
    out = torch.empty(B, (H // patch) * (W // patch), C * u * u * bins, dtype=torch.float32, device=images.device)
    bad = lib.hog(as_buffer(lib, images), as_buffer(lib, out), cell, bins, patch, norm == "l2", stream_of(images))
    if bad and _validate.finite_checks_enabled():
        _validate.raise_nonfinite("images")
    return out


@_hog_op.register_fake
def _(images, cell, bins, patch, norm):
    B, C, H, W = images.shape
    u = patch // cell
    return images.new_empty(B, (H // patch) * (W // patch), C * u * u * bins, dtype=torch.float32)


def hog(images: torch.Tensor, cell: int = 8, bins: int = 9, patch: int = 16, norm: str = "l2") -> torch.Tensor:
    """MaskFeat HOG targets, patchified for a ViT (methods.md §2).

    Sobel gradients (reflect padding), unsigned orientation in `bins` hard bins, magnitudes
    summed over cell x cell blocks, each cell's histogram L2-normalised per channel, and the
    cells of each patch x patch block flattened in MaskFeat's order (channel, bin, cell row,
    cell column). No backward: it is a regression target.

    Args:
        images: [B, C, H, W] uint8 or float32 (gray C=1, RGB C=3); H and W multiples of `patch`.
        cell: cell size in pixels. bins: orientation bins over [0, pi). patch: ViT patch size.
        norm: "l2" (MaskFeat) or "none" (raw magnitude sums).

    Returns:
        [B, (H/patch)*(W/patch), C*(patch/cell)**2*bins] float32.

    >>> import torch
    >>> hog(torch.zeros(2, 3, 32, 48, dtype=torch.uint8)).shape
    torch.Size([2, 6, 108])
    """
    _validate.tensor("images", images, ndim=4, dtypes=(torch.uint8, torch.float32), layout="[B, C, H, W]")
    _validate.positive_int("cell", cell)
    _validate.positive_int("bins", bins, maximum=64)
    _validate.positive_int("patch", patch)
    if patch % cell:
        raise ValueError(f"patch: expected a multiple of cell={cell}, got {patch}")
    if norm not in _NORMS:
        raise ValueError(f"norm: expected one of {_NORMS}, got {norm!r}")
    H, W = images.shape[-2:]
    if H % patch or W % patch:
        raise ValueError(f"images: expected H and W to be multiples of patch={patch}, got shape {tuple(images.shape)}")
    return _hog_op(images.contiguous(), cell, bins, patch, norm)
