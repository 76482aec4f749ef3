"""Argument checks shared by the ops: errors name the argument and the expected vs actual value.

Types and dtypes raise TypeError, shapes and values raise ValueError (kornia's convention).
"""
from __future__ import annotations

from typing import Iterable, Sequence

import torch

# NaN/inf checks: fused into the CPU kernels (free); on CUDA a separate reduction that syncs
# the stream, so training loops on GPU may turn it off.
_finite_checks = True


def set_finite_checks(enabled: bool) -> None:
    """Turn the NaN/inf input check on or off (on by default; costs a sync only on CUDA)."""
    global _finite_checks
    _finite_checks = bool(enabled)


def finite_checks_enabled() -> bool:
    return _finite_checks


def tensor(name: str, value, *, ndim: int | Iterable[int], dtypes: Sequence[torch.dtype], layout: str) -> torch.Tensor:
    """Checks type, rank and dtype; `layout` describes the expected shape, e.g. '[B, C, H, W]'."""
    if not isinstance(value, torch.Tensor):
        raise TypeError(f"{name}: expected a torch.Tensor of shape {layout}, got {type(value).__name__}")
    ranks = (ndim,) if isinstance(ndim, int) else tuple(ndim)
    if value.dim() not in ranks:
        raise ValueError(f"{name}: expected shape {layout}, got {tuple(value.shape)}")
    if value.dtype not in dtypes:
        names = ", ".join(str(d).replace("torch.", "") for d in dtypes)
        raise TypeError(f"{name}: expected dtype in ({names}), got {str(value.dtype).replace('torch.', '')}")
    if value.numel() == 0:
        raise ValueError(f"{name}: expected a non-empty tensor of shape {layout}, got {tuple(value.shape)}")
    return value


def same_device(name: str, value: torch.Tensor, ref_name: str, ref: torch.Tensor) -> None:
    if value.device != ref.device:
        raise ValueError(f"{name}: expected device {ref.device} (as {ref_name}), got {value.device}")


def positive_int(name: str, value, *, minimum: int = 1, maximum: int | None = None) -> int:
    if isinstance(value, bool) or not isinstance(value, int):
        raise TypeError(f"{name}: expected an int, got {type(value).__name__}")
    if value < minimum or (maximum is not None and value > maximum):
        bound = f"[{minimum}, {maximum}]" if maximum is not None else f">= {minimum}"
        raise ValueError(f"{name}: expected a value in {bound}, got {value}")
    return value


def raise_nonfinite(name: str) -> None:
    raise ValueError(f"{name}: contains NaN or infinity")


def check_finite_cuda(name: str, t: torch.Tensor) -> None:
    """The CUDA half of the NaN/inf check (the CPU kernels report it themselves)."""
    if t.is_cuda and t.is_floating_point() and _finite_checks and not bool(torch.isfinite(t).all()):
        raise_nonfinite(name)


def check_gating_logits(name: str, logits: torch.Tensor, k: int) -> None:
    """topk_gating's rule for non-finite logits, the same on every device: -inf masks an expert,
    as long as every row keeps at least k finite logits; NaN and +inf are rejected."""
    if bool(torch.isnan(logits).any()):
        raise ValueError(f"{name}: contains NaN")
    if bool(torch.isposinf(logits).any()):
        raise ValueError(f"{name}: contains +inf (only -inf is allowed, to mask an expert)")
    finite = torch.isfinite(logits).sum(-1)
    short = torch.nonzero(finite < k).flatten()
    if len(short):
        r = int(short[0])
        raise ValueError(f"{name}: row {r} keeps {int(finite[r])} finite logits, fewer than k={k} "
                         "(-inf masks an expert; every row needs k unmasked experts)")
