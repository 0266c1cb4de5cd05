"""What every method plug-in is: a head on the backbone's final feature map ``(B, C, H, W)``.

The assembled model (``mfer.model.mfer``) hands a plug-in the last map and nothing else, so one
plug-in runs on any backbone that gives such a map (ConvNeXt, ResNet, a ViT's tokens laid out as
a map). Evaluation pools once and classifies the pooled feature (``mfer.train.evaluate``), so a
plug-in splits its forward into ``pool`` (map -> the feature t-SNE and the feature losses see)
and ``classify`` (feature -> one logits tensor per head); ``forward`` adds the plug-in's own
losses, which the training step sums with the criterion (``mfer.model.output``).
"""
from __future__ import annotations

from typing import ClassVar, Optional

import torch
from torch import nn

from mfer.model.output import ModelOutput


def global_average(fmap: torch.Tensor) -> torch.Tensor:
    """(B, C, H, W) -> (B, C): the global average pool every plug-in's source starts from."""
    return fmap.mean(dim=(2, 3))


class MethodHead(nn.Module):
    """Base of the plug-ins. ``config_key`` names the plug-in's section of ``ModelConfig``
    (``model.dan`` …), None for one without settings."""

    config_key: ClassVar[Optional[str]] = None
    num_features: int  # width of the pooled feature

    def pool(self, fmap: torch.Tensor) -> torch.Tensor:
        raise NotImplementedError

    def classify(self, feature: torch.Tensor) -> list[torch.Tensor]:
        raise NotImplementedError

    def forward(self, fmap: torch.Tensor, targets: Optional[torch.Tensor] = None) -> ModelOutput:
        """Logits per head, the pooled feature and the plug-in's losses; a plug-in whose losses
        need labels computes them only when ``targets`` is given (training)."""
        feature = self.pool(fmap)
        return ModelOutput(self.classify(feature), feature)
