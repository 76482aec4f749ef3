"""The base class every backend shares: load + metadata checks, a validating `infer`, close."""
from __future__ import annotations

from pathlib import Path

import numpy as np

from fer_edge import metadata as md


class BackendError(ValueError):
    """A model file that cannot be used: missing, corrupt, unsupported or inconsistent."""


class Backend:
    """Runs one exported fer_edge model on batches of preprocessed faces.

    `infer(batch)` takes float32 [N, C, H, W] raw pixels (0-255, colour order per metadata;
    the model normalises inside its graph) and returns logits [N, num_classes] float32.
    Models whose metadata says `needs_landmarks` also take `landmarks` [N, 5, 2] float32 (x, y
    in pixels of the model input); multi-head models (metadata extras "classifiers") return
    [N, heads, num_classes].
    Subclasses implement `_load() -> metadata dict` and `_infer(batch, landmarks) -> logits`.
    """

    name = "backend"

    def __init__(self, path: str | Path, threads: int | None = None, device: str = "cpu"):
        self.path = Path(path)
        if not self.path.is_file():
            raise FileNotFoundError(f"model file {self.path} does not exist")
        if self.path.stat().st_size == 0:
            raise BackendError(f"{self.path}: empty model file")
        self.threads, self.device = threads, device
        try:
            self.meta = md.validate(self._load(), str(self.path))
        except md.MetadataError:
            raise
        except (BackendError, FileNotFoundError):
            raise
        except Exception as exc:  # the runtime's own parse errors, in its own words
            raise BackendError(f"{self.path}: {self.name} could not load the model ({type(exc).__name__}: "
                               f"{str(exc).strip().splitlines()[0][:300] if str(exc).strip() else ''})") from exc

    # metadata views
    @property
    def classes(self) -> list[str]:
        return list(self.meta["classes"])

    @property
    def input_shape(self) -> tuple[int, int, int]:
        c, h, w = self.meta["input"]
        return c, h, w

    @property
    def needs_landmarks(self) -> bool:
        return bool(self.meta.get("needs_landmarks", False))

    @property
    def heads(self) -> int:
        """Classifiers per face (1 for ordinary models)."""
        return len((self.meta.get("extras") or {}).get("classifiers", [])) or 1

    def _check_landmarks(self, landmarks, n: int) -> np.ndarray | None:
        if not self.needs_landmarks:
            if landmarks is not None:
                raise ValueError(f"{self.path.name} takes no landmarks")
            return None
        if landmarks is None:
            raise ValueError(f"{self.path.name} needs landmarks [N, 5, 2] with the faces (method {self.meta['method']})")
        lm = np.asarray(landmarks)
        if lm.dtype.kind not in "fiu":
            raise TypeError(f"landmarks: expected numbers, got {lm.dtype}")
        lm = lm.astype(np.float32)
        if lm.shape != (n, 5, 2):
            raise ValueError(f"landmarks: expected shape [{n}, 5, 2], got {tuple(lm.shape)}")
        if not np.isfinite(lm).all():
            raise ValueError("landmarks contain NaN or infinity")
        return np.ascontiguousarray(lm)

    def infer(self, batch: np.ndarray, landmarks: np.ndarray | None = None) -> np.ndarray:
        if not isinstance(batch, np.ndarray):
            raise TypeError(f"batch: expected a numpy array [N, C, H, W], got {type(batch).__name__}")
        if batch.dtype == np.uint8:
            batch = batch.astype(np.float32)
        if batch.dtype != np.float32:
            raise TypeError(f"batch: expected float32 (or uint8) pixels, got {batch.dtype}")
        c, h, w = self.input_shape
        if batch.ndim != 4 or batch.shape[1:] != (c, h, w) or batch.shape[0] < 1:
            raise ValueError(f"batch: expected shape [N>=1, {c}, {h}, {w}], got {tuple(batch.shape)}")
        lm = self._check_landmarks(landmarks, batch.shape[0])
        out = self._infer(np.ascontiguousarray(batch), lm)
        out = np.asarray(out, dtype=np.float32)
        return out.reshape(batch.shape[0], self.heads, -1) if self.heads > 1 else out.reshape(batch.shape[0], -1)

    def _load(self) -> dict:
        raise NotImplementedError

    def _infer(self, batch: np.ndarray, landmarks: np.ndarray | None) -> np.ndarray:
        raise NotImplementedError

    def close(self) -> None:
        pass

    def __enter__(self):
        return self

    def __exit__(self, *exc):
        self.close()

    def __repr__(self) -> str:
        return f"{type(self).__name__}({str(self.path)!r}, {self.meta['format']}/{self.meta['precision']})"


def payload_digest(data: bytes, recorded: str) -> str:
    """sha256 of a file whose metadata records its own hash: the recorded digest is swapped back
    for the zero placeholder it replaced when the hash was taken."""
    placeholder = b"0" * 64
    if data.count(recorded.encode()) != 1:
        return md.sha256_bytes(data)  # cannot be the file we wrote; the comparison will fail
    return md.sha256_bytes(data.replace(recorded.encode(), placeholder))
