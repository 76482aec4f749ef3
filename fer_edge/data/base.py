"""Samples and the dataset that loads them (numpy + OpenCV only; torch wraps it later).

Every dataset reader produces `Sample`s; `FaceDataset` loads their images with one rule and
returns plain dicts of numpy arrays. An unreadable or corrupt image never ends an epoch: it is
skipped (the next readable sample takes its place), counted in `skipped` and warned about once.
"""
from __future__ import annotations

import warnings
from collections import Counter
from dataclasses import dataclass, field
from pathlib import Path
from typing import Sequence

import cv2
import numpy as np

from fer_edge.data.labels import CLASSES, view

COLOR_MODES = ("gray", "bgr", "rgb")


class CorruptImageError(ValueError):
    """An image file that is missing, empty, truncated or not an image."""


@dataclass
class Sample:
    """One face: where its pixels come from and what is known about it.

    `label` indexes the dataset's class list (-1: unlabelled); `landmarks` [5, 2] are in the
    source image's pixel coordinates (left eye, right eye, nose, left and right mouth corner,
    as seen in the image); `box` (x, y, w, h) crops the face out of the source image.
    """

    name: str
    label: int = -1
    path: Path | None = None
    pixels: np.ndarray | None = None
    box: tuple[int, int, int, int] | None = None
    landmarks: np.ndarray | None = None
    extras: dict = field(default_factory=dict)


def read_image(path: Path, color: str = "gray") -> np.ndarray:
    """uint8 image [H, W] (gray) or [H, W, 3] (bgr/rgb); CorruptImageError when unreadable."""
    path = Path(path)
    try:
        data = np.fromfile(path, dtype=np.uint8)
    except OSError as exc:
        raise CorruptImageError(f"{path}: cannot read ({exc})") from exc
    if data.size == 0:
        raise CorruptImageError(f"{path}: empty file")
    flag = cv2.IMREAD_GRAYSCALE if color == "gray" else cv2.IMREAD_COLOR
    img = cv2.imdecode(data, flag)
    if img is None:
        raise CorruptImageError(f"{path}: not a decodable image (corrupt or truncated)")
    return img[..., ::-1].copy() if color == "rgb" else img


def convert_color(img: np.ndarray, color: str) -> np.ndarray:
    """Gray or BGR pixels into the dataset's colour mode."""
    if color == "gray":
        return img if img.ndim == 2 else cv2.cvtColor(img, cv2.COLOR_BGR2GRAY)
    bgr = cv2.cvtColor(img, cv2.COLOR_GRAY2BGR) if img.ndim == 2 else img
    return bgr[..., ::-1].copy() if color == "rgb" else bgr


class FaceDataset:
    """A list of samples in one label space, loaded the same way.

    Items are dicts: image (uint8, [H, W] or [H, W, 3]), label, index, name, plus landmarks,
    box and dataset-specific extras (votes, soft target, candidate set) when known.
    """

    def __init__(self, samples: Sequence[Sample], classes: Sequence[str] = CLASSES, color: str = "gray",
                 name: str = "dataset", dropped: Counter | None = None):
        if color not in COLOR_MODES:
            raise ValueError(f"color: expected one of {COLOR_MODES}, got {color!r}")
        self.samples = list(samples)
        self.classes = tuple(classes)
        self.color = color
        self.name = name
        self.dropped = Counter(dropped or {})  # reason -> count, for samples never admitted
        self.skipped: Counter = Counter()  # name -> times an unreadable image was skipped
        self._warned = False

    def __len__(self) -> int:
        return len(self.samples)

    @property
    def labels(self) -> np.ndarray:
        return np.array([s.label for s in self.samples], dtype=np.int64)

    def class_counts(self) -> dict[str, int]:
        counts = np.bincount(self.labels[self.labels >= 0], minlength=len(self.classes))
        return {c: int(n) for c, n in zip(self.classes, counts)}

    def image(self, i: int) -> np.ndarray:
        """Pixels of sample i (cropped to its box when it has one); CorruptImageError if unreadable."""
        s = self.samples[i]
        if s.pixels is not None:
            img = convert_color(s.pixels, self.color)
        elif s.path is not None:
            img = read_image(s.path, self.color)
        else:
            raise CorruptImageError(f"{s.name}: sample has neither pixels nor a path")
        if s.box is not None:
            x, y, w, h = s.box
            img = img[max(y, 0):y + h, max(x, 0):x + w]
            if img.size == 0:
                raise CorruptImageError(f"{s.name}: box {s.box} lies outside the image")
        return img

    def item(self, i: int) -> dict:
        """Sample i without the skip rule (raises CorruptImageError)."""
        s = self.samples[i]
        out = {"image": self.image(i), "label": s.label, "index": i, "name": s.name}
        if s.landmarks is not None:
            lm = np.asarray(s.landmarks, dtype=np.float32)
            if s.box is not None:
                lm = lm - np.array(s.box[:2], dtype=np.float32)
            out["landmarks"] = lm
        out.update(s.extras)
        return out

    def __getitem__(self, i: int) -> dict:
        n = len(self.samples)
        if not -n <= i < n:
            raise IndexError(f"index {i} out of range for {self.name} of {n} samples")
        i %= n
        for step in range(n):
            j = (i + step) % n
            try:
                return self.item(j)
            except CorruptImageError as exc:
                self.skipped[self.samples[j].name] += 1
                if not self._warned:
                    self._warned = True
                    warnings.warn(f"{self.name}: skipping unreadable image ({exc}); see dataset.skipped", RuntimeWarning,
                                  stacklevel=2)
        raise CorruptImageError(f"{self.name}: no readable image at all")

    def verify(self) -> dict:
        """Reads every image once and removes the unreadable ones. Returns a report."""
        good, bad = [], []
        for i, s in enumerate(self.samples):
            try:
                self.image(i)
                good.append(s)
            except CorruptImageError as exc:
                bad.append(str(exc))
        self.samples = good
        self.dropped["unreadable image"] += len(bad)
        return {"kept": len(good), "unreadable": len(bad), "errors": bad[:20]}

    def subset(self, indices) -> "FaceDataset":
        sub = FaceDataset([self.samples[i] for i in indices], self.classes, self.color, self.name)
        return sub

    def report(self) -> str:
        lines = [f"{self.name}: {len(self)} samples"]
        lines += [f"  {c:10s} {n}" for c, n in self.class_counts().items()]
        for reason, n in sorted(self.dropped.items()):
            lines.append(f"  dropped ({reason}): {n}")
        if self.skipped:
            lines.append(f"  skipped unreadable at load time: {sum(self.skipped.values())}")
        return "\n".join(lines)


def restrict_to_view(samples: list[Sample], num_classes: int, dropped: Counter) -> tuple[list[Sample], tuple[str, ...]]:
    """Samples labelled in the 8-class space -> the 7- or 8-class view (contempt dropped, counted)."""
    classes = view(num_classes)
    if num_classes == 8:
        return samples, classes
    kept = []
    for s in samples:
        if s.label >= 0 and CLASSES[s.label] not in classes:
            dropped[f"class {CLASSES[s.label]} not in the 7-class view"] += 1
            continue
        kept.append(s)
    return kept, classes
