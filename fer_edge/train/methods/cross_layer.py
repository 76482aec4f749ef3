"""Cross-layer contrastive learning (methods.md §3): CLBS + CLFM + MSR on a ResNet.

One supervised stage (configured by `optim`; the paper's Adam 1e-3, wd 1e-4, ExponentialLR 0.9 in
configs/cross_layer_ferplus.yaml). Each step: CE (or the vote distribution) on the classifier
over the MSR-fused feature, plus
- CLBS (clbs_weight = beta_2): k-means with clbs_k clusters over the batch's layer-4 vectors
  (a small conv head per layer, as the paper; these training-only heads collapse to one direction
  for every face, so clbs_vectors=msr takes MSR's per-layer features instead), layer-2 vectors
  assigned to those centroids by cosine; or, with centres=class, the paper's Table VI control
  (per-class centres of the batch);
- CLFM (clfm_weight = alpha_2): per sample, k-means with clfm_k clusters over its layer-4
  channels, each coded by where its response peaks (a differentiable soft-argmax by default;
  the released top-k index coding, which gives this loss no gradient, as coding=topk), the
  sample's layer-2 channels assigned by cosine; B problems in one kernel call.
Both use the `kmeans_cosine` / `assign_cosine` kernels (kmeans_impl=torch swaps in the batched
PyTorch twin, for the step-time benchmark). Switching clbs, clfm off and msr=none leaves the plain
baseline: same backbone, input, schedule and augmentation.

Logged per epoch: each loss, the mean gradient norm per sample of the shallow and deep stage maps
and their ratio (the paper's "learning intensity", which CL should raise on the shallow layer),
the mean MSR attention weight per layer, how many clusters the shallow side fills, and the mean
pairwise cosine of the deep CLBS vectors (clbs_vector_cos; 1.0 is a collapse).
"""
from __future__ import annotations

from dataclasses import dataclass

import numpy as np
import torch

from fer_edge.models import build_backbone, load_weights
from fer_edge.models.cross_layer import CrossLayerModel, CrossLayerNet
from fer_edge.train.cross_layer import (CODINGS, KMEANS_IMPLS, class_centre_alignment, cluster_alignment,
                                        coordinate_codes)
from fer_edge.train.methods.base import Method, Stage, register_method
from fer_edge.train.methods.baseline import classification_loss, supervised_stage


@dataclass
class CrossLayerConfig:
    """The `cross_layer:` section; optim.* is the one training stage."""
    clbs: bool = True                 # batch-sample contrastive loss
    clfm: bool = True                 # feature-map contrastive loss
    msr: str = "attention"            # attention (paper) | sum (released code) | none (last-stage pool: baseline)
    centres: str = "kmeans"           # CLBS centres: kmeans (paper) | class (Table VI control: per-class batch centres)
    shallow_layer: int = 2            # the paper's best pair: layer 2 vs layer 4
    deep_layer: int = 4
    clbs_weight: float = 0.1          # beta_2
    clfm_weight: float = 0.1          # alpha_2
    clbs_k: int = 7
    clfm_k: int = 4
    kmeans_iters: int = 10
    coding: str = "soft"              # CLFM channel code: soft (soft-argmax) | topk (released, no gradient)
    temperature: float = 0.5          # soft-argmax temperature on the standardised map
    bs_dim: int = 128                 # CLBS vector size (the paper's fd_bs)
    vector_relu: bool = True          # the paper's ReLU after the CLBS heads' FC (false: signed vectors)
    clbs_vectors: str = "heads"       # heads (paper: training-only heads; they collapse) | msr (MSR's per-layer features)
    msr_dim: int = 128                # MSR feature size (the paper's fd)
    kmeans_impl: str = "native"       # native kernels | torch (batched PyTorch twin; benchmarks)


@register_method
class CrossLayer(Method):
    name = "cross_layer"
    description = "cross-layer contrastive learning (CLBS + CLFM on the k-means kernel) with multi-scale attention fusion"
    Config = CrossLayerConfig

    @classmethod
    def check_config(cls, cfg) -> None:
        a = cfg.method_config
        if cfg.model.backbone not in ("resnet18", "resnet50"):
            raise ValueError(f"cross_layer needs a ResNet's four stage maps: resnet18 or resnet50, got {cfg.model.backbone!r}")
        if not 1 <= a.shallow_layer < a.deep_layer <= 4:
            raise ValueError(f"cross_layer: need 1 <= shallow_layer < deep_layer <= 4, got {a.shallow_layer}, {a.deep_layer}")
        choices = {"msr": ("attention", "sum", "none"), "centres": ("kmeans", "class"), "coding": CODINGS,
                   "kmeans_impl": KMEANS_IMPLS, "clbs_vectors": ("heads", "msr")}
        for key, allowed in choices.items():
            if getattr(a, key) not in allowed:
                raise ValueError(f"cross_layer.{key}: expected one of {allowed}, got {getattr(a, key)!r}")
        if a.clbs and a.clbs_vectors == "msr" and a.msr == "none":
            raise ValueError("cross_layer.clbs_vectors=msr takes CLBS's vectors from MSR's per-layer features: "
                             "it needs cross_layer.msr=attention or sum")
        for key in ("clbs_k", "clfm_k"):
            if getattr(a, key) < 2:
                raise ValueError(f"cross_layer.{key} must be >= 2")
        if a.kmeans_iters < 0 or a.bs_dim < 1 or a.msr_dim < 1:
            raise ValueError("cross_layer: kmeans_iters must be >= 0 and bs_dim, msr_dim >= 1")
        if not a.temperature > 0 or a.clbs_weight < 0 or a.clfm_weight < 0:
            raise ValueError("cross_layer: temperature must be > 0 and the loss weights >= 0")

    def __init__(self, cfg):
        super().__init__(cfg)
        self._grad: dict[str, list] = {}

    def build_model(self, num_classes: int, in_channels: int) -> CrossLayerModel:
        m, a = self.cfg.model, self.config
        backbone = build_backbone(m.backbone, in_channels, self.cfg.data.image_size, width=m.width, stem=m.stem or None)
        if m.pretrained:
            info = load_weights(backbone, m.pretrained, require=0.5)
            print(f"model.pretrained: loaded {info['loaded']} of {info['total']} backbone tensors from {m.pretrained}")
        net = CrossLayerNet(backbone, num_classes, a.msr, a.msr_dim)
        layers = (a.shallow_layer, a.deep_layer) if a.clbs else ()
        return CrossLayerModel(net, layers, a.bs_dim, vector_relu=a.vector_relu, vectors=a.clbs_vectors)

    def stages(self) -> list[Stage]:
        return [supervised_stage(self.cfg)]

    def export_module(self, model):
        return model.net if isinstance(model, CrossLayerModel) else model

    def export_extras(self) -> dict:
        a = self.config
        return {"msr": a.msr, "clbs": a.clbs, "clfm": a.clfm}

    # -- training --------------------------------------------------------------------------------
    def _watch(self, name: str, t: torch.Tensor) -> None:
        """Records the mean per-sample gradient norm reaching stage map `t` in backward."""
        if t.requires_grad:
            t.register_hook(lambda g: self._grad.setdefault(name, []).append(float(g.flatten(1).norm(dim=1).mean())))

    def on_epoch_start(self, ctx) -> None:
        self._grad = {}

    def on_epoch_end(self, ctx) -> dict:
        a = self.config
        logs = {f"grad_norm_layer{k}": float(np.mean(v)) for k, v in self._grad.items() if v}
        s, d = f"grad_norm_layer{a.shallow_layer}", f"grad_norm_layer{a.deep_layer}"
        if s in logs and d in logs and logs[d] > 0:
            logs[f"grad_ratio_{a.shallow_layer}_{a.deep_layer}"] = logs[s] / logs[d]
        return logs

    def train_step(self, ctx, batch) -> dict:
        a = self.config
        out = ctx.model(batch["image"])
        maps = out["maps"]
        shallow, deep = maps[a.shallow_layer - 1], maps[a.deep_layer - 1]
        self._watch(str(a.shallow_layer), shallow)
        self._watch(str(a.deep_layer), deep)
        logits = out["logits"]
        terms = {"ce": classification_loss(self.cfg, logits, batch)}
        # k-means++ draws differ per step and repeat on resume
        seed = (self.cfg.seed * 1_000_003 + ctx.epoch * ctx.steps_per_epoch + ctx.step) * 2
        if a.clbs:
            vd, vs = out["vectors"][a.deep_layer], out["vectors"][a.shallow_layer]
            if a.centres == "class":
                loss, stats = class_centre_alignment(vd, vs, batch["label"], logits.shape[1], a.kmeans_impl)
            else:
                loss, stats = cluster_alignment(vd.unsqueeze(0), vs.unsqueeze(0), a.clbs_k, a.kmeans_iters, seed,
                                                a.kmeans_impl)
            terms["clbs"] = a.clbs_weight * loss
            # mean pairwise cosine of the deep vectors: 1.0 means every face got one direction
            # (the collapse that silences CLBS; benchmarks/results/cross_layer/README.md)
            with torch.no_grad():
                u = torch.nn.functional.normalize(vd.float(), dim=1)
                n = u.shape[0]
                spread = ((u.sum(0).square().sum() - n) / max(1, n * (n - 1))).item()
            ctx.log(clbs_shallow_clusters=stats["shallow_clusters_used"], clbs_vector_cos=spread)
        if a.clfm:
            cd = coordinate_codes(deep, a.coding, a.temperature)
            cs = coordinate_codes(shallow, a.coding, a.temperature)
            loss, stats = cluster_alignment(cd, cs, a.clfm_k, a.kmeans_iters, seed + 1, a.kmeans_impl)
            terms["clfm"] = a.clfm_weight * loss
            ctx.log(clfm_shallow_clusters=stats["shallow_clusters_used"])
        msr = ctx.module.net.msr
        if msr is not None and msr.attention is not None:
            ctx.log(**{f"msr_mu{j + 1}": float(v) for j, v in enumerate(msr.last_weights.mean(0))})
        ctx.log(train_acc=(logits.argmax(1) == batch["label"]).float().mean().item())
        return terms
