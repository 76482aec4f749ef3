"""5-point similarity alignment onto a canonical template, at any output size.

One function serves training crops and runtime frames, so a model sees faces aligned the same
way in both. The template is the ArcFace 112x112 five-point layout, scaled to the output size.
"""
from __future__ import annotations

import cv2
import numpy as np

# image-left eye, image-right eye, nose tip, image-left mouth corner, image-right mouth corner
ARCFACE_112 = np.array([[38.2946, 51.6963], [73.5318, 51.5014], [56.0252, 71.7366],
                        [41.5493, 92.3655], [70.7299, 92.2041]], dtype=np.float32)


# Where the 5 points sit in FER2013/FERPlus's own 48x48 crops: the mean YuNet landmarks over the
# 3,132 detected FERPlus-valid faces (fer_edge.data.landmarks.build on open_dataset("ferplus",
# "valid")). Models trained on those crops see faces framed this way at run time too.
FER2013_48 = np.array([[14.41, 18.11], [32.81, 18.23], [23.22, 28.44], [16.22, 36.17], [31.14, 36.32]], dtype=np.float32)

TEMPLATES = {"arcface": (ARCFACE_112, 112.0), "fer2013": (FER2013_48, 48.0)}


def template(size: int = 112, name: str = "arcface") -> np.ndarray:
    """The 5 canonical points [5, 2] of template `name` for a size x size output."""
    if size < 8:
        raise ValueError(f"size must be >= 8, got {size}")
    if name not in TEMPLATES:
        raise ValueError(f"template: expected one of {tuple(TEMPLATES)}, got {name!r}")
    pts, base = TEMPLATES[name]
    return pts * (size / base)


def _points(name: str, pts) -> np.ndarray:
    p = np.asarray(pts, dtype=np.float32)
    if p.shape != (5, 2):
        raise ValueError(f"{name}: expected 5 landmarks of shape (5, 2), got {p.shape}")
    if not np.isfinite(p).all():
        raise ValueError(f"{name}: landmarks contain NaN or infinity")
    return p


def similarity(src, dst) -> np.ndarray:
    """Least-squares similarity (rotation, uniform scale, translation) mapping src onto dst, as
    a 2x3 matrix."""
    s, d = _points("src", src), _points("dst", dst)
    # RANSAC with a threshold no point can exceed keeps all 5 points, and the Levenberg-Marquardt
    # refinement then gives the least-squares fit.
    m, _ = cv2.estimateAffinePartial2D(s, d, method=cv2.RANSAC, ransacReprojThreshold=1e6, refineIters=50)
    if m is None:
        raise ValueError("landmarks are degenerate (coincident points): no similarity transform exists")
    return m


def align(image: np.ndarray, landmarks, size: int = 112, border: int = cv2.BORDER_REPLICATE,
          template_name: str = "arcface") -> tuple[np.ndarray, np.ndarray]:
    """(aligned size x size crop, the 2x3 matrix from image to crop)."""
    if not isinstance(image, np.ndarray) or image.size == 0:
        raise ValueError("image: expected a non-empty numpy array")
    m = similarity(landmarks, template(size, template_name))
    return cv2.warpAffine(image, m, (size, size), flags=cv2.INTER_LINEAR, borderMode=border), m


def invert(m: np.ndarray) -> np.ndarray:
    """The crop -> image matrix of an image -> crop matrix."""
    return cv2.invertAffineTransform(np.asarray(m, dtype=np.float64))


def transform_points(pts, m: np.ndarray) -> np.ndarray:
    """Points [N, 2] through a 2x3 matrix."""
    p = np.asarray(pts, dtype=np.float64).reshape(-1, 2)
    return (p @ np.asarray(m, dtype=np.float64)[:, :2].T + np.asarray(m, dtype=np.float64)[:, 2]).astype(np.float32)
