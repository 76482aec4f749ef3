"""Optimiser groups for fine-tuning a pre-trained ViT (MAE / BEiT practice), shared by the methods
that start from one of our label-free encoders (PLL, LEAF).

- No weight decay on LayerNorms, biases, the class token and the position embedding (and on any
  extra names a method adds, e.g. PLL's label queries): decay would pull them towards zero,
  which is not a prior they should have.
- Layer-wise lr decay: the encoder's i-th layer (0: patch embedding, class token, positions;
  1..depth: its blocks) learns at layer_decay^(depth + 1 - i) x the stage's lr; everything else
  (the final norm, the method's heads) at 1x. A pre-trained encoder's early layers then move less
  than the new heads, which is what keeps a small labelled set from wiping out what it learned.
"""
from __future__ import annotations

from torch import nn


def vit_finetune_groups(net: nn.Module, encoder: str, depth: int, layer_decay: float,
                        no_decay: tuple[str, ...] = ()) -> list[dict]:
    """Groups over `net`'s trainable parameters; `encoder` is the attribute name of its ViT (the
    parameters named '<encoder>.embed...', '<encoder>.blocks.<i>...'). Sorted by layer, decayed
    groups after their no-decay twin; each has "params", "lr_mult" and "name"."""
    if not 0 < layer_decay <= 1:
        raise ValueError(f"layer_decay must be in (0, 1], got {layer_decay}")
    top = depth + 1
    skip = {f"{encoder}.cls", f"{encoder}.pos", *no_decay}

    def layer(name: str) -> int:
        parts = name.split(".")
        if parts[0] != encoder or parts[1] == "norm":
            return top  # heads and the encoder's final norm
        return int(parts[2]) + 1 if parts[1] == "blocks" else 0  # blocks.i / embed, cls, pos

    groups: dict[tuple, dict] = {}
    for name, p in net.named_parameters():
        if not p.requires_grad:
            continue
        decay = p.ndim > 1 and name not in skip
        i = layer(name)
        g = groups.setdefault((i, decay), {"params": [], "lr_mult": layer_decay ** (top - i),
                                           "name": f"layer{i}" + ("" if decay else "_no_decay")})
        if not decay:
            g["weight_decay"] = 0.0
        g["params"].append(p)
    return [groups[k] for k in sorted(groups)]
