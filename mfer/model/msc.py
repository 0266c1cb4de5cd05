"""Msc: the multiscale classifier of MFER (XuJ1E/MFER ``model/multiscale.py``; spec §1.3).

Each head reads a *nested channel prefix* of the normalised pooled feature — on ConvNeXt-B
``f[:, :512]``, ``f[:, :768]``, ``f[:, :1024]`` — through Linear(d→d) → GELU → Linear(d→classes).
Training sums the heads' losses; prediction is the argmax of the heads' summed logits.
Prefixes are given as fractions of the feature width so one config serves every ConvNeXt size.
"""
from __future__ import annotations

import torch
from torch import nn


def prefix_widths(width: int, fractions: list[float]) -> list[int]:
    """Channel counts of the nested prefixes, e.g. 1024 × [0.5, 0.75, 1.0] -> [512, 768, 1024]."""
    widths = [max(1, round(width * f)) for f in fractions]
    if len(set(widths)) != len(widths):
        raise ValueError(f"msc fractions {fractions} collapse to repeated widths {widths} at width {width}")
    return widths


class PrefixHead(nn.Module):
    """One Msc head: Linear(d→d) → GELU → Linear(d→classes) on the first d channels."""

    def __init__(self, width: int, num_classes: int) -> None:
        super().__init__()
        self.width = width
        self.fc1 = nn.Linear(width, width)
        self.act = nn.GELU()
        self.fc2 = nn.Linear(width, num_classes)

    def forward(self, feature: torch.Tensor) -> torch.Tensor:
        return self.fc2(self.act(self.fc1(feature[:, : self.width])))


class MultiscaleClassifier(nn.Module):
    """Nested-prefix heads; ``forward`` returns one logits tensor per head."""

    def __init__(self, width: int, num_classes: int, fractions: list[float]) -> None:
        super().__init__()
        self.heads = nn.ModuleList(PrefixHead(w, num_classes) for w in prefix_widths(width, fractions))

    def forward(self, feature: torch.Tensor) -> list[torch.Tensor]:
        return [head(feature) for head in self.heads]


class LinearClassifier(nn.Module):
    """The ``msc: off`` baseline: a single plain linear head on the whole feature."""

    def __init__(self, width: int, num_classes: int) -> None:
        super().__init__()
        self.fc = nn.Linear(width, num_classes)

    def forward(self, feature: torch.Tensor) -> list[torch.Tensor]:
        return [self.fc(feature)]


def build_classifier(width: int, num_classes: int, fractions: list[float]) -> nn.Module:
    return MultiscaleClassifier(width, num_classes, fractions) if fractions else LinearClassifier(width, num_classes)
