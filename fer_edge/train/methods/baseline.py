"""Supervised baseline: cross-entropy on the majority label, or (data.label_mode=probability)
on FERPlus's vote distribution as a soft target. One stage, configured by `optim`.

The smallest complete method: a model, one stage, a step returning its named loss."""
from __future__ import annotations

import torch.nn.functional as F

from fer_edge.models import Classifier, build_backbone, load_weights
from fer_edge.train.methods.base import Method, Stage, register_method


def supervised_stage(cfg, name: str = "supervised") -> Stage:
    """The one-stage supervised schedule every `optim` section describes."""
    o = cfg.optim
    return Stage(name, o.epochs, o.lr, optimizer=o.optimizer, momentum=o.momentum, weight_decay=o.weight_decay,
                 nesterov=o.momentum > 0, schedule=o.schedule, warmup_epochs=o.warmup_epochs, gamma=o.gamma)


def classification_loss(cfg, logits, batch):
    """CE on the majority label, or on the vote distribution with data.label_mode=probability."""
    eps = cfg.optim.label_smoothing
    if cfg.data.label_mode == "probability":
        t = batch["soft_label"] * (1 - eps) + eps / batch["soft_label"].shape[1]
        return -(t * F.log_softmax(logits.float(), 1)).sum(1).mean()
    return F.cross_entropy(logits.float(), batch["label"], label_smoothing=eps)


@register_method
class Baseline(Method):
    name = "baseline"
    description = "supervised training on one labelled dataset (majority label or vote distribution)"

    def build_model(self, num_classes: int, in_channels: int):
        m = self.cfg.model
        backbone = build_backbone(m.backbone, in_channels, self.cfg.data.image_size, width=m.width, stem=m.stem or None)
        if m.pretrained:
            info = load_weights(backbone, m.pretrained, require=0.5)
            print(f"model.pretrained: loaded {info['loaded']} of {info['total']} backbone tensors from {m.pretrained}")
        return Classifier(backbone, num_classes, m.dropout)

    def stages(self) -> list[Stage]:
        return [supervised_stage(self.cfg)]

    def train_step(self, ctx, batch):
        logits = ctx.model(batch["image"])
        ctx.log(train_acc=(logits.argmax(1) == batch["label"]).float().mean().item())
        return {"ce": classification_loss(self.cfg, logits, batch)}
