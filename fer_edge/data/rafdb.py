"""RAF-DB basic: EmoLabel/list_patition_label.txt, Image/aligned/*_aligned.jpg (100x100),
Image/original/*.jpg and Annotation/manual/*_manu_attri.txt (5 landmarks, then attributes)."""
from __future__ import annotations

from collections import Counter
from pathlib import Path

import numpy as np

from fer_edge.data.base import FaceDataset, Sample, restrict_to_view
from fer_edge.data.labels import CLASSES, RAFDB_CODES


def read_manual_landmarks(path: Path) -> np.ndarray:
    """The 5 manual landmarks (left eye, right eye, nose, left and right mouth corner)."""
    lines = [ln.split() for ln in Path(path).read_text().splitlines() if ln.strip()]
    if len(lines) < 5:
        raise ValueError(f"{path}: expected 5 landmark lines, got {len(lines)}")
    return np.array([[float(a), float(b)] for a, b in (ln[:2] for ln in lines[:5])], dtype=np.float32)


class RAFDB(FaceDataset):
    """RAF-DB basic expression set. `aligned=True` reads the aligned 100x100 faces (the usual
    protocol); `aligned=False` reads the originals with their manual landmarks."""

    def __init__(self, root: str | Path, split: str = "train", aligned: bool = True, num_classes: int = 7,
                 color: str = "bgr"):
        if split not in ("train", "test"):
            raise ValueError(f"split: expected 'train' or 'test', got {split!r}")
        root = Path(root)
        label_file = root / "EmoLabel" / "list_patition_label.txt"
        if not label_file.is_file():
            raise FileNotFoundError(f"{label_file} not found: expected the RAF-DB basic layout under {root}")
        dropped: Counter = Counter()
        samples = []
        for line_no, line in enumerate(label_file.read_text().splitlines(), 1):
            if not line.strip():
                continue
            parts = line.split()
            if len(parts) != 2 or not parts[1].isdigit() or int(parts[1]) not in RAFDB_CODES:
                raise ValueError(f"{label_file}:{line_no}: expected '<image> <1-7>', got {line!r}")
            image, code = parts[0], int(parts[1])
            if not image.startswith(split + "_"):
                continue
            stem = Path(image).stem
            label = CLASSES.index(RAFDB_CODES[code])
            if aligned:
                samples.append(Sample(name=image, label=label, path=root / "Image" / "aligned" / f"{stem}_aligned.jpg"))
            else:
                lm_file = root / "Annotation" / "manual" / f"{stem}_manu_attri.txt"
                lm = read_manual_landmarks(lm_file) if lm_file.is_file() else None
                if lm is None:
                    dropped["no manual landmarks"] += 1
                samples.append(Sample(name=image, label=label, path=root / "Image" / "original" / image, landmarks=lm))
        samples, classes = restrict_to_view(samples, num_classes, dropped)
        super().__init__(samples, classes, color, name=f"rafdb/{split}", dropped=dropped)
