"""Partial-label learning with MIM-HOG pre-training (methods.md §2; the paper has no public code).

Stage "pretrain" (pll.pretrain_epochs; label-free): MaskFeat-style masked image modelling on the
unlabelled role (the training faces with their labels withheld, or data.unlabelled). Each step
masks round(mask_ratio * L) random patches per face (their embeddings replaced by a learnable
mask token), and a linear decoder regresses the target of every masked patch (MSE over masked
patches only). target=hog: `fer_edge.ops.hog` computed on the augmented batch itself (gray: 2x2
cells x 9 bins per 8 px patch at 4 px cells; hog_norm=cell normalises each cell's histogram as
MaskFeat does, hog_norm=block each patch's raw sums together with a floored norm, see
partial_labels.block_normalise); target=pixel: MAE's per-patch normalised pixels (the ablation).
AdamW, warm-up + cosine. After every pre-training epoch the encoder is saved on its own
(<out_dir>/encoder.safetensors + encoder.json), loadable by path (pll.encoder, CAFE).

Stage "finetune" (optim.*): the encoder (from pre-training, pll.encoder, or from scratch) with the
label-query decoder (K queries, 2 layers, 8 heads; one logit per query), trained with
- labels=pll: CE against per-face confidences C, initialised to Y/|Y| over the candidate set
  (FERPlus: from the votes; other datasets: LW-style random sets, each wrong class joining with
  probability candidate_q, drawn once per face), revised every step from phi = sigmoid(logits)
  (top-2 of phi * C: one-hot when the gap exceeds tau, else phi renormalised inside Y); C is kept
  per face (by dataset index) in checkpoints;
- labels=majority: CE on the majority label; labels=soft: CE on the vote distribution;
plus the uniform loss on the normalised queries (uniform_weight). decoder=false swaps the decoder
for a linear head on the class token (the "no decoder" ablation).
"""
from __future__ import annotations

from dataclasses import dataclass

import numpy as np
import torch
import torch.nn.functional as F

from fer_edge.models import build_backbone
from fer_edge.models.pll import PLLClassifier, PLLModel
from fer_edge.train import partial_labels as pl
from fer_edge.train.methods.base import Method, Stage, register_method
from fer_edge.train.vit_groups import vit_finetune_groups

LABEL_MODES = ("pll", "majority", "soft")
TARGETS = ("hog", "pixel")
HOG_NORMS = ("cell", "block")


@dataclass
class PLLConfig:
    """The `pll:` section. optim.* is the fine-tuning stage; the pre-training stage is here."""
    patch: int = 8                    # ViT patch (48 px: 36 tokens); model.backbone picks the width
    depth: int = 0                    # ViT blocks (0: the size's 12)
    drop_path: float = 0.1
    # pre-training
    pretrain_epochs: int = 0          # 0: no pre-training in this run (pll.encoder, or from scratch)
    pretrain_lr: float = 1e-3
    pretrain_weight_decay: float = 0.05
    pretrain_warmup_epochs: float = 1.0
    pretrain_batch: int = 0           # 0: data.batch_size
    mask_ratio: float = 0.4
    target: str = "hog"               # hog | pixel
    hog_cell: int = 4
    hog_bins: int = 9
    hog_norm: str = "cell"            # cell (MaskFeat: each cell's histogram L2-normalised) | block (the patch's
                                      # raw sums L2-normalised together, the norm floored at hog_floor x the batch mean)
    hog_floor: float = 0.1
    encoder: str = ""                 # a saved encoder to fine-tune (its .safetensors or stem)
    # fine-tuning
    labels: str = "pll"               # pll | majority | soft
    decoder: bool = True              # label-query decoder (false: linear head on the class token)
    decoder_layers: int = 2
    decoder_heads: int = 8
    scorer: str = "per_class"         # per_class (Query2Label's group-wise linear) | shared (one scorer for every query)
    uniform_weight: float = 0.1
    revision: bool = True
    tau: float = 0.5
    candidate_q: float = 0.3          # LW random candidate sets (datasets without votes)
    layer_decay: float = 1.0          # fine-tuning lr x layer_decay^(depth + 1 - i) for the encoder's i-th layer
                                      # (BEiT/MAE; 0 = patch embedding, depth + 1 = heads): 1 leaves it off


@register_method
class PLL(Method):
    name = "pll"
    description = "ViT with MIM-HOG pre-training (hog kernel) and partial-label fine-tuning with a label-query decoder"
    Config = PLLConfig
    has_unused_parameters = True  # the MIM parts idle while fine-tuning, the classifier while pre-training

    @classmethod
    def check_config(cls, cfg) -> None:
        a = cfg.method_config
        if not cfg.model.backbone.startswith("vit_"):
            raise ValueError(f"pll trains a ViT encoder: model.backbone vit_tiny, vit_small or vit_base, got {cfg.model.backbone!r}")
        if cfg.model.pretrained:
            raise ValueError("pll: load a pre-trained encoder with pll.encoder=<path> (model.pretrained is for CNN backbones)")
        if cfg.data.image_size % a.patch:
            raise ValueError(f"pll.patch {a.patch} must divide data.image_size {cfg.data.image_size}")
        if a.target not in TARGETS:
            raise ValueError(f"pll.target: expected one of {TARGETS}, got {a.target!r}")
        if a.labels not in LABEL_MODES:
            raise ValueError(f"pll.labels: expected one of {LABEL_MODES}, got {a.labels!r}")
        if a.hog_norm not in HOG_NORMS:
            raise ValueError(f"pll.hog_norm: expected one of {HOG_NORMS}, got {a.hog_norm!r}")
        if a.hog_floor < 0:
            raise ValueError(f"pll.hog_floor must be >= 0, got {a.hog_floor}")
        if a.target == "hog" and (a.hog_cell < 1 or a.patch % a.hog_cell):
            raise ValueError(f"pll.hog_cell {a.hog_cell} must divide pll.patch {a.patch}")
        if not 0 < a.mask_ratio < 1:
            raise ValueError(f"pll.mask_ratio must be in (0, 1), got {a.mask_ratio}")
        if a.scorer not in ("per_class", "shared"):
            raise ValueError(f"pll.scorer: expected per_class or shared, got {a.scorer!r}")
        if not 0 <= a.candidate_q < 1 or a.tau < 0 or a.uniform_weight < 0:
            raise ValueError("pll: candidate_q in [0, 1), tau and uniform_weight >= 0")
        if a.labels == "soft" and cfg.data.label_mode != "probability":
            raise ValueError("pll.labels=soft needs the vote distribution: data.label_mode=probability")
        if not 0 < a.layer_decay <= 1:
            raise ValueError(f"pll.layer_decay must be in (0, 1], got {a.layer_decay}")
        if a.pretrain_epochs < 0 or a.depth < 0 or a.patch < 1:
            raise ValueError("pll: pretrain_epochs and depth must be >= 0, patch >= 1")

    # -- model and stages ------------------------------------------------------------------------
    def target_dim(self, in_channels: int) -> int:
        a = self.config
        if a.target == "hog":
            return in_channels * (a.patch // a.hog_cell) ** 2 * a.hog_bins
        return in_channels * a.patch * a.patch

    def build_model(self, num_classes: int, in_channels: int) -> PLLModel:
        a = self.config
        encoder = build_backbone(self.cfg.model.backbone, in_channels, self.cfg.data.image_size, patch=a.patch,
                                 drop_path=a.drop_path, depth=a.depth)
        net = PLLClassifier(encoder, num_classes, a.decoder, a.decoder_layers, a.decoder_heads, a.scorer)
        return PLLModel(net, self.target_dim(in_channels))

    def stages(self) -> list[Stage]:
        a, o = self.config, self.cfg.optim
        pretrain = Stage("pretrain", a.pretrain_epochs, a.pretrain_lr, data=("unlabelled",), views={"unlabelled": "weak"},
                         batch={"unlabelled": a.pretrain_batch} if a.pretrain_batch else {}, optimizer="adamw",
                         weight_decay=a.pretrain_weight_decay, schedule="cosine", warmup_epochs=a.pretrain_warmup_epochs,
                         evaluate=False)
        finetune = Stage("finetune", o.epochs, o.lr, optimizer=o.optimizer, momentum=o.momentum,
                         weight_decay=o.weight_decay, nesterov=o.momentum > 0, schedule=o.schedule,
                         warmup_epochs=o.warmup_epochs, gamma=o.gamma)
        return [pretrain, finetune]

    def param_groups(self, model, stage: Stage) -> list[dict]:
        """Pre-training: one group (as the study's encoders were trained). Fine-tuning as MAE/BEiT do:
        no weight decay on LayerNorms, biases, the class token, positions and the label queries (decay
        would shrink the N(0, 1) queries back towards the scale that left the decoder at the prior),
        and the lr scaled by layer_decay^(depth + 1 - layer) down the encoder, so a pre-trained encoder's
        early layers move less than the new decoder."""
        if stage.name != "finetune":
            return super().param_groups(model, stage)
        net = model.net
        groups = vit_finetune_groups(net, "encoder", len(net.encoder.blocks), self.config.layer_decay,
                                     no_decay=("decoder.queries",))
        # the MIM parts idle while fine-tuning (no gradient: AdamW skips them); kept so every parameter has a group
        idle = [p for n, p in model.named_parameters() if not n.startswith("net.") and p.requires_grad]
        return [*groups, {"params": idle, "lr_mult": 1.0, "name": "mim_idle"}]

    def export_module(self, model):
        return model.net if isinstance(model, PLLModel) else model

    def export_extras(self) -> dict:
        a = self.config
        return {"labels": a.labels, "decoder": a.decoder, "encoder": a.encoder or ("pretrained in this run" if
                                                                                   a.pretrain_epochs else "scratch")}

    # -- state -----------------------------------------------------------------------------------
    def setup(self, ctx) -> None:
        a = self.config
        if a.encoder:
            from fer_edge.models.encoder_io import load_encoder, read_encoder_meta

            load_encoder(a.encoder, into=ctx.module.net.encoder)
            meta = read_encoder_meta(a.encoder)
            print(f"pll.encoder: loaded {a.encoder} (target {meta.get('target')}, {meta.get('epochs')} pre-training epochs)")
        # per-face confidences (initialised from a face's candidate set when its first batch comes),
        # and LW-style random candidate sets for datasets without votes (used only when a batch
        # has no `candidates`); resumed runs load both
        from fer_edge.data.splits import random_candidate_sets

        n, k = ctx.num_faces("labelled"), self.cfg.data.num_classes
        labels = np.clip(ctx.role_labels("labelled"), 0, k - 1)
        self.samples = {"confidence": torch.zeros(n, k), "seen": torch.zeros(n, dtype=torch.bool),
                        "random_candidates": torch.from_numpy(random_candidate_sets(labels, k, a.candidate_q,
                                                                                    self.cfg.seed))}

    def on_epoch_end(self, ctx) -> dict:
        if ctx.stage.name != "pretrain" or ctx.rank != 0:
            return {}
        from pathlib import Path

        from fer_edge.models.encoder_io import save_encoder

        a = self.config
        path = save_encoder(ctx.module.net.encoder, Path(self.cfg.out_dir) / "encoder", target=a.target,
                            hog_norm=a.hog_norm if a.target == "hog" else None, epochs=ctx.stage_epoch + 1,
                            mask_ratio=a.mask_ratio, patch_cell=a.hog_cell,
                            data=self.cfg.data.unlabelled or f"{self.cfg.data.dataset} train (labels withheld)",
                            seed=self.cfg.seed)
        print(f"encoder saved: {path}")
        return {}

    # -- training --------------------------------------------------------------------------------
    def train_step(self, ctx, batch) -> dict:
        if ctx.stage.name == "pretrain":
            return self._pretrain_step(ctx, batch)
        return self._finetune_step(ctx, batch)

    def _pretrain_step(self, ctx, batch) -> dict:
        from fer_edge import ops

        a = self.config
        x = batch["image"]
        encoder = ctx.module.net.encoder
        g = torch.Generator().manual_seed(self.cfg.seed * 1_000_003 + ctx.epoch * ctx.steps_per_epoch + ctx.step)
        mask = pl.random_mask(len(x), encoder.num_patches, a.mask_ratio, g, x.device)
        with torch.no_grad():
            if a.target == "hog":
                if a.hog_norm == "cell":
                    target = ops.hog(x.float().contiguous(), a.hog_cell, a.hog_bins, a.patch)
                else:
                    raw = ops.hog(x.float().contiguous(), a.hog_cell, a.hog_bins, a.patch, norm="none")
                    target = pl.block_normalise(raw, a.hog_floor)
            else:
                target = pl.pixel_targets(x, a.patch)
        pred = ctx.model(x, mask)
        return {"mim": pl.masked_mse(pred, target, mask)}

    def candidates(self, batch) -> torch.Tensor:
        if "candidates" in batch:
            return batch["candidates"].bool()
        return self.samples["random_candidates"][batch["index"].cpu()].to(batch["label"].device)

    def _finetune_step(self, ctx, batch) -> dict:
        a = self.config
        logits = ctx.model(batch["image"]).float()
        y = batch["label"]
        if a.labels == "majority":
            terms = {"ce": F.cross_entropy(logits, y)}
        elif a.labels == "soft":
            terms = {"ce": -(batch["soft_label"] * F.log_softmax(logits, 1)).sum(1).mean()}
        else:
            cand = self.candidates(batch)
            idx = batch["index"].cpu()
            conf, seen = self.samples["confidence"], self.samples["seen"]
            fresh = ~seen[idx]
            if fresh.any():
                conf[idx[fresh]] = pl.initial_confidence(cand[fresh.to(cand.device)].cpu())
                seen[idx[fresh]] = True
            c = conf[idx].to(logits.device)
            terms = {"ce": pl.confidence_ce(logits, c)}
            if a.revision:
                with torch.no_grad():
                    new = pl.revise(torch.sigmoid(logits.detach()), c, cand, a.tau)
                conf[idx] = new.cpu()
                ctx.log(confidence_onehot=float((new.max(1).values == 1).float().mean()))
            ctx.log(candidates_per_face=float(cand.float().sum(1).mean()))
        decoder = ctx.module.net.decoder
        if decoder is not None and a.uniform_weight > 0:
            terms["uniform"] = a.uniform_weight * pl.uniform_loss(decoder.queries)
        ctx.log(train_acc=(logits.argmax(1) == y).float().mean().item())
        return terms
