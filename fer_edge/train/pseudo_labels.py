"""AGLRLS dynamic-threshold pseudo labels (FlexMatch-style, per classifier; methods.md §1)."""
from __future__ import annotations

import torch
import torch.nn.functional as F

from fer_edge.decisions import confidence_thresholds


class DynamicThresholds:
    """Learning status per classifier k and class c, counted over the target samples of the
    current epoch (reset each epoch):
        sigma_k(c) = #samples whose weak-view prediction is c with confidence >= tau
        beta_k(c)  = sigma_k(c) / max(max_c sigma_k(c), N_unselected_k)
        threshold_k(c) = tau * ((beta_k(c) + 1) / 2) ** 2
    where N_unselected_k counts the samples below tau."""

    def __init__(self, num_classifiers: int, num_classes: int, tau: float = 0.95):
        self.k, self.c, self.tau = num_classifiers, num_classes, tau
        self.reset()

    def reset(self) -> None:
        self.sigma = torch.zeros(self.k, self.c, dtype=torch.float64)
        self.unselected = torch.zeros(self.k, dtype=torch.float64)

    def update(self, probs: list[torch.Tensor]) -> None:
        """probs: per classifier [B, C] softmax of the weak view (no gradient needed)."""
        for k, p in enumerate(probs):
            conf, c = p.detach().max(1)
            sel = conf >= self.tau
            self.sigma[k] += torch.bincount(c[sel].cpu(), minlength=self.c).double()
            self.unselected[k] += (~sel).sum().item()

    @property
    def beta(self) -> torch.Tensor:
        denom = torch.maximum(self.sigma.max(1).values, self.unselected).clamp_min(1.0)
        return self.sigma / denom[:, None]

    def thresholds(self) -> torch.Tensor:
        # one formula for training and deployment: the runtime's GLPC uses the same function
        return torch.from_numpy(confidence_thresholds(self.beta.numpy(), self.tau))


def pseudo_label_loss(weak_probs: torch.Tensor, strong_logits: torch.Tensor, thresholds: torch.Tensor) -> tuple[torch.Tensor, torch.Tensor]:
    """FixMatch-style loss of one classifier: the weak view's arg-max is the pseudo label where
    its confidence reaches that class's threshold; CE of the strong view against it, averaged
    over the whole batch (unconfident samples count as zero). Returns (loss, mask)."""
    conf, c = weak_probs.detach().max(1)
    mask = (conf >= thresholds.to(conf.device, conf.dtype)[c]).float()
    return (F.cross_entropy(strong_logits, c, reduction="none") * mask).mean(), mask
