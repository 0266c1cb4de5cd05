"""ViT+SE: a squeeze-excitation gate on the last feature map, then a linear classifier.

Source: Aouayeb et al., "Learning Vision Transformer with Squeeze and Excitation for Facial
Expression Recognition", arXiv 2107.03107 (no code released): an SE block between a ViT's
encoder and its classifier. The gate is Hu et al.'s SE (CVPR 2018):
``s = sigmoid(W2 ReLU(W1 GAP(x)))``, ``x' = s ⊙ x`` (formula as published). Where it sits is our
reading: on the final map of any backbone (a ViT's tokens laid out as a map), pooled afterwards,
so ``GAP(s ⊙ x) = s ⊙ GAP(x)``.
"""
from __future__ import annotations

import torch
from torch import nn

from mfer.config import SEConfig
from mfer.model.methods.base import MethodHead, global_average


class SqueezeExcitation(MethodHead):
    config_key = "se"

    def __init__(self, in_channels: int, num_classes: int, cfg: SEConfig) -> None:
        super().__init__()
        self.num_features = in_channels
        hidden = max(1, in_channels // cfg.reduction)
        self.squeeze = nn.Linear(in_channels, hidden)  # W1 (SE's 1x1 conv on the pooled vector)
        self.excite = nn.Linear(hidden, in_channels)  # W2
        self.fc = nn.Linear(in_channels, num_classes)

    def gate(self, pooled: torch.Tensor) -> torch.Tensor:
        """(B, C) channel weights in (0, 1): SE's excitation of the squeezed (pooled) map."""
        return torch.sigmoid(self.excite(torch.relu(self.squeeze(pooled))))

    def pool(self, fmap: torch.Tensor) -> torch.Tensor:
        pooled = global_average(fmap)
        return pooled * self.gate(pooled)

    def classify(self, feature: torch.Tensor) -> list[torch.Tensor]:
        return [self.fc(feature)]
