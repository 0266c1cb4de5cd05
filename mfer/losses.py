"""Losses: label-smoothed CE per Msc head plus an optional feature loss with learnable centres.

Total loss = Σ_heads LSCE(logits_h, y) + λ · L_feature(f, y)   (MFER ``train.py``; spec §1.4-1.5)

Feature losses act on the pooled normalised feature f and own learnable class centres, which
the optimiser updates together with the model (as MFER's ``lossm.parameters()``):

- ``center``: ½‖f − c_y‖², averaged over the batch (Wen et al., ECCV 2016; FAER's L_CL).
- ``lgm``: large-margin Gaussian mixture loss (Wan et al., CVPR 2018) with identity covariance:
  d_k = ½‖f − μ_k‖², logits_k = −d_k·(1 + α·[k = y]), L = CE(logits) + λ_lkd·d_y.
- ``dsf``: **a stand-in, not MFER's DSF loss** — the paper's Deep Smooth Feature loss was never
  published (``model/smooth_feature.py``: "will release soon"). This stand-in (spec §1.4, a
  guess from the abstract's wording) is a label-smoothed distance-softmax plus a centre pull:
  p_ik = softmax_k(−½‖f_i − c_k‖²),
  L = mean_i[(1−ε)(−log p_i,y_i) + ε·mean_k(−log p_ik) + ½‖f_i − c_y_i‖²].
"""
from __future__ import annotations

from typing import Callable, Optional

import torch
import torch.nn.functional as F
from torch import nn

from mfer.config import LossConfig


def half_sq_distances(feature: torch.Tensor, centres: torch.Tensor) -> torch.Tensor:
    """(B, K) matrix of ½‖f_i − c_k‖²."""
    return 0.5 * (feature.unsqueeze(1) - centres.unsqueeze(0)).pow(2).sum(-1)


class _CentreLoss(nn.Module):
    """Base of feature losses with one learnable centre per class (xavier init, gain √2 as FAER)."""

    def __init__(self, num_classes: int, feat_dim: int) -> None:
        super().__init__()
        self.centres = nn.Parameter(torch.empty(num_classes, feat_dim))
        nn.init.xavier_uniform_(self.centres, gain=2**0.5)


class CenterLoss(_CentreLoss):
    def forward(self, feature: torch.Tensor, target: torch.Tensor) -> torch.Tensor:
        return 0.5 * (feature - self.centres[target]).pow(2).sum(-1).mean()


class LGMLoss(_CentreLoss):
    def __init__(self, num_classes: int, feat_dim: int, alpha: float, likelihood_weight: float) -> None:
        super().__init__(num_classes, feat_dim)
        self.alpha = alpha
        self.likelihood_weight = likelihood_weight

    def forward(self, feature: torch.Tensor, target: torch.Tensor) -> torch.Tensor:
        d = half_sq_distances(feature, self.centres)
        margin = 1.0 + self.alpha * F.one_hot(target, d.shape[1]).to(d.dtype)
        d_y = d.gather(1, target[:, None]).squeeze(1)
        return F.cross_entropy(-d * margin, target) + self.likelihood_weight * d_y.mean()


class DSFStandInLoss(_CentreLoss):
    """Stand-in for the unpublished DSF loss (see the module docstring). Not the original."""

    def __init__(self, num_classes: int, feat_dim: int, smoothing: float) -> None:
        super().__init__(num_classes, feat_dim)
        self.smoothing = smoothing

    def forward(self, feature: torch.Tensor, target: torch.Tensor) -> torch.Tensor:
        d = half_sq_distances(feature, self.centres)
        smoothed = F.cross_entropy(-d, target, label_smoothing=self.smoothing)
        return smoothed + d.gather(1, target[:, None]).mean()


# Registry of feature losses: name -> factory(cfg, num_classes, feat_dim), or None for "no feature loss".
FEATURE_LOSSES: dict[str, Optional[Callable[[LossConfig, int, int], nn.Module]]] = {
    "none": None,
    "center": lambda cfg, k, d: CenterLoss(k, d),
    "lgm": lambda cfg, k, d: LGMLoss(k, d, cfg.lgm_alpha, cfg.lgm_likelihood_weight),
    "dsf": lambda cfg, k, d: DSFStandInLoss(k, d, cfg.dsf_smoothing),
}


class MFERLoss(nn.Module):
    """Σ_heads label-smoothed CE + λ·feature loss. Owns the feature loss's centres."""

    def __init__(self, cfg: LossConfig, num_classes: int, feat_dim: int) -> None:
        super().__init__()
        self.label_smoothing = cfg.label_smoothing
        self.weight = cfg.weight
        factory = FEATURE_LOSSES[cfg.feature]
        self.feature_loss = factory(cfg, num_classes, feat_dim) if factory is not None else None

    def forward(self, head_logits: list[torch.Tensor], feature: torch.Tensor, target: torch.Tensor) -> torch.Tensor:
        loss = sum(F.cross_entropy(lg.float(), target, label_smoothing=self.label_smoothing) for lg in head_logits)
        if self.feature_loss is not None and self.weight > 0:
            loss = loss + self.weight * self.feature_loss(feature.float(), target)
        return loss
