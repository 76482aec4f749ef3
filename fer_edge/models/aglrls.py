"""AGLRLS network (methods.md §1): a global branch and five landmark-local branches on the
stage-2 map of an IR-50 or MobileNet-v2, seven feature vectors and seven classifiers.

Classifier order: 0 global, 1-5 local (left eye, right eye, nose, left and right mouth corner, as
seen in the image), 6 the concatenation of all six features.
"""
from __future__ import annotations

import torch
from torch import nn

from fer_edge.models import build_backbone
from fer_edge.models.resnet import BasicBlock

WINDOW = 7


def landmark_cells(landmarks: torch.Tensor, image_size: int, map_size: int) -> torch.Tensor:
    """Pixel landmarks [B, 5, 2] (x, y) -> integer cells of a map_size map: int(x * M / S),
    clamped to [3, M - 4] so that a 7x7 window always lies inside the map (the authors' [3, 24]
    for M = 28)."""
    half = WINDOW // 2
    # clamped while still float: TensorRT's Clip takes float tensors only (an INT64 Clip fails its
    # ONNX parser; tensorrt_check.py found it), and floor-then-clamp is exact on whole numbers
    return torch.floor(landmarks * (map_size / image_size)).clamp(half, map_size - 1 - half).long()


def crop_windows(fmap: torch.Tensor, cells: torch.Tensor) -> torch.Tensor:
    """fmap [B, C, H, W], cells [B, P, 2] -> windows [B, P, C, 7, 7] around each cell.
    A gather over the flattened map, so the graph exports to ONNX as standard ops."""
    b, c, h, w = fmap.shape
    p = cells.shape[1]
    offs = torch.arange(WINDOW, device=fmap.device) - WINDOW // 2
    ys = cells[..., 1, None] + offs  # [B, P, 7]
    xs = cells[..., 0, None] + offs
    idx = (ys[..., :, None] * w + xs[..., None, :]).reshape(b, 1, p * WINDOW * WINDOW).expand(b, c, -1)
    out = fmap.flatten(2).gather(2, idx).reshape(b, c, p, WINDOW, WINDOW)
    return out.permute(0, 2, 1, 3, 4)


class CropNet(nn.Module):
    """The authors' residual crop net: in->256 s2, 256->256, 256->512 s2, 512->512, conv3x3->64,
    ReLU, global average pool -> 64-d."""

    def __init__(self, in_channels: int, width: float = 1.0, out_dim: int = 64):
        super().__init__()
        c1, c2 = int(256 * width), int(512 * width)
        self.blocks = nn.Sequential(BasicBlock(in_channels, c1, 2), BasicBlock(c1, c1), BasicBlock(c1, c2, 2), BasicBlock(c2, c2))
        self.out = nn.Sequential(nn.Conv2d(c2, out_dim, 3, 1, 1), nn.ReLU(inplace=True), nn.AdaptiveAvgPool2d(1), nn.Flatten())

    def forward(self, x):
        return self.out(self.blocks(x))


def _project(cin: int, cout: int) -> nn.Module:
    """1x1 conv + BN + ReLU to the channel count methods.md gives for a stage map (identity when
    the backbone already has it)."""
    if cin == cout:
        return nn.Identity()
    return nn.Sequential(nn.Conv2d(cin, cout, 1, bias=False), nn.BatchNorm2d(cout), nn.ReLU(inplace=True))


# methods.md §1: the backbone's stage-2 and last maps carry 128 and 512 channels (28 and 7 px at 112)
PAPER_STAGE2, PAPER_LAST = 128, 512
TAPS = ("paper", "backbone")


class AGLRLSNet(nn.Module):
    """forward(images [B, 3, S, S], landmarks [B, 5, 2] in image pixels) ->
    {"features": 7 x [B, d_k], "logits": 7 x [B, classes]}.

    taps: "paper" (default) gives the branches the maps methods.md describes whatever the
    backbone's width: the stage-2 map projected to 128 channels and the last map to 512 (1x1
    conv + BN + ReLU; identity for an IR-50, which has them), and crop nets at full width
    (128->256->512). "backbone" taps the backbone's own maps (MobileNet-v2: 16/24/32/96 channels at
    width 1, 8/16/16/48 at 0.5) with crop nets scaled by the backbone's width: what fer_edge's
    reported CPU runs and the shipped model use (at width 0.5 and 112 px: 106 M multiply-adds and
    3.4 M parameters per face against 381 M and 11.8 M for "paper", which the 2-core budget needed).
    shared_local: one crop net for the five points (the authors' MobileNet variant).
    shared_heads: the released code's 3 heads (global, one shared by the locals, concat) instead
    of the paper's 7 (default: the paper's)."""

    def __init__(self, num_classes: int = 7, backbone: str = "ir50", image_size: int = 112, width: float = 1.0,
                 in_channels: int = 3, shared_local: bool | None = None, shared_heads: bool = False, feat_dim: int = 64,
                 taps: str = "paper"):
        super().__init__()
        if taps not in TAPS:
            raise ValueError(f"taps: expected one of {TAPS}, got {taps!r}")
        self.backbone = build_backbone(backbone, in_channels, image_size, width=width)
        self.image_size = image_size
        c2, c_last = self.backbone.stage_channels[1], self.backbone.stage_channels[-1]
        crop_width = width
        self.tap2, self.tap_last = nn.Identity(), nn.Identity()
        if taps == "paper":
            self.tap2, self.tap_last = _project(c2, PAPER_STAGE2), _project(c_last, PAPER_LAST)
            c2, c_last, crop_width = PAPER_STAGE2, PAPER_LAST, 1.0
        self.global_branch = nn.Sequential(nn.Conv2d(c_last, feat_dim, 3, 1, 1), nn.ReLU(inplace=True),
                                           nn.AdaptiveAvgPool2d(1), nn.Flatten())
        shared_local = backbone == "mobilenet_v2" if shared_local is None else shared_local
        n_nets = 1 if shared_local else 5
        self.crop_nets = nn.ModuleList(CropNet(c2, crop_width, feat_dim) for _ in range(n_nets))
        self.shared_heads = shared_heads
        dims = [feat_dim] * 6 + [6 * feat_dim]
        if shared_heads:
            self.heads = nn.ModuleList([nn.Linear(feat_dim, num_classes), nn.Linear(feat_dim, num_classes),
                                        nn.Linear(6 * feat_dim, num_classes)])
        else:
            self.heads = nn.ModuleList(nn.Linear(d, num_classes) for d in dims)

    def head(self, k: int) -> nn.Module:
        if not self.shared_heads:
            return self.heads[k]
        return self.heads[0] if k == 0 else self.heads[2] if k == 6 else self.heads[1]

    def forward(self, images: torch.Tensor, landmarks: torch.Tensor) -> dict:
        maps = self.backbone.forward_features(images)
        stage2, last = self.tap2(maps[1]), self.tap_last(maps[-1])
        feats = [self.global_branch(last)]
        windows = crop_windows(stage2, landmark_cells(landmarks, self.image_size, stage2.shape[-1]))
        for p in range(5):
            net = self.crop_nets[0 if len(self.crop_nets) == 1 else p]
            feats.append(net(windows[:, p]))
        feats.append(torch.cat(feats, 1))
        return {"features": feats, "logits": [self.head(k)(f) for k, f in enumerate(feats)]}

    def all_logits(self, images: torch.Tensor, landmarks: torch.Tensor) -> torch.Tensor:
        """[B, 7, classes]: what the exported inference graph returns (GLPC runs in the runtime)."""
        return torch.stack(self(images, landmarks)["logits"], 1)
