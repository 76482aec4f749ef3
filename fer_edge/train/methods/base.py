"""The method contract: what a training method declares and what the trainer does for it.

A method is a class registered by name (`@register_method`) in a module of its own, with:
- `Config`: a dataclass, the method's own YAML section (named like the method) and `name.key=value`
  overrides; unknown keys and bad types are errors when the config loads, and `check_config(cfg)`
  checks values against the rest of the run's config then too;
- `build_model(num_classes, in_channels)` and `stages()`: the stages it trains in order (epochs,
  data roles, optimiser, schedule, evaluated or not);
- `train_step(ctx, batch) -> {term: loss tensor}`: named loss terms on a batch dict of named
  fields; the trainer sums the terms, checks the sum is finite, steps, and logs each term per epoch;
- `inference()`: what is evaluated and exported (the module, its extra inputs, its heads) and
  `decision()`: how outputs become labels, by rule name (fer_edge.decisions).
Every other hook is declared here with its default, so the trainer never probes for attributes.

The trainer owns the loop: seeding, data loaders for every data role (sharded across ranks under
torchrun, with `data.workers` workers), the optimiser and learning-rate schedule of each stage,
AMP, the finite-loss check, progress bars, metrics, the EMA teacher, checkpoints every epoch and a
resume that ends where an uninterrupted run would, in any stage.

Batches (dicts). Each data role yields per face: `image` [B, C, S, S] (normalised), `label` [B],
`soft_label` [B, K] and, for FERPlus, `candidates` [B, K] bool (labelled role only: unlabelled
roles never carry labels or anything derived from them), `index` [B]
(the face's index in its dataset, for per-sample state), `landmarks` [B, 5, 2] when the method's
`fields` ask for them. A "weak+strong" view gives `weak`/`strong` (+ `weak_landmarks`,
`strong_landmarks`) instead of `image`. The stage's first role's fields are plain; the others
are prefixed with the role: `target_weak`, `unlabelled_index`, ...
"""
from __future__ import annotations

import dataclasses
from dataclasses import dataclass, field
from typing import Any, Callable, ClassVar

import numpy as np

ROLES = ("labelled", "target", "unlabelled")
VIEWS = ("train", "eval", "weak", "strong", "weak+strong", "weak+weak+strong")
OPTIMIZERS = ("sgd", "adamw", "adam")
SCHEDULES = ("cosine", "exponential", "dann", "constant")


@dataclass(frozen=True)
class Stage:
    """One training stage.

    data: the roles each step draws from, first role first: ("labelled",) for supervised steps,
        ("labelled", "target") for domain adaptation (a labelled source batch and an unlabelled
        target batch per step), ("labelled", "unlabelled") for semi-supervised learning,
        ("unlabelled",) for label-free pre-training. `target` is data.target; `unlabelled` is
        data.unlabelled, or the labelled training faces with their labels withheld.
    views: role -> view: "train" (data.augment + random erasing), "eval" (none), "weak",
        "strong", "weak+strong" (two views of each face), "weak+weak+strong" (`weak`, `weak2`,
        `strong`). Default "train" for the first role,
        "weak+strong" for the others.
    batch: role -> faces per step (default data.batch_size).
    steps_per_epoch: 0 = one pass: over the first role for a single role; over the second role
        (capped by the first role's batches) for two. Set for two roles, both roles cycle.
    schedule: "cosine" (linear warm-up over `warmup_epochs`, then cosine to 0), "exponential"
        (lr * gamma ** epoch of the stage), "dann" (lr / (1 + 10 p) ** 0.75, p the stage's
        progress), "constant". Each parameter group's lr is the schedule's times its "lr_mult".
    evaluate: evaluate on the selection split after each epoch (and choose best.pt among them).
    Each stage starts with a fresh optimiser (a resumed run restores the stage's own state).
    """
    name: str
    epochs: int
    lr: float
    data: tuple[str, ...] = ("labelled",)
    views: dict = field(default_factory=dict)
    batch: dict = field(default_factory=dict)
    steps_per_epoch: int = 0
    optimizer: str = "sgd"
    momentum: float = 0.9
    nesterov: bool = True
    weight_decay: float = 5e-4
    betas: tuple[float, float] = (0.9, 0.999)
    schedule: str = "cosine"
    warmup_epochs: float = 0.0
    gamma: float = 0.9
    evaluate: bool = True

    def __post_init__(self):
        if not self.data or any(r not in ROLES for r in self.data) or len(set(self.data)) != len(self.data):
            raise ValueError(f"stage {self.name}: data roles must be distinct names from {ROLES}, got {self.data}")
        if len(self.data) > 2:
            raise ValueError(f"stage {self.name}: at most two data roles per step, got {self.data}")
        for role, view in self.views.items():
            if role not in self.data or view not in VIEWS:
                raise ValueError(f"stage {self.name}: views[{role!r}]={view!r}: roles {self.data}, views {VIEWS}")
        if self.optimizer not in OPTIMIZERS:
            raise ValueError(f"stage {self.name}: optimizer {self.optimizer!r} not in {OPTIMIZERS}")
        if self.schedule not in SCHEDULES:
            raise ValueError(f"stage {self.name}: schedule {self.schedule!r} not in {SCHEDULES}")
        if self.epochs < 0 or not np.isfinite(self.lr) or self.lr < 0:
            raise ValueError(f"stage {self.name}: epochs must be >= 0 and lr finite and >= 0")

    def view(self, role: str) -> str:
        return self.views.get(role, "train" if role == self.data[0] else "weak+strong")


@dataclass(frozen=True)
class InputSpec:
    """A graph input after the pixels: its name (also the batch field that feeds it in
    evaluation) and its shape without the batch dimension."""
    name: str
    shape: tuple[int, ...]


@dataclass(frozen=True)
class InferenceSpec:
    """What is evaluated and exported. inputs: the graph's inputs after the pixels; heads: the
    classifier names of a multi-head model ([N, heads, C] logits), empty for one head."""
    inputs: tuple[InputSpec, ...] = ()
    heads: tuple[str, ...] = ()


@dataclass(frozen=True)
class Decision:
    """A decision rule of fer_edge.decisions by name, with its parameters (JSON-able)."""
    rule: str = "argmax"
    params: dict = field(default_factory=dict)

    def to_dict(self) -> dict:
        return {"rule": self.rule, "params": self.params}


@dataclass
class NoConfig:
    """Methods without settings of their own."""


class TrainContext:
    """What a method sees of the trainer in `train_step` and the hooks.

    model: the model to call (DDP-wrapped under torchrun); module: the same model unwrapped (its
    submodules and parameters); teacher: the EMA copy (None without EMA); device; cfg; stage;
    epoch (0-based over the whole run); stage_epoch (0-based in the stage); step (in the epoch);
    steps_per_epoch; stage_step and stage_steps (progress through the stage); rank, world.
    log(**scalars): values averaged over the epoch into metrics.jsonl.
    outputs(role): `predict` outputs [N, ...] of every face of a data role, un-augmented, in
    eval mode, as numpy (e.g. AGLRLS's learning status on the target pool).
    num_faces(role): how many faces a role has (to size per-sample state, indexed by `index`).
    role_labels(role): the true labels of a role's faces by `index`, for reports only (e.g. the
    precision of pseudo labels on an unlabelled pool whose labels are hidden): never train on them.
    autocast(): the trainer's mixed-precision context.
    history: the per-epoch logs of the epochs trained so far (read-only).
    eval_outputs(spec, as_selection=False): (`predict` outputs, labels) of a labelled dataset
    spec that is never trained on (e.g. a user's check set), whole like an eval set, or cut like
    the selection split (data.limit) with as_selection.
    """

    def __init__(self, **kw):
        self.__dict__.update(kw)


class Method:
    """Base class of training methods; see the module docstring for the contract."""

    name: ClassVar[str] = ""
    description: ClassVar[str] = ""
    Config: ClassVar[type] = NoConfig
    # per-face fields the method's batches and inference need beyond the image ("landmarks")
    fields: ClassVar[frozenset] = frozenset()
    # False: report and ship the last epoch's checkpoint (no selection at all)
    select_checkpoint: ClassVar[bool] = True
    # True when some parameters get no gradient in some steps (DDP must be told)
    has_unused_parameters: ClassVar[bool] = False
    # > 0: the trainer keeps an EMA teacher of the model with this decay (ctx.teacher)
    ema_decay: float = 0.0
    # evaluation, reports and export use the EMA weights
    evaluate_with_ema: bool = False

    def __init__(self, cfg):
        self.cfg = cfg
        self.config = cfg.method_config  # the method's own section (an instance of Config)
        # per-sample state: tensors indexed by a batch's `index` (e.g. revised candidate labels),
        # created in setup() with ctx.num_faces(role); saved in checkpoints and restored on resume
        self.samples: dict[str, Any] = {}

    @classmethod
    def check_config(cls, cfg) -> None:
        """Raises ValueError for settings this method cannot train with (called when the config loads)."""

    # -- declared by every method ---------------------------------------------------------------
    def build_model(self, num_classes: int, in_channels: int):
        raise NotImplementedError(f"{type(self).__name__}.build_model")

    def stages(self) -> list[Stage]:
        raise NotImplementedError(f"{type(self).__name__}.stages")

    def train_step(self, ctx: TrainContext, batch: dict) -> dict:
        """Named loss terms {name: scalar tensor}; the trainer sums them (in this order)."""
        raise NotImplementedError(f"{type(self).__name__}.train_step")

    # -- inference: declared, with defaults for single-head image classifiers --------------------
    def inference(self) -> InferenceSpec:
        return InferenceSpec()

    def predict(self, model, image, *inputs):
        """Outputs of the exported graph (before the pixels' normalisation is folded in):
        logits [N, C] or [N, heads, C]. `inputs` follow inference().inputs."""
        return model(image, *inputs)

    def export_module(self, model):
        """The part of the trained model that is evaluated and exported (e.g. without
        discriminators); `predict` is called with it."""
        return model

    def decision(self) -> Decision:
        return Decision("argmax")

    def decision_rules(self) -> dict[str, Decision]:
        """Other rules reported side by side in final.json (name -> Decision)."""
        return {}

    def export_extras(self) -> dict:
        """Method facts for people reading the metadata (never used to decide)."""
        return {}

    # -- hooks, all optional ----------------------------------------------------------------------
    def param_groups(self, model, stage: Stage) -> list[dict]:
        """Optimiser groups; "lr_mult" scales the stage's lr, "name" labels the group."""
        return [{"params": [p for p in model.parameters() if p.requires_grad], "lr_mult": 1.0, "name": "all"}]

    def setup(self, ctx: TrainContext) -> None:
        """Once, after the model exists and before any checkpoint is resumed (e.g. init_from)."""

    def on_stage_start(self, ctx: TrainContext) -> None:
        """When a stage's first epoch begins (not when a run resumes in the middle of it)."""

    def on_epoch_start(self, ctx: TrainContext) -> None:
        """Before each training epoch."""

    def on_epoch_end(self, ctx: TrainContext) -> dict:
        """After each training epoch (thresholds, label revision); returns scalars to log."""
        return {}

    def summary(self, history: list[dict]) -> dict:
        """What the user should know about the finished run beyond accuracy: {"lines": [...],
        "warnings": [...], ...}; printed at the end of `fer-edge train` and kept in final.json."""
        return {}

    def state_dict(self) -> dict:
        """Method state saved in checkpoints; the base saves `samples` (per-sample tensors)."""
        return {"samples": {k: v for k, v in self.samples.items()}}

    def load_state_dict(self, state: dict) -> None:
        self.samples = dict((state or {}).get("samples", {}))


# -- registry ----------------------------------------------------------------------------------------
_METHODS: dict[str, type[Method]] = {}
# modules that register the built-in methods; imported when the registry is first read
BUILTIN = ("fer_edge.train.methods.baseline", "fer_edge.train.methods.aglrls", "fer_edge.train.methods.cross_layer",
           "fer_edge.train.methods.pll", "fer_edge.train.methods.leaf",
           "fer_edge.train.methods.cafe")
_loaded = False


def register_method(cls: type[Method]) -> type[Method]:
    """Class decorator: makes a method available by its `name` (CLI, configs, checkpoints)."""
    if not cls.name or not cls.description:
        raise TypeError(f"{cls.__name__}: a method needs a name and a one-line description")
    if not dataclasses.is_dataclass(cls.Config):
        raise TypeError(f"{cls.__name__}.Config must be a dataclass")
    if cls.name in _METHODS and _METHODS[cls.name] is not cls:
        raise ValueError(f"method {cls.name!r} is registered twice ({_METHODS[cls.name].__module__}, {cls.__module__})")
    _METHODS[cls.name] = cls
    return cls


def _load_builtin() -> None:
    global _loaded
    if _loaded:
        return
    _loaded = True
    from importlib import import_module, metadata

    for module in BUILTIN:
        import_module(module)
    for ep in metadata.entry_points(group="fer_edge.methods"):  # methods from other packages
        ep.load()


def method_names() -> list[str]:
    _load_builtin()
    return sorted(_METHODS)


def method_class(name: str) -> type[Method]:
    _load_builtin()
    if name not in _METHODS:
        raise ValueError(f"method: expected one of {tuple(sorted(_METHODS))}, got {name!r}")
    return _METHODS[name]


def get_method(name: str, cfg) -> Method:
    return method_class(name)(cfg)


def describe() -> dict[str, str]:
    """name -> one-line description of every registered method."""
    return {n: method_class(n).description for n in method_names()}
