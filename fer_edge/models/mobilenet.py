"""MobileNet-v2 (Sandler et al.), written here; four stage maps for the methods.

At 112 px input the stages give 56/28/14/7 px maps (methods.md §1), with `small_input=True`
the stem keeps stride 1 so that 48-64 px inputs still reach a 3-6 px last map.
"""
from __future__ import annotations

import torch
from torch import nn


def _conv_bn(cin, cout, k, s, groups=1, act=True):
    layers = [nn.Conv2d(cin, cout, k, s, k // 2, groups=groups, bias=False), nn.BatchNorm2d(cout)]
    if act:
        layers.append(nn.ReLU6(inplace=True))
    return nn.Sequential(*layers)


class InvertedResidual(nn.Module):
    def __init__(self, cin, cout, stride, expand):
        super().__init__()
        hidden = cin * expand
        layers = [] if expand == 1 else [_conv_bn(cin, hidden, 1, 1)]
        layers += [_conv_bn(hidden, hidden, 3, stride, groups=hidden), _conv_bn(hidden, cout, 1, 1, act=False)]
        self.block = nn.Sequential(*layers)
        self.residual = stride == 1 and cin == cout

    def forward(self, x):
        return x + self.block(x) if self.residual else self.block(x)


def _make_divisible(v, d=8):
    return max(d, int(v + d / 2) // d * d)


class MobileNetV2(nn.Module):
    # (expand, channels, repeats, stride)
    SETTINGS = [(1, 16, 1, 1), (6, 24, 2, 2), (6, 32, 3, 2), (6, 64, 4, 2), (6, 96, 3, 1), (6, 160, 3, 2), (6, 320, 1, 1)]
    STAGE_ENDS = (0, 1, 2, 4)  # groups after which a stage map is taken: 56/28/14/7 px at 112 px

    def __init__(self, in_channels: int = 3, width: float = 1.0, small_input: bool = False, last_channels: int = 1280):
        super().__init__()
        c0 = _make_divisible(32 * width)
        self.stem = _conv_bn(in_channels, c0, 3, 1 if small_input else 2)
        groups, cin = [], c0
        for t, c, n, s in self.SETTINGS:
            cout = _make_divisible(c * width)
            blocks = []
            for i in range(n):
                blocks.append(InvertedResidual(cin, cout, s if i == 0 else 1, t))
                cin = cout
            groups.append(nn.Sequential(*blocks))
        self.groups = nn.ModuleList(groups)
        self.stage_channels = [_make_divisible(self.SETTINGS[i][1] * width) for i in self.STAGE_ENDS]
        self.head = _conv_bn(cin, _make_divisible(last_channels * max(1.0, width)), 1, 1)
        self.out_dim = _make_divisible(last_channels * max(1.0, width))
        self.pool = nn.AdaptiveAvgPool2d(1)
        for m in self.modules():
            if isinstance(m, nn.Conv2d):
                nn.init.kaiming_normal_(m.weight, mode="fan_out")

    def _run(self, x: torch.Tensor) -> tuple[list[torch.Tensor], torch.Tensor]:
        x = self.stem(x)
        feats = []
        for i, g in enumerate(self.groups):
            x = g(x)
            if i in self.STAGE_ENDS:
                feats.append(x)
        return feats, x

    def forward_features(self, x: torch.Tensor) -> list[torch.Tensor]:
        """Four stage maps (16/24/32/96 ch at width 1)."""
        return self._run(x)[0]

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        return self.pool(self.head(self._run(x)[1])).flatten(1)


def mobilenet_v2(in_channels=3, width: float = 1.0, small_input=False) -> MobileNetV2:
    return MobileNetV2(in_channels, width, small_input)
