"""SCAN-CCI-style attention (Gera & Balasubramanian, "Landmark Guidance Independent
Spatio-channel Attention and Complementary Context Information based Facial Expression
Recognition", Pattern Recognition Letters 145, 2021), read from its released code, github
1980x/SCAN-CCI-FER (models/attentionnet.py, main_rafdb.py).

SCAN (read from code): the map is cut into non-overlapping local patches (``patch`` x ``patch``,
the last row/column of patches taking the remainder, as its 6-pixel grid over a 28x28 map does);
one shared attention net (3x3 conv, PReLU, BatchNorm, sigmoid; the RAF-DB script's
``SharedAttentionBranch``) gives a mask per channel per location for every patch and for the
whole map; each patch's masked map is average-pooled, the patches are max-pooled, concatenated
with the masked global map's pool, L2-normalised and classified. CCI (read from code): efficient
channel attention (ECA: GAP, a 1-D conv across channels, sigmoid gate) on the map, cut into
``regions`` equal square regions, each pooled and classified by one shared MLP (C -> C/4 -> K).
Every head's CE counts in training; the prediction sums them (SCAN-CCI averages: same argmax).

Our reading, where the paper's network differs from a plug-in on one final map: SCAN-CCI runs
SCAN on ResNet-50 layer 2 and CCI on layer 3 of a face-recognition model; here both run on the
final map. SCAN-CCI weighs the branches 0.2 (attention) : 0.8 (regions); here every head's CE
has weight 1.
"""
from __future__ import annotations

import math

import torch
import torch.nn.functional as F
from torch import nn

from mfer.config import SCANConfig
from mfer.model.methods.base import MethodHead, global_average


def patch_bounds(size: int, patch: int) -> list[tuple[int, int]]:
    """[start, end) of the patches along one side: steps of ``patch``, the last one the remainder
    (SCAN-CCI's ``extract_patches_attentivefeatures``: 28 with 6 -> 0,6,12,18,24,28)."""
    edges = list(range(0, size, patch)) + [size]
    return list(zip(edges[:-1], edges[1:]))


class ECA(nn.Module):
    """Efficient channel attention (Wang et al., CVPR 2020), as SCAN-CCI's ``eca_layer``."""

    def __init__(self, kernel: int) -> None:
        super().__init__()
        self.conv = nn.Conv1d(1, 1, kernel_size=kernel, padding=(kernel - 1) // 2, bias=False)

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        y = self.conv(global_average(x)[:, None, :])  # (B, 1, C): a conv across channels
        return x * torch.sigmoid(y)[:, 0, :, None, None]


class SCANCCI(MethodHead):
    config_key = "scan_cci"

    def __init__(self, in_channels: int, num_classes: int, cfg: SCANConfig) -> None:
        super().__init__()
        self.cfg = cfg
        self.side = math.isqrt(cfg.regions)
        self.num_features = (2 + cfg.regions) * in_channels  # [SCAN local ‖ global] then each region's pool
        self.mask = nn.Sequential(nn.Conv2d(in_channels, in_channels, 3, padding=1, bias=False),
                                  nn.PReLU(in_channels), nn.BatchNorm2d(in_channels), nn.Sigmoid())
        self.attention_fc = nn.Linear(2 * in_channels, num_classes)
        self.eca = ECA(cfg.eca_kernel)
        self.region_mlp = nn.Sequential(nn.Linear(in_channels, max(1, in_channels // 4)), nn.ReLU(),
                                        nn.Linear(max(1, in_channels // 4), num_classes))

    def attention_feature(self, x: torch.Tensor) -> torch.Tensor:
        """SCAN: (B, 2C) L2-normalised [max over patches of masked patch pools ‖ masked global pool]."""
        rows, cols = patch_bounds(x.size(2), self.cfg.patch), patch_bounds(x.size(3), self.cfg.patch)
        local = [self.masked_pool(x[:, :, r0:r1, c0:c1]) for r0, r1 in rows for c0, c1 in cols]
        local_max = torch.stack(local, dim=2).amax(dim=2)
        return F.normalize(torch.cat([local_max, self.masked_pool(x)], dim=1), p=2, dim=1)

    def masked_pool(self, x: torch.Tensor) -> torch.Tensor:
        """(B, C): the average pool of ``x`` under its attention mask (one per channel and location)."""
        return global_average(x * self.mask(x))

    def region_features(self, x: torch.Tensor) -> torch.Tensor:
        """CCI: (B, regions·C) pools of the ECA-weighted map's equal square regions, row-major."""
        x = self.eca(x)
        size = x.size(2) // self.side  # SCAN-CCI's int(H / (regions / 2)) for its 2x2 grid
        if size < 1:
            raise ValueError(f"model.scan_cci.regions={self.cfg.regions} needs a final map of at least "
                             f"{self.side}x{self.side}; this one is {tuple(x.shape[2:])}")
        cells = [global_average(x[:, :, i * size:(i + 1) * size, j * size:(j + 1) * size])
                 for i in range(self.side) for j in range(self.side)]
        return torch.cat(cells, dim=1)

    def pool(self, fmap: torch.Tensor) -> torch.Tensor:
        return torch.cat([self.attention_feature(fmap), self.region_features(fmap)], dim=1)

    def classify(self, feature: torch.Tensor) -> list[torch.Tensor]:
        c = self.attention_fc.in_features // 2
        regions = feature[:, 2 * c:].split(c, dim=1)
        return [self.attention_fc(feature[:, :2 * c]), *(self.region_mlp(r) for r in regions)]
