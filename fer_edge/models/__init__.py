"""Backbones (no torchvision, no timm) and the plain classifier.

`build_backbone(name, in_channels, image_size, **kw)` knows: resnet18, resnet50, ir50,
mobilenet_v2, vit_tiny, vit_small, vit_base (patch 16; add `patch=8`). Each backbone has
`forward(x) -> [B, out_dim]`, `forward_features(x)` (stage maps, or every block's tokens for ViT)
and `out_dim`. Weights load only from a local file the user gives (`load_weights`).
"""
from __future__ import annotations

from pathlib import Path

import torch
from torch import nn

from fer_edge.models.mobilenet import mobilenet_v2
from fer_edge.models.resnet import ir50, resnet18, resnet50
from fer_edge.models.vit import ViT

BACKBONES = ("resnet18", "resnet50", "ir50", "mobilenet_v2", "vit_tiny", "vit_small", "vit_base")


def build_backbone(name: str, in_channels: int = 3, image_size: int = 112, width: float = 1.0,
                   stem: str | None = None, **kwargs) -> nn.Module:
    """`stem` (ResNets): "imagenet" (/4), "s2" (/2) or "s1" (full resolution); default "s1" up to
    64 px and "imagenet" above. MobileNet-v2 keeps full resolution in its stem up to 64 px."""
    if name not in BACKBONES:
        raise ValueError(f"backbone: expected one of {BACKBONES}, got {name!r}")
    small = image_size <= 64
    stem = stem or ("s1" if small else "imagenet")
    if name == "resnet18":
        return resnet18(in_channels, width, stem)
    if name == "resnet50":
        return resnet50(in_channels, width, stem)
    if name == "ir50":
        return ir50(in_channels, width)
    if name == "mobilenet_v2":
        return mobilenet_v2(in_channels, width, small)
    return ViT(name.split("_")[1], kwargs.get("patch", 16), image_size, in_channels, kwargs.get("drop_path", 0.1),
               kwargs.get("depth", 0))


def load_weights(module: nn.Module, path: str | Path, strict: bool = False, prefix: str = "",
                 require: float = 0.0) -> dict:
    """Loads a local state dict (safetensors or a torch file read with weights_only=True).
    Returns {'missing': [...], 'unexpected': [...], 'loaded': n, 'total': n}; nothing is ever
    downloaded. `require`: the fraction of the module's tensors that must load (a wrong file
    would otherwise leave the model at its random initialisation without a word)."""
    path = Path(path)
    if not path.is_file():
        raise FileNotFoundError(f"weights file {path} does not exist")
    try:
        if path.suffix == ".safetensors":
            from safetensors.torch import load_file

            state = load_file(str(path))
        else:
            state = torch.load(path, map_location="cpu", weights_only=True)
    except Exception as exc:  # corrupt file, pickle with code, wrong format
        raise ValueError(f"{path}: not a readable weights file ({type(exc).__name__}: {exc})") from exc
    if isinstance(state, dict) and "model" in state and isinstance(state["model"], dict):
        state = state["model"]
    if prefix:
        state = {k[len(prefix):]: v for k, v in state.items() if k.startswith(prefix)}
    if not isinstance(state, dict):
        raise ValueError(f"{path}: expected a state dict, got {type(state).__name__}")
    own = module.state_dict()
    wrong = [k for k, v in state.items() if k in own and hasattr(v, "shape") and tuple(v.shape) != tuple(own[k].shape)]
    if wrong:
        raise ValueError(f"{path}: {len(wrong)} tensors do not fit the model's shapes (first: {wrong[0]} "
                         f"{tuple(state[wrong[0]].shape)} vs {tuple(own[wrong[0]].shape)})")
    result = module.load_state_dict(state, strict=strict)
    loaded = len(own) - len(result.missing_keys)
    if loaded < require * len(own):
        raise ValueError(f"{path}: only {loaded} of the model's {len(own)} tensors are in this file "
                         f"({len(result.unexpected_keys)} of its keys are unknown to the model): the wrong weights file?")
    return {"missing": list(result.missing_keys), "unexpected": list(result.unexpected_keys), "loaded": loaded,
            "total": len(own)}


class Classifier(nn.Module):
    """Backbone + dropout + linear head: the supervised baseline's model."""

    def __init__(self, backbone: nn.Module, num_classes: int, dropout: float = 0.0):
        super().__init__()
        self.backbone = backbone
        self.dropout = nn.Dropout(dropout)
        self.head = nn.Linear(backbone.out_dim, num_classes)

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        return self.head(self.dropout(self.backbone(x)))


__all__ = ["BACKBONES", "build_backbone", "load_weights", "Classifier"]
