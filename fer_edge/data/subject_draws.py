"""Small adaptation targets made of a few people: seeded draws of CK+ subjects.

A user's camera sees a handful of people; CK+ as a whole is 118. To study adaptation in the
user's regime on data with labels (issue 20), CK+'s subjects (the `S005` in `S005_001_...png`)
are shuffled once with a fixed seed and cut into disjoint draws of `DRAW_SUBJECTS` people
(118 = 11 draws of 10 + 8 people in no draw). Draws `TUNING_DRAWS` are the only ones any default
was chosen on; the others are for reporting, so a reported draw never shares a person with what
tuned the method. A draw is opened as the split `ckplus@draw<k>` (about 80 faces: CK+ keeps the
last 3 frames of each of a subject's ~3 sequences).
"""
from __future__ import annotations

import re

import numpy as np

DRAW_SUBJECTS = 10
DRAW_SEED = 20
TUNING_DRAWS = (0, 1, 2)
_SUBJECT = re.compile(r"(S\d{3})_\d{3}_\d+")
_SEQUENCE = re.compile(r"(S\d{3}_\d{3})_\d+")


def subject_of(name: str) -> str:
    """'anger/S010_004_00000017.png' -> 'S010'."""
    m = _SUBJECT.search(name.rsplit("/", 1)[-1])
    if m is None:
        raise ValueError(f"{name!r} carries no CK+ subject (expected S<nnn>_<seq>_<frame>)")
    return m.group(1)


def sequence_of(name: str) -> str | None:
    """'anger/S010_004_00000017.png' -> 'S010_004' (CK+'s frames of one sequence share it);
    None for names that carry no CK+ sequence."""
    m = _SEQUENCE.search(name.rsplit("/", 1)[-1])
    return m.group(1) if m else None


def subject_draws(subjects, size: int = DRAW_SUBJECTS, seed: int = DRAW_SEED) -> list[list[str]]:
    """Disjoint draws of `size` subjects each: a seeded permutation of the sorted unique subjects,
    cut in order (the remainder that does not fill a draw is left out)."""
    unique = sorted(set(subjects))
    order = np.random.default_rng(seed).permutation(len(unique))
    shuffled = [unique[i] for i in order]
    return [sorted(shuffled[i:i + size]) for i in range(0, len(shuffled) - size + 1, size)]


def report_draws(n_draws: int) -> list[int]:
    return [k for k in range(n_draws) if k not in TUNING_DRAWS]


def draw_index(split: str) -> int | None:
    """'draw3' -> 3; other split names -> None."""
    m = re.fullmatch(r"draw(\d+)", split or "")
    return int(m.group(1)) if m else None


def select_draw(dataset, k: int, all_names=None):
    """The faces of `dataset` whose subject is in draw k (a FaceDataset named '<name>@draw<k>').
    The draws are cut from the subjects of `all_names` (default: the dataset's own), so that a
    7-class view (CK+ without its contempt faces) draws the same people as the 8-class one."""
    subjects = [subject_of(s.name) for s in dataset.samples]
    draws = subject_draws(subjects if all_names is None else [subject_of(n) for n in all_names])
    if not 0 <= k < len(draws):
        raise ValueError(f"{dataset.name} has {len(draws)} subject draws of {DRAW_SUBJECTS} people (draw0..draw{len(draws) - 1}), "
                         f"not draw{k}")
    chosen = set(draws[k])
    sub = dataset.subset([i for i, s in enumerate(subjects) if s in chosen])
    sub.name = f"{dataset.name}@draw{k}"
    return sub
