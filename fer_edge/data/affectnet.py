"""AffectNet manual annotations: training.csv / validation.csv with columns
subDirectory_filePath, face_x, face_y, face_width, face_height, facial_landmarks (68 points as
'x;y;x;y;...'), expression, valence, arousal. Codes 8-10 (none, uncertain, non-face) are dropped."""
from __future__ import annotations

import csv
from collections import Counter
from pathlib import Path

import numpy as np

from fer_edge.data.base import FaceDataset, Sample, restrict_to_view
from fer_edge.data.labels import AFFECTNET_CODES, CLASSES


def five_from_68(points: np.ndarray) -> np.ndarray:
    """The 5 alignment points from the 68-point (iBUG) layout: eye centres, nose tip, mouth corners."""
    p = np.asarray(points, dtype=np.float32).reshape(68, 2)
    return np.stack([p[36:42].mean(0), p[42:48].mean(0), p[30], p[48], p[54]])


class AffectNet(FaceDataset):
    """Images from `<root>/Manually_Annotated_Images/<subDirectory_filePath>`, cropped to the box."""

    def __init__(self, root: str | Path, split: str = "train", num_classes: int = 8, color: str = "bgr",
                 images_dir: str = "Manually_Annotated_Images"):
        files = {"train": "training.csv", "valid": "validation.csv"}
        if split not in files:
            raise ValueError(f"split: expected one of {tuple(files)}, got {split!r}")
        root = Path(root)
        csv_path = root / files[split]
        if not csv_path.is_file():
            raise FileNotFoundError(f"{csv_path} not found: expected AffectNet's manual csv files under {root}")
        dropped: Counter = Counter()
        samples = []
        with open(csv_path, newline="") as f:
            for row in csv.DictReader(f):
                code = int(row["expression"])
                if code not in AFFECTNET_CODES:
                    dropped[f"expression code {code} (none/uncertain/non-face)"] += 1
                    continue
                box = tuple(int(float(row[k])) for k in ("face_x", "face_y", "face_width", "face_height"))
                lm = None
                if row.get("facial_landmarks"):
                    vals = [float(v) for v in row["facial_landmarks"].split(";") if v.strip()]
                    if len(vals) == 136:
                        lm = five_from_68(np.array(vals))
                    else:
                        dropped["landmarks not 68 points (kept without)"] += 1
                samples.append(Sample(name=row["subDirectory_filePath"], label=CLASSES.index(AFFECTNET_CODES[code]),
                                      path=root / images_dir / row["subDirectory_filePath"], box=box, landmarks=lm,
                                      extras={"valence": float(row["valence"]), "arousal": float(row["arousal"])}))
        samples, classes = restrict_to_view(samples, num_classes, dropped)
        super().__init__(samples, classes, color, name=f"affectnet/{split}", dropped=dropped)
