"""Training configuration: dataclasses, loadable from YAML, overridable from the command line
with dotted keys (`optim.lr=0.05 data.image_size=64 aglrls.tau=0.9`).

Generic sections: data (with the data roles: labelled `dataset`, unlabelled `target` domain,
`unlabelled` pool), model, optim (the method's main stage). Each method owns one more section,
named like the method, holding its own Config dataclass (fer_edge/train/methods). Unknown keys,
values of the wrong type and non-finite numbers are errors when the config loads."""
from __future__ import annotations

import dataclasses
import math
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any, get_type_hints


@dataclass
class DataConfig:
    dataset: str = "ferplus"          # labelled training set (open_dataset spec); selection uses its "valid" split
    target: str = ""                  # unlabelled target domain for adaptation (e.g. ckplus, unlabelled:<folder>)
    unlabelled: str = ""              # unlabelled pool (e.g. unlabelled:<folder>); empty: the training faces, labels withheld
    label_mode: str = "majority"      # FERPlus target: majority (hard CE) or probability (vote distribution)
    num_classes: int = 8
    image_size: int = 48
    color: str = "gray"
    batch_size: int = 64
    workers: int = 0
    augment: str = "weak"             # none | weak | strong
    random_erasing: float = 0.5
    landmarks_dir: str = ""           # landmark caches for methods that use landmarks (default <cache dir>/landmarks)
    limit: int = 0                    # > 0: only the first N faces of each training-side set (smoke tests; never eval sets)
    labels_per_class: int = 0         # > 0: semi-supervised setting: the labelled role keeps a seeded draw of this many faces
                                      # per class (seed = the run's seed); the unlabelled role is then the rest (labels withheld)


@dataclass
class ModelConfig:
    backbone: str = "resnet18"
    width: float = 0.5
    stem: str = "s2"                  # ResNets: imagenet | s2 | s1
    dropout: float = 0.0
    pretrained: str = ""              # local weights file; nothing is downloaded


@dataclass
class OptimConfig:
    """The method's main stage (the only one for most methods)."""
    optimizer: str = "sgd"            # sgd | adamw | adam
    lr: float = 0.1
    momentum: float = 0.9
    weight_decay: float = 5e-4
    epochs: int = 30
    schedule: str = "cosine"          # cosine (warm-up + cosine) | exponential (gamma per epoch) | dann | constant
    warmup_epochs: float = 1.0
    gamma: float = 0.9                # exponential schedule
    label_smoothing: float = 0.0
    max_steps: int = 0                # > 0: stop each epoch after this many steps (smoke tests)


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
    # the method's own section (its Config dataclass); in YAML and dicts it is keyed by the method's name
    method_config: Any = None

    def to_dict(self) -> dict:
        d = {f.name: dataclasses.asdict(getattr(self, f.name)) if dataclasses.is_dataclass(getattr(self, f.name))
             else getattr(self, f.name) for f in dataclasses.fields(self) if f.name != "method_config"}
        if self.method_config is not None and dataclasses.fields(self.method_config):
            d[self.method] = dataclasses.asdict(self.method_config)
        return d


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


def _check_value(key: str, value: Any, typ) -> Any:
    """YAML/dict values: the declared type (ints widen to floats), finite numbers."""
    if typ is float and isinstance(value, int) and not isinstance(value, bool):
        value = float(value)
    if typ is int and isinstance(value, float) and value.is_integer():
        value = int(value)
    expected = list if getattr(typ, "__origin__", None) is list else typ
    if expected in (int, float, bool, str, list) and (not isinstance(value, expected) or
                                                     (expected is int and isinstance(value, bool))):
        raise ValueError(f"{key}: expected {expected.__name__}, got {type(value).__name__} {value!r}")
    if isinstance(value, float) and not math.isfinite(value):
        raise ValueError(f"{key}: must be a finite number, got {value}")
    return value


# (minimum, maximum) of numeric keys; None = unbounded on that side
RANGES = {
    "seed": (0, 2**63 - 1), "threads": (0, 1024),
    "data.num_classes": (7, 8), "data.image_size": (8, 1024), "data.batch_size": (1, None), "data.workers": (0, 256),
    "data.random_erasing": (0.0, 1.0), "data.limit": (0, None), "data.labels_per_class": (0, None),
    "model.width": (0.01, 16.0), "model.dropout": (0.0, 0.99),
    "optim.lr": (0.0, None), "optim.momentum": (0.0, 1.0), "optim.weight_decay": (0.0, None), "optim.epochs": (0, None),
    "optim.warmup_epochs": (0.0, None), "optim.gamma": (0.0, 1.0), "optim.label_smoothing": (0.0, 0.99),
    "optim.max_steps": (0, None),
}
CHOICES = {"data.label_mode": ("majority", "probability"), "data.color": ("gray", "rgb", "bgr"),
           "data.augment": ("none", "weak", "strong"), "optim.optimizer": ("sgd", "adamw", "adam"),
           "optim.schedule": ("cosine", "exponential", "dann", "constant"), "model.stem": ("imagenet", "s2", "s1", "")}


def _check_generic(cfg: TrainConfig) -> None:
    d = cfg.to_dict()
    for key, (lo, hi) in RANGES.items():
        section, _, name = key.rpartition(".")
        value = (d[section] if section else d)[name]
        if (lo is not None and value < lo) or (hi is not None and value > hi):
            bound = f"[{lo}, {hi}]" if hi is not None else f">= {lo}"
            raise ValueError(f"{key}: expected a value in {bound}, got {value}")
    for key, choices in CHOICES.items():
        section, _, name = key.rpartition(".")
        if d[section][name] not in choices:
            raise ValueError(f"{key}: expected one of {choices}, got {d[section][name]!r}")


def _read_yaml(path: Path) -> dict:
    import yaml

    try:
        text = Path(path).read_text(encoding="utf-8")
    except UnicodeDecodeError as exc:
        raise ValueError(f"{path}: not UTF-8 text (byte {exc.start})") from None
    try:
        data = yaml.safe_load(text) or {}
    except yaml.YAMLError as exc:
        mark = getattr(exc, "problem_mark", None)
        where = f" at line {mark.line + 1}, column {mark.column + 1}" if mark else ""
        raise ValueError(f"{path}: not valid YAML{where} ({getattr(exc, 'problem', None) or exc})") from None
    if not isinstance(data, dict):
        raise ValueError(f"{path}: expected a mapping at the top level")
    return data


def _section(cfg: TrainConfig, name: str, key: str):
    if name == cfg.method and cfg.method_config is not None:
        return cfg.method_config
    if name != "method_config" and hasattr(cfg, name) and dataclasses.is_dataclass(getattr(cfg, name)):
        return getattr(cfg, name)
    from fer_edge.train.methods import method_names

    if name in method_names():
        raise ValueError(f"{key!r} configures method {name!r}, but this run's method is {cfg.method!r}")
    raise ValueError(f"unknown config section {name!r} in {key!r}")


def _apply(cfg: TrainConfig, key: str, value: Any, from_text: bool) -> None:
    parts = key.split(".")
    if len(parts) == 1 and isinstance(value, dict):
        for k, v in value.items():
            _apply(cfg, f"{key}.{k}", v, from_text)
        return
    obj = cfg
    if len(parts) > 1:
        obj = _section(cfg, parts[0], key)
        for p in parts[1:-1]:
            if not dataclasses.is_dataclass(getattr(obj, p, None)):
                raise ValueError(f"unknown config section {p!r} in {key!r}")
            obj = getattr(obj, p)
    name = parts[-1]
    hints = get_type_hints(type(obj))
    if name not in hints or name == "method_config":
        valid = ", ".join(f.name for f in dataclasses.fields(obj) if f.name != "method_config")
        raise ValueError(f"unknown config key {key!r}; valid keys here: {valid}")
    typ = hints[name]
    if dataclasses.is_dataclass(typ):
        if not isinstance(value, dict):
            raise ValueError(f"{key}: expected a mapping")
        for k, v in value.items():
            _apply(cfg, f"{key}.{k}", v, from_text)
        return
    try:
        if from_text or (isinstance(value, str) and typ is not str):
            value = _coerce(str(value), typ)
        value = _check_value(key, value, typ)
    except (TypeError, ValueError) as exc:
        raise ValueError(f"{key}: {exc}" if not str(exc).startswith(key) else str(exc)) from None
    setattr(obj, name, value)


def _new(method: str) -> TrainConfig:
    from fer_edge.train.methods import method_class

    cfg = TrainConfig(method=method)
    cfg.method_config = method_class(method).Config()
    return cfg


def _validate(cfg: TrainConfig) -> TrainConfig:
    from fer_edge.train.methods import method_class

    _check_generic(cfg)
    method_class(cfg.method).check_config(cfg)
    return cfg


def load_config(path: str | Path | None = None, overrides: list[str] | None = None, **defaults) -> TrainConfig:
    """Defaults <- YAML file <- `key=value` overrides. The method is known first (from the
    overrides, else the file, else the defaults), so that its own section can be read."""
    data = _read_yaml(Path(path)) if path else {}
    pairs = []
    for item in overrides or []:
        if "=" not in item:
            raise ValueError(f"override {item!r}: expected key=value")
        k, v = item.split("=", 1)
        pairs.append((k.strip(), v.strip()))
    method = defaults.get("method") or data.get("method") or "baseline"
    if defaults.get("method") and data.get("method") and defaults["method"] != data["method"]:
        raise ValueError(f"{path} configures method {data['method']!r}, not {defaults['method']!r}")
    for k, v in pairs:
        if k == "method":
            method = v
    cfg = _new(str(method))
    for k, v in defaults.items():
        if k != "method":
            _apply(cfg, k, v, from_text=False)
    for k, v in data.items():
        if k != "method":
            _apply(cfg, k, v, from_text=False)
    for k, v in pairs:
        if k != "method":
            _apply(cfg, k, v, from_text=True)
    return _validate(cfg)


def config_from_dict(d: dict) -> TrainConfig:
    """A checkpoint's config. Sections of other methods are ignored: checkpoints written before
    the method contract carried every method's section."""
    from fer_edge.train.methods import method_names

    cfg = _new(d.get("method", "baseline"))
    others = set(method_names()) - {cfg.method}
    d = _moved_keys(d)
    for k, v in d.items():
        if k != "method" and k not in others:
            _apply(cfg, k, v, from_text=False)
    return cfg


def _moved_keys(d: dict) -> dict:
    """Keys that moved from a method's section to the generic data roles (checkpoints written
    before the method contract)."""
    d = {k: dict(v) if isinstance(v, dict) else v for k, v in d.items()}
    old = d.get("aglrls") or {}
    for key in ("target", "landmarks_dir"):
        if key in old:
            value = old.pop(key)
            d.setdefault("data", {}).setdefault(key, value)
    return d
