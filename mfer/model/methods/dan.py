"""DAN (Wen et al., "Distract Your Attention: Multi-head Cross Attention Network for Facial
Expression Recognition", Biomimetics 2023), read from its released code, github yaoing/DAN
(networks/dan.py, rafdb.py).

The feature clustering network is the backbone; on its final map each of ``num_heads``
cross-attention heads applies spatial attention (1x1 reduce, then 3x3 + 1x3 + 3x1 convs, summed
over channels into one map that scales the input) and channel attention (GAP, a bottleneck MLP,
a sigmoid gate); the attention fusion takes a log-softmax across heads and sums them, then a
linear layer and BatchNorm1d give the logits. Losses, both read from code:
- affinity: ``Σ_i ||GAP(x_i) - c_{y_i}||² / (B · Σ_d Var_k(c_{k,d}))`` with learned centres ``c``
  (randn init), pulling features to their class centre while spreading the centres;
- partition: ``log(1 + K / (mean Var_heads + eps))``, pushing the heads to attend differently.
Widths follow the input (DAN: 512 channels, reduce to 256, MLP 512 -> 32 -> 512), i.e. C/2 and
C/16. Deviations: DAN's affinity loss keeps 8 centres even on 7-class RAF-DB; ours keeps one per
class.
"""
from __future__ import annotations

import sys
from typing import Optional

import torch
import torch.nn.functional as F
from torch import nn

from mfer.config import DANConfig
from mfer.model.methods.base import MethodHead, global_average
from mfer.model.output import ModelOutput

EPS = sys.float_info.epsilon  # DAN rafdb.py: eps = sys.float_info.epsilon


def _conv_bn(cin: int, cout: int, kernel: tuple[int, int]) -> nn.Sequential:
    pad = (kernel[0] // 2, kernel[1] // 2)
    return nn.Sequential(nn.Conv2d(cin, cout, kernel, padding=pad), nn.BatchNorm2d(cout))


class CrossAttentionHead(nn.Module):
    """One DAN head: spatial attention, then channel attention on its pooled output -> (B, C)."""

    def __init__(self, channels: int) -> None:
        super().__init__()
        mid = max(1, channels // 2)
        self.reduce = _conv_bn(channels, mid, (1, 1))
        self.convs = nn.ModuleList([_conv_bn(mid, channels, k) for k in ((3, 3), (1, 3), (3, 1))])
        hidden = max(1, channels // 16)
        self.channel_mlp = nn.Sequential(nn.Linear(channels, hidden), nn.BatchNorm1d(hidden), nn.ReLU(inplace=True),
                                         nn.Linear(hidden, channels), nn.Sigmoid())
        for m in self.modules():  # DAN's CrossAttentionHead.init_weights
            if isinstance(m, nn.Conv2d):
                nn.init.kaiming_normal_(m.weight, mode="fan_out")
                nn.init.zeros_(m.bias)
            elif isinstance(m, nn.Linear):
                nn.init.normal_(m.weight, std=0.001)
                nn.init.zeros_(m.bias)

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        y = self.reduce(x)
        y = torch.relu(sum(conv(y) for conv in self.convs)).sum(dim=1, keepdim=True)
        pooled = global_average(x * y)
        return pooled * self.channel_mlp(pooled)


def partition_loss(heads: torch.Tensor) -> torch.Tensor:
    """DAN's partition loss on the (B, K, C) fused heads: large when heads agree."""
    k = heads.size(1)
    if k == 1:
        return heads.new_zeros(())
    return torch.log(1 + k / (heads.var(dim=1).mean() + EPS))


def affinity_loss(feature: torch.Tensor, centres: torch.Tensor, targets: torch.Tensor) -> torch.Tensor:
    """DAN's affinity loss of (B, C) pooled backbone features to their class centres (K, C)."""
    dist = ((feature[:, None, :] - centres[None]) ** 2).sum(-1)  # (B, K) squared distances
    mask = F.one_hot(targets, centres.size(0)).to(dist.dtype)
    dist = dist * mask / centres.var(dim=0).sum()
    return dist.clamp(min=1e-12, max=1e12).sum() / feature.size(0)


class DAN(MethodHead):
    config_key = "dan"

    def __init__(self, in_channels: int, num_classes: int, cfg: DANConfig) -> None:
        super().__init__()
        self.num_features = in_channels
        self.cfg = cfg
        self.heads = nn.ModuleList([CrossAttentionHead(in_channels) for _ in range(cfg.num_heads)])
        self.fc = nn.Linear(in_channels, num_classes)
        self.bn = nn.BatchNorm1d(num_classes)
        self.centres = nn.Parameter(torch.randn(num_classes, in_channels))  # AffinityLoss.centers

    def attend(self, fmap: torch.Tensor) -> torch.Tensor:
        """(B, K, C): every head's output, log-softmaxed across heads when there are several."""
        heads = torch.stack([head(fmap) for head in self.heads], dim=1)
        return F.log_softmax(heads, dim=1) if heads.size(1) > 1 else heads

    def pool(self, fmap: torch.Tensor) -> torch.Tensor:
        return self.attend(fmap).sum(dim=1)

    def classify(self, feature: torch.Tensor) -> list[torch.Tensor]:
        return [self.bn(self.fc(feature))]

    def forward(self, fmap: torch.Tensor, targets: Optional[torch.Tensor] = None) -> ModelOutput:
        heads = self.attend(fmap)
        feature = heads.sum(dim=1)
        aux = {"dan_partition": self.cfg.partition_weight * partition_loss(heads.float())}
        if targets is not None:
            aux["dan_affinity"] = self.cfg.affinity_weight * affinity_loss(
                global_average(fmap).float(), self.centres.float(), targets)
        return ModelOutput(self.classify(feature), feature, aux_losses=aux)
