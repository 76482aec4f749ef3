"""The base class every backend shares: load + metadata checks, one validating `infer` driven by
the inputs the model declares, close."""
from __future__ import annotations

import threading
from pathlib import Path

import numpy as np

from fer_edge import metadata as md


class BackendError(ValueError):
    """A model file that cannot be used: missing, corrupt, unsupported or inconsistent."""


def cause(exc: Exception, limit: int = 600) -> str:
    """A runtime's error in one line, with its reason: OpenVINO puts "Exception from
    src/...cpp:84:" first and the reason ("Incorrect weights in bin file!") on later lines."""
    lines = [ln.strip() for ln in str(exc).splitlines() if ln.strip()]
    useful = [ln for ln in lines if not (ln.startswith("Exception from ") and ln.endswith(":"))]
    text = " | ".join(useful or lines)
    return text[:limit] + ("..." if len(text) > limit else "")


class Backend:
    """Runs one exported fer_edge model on batches of preprocessed faces.

    `infer(batch, **inputs)` takes float32 [N, C, H, W] raw pixels (0-255, colour order per
    metadata; the model normalises inside its graph) and every further input the metadata
    declares, by name (AGLRLS: `landmarks` [N, 5, 2], x and y in pixels of the model input). It
    returns logits [N, num_classes] float32, or [N, heads, num_classes] for multi-head models.
    Inputs are checked here, once, for every backend; subclasses implement
    `_load() -> metadata dict` and `_infer(feeds: {input name: array}) -> logits`, binding inputs
    by name. Calls are serialised with a lock: the runtimes' inference requests and TensorRT's
    execution context are not safe to share between threads, and the Recognizer is.
    """

    name = "backend"

    def __init__(self, path: str | Path, threads: int | None = None, device: str = "cpu"):
        self.path = Path(path)
        if not self.path.is_file():
            raise FileNotFoundError(f"model file {self.path} does not exist")
        if self.path.stat().st_size == 0:
            raise BackendError(f"{self.path}: empty model file")
        if threads is not None and (isinstance(threads, bool) or not isinstance(threads, int) or threads < 1):
            raise ValueError(f"threads: expected None or an int >= 1, got {threads!r}")
        self.threads, self.device = threads, device
        self._infer_lock = threading.Lock()
        try:
            self.meta = md.validate(self._load(), str(self.path))
        except md.MetadataError:
            raise
        except (BackendError, FileNotFoundError):
            raise
        except Exception as exc:  # the runtime's own parse errors, in its own words
            # a corrupt or partly copied file, or one exported before a model-code change that this
            # runtime version rejects: either way the fix is the same, so say it
            raise BackendError(f"{self.path}: {self.name} could not load the model ({type(exc).__name__}: "
                               f"{cause(exc)}); if the file is intact it may come from another fer_edge or "
                               f"{self.name} version: re-export it from its checkpoint (fer-edge export)") from exc

    # metadata views
    @property
    def classes(self) -> list[str]:
        return list(self.meta["classes"])

    @property
    def input_shape(self) -> tuple[int, int, int]:
        c, h, w = self.meta["input"]
        return c, h, w

    @property
    def inputs(self) -> list[dict]:
        """The graph inputs in order: {"name", "shape"} with "N" for the batch."""
        return list(self.meta["inputs"])

    @property
    def extra_inputs(self) -> list[str]:
        """Names of the inputs after the pixels (e.g. ["landmarks"])."""
        return [i["name"] for i in self.meta["inputs"][1:]]

    @property
    def needs_landmarks(self) -> bool:
        return "landmarks" in self.extra_inputs

    @property
    def heads(self) -> int:
        """Classifiers per face (1 for ordinary models)."""
        return len(self.meta["heads"]) or 1

    def _check_input(self, spec: dict, value, n: int) -> np.ndarray:
        name = spec["name"]
        if value is None:
            raise ValueError(f"{self.path.name} needs {name} {['N' if d == 'N' else d for d in spec['shape']]} "
                             f"with the faces (method {self.meta['method']})")
        arr = np.asarray(value)
        if arr.dtype.kind not in "fiu":
            raise TypeError(f"{name}: expected numbers, got {arr.dtype}")
        arr = arr.astype(np.float32)
        expected = (n, *spec["shape"][1:])
        if arr.shape != expected:
            raise ValueError(f"{name}: expected shape [{', '.join(map(str, expected))}], got {list(arr.shape)}")
        if not np.isfinite(arr).all():
            raise ValueError(f"{name} contain NaN or infinity")
        return np.ascontiguousarray(arr)

    def infer(self, batch: np.ndarray, landmarks: np.ndarray | None = None, **inputs) -> np.ndarray:
        if not isinstance(batch, np.ndarray):
            raise TypeError(f"batch: expected a numpy array [N, C, H, W], got {type(batch).__name__}")
        if batch.dtype == np.uint8:
            batch = batch.astype(np.float32)
        if batch.dtype != np.float32:
            raise TypeError(f"batch: expected float32 (or uint8) pixels, got {batch.dtype}")
        c, h, w = self.input_shape
        if batch.ndim != 4 or batch.shape[1:] != (c, h, w) or batch.shape[0] < 1:
            raise ValueError(f"batch: expected shape [N>=1, {c}, {h}, {w}], got {tuple(batch.shape)}")
        if landmarks is not None:
            inputs["landmarks"] = landmarks
        unknown = sorted(set(inputs) - set(self.extra_inputs))
        if unknown:
            takes = ", ".join(self.extra_inputs) or "only the pixels"
            raise ValueError(f"{self.path.name} takes no {', '.join(unknown)} (its inputs: {takes})")
        n = batch.shape[0]
        feeds = {"pixels": np.ascontiguousarray(batch)}
        for spec in self.meta["inputs"][1:]:
            feeds[spec["name"]] = self._check_input(spec, inputs.get(spec["name"]), n)
        with self._infer_lock:
            out = self._infer(feeds)
        out = np.asarray(out, dtype=np.float32)
        if not np.isfinite(out).all():
            bad = int((~np.isfinite(out.reshape(n, -1))).any(1).sum())
            raise BackendError(f"{self.path.name}: the model gave NaN or infinite outputs for {bad} of {n} faces; the "
                               "model itself is broken (trained with a diverging loss, or a bad conversion)")
        return out.reshape(n, self.heads, -1) if self.heads > 1 else out.reshape(n, -1)

    def _load(self) -> dict:
        raise NotImplementedError

    def _infer(self, feeds: dict[str, np.ndarray]) -> np.ndarray:
        raise NotImplementedError

    def close(self) -> None:
        pass

    def __enter__(self):
        return self

    def __exit__(self, *exc):
        self.close()

    def __repr__(self) -> str:
        return f"{type(self).__name__}({str(self.path)!r}, {self.meta['format']}/{self.meta['precision']})"
