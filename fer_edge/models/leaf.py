"""LEAF's network (methods.md §4): a backbone, a semantic-level and an instance-level mixture of
experts with noisy top-k gating, and a linear classifier.

Each MoE has E independent residual-MLP experts (dim -> dim/2 -> dim) and a gate. In training
the gate's logits get Shazeer's learned Gaussian noise and are routed by the `topk_gating`
kernel (k experts per face, softmax over the kept logits, so with k >= 2 the gate gets gradient;
the released code's k=1 over one shared expert gives a constant weight of 1 and a gate that never
learns). Evaluation and export route with `torch.topk` (ONNX TopK, no plugin), which keeps the
same experts (ties to the lower index, as the kernel). The released code chains the two MoEs:
semantic MoE -> L2-normalised contrastive feature -> instance MoE -> classifier; so here. Without
MoEs (blocks="none": Ada-CM, FixMatch, supervised-only) the classifier reads the backbone feature,
as in Ada-CM, and the normalised copy feeds only the contrastive loss.
"""
from __future__ import annotations

import torch
import torch.nn.functional as F
from torch import nn

from fer_edge.models.resnet import ResNet


class Expert(nn.Module):
    """x + W2 relu(W1 x): a residual MLP."""

    def __init__(self, dim: int, hidden: int):
        super().__init__()
        self.fc1, self.fc2 = nn.Linear(dim, hidden), nn.Linear(hidden, dim)

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        return x + self.fc2(torch.relu(self.fc1(x)))


class MoE(nn.Module):
    """E experts, noisy top-k gating. forward -> (y [T, dim], stats) with stats["balance"] the
    Switch-Transformer load-balancing loss E * sum_e f_e * P_e (f_e: share of the T*k routing slots
    that go to expert e, P_e: the mean gate probability of e; 1 when balanced) and
    stats["usage"] = f [E] (logged per epoch: a collapsed router shows as zeros)."""

    def __init__(self, dim: int, experts: int = 8, k: int = 2, noisy: bool = True):
        super().__init__()
        if not 1 <= k <= experts:
            raise ValueError(f"MoE: need 1 <= k <= experts, got k={k}, experts={experts}")
        self.experts = nn.ModuleList(Expert(dim, dim // 2) for _ in range(experts))
        self.gate = nn.Linear(dim, experts, bias=False)
        nn.init.normal_(self.gate.weight, std=0.02)  # not zero: exact ties would route everything to expert 0 at first
        self.noise = nn.Linear(dim, experts, bias=False) if noisy else None
        if noisy:
            nn.init.zeros_(self.noise.weight)
        self.k, self.num_experts = k, experts

    def route(self, logits: torch.Tensor):
        """(weights [T, k], indices [T, k], probs [T, E] or None)."""
        if self.training and not torch.onnx.is_in_onnx_export():
            from fer_edge import ops

            return ops.topk_gating(logits.float().contiguous(), self.k, return_probs=True)
        vals, idx = torch.topk(logits, self.k, dim=-1)
        return torch.softmax(vals, -1), idx, None

    def forward(self, x: torch.Tensor):
        logits = self.gate(x)
        if self.training and self.noise is not None:
            logits = logits + torch.randn_like(logits) * (F.softplus(self.noise(x)) + 0.01)
        weights, idx, probs = self.route(logits)
        outs = torch.stack([e(x) for e in self.experts], 1)  # [T, E, dim]: E is small, all run
        chosen = outs.gather(1, idx.unsqueeze(-1).expand(-1, -1, outs.shape[-1]))
        y = (weights.unsqueeze(-1).to(outs.dtype) * chosen).sum(1)
        stats = {}
        if self.training:
            usage = torch.bincount(idx.flatten(), minlength=self.num_experts).float() / idx.numel()
            stats["usage"] = usage
            stats["balance"] = self.num_experts * (usage * probs.mean(0)).sum()
        return y, stats


class MatchedMLP(nn.Module):
    """The control for a MoE: one residual MLP with the experts' parameters (hidden E * dim/2)."""

    def __init__(self, dim: int, experts: int = 8):
        super().__init__()
        self.mlp = Expert(dim, experts * (dim // 2))

    def forward(self, x: torch.Tensor):
        return self.mlp(x), {}


class Passthrough(nn.Module):
    def forward(self, x: torch.Tensor):
        return x, {}


class LEAFNet(nn.Module):
    """backbone -> pooled feature -> semantic block -> L2-normalised contrastive feature ->
    instance block -> classifier. blocks: "moe" (LEAF), "mlp" (matched MLPs), "none" (Ada-CM's
    plain network)."""

    def __init__(self, backbone: ResNet, num_classes: int, blocks: str = "moe", experts: int = 8, k: int = 2,
                 noisy: bool = True):
        super().__init__()
        dim = backbone.out_dim
        self.backbone = backbone

        def block():
            if blocks == "moe":
                return MoE(dim, experts, k, noisy)
            if blocks == "mlp":
                return MatchedMLP(dim, experts)
            if blocks == "none":
                return Passthrough()
            raise ValueError(f"blocks: expected moe, mlp or none, got {blocks!r}")

        self.semantic, self.instance = block(), block()
        self.classifier = nn.Linear(dim, num_classes)
        # Ada-CM's plain network classifies the backbone feature; only its contrastive loss reads the
        # L2-normalised one. A linear classifier on unit-norm features is bounded by its weight norm:
        # measured, Ada-CM so built never put an unlabelled face over the 0.8 threshold in 5 epochs
        # (coverage 0). LEAF's chain keeps the normalised feature: its instance block (x + MLP(x))
        # is free to scale it.
        self.classify_normalised = blocks != "none"

    def forward(self, x: torch.Tensor, with_features: bool = False):
        """logits [B, C]; with_features: (logits, contrastive feature [B, dim], {"semantic": stats,
        "instance": stats})."""
        f = self.backbone(x)
        s, s_stats = self.semantic(f)
        z = F.normalize(s, dim=1)
        h, i_stats = self.instance(z if self.classify_normalised else s)
        logits = self.classifier(h)
        if not with_features:
            return logits
        return logits, z, {"semantic": s_stats, "instance": i_stats}
