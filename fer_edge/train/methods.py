"""Training methods as small plug-ins: a method builds its model, computes its loss on a batch
and predicts logits. The trainer knows nothing else about it, so the five paper methods add a
class here (or a module registering one) rather than editing the trainer.

Optional hooks, for methods that need more than one labelled dataset and a plain loop (the
trainer uses each only when the method defines it; AGLRLS in train/aglrls.py uses them all):
    build_data(trainer) -> (train data, selection data, classes)
    setup(trainer)                      after the model and optimiser exist (e.g. init_from)
    param_groups(model) -> groups       optimiser groups; "lr_mult" scales the trainer's lr
    train_epoch(trainer) -> logs        the method's own epoch loop (stages, paired domains)
    state_dict() / load_state_dict(d)   method state saved in checkpoints (e.g. thresholds)
    eval_data(trainer, spec)            the eval set in the form predict() takes
    export_extras(model) -> dict        method facts exported into the model's metadata
    report_checkpoint = "last.pt"       report without checkpoint selection
    needs_landmarks = True              the exported graph takes landmarks as a second input
"""
from __future__ import annotations

import numpy as np
import torch
import torch.nn.functional as F
from torch import nn

from fer_edge.models import Classifier, build_backbone, load_weights


class Method:
    name = "method"

    def __init__(self, cfg):
        self.cfg = cfg

    def build_model(self, num_classes: int, in_channels: int) -> nn.Module:
        raise NotImplementedError

    def loss(self, model: nn.Module, batch) -> tuple[torch.Tensor, dict]:
        raise NotImplementedError

    def predict(self, model: nn.Module, *inputs: torch.Tensor) -> torch.Tensor:
        """Model outputs for evaluation and export (inputs: what the eval dataset yields before
        the label)."""
        return model(*inputs)

    def decide(self, outputs: np.ndarray, allowed: np.ndarray | None = None) -> np.ndarray:
        """Outputs [N, C] -> labels [N]; `allowed` [C] bool restricts the choice to some classes."""
        if allowed is not None:
            outputs = np.where(allowed[None], outputs, -np.inf)
        return outputs.argmax(1)

    def decision_rules(self, outputs: np.ndarray) -> dict[str, np.ndarray]:
        """Alternative decisions worth reporting side by side (name -> labels); none by default."""
        return {}


class Baseline(Method):
    """Supervised baseline: cross-entropy on the majority label, or (data.label_mode=probability)
    on FERPlus's vote distribution as a soft target."""

    name = "baseline"

    def build_model(self, num_classes: int, in_channels: int) -> nn.Module:
        m = self.cfg.model
        backbone = build_backbone(m.backbone, in_channels, self.cfg.data.image_size, width=m.width, stem=m.stem or None)
        if m.pretrained:
            load_weights(backbone, m.pretrained)
        return Classifier(backbone, num_classes, m.dropout)

    def loss(self, model, batch):
        x, y, target = batch
        logits = model(x)
        if self.cfg.data.label_mode == "probability":
            eps = self.cfg.optim.label_smoothing
            t = target * (1 - eps) + eps / target.shape[1]
            loss = -(t * F.log_softmax(logits.float(), 1)).sum(1).mean()
        else:
            loss = F.cross_entropy(logits.float(), y, label_smoothing=self.cfg.optim.label_smoothing)
        return loss, {"acc": (logits.argmax(1) == y).float().mean().item()}


METHODS: dict[str, type[Method]] = {"baseline": Baseline}


# methods living in their own modules register themselves on import
_MODULES = {"aglrls": "fer_edge.train.aglrls"}


def get_method(name: str, cfg) -> Method:
    if name in _MODULES and name not in METHODS:
        import importlib

        importlib.import_module(_MODULES[name])
    if name not in METHODS:
        raise ValueError(f"method: expected one of {tuple(sorted(set(METHODS) | set(_MODULES)))}, got {name!r}")
    return METHODS[name](cfg)
