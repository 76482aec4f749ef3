"""The original FER2013 csv (`emotion,pixels,Usage`), optionally relabelled with FERPlus votes.

fer2013new.csv is row-aligned with fer2013.csv, so FERPlus labels attach by row index; rows
FERPlus dropped (no image name, or no majority) are dropped here too and counted.
"""
from __future__ import annotations

import csv
from collections import Counter
from pathlib import Path

import numpy as np

from fer_edge.data.base import FaceDataset, Sample, restrict_to_view
from fer_edge.data.ferplus import UNKNOWN, NOT_A_FACE, process_votes, read_fer2013new
from fer_edge.data.labels import CLASSES, FER2013_CODES

USAGES = {"train": "Training", "valid": "PublicTest", "test": "PrivateTest"}


class FER2013(FaceDataset):
    """48x48 gray faces from fer2013.csv; `ferplus_csv` (fer2013new.csv) switches to FERPlus labels."""

    def __init__(self, csv_path: str | Path, split: str = "train", num_classes: int = 8, color: str = "gray",
                 ferplus_csv: str | Path | None = None, mode: str = "majority"):
        if split not in USAGES:
            raise ValueError(f"split: expected one of {tuple(USAGES)}, got {split!r}")
        csv_path = Path(csv_path)
        relabel = read_fer2013new(Path(ferplus_csv)) if ferplus_csv else None
        dropped: Counter = Counter()
        samples = []
        with open(csv_path, newline="") as f:
            reader = csv.DictReader(f)
            missing = {"emotion", "pixels", "Usage"} - set(reader.fieldnames or ())
            if missing:
                raise ValueError(f"{csv_path}: missing columns {sorted(missing)} (expected emotion,pixels,Usage)")
            for row_index, row in enumerate(reader):
                if row["Usage"] != USAGES[split]:
                    continue
                pixels = np.array(row["pixels"].split(), dtype=np.uint8)
                if pixels.size != 48 * 48:
                    dropped["malformed pixels"] += 1
                    continue
                extras = {"fer2013_row": row_index}
                if relabel is not None:
                    if row_index >= len(relabel):
                        raise ValueError(f"{ferplus_csv} has {len(relabel)} rows, fewer than {csv_path}")
                    r = relabel[row_index]
                    target = process_votes(r["votes"], mode)
                    label = int(np.argmax(target))
                    if not r["name"] or label in (UNKNOWN, NOT_A_FACE):
                        dropped["no FERPlus label"] += 1
                        continue
                    extras.update(votes=r["votes"], target=target[: len(CLASSES)].astype(np.float32))
                else:
                    label = CLASSES.index(FER2013_CODES[int(row["emotion"])])
                samples.append(Sample(name=f"fer2013/{row_index}", label=label, pixels=pixels.reshape(48, 48), extras=extras))
        samples, classes = restrict_to_view(samples, num_classes, dropped)
        super().__init__(samples, classes, color, name=f"fer2013/{split}", dropped=dropped)
