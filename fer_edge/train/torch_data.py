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
