"""Class-per-folder trees (`<root>/<class name>/<image>`), e.g. ckplus48/CK+48, and folders of
unlabelled face crops (a camera's faces to adapt to)."""
from __future__ import annotations

from collections import Counter
from pathlib import Path

from fer_edge.data.base import FaceDataset, Sample, restrict_to_view
from fer_edge.data.labels import CLASSES, canonical, view
from fer_edge.data.subject_draws import sequence_of
from fer_edge.paths import IMAGE_SUFFIXES, data_root


class ImageFolder(FaceDataset):
    """Every image below `<root>/<class>/`; folder names map to classes by name ('happy' ->
    happiness). Folders that name no expression are an error unless `ignore_unknown`."""

    def __init__(self, root: str | Path, num_classes: int = 8, color: str = "gray", ignore_unknown: bool = False,
                 name: str | None = None):
        root = Path(root)
        if not root.is_dir():
            raise FileNotFoundError(f"{root} is not a folder of class folders")
        dropped: Counter = Counter()
        samples = []
        for folder in sorted(p for p in root.iterdir() if p.is_dir()):
            try:
                label = CLASSES.index(canonical(folder.name))
            except ValueError:
                if ignore_unknown:
                    dropped[f"folder {folder.name!r} names no class"] += 1
                    continue
                raise
            for img in sorted(folder.rglob("*")):
                if img.suffix.lower() in IMAGE_SUFFIXES:
                    samples.append(Sample(name=str(img.relative_to(root)), label=label, path=img))
        samples, classes = restrict_to_view(samples, num_classes, dropped)
        super().__init__(samples, classes, color, name=name or root.name, dropped=dropped)
        self.root = root


class UnlabelledFolder(FaceDataset):
    """Every image below `root`, in any sub-folder, without labels (label -1): face crops of the
    domain to adapt to (`data.target=unlabelled:<root>`). Nothing to evaluate on."""

    def __init__(self, root: str | Path, num_classes: int = 8, color: str = "gray", name: str | None = None):
        root = Path(root)
        if not root.is_dir():
            raise FileNotFoundError(f"{root} is not a folder of face images")
        samples = [Sample(name=str(img.relative_to(root)), label=-1, path=img)
                   for img in sorted(root.rglob("*")) if img.is_file() and img.suffix.lower() in IMAGE_SUFFIXES]
        if not samples:
            raise ValueError(f"{root} holds no images ({', '.join(sorted(IMAGE_SUFFIXES))})")
        super().__init__(samples, view(num_classes), color, name=name or root.name)
        self.root = root


def ckplus(num_classes: int = 8, color: str = "gray", root: str | Path | None = None) -> ImageFolder:
    """CK+48: 981 faces in 7 classes (no neutral); the 7-class view drops its 54 contempt faces."""
    root = Path(root) if root else data_root() / "ckplus48" / "CK+48"
    data = ImageFolder(root, num_classes=num_classes, color=color, name="ckplus48")
    for s in data.samples:  # its 3 frames per sequence are one expression, not 3 (evaluation votes per sequence)
        seq = sequence_of(s.name)
        if seq is not None:
            s.extras["sequence"] = seq
    return data
