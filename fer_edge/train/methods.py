"""Training methods as small plug-ins: a method builds its model, computes its loss on a batch
and predicts logits. The trainer knows nothing else about it, so the five paper methods add a
class here (or a module registering one) rather than editing the trainer."""
from __future__ import annotations

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

    def predict(self, model: nn.Module, images: torch.Tensor) -> torch.Tensor:
        return model(images)


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


def get_method(name: str, cfg) -> Method:
    if name not in METHODS:
        raise ValueError(f"method: expected one of {tuple(METHODS)}, got {name!r}")
    return METHODS[name](cfg)
