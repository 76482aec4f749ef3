"""Inference backends, chosen by file suffix: .onnx ONNX Runtime (or OpenVINO when asked),
.xml OpenVINO, .engine/.plan TensorRT. Heavy runtimes are imported when a backend is opened.

More backends plug in through the `fer_edge.backends` entry-point group (`name =
"module:Class"`, the class naming its `suffixes`) or `register_backend`; the training side
registers the `.pt` checkpoint backend that way, so the runtime never imports torch or training
code to know about it."""
from __future__ import annotations

from importlib import import_module, metadata
from pathlib import Path

from fer_edge.runtime.backends.base import Backend, BackendError

# name -> ("module:Class", suffixes)
_REGISTRY: dict[str, tuple[str, tuple[str, ...]]] = {
    "onnxruntime": ("fer_edge.runtime.backends.onnxruntime:OnnxRuntimeBackend", (".onnx",)),
    "openvino": ("fer_edge.runtime.backends.openvino:OpenVINOBackend", (".xml",)),
    "tensorrt": ("fer_edge.runtime.backends.tensorrt:TensorRTBackend", (".engine", ".plan")),
}
_plugins_loaded = False


def register_backend(name: str, target: str, suffixes) -> None:
    """Adds a backend: `target` is "module:Class" (imported when a model is opened with it)."""
    _REGISTRY[name] = (target, tuple(s.lower() for s in suffixes))


def _load_plugins() -> None:
    global _plugins_loaded
    if _plugins_loaded:
        return
    _plugins_loaded = True
    for ep in metadata.entry_points(group="fer_edge.backends"):
        if ep.name in _REGISTRY:
            continue
        try:
            cls = ep.load()
        except ImportError:  # a plugin whose dependencies are not installed is simply absent
            continue
        register_backend(ep.name, ep.value, getattr(cls, "suffixes", ()))


def backends() -> dict[str, tuple[str, ...]]:
    """Registered backend names -> the suffixes they open."""
    _load_plugins()
    return {name: suffixes for name, (_, suffixes) in _REGISTRY.items()}


def backend_for(path: str | Path, backend: str = "auto") -> str:
    suffix = Path(path).suffix.lower()
    known = backends()
    if backend == "auto":
        for name, suffixes in known.items():
            if suffix in suffixes:
                return name
        all_suffixes = sorted({s for sfx in known.values() for s in sfx})
        raise BackendError(f"{path}: unknown model suffix {suffix!r}; expected one of {', '.join(all_suffixes)}")
    if backend not in known:
        raise BackendError(f"unknown backend {backend!r}; valid: auto, {', '.join(known)}")
    readable = known[backend] + ((".onnx",) if backend == "openvino" else ())  # OpenVINO also reads ONNX
    if suffix not in readable:
        raise BackendError(f"{path}: the {backend} backend reads {' or '.join(readable)} files, not {suffix!r}")
    return backend


def open_backend(path: str | Path, backend: str = "auto", **kwargs) -> Backend:
    """Loads a model file with the backend its suffix (or `backend`) names; a
    triton://host:port/model URL opens the Triton client backend."""
    from fer_edge.runtime.backends.triton import is_url

    if is_url(path):
        if backend not in ("auto", "triton"):
            raise BackendError(f"{path}: a Triton URL is served by the triton backend, not {backend!r}")
        from fer_edge.runtime.backends.triton import TritonBackend

        return TritonBackend(path, **kwargs)
    name = backend_for(path, backend)
    module, _, cls = _REGISTRY[name][0].partition(":")
    return getattr(import_module(module), cls)(path, **kwargs)


__all__ = ["Backend", "BackendError", "open_backend", "backend_for", "backends", "register_backend"]
