"""The assembled MFER model: a timm backbone's stages with DS attention blocks appended, its pooled
pre-logits feature, Msc heads (spec §1, Fig. 1; on ConvNeXt exactly the paper's model).

The backbone is seen through ``mfer.model.backbone.FeatureContract`` only, so ConvNeXt, ResNet and
ViT share this code. A DS attention block after stage N is a forward hook on that stage's timm
module: timm's own ``forward_intermediates`` then carries the attended map on to the next stage,
and the state-dict keys stay ``backbone.*`` and ``attn.N.*`` whatever the backbone.

It honours timm's model contract (``forward_features``, ``forward_head(pre_logits=)``), so
``forward`` returns the summed logits of all heads — what MFER predicts with — and the trainer's
contract (``mfer.model.output``): ``forward_train`` returns a ``ModelOutput`` with each head's
logits, the pooled feature the losses need and, on request, the stages' feature maps. MFER has
no auxiliary losses of its own.
"""
from __future__ import annotations

from functools import partial
from typing import Collection, Optional

import torch
from torch import nn

from mfer.config import ModelConfig
from mfer.model.attention import build_attention
from mfer.model.backbone import FeatureContract, Features, attention_stages, create_backbone
from mfer.model.methods import MethodHead, build_method
from mfer.model.msc import build_classifier
from mfer.model.output import ModelOutput
from mfer.model.weights import load_initial_weights


class MFER(nn.Module):
    def __init__(self, cfg: ModelConfig, num_classes: int, image_size: Optional[int] = None) -> None:
        super().__init__()
        self.num_classes = num_classes
        self.backbone = create_backbone(cfg.backbone, cfg.drop_path_rate, image_size)
        self.contract = FeatureContract(self.backbone)
        self.attn = nn.ModuleDict()
        # Identity taps before each attention block: the stage's own output, for Grad-CAM, since any
        # hook on the stage module itself would run after ours and see the attended map.
        self.stage_out = nn.ModuleDict()
        for stage in sorted(attention_stages(cfg.backbone, cfg.attn_stages, cfg.attn_variant, self.contract)):
            block = build_attention(cfg.attn_variant, self.contract.widths[stage - 1], cfg.attn_kernel,
                                    cfg.attn_groups, cfg.attn_k_gate)
            if block is not None:
                self.attn[str(stage)], self.stage_out[str(stage)] = block, nn.Identity()
                self.contract.stage_module(f"stage{stage}").register_forward_hook(partial(self._attend, str(stage)))
        # The head: MFER's Msc heads on the pooled feature, or a method plug-in (model.method) on the
        # final map, which pools it its own way (mfer.model.methods).
        if cfg.method == "mfer":
            self.num_features = self.contract.num_features
            self.head = build_classifier(self.num_features, num_classes, list(cfg.msc_fractions))
        else:
            self.head = build_method(cfg, self.contract.widths[-1], num_classes)
            self.num_features = self.head.num_features
        # Last, once every part exists: a checkpoint may carry attention and head weights too.
        self.weights_sha256: Optional[str] = load_initial_weights(self, cfg)

    def _attend(self, stage: str, module: nn.Module, args: tuple, out: torch.Tensor) -> torch.Tensor:
        """Forward hook on a stage's timm module: its output, through the attention block after it."""
        return self.attn[stage](self.stage_out[stage](out))

    def features(self, x: torch.Tensor, keep: Collection[str] = ()) -> Features:
        """The contract's features of ``x`` (``FeatureContract.forward``), attention blocks applied."""
        return self.contract.forward(x, keep)

    def feature_maps(self, x: torch.Tensor, keep: Collection[str] = ()) -> tuple[torch.Tensor, dict[str, torch.Tensor]]:
        """The final normalised feature map, and the stage outputs named in ``keep``: ``stage1`` …
        ``stageN``, each after its attention block if any (only those are held, to spare memory)."""
        f = self.features(x, keep)
        return f.map, f.stages

    def forward_features(self, x: torch.Tensor) -> torch.Tensor:
        """The backbone's final output, what ``forward_head`` pools (tokens on a ViT): timm's contract."""
        return self.features(x).final

    def forward_head(self, x: torch.Tensor, pre_logits: bool = False) -> torch.Tensor:
        if isinstance(self.head, MethodHead):  # a plug-in pools the map (a ViT's tokens laid out as one)
            feature = self.head.pool(x if x.dim() == 4 else self.contract.tokens_to_map(x))
        else:
            feature = self.contract.pool(x)
        return feature if pre_logits else self.classify(feature)

    def classify(self, feature: torch.Tensor) -> torch.Tensor:
        """Summed logits of all Msc heads for a pooled feature (evaluation needs both, from one pooling)."""
        heads = self.head.classify(feature) if isinstance(self.head, MethodHead) else self.head(feature)
        return torch.stack(heads).sum(0)

    def forward_train(self, x: torch.Tensor, maps: Collection[str] = (),
                      targets: Optional[torch.Tensor] = None) -> ModelOutput:
        """Each head's logits and the pooled normalised feature, plus the stage outputs ``maps``
        names (see ``feature_maps``); a method plug-in adds its own losses (``targets``: the labels
        some of them need)."""
        f = self.features(x, maps)
        if isinstance(self.head, MethodHead):
            out = self.head(f.map, targets)
            out.feature_maps = f.stages
            return out
        feature = self.contract.pool(f.final)
        return ModelOutput(self.head(feature), feature, f.stages)

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        return self.forward_head(self.forward_features(x))


def build_model(cfg: ModelConfig, num_classes: int, image_size: Optional[int] = None) -> MFER:
    """``image_size`` (``data.image_size``) matters to ViTs only, whose position embedding fits one size."""
    return MFER(cfg, num_classes, image_size)


def parameter_breakdown(model: MFER) -> dict[str, int]:
    """Parameter counts of the backbone, the attention blocks and the classifier heads."""

    def count(m: nn.Module) -> int:
        return sum(p.numel() for p in m.parameters())

    parts = {"backbone": count(model.backbone), "attention": count(model.attn), "head": count(model.head)}
    parts["total"] = sum(parts.values())
    return parts
