"""Small adaptation targets made of a few people: seeded draws of CK+ subjects.

A user's camera sees a handful of people; CK+ as a whole is 118. To study adaptation in the
user's regime on data with labels (issue 20), CK+'s subjects (the `S005` in `S005_001_...png`)
are shuffled once with a fixed seed and cut into disjoint draws of `DRAW_SUBJECTS` people
(118 = 11 draws of 10 + 8 people in no draw). Draws `TUNING_DRAWS` are the only ones any default
was chosen on; the others are for reporting, so a reported draw never shares a person with what
tuned the method. A draw is opened as the split `ckplus@draw<k>` (about 80 faces: CK+ keeps the
last 3 frames of each of a subject's ~3 sequences).

Fresh draws (`ckplus@fresh<k>`): the study's report draws were spent finding the next candidate
rule, so it is judged on a second cut: the 88 people outside the tuning draws reshuffled with
`FRESH_SEED` into 8 new groups of 10. They are new groups, not new people (CK+ has no more), so
they guard against a rule fitted to the first cut's groups, not against one fitted to its people.

Larger targets (`ckplus@wide<k>`, `ckplus@half<k>`): the same 88 people regrouped into draws of
`WIDE_SUBJECTS` (3 draws of 171-228 faces: the issue's "a few hundred faces") and `HALF_SUBJECTS`
(2 draws of 324-363 faces: above the 300 faces from which `aglrls.safety=auto` trains as the paper
does). Each cut has its own seed, so its groups are not the fresh cut's groups merged.
"""
from __future__ import annotations

import re

import numpy as np

DRAW_SUBJECTS = 10
DRAW_SEED = 20
TUNING_DRAWS = (0, 1, 2)
FRESH_SEED = 21
WIDE_SUBJECTS, WIDE_SEED = 25, 22
HALF_SUBJECTS, HALF_SEED = 44, 23
# kind -> (people per draw, seed) of the cuts that regroup the people outside the tuning draws
REGROUPED = {"fresh": (DRAW_SUBJECTS, FRESH_SEED), "wide": (WIDE_SUBJECTS, WIDE_SEED), "half": (HALF_SUBJECTS, HALF_SEED)}
KINDS = ("draw", *REGROUPED)
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


def regrouped_draws(subjects, size: int, seed: int) -> list[list[str]]:
    """The people outside the first cut's tuning draws, reshuffled with `seed` into draws of `size`."""
    first = subject_draws(subjects, DRAW_SUBJECTS)
    tuning = set().union(*(first[k] for k in TUNING_DRAWS))
    return subject_draws([s for s in set(subjects) if s not in tuning], size, seed)


def fresh_draws(subjects, size: int = DRAW_SUBJECTS) -> list[list[str]]:
    """The second cut: the people outside the tuning draws, reshuffled with FRESH_SEED."""
    return regrouped_draws(subjects, size, FRESH_SEED)


def draws_of(kind: str, subjects) -> list[list[str]]:
    """Every draw of one cut ('draw', 'fresh', 'wide' or 'half')."""
    if kind not in KINDS:
        raise ValueError(f"subject draws are of kind {KINDS}, not {kind!r}")
    if kind == "draw":
        return subject_draws(subjects)
    return regrouped_draws(subjects, *REGROUPED[kind])


def report_draws(n_draws: int) -> list[int]:
    return [k for k in range(n_draws) if k not in TUNING_DRAWS]


def parse_draw(split: str) -> tuple[str, int] | None:
    """'draw3' -> ('draw', 3), 'fresh2' -> ('fresh', 2), 'wide1' -> ('wide', 1); other names -> None."""
    m = re.fullmatch(r"(%s)(\d+)" % "|".join(KINDS), split or "")
    return (m.group(1), int(m.group(2))) if m else None


def select_draw(dataset, k: int, all_names=None, kind: str = "draw"):
    """The faces of `dataset` whose subject is in draw k of the first cut (kind 'draw') or of the
    fresh one ('fresh'), or of a larger cut ('wide', 'half'), as a FaceDataset named '<name>@<kind><k>'. The draws are cut from the
    subjects of `all_names` (default: the dataset's own), so that a 7-class view (CK+ without its
    contempt faces) draws the same people as the 8-class one."""
    subjects = [subject_of(s.name) for s in dataset.samples]
    every = subjects if all_names is None else [subject_of(n) for n in all_names]
    draws = draws_of(kind, every)
    if not 0 <= k < len(draws):
        size = DRAW_SUBJECTS if kind == "draw" else REGROUPED[kind][0]
        name = "subject draws" if kind == "draw" else f"{kind} draws"
        raise ValueError(f"{dataset.name} has {len(draws)} {name} of {size} people "
                         f"({kind}0..{kind}{len(draws) - 1}), not {kind}{k}")
    chosen = set(draws[k])
    sub = dataset.subset([i for i, s in enumerate(subjects) if s in chosen])
    sub.name = f"{dataset.name}@{kind}{k}"
    return sub
