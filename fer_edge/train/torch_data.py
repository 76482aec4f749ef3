"""FaceDataset -> tensors for training: preloaded pixels, seeded augmentation, normalisation.

Augmentation randomness is keyed on (seed, epoch, index), never on worker or process state,
so a resumed run and a run with any number of loader workers see the same images.
"""
from __future__ import annotations

import cv2
import numpy as np
import torch

from fer_edge.data import augment

# FER faces are gray; these are FERPlus train statistics rounded (pixel / 255).
GRAY_MEAN, GRAY_STD = 0.50, 0.25
RGB_MEAN, RGB_STD = (0.485, 0.456, 0.406), (0.229, 0.224, 0.225)


def normalisation(color: str) -> tuple[list[float], list[float]]:
    if color == "gray":
        return [GRAY_MEAN], [GRAY_STD]
    return list(RGB_MEAN), list(RGB_STD)


class TorchFaces(torch.utils.data.Dataset):
    """Items: (image [C, S, S] float32 normalised, label int64, soft target [K] float32)."""

    def __init__(self, dataset, size: int, train: bool, augment_level: str = "weak", random_erasing: float = 0.0,
                 seed: int = 0, soft_targets: bool = False):
        self.size, self.train, self.level, self.erasing = size, train, augment_level, random_erasing
        self.seed, self.epoch, self.num_classes = seed, 0, len(dataset.classes)
        self.color = dataset.color
        items = [dataset[i] for i in range(len(dataset))]  # skips unreadable files (counted by dataset)
        self.images = [it["image"] for it in items]
        self.labels = np.array([it["label"] for it in items], dtype=np.int64)
        if soft_targets and all("target" in it for it in items):
            self.targets = np.stack([it["target"] for it in items]).astype(np.float32)
        else:
            self.targets = np.eye(self.num_classes, dtype=np.float32)[self.labels]
        mean, std = normalisation(self.color)
        self.mean = np.array(mean, np.float32)
        self.std = np.array(std, np.float32)

    def set_epoch(self, epoch: int) -> None:
        self.epoch = epoch

    def __len__(self) -> int:
        return len(self.images)

    def __getitem__(self, i: int):
        img = self.images[i]
        if img.shape[0] != self.size or img.shape[1] != self.size:
            img = cv2.resize(img, (self.size, self.size), interpolation=cv2.INTER_LINEAR)
        if self.train and self.level != "none":
            rng = np.random.default_rng([self.seed, self.epoch, i])
            item = {"image": img}
            item = augment.strong(item, rng) if self.level == "strong" else augment.weak(item, rng)
            if self.erasing > 0:
                item = augment.random_erasing(item, rng, p=self.erasing)
            img = item["image"]
        x = (img.astype(np.float32) / 255.0 - self.mean) / self.std
        x = x[None] if x.ndim == 2 else x.transpose(2, 0, 1)
        return torch.from_numpy(np.ascontiguousarray(x)), int(self.labels[i]), torch.from_numpy(self.targets[i])


class LandmarkFaces(torch.utils.data.Dataset):
    """Faces with their 5 landmarks, for landmark-driven models (AGLRLS).

    views: "eval" -> (image, landmarks, label, soft target); "weak" / "strong" -> the same with
    that augmentation; "weak+strong" -> (weak image, weak landmarks, strong image, strong
    landmarks, label, soft target): FixMatch's pair of views of one unlabelled sample.
    Landmarks are returned in the pixels of the size x size model input, moved by every
    geometric augmentation (a flip also swaps left and right points). Augmentation runs at the
    dataset's native size and is then resized, keyed on (seed, epoch, index, view)."""

    VIEWS = ("eval", "weak", "strong", "weak+strong")

    def __init__(self, dataset, size: int, views: str = "eval", seed: int = 0):
        if views not in self.VIEWS:
            raise ValueError(f"views: expected one of {self.VIEWS}, got {views!r}")
        self.size, self.views, self.seed, self.epoch = size, views, seed, 0
        self.num_classes = len(dataset.classes)
        items = [dataset[i] for i in range(len(dataset))]
        missing = sum(1 for it in items if it.get("landmarks") is None)
        if missing:
            raise ValueError(f"{dataset.name}: {missing} of {len(items)} samples have no landmarks; attach a landmark cache "
                             "first (fer_edge.data.landmarks.ensure)")
        self.images = [it["image"] for it in items]
        self.landmarks = [np.asarray(it["landmarks"], np.float32) for it in items]
        self.labels = np.array([it["label"] for it in items], dtype=np.int64)
        self.targets = np.eye(self.num_classes, dtype=np.float32)[np.clip(self.labels, 0, None)]
        mean, std = normalisation(dataset.color)
        self.mean, self.std = np.array(mean, np.float32), np.array(std, np.float32)

    def set_epoch(self, epoch: int) -> None:
        self.epoch = epoch

    def with_views(self, views: str) -> "LandmarkFaces":
        """The same faces (shared, not copied) served as other views."""
        if views not in self.VIEWS:
            raise ValueError(f"views: expected one of {self.VIEWS}, got {views!r}")
        other = object.__new__(LandmarkFaces)
        other.__dict__.update(self.__dict__, views=views)
        return other

    def __len__(self) -> int:
        return len(self.images)

    def _view(self, i: int, kind: str, salt: int):
        item = {"image": self.images[i], "landmarks": self.landmarks[i]}
        if kind != "eval":
            rng = np.random.default_rng([self.seed, self.epoch, i, salt])
            item = augment.strong(item, rng) if kind == "strong" else augment.weak(item, rng)
        img, lm = item["image"], item["landmarks"]
        h, w = img.shape[:2]
        if (h, w) != (self.size, self.size):
            img = cv2.resize(img, (self.size, self.size), interpolation=cv2.INTER_LINEAR)
            lm = lm * np.array([self.size / w, self.size / h], np.float32)
        x = (img.astype(np.float32) / 255.0 - self.mean) / self.std
        x = x[None] if x.ndim == 2 else x.transpose(2, 0, 1)
        return torch.from_numpy(np.ascontiguousarray(x)), torch.from_numpy(np.ascontiguousarray(lm, dtype=np.float32))

    def __getitem__(self, i: int):
        tail = (int(self.labels[i]), torch.from_numpy(self.targets[i]))
        if self.views == "weak+strong":
            return (*self._view(i, "weak", 0), *self._view(i, "strong", 1), *tail)
        return (*self._view(i, self.views, 0), *tail)
