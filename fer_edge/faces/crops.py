"""Aligned face crops from a camera's images or video: the unlabelled target folder that AGLRLS
adapts to (`data.target=unlabelled:<folder>`).

Crops are aligned onto the `fer2013` template, the framing of FERPlus's own 48x48 crops, so the
target faces are framed like the source faces the model learnt from.
"""
from __future__ import annotations

from pathlib import Path
from typing import Iterator

import cv2
import numpy as np

from fer_edge.paths import IMAGE_SUFFIXES
from fer_edge.faces.align import align
from fer_edge.faces.detector import FaceDetector

VIDEO_SUFFIXES = {".mp4", ".avi", ".mov", ".mkv", ".webm"}


def _frames(source: Path, every: int) -> Iterator[tuple[str, np.ndarray]]:
    """(name, BGR frame) of a video (every `every`-th frame), an image, or every image below a folder."""
    if source.suffix.lower() in VIDEO_SUFFIXES:
        cap = cv2.VideoCapture(str(source))
        if not cap.isOpened():
            raise ValueError(f"{source}: cannot open video")
        k = 0
        try:
            while True:
                ok, frame = cap.read()
                if not ok:
                    break
                if k % every == 0:
                    yield f"{source.stem}_f{k:06d}", frame
                k += 1
        finally:
            cap.release()
        return
    if source.is_dir():
        files = sorted(p for p in source.rglob("*") if p.is_file() and p.suffix.lower() in IMAGE_SUFFIXES)
    elif source.is_file():
        files = [source]
    else:
        raise FileNotFoundError(f"{source} does not exist")
    for f in files:
        img = cv2.imread(str(f), cv2.IMREAD_COLOR)
        if img is None:  # unreadable files are skipped, not fatal: a camera dump may hold a few
            continue
        yield "_".join(f.relative_to(source).with_suffix("").parts) if source.is_dir() else f.stem, img


def crop_faces(source: str | Path, out: str | Path, size: int = 96, every: int = 1, min_score: float = 0.8,
               detector: FaceDetector | None = None) -> dict:
    """Writes <out>/<frame name>_<k>.png for every face found (YuNet score >= min_score) and
    returns counts. Existing crops of the same name are overwritten, so a rerun is idempotent."""
    if every < 1:
        raise ValueError(f"every: expected >= 1, got {every}")
    if size < 16:
        raise ValueError(f"size: expected >= 16, got {size}")
    source, out = Path(source), Path(out)
    detector = detector or FaceDetector()
    out.mkdir(parents=True, exist_ok=True)
    frames = faces = 0
    for name, frame in _frames(source, every):
        frames += 1
        for k, face in enumerate(f for f in detector.detect(frame) if f.score >= min_score):
            crop, _ = align(frame, face.landmarks, size, template_name="fer2013")
            cv2.imwrite(str(out / f"{name}_{k}.png"), crop)
            faces += 1
    if frames == 0:
        raise ValueError(f"{source}: no readable images or frames")
    return {"frames": frames, "faces": faces, "out": str(out)}
