"""FaceDataset -> tensors for training: preloaded pixels, seeded views, normalisation.

Items are dicts of named fields (the batch fields of the method contract, fer_edge/train/methods):
`image` (or `weak` and `strong` for the "weak+strong" view), `label`, `soft_label`, `index`,
`candidates` (FERPlus's partial-label candidate sets, bool [K]) when the dataset has them, and
`landmarks` (or `weak_landmarks`, `strong_landmarks`) when the faces carry landmarks.

Augmentation randomness is keyed on (seed, epoch, index[, view][, pass]), never on worker or
process state, so a resumed run and a run with any number of loader workers see the same images.

Index i >= len is face i % len on pass i // len of the epoch (`with_passes` numbers them): a role
cycled several times in one epoch (LEAF's 800 labelled faces over 200 steps of 32 = 8 passes; a
small adaptation target) gets fresh augmentation on every pass. Keyed on the epoch alone, each pass
repeated the same images: measured on LEAF's supervised control, 82% logged train accuracy against
57% on the same faces un-augmented, as the network learnt the 800 fixed augmented images.
"""
from __future__ import annotations

import cv2
import numpy as np
import torch

from fer_edge.data import augment

# FER faces are gray; these are FERPlus train statistics rounded (pixel / 255).
GRAY_MEAN, GRAY_STD = 0.50, 0.25
RGB_MEAN, RGB_STD = (0.485, 0.456, 0.406), (0.229, 0.224, 0.225)
VIEWS = ("train", "eval", "weak", "strong", "weak+strong", "weak+weak+strong")
# the fields of the multi-view views: (field, augmentation, salt of the view's random draws)
_MULTI = {"weak+strong": (("weak", "weak", 0), ("strong", "strong", 1)),
          "weak+weak+strong": (("weak", "weak", 0), ("weak2", "weak", 2), ("strong", "strong", 1))}


def normalisation(color: str) -> tuple[list[float], list[float]]:
    if color == "gray":
        return [GRAY_MEAN], [GRAY_STD]
    return list(RGB_MEAN), list(RGB_STD)


class TorchFaces(torch.utils.data.Dataset):
    """The faces of a FaceDataset as tensors, served as one view:

    - "train": the run's augmentation level (`augment`: none | weak | strong) + random erasing;
    - "eval": none; "weak" / "strong": that augmentation alone;
    - "weak+strong": FixMatch's pair of views of each face (`weak`, `strong`);
    - "weak+weak+strong": Ada-CM's two independent weak views and a strong one (`weak`, `weak2`, `strong`).

    landmarks=True serves each face's 5 landmarks (a landmark cache must be attached) in pixels
    of the size x size input, moved by every geometric augmentation (a flip swaps left and
    right points); the augmentation then runs at the dataset's native size, before resizing, so
    that the cached points stay exact. Without landmarks faces are resized first (cheaper)."""

    def __init__(self, dataset, size: int, view: str = "eval", seed: int = 0, augment_level: str = "weak",
                 random_erasing: float = 0.0, soft_targets: bool = False, landmarks: bool = False):
        if view not in VIEWS:
            raise ValueError(f"view: expected one of {VIEWS}, got {view!r}")
        if augment_level not in ("none", "weak", "strong"):
            raise ValueError(f"data.augment: expected none, weak or strong, got {augment_level!r}")
        self.size, self.view, self.seed, self.epoch = size, view, seed, 0
        self.level, self.erasing = augment_level, random_erasing
        self.name, self.num_classes, self.color = dataset.name, len(dataset.classes), dataset.color
        items = [dataset[i] for i in range(len(dataset))]  # skips unreadable files (counted by dataset)
        self.images = [it["image"] for it in items]
        self.labels = np.array([it["label"] for it in items], dtype=np.int64)
        if soft_targets and items and all("target" in it for it in items):
            self.targets = np.stack([it["target"] for it in items]).astype(np.float32)
        else:
            self.targets = np.eye(self.num_classes, dtype=np.float32)[np.clip(self.labels, 0, None)]
        # FERPlus's partial-label candidate sets (classes with votes), when the dataset has them
        self.candidates = None
        if items and all("candidates" in it for it in items):
            self.candidates = np.stack([np.asarray(it["candidates"], bool) for it in items])
        # the recording a face is a frame of (CK+'s sequences), when the dataset says: evaluation
        # then also votes once per sequence
        self.groups = [it["sequence"] for it in items] if items and all("sequence" in it for it in items) else None
        self.landmarks = None
        if landmarks:
            missing = sum(1 for it in items if it.get("landmarks") is None)
            if missing:
                raise ValueError(f"{dataset.name}: {missing} of {len(items)} faces have no landmarks; attach a landmark "
                                 "cache first (fer_edge.data.landmarks.ensure)")
            self.landmarks = [np.asarray(it["landmarks"], np.float32) for it in items]
        mean, std = normalisation(self.color)
        self.mean, self.std = np.array(mean, np.float32), np.array(std, np.float32)

    def set_epoch(self, epoch: int) -> None:
        self.epoch = epoch

    def with_view(self, view: str) -> "TorchFaces":
        """The same faces (shared, not copied) served as another view."""
        if view not in VIEWS:
            raise ValueError(f"view: expected one of {VIEWS}, got {view!r}")
        other = object.__new__(TorchFaces)
        other.__dict__.update(self.__dict__, view=view)
        return other

    def __len__(self) -> int:
        return len(self.images)

    def _augment(self, item: dict, kind: str, rng) -> dict:
        if kind == "train":
            if self.level != "none":
                item = augment.strong(item, rng) if self.level == "strong" else augment.weak(item, rng)
            return item
        return augment.strong(item, rng) if kind == "strong" else augment.weak(item, rng)

    def _resize(self, img: np.ndarray, lm):
        h, w = img.shape[:2]
        if (h, w) != (self.size, self.size):
            img = cv2.resize(img, (self.size, self.size), interpolation=cv2.INTER_LINEAR)
            if lm is not None:
                lm = lm * np.array([self.size / w, self.size / h], np.float32)
        return img, lm

    def _one(self, i: int, kind: str, salt: int, npass: int = 0):
        """(image tensor, landmarks tensor or None) of face i as view `kind` (on pass `npass` of the epoch)."""
        img, lm = self.images[i], None if self.landmarks is None else self.landmarks[i]
        rng = None
        if kind != "eval":
            key = [self.seed, self.epoch, i] if kind == "train" else [self.seed, self.epoch, i, salt]
            if npass:  # the first pass keeps the keys of before (runs that never cycle are unchanged)
                key += [salt, npass, 1] if kind == "train" else [npass]
            rng = np.random.default_rng(key)
        if lm is None:
            img, _ = self._resize(img, None)
            if rng is not None:
                img = self._augment({"image": img}, kind, rng)["image"]
        else:
            if rng is not None:
                item = self._augment({"image": img, "landmarks": lm}, kind, rng)
                img, lm = item["image"], item["landmarks"]
            img, lm = self._resize(img, lm)
        if kind == "train" and self.level != "none" and self.erasing > 0:
            img = augment.random_erasing({"image": img}, rng, p=self.erasing)["image"]
        x = (img.astype(np.float32) / 255.0 - self.mean) / self.std
        x = x[None] if x.ndim == 2 else x.transpose(2, 0, 1)
        x = torch.from_numpy(np.ascontiguousarray(x))
        return x, None if lm is None else torch.from_numpy(np.ascontiguousarray(lm, dtype=np.float32))

    def __getitem__(self, i: int) -> dict:
        if i < 0:
            raise IndexError(f"face index {i} < 0")
        i, npass = i % len(self.images), i // len(self.images)
        out = {"label": int(self.labels[i]), "soft_label": torch.from_numpy(self.targets[i]), "index": i}
        if self.candidates is not None:
            out["candidates"] = torch.from_numpy(self.candidates[i])
        views = _MULTI.get(self.view, (("image", self.view, 0),))
        for field, kind, salt in views:
            x, lm = self._one(i, kind, salt, npass)
            out[field] = x
            if lm is not None:
                out["landmarks" if field == "image" else f"{field}_landmarks"] = lm
        return out


def with_passes(indices, n: int) -> np.ndarray:
    """An epoch's order of face indices -> the same order with the k-th visit of face i numbered
    i + k * n (its pass), so that TorchFaces draws fresh augmentation on every visit.

    >>> with_passes([2, 0, 2, 1, 0, 2], 3).tolist()
    [2, 0, 5, 1, 3, 8]
    """
    idx = np.asarray(indices, dtype=np.int64)
    if idx.size and (idx.min() < 0 or idx.max() >= n):
        raise ValueError(f"face indices must be in [0, {n})")
    order = np.argsort(idx, kind="stable")
    sorted_idx = idx[order]
    starts = np.searchsorted(sorted_idx, sorted_idx, side="left")  # first position of each value
    visit = np.empty_like(idx)
    visit[order] = np.arange(len(idx)) - starts
    return idx + visit * n
