"""ResNet-18/50 and IR-50 (the ArcFace-style ResNet the AGLRLS authors use), written here.

Each returns its four stage maps from `forward_features` (the methods tap stage 2 or several
stages) and a pooled embedding from `forward`. `small_input=True` swaps the ImageNet stem
(7x7/2 + max-pool) for a 3x3/1 stem so that 48-112 px faces keep their spatial detail.
"""
from __future__ import annotations

import torch
from torch import nn


def _shortcut(cin: int, cout: int, stride: int) -> nn.Module | None:
    """Projection (1x1 conv + BN) when the block changes shape, else None (identity)."""
    if stride == 1 and cin == cout:
        return None
    return nn.Sequential(nn.Conv2d(cin, cout, 1, stride, bias=False), nn.BatchNorm2d(cout))


class BasicBlock(nn.Module):
    expansion = 1

    def __init__(self, cin: int, cout: int, stride: int = 1):
        super().__init__()
        self.conv1 = nn.Conv2d(cin, cout, 3, stride, 1, bias=False)
        self.bn1 = nn.BatchNorm2d(cout)
        self.conv2 = nn.Conv2d(cout, cout, 3, 1, 1, bias=False)
        self.bn2 = nn.BatchNorm2d(cout)
        self.relu = nn.ReLU(inplace=True)
        self.down = _shortcut(cin, cout, stride)

    def forward(self, x):
        idt = x if self.down is None else self.down(x)
        out = self.relu(self.bn1(self.conv1(x)))
        return self.relu(self.bn2(self.conv2(out)) + idt)


class Bottleneck(nn.Module):
    expansion = 4

    def __init__(self, cin: int, width: int, stride: int = 1):
        super().__init__()
        cout = width * 4
        self.conv1 = nn.Conv2d(cin, width, 1, bias=False)
        self.bn1 = nn.BatchNorm2d(width)
        self.conv2 = nn.Conv2d(width, width, 3, stride, 1, bias=False)
        self.bn2 = nn.BatchNorm2d(width)
        self.conv3 = nn.Conv2d(width, cout, 1, bias=False)
        self.bn3 = nn.BatchNorm2d(cout)
        self.relu = nn.ReLU(inplace=True)
        self.down = _shortcut(cin, cout, stride)

    def forward(self, x):
        idt = x if self.down is None else self.down(x)
        out = self.relu(self.bn1(self.conv1(x)))
        out = self.relu(self.bn2(self.conv2(out)))
        return self.relu(self.bn3(self.conv3(out)) + idt)


class IRBlock(nn.Module):
    """ArcFace 'bottleneck_IR': BN -> conv3x3 -> BN -> PReLU -> conv3x3(stride) -> BN, plus shortcut."""

    expansion = 1

    def __init__(self, cin: int, cout: int, stride: int = 1):
        super().__init__()
        self.res = nn.Sequential(nn.BatchNorm2d(cin), nn.Conv2d(cin, cout, 3, 1, 1, bias=False), nn.BatchNorm2d(cout),
                                 nn.PReLU(cout), nn.Conv2d(cout, cout, 3, stride, 1, bias=False), nn.BatchNorm2d(cout))
        if cin == cout:
            self.short = nn.MaxPool2d(1, stride)
        else:
            self.short = nn.Sequential(nn.Conv2d(cin, cout, 1, stride, bias=False), nn.BatchNorm2d(cout))

    def forward(self, x):
        return self.res(x) + self.short(x)


class ResNet(nn.Module):
    """Stages of `block`, widths `widths`, `layers` blocks each; first block of stages 2-4 strides 2."""

    def __init__(self, block, layers, widths=(64, 128, 256, 512), in_channels: int = 3, stem: str = "s1",
                 ir_stem: bool = False):
        super().__init__()
        w0 = widths[0]
        if stem not in ("imagenet", "s2", "s1"):
            raise ValueError(f"stem: expected 'imagenet', 's2' or 's1', got {stem!r}")
        if ir_stem:
            self.stem = nn.Sequential(nn.Conv2d(in_channels, w0, 3, 1, 1, bias=False), nn.BatchNorm2d(w0), nn.PReLU(w0))
        elif stem in ("s1", "s2"):
            self.stem = nn.Sequential(nn.Conv2d(in_channels, w0, 3, 1 if stem == "s1" else 2, 1, bias=False),
                                      nn.BatchNorm2d(w0), nn.ReLU(inplace=True))
        else:
            self.stem = nn.Sequential(nn.Conv2d(in_channels, w0, 7, 2, 3, bias=False), nn.BatchNorm2d(w0),
                                      nn.ReLU(inplace=True), nn.MaxPool2d(3, 2, 1))
        stages, cin = [], w0
        for i, (w, n) in enumerate(zip(widths, layers)):
            # IR-50 downsamples in every stage (its stem keeps full resolution)
            stride = 2 if (i > 0 or ir_stem) else 1
            blocks = []
            for j in range(n):
                if block is Bottleneck:
                    blocks.append(Bottleneck(cin, w, stride if j == 0 else 1))
                    cin = w * 4
                else:
                    blocks.append(block(cin, w, stride if j == 0 else 1))
                    cin = w
            stages.append(nn.Sequential(*blocks))
        self.stages = nn.ModuleList(stages)
        self.out_dim = cin
        self.stage_channels = [w * block.expansion for w in widths]
        self.pool = nn.AdaptiveAvgPool2d(1)
        for m in self.modules():
            if isinstance(m, nn.Conv2d):
                nn.init.kaiming_normal_(m.weight, mode="fan_out", nonlinearity="relu")

    def forward_features(self, x: torch.Tensor) -> list[torch.Tensor]:
        """The four stage maps [B, C_i, H_i, W_i]."""
        x = self.stem(x)
        feats = []
        for stage in self.stages:
            x = stage(x)
            feats.append(x)
        return feats

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        """Pooled embedding [B, out_dim]."""
        return self.pool(self.forward_features(x)[-1]).flatten(1)


def resnet18(in_channels=3, width: float = 1.0, stem: str = "s1") -> ResNet:
    widths = tuple(int(round(w * width)) for w in (64, 128, 256, 512))
    return ResNet(BasicBlock, (2, 2, 2, 2), widths, in_channels, stem)


def resnet50(in_channels=3, width: float = 1.0, stem: str = "s1") -> ResNet:
    widths = tuple(int(round(w * width)) for w in (64, 128, 256, 512))
    return ResNet(Bottleneck, (3, 4, 6, 3), widths, in_channels, stem)


def ir50(in_channels=3, width: float = 1.0) -> ResNet:
    """IR-50: 3x3 stem 64ch + BN + PReLU, units [3, 4, 14, 3] of IR blocks; at 112 px its stage
    maps are 56/28/14/7 (methods.md §1)."""
    widths = tuple(int(round(w * width)) for w in (64, 128, 256, 512))
    return ResNet(IRBlock, (3, 4, 14, 3), widths, in_channels, ir_stem=True)
