"""FERPlus in its official layout: FER2013{Train,Valid,Test}/ with label.csv, plus fer2013new.csv.

Labels follow the FERPlus reference code (Microsoft/FERPlus `ferplus.py`): single votes are
dropped as outliers, then
- "majority" (the official protocol): keep a face only when one emotion has more than half of
  the remaining votes; faces whose label would be unknown or not-a-face are dropped.
- "probability": the reference code's soft target (top emotions up to 75% of the votes, at most 3)
  for training with a vote distribution; the hard label is its arg-max.
- "multi_target": every emotion with >= 30% of the remaining votes.
- "argmax": plain arg-max of the raw votes (first on ties), unknown/NF dropped.
Candidate label sets for partial-label learning (methods.md §2) come with every mode.

`fer2013new.csv` rows are the rows of the original fer2013.csv. Its `Image name` column is the
only link between a PNG and its FER2013 row: from row 60 on, the number in ferNNNNNNN.png drifts
away from the row index, so the join is on the name, never on the number.
"""
from __future__ import annotations

import csv
from collections import Counter
from pathlib import Path

import numpy as np

from fer_edge.data.base import FaceDataset, Sample, restrict_to_view
from fer_edge.data.labels import CLASSES
from fer_edge.paths import data_root

SPLITS = {"train": "FER2013Train", "valid": "FER2013Valid", "test": "FER2013Test"}
USAGE = {"train": "Training", "valid": "PublicTest", "test": "PrivateTest"}
VOTE_COLUMNS = CLASSES + ("unknown", "NF")
MODES = ("majority", "probability", "multi_target", "argmax")
UNKNOWN, NOT_A_FACE = 8, 9


def read_label_csv(path: Path) -> list[tuple[str, tuple[int, int, int, int], np.ndarray]]:
    """Rows of a per-folder label.csv: (image name, face box (x, y, w, h), 10 votes)."""
    rows = []
    with open(path, newline="") as f:
        for line_no, row in enumerate(csv.reader(f), 1):
            if not row:
                continue
            if len(row) != 12:
                raise ValueError(f"{path}:{line_no}: expected 12 columns (name, box, 10 votes), got {len(row)}")
            box = tuple(int(v) for v in row[1].strip("() ").split(","))
            x0, y0, x1, y1 = box  # FERPlus writes (left, top, right, bottom)
            rows.append((row[0], (x0, y0, x1 - x0, y1 - y0), np.array([float(v) for v in row[2:]], dtype=np.float32)))
    return rows


def read_fer2013new(path: Path) -> list[dict]:
    """Rows of fer2013new.csv in file order (= fer2013.csv order): usage, name ('' when absent), votes."""
    out = []
    with open(path, newline="") as f:
        reader = csv.reader(f)
        header = next(reader)
        if header[:2] != ["Usage", "Image name"]:
            raise ValueError(f"{path}: unexpected header {header[:2]}")
        for row in reader:
            out.append({"usage": row[0], "name": row[1], "votes": np.array([float(v) for v in row[2:12]], dtype=np.float32)})
    return out


def join_on_name(rows: list[dict]) -> tuple[dict[str, int], list[str]]:
    """Image name -> fer2013 row index (first occurrence), and the names that occur more than once."""
    index, dup = {}, []
    for i, r in enumerate(rows):
        if not r["name"]:
            continue
        if r["name"] in index:
            dup.append(r["name"])
            continue
        index[r["name"]] = i
    return index, dup


def _drop_single_votes(votes: np.ndarray) -> np.ndarray:
    v = np.asarray(votes, dtype=np.float64).copy()
    v[v < 1.0 + np.finfo(float).eps] = 0.0
    return v


def process_votes(votes: np.ndarray, mode: str = "majority") -> np.ndarray:
    """A 10-way target (8 emotions, unknown, NF) from raw votes, as the FERPlus reference code.

    The result sums to 1; a face the protocol rejects comes back as all mass on `unknown`.
    """
    if mode not in MODES:
        raise ValueError(f"mode: expected one of {MODES}, got {mode!r}")
    size = len(VOTE_COLUMNS)
    unknown = np.zeros(size)
    unknown[UNKNOWN] = 1.0
    if mode == "argmax":
        out = np.zeros(size)
        out[int(np.argmax(votes))] = 1.0
        return out
    raw = _drop_single_votes(votes)
    total = raw.sum()
    emotion = np.zeros(size)
    if mode == "majority":
        m = raw.max()
        if m > 0.5 * total:
            emotion[int(np.argmax(raw))] = m
        else:
            return unknown
    elif mode == "probability":
        part, count, valid = 0.0, 0, True
        while part < 0.75 * total and count < 3 and valid:
            m = raw.max()
            for i in range(size):
                if raw[i] == m:
                    emotion[i] = m
                    raw[i] = 0
                    part += emotion[i]
                    count += 1
                    if i >= UNKNOWN:  # unknown or NF ties with the emotions kept so far
                        valid = False
                        if emotion.sum() > m:
                            emotion[i] = 0
                            count -= 1
                        break
        if emotion.sum() <= 0.5 * total or count > 3:
            return unknown
    else:  # multi_target
        keep = raw >= 0.3 * total
        emotion[keep] = raw[keep]
        if emotion.sum() <= 0.5 * total:
            return unknown
    return emotion / emotion.sum()


def candidate_set(votes: np.ndarray, label: int, threshold: float = 0.3) -> np.ndarray:
    """Partial-label candidates over the 8 emotions (methods.md §2): after dropping single votes,
    every emotion with >= threshold of the remaining votes; the label is always a candidate.

    >>> candidate_set(np.array([5, 4, 0, 1, 0, 0, 0, 0, 0, 0]), 0).astype(int).tolist()
    [1, 1, 0, 0, 0, 0, 0, 0]
    """
    raw = _drop_single_votes(votes)
    total = raw.sum()
    cand = raw[: len(CLASSES)] >= threshold * total if total > 0 else np.zeros(len(CLASSES), bool)
    cand = np.asarray(cand, dtype=bool)
    if 0 <= label < len(CLASSES):
        cand[label] = True
    return cand


class FERPlus(FaceDataset):
    """One FERPlus split under one label protocol.

    Items carry `votes` (10 raw votes), `target` (the mode's soft target over the dataset's
    classes, summing to 1), `candidates` (bool over the classes) and `fer2013_row`.

    >>> ds = FERPlus(split="test")            # doctest: +SKIP
    >>> len(ds), ds.class_counts()["happiness"]  # doctest: +SKIP
    (3137, 892)
    """

    def __init__(self, root: str | Path | None = None, split: str = "train", mode: str = "majority",
                 num_classes: int = 8, color: str = "gray", candidate_threshold: float = 0.3):
        if split not in SPLITS:
            raise ValueError(f"split: expected one of {tuple(SPLITS)}, got {split!r}")
        if mode not in MODES:
            raise ValueError(f"mode: expected one of {MODES}, got {mode!r}")
        root = Path(root) if root is not None else data_root() / "ferplus"
        folder = root / SPLITS[split]
        if not (folder / "label.csv").is_file():
            raise FileNotFoundError(f"{folder / 'label.csv'} not found: expected the official FERPlus layout under {root}")
        dropped: Counter = Counter()
        new_path = root / "fer2013new.csv"
        fer_rows = read_fer2013new(new_path) if new_path.is_file() else []
        name_to_row, self.duplicate_names = join_on_name(fer_rows)
        self.vote_disagreements = 0
        samples = []
        for name, box, votes in read_label_csv(folder / "label.csv"):
            target10 = process_votes(votes, mode)
            label = int(np.argmax(target10))
            if label == UNKNOWN or label == NOT_A_FACE:
                dropped["no emotion majority" if mode != "argmax" else "arg-max unknown or NF"] += 1
                continue
            row = name_to_row.get(name, -1)
            if row >= 0 and not np.array_equal(fer_rows[row]["votes"], votes):
                self.vote_disagreements += 1
            extras = {
                "votes": votes,
                "target": target10[: len(CLASSES)].astype(np.float32),
                "candidates": candidate_set(votes, label, candidate_threshold),
                "fer2013_row": row,
            }
            samples.append(Sample(name=f"{SPLITS[split]}/{name}", label=label, path=folder / name, extras=extras))
        samples, classes = restrict_to_view(samples, num_classes, dropped)
        for s in samples:  # soft targets and candidates over the chosen view
            t = s.extras["target"][: len(classes)]
            s.extras["target"] = t / t.sum()
            s.extras["candidates"] = s.extras["candidates"][: len(classes)]
        super().__init__(samples, classes, color, name=f"ferplus/{split}/{mode}", dropped=dropped)
        self.root, self.split, self.mode = root, split, mode

    @property
    def targets(self) -> np.ndarray:
        """Soft targets [N, C] (majority: one-hot)."""
        return np.stack([s.extras["target"] for s in self.samples]) if self.samples else np.zeros((0, len(self.classes)))

    @property
    def candidates(self) -> np.ndarray:
        return np.stack([s.extras["candidates"] for s in self.samples]) if self.samples else np.zeros((0, len(self.classes)), bool)
