"""Tensor -> fer_edge._C.Buffer views, and the CUDA stream a launch should use."""
from __future__ import annotations

import math

import torch

_DTYPE_NAMES = {
    torch.uint8: "uint8",
    torch.int32: "int32",
    torch.int64: "int64",
    torch.float32: "float32",
    torch.float64: "float64",
    torch.bool: "bool",
}


def as_buffer(lib, t: torch.Tensor, shape=None):
    """A view of a contiguous tensor; `shape` may re-express it (same numel).

    A real check, not an assert (python -O strips those): the native core reads numel elements
    from data_ptr, which for an expanded or strided view runs past its storage."""
    if not t.is_contiguous():
        raise ValueError(f"internal: native kernels need contiguous tensors, got strides {t.stride()} for shape {tuple(t.shape)}")
    if shape is not None and math.prod(shape) != t.numel():
        raise ValueError(f"internal: shape {tuple(shape)} does not match {t.numel()} elements")
    # (small calls, e.g. LEAF's gating, pay this per tensor: torch.Size goes to the binding as is)
    if t.is_cuda:
        device = t.device.index
        if device is None:
            device = torch.cuda.current_device()
    else:
        device = -1
    return lib.Buffer(t.data_ptr(), t.shape if shape is None else shape, _DTYPE_NAMES[t.dtype], device)


def absent(lib):
    """An absent optional argument."""
    return lib.Buffer()


def stream_of(t: torch.Tensor) -> int:
    return torch.cuda.current_stream(t.device).cuda_stream if t.is_cuda else 0
