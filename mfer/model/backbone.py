"""Any timm backbone behind one feature contract, and ImageNet weights loaded into it by timm name.

Everything above the backbone (DS attention, Msc, Grad-CAM, the method plug-ins, the cost estimate)
sees it through ``FeatureContract``, built on timm's own ``feature_info`` and ``forward_intermediates``,
so ConvNeXt, ResNet and ViT need no code of their own: stages with their widths and strides, the
stage maps a caller keeps, the final normalised map and the pooled pre-logits feature. A ViT's
tokens become maps on its patch grid with the class token dropped (timm's ``output_fmt="NCHW"``).

Weights named ``arch.tag`` go through timm's own loader (``load_pretrained`` with the model family's
``checkpoint_filter_fn``, which e.g. resamples a ViT's position embedding to the configured image
size; the classifier dropped), from a file the Hugging Face hub cache already holds
(``mfer.model.hub``). Local checkpoint files of other layouts are ``mfer.model.weights``'.
"""
from __future__ import annotations

import hashlib
import importlib
import math
from dataclasses import dataclass
from functools import lru_cache
from pathlib import Path
from typing import Callable, Collection, Optional

import timm
import torch
from timm.models import get_pretrained_cfg, load_pretrained, split_model_name_tag
from torch import nn

from mfer.config import ConfigError

# The attention stages of MFER on a hierarchical backbone (spec §1: after ConvNeXt stages 3 and 4).
DEFAULT_ATTN_STAGES = (3, 4)


class WeightsError(RuntimeError):
    """Pretrained weights that cannot be used as configured; the message names the file and the fix."""


@lru_cache(maxsize=1)
def known_backbones() -> frozenset[str]:
    return frozenset(timm.list_models())


def is_known_backbone(name: str) -> bool:
    return name in known_backbones()


@lru_cache(maxsize=1)
def _pretrained_names() -> frozenset[str]:
    return frozenset(timm.list_pretrained())


def pretrained_architecture(name: str) -> str | None:
    """The architecture ``name`` (``arch`` or ``arch.tag``) holds weights for, or None if timm lists
    no such pretrained weights."""
    arch, tag = split_model_name_tag(name)
    if tag:
        return arch if name in _pretrained_names() else None
    return arch if any(n.split(".")[0] == arch for n in _pretrained_names()) else None


def pretrained_tags(arch: str) -> list[str]:
    return sorted(n for n in _pretrained_names() if n.split(".")[0] == arch)


# ``model.pretrained=default``: timm's default weights of whatever ``model.backbone`` is, so a sweep axis
# over backbones keeps each one's ImageNet weights without a second axis that must move with it.
DEFAULT_WEIGHTS = "default"


def default_weights(arch: str) -> str | None:
    """The ``arch.tag`` timm loads for ``create_model(arch, pretrained=True)`` (its first-listed tag),
    or None if timm lists no pretrained weights for ``arch``."""
    if pretrained_architecture(arch) is None:
        return None
    return f"{arch}.{get_pretrained_cfg(arch).tag}"


def create_backbone(name: str, drop_path_rate: float, image_size: Optional[int] = None) -> nn.Module:
    """A timm model without classifier. Models timm marks ``fixed_input_size`` (ViTs: their position
    embedding has one entry per patch) are built for ``image_size``, e.g. a 4x4 grid at 64 px."""
    kwargs = {"img_size": image_size} if image_size and get_pretrained_cfg(name).fixed_input_size else {}
    model = timm.create_model(name, pretrained=False, num_classes=0, drop_path_rate=drop_path_rate, **kwargs)
    if not hasattr(model, "forward_intermediates") or not getattr(model, "feature_info", None):
        raise ConfigError(f"model.backbone={name}: this timm model has no forward_intermediates/feature_info, "
                          "which the feature contract needs; use a ConvNeXt, ResNet or ViT (or another family "
                          "timm gives forward_intermediates)")
    return model


@dataclass(frozen=True)
class Stage:
    """One stage of the contract: a timm ``feature_info`` entry."""

    name: str  # "stage1" …, 1-based as the paper numbers ConvNeXt's stages (model.attn_stages)
    index: int  # its position in timm's feature_info, i.e. its forward_intermediates index
    module: str  # the timm submodule whose output it is: "stages.2", "layer3", "blocks.11"
    channels: int
    reduction: int  # input pixels per map pixel along a side


@dataclass
class Features:
    final: torch.Tensor  # the backbone's own final output, what its forward_head pools ((B, N, C) on a ViT)
    map: torch.Tensor  # final normalised map (B, C, H, W); on a ViT its patch tokens, prefix tokens dropped
    stages: dict[str, torch.Tensor]  # the kept stage maps (B, C, H, W), by Stage.name


class FeatureContract:
    """What any timm backbone offers the model above it, read from timm's own ``feature_info`` and
    computed by its own ``forward_intermediates``: one pass gives the kept stage maps and the final output.

    Stages are the ``feature_info`` entries at stride >= 4: ResNet's stride-2 ``act1`` tap is its stem,
    not a stage, so ``stage3``/``stage4`` are ``layer3``/``layer4`` as they are ConvNeXt's ``stages.2``/
    ``stages.3``. A ViT has one stage per block, all at one stride: not hierarchical. A plain object,
    not a module: the backbone's parameters stay where timm puts them (``backbone.*`` state-dict keys).
    """

    def __init__(self, backbone: nn.Module) -> None:
        self.backbone = backbone
        entries = [(i, f) for i, f in enumerate(backbone.feature_info) if f["reduction"] >= 4]
        self.stages = tuple(Stage(f"stage{n}", i, f["module"], f["num_chs"], f["reduction"])
                            for n, (i, f) in enumerate(entries, start=1))
        self.hierarchical = len({s.reduction for s in self.stages}) > 1
        self.num_features: int = getattr(backbone, "head_hidden_size", None) or backbone.num_features
        self.num_prefix_tokens: int = getattr(backbone, "num_prefix_tokens", 0)

    @property
    def widths(self) -> list[int]:
        return [s.channels for s in self.stages]

    def stage(self, name: str) -> Stage:
        return next(s for s in self.stages if s.name == name)

    def stage_module(self, name: str) -> nn.Module:
        return self.backbone.get_submodule(self.stage(name).module)

    def forward(self, x: torch.Tensor, keep: Collection[str] = ()) -> Features:
        """One pass; only the stage maps named in ``keep`` are held, to spare memory."""
        unknown = set(keep) - {s.name for s in self.stages}
        if unknown:
            raise KeyError(f"no feature maps named {sorted(unknown)}; this model has stage1 … stage{len(self.stages)}")
        kept = [s for s in self.stages if s.name in keep]
        indices = sorted({s.index for s in kept} | {self.stages[-1].index})  # timm needs one index at least
        final, maps = self.backbone.forward_intermediates(x, indices=indices, output_fmt="NCHW")
        by_index = dict(zip(indices, maps))
        return Features(final, self.to_map(final), {s.name: by_index[s.index] for s in kept})

    def pool(self, final: torch.Tensor) -> torch.Tensor:
        """The pooled pre-logits feature: timm's ``forward_head(pre_logits=True)`` (ConvNeXt LN(GAP),
        ResNet GAP, ViT the class token after the final norm)."""
        return self.backbone.forward_head(final, pre_logits=True)

    def to_map(self, final: torch.Tensor) -> torch.Tensor:
        return self.tokens_to_map(final) if final.ndim == 3 else final

    def tokens_to_map(self, tokens: torch.Tensor) -> torch.Tensor:
        """(B, N, C) tokens -> (B, C, H, W) on the square patch grid, prefix (class) tokens dropped;
        inputs here are always square (``data.image_size``)."""
        patches = tokens[:, self.num_prefix_tokens:]
        side = math.isqrt(patches.shape[1])
        return patches.reshape(patches.shape[0], side, side, -1).permute(0, 3, 1, 2)

    def cam_target(self) -> tuple[nn.Module, Optional[Callable[[torch.Tensor], torch.Tensor]]]:
        """Grad-CAM's layer for the last stage and the reshape its output needs. On a ViT: the last
        block's first LayerNorm, as pytorch-grad-cam's ViT recipe does, since past that block only the
        class token reaches the head and patch tokens get no gradient; its tokens become the map."""
        last = self.stage_module(self.stages[-1].name)
        if self.hierarchical or not hasattr(last, "norm1"):
            return last, None
        return last.norm1, self.tokens_to_map


@lru_cache(maxsize=32)
def backbone_layout(name: str) -> tuple[int, bool]:
    """(number of stages, hierarchical) of timm's ``name``, from a model built on the meta device:
    no memory, no weights, so configs are checked before anything is built."""
    with torch.device("meta"):
        contract = FeatureContract(create_backbone(name, 0.0))
    return len(contract.stages), contract.hierarchical


def attention_stages(name: str, stages: Optional[list[int]], variant: str,
                     contract: Optional[FeatureContract] = None) -> list[int]:
    """``model.attn_stages`` resolved for backbone ``name`` (whose ``contract`` a caller that built it
    passes): None means after stages 3 and 4 on a hierarchical backbone and none on a ViT, whose
    blocks all share one token grid (MFER's attention sits between ConvNeXt's resolution stages).
    Stages asked for where there are none fail, naming the key and the fix."""
    count, hierarchical = (len(contract.stages), contract.hierarchical) if contract else backbone_layout(name)
    if stages is None:
        return list(DEFAULT_ATTN_STAGES) if hierarchical else []
    if stages and variant != "none" and not hierarchical:
        raise ConfigError(f"model.attn_stages={list(stages)}: model.backbone={name} is not hierarchical (its "
                          "blocks share one token grid), so DS attention has no stage to follow; set "
                          "model.attn_stages=[] (or model.attn_variant=none)")
    for s in stages:
        if not 1 <= s <= count:
            raise ConfigError(f"model.attn_stages[]={s!r} is not allowed; model.backbone={name} has stages "
                              f"1 … {count}")
    return list(stages)


@lru_cache(maxsize=8)
def _sha256(path: str, size: int, mtime_ns: int) -> str:
    h = hashlib.sha256()
    with open(path, "rb") as f:
        for chunk in iter(lambda: f.read(1 << 20), b""):
            h.update(chunk)
    return h.hexdigest()


def file_sha256(path: Path) -> str:
    """SHA-256 of a weights file, hashed once per process while the file is unchanged."""
    st = Path(path).stat()
    return _sha256(str(path), st.st_size, st.st_mtime_ns)


def checkpoint_filter(backbone: nn.Module) -> Optional[Callable[[dict, nn.Module], dict]]:
    """The ``checkpoint_filter_fn`` of the backbone's timm family, which timm's own pretrained
    loading applies (remaps Meta ConvNeXt keys, resamples ViT position embeddings), or None."""
    return getattr(importlib.import_module(type(backbone).__module__), "checkpoint_filter_fn", None)


def load_named_weights(backbone: nn.Module, name: str, path: Path) -> str:
    """Load timm's weights ``name`` from ``path`` into ``backbone`` exactly as
    ``timm.create_model(name, pretrained=True, num_classes=0)`` would; returns the file's SHA-256."""
    cfg = get_pretrained_cfg(name).to_dict()
    cfg["file"] = str(path)  # timm reads the file first when one is given, before any hub or URL source
    cfg["custom_load"] = False  # the hub's file is a state dict; custom loaders read the original .npz releases
    try:
        load_pretrained(backbone, pretrained_cfg=cfg, num_classes=0, filter_fn=checkpoint_filter(backbone), strict=True)
    except (RuntimeError, KeyError) as e:
        raise WeightsError(f"{path} (model.pretrained={name}) does not fit the backbone: {e}") from None
    return file_sha256(path)
