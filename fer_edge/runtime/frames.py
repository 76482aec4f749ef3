"""Frame intake: paths, gray/BGR/BGRA, 16-bit and float frames -> uint8 BGR, or a clear error."""
from __future__ import annotations

from pathlib import Path

import cv2
import numpy as np

from fer_edge.faces.detector import as_bgr


def read_image(path: Path, name: str = "frame") -> np.ndarray:
    """An image file as OpenCV decodes it, or a clear error. Truncated JPEGs (no end-of-image
    marker) are refused: OpenCV would hand back a half-decoded picture with grey rows, and a
    prediction on it looks like any other."""
    if path.is_dir():
        raise ValueError(f"{name}: {path} is a directory, not an image file")
    if not path.is_file():
        raise FileNotFoundError(f"{name}: {path} does not exist")
    data = np.fromfile(str(path), np.uint8)
    if data.size == 0:
        raise ValueError(f"{name}: {path} is an empty file")
    if data[:2].tobytes() == b"\xff\xd8" and b"\xff\xd9" not in data[-64:].tobytes():
        raise ValueError(f"{name}: {path} is a truncated JPEG (no end-of-image marker)")
    try:
        img = cv2.imdecode(data, cv2.IMREAD_UNCHANGED)
    except cv2.error as exc:  # e.g. a header declaring more pixels than OpenCV's limit
        raise ValueError(f"{name}: {path} cannot be decoded ({exc.err.strip() or exc.msg.strip()})") from None
    if img is None:
        raise ValueError(f"{name}: {path} is not a readable image")
    return img


def to_bgr(frame, name: str = "frame") -> np.ndarray:
    """uint8 BGR [H, W, 3]. Paths are read with OpenCV. Documented conversions: gray and BGRA
    become BGR; uint16 keeps its top 8 bits. Float frames are refused (their scale is ambiguous)."""
    if isinstance(frame, (str, Path)):
        frame = read_image(Path(frame), name)
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
