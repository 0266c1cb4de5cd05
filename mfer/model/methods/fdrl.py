"""FDRL (Ruan et al., "Feature Decomposition and Reconstruction Learning for Effective Facial
Expression Recognition", CVPR 2021). No code was released: everything here is our reading of the
paper's description, symbols as in its Sec. 3.

- Feature decomposition network: the backbone's pooled feature ``x`` is decomposed into ``M``
  latent features ``l_j = ReLU(W_dj x)`` (one FC per latent feature).
- Compactness loss: ``L_C = 1/N Σ_i Σ_j ||l_ij - c_j||²`` with one learned centre per latent feature.
- Intra-feature relation modelling: ``α_ij = ||sigmoid(W_sj l_ij)||_1`` (normalised here by the
  latent width, so ``α`` lies in (0, 1): our reading), intra-aware feature ``f_ij = α_ij l_ij``.
- Distribution loss: ``L_D = 1/N Σ_i ||w_i - w_{y_i}||²``, ``w_i = [α_i1 … α_iM]``, with one
  learned centre of ``w`` per expression class (needs labels).
- Balance loss: ``L_B = ||w̄ - w_u||_1``, ``w̄`` the batch mean of ``w``; ``w_u`` (our reading):
  the uniform vector of the same total, so no latent feature dominates on average.
- Inter-feature relation modelling (our reading of its graph step): relation weights
  ``ω_i,jm = softmax_m(-||f_ij - f_im||² / d)`` (closer latent features relate more), inter-aware
  feature ``g_ij = Σ_m ω_i,jm f_im``.
- Reconstruction: ``δ_ij = μ f_ij + (1 - μ) g_ij``, expression feature ``y_i = Σ_j δ_ij``, then a
  linear expression prediction network.
"""
from __future__ import annotations

from typing import Optional

import torch
from torch import nn

from mfer.config import FDRLConfig
from mfer.model.methods.base import MethodHead, global_average
from mfer.model.output import ModelOutput


def compactness_loss(latent: torch.Tensor, centres: torch.Tensor) -> torch.Tensor:
    """(B, M, d) latent features vs (M, d) centres: mean over the batch of Σ_j ||l_ij - c_j||²."""
    return ((latent - centres[None]) ** 2).sum(dim=(1, 2)).mean()


def balance_loss(weights: torch.Tensor) -> torch.Tensor:
    """(B, M) intra-feature relation weights: L1 distance of their batch mean to the uniform vector."""
    mean = weights.mean(dim=0)
    return (mean - mean.mean()).abs().sum()


def distribution_loss(weights: torch.Tensor, class_centres: torch.Tensor, targets: torch.Tensor) -> torch.Tensor:
    """(B, M) weights vs the (K, M) centre of each sample's class: mean squared distance."""
    return ((weights - class_centres[targets]) ** 2).sum(dim=1).mean()


def reconstruct(intra: torch.Tensor, mu: float) -> torch.Tensor:
    """(B, M, d) intra-aware features -> (B, d) expression feature: μ f + (1 - μ) g, summed over j."""
    dist = ((intra[:, :, None] - intra[:, None]) ** 2).sum(-1)  # (B, M, M); cdist's grad is NaN at 0
    relation = torch.softmax(-dist / intra.size(-1), dim=-1)
    inter = relation @ intra
    return (mu * intra + (1 - mu) * inter).sum(dim=1)


class FDRL(MethodHead):
    config_key = "fdrl"

    def __init__(self, in_channels: int, num_classes: int, cfg: FDRLConfig) -> None:
        super().__init__()
        self.cfg = cfg
        m, d = cfg.num_latent, cfg.latent_dim
        self.num_features = d
        self.decompose = nn.Linear(in_channels, m * d)  # the M FCs W_dj side by side
        self.relation = nn.Parameter(torch.empty(m, d, d))  # W_sj
        nn.init.xavier_uniform_(self.relation)
        self.latent_centres = nn.Parameter(torch.zeros(m, d))
        self.class_centres = nn.Parameter(torch.full((num_classes, m), 0.5))
        self.fc = nn.Linear(d, num_classes)

    def latent(self, fmap: torch.Tensor) -> tuple[torch.Tensor, torch.Tensor]:
        """(B, M, d) latent features and their (B, M) intra-feature relation weights α."""
        cfg = self.cfg
        latent = torch.relu(self.decompose(global_average(fmap))).view(-1, cfg.num_latent, cfg.latent_dim)
        alpha = torch.sigmoid(torch.einsum("bmd,med->bme", latent, self.relation)).mean(dim=-1)
        return latent, alpha

    def pool(self, fmap: torch.Tensor) -> torch.Tensor:
        latent, alpha = self.latent(fmap)
        return reconstruct(alpha[..., None] * latent, self.cfg.mu)

    def classify(self, feature: torch.Tensor) -> list[torch.Tensor]:
        return [self.fc(feature)]

    def forward(self, fmap: torch.Tensor, targets: Optional[torch.Tensor] = None) -> ModelOutput:
        cfg = self.cfg
        latent, alpha = self.latent(fmap)
        feature = reconstruct(alpha[..., None] * latent, cfg.mu)
        compact = compactness_loss(latent.float(), self.latent_centres.float())
        aux = {"fdrl_compactness": cfg.compactness_weight * compact,
               "fdrl_balance": cfg.balance_weight * balance_loss(alpha.float())}
        if targets is not None:
            aux["fdrl_distribution"] = cfg.distribution_weight * distribution_loss(
                alpha.float(), self.class_centres.float(), targets)
        return ModelOutput(self.classify(feature), feature, aux_losses=aux)
