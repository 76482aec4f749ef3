"""Landmark caches: YuNet run once over a dataset, stored beside it.

File format (`fer_edge_landmarks.npz`, numpy's npz, no pickles):
- `names`     [N] str      sample names (dataset.samples[i].name)
- `landmarks` [N, 5, 2] f32 landmarks in the pixels of the dataset's item image (after any box
                           crop), order: image-left eye, image-right eye, nose, image-left and
                           image-right mouth corner
- `detected`  [N] bool     False: detection failed and `landmarks` is the template fallback
- `scores`    [N] f32      detector score (0 for the fallback)
- `meta`      str (JSON)   detector file and sha256, min_side, fer_edge version, counts
"""
from __future__ import annotations

import hashlib
import json
import os
import zipfile
from dataclasses import dataclass
from pathlib import Path

import numpy as np

from fer_edge.data.subject_draws import KINDS as DRAW_KINDS
from fer_edge.faces.align import template

CACHE_FILE = "fer_edge_landmarks.npz"


@dataclass
class LandmarkCache:
    names: np.ndarray
    landmarks: np.ndarray
    detected: np.ndarray
    scores: np.ndarray
    meta: dict

    @property
    def detection_rate(self) -> float:
        return float(self.detected.mean()) if len(self.detected) else 0.0

    def summary(self) -> str:
        n, d = len(self.detected), int(self.detected.sum())
        return f"{d}/{n} faces detected ({100 * self.detection_rate:.1f}%), {n - d} fell back to the template"


def fallback_landmarks(height: int, width: int) -> np.ndarray:
    """The template scaled into the middle of an image: what a centred face crop looks like."""
    size = min(height, width)
    return template(112) * (size / 112.0) + np.array([(width - size) / 2, (height - size) / 2], dtype=np.float32)


def _sha256(path: Path) -> str:
    return hashlib.sha256(Path(path).read_bytes()).hexdigest()


def build(dataset, detector, progress: bool = True) -> LandmarkCache:
    """Detects the best face of every item image (unreadable images count as failures)."""
    from fer_edge.data.base import CorruptImageError

    n = len(dataset)
    lms = np.zeros((n, 5, 2), np.float32)
    detected = np.zeros(n, bool)
    scores = np.zeros(n, np.float32)
    it = range(n)
    if progress:
        from tqdm import tqdm

        it = tqdm(it, desc=f"landmarks {dataset.name}", unit="img")
    unreadable = 0
    for i in it:
        try:
            img = dataset.image(i)
        except CorruptImageError:
            unreadable += 1
            continue
        faces = detector.detect(img)
        if faces:
            lms[i], scores[i], detected[i] = faces[0].landmarks, faces[0].score, True
        else:
            lms[i] = fallback_landmarks(*img.shape[:2])
    from fer_edge import __version__

    meta = {"dataset": dataset.name, "detector": Path(detector.model_path).name, "detector_sha256": _sha256(detector.model_path),
            "min_side": detector.min_side, "score_threshold": detector.score_threshold, "fer_edge": __version__,
            "count": n, "detected": int(detected.sum()), "unreadable": unreadable}
    return LandmarkCache(np.array([s.name for s in dataset.samples]), lms, detected, scores, meta)


def save(cache: LandmarkCache, path: str | Path) -> Path:
    """Writes atomically (temp file + rename): an interrupted run never leaves a half cache."""
    path = Path(path)
    path.parent.mkdir(parents=True, exist_ok=True)
    tmp = path.with_name(path.name + ".tmp.npz")
    np.savez(tmp, names=cache.names.astype(str), landmarks=cache.landmarks, detected=cache.detected,
             scores=cache.scores, meta=np.array(json.dumps(cache.meta)))
    os.replace(tmp, path)
    return path


def load(path: str | Path) -> LandmarkCache:
    """Reads a cache; a corrupt or foreign file raises ValueError naming it."""
    path = Path(path)
    try:
        with np.load(path, allow_pickle=False) as z:
            cache = LandmarkCache(z["names"], z["landmarks"], z["detected"], z["scores"], json.loads(str(z["meta"])))
    except (OSError, KeyError, ValueError, json.JSONDecodeError, zipfile.BadZipFile) as exc:
        raise ValueError(f"{path}: not a fer_edge landmark cache ({exc})") from exc
    n = len(cache.names)
    if cache.landmarks.shape != (n, 5, 2) or cache.detected.shape != (n,) or cache.scores.shape != (n,):
        raise ValueError(f"{path}: inconsistent shapes in landmark cache")
    return cache


def attach(dataset, cache: LandmarkCache) -> int:
    """Sets each sample's landmarks from the cache (by name); returns how many samples matched."""
    index = {str(n): i for i, n in enumerate(cache.names)}
    hits = 0
    for s in dataset.samples:
        i = index.get(s.name)
        if i is None:
            continue
        lm = cache.landmarks[i].copy()
        if s.box is not None:  # cache is in crop pixels; samples keep source-image pixels
            lm += np.array(s.box[:2], dtype=np.float32)
        s.landmarks = lm
        s.extras["landmarks_detected"] = bool(cache.detected[i])
        hits += 1
    return hits


def default_path(dataset) -> Path:
    """Beside the dataset: `<dataset folder>/fer_edge_landmarks.npz`."""
    root = getattr(dataset, "root", None)
    if root is None:
        raise ValueError(f"{dataset.name}: no folder to keep a landmark cache beside; pass a path")
    split_dir = getattr(dataset, "split", None)
    from fer_edge.data.ferplus import SPLITS

    folder = Path(root) / SPLITS[split_dir] if split_dir in SPLITS and (Path(root) / SPLITS[split_dir]).is_dir() else Path(root)
    return folder / CACHE_FILE


def ensure(dataset, path: str | Path, detector=None, progress: bool = False) -> dict:
    """Attaches cached landmarks to every sample of `dataset`, detecting (and adding to the cache
    file, atomically) only the samples the cache does not have yet. A training run therefore
    pays for detection once, and a run on a subset detects only that subset.

    `detector`: a FaceDetector, or None to open the default YuNet when something is missing.
    Returns {"cached", "detected_now", "fell_back"} counts for the dataset's samples."""
    path = Path(path)
    cache = load(path) if path.is_file() else None
    known = set() if cache is None else {str(n) for n in cache.names}
    missing = [i for i, s in enumerate(dataset.samples) if s.name not in known]
    if missing:
        if detector is None:
            from fer_edge.faces import FaceDetector

            detector = FaceDetector()
        from fer_edge.data.base import FaceDataset

        part = FaceDataset([dataset.samples[i] for i in missing], dataset.classes, dataset.color, dataset.name)
        new = build(part, detector, progress=progress)
        if cache is None:
            cache = new
        else:
            meta = dict(cache.meta, count=cache.meta.get("count", 0) + new.meta["count"],
                        detected=cache.meta.get("detected", 0) + new.meta["detected"])
            cache = LandmarkCache(np.concatenate([cache.names.astype(str), new.names.astype(str)]),
                                  np.concatenate([cache.landmarks, new.landmarks]),
                                  np.concatenate([cache.detected, new.detected]),
                                  np.concatenate([cache.scores, new.scores]), meta)
        save(cache, path)
    attach(dataset, cache)
    fell_back = sum(1 for s in dataset.samples if not s.extras.get("landmarks_detected", False))
    return {"cached": len(dataset.samples) - len(missing), "detected_now": len(missing), "fell_back": fell_back}


def cache_file(spec: str, folder: str | Path | None = None) -> Path:
    """The landmark cache of a dataset spec in a run's cache folder ('ferplus:train' ->
    <folder>/ferplus_train.npz; default folder <cache dir>/landmarks)."""
    from fer_edge.paths import cache_dir

    import re

    folder = Path(folder) if folder else cache_dir() / "landmarks"
    spec = re.sub(r"@(%s)\d+$" % "|".join(DRAW_KINDS), "", spec)  # a subject draw shares its dataset's cache (faces keep their names)
    return folder / (spec.replace(":", "_").replace("/", "_").replace("@", "_").strip("_") + ".npz")
