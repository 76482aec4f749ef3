"""What `Recognizer.predict` returns: one FaceResult per face."""
from __future__ import annotations

from dataclasses import dataclass, field

import cv2
import numpy as np


@dataclass
class FaceResult:
    """A face: box (x, y, w, h) and landmarks [5, 2] in frame pixels (None with detect=False),
    detector score, predicted label, probabilities per class, and method extras."""

    box: np.ndarray | None
    score: float | None
    landmarks: np.ndarray | None
    label: str
    probabilities: dict[str, float]
    extras: dict = field(default_factory=dict)

    @property
    def confidence(self) -> float:
        return self.probabilities[self.label]

    def to_dict(self) -> dict:
        return {
            "box": None if self.box is None else [round(float(v), 2) for v in self.box],
            "score": self.score,
            "landmarks": None if self.landmarks is None else np.round(self.landmarks, 2).tolist(),
            "label": self.label,
            "probabilities": {k: round(v, 5) for k, v in self.probabilities.items()},
            **({"extras": self.extras} if self.extras else {}),
        }


def draw(frame: np.ndarray, results: list[FaceResult], bars: int = 3) -> np.ndarray:
    """A copy of the BGR frame with each face's box, label and its top-`bars` probabilities."""
    out = frame.copy() if frame.ndim == 3 else cv2.cvtColor(frame, cv2.COLOR_GRAY2BGR)
    scale = max(0.4, min(out.shape[:2]) / 900)
    for r in results:
        if r.box is None:
            x, y, w, h = 0, 0, out.shape[1], out.shape[0]
        else:
            x, y, w, h = (int(round(v)) for v in r.box)
        cv2.rectangle(out, (x, y), (x + w, y + h), (60, 200, 60), max(1, int(2 * scale)))
        if r.landmarks is not None:
            for px, py in r.landmarks:
                cv2.circle(out, (int(px), int(py)), max(1, int(2 * scale)), (0, 200, 255), -1)
        top = sorted(r.probabilities.items(), key=lambda kv: -kv[1])[:bars]
        line = int(18 * scale) + 4
        for k, (name, p) in enumerate(top):
            yy = y + h + 4 + k * line
            cv2.rectangle(out, (x, yy), (x + int(w * p), yy + line - 3), (60, 200, 60) if k == 0 else (150, 150, 150), -1)
            cv2.putText(out, f"{name} {p:.2f}", (x + 2, yy + line - 6), cv2.FONT_HERSHEY_SIMPLEX, 0.45 * scale,
                        (255, 255, 255), 1, cv2.LINE_AA)
    return out
