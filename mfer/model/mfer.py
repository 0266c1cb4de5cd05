"""The assembled MFER model: ConvNeXt stages with DS attention blocks appended, LN(GAP) feature,
Msc heads (spec §1, Fig. 1).

It honours timm's model contract (``forward_features``, ``forward_head(pre_logits=)``), so
``forward`` returns the summed logits of all heads — what MFER predicts with — and the trainer's
contract (``mfer.model.output``): ``forward_train`` returns a ``ModelOutput`` with each head's
logits, the pooled feature the losses need and, on request, the stages' feature maps. MFER has
no auxiliary losses of its own.
"""
from __future__ import annotations

from typing import Collection, Optional

import torch
from torch import nn

from mfer.config import ModelConfig
from mfer.model.attention import build_attention
from mfer.model.backbone import create_backbone
from mfer.model.msc import build_classifier
from mfer.model.output import ModelOutput
from mfer.model.weights import load_initial_weights


class MFER(nn.Module):
    def __init__(self, cfg: ModelConfig, num_classes: int) -> None:
        super().__init__()
        self.num_classes = num_classes
        self.backbone = create_backbone(cfg.backbone, cfg.drop_path_rate)
        widths = [info["num_chs"] for info in self.backbone.feature_info]
        self.attn = nn.ModuleDict()
        for stage in sorted(cfg.attn_stages):
            block = build_attention(cfg.attn_variant, widths[stage - 1], cfg.attn_kernel, cfg.attn_groups, cfg.attn_k_gate)
            if block is not None:
                self.attn[str(stage)] = block
        self.num_features = self.backbone.num_features
        self.head = build_classifier(self.num_features, num_classes, list(cfg.msc_fractions))
        # Last, once every part exists: a checkpoint may carry attention and head weights too.
        self.weights_sha256: Optional[str] = load_initial_weights(self, cfg)

    def feature_maps(self, x: torch.Tensor, keep: Collection[str] = ()) -> tuple[torch.Tensor, dict[str, torch.Tensor]]:
        """The final normalised feature map, and the stage outputs named in ``keep``: ``stage1`` …
        ``stage4``, each after its attention block if any (only those are held, to spare memory)."""
        unknown = set(keep) - {f"stage{i}" for i in range(1, len(self.backbone.stages) + 1)}
        if unknown:
            raise KeyError(f"no feature maps named {sorted(unknown)}; this model has stage1 … stage{len(self.backbone.stages)}")
        maps = {}
        x = self.backbone.stem(x)
        for i, stage in enumerate(self.backbone.stages, start=1):
            x = stage(x)
            if str(i) in self.attn:
                x = self.attn[str(i)](x)
            if f"stage{i}" in keep:
                maps[f"stage{i}"] = x
        return self.backbone.norm_pre(x), maps

    def forward_features(self, x: torch.Tensor) -> torch.Tensor:
        return self.feature_maps(x)[0]

    def forward_head(self, x: torch.Tensor, pre_logits: bool = False) -> torch.Tensor:
        feature = self.backbone.forward_head(x, pre_logits=True)
        return feature if pre_logits else self.classify(feature)

    def classify(self, feature: torch.Tensor) -> torch.Tensor:
        """Summed logits of all Msc heads for a pooled feature (evaluation needs both, from one pooling)."""
        return torch.stack(self.head(feature)).sum(0)

    def forward_train(self, x: torch.Tensor, maps: Collection[str] = ()) -> ModelOutput:
        """Each head's logits and the pooled normalised feature, plus the stage outputs ``maps``
        names (see ``feature_maps``)."""
        fmap, kept = self.feature_maps(x, maps)
        feature = self.backbone.forward_head(fmap, pre_logits=True)
        return ModelOutput(self.head(feature), feature, kept)

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        return self.forward_head(self.forward_features(x))


def build_model(cfg: ModelConfig, num_classes: int) -> MFER:
    return MFER(cfg, num_classes)


def parameter_breakdown(model: MFER) -> dict[str, int]:
    """Parameter counts of the backbone, the attention blocks and the classifier heads."""

    def count(m: nn.Module) -> int:
        return sum(p.numel() for p in m.parameters())

    parts = {"backbone": count(model.backbone), "attention": count(model.attn), "head": count(model.head)}
    parts["total"] = sum(parts.values())
    return parts
