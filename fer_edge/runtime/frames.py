"""Frame intake: paths, gray/BGR/BGRA, 16-bit and float frames -> uint8 BGR, or a clear error."""
from __future__ import annotations

from pathlib import Path

import cv2
import numpy as np

from fer_edge.faces.detector import as_bgr


def to_bgr(frame, name: str = "frame") -> np.ndarray:
    """uint8 BGR [H, W, 3]. Paths are read with OpenCV. Documented conversions: gray and BGRA
    become BGR; uint16 keeps its top 8 bits. Float frames are refused (their scale is ambiguous)."""
    if isinstance(frame, (str, Path)):
        path = Path(frame)
        if not path.is_file():
            raise FileNotFoundError(f"{name}: {path} does not exist")
        img = cv2.imread(str(path), cv2.IMREAD_UNCHANGED)
        if img is None:
            raise ValueError(f"{name}: {path} is not a readable image")
        frame = img
    if frame is None:
        raise TypeError(f"{name}: got None (a camera that returned no frame?)")
    if not isinstance(frame, np.ndarray):
        raise TypeError(f"{name}: expected a numpy array or a path, got {type(frame).__name__}")
    if frame.size == 0:
        raise ValueError(f"{name}: empty frame of shape {frame.shape}")
    if frame.dtype == np.uint16:
        frame = (frame >> 8).astype(np.uint8)
    elif frame.dtype != np.uint8:
        if np.issubdtype(frame.dtype, np.floating) and not np.isfinite(frame).all():
            raise ValueError(f"{name}: float frame with NaN or infinity")
        raise TypeError(f"{name}: expected uint8 (or uint16) pixels, got {frame.dtype}; convert float images with "
                        "(img * 255).clip(0, 255).astype(np.uint8)")
    return as_bgr(frame, name)  # gray / BGR / BGRA, as the detector takes them
