"""The project's one label space and the name-based maps from every dataset into it.

Class order is FERPlus's (methods.md): neutral, happiness, surprise, sadness, anger, disgust,
fear, contempt. A 7-class model drops contempt. Datasets map by *name*, never by their own
integer codes, so a dataset's numbering can never silently shuffle classes.
"""
from __future__ import annotations

CLASSES: tuple[str, ...] = ("neutral", "happiness", "surprise", "sadness", "anger", "disgust", "fear", "contempt")
CLASSES_7: tuple[str, ...] = CLASSES[:7]

# Every spelling a supported dataset uses, lower-cased.
_SYNONYMS = {
    "neutral": "neutral", "neu": "neutral",
    "happiness": "happiness", "happy": "happiness", "hap": "happiness", "joy": "happiness",
    "surprise": "surprise", "surprised": "surprise", "sur": "surprise",
    "sadness": "sadness", "sad": "sadness",
    "anger": "anger", "angry": "anger", "ang": "anger",
    "disgust": "disgust", "disgusted": "disgust", "dis": "disgust",
    "fear": "fear", "fearful": "fear", "afraid": "fear",
    "contempt": "contempt", "contemptuous": "contempt",
}

# Dataset integer codes, as the datasets document them, mapped through names.
FER2013_CODES = {0: "anger", 1: "disgust", 2: "fear", 3: "happiness", 4: "sadness", 5: "surprise", 6: "neutral"}
RAFDB_CODES = {1: "surprise", 2: "fear", 3: "disgust", 4: "happiness", 5: "sadness", 6: "anger", 7: "neutral"}
# AffectNet 8-11 (none, uncertain, non-face) have no class: such rows are dropped.
AFFECTNET_CODES = {0: "neutral", 1: "happiness", 2: "sadness", 3: "surprise", 4: "fear", 5: "disgust", 6: "anger", 7: "contempt"}


def canonical(name: str) -> str:
    """The project's name for a dataset's class name ('Happy' -> 'happiness').

    >>> canonical("Angry"), canonical("happy")
    ('anger', 'happiness')
    """
    key = name.strip().lower()
    if key not in _SYNONYMS:
        raise ValueError(f"unknown expression class name {name!r}; known: {sorted(set(_SYNONYMS.values()))}")
    return _SYNONYMS[key]


def class_index(name: str, num_classes: int = 8) -> int:
    """Index of a class name in the 8- or 7-class view."""
    classes = view(num_classes)
    c = canonical(name)
    if c not in classes:
        raise ValueError(f"class {c!r} is not in the {num_classes}-class view {classes}")
    return classes.index(c)


def view(num_classes: int) -> tuple[str, ...]:
    """The 8-class list or the 7-class list (without contempt)."""
    if num_classes == 8:
        return CLASSES
    if num_classes == 7:
        return CLASSES_7
    raise ValueError(f"num_classes must be 7 or 8, got {num_classes}")


def remap(labels, from_classes, to_classes):
    """Maps integer labels between two class lists by name; classes missing from `to_classes`
    become -1 (e.g. contempt into the 7-class view)."""
    import numpy as np

    table = np.array([to_classes.index(canonical(c)) if canonical(c) in to_classes else -1 for c in from_classes])
    return table[np.asarray(labels)]
