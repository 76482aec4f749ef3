"""Vision Transformer (tiny/small/base, patch 16 or 8), written here; tokens for the methods."""
from __future__ import annotations

import torch
from torch import nn

SIZES = {"tiny": (192, 12, 3), "small": (384, 12, 6), "base": (768, 12, 12)}  # dim, depth, heads


class Block(nn.Module):
    def __init__(self, dim, heads, mlp_ratio=4.0, drop_path=0.0):
        super().__init__()
        self.norm1 = nn.LayerNorm(dim, eps=1e-6)
        self.attn = nn.MultiheadAttention(dim, heads, batch_first=True)
        self.norm2 = nn.LayerNorm(dim, eps=1e-6)
        self.mlp = nn.Sequential(nn.Linear(dim, int(dim * mlp_ratio)), nn.GELU(), nn.Linear(int(dim * mlp_ratio), dim))
        self.drop_path = drop_path

    def _dp(self, x):
        if not self.training or self.drop_path == 0.0:
            return x
        keep = torch.rand(x.shape[0], 1, 1, device=x.device) >= self.drop_path
        return x * keep / (1 - self.drop_path)

    def forward(self, x):
        h = self.norm1(x)
        x = x + self._dp(self.attn(h, h, h, need_weights=False)[0])
        return x + self._dp(self.mlp(self.norm2(x)))


class ViT(nn.Module):
    """Patch embedding + class token + learned positions + pre-norm blocks.
    `forward_features` returns every block's tokens [B, 1 + L, dim] (the last one normalised)."""

    def __init__(self, size: str = "tiny", patch: int = 16, image_size: int = 112, in_channels: int = 3,
                 drop_path: float = 0.1, depth: int = 0):
        super().__init__()
        if size not in SIZES:
            raise ValueError(f"size: expected one of {tuple(SIZES)}, got {size!r}")
        if image_size % patch:
            raise ValueError(f"image_size {image_size} must be a multiple of patch {patch}")
        dim, full_depth, heads = SIZES[size]
        depth = depth or full_depth  # fewer blocks: what a 2-core training budget affords
        self.size, self.depth, self.image_size, self.in_channels = size, depth, image_size, in_channels
        self.patch, self.out_dim = patch, dim
        self.embed = nn.Conv2d(in_channels, dim, patch, patch)
        self.num_patches = (image_size // patch) ** 2
        self.cls = nn.Parameter(torch.zeros(1, 1, dim))
        self.pos = nn.Parameter(torch.randn(1, 1 + self.num_patches, dim) * 0.02)
        self.blocks = nn.ModuleList(Block(dim, heads, drop_path=drop_path * i / max(depth - 1, 1)) for i in range(depth))
        self.norm = nn.LayerNorm(dim, eps=1e-6)

    def tokens(self, x: torch.Tensor, mask: torch.Tensor | None = None,
               mask_token: torch.Tensor | None = None) -> torch.Tensor:
        """Patch tokens with class token and positions, before the blocks: [B, 1 + L, dim].
        mask [B, L] bool (masked image modelling): those patches' embeddings are replaced by
        `mask_token` [dim] before the positions are added (MaskFeat)."""
        t = self.embed(x).flatten(2).transpose(1, 2)
        if t.shape[1] != self.num_patches:
            raise ValueError(f"input gives {t.shape[1]} patches, the model was built for {self.num_patches}")
        if mask is not None:
            t = torch.where(mask.unsqueeze(-1), mask_token.to(t.dtype).expand_as(t), t)
        return torch.cat([self.cls.expand(t.shape[0], -1, -1), t], 1) + self.pos

    def forward_features(self, x: torch.Tensor, mask: torch.Tensor | None = None,
                         mask_token: torch.Tensor | None = None) -> list[torch.Tensor]:
        t = self.tokens(x, mask, mask_token)
        feats = []
        for blk in self.blocks:
            t = blk(t)
            feats.append(t)
        feats[-1] = self.norm(feats[-1])
        return feats

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        return self.forward_features(x)[-1][:, 0]
