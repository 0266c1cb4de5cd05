"""Losses: label-smoothed CE per Msc head plus an optional feature loss with learnable centres.

Total loss = Σ_heads LSCE(logits_h, y) + λ · L_feature(f, y)   (MFER ``train.py``; spec §1.4-1.5)

Labels made from votes (FERPlus, ``data.ferplus_labels``) change the per-head term as FERPlus's
four training modes do (Barsoum et al., ICMI 2016; microsoft/FERPlus ``src/train.py``
``cost_func``): ``majority`` is the CE above; ``crossentropy`` is CE against the vote
distribution; ``probability`` draws one label per image and step from it (the feature loss sees
the drawn label too); ``multi_target`` is −log max_k t_k·p_k with t = (1−ε)·[k voted] + ε, ε = 0.001,
so any voted class counts as right. The feature loss always takes the top class (or the drawn one).

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


def _hard_ce(logits: torch.Tensor, target: torch.Tensor, soft: Optional[torch.Tensor], smoothing: float):
    return F.cross_entropy(logits, target, label_smoothing=smoothing)


def _soft_ce(logits: torch.Tensor, target: torch.Tensor, soft: torch.Tensor, smoothing: float):
    return F.cross_entropy(logits, soft, label_smoothing=smoothing)


def _best_voted(logits: torch.Tensor, target: torch.Tensor, soft: torch.Tensor, smoothing: float):
    eps = 1e-3  # FERPlus's epsilon "to avoid ill-conditioned computation"
    log_t = torch.log((1 - eps) * (soft > 0).to(logits.dtype) + eps)
    return -(log_t + F.log_softmax(logits, dim=1)).amax(dim=1).mean()  # log-space max_k t_k·p_k


# Per-head classification loss per label rule (data.ferplus_labels): fn(logits, label, soft target, smoothing).
HEAD_LOSSES = {"majority": _hard_ce, "crossentropy": _soft_ce, "probability": _hard_ce, "multi_target": _best_voted}

# Registry of feature losses: name -> factory(cfg, num_classes, feat_dim), or None for "no feature loss".
FEATURE_LOSSES: dict[str, Optional[Callable[[LossConfig, int, int], nn.Module]]] = {
    "none": None,
    "center": lambda cfg, k, d: CenterLoss(k, d),
    "lgm": lambda cfg, k, d: LGMLoss(k, d, cfg.lgm_alpha, cfg.lgm_likelihood_weight),
    "dsf": lambda cfg, k, d: DSFStandInLoss(k, d, cfg.dsf_smoothing),
}


class MFERLoss(nn.Module):
    """Σ_heads label-smoothed CE (or a vote rule's loss) + λ·feature loss. Owns the feature loss's centres."""

    def __init__(self, cfg: LossConfig, num_classes: int, feat_dim: int, label_rule: str = "majority") -> None:
        super().__init__()
        self.label_rule = label_rule
        self.head_loss = HEAD_LOSSES[label_rule]
        self.label_smoothing = cfg.label_smoothing
        self.weight = cfg.weight
        factory = FEATURE_LOSSES[cfg.feature]
        self.feature_loss = factory(cfg, num_classes, feat_dim) if factory is not None else None

    def forward(self, head_logits: list[torch.Tensor], feature: torch.Tensor, target: torch.Tensor,
                soft: Optional[torch.Tensor] = None) -> torch.Tensor:
        if self.label_rule != "majority" and soft is None:
            raise ValueError(f"label rule {self.label_rule!r} needs soft targets, and the batch has none")
        if self.label_rule == "probability":  # one label drawn per image and step (torch's seeded RNG)
            target = torch.multinomial(soft, 1).squeeze(1)
        loss = sum(self.head_loss(lg.float(), target, soft, self.label_smoothing) for lg in head_logits)
        if self.feature_loss is not None and self.weight > 0:
            loss = loss + self.weight * self.feature_loss(feature.float(), target)
        return loss
