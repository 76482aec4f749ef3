"""Top-k expert gating (the `topk_gating` kernel) as a torch custom op with autograd."""
from __future__ import annotations

import torch

from fer_edge import _native
from fer_edge.ops import _reference, _validate
from fer_edge.ops._buffers import absent, as_buffer, stream_of

MAX_EXPERTS = 64
MAX_K = 4


def _forward_impl(logits: torch.Tensor, k: int, return_probs: bool):
    """The forward of both dispatch paths (the registered op and the eager autograd.Function)."""
    lib = _native.native()
    if (lib is None or logits.is_cuda) and _validate.finite_checks_enabled():
        _validate.check_gating_logits("logits", logits, k)  # the CPU kernel checks as it reads
    if lib is None:
        _native.warn_fallback("topk_gating")
        w, i, p = _reference.topk_gating(logits, k, return_probs)
        return w, i, p if p is not None else logits.new_empty(0)
    T, E = logits.shape
    weights = torch.empty(T, k, dtype=logits.dtype, device=logits.device)
    indices = torch.empty(T, k, dtype=torch.int64, device=logits.device)
    probs = torch.empty(T, E, dtype=logits.dtype, device=logits.device) if return_probs else logits.new_empty(0)
    bad = lib.topk_gating_forward(as_buffer(lib, logits), k, as_buffer(lib, weights), as_buffer(lib, indices),
                                  as_buffer(lib, probs) if return_probs else absent(lib), stream_of(logits))
    if bad and _validate.finite_checks_enabled():
        _validate.check_gating_logits("logits", logits, k)  # names the cause
        _validate.raise_nonfinite("logits")
    return weights, indices, probs


@torch.library.custom_op("fer_edge::topk_gating", mutates_args=())
def _gating_op(logits: torch.Tensor, k: int, return_probs: bool) -> tuple[torch.Tensor, torch.Tensor, torch.Tensor]:
    return _forward_impl(logits, k, return_probs)


@_gating_op.register_fake
def _(logits, k, return_probs):
    T, E = logits.shape
    probs = logits.new_empty(T, E) if return_probs else logits.new_empty(0)
    return logits.new_empty(T, k), logits.new_empty(T, k, dtype=torch.int64), probs


def _backward_impl(grad_weights: torch.Tensor, weights: torch.Tensor, indices: torch.Tensor,
                   grad_probs: torch.Tensor, probs: torch.Tensor, num_experts: int) -> torch.Tensor:
    T = weights.shape[0]
    with_probs = probs.numel() > 0
    lib = _native.native()
    if lib is None:
        # d softmax over the kept logits, scattered back; plus d full softmax when present.
        dot = (grad_weights * weights).sum(-1, keepdim=True)
        g = torch.zeros(T, num_experts, dtype=weights.dtype, device=weights.device)
        g.scatter_(1, indices, weights * (grad_weights - dot))
        if with_probs:
            g += probs * (grad_probs - (grad_probs * probs).sum(-1, keepdim=True))
        return g
    grad_logits = torch.empty(T, num_experts, dtype=weights.dtype, device=weights.device)
    lib.topk_gating_backward(
        as_buffer(lib, grad_weights), as_buffer(lib, weights), as_buffer(lib, indices),
        as_buffer(lib, grad_probs) if with_probs else absent(lib),
        as_buffer(lib, probs) if with_probs else absent(lib),
        as_buffer(lib, grad_logits), stream_of(weights))
    return grad_logits


@torch.library.custom_op("fer_edge::topk_gating_backward", mutates_args=())
def _gating_backward_op(grad_weights: torch.Tensor, weights: torch.Tensor, indices: torch.Tensor,
                        grad_probs: torch.Tensor, probs: torch.Tensor, num_experts: int) -> torch.Tensor:
    return _backward_impl(grad_weights, weights, indices, grad_probs, probs, num_experts)


@_gating_backward_op.register_fake
def _(grad_weights, weights, indices, grad_probs, probs, num_experts):
    return weights.new_empty(weights.shape[0], num_experts)


def _setup_context(ctx, inputs, output):
    logits, _, _ = inputs
    weights, indices, probs = output
    ctx.save_for_backward(weights, indices, probs)
    ctx.num_experts = logits.shape[1]


def _backward_args(ctx, grad_weights, grad_probs):
    weights, indices, probs = ctx.saved_tensors
    if grad_weights is None:
        grad_weights = torch.zeros_like(weights)
    if probs.numel() == 0 or grad_probs is None:
        grad_probs, probs = weights.new_empty(0), weights.new_empty(0)
    return grad_weights.contiguous(), weights, indices, grad_probs.contiguous(), probs, ctx.num_experts


def _backward(ctx, grad_weights, grad_indices, grad_probs):
    return _gating_backward_op(*_backward_args(ctx, grad_weights, grad_probs)), None, None


_gating_op.register_autograd(_backward, setup_context=_setup_context)


class _EagerGating(torch.autograd.Function):
    """The same kernel calls without torch.library's Python dispatch (about 0.1 ms per call on
    CPU, forward and backward each): LEAF routes a few hundred tokens per step, where that
    overhead alone made the native op slower than plain torch. torch.compile and opcheck keep
    using the registered op.

    Small CPU calls stay on the kernel. A torch path below a size threshold (with the checks that
    keep this op's contract: ties to the lower index, non-finite logits) was tried twice and lost
    forward + backward (128 tokens x 8 experts, 1 thread, 315 vs 260 us). What made small calls
    slow was a fixed cost in the native core: every call re-read the CPU count from /sys (13 us of
    a 14 us one-token call); read once now, plus no reshapes for 2-D logits. Since then (2026-12-04
    sweep, 1 thread, fwd + bwd) the kernel beats bare torch topk + softmax at LEAF's 128 tokens,
    145 vs 168 us, and from 256 up (391 vs 1350 us at 4,096), and ties it at 64 (145 vs 139 us)
    (benchmarks/results/leaf/step-2thread.json)."""

    @staticmethod
    def forward(ctx, logits, k, return_probs):
        out = _forward_impl(logits, k, return_probs)
        _setup_context(ctx, (logits, k, return_probs), out)
        ctx.mark_non_differentiable(out[1])
        return out

    @staticmethod
    def backward(ctx, grad_weights, grad_indices, grad_probs):
        return _backward_impl(*_backward_args(ctx, grad_weights, grad_probs)), None, None


def topk_gating(logits: torch.Tensor, k: int = 2, return_probs: bool = False):
    """Top-k gating for a mixture of experts (LEAF, methods.md §4).

    softmax over the experts, keep the k largest, renormalise over them (equal to a softmax
    over the kept logits). Differentiable in `logits` through the weights and, when requested,
    the full probabilities (for a load-balancing loss).

    Args:
        logits: [..., E] float32/float64 (float16/bfloat16 are computed in float32 and cast
            back), E <= 64. -inf masks an expert (every row must keep k finite logits); NaN
            and +inf are errors, on every device.
        k: experts kept per token, 1 <= k <= min(4, E).
        return_probs: also return the full softmax [..., E].

    Returns:
        weights [..., k] (sum to 1), indices [..., k] int64 sorted by logit descending with ties
        to the lower expert index, and probs [..., E] or None.

    >>> import torch
    >>> w, i, _ = topk_gating(torch.tensor([[0.0, 2.0, 1.0, 2.0]]), k=2)
    >>> i.tolist(), [round(v, 3) for v in w[0].tolist()]
    ([[1, 3]], [0.5, 0.5])
    """
    _validate.tensor("logits", logits, ndim=range(1, 16), dtypes=(torch.float32, torch.float64, torch.float16,
                                                                   torch.bfloat16), layout="[..., E]")
    E = logits.shape[-1]
    if E > MAX_EXPERTS:
        raise ValueError(f"logits: expected at most {MAX_EXPERTS} experts in the last dim, got shape {tuple(logits.shape)}")
    _validate.positive_int("k", k, maximum=min(MAX_K, E))
    if not isinstance(return_probs, bool):
        raise TypeError(f"return_probs: expected a bool, got {type(return_probs).__name__}")
    # (is_in_onnx_export costs ~3 us; the TorchScript exporter always traces, so ask only then)
    if torch.compiler.is_exporting() or (torch.jit.is_tracing() and torch.onnx.is_in_onnx_export()):
        # Exported graphs get standard ops, never a custom node: ONNX TopK breaks ties toward the
        # lower index, as this op does (stable sort, the reference's way, has no ONNX form).
        vals, idx = torch.topk(logits, k, dim=-1, largest=True, sorted=True)
        return torch.softmax(vals, -1), idx, (torch.softmax(logits, -1) if return_probs else None)
    flat = logits.dim() == 2  # the usual [tokens, E]: no reshapes (each ~2 us on a ~20 us call)
    x = logits if flat else logits.reshape(-1, E)
    low_precision = x.dtype in (torch.float16, torch.bfloat16)
    if low_precision:
        x = x.float()
    op = _gating_op if torch.compiler.is_compiling() else _EagerGating.apply
    w, i, p = op(x if x.is_contiguous() else x.contiguous(), k, return_probs)
    if low_precision:
        w, p = w.to(logits.dtype), p.to(logits.dtype)
    if not flat:
        lead = logits.shape[:-1]
        w, i, p = w.reshape(*lead, k), i.reshape(*lead, k), (p.reshape(*lead, E) if return_probs else p)
    return w, i, (p if return_probs else None)
