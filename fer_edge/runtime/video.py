"""Video: faces tracked across frames (greedy IoU matching) with their class probabilities
smoothed over time (exponential moving average per track)."""
from __future__ import annotations

from dataclasses import dataclass, field
from pathlib import Path
from typing import Iterable, Iterator

import numpy as np

from fer_edge.runtime.results import FaceResult, FrameResults


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
                                  {**f.extras, "raw_label": f.label}, track=t.id))
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


class LandmarkFlow:
    """Follows detected faces from frame to frame by pyramidal Lucas-Kanade optical flow of their
    5 landmarks (about a millisecond for a few faces, against several for a detection). A face
    is lost when a point is not found, when forward-backward flow disagrees by more than
    `max_error` pixels (scaled to the face's size), or when the points leave the frame."""

    def __init__(self, max_error: float = 0.05):
        self.max_error = max_error
        self.prev_gray: np.ndarray | None = None
        self.faces: list = []

    def reset(self, gray: np.ndarray, faces: list) -> None:
        self.prev_gray, self.faces = gray, list(faces)

    def follow(self, gray: np.ndarray) -> list | None:
        """The faces moved onto `gray`, or None when any of them was lost (detect again)."""
        import cv2

        from fer_edge.faces.detector import Face

        if self.prev_gray is None or self.prev_gray.shape != gray.shape:
            return None
        if not self.faces:
            self.prev_gray = gray
            return []
        pts = np.concatenate([f.landmarks for f in self.faces]).astype(np.float32).reshape(-1, 1, 2)
        params = dict(winSize=(15, 15), maxLevel=3, criteria=(cv2.TERM_CRITERIA_EPS | cv2.TERM_CRITERIA_COUNT, 20, 0.03))
        nxt, st, _ = cv2.calcOpticalFlowPyrLK(self.prev_gray, gray, pts, None, **params)
        back, st_back, _ = cv2.calcOpticalFlowPyrLK(gray, self.prev_gray, nxt, None, **params)
        if nxt is None or back is None or not st.all() or not st_back.all():
            return None
        h, w = gray.shape
        moved = []
        for k, f in enumerate(self.faces):
            new = nxt[5 * k:5 * k + 5].reshape(5, 2)
            err = np.linalg.norm(back[5 * k:5 * k + 5].reshape(5, 2) - f.landmarks, axis=1).max()
            size = float(f.box[2])
            if err > self.max_error * size or (new < 0).any() or (new[:, 0] >= w).any() or (new[:, 1] >= h).any():
                return None
            shift = (new - f.landmarks).mean(0)
            box = f.box.copy()
            box[:2] += shift
            moved.append(Face(box=box.astype(np.float32), score=f.score, landmarks=new.astype(np.float32)))
        self.prev_gray, self.faces = gray, moved
        return moved


def stream(recognizer, source: Iterable | str | int, smoothing: float = 0.6, min_iou: float = 0.3,
           max_missed: int = 10, detect_every: int = 1) -> Iterator[tuple[np.ndarray, list[FaceResult]]]:
    """(frame, tracked and smoothed results) for every frame of `source`; the detector runs on
    every `detect_every`-th frame and landmark flow carries the faces in between."""
    import cv2

    from fer_edge.runtime.frames import to_bgr

    if isinstance(detect_every, bool) or not isinstance(detect_every, int) or detect_every < 1:
        raise ValueError(f"detect_every: expected an int >= 1, got {detect_every!r}")
    tracker = FaceTracker(list(recognizer.classes), smoothing, min_iou, max_missed)
    flow = LandmarkFlow()
    since = detect_every  # detect on the first frame
    for frame in frames_from(source):
        bgr = to_bgr(frame)
        faces = None
        if detect_every > 1:
            gray = cv2.cvtColor(bgr, cv2.COLOR_BGR2GRAY)
            if since < detect_every:
                faces = flow.follow(gray)
            if faces is None:
                faces, since = recognizer.detect(bgr), 0
                flow.reset(gray, faces)
            since += 1
        results = recognizer.predict(bgr, faces=faces) if faces is not None else recognizer.predict(bgr)
        yield frame, FrameResults(tracker.update(results), frame=bgr)
