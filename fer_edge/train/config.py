"""Training configuration: dataclasses, loadable from YAML, overridable from the command line
with dotted keys (`optim.lr=0.05 data.image_size=64`)."""
from __future__ import annotations

import dataclasses
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any, get_type_hints


@dataclass
class DataConfig:
    dataset: str = "ferplus"          # training set (open_dataset spec); selection uses its "valid" split
    label_mode: str = "majority"      # FERPlus target: majority (hard CE) or probability (vote distribution)
    num_classes: int = 8
    image_size: int = 48
    color: str = "gray"
    batch_size: int = 64
    workers: int = 0
    augment: str = "weak"             # none | weak | strong
    random_erasing: float = 0.5
    limit: int = 0                    # > 0: only the first N samples of each split (smoke tests)


@dataclass
class ModelConfig:
    backbone: str = "resnet18"
    width: float = 0.5
    stem: str = "s2"                  # ResNets: imagenet | s2 | s1
    dropout: float = 0.0
    pretrained: str = ""              # local weights file; nothing is downloaded


@dataclass
class OptimConfig:
    optimizer: str = "sgd"            # sgd | adamw
    lr: float = 0.1
    momentum: float = 0.9
    weight_decay: float = 5e-4
    epochs: int = 30
    warmup_epochs: float = 1.0
    label_smoothing: float = 0.0
    max_steps: int = 0                # > 0: stop each epoch after this many steps (smoke tests)


@dataclass
class AGLRLSConfig:
    """AGLRLS (methods.md §1). optim.epochs counts both stages: the first `source_epochs` are
    stage 1 (source only), the rest stage 2 (transfer)."""
    target: str = "ckplus"            # unlabelled target domain (its labels are read only by the final report)
    target_classes: int = 8           # label view the target pool is opened with (8: CK+'s contempt faces stay in the pool)
    source_epochs: int = 5            # stage 1 (ignored with init_from)
    init_from: str = ""               # start stage 2 from this stage-1 checkpoint (ablations share one stage 1)
    steps_per_epoch: int = 0          # stage-2 steps per epoch (0: one pass over the target pool)
    source_batch: int = 16            # stage 2: source + target samples per step
    target_batch: int = 16
    lr_transfer: float = 0.01         # stage-2 backbone lr (annealed lr / (1 + 10 p) ** 0.75)
    head_lr_mult: float = 10.0        # heads, branches, crop nets and discriminators
    align: str = "global_local"       # none | global | global_local: which features get a CDAN-E discriminator
    shared_discriminator: bool = False  # one discriminator for the five local features
    pseudo_labels: bool = True        # dynamic-threshold pseudo labels on the strong view
    tau: float = 0.95
    cdan_weight: float = 0.5
    grl_max_iter: int = 0             # GRL schedule length (0: the run's stage-2 steps; the authors: 10000)
    shared_heads: bool = False        # the released code's 3 heads instead of the paper's 7
    shared_local: str = "auto"        # auto (shared for mobilenet_v2) | yes | no: one crop net for the five points
    landmarks_dir: str = ""           # landmark caches (default: <cache dir>/landmarks); missing ones are detected once


@dataclass
class TrainConfig:
    method: str = "baseline"
    seed: int = 0
    out_dir: str = "runs/baseline"
    threads: int = 0                  # torch CPU threads (0: torch's default)
    amp: bool = True                  # mixed precision on CUDA (ignored on CPU)
    resume: bool = True               # continue from out_dir/last.pt when it exists
    select_on: str = "valid"          # split of data.dataset that picks the best checkpoint (never a test split)
    eval_sets: list = field(default_factory=lambda: ["ferplus:test", "ckplus"])  # reported at the end only
    data: DataConfig = field(default_factory=DataConfig)
    model: ModelConfig = field(default_factory=ModelConfig)
    optim: OptimConfig = field(default_factory=OptimConfig)
    aglrls: AGLRLSConfig = field(default_factory=AGLRLSConfig)

    def to_dict(self) -> dict:
        return dataclasses.asdict(self)


def _coerce(value: str, typ) -> Any:
    if typ is bool:
        if value.lower() in ("1", "true", "yes", "on"):
            return True
        if value.lower() in ("0", "false", "no", "off"):
            return False
        raise ValueError(f"expected a boolean, got {value!r}")
    if typ is list or getattr(typ, "__origin__", None) is list:
        return [v for v in value.split(",") if v]
    return typ(value)


def _apply(obj, key: str, value: Any, from_text: bool) -> None:
    parts = key.split(".")
    for p in parts[:-1]:
        if not hasattr(obj, p) or not dataclasses.is_dataclass(getattr(obj, p)):
            raise ValueError(f"unknown config section {p!r} in {key!r}")
        obj = getattr(obj, p)
    name = parts[-1]
    hints = get_type_hints(type(obj))
    if name not in hints:
        valid = ", ".join(f.name for f in dataclasses.fields(obj))
        raise ValueError(f"unknown config key {key!r}; valid keys here: {valid}")
    typ = hints[name]
    if dataclasses.is_dataclass(typ):
        if not isinstance(value, dict):
            raise ValueError(f"{key}: expected a mapping")
        for k, v in value.items():
            _apply(getattr(obj, name), k, v, from_text)
        return
    if from_text or (isinstance(value, str) and typ is not str):
        value = _coerce(str(value), typ)
    elif typ is float and isinstance(value, int):
        value = float(value)
    setattr(obj, name, value)


def load_config(path: str | Path | None = None, overrides: list[str] | None = None, **defaults) -> TrainConfig:
    """Defaults <- YAML file <- `key=value` overrides."""
    cfg = TrainConfig()
    for k, v in defaults.items():
        _apply(cfg, k, v, from_text=False)
    if path:
        import yaml

        data = yaml.safe_load(Path(path).read_text()) or {}
        if not isinstance(data, dict):
            raise ValueError(f"{path}: expected a mapping at the top level")
        for k, v in data.items():
            _apply(cfg, k, v, from_text=False)
    for item in overrides or []:
        if "=" not in item:
            raise ValueError(f"override {item!r}: expected key=value")
        k, v = item.split("=", 1)
        _apply(cfg, k.strip(), v.strip(), from_text=True)
    return cfg


def config_from_dict(d: dict) -> TrainConfig:
    cfg = TrainConfig()
    for k, v in d.items():
        _apply(cfg, k, v, from_text=False)
    return cfg
