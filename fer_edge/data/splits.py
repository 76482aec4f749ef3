"""Semi-supervised splits, unlabelled multi-view data, and the paired source/target sampler."""
from __future__ import annotations

from typing import Callable, Iterator, Sequence

import numpy as np


def labelled_split(labels: Sequence[int], n_per_class: int, seed: int = 0) -> tuple[np.ndarray, np.ndarray]:
    """(labelled indices, unlabelled indices): n random samples of every class labelled, the rest
    unlabelled. A class with fewer than n samples is labelled whole. Deterministic for a seed.

    >>> lab, unl = labelled_split([0, 0, 0, 1, 1, 2], 2, seed=0)
    >>> sorted(np.bincount(np.array([0, 0, 0, 1, 1, 2])[lab]).tolist()), len(unl)
    ([1, 2, 2], 1)
    """
    labels = np.asarray(labels)
    if n_per_class < 1:
        raise ValueError(f"n_per_class must be >= 1, got {n_per_class}")
    rng = np.random.default_rng(seed)
    chosen = []
    for c in np.unique(labels[labels >= 0]):
        idx = np.flatnonzero(labels == c)
        chosen.append(rng.permutation(idx)[:n_per_class])
    lab = np.sort(np.concatenate(chosen)) if chosen else np.zeros(0, dtype=np.int64)
    unl = np.setdiff1d(np.arange(len(labels)), lab)
    return lab, unl


class MultiView:
    """A dataset's images, unlabelled, each returned under several transforms (e.g. weak, weak,
    strong for LEAF/FixMatch). Transforms take (item dict, rng) and return an item dict; view k
    of item i uses rng seeded by (seed, epoch, i, k), so views are reproducible."""

    def __init__(self, dataset, transforms: Sequence[Callable], seed: int = 0, keep_label: bool = False):
        self.dataset, self.transforms, self.seed, self.keep_label = dataset, list(transforms), seed, keep_label
        self.epoch = 0

    def set_epoch(self, epoch: int) -> None:
        self.epoch = epoch

    def __len__(self) -> int:
        return len(self.dataset)

    def __getitem__(self, i: int) -> dict:
        item = self.dataset[i]
        views = []
        for k, t in enumerate(self.transforms):
            rng = np.random.default_rng([self.seed, self.epoch, i, k])
            views.append(t(dict(item), rng)["image"])
        out = {"views": views, "index": item["index"], "name": item["name"]}
        if self.keep_label:
            out["label"] = item["label"]
        return out


class PairedSampler:
    """Batches of (source indices, target indices) for domain adaptation: each step draws
    `source_batch` source and `target_batch` target samples; an epoch covers the source set once
    (last partial batch dropped) and the target set is cycled, reshuffled on every pass.
    With `steps`, an epoch is that many batches instead and both sets are cycled (semi-supervised
    learning: a few labelled faces recur while the unlabelled pool is covered). Deterministic for
    (seed, epoch).

    >>> s = PairedSampler(10, 3, 4, 2, seed=0)
    >>> [(len(a), len(b)) for a, b in s]
    [(4, 2), (4, 2)]
    >>> len(list(PairedSampler(10, 30, 4, 2, seed=0, steps=7)))
    7
    """

    def __init__(self, source_len: int, target_len: int, source_batch: int, target_batch: int, seed: int = 0,
                 steps: int = 0):
        if min(source_len, target_len) < 1:
            raise ValueError(f"both domains need samples, got source={source_len}, target={target_len}")
        if source_batch < 1 or target_batch < 1:
            raise ValueError("batch sizes must be >= 1")
        if source_len < source_batch:
            raise ValueError(f"source_batch={source_batch} exceeds the source set ({source_len})")
        self.source_len, self.target_len = source_len, target_len
        self.source_batch, self.target_batch = source_batch, target_batch
        self.seed, self.epoch, self.steps = seed, 0, steps

    def set_epoch(self, epoch: int) -> None:
        self.epoch = epoch

    def __len__(self) -> int:
        return self.steps or self.source_len // self.source_batch

    def __iter__(self) -> Iterator[tuple[np.ndarray, np.ndarray]]:
        rng = np.random.default_rng([self.seed, self.epoch])
        src = rng.permutation(self.source_len)
        if self.steps:  # cycle the source too, each pass reshuffled (drawn after the first: same src[0] as before)
            passes = -(-self.steps * self.source_batch // self.source_len)
            src = np.concatenate([src] + [rng.permutation(self.source_len) for _ in range(passes - 1)])
        need = len(self) * self.target_batch
        passes = -(-need // self.target_len)
        tgt = np.concatenate([rng.permutation(self.target_len) for _ in range(passes)])
        for b in range(len(self)):
            yield (src[b * self.source_batch:(b + 1) * self.source_batch],
                   tgt[b * self.target_batch:(b + 1) * self.target_batch])


def random_candidate_sets(labels: Sequence[int], num_classes: int, q: float = 0.3, seed: int = 0) -> np.ndarray:
    """Partial-label candidate sets for datasets without votes (methods.md §2, LW-style uniform
    flipping): the true class plus each other class independently with probability q.
    Returns bool [N, num_classes]; deterministic for a seed.

    >>> random_candidate_sets([0, 2], 3, q=0.0).astype(int).tolist()
    [[1, 0, 0], [0, 0, 1]]
    """
    labels = np.asarray(labels)
    if not 0.0 <= q <= 1.0:
        raise ValueError(f"q must be in [0, 1], got {q}")
    if labels.size and (labels.min() < 0 or labels.max() >= num_classes):
        raise ValueError(f"labels must be in [0, {num_classes}), got range [{labels.min()}, {labels.max()}]")
    rng = np.random.default_rng(seed)
    cand = rng.random((len(labels), num_classes)) < q
    cand[np.arange(len(labels)), labels] = True
    return cand
