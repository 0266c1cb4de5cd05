"""The plain backbone: global average pool and one linear layer, the floor every method is
measured against (``model.method=baseline``)."""
from __future__ import annotations

import torch
from torch import nn

from mfer.model.methods.base import MethodHead, global_average


class Baseline(MethodHead):
    def __init__(self, in_channels: int, num_classes: int, cfg: None = None) -> None:
        super().__init__()
        self.num_features = in_channels
        self.fc = nn.Linear(in_channels, num_classes)

    def pool(self, fmap: torch.Tensor) -> torch.Tensor:
        return global_average(fmap)

    def classify(self, feature: torch.Tensor) -> list[torch.Tensor]:
        return [self.fc(feature)]
