"""The partial-label network (methods.md §2): a ViT encoder, the label-query decoder that is kept
at inference, and the masked-image-modelling parts used only to pre-train the encoder."""
from __future__ import annotations

import torch
from torch import nn

from fer_edge.models.vit import ViT


class LabelQueryDecoder(nn.Module):
    """K learnable label queries cross-attend to the encoder's tokens (a DETR-like Transformer
    decoder: self-attention among the queries, cross-attention to the tokens, MLP; pre-norm);
    one logit per query. Query k stands for class k.

    scorer="per_class" (default) reads query k's output with class k's own weights and bias
    (Query2Label's group-wise linear); "shared" uses one linear scorer for every query, so classes
    differ only through the decoder's outputs. With queries initialised at std 0.02 either scorer
    stayed at the class prior on FERPlus for 3 epochs (benchmarks/results/pll/README.md)."""

    def __init__(self, dim: int, num_classes: int, layers: int = 2, heads: int = 8, scorer: str = "per_class"):
        super().__init__()
        if dim % heads:
            raise ValueError(f"decoder heads: {heads} does not divide the encoder width {dim}")
        if scorer not in ("per_class", "shared"):
            raise ValueError(f"decoder scorer: expected per_class or shared, got {scorer!r}")
        # N(0, 1) as DETR's query embeddings: at 0.02 the queries are lost in the decoder's residual
        # stream, every query decodes the same vector, and fine-tuning stayed at the class prior
        self.queries = nn.Parameter(torch.randn(num_classes, dim))
        layer = nn.TransformerDecoderLayer(dim, heads, dim_feedforward=2 * dim, dropout=0.0, batch_first=True,
                                           norm_first=True)
        self.decoder = nn.TransformerDecoder(layer, layers, norm=nn.LayerNorm(dim, eps=1e-6))
        self.scorer = scorer
        if scorer == "shared":
            self.score = nn.Linear(dim, 1)
        else:
            bound = dim ** -0.5  # nn.Linear's default initialisation, per class
            self.class_weight = nn.Parameter(torch.empty(num_classes, dim).uniform_(-bound, bound))
            self.class_bias = nn.Parameter(torch.empty(num_classes).uniform_(-bound, bound))

    def forward(self, tokens: torch.Tensor) -> torch.Tensor:
        q = self.queries.unsqueeze(0).expand(tokens.shape[0], -1, -1)
        h = self.decoder(q, tokens)
        if self.scorer == "shared":
            return self.score(h).squeeze(-1)
        # each query's dot product with its own class's weights: every query against every class as one
        # plain MatMul ([B, K, D] x [D, K]), then the diagonal picked by a constant Gather. The same numbers
        # as (h * W).sum(-1), which OpenVINO 2026.4's CPU plugin computed wrongly (its Mul + ReduceSum + Add:
        # logits off by 4% of their range, half the labels changed; ONNX Runtime exact); a broadcast
        # [K, D, 1] MatMul instead got per-channel INT8 scales the plugin refused to load
        k = self.class_weight.shape[0]
        diagonal = torch.arange(k, device=h.device) * (k + 1)
        return (h @ self.class_weight.t()).flatten(-2)[..., diagonal] + self.class_bias


class PLLClassifier(nn.Module):
    """Encoder + label-query decoder (or, with decoder off, a linear head on the class token):
    the exported model, logits [B, C]."""

    def __init__(self, encoder: ViT, num_classes: int, decoder: bool = True, layers: int = 2, heads: int = 8,
                 scorer: str = "per_class"):
        super().__init__()
        self.encoder = encoder
        self.decoder = LabelQueryDecoder(encoder.out_dim, num_classes, layers, heads, scorer) if decoder else None
        self.head = None if decoder else nn.Linear(encoder.out_dim, num_classes)

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        tokens = self.encoder.forward_features(x)[-1]
        if self.decoder is not None:
            return self.decoder(tokens)
        return self.head(tokens[:, 0])


class PLLModel(nn.Module):
    """The classifier (`net`) plus what masked image modelling needs: a learnable mask token and
    a light (linear, as MaskFeat) decoder from each patch token to its target (HOG or pixels)."""

    def __init__(self, net: PLLClassifier, target_dim: int):
        super().__init__()
        self.net = net
        dim = net.encoder.out_dim
        self.mask_token = nn.Parameter(torch.randn(dim) * 0.02)
        self.mim_decoder = nn.Linear(dim, target_dim)

    def forward(self, x: torch.Tensor, mask: torch.Tensor | None = None) -> torch.Tensor:
        """mask None: class logits [B, C]; mask [B, L] bool: the predicted target of every patch
        [B, L, target_dim] (the loss reads the masked ones)."""
        if mask is None:
            return self.net(x)
        tokens = self.net.encoder.forward_features(x, mask, self.mask_token)[-1][:, 1:]
        return self.mim_decoder(tokens)
