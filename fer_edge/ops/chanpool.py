"""Channel-separated max-pool (the `chanpool` kernel) as a torch custom op with autograd."""
from __future__ import annotations

import numbers
from functools import lru_cache
from typing import Optional, Sequence

import torch

from fer_edge import _native
from fer_edge.ops import _reference, _validate
from fer_edge.ops._buffers import absent, as_buffer, stream_of


@lru_cache(maxsize=64)
def _offsets(group_sizes: tuple[int, ...]) -> torch.Tensor:
    # Host tensor: the native core validates the offsets on the host for every device.
    return torch.tensor((0,) + tuple(torch.tensor(group_sizes).cumsum(0).tolist()), dtype=torch.int64)


@torch.library.custom_op("fer_edge::chanpool_max", mutates_args=())
def _chanpool_op(x: torch.Tensor, group_sizes: list[int], drop_mask: Optional[torch.Tensor]) -> tuple[torch.Tensor, torch.Tensor]:
    B, C = x.shape[:2]
    spatial = x.shape[2:]
    L = len(group_sizes)
    lib = _native.native()
    if lib is None:
        _native.warn_fallback("chanpool_max")
        out, arg = _reference.chanpool_max(x, group_sizes, drop_mask, return_indices=True)
        return out, arg.to(torch.int32)
    _validate.check_finite_cuda("x", x)
    S = x[0, 0].numel()
    out = torch.empty(B, L, *spatial, dtype=x.dtype, device=x.device)
    argmax = torch.empty(B, L, *spatial, dtype=torch.int32, device=x.device)
    bad = lib.chanpool_forward(
        as_buffer(lib, x, (B, C, S)), as_buffer(lib, _offsets(tuple(group_sizes))),
        as_buffer(lib, drop_mask) if drop_mask is not None else absent(lib),
        as_buffer(lib, out, (B, L, S)), as_buffer(lib, argmax, (B, L, S)), stream_of(x))
    if bad and _validate.finite_checks_enabled():
        _validate.raise_nonfinite("x")
    return out, argmax


@_chanpool_op.register_fake
def _(x, group_sizes, drop_mask):
    shape = (x.shape[0], len(group_sizes), *x.shape[2:])
    return x.new_empty(shape), x.new_empty(shape, dtype=torch.int32)


@torch.library.custom_op("fer_edge::chanpool_max_backward", mutates_args=())
def _chanpool_backward_op(grad_out: torch.Tensor, argmax: torch.Tensor, group_sizes: list[int]) -> torch.Tensor:
    B, L = grad_out.shape[:2]
    spatial = grad_out.shape[2:]
    C = sum(group_sizes)
    lib = _native.native()
    if lib is None:
        grad_x = grad_out.new_zeros(B, C, *spatial)
        return grad_x.scatter_(1, argmax.long(), grad_out)
    S = grad_out[0, 0].numel()
    grad_x = torch.empty(B, C, *spatial, dtype=grad_out.dtype, device=grad_out.device)
    lib.chanpool_backward(as_buffer(lib, grad_out, (B, L, S)), as_buffer(lib, argmax, (B, L, S)),
                          as_buffer(lib, _offsets(tuple(group_sizes))), as_buffer(lib, grad_x, (B, C, S)),
                          stream_of(grad_out))
    return grad_x


@_chanpool_backward_op.register_fake
def _(grad_out, argmax, group_sizes):
    return grad_out.new_empty(grad_out.shape[0], sum(group_sizes), *grad_out.shape[2:])


def _setup_context(ctx, inputs, output):
    _, group_sizes, _ = inputs
    ctx.save_for_backward(output[1])
    ctx.group_sizes = list(group_sizes)


def _backward(ctx, grad_out, grad_argmax):
    (argmax,) = ctx.saved_tensors
    return _chanpool_backward_op(grad_out.contiguous(), argmax, ctx.group_sizes), None, None


_chanpool_op.register_autograd(_backward, setup_context=_setup_context)


def _exporting() -> bool:
    return torch.compiler.is_exporting() or torch.onnx.is_in_onnx_export()


def even_groups(channels: int, groups: int) -> list[int]:
    """Contiguous group sizes as CAFE splits channels per class: the remainder goes to the last
    groups (512 channels, 7 classes -> six groups of 73 and one of 74).

    >>> even_groups(512, 7)
    [73, 73, 73, 73, 73, 73, 74]
    """
    _validate.positive_int("groups", groups)
    _validate.positive_int("channels", channels, minimum=groups)
    base, extra = divmod(channels, groups)
    return [base + (1 if g >= groups - extra else 0) for g in range(groups)]


def chanpool_max(x: torch.Tensor, group_sizes: Sequence[int], drop_mask: Optional[torch.Tensor] = None,
                 return_indices: bool = False):
    """Max over contiguous, possibly uneven channel groups (CAFE channel separation, methods.md §5).

    The gradient flows to the arg-max channel of each group; ties go to the lowest channel index.

    Args:
        x: [B, C] or [B, C, *spatial] float32/float64 (float16/bfloat16 computed in float32).
        group_sizes: positive sizes summing to C (see `even_groups`).
        drop_mask: optional bool [C] or [B, C]; True drops the channel from its group's max.
            Every group must keep at least one channel for every sample.
        return_indices: also return the arg-max channel per output (int32).

    Returns:
        [B, L, *spatial] (and the int32 arg-max channels when asked).

    >>> import torch
    >>> chanpool_max(torch.tensor([[1.0, 5.0, 2.0, 0.0, 3.0]]), [2, 3]).tolist()
    [[5.0, 3.0]]
    """
    _validate.tensor("x", x, ndim=range(2, 16), dtypes=(torch.float32, torch.float64, torch.float16, torch.bfloat16),
                     layout="[B, C] or [B, C, H, W]")
    if isinstance(group_sizes, torch.Tensor):
        group_sizes = group_sizes.tolist()
    if not isinstance(group_sizes, (list, tuple)) or not group_sizes:
        raise TypeError(f"group_sizes: expected a non-empty list of ints, got {type(group_sizes).__name__}")
    if any(isinstance(g, bool) or not isinstance(g, numbers.Integral) for g in group_sizes):
        raise TypeError(f"group_sizes: expected ints, got {list(group_sizes)} (sizes are never rounded)")
    sizes = [int(g) for g in group_sizes]
    if any(g < 1 for g in sizes):
        raise ValueError(f"group_sizes: every group needs >= 1 channel, got {sizes}")
    C = x.shape[1]
    if sum(sizes) != C:
        raise ValueError(f"group_sizes: expected sizes summing to C={C} (x shape {tuple(x.shape)}), got sum {sum(sizes)}")
    if drop_mask is not None:
        _validate.tensor("drop_mask", drop_mask, ndim=(1, 2), dtypes=(torch.bool,), layout=f"[C={C}] or [B={x.shape[0]}, C={C}]")
        if drop_mask.shape[-1] != C or (drop_mask.dim() == 2 and drop_mask.shape[0] != x.shape[0]):
            raise ValueError(f"drop_mask: expected shape ({C},) or ({x.shape[0]}, {C}), got {tuple(drop_mask.shape)}")
        _validate.same_device("drop_mask", drop_mask, "x", x)
        kept = torch.stack([(~drop_mask[..., a:a + g]).any(-1) for a, g in zip(_offsets(tuple(sizes)).tolist(), sizes)], -1)
        if not bool(kept.all()):
            raise ValueError("drop_mask: drops every channel of a group for some sample; keep at least one per group")
        drop_mask = drop_mask.contiguous()
    if _exporting():
        # ONNX/TensorRT/OpenVINO get standard ops (ReduceMax per group), never a custom node
        return _reference.chanpool_max(x, sizes, drop_mask, return_indices)
    low_precision = x.dtype in (torch.float16, torch.bfloat16)
    xin = x.float() if low_precision else x
    out, argmax = _chanpool_op(xin.contiguous(), sizes, drop_mask)
    if low_precision:
        out = out.to(x.dtype)
    return (out, argmax) if return_indices else out
