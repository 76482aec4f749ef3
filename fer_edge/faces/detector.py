"""YuNet face detector through OpenCV's FaceDetectorYN: boxes, scores and 5 landmarks.

The weights are never shipped nor downloaded here: `resolve_yunet` looks for them in the
argument, then $FER_EDGE_YUNET, then the cache directory, then the data folder's yunet/.
"""
from __future__ import annotations

import contextlib
import os
import threading
from dataclasses import dataclass
from pathlib import Path

import cv2
import numpy as np

YUNET_FILE = "face_detection_yunet_2023mar.onnx"
YUNET_SHA256 = "8f2383e4dd3cfbb4553ea8718107fc0423210dc964f9f4280604804ed2552fa4"
YUNET_URL = "https://github.com/opencv/opencv_zoo/raw/main/models/face_detection_yunet/face_detection_yunet_2023mar.onnx"
ENV_VAR = "FER_EDGE_YUNET"
OFFLINE_VAR = "FER_EDGE_OFFLINE"  # =1: never fetch (tests, air-gapped devices)


def fetch_yunet(dest: Path, url: str = YUNET_URL, sha256: str = YUNET_SHA256, timeout: float = 30.0) -> Path:
    """Downloads the official YuNet release once into `dest`, checks its sha256, renames it into
    place (a partial or wrong download never becomes the cached file)."""
    import hashlib
    import urllib.request

    dest.parent.mkdir(parents=True, exist_ok=True)
    tmp = dest.with_name(dest.name + ".part")
    with urllib.request.urlopen(url, timeout=timeout) as r:  # noqa: S310 (fixed https URL, or file:// in tests)
        data = r.read()
    digest = hashlib.sha256(data).hexdigest()
    if digest != sha256:
        raise ValueError(f"downloaded YuNet from {url} has sha256 {digest}, expected {sha256}; not used")
    tmp.write_bytes(data)
    os.replace(tmp, dest)
    return dest


def resolve_yunet(path: str | os.PathLike | None = None) -> Path:
    """Path of the YuNet ONNX file: the argument, $FER_EDGE_YUNET, the cache dir, the data folder's
    yunet/; else, unless FER_EDGE_OFFLINE=1, fetched once from the official release (sha256
    checked) into the cache dir. Offline, FileNotFoundError says where to put it."""
    if path is not None:
        p = Path(path)
        if not p.is_file():
            raise FileNotFoundError(f"YuNet model {p} does not exist")
        return p
    from fer_edge.paths import cache_dir, data_root

    if os.environ.get(ENV_VAR):  # an explicit setting is honoured or refused, never passed over
        p = Path(os.environ[ENV_VAR])
        if not p.is_file():
            raise FileNotFoundError(f"{ENV_VAR}={p}: no such file (unset it to use the cache dir or the data folder)")
        return p
    candidates = [cache_dir() / YUNET_FILE]
    root = data_root(required=False)
    if root is not None:
        candidates.append(root / "yunet" / YUNET_FILE)
    for c in candidates:
        if c.is_file():
            return c
    if os.environ.get(OFFLINE_VAR) != "1":
        try:
            return fetch_yunet(cache_dir() / YUNET_FILE)
        except OSError:  # no network: fall through to the instructions below
            pass
    raise FileNotFoundError(
        f"YuNet face-detector weights not found (looked in: {', '.join(map(str, candidates))}). "
        f"Download {YUNET_FILE} (sha256 {YUNET_SHA256}) from {YUNET_URL} and pass its path, "
        f"set {ENV_VAR}=/path/to/{YUNET_FILE}, or copy it into {cache_dir()}."
    )


@dataclass
class Face:
    """One detection in image pixels: box (x, y, w, h), score, landmarks [5, 2] in the order
    image-left eye, image-right eye, nose tip, image-left and image-right mouth corner."""

    box: np.ndarray
    score: float
    landmarks: np.ndarray

    def to_dict(self) -> dict:
        return {"box": self.box.tolist(), "score": self.score, "landmarks": self.landmarks.tolist()}


def as_bgr(image: np.ndarray, name: str = "image") -> np.ndarray:
    """uint8 gray, BGR or BGRA -> contiguous BGR; clear errors for anything else."""
    if not isinstance(image, np.ndarray):
        raise TypeError(f"{name}: expected a numpy array, got {type(image).__name__}")
    if image.dtype != np.uint8:
        raise TypeError(f"{name}: expected dtype uint8, got {image.dtype}")
    if image.size == 0:
        raise ValueError(f"{name}: empty image of shape {image.shape}")
    if image.ndim == 2 or (image.ndim == 3 and image.shape[2] == 1):
        return cv2.cvtColor(image.reshape(image.shape[:2]), cv2.COLOR_GRAY2BGR)
    if image.ndim == 3 and image.shape[2] == 3:
        return np.ascontiguousarray(image)
    if image.ndim == 3 and image.shape[2] == 4:
        return cv2.cvtColor(image, cv2.COLOR_BGRA2BGR)
    raise ValueError(f"{name}: expected shape [H, W], [H, W, 3] or [H, W, 4], got {image.shape}")


@contextlib.contextmanager
def quiet_opencv():
    """OpenCV's own log at ERROR level inside the block (OpenCV 5's dnn warns about its new graph
    engine on every YuNet call: users should read our messages, not that); restored after."""
    logging = getattr(getattr(cv2, "utils", None), "logging", None)
    if logging is None:
        yield
        return
    level = logging.getLogLevel()
    logging.setLogLevel(min(level, logging.LOG_LEVEL_ERROR))
    try:
        yield
    finally:
        logging.setLogLevel(level)


# YuNet finds faces down to about 16-20 px at its input (measured on the shipped group photo:
# all six faces at 17-20 px); the working resolution keeps the smallest face asked for this big
DETECTABLE_FACE = 20


class FaceDetector:
    """YuNet on any image size, thread-safe. YuNet works at camera resolutions: large photos are
    downscaled to `max_side` (a face filling a 2000 px portrait is otherwise missed), and small
    images such as FER's 48x48 crops are upscaled to `min_side`.

    `min_face`: the smallest face (box width in image pixels) that must be found. Detection runs
    at the lowest resolution that still shows such a face at DETECTABLE_FACE pixels: a 640x480
    frame with min_face=40 is searched at 320x240, about 3-4x faster than at full size; faces
    smaller than min_face may be missed. None: the full image (up to max_side)."""

    def __init__(self, model: str | os.PathLike | None = None, score_threshold: float = 0.6,
                 nms_threshold: float = 0.3, top_k: int = 5000, min_side: int = 160, max_side: int = 640,
                 min_face: int | None = 40):
        for key, value in (("score_threshold", score_threshold), ("nms_threshold", nms_threshold)):
            if isinstance(value, bool) or not isinstance(value, (int, float)) or not 0.0 <= value <= 1.0:
                raise ValueError(f"{key}: expected a number in [0, 1], got {value!r}")
        for key, value in (("top_k", top_k), ("min_side", min_side), ("max_side", max_side)):
            if isinstance(value, bool) or not isinstance(value, int) or value < 1:
                raise ValueError(f"{key}: expected an int >= 1, got {value!r}")
        if min_side > max_side:
            raise ValueError(f"min_side ({min_side}) must not exceed max_side ({max_side})")
        if min_face is not None and (isinstance(min_face, bool) or not isinstance(min_face, int) or min_face < 1):
            raise ValueError(f"min_face: expected None or an int >= 1 (pixels), got {min_face!r}")
        self.min_face = min_face
        self.model_path = resolve_yunet(model)
        try:
            with quiet_opencv():
                self._det = cv2.FaceDetectorYN.create(str(self.model_path), "", (320, 320), score_threshold,
                                                      nms_threshold, top_k)
                self._det.setInputSize((64, 64))
                self._det.detect(np.zeros((64, 64, 3), np.uint8))  # a model that is not YuNet fails here, not later
        except cv2.error as exc:
            raise ValueError(f"{self.model_path}: not a YuNet face-detection model ({exc.err.strip() or exc.msg.strip()})") from None
        self.score_threshold, self.min_side, self.max_side = score_threshold, min_side, max_side
        self._lock = threading.Lock()

    def working_scale(self, h: int, w: int) -> float:
        """The factor an h x w image is resized by before YuNet sees it."""
        cap = min(1.0, self.max_side / max(h, w))
        scale = cap if self.min_face is None else min(cap, DETECTABLE_FACE / self.min_face)
        floor = self.min_side / min(h, w)
        if scale < floor:  # never below min_side (YuNet misses a face that fills a tiny image) ...
            scale = floor if cap == 1.0 else min(floor, cap)  # ... unless max_side forbids it
        return scale

    def detect(self, image: np.ndarray) -> list[Face]:
        """Faces in a uint8 gray/BGR/BGRA image, best score first (empty list when none)."""
        img = as_bgr(image)
        h, w = img.shape[:2]
        scale = self.working_scale(h, w)
        if scale != 1.0:
            interp = cv2.INTER_AREA if scale < 1.0 else cv2.INTER_LINEAR
            img = cv2.resize(img, (max(1, round(w * scale)), max(1, round(h * scale))), interpolation=interp)
        with self._lock, quiet_opencv():
            self._det.setInputSize((img.shape[1], img.shape[0]))
            _, rows = self._det.detect(img)
        if rows is None:
            return []
        faces = [Face(box=(r[:4] / scale).astype(np.float32), score=float(r[14]),
                      landmarks=(r[4:14].reshape(5, 2) / scale).astype(np.float32)) for r in rows]
        return sorted(faces, key=lambda f: -f.score)
