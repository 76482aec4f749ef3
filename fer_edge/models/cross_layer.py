"""The cross-layer contrastive network (methods.md §3): a ResNet, the multi-scale representation
head (MSR) that is kept at inference, and the per-layer vector heads CLBS trains with.

`CrossLayerNet` is what is evaluated and exported: backbone -> MSR fusion (or, with MSR off, the
plain global-average-pool embedding of the last stage, i.e. the baseline) -> linear classifier.
Its prediction for a face depends on that face alone: the released code adds a mean over the
batch to the classifier input, which makes a prediction depend on its batch-mates; not here.
"""
from __future__ import annotations

import torch
from torch import nn


class MultiScaleFusion(nn.Module):
    """MSR: each stage map j (1-based) is pixel-shuffled by r = 2^(j-1) (the paper's factor: at
    48 px with the s2 stem every map becomes 24 x 24), then conv 3x3/2 -> `dim` channels + BN +
    ReLU, global average pool and a 1x1 conv (a linear layer on the pooled vector) -> f'_j.
    mu_j = sigmoid(w . f'_j) with one w shared by the layers (comparable weights across layers),
    and the fused feature is sum_j mu_j f'_j. attention=False: mu_j = 1, the released code's
    plain sum (its attention layers are defined but never called)."""

    def __init__(self, channels: list[int], dim: int = 128, attention: bool = True):
        super().__init__()
        self.factors = [2 ** j for j in range(len(channels))]
        for j, (c, r) in enumerate(zip(channels, self.factors)):
            if c % (r * r):
                raise ValueError(f"MSR: stage {j + 1} has {c} channels, not divisible by its pixel-shuffle factor "
                                 f"{r}^2; use a model width whose stage widths are")
        self.shuffle = nn.ModuleList(nn.PixelShuffle(r) if r > 1 else nn.Identity() for r in self.factors)
        self.convs = nn.ModuleList(
            nn.Sequential(nn.Conv2d(c // (r * r), dim, 3, 2, 1, bias=False), nn.BatchNorm2d(dim), nn.ReLU(inplace=True))
            for c, r in zip(channels, self.factors))
        self.reduce = nn.ModuleList(nn.Linear(dim, dim) for _ in channels)
        self.attention = nn.Linear(dim, 1) if attention else None
        self.pool = nn.AdaptiveAvgPool2d(1)
        self.out_dim = dim

    def layer_features(self, maps: list[torch.Tensor]) -> torch.Tensor:
        """f'_j for every layer: [B, L, dim]."""
        return torch.stack([red(self.pool(conv(ps(m))).flatten(1))
                            for m, ps, conv, red in zip(maps, self.shuffle, self.convs, self.reduce)], 1)

    def weights(self, feats: torch.Tensor) -> torch.Tensor:
        """mu [B, L] (ones without attention)."""
        if self.attention is None:
            return feats.new_ones(feats.shape[:2])
        return torch.sigmoid(self.attention(feats)).squeeze(-1)

    def forward(self, maps: list[torch.Tensor]) -> torch.Tensor:
        return self.fuse(self.layer_features(maps))

    def fuse(self, feats: torch.Tensor) -> torch.Tensor:
        """[B, L, dim] layer features -> the fused [B, dim] feature."""
        mu = self.weights(feats)
        if self.training:
            self.last_weights = mu.detach()  # read by the training logs
        return (mu.unsqueeze(-1) * feats).sum(1)


class CrossLayerNet(nn.Module):
    """Backbone + (MSR | last-stage average pool) + linear classifier: the exported model."""

    def __init__(self, backbone: nn.Module, num_classes: int, msr: str = "attention", msr_dim: int = 128):
        super().__init__()
        if msr not in ("attention", "sum", "none"):
            raise ValueError(f"msr: expected attention, sum or none, got {msr!r}")
        self.backbone = backbone
        self.msr = None if msr == "none" else MultiScaleFusion(backbone.stage_channels, msr_dim, msr == "attention")
        self.head = nn.Linear(self.msr.out_dim if self.msr is not None else backbone.out_dim, num_classes)

    def embed(self, maps: list[torch.Tensor]) -> torch.Tensor:
        if self.msr is not None:
            return self.msr(maps)
        return self.backbone.pool(maps[-1]).flatten(1)

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        return self.head(self.embed(self.backbone.forward_features(x)))


class VectorHead(nn.Module):
    """CLBS's per-layer head (the paper's Conv, GAP, FC, ReLU): one vector per sample. The conv
    keeps the stage's own width (the paper widens every layer to 512 channels first, which at
    layer 2 would cost more than the layer itself on our 2-core budget)."""

    def __init__(self, cin: int, width: int, dim: int, relu: bool = True):
        super().__init__()
        self.conv = nn.Sequential(nn.Conv2d(cin, width, 3, 1, 1, bias=False), nn.BatchNorm2d(width), nn.ReLU(inplace=True))
        self.fc = nn.Linear(width, dim)
        # relu=False keeps the FC's signed output. Measured (benchmarks/results/cross_layer): with
        # or without the ReLU these heads collapse, every face to one direction (pairwise cosine
        # 1.0000): they serve only CLBS, whose loss has no term against collapse. vectors="msr"
        # (CrossLayerModel) takes the vectors from features the classifier also uses.
        self.relu = relu

    def forward(self, m: torch.Tensor) -> torch.Tensor:
        v = self.fc(self.conv(m).mean((2, 3)))
        return torch.relu(v) if self.relu else v


class CrossLayerModel(nn.Module):
    """The exported `net` and CLBS's per-layer vectors: training-only heads (one per tapped layer;
    vectors="heads") or MSR's per-layer features (vectors="msr", no extra modules). The heads run
    inside forward so that DistributedDataParallel sees every module a step uses."""

    def __init__(self, net: CrossLayerNet, layers: tuple[int, ...], bs_dim: int = 128, with_heads: bool = True,
                 vector_relu: bool = True, vectors: str = "heads"):
        super().__init__()
        if vectors not in ("heads", "msr"):
            raise ValueError(f"vectors: expected heads or msr, got {vectors!r}")
        if vectors == "msr" and net.msr is None:
            raise ValueError("vectors='msr' takes CLBS's vectors from MSR's per-layer features: it needs MSR on")
        self.net = net
        self.layers = layers
        self.vectors = vectors
        chans = net.backbone.stage_channels
        self.bs_heads = nn.ModuleDict({str(j): VectorHead(chans[j - 1], chans[j - 1], bs_dim, vector_relu)
                                       for j in layers}) if with_heads and vectors == "heads" else nn.ModuleDict()

    def forward(self, x: torch.Tensor) -> dict:
        """{"logits": [B, C], "maps": the four stage maps, "vectors": {layer: [B, dim]}}: from the
        training-only heads, or (vectors="msr") MSR's per-layer features f'_j, which the classifier
        also reads, so they cannot collapse to one direction without costing the prediction."""
        maps = self.net.backbone.forward_features(x)
        if self.vectors == "msr":
            feats = self.net.msr.layer_features(maps)
            out = {"logits": self.net.head(self.net.msr.fuse(feats)), "maps": maps}
            out["vectors"] = {int(j): feats[:, int(j) - 1] for j in self.layers}
            return out
        out = {"logits": self.net.head(self.net.embed(maps)), "maps": maps}
        out["vectors"] = {int(j): head(maps[int(j) - 1]) for j, head in self.bs_heads.items()}
        return out
