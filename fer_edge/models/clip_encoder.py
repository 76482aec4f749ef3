"""CLIP image encoders as CAFE's frozen F (methods.md §5), built by `open_clip` from a weights file
the user already has. Nothing is ever downloaded: the file must exist, and open_clip is asked for
the architecture alone.

open_clip is an optional extra (`pip install "fer_edge[clip]"`). It imports torchvision, which
PyPI builds for torch's CUDA wheels only: on a CPU-only x86 machine it needs torch 2.14.1 with
torchvision 0.29.1 (README "CAFE"), not the project's CPU torch 2.13.

The faces reach the encoder as the mask generator sees them (the training data's normalisation,
gray or RGB, e.g. 48 px); `ClipImageFeatures` undoes that normalisation, repeats a gray channel,
resizes to the encoder's own input size, applies CLIP's mean and std and returns the L2-normalised
image embedding. All of it is inside the module, so the exported graph still takes the aligned face
once and runs both branches at their own input sizes.
"""
from __future__ import annotations

import os
from pathlib import Path

import torch
import torch.nn.functional as F
from torch import nn

from fer_edge.models.cafe import Frozen


def _open_clip():
    try:
        import open_clip
    except Exception as exc:  # ImportError, or torchvision's operator error beside a mismatched torch
        raise ImportError(
            f"cafe.encoder=clip needs open_clip ({type(exc).__name__}: {exc}). Install the extra with "
            "`pip install \"fer_edge[clip]\"`; open_clip imports torchvision, whose PyPI wheels run with "
            "torch's CUDA builds only (on a CPU-only x86 machine: torch==2.14.1 torchvision==0.29.1)") from exc
    return open_clip


def parse_clip_spec(arg: str) -> tuple[str, Path]:
    """"<open_clip model name>:<weights file>" (the part after "clip:") -> (name, path)."""
    name, sep, path = arg.partition(":")
    if not name or not sep or not path:
        raise ValueError(f"cafe.encoder=clip:<model>:<weights file>, e.g. clip:ViT-B-32:/models/clip-vit-b-32.bin; "
                         f"got clip:{arg}")
    return name, Path(path).expanduser()


class ClipImageFeatures(Frozen):
    """F(x) = normalise(CLIP.visual(prepare(x))): [B, C, H, W] faces in the training normalisation
    -> [B, embed_dim], unit length. Frozen (no gradient, eval mode)."""

    def __init__(self, visual: nn.Module, image_size: tuple[int, int], clip_mean, clip_std, data_mean, data_std):
        super().__init__(visual)
        self.image_size = tuple(int(s) for s in image_size)
        self.register_buffer("clip_mean", torch.tensor(clip_mean, dtype=torch.float32).view(1, -1, 1, 1))
        self.register_buffer("clip_std", torch.tensor(clip_std, dtype=torch.float32).view(1, -1, 1, 1))
        self.register_buffer("data_mean", torch.tensor(data_mean, dtype=torch.float32).view(1, -1, 1, 1))
        self.register_buffer("data_std", torch.tensor(data_std, dtype=torch.float32).view(1, -1, 1, 1))
        self._out_dim = int(getattr(visual, "output_dim", 0) or 0)
        if not self._out_dim:  # towers that do not say their width (e.g. timm-based ones): ask one face
            with torch.no_grad():
                self._out_dim = int(visual(torch.zeros(1, 3, *self.image_size)).shape[-1])

    @property
    def out_dim(self) -> int:
        return self._out_dim

    def prepare(self, x: torch.Tensor) -> torch.Tensor:
        """Training-normalised faces -> CLIP's input: [0, 1] pixels, 3 channels, its size, its normalisation."""
        x = (x * self.data_std + self.data_mean).clamp(0, 1)
        if x.shape[1] == 1:
            x = x.expand(-1, 3, -1, -1)
        if tuple(x.shape[-2:]) != self.image_size:
            # bicubic as CLIP's own preprocessing; then the clamp keeps its overshoot in range
            x = F.interpolate(x, size=self.image_size, mode="bicubic", align_corners=False).clamp(0, 1)
        return (x - self.clip_mean) / self.clip_std

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        with torch.no_grad():
            return F.normalize(self.module(self.prepare(x)).float(), dim=-1)


def load_clip_encoder(arg: str, data_mean, data_std) -> ClipImageFeatures:
    """`arg` = "<model>:<weights file>" -> the frozen image encoder. The file is loaded by open_clip
    into the named architecture (its text tower is built, loaded and then dropped)."""
    name, path = parse_clip_spec(arg)
    if not path.is_file():
        raise FileNotFoundError(f"cafe.encoder=clip:{arg}: no weights file at {path} (CLIP weights are never "
                                "downloaded: give the path of a local open_clip / OpenAI checkpoint)")
    open_clip = _open_clip()
    if name not in open_clip.list_models():
        raise ValueError(f"cafe.encoder=clip:{arg}: open_clip has no model {name!r} "
                         f"(open_clip.list_models(): {', '.join(open_clip.list_models()[:8])}, ...)")
    os.environ.setdefault("HF_HUB_OFFLINE", "1")  # belt and braces: a local file needs no hub
    try:
        model = open_clip.create_model(name, pretrained=str(path), device="cpu")
    except Exception as exc:
        raise ValueError(f"cafe.encoder=clip:{arg}: open_clip could not load {path} into {name} "
                         f"({type(exc).__name__}: {exc})") from exc
    visual = model.visual
    # open_clip >= 2.23 keeps the model's preprocessing in visual.preprocess_cfg; older ones in
    # image_mean / image_std; the OpenAI statistics are every CLIP's default
    pp = getattr(visual, "preprocess_cfg", None) or {}
    size = pp.get("size") or getattr(visual, "image_size", None) or open_clip.get_model_config(name)["vision_cfg"]["image_size"]
    size = (size, size) if isinstance(size, int) else tuple(size)
    mean = pp.get("mean") or getattr(visual, "image_mean", None) or open_clip.OPENAI_DATASET_MEAN
    std = pp.get("std") or getattr(visual, "image_std", None) or open_clip.OPENAI_DATASET_STD
    return ClipImageFeatures(visual, size, mean, std, data_mean, data_std)
