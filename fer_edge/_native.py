"""Loads the compiled core `fer_edge._C` once, lazily, and says what it holds.

When the extension is missing (a source checkout that was never built, a broken install), the
ops fall back to their PyTorch twins in `fer_edge.ops._reference`; that fallback is announced
once with a warning and shows in `build_info()`, never silently.
"""
from __future__ import annotations

import importlib
import warnings
from types import ModuleType

_module: ModuleType | None = None
_error: str | None = None
_loaded = False
_warned = False


def native() -> ModuleType | None:
    """The `fer_edge._C` module, or None when it cannot be imported."""
    global _module, _error, _loaded
    if not _loaded:
        _loaded = True
        try:
            _module = importlib.import_module("fer_edge._C")
        except ImportError as exc:  # not built, or built for another Python/ABI
            _module, _error = None, f"{type(exc).__name__}: {exc}"
    return _module


def require() -> ModuleType:
    """The native module, or an ImportError saying how to build it."""
    mod = native()
    if mod is None:
        raise ImportError(
            "fer_edge._C (the compiled kernels) is not available: "
            f"{_error}. Install the package with `pip install .` from the repository root "
            "(it builds the C++/CUDA core), and run from outside the source tree."
        )
    return mod


def warn_fallback(op: str) -> None:
    """Announces, once per process, that ops run on their PyTorch reference."""
    global _warned
    if not _warned:
        _warned = True
        warnings.warn(
            f"fer_edge._C is not available ({_error}); {op} and the other fer_edge ops run on "
            "their PyTorch reference implementations (slow). See fer_edge.build_info().",
            RuntimeWarning,
            stacklevel=3,
        )


def build_info() -> dict:
    """What was compiled: kernels on CPU and CUDA, CUDA archs, compiler, threading.

    >>> info = build_info()
    >>> sorted(k for k in ("native", "cuda", "cpu_kernels") if k in info)
    ['cpu_kernels', 'cuda', 'native']
    """
    mod = native()
    if mod is None:
        return {
            "native": False,
            "error": _error,
            "cpu_kernels": [],
            "cuda": False,
            "cuda_kernels": [],
            "fallback": "pytorch reference (fer_edge.ops._reference)",
        }
    info = dict(mod.build_info())
    info["native"] = True
    return info
