"""Datasets, label maps, splits, landmark caches and augmentations (numpy + OpenCV).

`open_dataset("ferplus", "test")` and friends give a FaceDataset; see `DATASETS` for the names
the CLI accepts ("ferplus", "ckplus", or "fer2013:<csv>", "rafdb:<root>", "affectnet:<root>",
"folder:<root>", "unlabelled:<root>").
"""
from __future__ import annotations

from fer_edge.data.base import CorruptImageError, FaceDataset, Sample
from fer_edge.data.labels import CLASSES, CLASSES_7, canonical, view

# name -> (splits, opener(arg, split, **kw))
DATASETS = {
    "ferplus": ("train", "valid", "test"),
    "ckplus": ("all",),  # and "draw<k>": seeded draws of 10 subjects (data/subject_draws.py)
    "fer2013": ("train", "valid", "test"),
    "rafdb": ("train", "test"),
    "affectnet": ("train", "valid"),
    "folder": ("all",),
    "unlabelled": ("all",),  # face crops without labels: an adaptation target, never an eval set
}


def open_dataset(spec: str, split: str | None = None, **kwargs) -> FaceDataset:
    """A dataset from a CLI-style spec: 'ferplus', 'ckplus', or '<kind>:<path>'."""
    kind, _, arg = spec.partition(":")
    if kind not in DATASETS:
        raise ValueError(f"unknown dataset {spec!r}; known: {', '.join(DATASETS)} (path-based ones as kind:path)")
    split = split or DATASETS[kind][0]
    if kind == "ckplus" and split.startswith(_draw_kinds()):
        return _ckplus_draw(arg, split, **kwargs)
    if split not in DATASETS[kind]:
        raise ValueError(f"{kind} has splits {DATASETS[kind]}, not {split!r}")
    if kind == "ferplus":
        from fer_edge.data.ferplus import FERPlus

        return FERPlus(root=arg or None, split=split, **kwargs)
    if kind == "ckplus":
        from fer_edge.data.folder import ckplus

        return ckplus(root=arg or None, **kwargs)
    if not arg:
        raise ValueError(f"{kind} needs a path: {kind}:<path>")
    if kind == "fer2013":
        from fer_edge.data.fer2013 import FER2013

        return FER2013(arg, split=split, **kwargs)
    if kind == "rafdb":
        from fer_edge.data.rafdb import RAFDB

        return RAFDB(arg, split=split, **kwargs)
    if kind == "affectnet":
        from fer_edge.data.affectnet import AffectNet

        return AffectNet(arg, split=split, **kwargs)
    if kind == "unlabelled":
        from fer_edge.data.folder import UnlabelledFolder

        return UnlabelledFolder(arg, **kwargs)
    from fer_edge.data.folder import ImageFolder

    return ImageFolder(arg, **kwargs)


def _draw_kinds() -> tuple:
    from fer_edge.data.subject_draws import KINDS

    return KINDS


def _ckplus_draw(root: str, split: str, **kwargs) -> FaceDataset:
    """'ckplus@draw<k>' / 'ckplus@fresh<k>' / 'ckplus@wide<k>' / 'ckplus@half<k>': the faces of one
    seeded draw of CK+ subjects (fer_edge.data.subject_draws)."""
    from fer_edge.data.folder import ckplus
    from fer_edge.data.subject_draws import parse_draw, select_draw

    parsed = parse_draw(split)
    if parsed is None:
        raise ValueError(f"ckplus: subject draws are named draw<k>, fresh<k>, wide<k> or half<k> (e.g. ckplus@draw3), "
                         f"not {split!r}")
    every_face = ckplus(root=root or None, num_classes=8)
    return select_draw(ckplus(root=root or None, **kwargs), parsed[1], [s.name for s in every_face.samples], parsed[0])


__all__ = ["CLASSES", "CLASSES_7", "canonical", "view", "Sample", "FaceDataset", "CorruptImageError", "DATASETS",
           "open_dataset"]
