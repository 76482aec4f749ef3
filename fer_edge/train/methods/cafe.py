"""CAFE (methods.md §5): expression masks over a frozen generic face encoder, for models that hold
up on unseen cameras. One stage (optim.*: the paper's Adam 2e-4, wd 1e-4, ExponentialLR 0.9).

cafe.encoder picks the frozen F (its weights never change, it gets no gradient):
- "mim:<path>": our label-free MIM-HOG ViT (pll pre-training writes <run>/encoder.safetensors);
- "supervised:<checkpoint.pt>": a supervised CNN's backbone (e.g. the FERPlus baseline's, or the
  CNN of CAFE's own plain-classifier baseline run: the encoder at the same budget);
- "random": a ViT of the MIM encoder's default shape at its random initialisation (the control
  that tests whether the frozen encoder is what helps);
- "none": no encoder: the mask generator trained as a plain classifier (the same-budget baseline).
- "clip:<model>:<weights file>": a CLIP image encoder built by open_clip from a file the user has
  (never downloaded; fer_edge/models/clip_encoder.py), fed the same faces resized to its input size.

cafe.mask_from picks what the mask generator reads: "image" (the paper: a CNN on the face, model.*)
or "encoder" (a small MLP on F(x), cafe.mask_hidden wide: the classifier then sees nothing the frozen
encoder did not encode, which is what the claim "the frozen features generalise" needs; the
image-fed generator was measured to classify on its own, benchmarks/results/cafe/README.md).

Each step: CE on fc(F~), F~ = F(x) * sigmoid(mask generator(x)); with separation, F~'s channels
fall into one contiguous group per class (uneven sizes allowed: every channel is used), a random
share of each group is dropped (redrawn every step, seeded), and the max of each group
(`fer_edge.ops.chanpool_max`) is a logit: L_sep = CE; with diverse, L_div = 1 - mean over groups
of (group max / group size). L = CE + sep_weight L_sep + div_weight L_div.
"""
from __future__ import annotations

from dataclasses import dataclass

import torch
import torch.nn.functional as F

from fer_edge import ops
from fer_edge.models import build_backbone
from fer_edge.models.cafe import CAFENet, FeatureMaskGenerator, FrozenFeatures
from fer_edge.train.methods.base import Method, Stage, register_method
from fer_edge.train.methods.baseline import classification_loss, supervised_stage


@dataclass
class CAFEConfig:
    """The `cafe:` section; optim.* is the one stage."""
    encoder: str = "random"           # mim:<path> | supervised:<checkpoint> | clip:<model>:<weights> | random
                                      # | none (plain classifier baseline)
    random_depth: int = 6             # the "random" encoder's shape (the MIM encoder's default)
    random_patch: int = 8
    mask: str = "sigmoid"             # sigmoid (paper) | none (the raw mask: the "no sigmoid" ablation)
    mask_from: str = "image"          # image (paper: model.* CNN on the face) | encoder (an MLP on F(x))
    mask_hidden: int = 512            # the MLP's width with mask_from=encoder
    separation: bool = True           # channel separation loss (chanpool_max over class groups, with channel drop)
    diverse: bool = True              # channel-diverse loss
    sep_weight: float = 1.5
    div_weight: float = 5.0
    drop_fraction: float = 0.137      # share of each group dropped per step (the paper's 10 of 73)


def drop_mask(sizes: list[int], fraction: float, generator: torch.Generator) -> torch.Tensor:
    """[sum(sizes)] bool: in every group, round(fraction * size) random channels dropped (True),
    never the whole group."""
    parts = []
    for s in sizes:
        n = min(int(round(fraction * s)), s - 1)
        m = torch.zeros(s, dtype=torch.bool)
        m[torch.randperm(s, generator=generator)[:n]] = True
        parts.append(m)
    return torch.cat(parts)


def diverse_loss(maxima: torch.Tensor, sizes: list[int]) -> torch.Tensor:
    """1 - mean over faces and groups of (group max / group size): maxima [B, L]."""
    return 1 - (maxima / torch.tensor(sizes, dtype=maxima.dtype, device=maxima.device)).mean()


@register_method
class CAFE(Method):
    name = "cafe"
    description = "expression masks on a frozen face encoder (MIM-HOG ViT by path, or CLIP), channel separation via chanpool_max"
    Config = CAFEConfig

    @classmethod
    def check_config(cls, cfg) -> None:
        a = cfg.method_config
        kind, _, arg = a.encoder.partition(":")
        if kind not in ("mim", "supervised", "clip", "random", "none") or (kind in ("mim", "supervised", "clip")) != bool(arg):
            raise ValueError(f"cafe.encoder: expected mim:<path>, supervised:<checkpoint>, clip:<model>:<weights file>, "
                             f"random or none, got {a.encoder!r}")
        if kind == "clip":
            from fer_edge.models.clip_encoder import parse_clip_spec

            parse_clip_spec(arg)
        if kind == "none" and (a.separation or a.diverse):
            raise ValueError("cafe.encoder=none is the plain-classifier baseline: set cafe.separation=false cafe.diverse=false")
        if a.mask not in ("sigmoid", "none"):
            raise ValueError(f"cafe.mask: expected sigmoid or none, got {a.mask!r}")
        if a.mask_from not in ("image", "encoder"):
            raise ValueError(f"cafe.mask_from: expected image or encoder, got {a.mask_from!r}")
        if a.mask_from == "encoder" and kind == "none":
            raise ValueError("cafe.mask_from=encoder needs a frozen encoder (cafe.encoder is none)")
        if a.mask_hidden < 1:
            raise ValueError(f"cafe.mask_hidden: expected >= 1, got {a.mask_hidden}")
        if not 0 <= a.drop_fraction < 1 or a.sep_weight < 0 or a.div_weight < 0:
            raise ValueError("cafe: drop_fraction in [0, 1), loss weights >= 0")
        if a.mask_from == "image" and cfg.model.backbone not in ("resnet18", "resnet50", "mobilenet_v2"):
            raise ValueError(f"cafe: the mask generator is a CNN (resnet18, resnet50, mobilenet_v2), got {cfg.model.backbone!r}")

    def _encoder(self, in_channels: int):
        a, d = self.config, self.cfg.data
        kind, _, arg = a.encoder.partition(":")
        if kind == "none":
            return None
        if kind == "random":
            from fer_edge.models.vit import ViT

            g = torch.random.fork_rng()
            with g:
                torch.manual_seed(self.cfg.seed * 7919 + 1)
                return FrozenFeatures(ViT("tiny", a.random_patch, d.image_size, in_channels, 0.0, a.random_depth))
        if kind == "clip":
            from fer_edge.models.clip_encoder import load_clip_encoder
            from fer_edge.train.torch_data import normalisation

            return load_clip_encoder(arg, *normalisation(d.color))
        if kind == "mim":
            from fer_edge.models.encoder_io import load_encoder, read_encoder_meta

            meta = read_encoder_meta(arg)
            if meta["image_size"] != d.image_size or meta["in_channels"] != in_channels:
                raise ValueError(f"cafe.encoder {arg}: built for {meta['image_size']} px x {meta['in_channels']} channels, "
                                 f"the data gives {d.image_size} px x {in_channels}")
            return FrozenFeatures(load_encoder(arg))
        from fer_edge.train import checkpoint

        state = checkpoint.load(arg, map_location="cpu")
        m, dd = state["config"]["model"], state["config"]["data"]
        if dd["image_size"] != d.image_size or dd["color"] != d.color:
            raise ValueError(f"cafe.encoder {arg}: trained on {dd['image_size']} px {dd['color']}, the data is "
                             f"{d.image_size} px {d.color}")
        backbone = build_backbone(m["backbone"], in_channels, d.image_size, width=m["width"], stem=m.get("stem") or None)
        # a supervised method's CNN is its backbone.*; CAFE's plain-classifier baseline (cafe.encoder=none)
        # keeps the same CNN as generator.*: the budget-matched supervised encoder
        prefix = "generator." if state["config"].get("method") == "cafe" else "backbone."
        if prefix == "generator." and state["config"].get("cafe", {}).get("encoder") != "none":
            raise ValueError(f"cafe.encoder {arg}: a CAFE checkpoint with a frozen encoder is not a supervised CNN; "
                             "pass a baseline (cafe.encoder=none) or a supervised method's checkpoint")
        weights = {k[len(prefix):]: v for k, v in state["model"].items() if k.startswith(prefix)}
        if not weights:
            raise ValueError(f"cafe.encoder {arg}: no {prefix}* weights in this checkpoint")
        backbone.load_state_dict(weights)
        return FrozenFeatures(backbone)

    def build_model(self, num_classes: int, in_channels: int) -> CAFENet:
        m, a = self.cfg.model, self.config
        encoder = self._encoder(in_channels)
        if a.mask_from == "encoder":
            generator = FeatureMaskGenerator(encoder.out_dim, a.mask_hidden)
        else:
            generator = build_backbone(m.backbone, in_channels, self.cfg.data.image_size, width=m.width, stem=m.stem or None)
        return CAFENet(encoder, generator, num_classes, a.mask, a.mask_from)

    def stages(self) -> list[Stage]:
        return [supervised_stage(self.cfg)]

    def export_extras(self) -> dict:
        return {"encoder": self.config.encoder, "mask": self.config.mask, "mask_from": self.config.mask_from}

    def train_step(self, ctx, batch) -> dict:
        a = self.config
        logits, f = ctx.model(batch["image"], with_features=True)
        y = batch["label"]
        terms = {"ce": classification_loss(self.cfg, logits, batch)}
        if a.separation or a.diverse:
            sizes = ops.even_groups(f.shape[1], logits.shape[1])
            if a.separation:
                g = torch.Generator().manual_seed(self.cfg.seed * 1_000_003 + ctx.epoch * ctx.steps_per_epoch + ctx.step)
                drop = drop_mask(sizes, a.drop_fraction, g).to(f.device)
                terms["sep"] = a.sep_weight * F.cross_entropy(ops.chanpool_max(f.float(), sizes, drop), y)
            if a.diverse:
                terms["div"] = a.div_weight * diverse_loss(ops.chanpool_max(f.float(), sizes), sizes)
        ctx.log(train_acc=(logits.argmax(1) == y).float().mean().item())
        return terms
