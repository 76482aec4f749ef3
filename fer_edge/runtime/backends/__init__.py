"""Inference backends, chosen by file suffix: .onnx ONNX Runtime (or OpenVINO when asked),
.xml OpenVINO, .engine/.plan TensorRT, .pt a fer_edge checkpoint through PyTorch (training side
only). Heavy runtimes are imported when a backend is opened."""
from __future__ import annotations

from pathlib import Path

from fer_edge.runtime.backends.base import Backend, BackendError

_BY_NAME = {
    "onnxruntime": ("fer_edge.runtime.backends.onnxruntime", "OnnxRuntimeBackend"),
    "openvino": ("fer_edge.runtime.backends.openvino", "OpenVINOBackend"),
    "tensorrt": ("fer_edge.runtime.backends.tensorrt", "TensorRTBackend"),
    "torch": ("fer_edge.runtime.backends.torch_checkpoint", "TorchCheckpointBackend"),
}
_BY_SUFFIX = {".onnx": "onnxruntime", ".xml": "openvino", ".engine": "tensorrt", ".plan": "tensorrt", ".pt": "torch"}


def backend_for(path: str | Path, backend: str = "auto") -> str:
    suffix = Path(path).suffix.lower()
    if backend == "auto":
        if suffix not in _BY_SUFFIX:
            raise BackendError(f"{path}: unknown model suffix {suffix!r}; expected one of {', '.join(_BY_SUFFIX)}")
        return _BY_SUFFIX[suffix]
    if backend not in _BY_NAME:
        raise BackendError(f"unknown backend {backend!r}; valid: auto, {', '.join(_BY_NAME)}")
    if backend == "openvino" and suffix not in (".xml", ".onnx"):
        raise BackendError(f"OpenVINO reads .xml or .onnx models, not {suffix!r}")
    return backend


def open_backend(path: str | Path, backend: str = "auto", **kwargs) -> Backend:
    """Loads a model file with the backend its suffix (or `backend`) names."""
    import importlib

    name = backend_for(path, backend)
    module, cls = _BY_NAME[name]
    return getattr(importlib.import_module(module), cls)(path, **kwargs)


__all__ = ["Backend", "BackendError", "open_backend", "backend_for"]
