"""The data roles of a run and their loaders (the trainer's side of the method contract).

- labelled: data.dataset's train split (labels in the mode data.label_mode asks for);
- target: data.target, an unlabelled domain to adapt to;
- unlabelled: data.unlabelled, or the labelled training faces with their labels withheld (with
  data.labels_per_class, the labelled role is a seeded draw of n faces per class and the
  unlabelled role the rest of the training faces).
Unlabelled roles keep every face (the full 8-class view, so that e.g. CK+'s contempt faces stay
in a 7-class run's pool) and their batches never carry labels. Faces are opened once and served
as each stage's view. Loaders shard by rank under torchrun and use data.workers workers; their
order is keyed on (seed, epoch) only, so a resumed run sees the same batches.
"""
from __future__ import annotations

import math

import numpy as np
import torch

from fer_edge.data import open_dataset
from fer_edge.train.torch_data import TorchFaces, with_passes

LABEL_FIELDS = ("label", "soft_label", "candidates")  # what unlabelled roles never carry
UNLABELLED_PREFIX = "unlabelled:"


def open_split(spec: str, num_classes: int, color: str, mode: str = "majority"):
    """'ferplus:test', 'ckplus', 'rafdb:/root@test' -> FaceDataset (FERPlus under `mode`)."""
    spec, _, split = spec.partition("@")
    kind, _, arg = spec.partition(":")
    if kind == "ferplus" and arg in ("train", "valid", "test"):
        spec, split = "ferplus", arg
    kwargs = {"num_classes": num_classes, "color": color}
    if kind == "ferplus":
        kwargs["mode"] = mode
    return open_dataset(spec, split or None, **kwargs)


def labelled_draw(labels, per_class: int, seed: int) -> np.ndarray:
    """Sorted indices of a seeded draw of `per_class` faces of every class (all of a class that has
    fewer), over faces with a label (>= 0)."""
    labels = np.asarray(labels)
    rng = np.random.default_rng([seed, 20261202])
    picked = []
    for c in np.unique(labels[labels >= 0]):
        idx = np.flatnonzero(labels == c)
        picked.append(rng.choice(idx, min(per_class, len(idx)), replace=False))
    return np.sort(np.concatenate(picked)) if picked else np.zeros(0, dtype=np.int64)


def split_spec(dataset: str, split: str) -> str:
    """A split of the training dataset as an open_split spec; selection is never on a test split."""
    if split != "train" and "test" in split:
        raise ValueError("select_on: checkpoints are never selected on a test split")
    return f"{dataset}:{split}" if dataset == "ferplus" else f"{dataset}@{split}"


def check_roles(cfg, stages) -> None:
    """Clear errors before anything trains: unlabelled faces are never trained on with labels,
    selected or evaluated on, and a stage's roles must be configured."""
    for key, specs in (("eval_sets", cfg.eval_sets), ("data.dataset", [cfg.data.dataset])):
        if any(str(s).startswith(UNLABELLED_PREFIX) for s in specs):
            raise ValueError(f"{key}: unlabelled faces have no labels to train, select or evaluate on "
                             "(they can be an adaptation target or an unlabelled pool: data.target=unlabelled:<folder>, "
                             "data.unlabelled=unlabelled:<folder>)")
    needs_target = any("target" in s.data and s.epochs > 0 for s in stages)
    if needs_target and not cfg.data.target:
        raise ValueError(f"method {cfg.method} adapts to an unlabelled target domain: set data.target "
                         "(or --target), e.g. ckplus or unlabelled:<folder>")


class RunData:
    """The faces of every role the run needs, opened once (with landmarks when the method's
    fields ask for them), plus the selection split and eval sets in the same form."""

    def __init__(self, cfg, fields, rank: int = 0):
        self.cfg, self.landmarks, self.rank = cfg, "landmarks" in fields, rank
        d = cfg.data
        self.train_spec = split_spec(d.dataset, "train")
        self._roles: dict[str, TorchFaces] = {}
        self._labelled_mode = d.label_mode  # majority | probability, checked when the config loads

    def _faces(self, spec: str, num_classes: int, mode: str = "majority", soft: bool = False, limit: bool = True,
               part: str = "") -> TorchFaces:
        d = self.cfg.data
        ds = open_split(spec, num_classes, d.color, mode)
        if d.limit and limit:
            ds = ds.subset(range(min(d.limit, len(ds))))
        if part:
            labelled = labelled_draw(ds.labels, d.labels_per_class, self.cfg.seed)
            ds = ds.subset(labelled if part == "labelled" else np.setdiff1d(np.arange(len(ds)), labelled))
        if self.landmarks:
            from fer_edge.data import landmarks

            path = landmarks.cache_file(spec, d.landmarks_dir or None)
            stats = landmarks.ensure(ds, path, progress=self.rank == 0)
            if stats["detected_now"] and self.rank == 0:
                print(f"{spec}: detected landmarks for {stats['detected_now']} faces (cached in {path})")
        return TorchFaces(ds, d.image_size, "eval", self.cfg.seed, d.augment, d.random_erasing, soft_targets=soft,
                          landmarks=self.landmarks)

    def role(self, name: str) -> TorchFaces:
        """The faces of a role (served as "eval"; stages take `.with_view`)."""
        if name not in self._roles:
            d = self.cfg.data
            part = "labelled" if d.labels_per_class else ""
            if name == "labelled":
                faces = self._faces(self.train_spec, d.num_classes, self._labelled_mode, soft=self._labelled_mode == "probability",
                                    part=part)
            elif name == "target":
                faces = self._faces(d.target, 8)
            elif name == "unlabelled":
                if d.unlabelled:
                    faces = self._faces(d.unlabelled, 8)
                elif part:  # the training faces outside the labelled draw
                    faces = self._faces(self.train_spec, d.num_classes, self._labelled_mode, part="unlabelled")
                else:
                    faces = self.role("labelled")
            else:
                raise ValueError(f"unknown data role {name!r}")
            self._roles[name] = faces
        return self._roles[name]

    @property
    def classes(self) -> list[str]:
        from fer_edge.data.labels import view

        return list(view(self.cfg.data.num_classes))

    def selection(self) -> TorchFaces:
        return self._faces(split_spec(self.cfg.data.dataset, self.cfg.select_on), self.cfg.data.num_classes)

    def eval_set(self, spec: str) -> TorchFaces:
        """An eval set, always whole (data.limit never shrinks what a report is computed on)."""
        return self._faces(spec, self.cfg.data.num_classes, limit=False)


def collate(items: list[dict], prefix: str = "", withhold_labels: bool = False) -> dict:
    """Items -> a batch dict; unlabelled roles lose their label fields, later roles get a prefix."""
    batch = torch.utils.data.default_collate(items)
    if withhold_labels:
        for k in LABEL_FIELDS:
            batch.pop(k, None)
    return {prefix + k: v for k, v in batch.items()} if prefix else batch


class _Collate:
    """Picklable collate_fn for loader workers."""

    def __init__(self, withhold_labels: bool):
        self.withhold_labels = withhold_labels

    def __call__(self, items):
        return collate(items, withhold_labels=self.withhold_labels)


class PairedSteps(torch.utils.data.Dataset):
    """Step k of a two-role epoch: a batch of the first role and one of the second, by the
    seeded PairedSampler order; rank r of `world` takes pairs r, r + world, ... (each pair once)."""

    def __init__(self, first: TorchFaces, second: TorchFaces, roles, batches, seed: int, epoch: int, steps: int,
                 rank: int = 0, world: int = 1, cycle: bool = False):
        from fer_edge.data.splits import PairedSampler

        sampler = PairedSampler(len(first), len(second), batches[0], batches[1], seed, steps * world if cycle else 0)
        sampler.set_epoch(epoch)
        pairs = list(sampler)
        if pairs:  # visits numbered over the whole epoch (before ranks take their share): fresh views per pass
            a = with_passes(np.concatenate([p[0] for p in pairs]), len(first))
            b = with_passes(np.concatenate([p[1] for p in pairs]), len(second))
            ia, ib = (np.cumsum([0] + [len(p[j]) for p in pairs]) for j in (0, 1))
            pairs = [(a[ia[k]:ia[k + 1]], b[ib[k]:ib[k + 1]]) for k in range(len(pairs))]
        self.pairs = pairs[rank::world][:steps]
        self.first, self.second, self.roles = first, second, roles

    def __len__(self) -> int:
        return len(self.pairs)

    def __getitem__(self, k: int) -> dict:
        a, b = self.pairs[k]
        out = collate([self.first[int(i)] for i in a], withhold_labels=self.roles[0] != "labelled")
        out.update(collate([self.second[int(i)] for i in b], prefix=f"{self.roles[1]}_", withhold_labels=True))
        return out


def stage_steps(stage, faces: list[TorchFaces], batches: list[int], world: int, max_steps: int) -> int:
    """Steps per epoch of a stage on each rank (see Stage.steps_per_epoch)."""
    if len(faces) == 1:
        natural = math.ceil(len(faces[0]) / world) // batches[0]
        if natural < 1:
            raise ValueError(f"stage {stage.name}: batch size {batches[0]} is larger than the {stage.data[0]} faces per "
                             f"process ({math.ceil(len(faces[0]) / world)})")
        steps = stage.steps_per_epoch or natural
    else:
        if len(faces[0]) < batches[0]:
            raise ValueError(f"stage {stage.name}: batch size {batches[0]} exceeds the {stage.data[0]} faces ({len(faces[0])})")
        if stage.steps_per_epoch:  # explicit: both roles cycle (a few labelled faces, a large pool)
            steps = max(1, stage.steps_per_epoch // world)
        else:
            steps = max(1, min(-(-len(faces[1]) // batches[1]), len(faces[0]) // batches[0]) // world)
    return max(1, min(steps, max_steps) if max_steps else steps)


def stage_loader(stage, data: RunData, epoch: int, steps: int, seed: int, rank: int, world: int, workers: int):
    """The loader of one epoch of a stage (views set, epoch keyed)."""
    batches = [stage.batch.get(r, data.cfg.data.batch_size) for r in stage.data]
    faces = [data.role(r).with_view(stage.view(r)) for r in stage.data]
    for f in faces:
        f.set_epoch(epoch)
    if len(faces) == 1:
        if world > 1:
            sampler = torch.utils.data.distributed.DistributedSampler(faces[0], world, rank, shuffle=True, seed=seed,
                                                                      drop_last=True)
            sampler.set_epoch(epoch)
        else:
            # an explicit steps_per_epoch beyond one pass draws more passes (each a fresh permutation)
            n = max(len(faces[0]), steps * batches[0]) if stage.steps_per_epoch else None
            order = torch.utils.data.RandomSampler(faces[0], num_samples=n,
                                                   generator=torch.Generator().manual_seed(seed * 100003 + epoch))
            sampler = with_passes(list(order), len(faces[0])).tolist()  # fresh views on every pass
        return torch.utils.data.DataLoader(faces[0], batches[0], sampler=sampler, drop_last=True, num_workers=workers,
                                           collate_fn=_Collate(stage.data[0] != "labelled"))
    steps_data = PairedSteps(faces[0], faces[1], stage.data, batches, seed, epoch, steps, rank, world,
                             cycle=bool(stage.steps_per_epoch))
    # its own generator: a loader otherwise draws its workers' base seed from torch's global RNG,
    # which would shift the dropout masks of the step (the pairs are already seeded)
    return torch.utils.data.DataLoader(steps_data, batch_size=None, shuffle=False, num_workers=workers,
                                       generator=torch.Generator().manual_seed(seed * 100003 + epoch))


def eval_loader(faces: TorchFaces, workers: int = 0):
    return torch.utils.data.DataLoader(faces.with_view("eval"), 256, shuffle=False, num_workers=workers,
                                       collate_fn=_Collate(False))
