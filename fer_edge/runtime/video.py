"""Video: faces tracked across frames (greedy IoU matching) with their class probabilities
smoothed over time (exponential moving average per track)."""
from __future__ import annotations

from dataclasses import dataclass, field
from pathlib import Path
from typing import Iterable, Iterator

import numpy as np

from fer_edge.runtime.results import FaceResult


def iou(a: np.ndarray, b: np.ndarray) -> float:
    ax1, ay1, ax2, ay2 = a[0], a[1], a[0] + a[2], a[1] + a[3]
    bx1, by1, bx2, by2 = b[0], b[1], b[0] + b[2], b[1] + b[3]
    iw, ih = max(0.0, min(ax2, bx2) - max(ax1, bx1)), max(0.0, min(ay2, by2) - max(ay1, by1))
    inter = iw * ih
    union = a[2] * a[3] + b[2] * b[3] - inter
    return float(inter / union) if union > 0 else 0.0


@dataclass
class Track:
    id: int
    box: np.ndarray
    probs: np.ndarray
    missed: int = 0
    age: int = 1


@dataclass
class FaceTracker:
    """Assigns track ids and smooths probabilities. `smoothing` in [0, 1): weight of the past
    (0 = no smoothing); a track unseen for `max_missed` frames is dropped (memory stays flat)."""

    classes: list
    smoothing: float = 0.6
    min_iou: float = 0.3
    max_missed: int = 10
    tracks: list = field(default_factory=list)
    next_id: int = 0

    def update(self, faces: list[FaceResult]) -> list[FaceResult]:
        if not 0.0 <= self.smoothing < 1.0:
            raise ValueError(f"smoothing must be in [0, 1), got {self.smoothing}")
        pairs = sorted(((iou(t.box, f.box), ti, fi) for ti, t in enumerate(self.tracks) for fi, f in enumerate(faces)
                        if f.box is not None), reverse=True)
        used_t, used_f, assign = set(), set(), {}
        for score, ti, fi in pairs:
            if score < self.min_iou or ti in used_t or fi in used_f:
                continue
            used_t.add(ti)
            used_f.add(fi)
            assign[fi] = ti
        out = []
        for fi, f in enumerate(faces):
            p = np.array([f.probabilities[c] for c in self.classes])
            if fi in assign:
                t = self.tracks[assign[fi]]
                t.probs = self.smoothing * t.probs + (1 - self.smoothing) * p
                t.box, t.missed, t.age = f.box, 0, t.age + 1
            else:
                t = Track(self.next_id, f.box, p)
                self.next_id += 1
                self.tracks.append(t)
                used_t.add(len(self.tracks) - 1)
            smoothed = {c: float(v) for c, v in zip(self.classes, t.probs)}
            out.append(FaceResult(f.box, f.score, f.landmarks, max(smoothed, key=smoothed.get), smoothed,
                                  {**f.extras, "track": t.id, "raw_label": f.label}))
        for ti, t in enumerate(self.tracks):
            if ti not in used_t:
                t.missed += 1
        self.tracks = [t for t in self.tracks if t.missed <= self.max_missed]
        return out


def frames_from(source) -> Iterator[np.ndarray]:
    """A video file path, a camera index, or any iterable of frames."""
    if isinstance(source, (str, int)) or hasattr(source, "__fspath__"):
        import cv2

        if not isinstance(source, int) and not Path(source).is_file():
            raise FileNotFoundError(f"video source {source} does not exist")
        cap = cv2.VideoCapture(source if isinstance(source, int) else str(source))
        if not cap.isOpened():
            raise ValueError(f"cannot open video source {source!r}")
        try:
            count = 0
            while True:
                ok, frame = cap.read()
                if not ok:
                    if count == 0:  # e.g. a text file OpenCV "opened": say so instead of yielding nothing
                        raise ValueError(f"video source {source!r} gave no frame (not a video, or a camera that "
                                         "returned nothing)")
                    return
                count += 1
                yield frame
        finally:
            cap.release()
    else:
        yield from source


def stream(recognizer, source: Iterable | str | int, smoothing: float = 0.6, min_iou: float = 0.3,
           max_missed: int = 10) -> Iterator[tuple[np.ndarray, list[FaceResult]]]:
    """(frame, tracked and smoothed results) for every frame of `source`."""
    tracker = FaceTracker(list(recognizer.classes), smoothing, min_iou, max_missed)
    for frame in frames_from(source):
        yield frame, tracker.update(recognizer.predict(frame))
