"""What `Recognizer.predict` returns: a FrameResults (a list of FaceResult, one per face) per frame."""
from __future__ import annotations

from dataclasses import dataclass, field
from pathlib import Path

import cv2
import numpy as np


@dataclass
class FaceResult:
    """A face: box (x, y, w, h: top-left corner, width, height) and landmarks [5, 2] in frame
    pixels (None with detect=False), detector score, predicted label, probabilities per class,
    `track` (the face's id across a stream's frames; None outside streams) and method extras."""

    box: np.ndarray | None
    score: float | None
    landmarks: np.ndarray | None
    label: str
    probabilities: dict[str, float]
    extras: dict = field(default_factory=dict)
    track: int | None = None

    @property
    def confidence(self) -> float:
        return self.probabilities[self.label]

    def to_dict(self) -> dict:
        """JSON-ready: pixels to 1 decimal, probabilities and scores to 4 decimals."""
        out = {
            "label": self.label,
            "confidence": round(float(self.confidence), 4),
            "box": None if self.box is None else [round(float(v), 1) for v in self.box],
            "score": None if self.score is None else round(float(self.score), 4),
            "landmarks": None if self.landmarks is None else np.round(np.asarray(self.landmarks, float), 1).tolist(),
            "probabilities": {k: round(float(v), 4) for k, v in self.probabilities.items()},
        }
        if self.track is not None:
            out["track"] = self.track
        if self.extras:
            out["extras"] = self.extras
        return out


class FrameResults(list):
    """The faces of one frame (a plain list of FaceResult, best detection first) that also
    knows its frame: `plot()` draws them, `save(path)` writes the drawing."""

    def __init__(self, faces=(), frame: np.ndarray | None = None):
        super().__init__(faces)
        self.frame = frame

    def plot(self, frame: np.ndarray | None = None, bars: int = 3) -> np.ndarray:
        """A BGR copy of the frame with every face drawn (see `draw`)."""
        frame = self.frame if frame is None else frame
        if frame is None:
            raise ValueError("these results carry no frame: pass one, results.plot(frame)")
        return draw(frame, self, bars)

    def save(self, path: str | Path, frame: np.ndarray | None = None) -> Path:
        path = Path(path)
        path.parent.mkdir(parents=True, exist_ok=True)
        if not cv2.imwrite(str(path), self.plot(frame)):
            raise ValueError(f"{path}: OpenCV cannot write this image type (use .png or .jpg)")
        return path

    def to_list(self) -> list[dict]:
        return [f.to_dict() for f in self]


GREEN, GREY, WHITE, BLACK = (60, 200, 60), (90, 90, 90), (255, 255, 255), (0, 0, 0)


def _text_block(img, lines, x, y, scale, thick, colours):
    """Lines of text at (x, y) (top-left), each on its own opaque background as wide as its
    text, kept inside the image."""
    font = cv2.FONT_HERSHEY_SIMPLEX
    sizes = [cv2.getTextSize(t, font, scale, thick) for t in lines]
    line_h = max(h + base for (w, h), base in sizes) + 2 * thick + 2
    total_h, width = line_h * len(lines), max(w for (w, _), _ in sizes) + 6
    x = int(min(max(0, x), max(0, img.shape[1] - width)))
    y = int(min(max(0, y), max(0, img.shape[0] - total_h)))
    for k, (text, ((w, h), base)) in enumerate(zip(lines, sizes)):
        top = y + k * line_h
        cv2.rectangle(img, (x, top), (x + w + 6, top + line_h), colours[k], -1)
        cv2.putText(img, text, (x + 3, top + line_h - base - thick - 1), font, scale, WHITE, thick, cv2.LINE_AA)


def draw(frame: np.ndarray, results: list[FaceResult], bars: int = 3) -> np.ndarray:
    """A BGR copy of the frame with each face's box, landmarks and its top-`bars` classes with
    probabilities. Text scales with the image (readable from a 48 px crop to a 4K frame) and
    every line sits on its own background."""
    out = frame.copy() if frame.ndim == 3 else cv2.cvtColor(frame, cv2.COLOR_GRAY2BGR)
    side = min(out.shape[:2])
    scale = float(np.clip(side / 700, 0.3, 2.5))
    thick = max(1, int(round(scale * 1.6)))
    for i, r in enumerate(results):
        if r.box is None:
            x, y, w, h = 0, 0, out.shape[1], out.shape[0]
        else:
            x, y, w, h = (int(round(v)) for v in r.box)
        cv2.rectangle(out, (x, y), (x + w, y + h), GREEN, thick + 1)
        if r.landmarks is not None:
            for px, py in r.landmarks:
                cv2.circle(out, (int(px), int(py)), thick + 1, (0, 200, 255), -1)
        top = sorted(r.probabilities.items(), key=lambda kv: -kv[1])[:bars]
        who = f"#{i}" if r.track is None else f"track {r.track}"
        lines = [f"{who} {top[0][0]} {top[0][1]:.2f}"] + [f"{name} {p:.2f}" for name, p in top[1:]]
        _text_block(out, lines, x, y + h + thick + 2, 0.5 * scale, max(1, thick - 1), [GREEN] + [GREY] * (len(lines) - 1))
    return out
