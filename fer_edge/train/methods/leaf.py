"""LEAF semi-supervised FER (methods.md §4), on Ada-CM, with FixMatch and supervised-only as
switches of the same method (one budget, one backbone).

Setting: data.labels_per_class = n gives the labelled role (a seeded draw of n faces per class
of the training set) and the unlabelled role (every other training face; its labels are hidden
from training and read only to report pseudo-label precision and coverage per epoch).

One stage "semi" (optim.*; leaf.steps_per_epoch steps, both roles cycled): each step takes a
labelled batch (weak view) and an unlabelled batch (two weak views and a strong one), in one
forward pass:
- L_x: CE on the labelled faces;
- pseudo labels from p = the mean of the two weak views' softmax; a face is confident when its
  top probability reaches its class's threshold: Ada-CM's adaptive thresholds (start 0.8, after
  each epoch from the EMA model's confidence on the labelled faces it gets right), or FixMatch's
  fixed 0.95 (thresholds=fixed);
- L_u on the strong view of confident faces: CE on the pseudo label, or (ambiguous=true, LEAF's
  category level) the ambiguous-set loss over P/N from q = softmax(mean weak logits), weighted;
- L_s (contrastive=true, Ada-CM): contrastive loss between the two weak views' features of the
  unconfident faces (temperature 0.07);
- the MoEs' load-balancing loss (blocks=moe; balance_weight);
total 0.5 L_x + L_u + 0.1 L_s (+ balance). An EMA teacher (0.999) is evaluated, selected on
FERPlus valid, reported and exported. unlabelled=false trains L_x alone on the labelled faces.

Backbone: a ResNet from scratch (model.*), or a ViT (model.backbone=vit_*, leaf.patch/depth) that
may start from one of our label-free pre-trained encoders (leaf.encoder=<path>, e.g. the pll
recipe's MIM-pixel encoder, pre-trained on the training faces without their labels: the papers start
from a face-pretrained ResNet-18, which does not exist offline, and from scratch the teacher's pseudo
labels are wrong about half the time; benchmarks/results/leaf/README.md).

Departures from the released code, on purpose: real experts and k=2 (its MoEs are one shared
expert with k=1: the gate never learns); the load-balancing loss is used (it computes and drops
it); L_u is masked per face (it rescales a batch mean by the confident fraction); checkpoints are
selected on valid, never on test.
"""
from __future__ import annotations

from dataclasses import dataclass

import numpy as np
import torch
import torch.nn.functional as F

from fer_edge.models import build_backbone
from fer_edge.models.leaf import LEAFNet
from fer_edge.train import semi_supervised as ssl
from fer_edge.train.methods.base import Method, Stage, register_method
from fer_edge.train.vit_groups import vit_finetune_groups


@dataclass
class LEAFConfig:
    """The `leaf:` section; optim.* is the one stage."""
    blocks: str = "moe"               # moe (LEAF) | mlp (parameter-matched MLPs) | none (Ada-CM, FixMatch, supervised)
    experts: int = 8
    k: int = 2
    noisy_gating: bool = True
    balance_weight: float = 0.01
    unlabelled: bool = True           # false: supervised-only on the labelled faces (same steps)
    thresholds: str = "adaptive"      # adaptive (Ada-CM) | fixed (FixMatch)
    fixed_threshold: float = 0.95
    threshold_floor: float = 0.8
    ambiguous: bool = True            # LEAF's ambiguous pseudo labels on the strong view (else CE)
    ambiguous_mass: float = 0.9
    contrastive: bool = True          # Ada-CM's contrastive loss on unconfident faces
    temperature: float = 0.07
    labelled_weight: float = 0.5
    contrastive_weight: float = 0.1
    steps_per_epoch: int = 200
    labelled_batch: int = 0           # 0: data.batch_size
    unlabelled_batch: int = 0         # 0: data.batch_size
    ema: float = 0.999
    encoder: str = ""                 # a saved ViT encoder (.safetensors or stem) to start from; needs model.backbone=vit_*
    patch: int = 8                    # the ViT's shape (model.backbone=vit_*); an encoder must match it
    depth: int = 6
    drop_path: float = 0.0
    layer_decay: float = 1.0          # ViT: lr x layer_decay^(depth + 1 - i) for the encoder's i-th layer (train/vit_groups.py)


@register_method
class LEAF(Method):
    name = "leaf"
    description = "semi-supervised (data.labels_per_class): Ada-CM + LEAF's mixtures of experts (topk_gating kernel) and ambiguous pseudo labels"
    Config = LEAFConfig
    evaluate_with_ema = True

    @classmethod
    def check_config(cls, cfg) -> None:
        a = cfg.method_config
        vit = cfg.model.backbone.startswith("vit_")
        if cfg.model.backbone not in ("resnet18", "resnet50", "ir50") and not vit:
            raise ValueError(f"leaf: expected a ResNet (resnet18, resnet50, ir50) or ViT (vit_tiny, vit_small, vit_base) "
                             f"backbone, got {cfg.model.backbone!r}")
        if a.encoder and not vit:
            raise ValueError(f"leaf.encoder is a pre-trained ViT: set model.backbone=vit_tiny (or the encoder's size), "
                             f"got {cfg.model.backbone!r}")
        if vit and cfg.model.pretrained:
            raise ValueError("leaf: load a pre-trained ViT encoder with leaf.encoder=<path> (model.pretrained is for CNN backbones)")
        choices = {"blocks": ("moe", "mlp", "none"), "thresholds": ("adaptive", "fixed")}
        for key, allowed in choices.items():
            if getattr(a, key) not in allowed:
                raise ValueError(f"leaf.{key}: expected one of {allowed}, got {getattr(a, key)!r}")
        if not 1 <= a.k <= min(4, a.experts) or a.experts > 64:
            raise ValueError(f"leaf: need 1 <= k <= min(4, experts) and experts <= 64, got k={a.k}, experts={a.experts}")
        if a.unlabelled and not cfg.data.labels_per_class and not cfg.data.unlabelled:
            raise ValueError("leaf: set data.labels_per_class (the labelled draw; the rest is the unlabelled pool) "
                             "or data.unlabelled=unlabelled:<folder>")
        if not 0 < a.ema < 1 or not 0 < a.temperature or a.steps_per_epoch < 1:
            raise ValueError("leaf: ema in (0, 1), temperature > 0, steps_per_epoch >= 1")
        if not 0 < a.layer_decay <= 1:
            raise ValueError(f"leaf.layer_decay must be in (0, 1], got {a.layer_decay}")
        if a.layer_decay < 1 and not vit:
            raise ValueError("leaf.layer_decay applies to ViT backbones (model.backbone=vit_*)")
        for key in ("fixed_threshold", "threshold_floor", "ambiguous_mass"):
            if not 0 < getattr(a, key) <= 1:
                raise ValueError(f"leaf.{key} must be in (0, 1]")

    def __init__(self, cfg):
        super().__init__(cfg)
        self.ema_decay = self.config.ema
        k = cfg.data.num_classes
        a = self.config
        start = a.fixed_threshold if a.thresholds == "fixed" else a.threshold_floor
        self.thresholds = np.full(k, start)
        self._epoch: dict = {}

    def build_model(self, num_classes: int, in_channels: int) -> LEAFNet:
        m, a = self.cfg.model, self.config
        if m.backbone.startswith("vit_"):
            backbone = build_backbone(m.backbone, in_channels, self.cfg.data.image_size, patch=a.patch, depth=a.depth,
                                      drop_path=a.drop_path)
        else:
            backbone = build_backbone(m.backbone, in_channels, self.cfg.data.image_size, width=m.width, stem=m.stem or None)
        return LEAFNet(backbone, num_classes, a.blocks, a.experts, a.k, a.noisy_gating)

    def setup(self, ctx) -> None:
        a = self.config
        if a.encoder:
            from fer_edge.models.encoder_io import load_encoder, read_encoder_meta

            # the EMA teacher was copied from the student at its random initialisation: both start
            # from the encoder (a resumed run then loads its own weights over these)
            for net in (ctx.module, ctx.teacher):
                if net is not None:
                    load_encoder(a.encoder, into=net.backbone)
            meta = read_encoder_meta(a.encoder)
            print(f"leaf.encoder: loaded {a.encoder} (target {meta.get('target')}, {meta.get('epochs')} pre-training epochs)")

    def param_groups(self, model, stage: Stage) -> list[dict]:
        """ResNets: one group. ViTs: fine-tuning groups (no decay on norms, biases, class token and
        positions; lr decayed down the encoder by leaf.layer_decay), so that 800 labelled faces move
        a pre-trained encoder's early layers less than the new MoE blocks and classifier."""
        if not self.cfg.model.backbone.startswith("vit_"):
            return super().param_groups(model, stage)
        return vit_finetune_groups(model, "backbone", len(model.backbone.blocks), self.config.layer_decay)

    def stages(self) -> list[Stage]:
        a, o = self.config, self.cfg.optim
        common = dict(optimizer=o.optimizer, momentum=o.momentum, weight_decay=o.weight_decay, nesterov=o.momentum > 0,
                      schedule=o.schedule, warmup_epochs=o.warmup_epochs, gamma=o.gamma, steps_per_epoch=a.steps_per_epoch)
        lb = {"labelled": a.labelled_batch} if a.labelled_batch else {}
        if not a.unlabelled:
            return [Stage("supervised", o.epochs, o.lr, views={"labelled": "weak"}, batch=lb, **common)]
        ub = {"unlabelled": a.unlabelled_batch} if a.unlabelled_batch else {}
        return [Stage("semi", o.epochs, o.lr, data=("labelled", "unlabelled"),
                      views={"labelled": "weak", "unlabelled": "weak+weak+strong"}, batch={**lb, **ub}, **common)]

    def export_extras(self) -> dict:
        a = self.config
        return {"blocks": a.blocks, "experts": a.experts, "k": a.k, "labels_per_class": self.cfg.data.labels_per_class,
                "encoder": a.encoder or "scratch"}

    # -- state -----------------------------------------------------------------------------------
    def state_dict(self) -> dict:
        return {**super().state_dict(), "thresholds": self.thresholds.tolist()}

    def load_state_dict(self, state: dict) -> None:
        super().load_state_dict(state)
        if state and state.get("thresholds") is not None:
            self.thresholds = np.asarray(state["thresholds"], dtype=np.float64)

    # -- epochs ----------------------------------------------------------------------------------
    def on_epoch_start(self, ctx) -> None:
        self._epoch = {"index": [], "pseudo": [], "confident": [], "positives": [], "usage": {}}

    def on_epoch_end(self, ctx) -> dict:
        a, logs, e = self.config, {}, self._epoch
        if e["index"]:  # pseudo-label precision and coverage against the pool's hidden labels (report only)
            truth = ctx.role_labels("unlabelled")[np.concatenate(e["index"])]
            pseudo, conf = np.concatenate(e["pseudo"]), np.concatenate(e["confident"])
            labelled = truth >= 0
            logs["pseudo_coverage"] = float(conf.mean())
            if (conf & labelled).any():
                logs["pseudo_precision"] = float((pseudo == truth)[conf & labelled].mean())
            if e["positives"] and (conf & labelled).any():  # how often the true class is in the positive set
                pos = np.concatenate(e["positives"])
                keep = conf & labelled
                logs["ambiguous_set_recall"] = float(pos[np.flatnonzero(keep), truth[keep]].mean())
                logs["ambiguous_set_size"] = float(pos[keep].sum(1).mean())
        for name, rows in e["usage"].items():
            usage = np.mean(rows, 0)
            logs.update({f"usage_{name}_e{j}": float(u) for j, u in enumerate(usage)})
            logs[f"usage_{name}_min"] = float(usage.min())
        if a.unlabelled and a.thresholds == "adaptive":
            probs = torch.softmax(torch.from_numpy(ctx.outputs("labelled")).float(), 1).numpy()
            self.thresholds = ssl.adaptive_thresholds(probs, ctx.role_labels("labelled"), ctx.stage_epoch + 1,
                                                      a.threshold_floor)
        logs["threshold_mean"] = float(np.mean(self.thresholds))
        return logs

    # -- training --------------------------------------------------------------------------------
    def _record_usage(self, stats: dict) -> None:
        for name, s in stats.items():
            if "usage" in s:
                self._epoch["usage"].setdefault(name, []).append(s["usage"].detach().cpu().numpy())

    def _balance(self, stats: dict, device) -> torch.Tensor:
        return sum((s["balance"] for s in stats.values() if "balance" in s), torch.zeros((), device=device))

    def train_step(self, ctx, batch) -> dict:
        a = self.config
        xl, yl = batch["image"], batch["label"]
        if not a.unlabelled:
            logits, _, stats = ctx.model(xl, with_features=True)
            self._record_usage(stats)
            terms = {"x": F.cross_entropy(logits.float(), yl)}
            if a.blocks == "moe":
                terms["balance"] = a.balance_weight * self._balance(stats, xl.device)
            ctx.log(train_acc=(logits.argmax(1) == yl).float().mean().item())
            return terms
        w1, w2, s = batch["unlabelled_weak"], batch["unlabelled_weak2"], batch["unlabelled_strong"]
        nl, nu = len(xl), len(w1)
        logits, z, stats = ctx.model(torch.cat([xl, w1, w2, s]), with_features=True)
        self._record_usage(stats)
        logits = logits.float()
        lx, lw1, lw2, ls = logits[:nl], logits[nl:nl + nu], logits[nl + nu:nl + 2 * nu], logits[nl + 2 * nu:]
        with torch.no_grad():
            p = (torch.softmax(lw1, 1) + torch.softmax(lw2, 1)) / 2
            pseudo = p.argmax(1)
            mask = ssl.confident(p, torch.from_numpy(self.thresholds))
        terms = {"x": a.labelled_weight * F.cross_entropy(lx, yl)}
        if a.ambiguous:
            with torch.no_grad():
                pos, w, _ = ssl.ambiguous_sets(torch.softmax((lw1 + lw2) / 2, 1), a.ambiguous_mass)
            per_face = ssl.ambiguous_loss(ls, pos) * w
            self._epoch["positives"].append(pos.cpu().numpy())
        else:
            per_face = F.cross_entropy(ls, pseudo, reduction="none")
        terms["u"] = (per_face * mask.float()).sum() / nu
        if a.contrastive:
            unconf = ~mask
            zw1, zw2 = z[nl:nl + nu][unconf], z[nl + nu:nl + 2 * nu][unconf]
            terms["s"] = a.contrastive_weight * ssl.contrastive_pairs(zw1, zw2, a.temperature)
        if a.blocks == "moe":
            terms["balance"] = a.balance_weight * self._balance(stats, xl.device)
        self._epoch["index"].append(batch["unlabelled_index"].cpu().numpy())
        self._epoch["pseudo"].append(pseudo.cpu().numpy())
        self._epoch["confident"].append(mask.cpu().numpy())
        ctx.log(train_acc=(lx.argmax(1) == yl).float().mean().item(), confident_rate=float(mask.float().mean()))
        return terms
