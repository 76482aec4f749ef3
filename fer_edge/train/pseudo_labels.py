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


# -- safety on small targets (issue 20) -------------------------------------------------------------
# On a target of ~10 people the dynamic thresholds stay near their floor tau/4 (the learning status
# beta is ~0.1-0.15 because most faces are below tau), so ~97% of the target is pseudo-labelled
# from the first epoch and the model trains on its own confusions. Two label-free counters:
# a floor under the thresholds, and distribution alignment to the target's class prior as the
# stage-1 model estimates it (its mean prediction on the target), so that no class can swallow
# the pool as adaptation drifts. (An EM re-estimate of the prior, Saerens et al. 2002, was
# tried first: with the near-uniform posteriors of an untrained model it converges to the
# rarest source class, one-hot, so it is not used.)

def align_distribution(probs: torch.Tensor, target_prior: torch.Tensor, current_mean: torch.Tensor) -> torch.Tensor:
    """Distribution alignment (ReMixMatch): probs [B, C] scaled by target_prior / current_mean
    (the model's present mean prediction over the target) and renormalised; a class the model
    now over-predicts relative to the prior loses confidence, one it neglects gains."""
    scaled = probs * (target_prior / current_mean.clamp_min(1e-6)).to(probs)
    return scaled / scaled.sum(1, keepdim=True).clamp_min(1e-12)
