"""Initial weights of an MFER model: ImageNet weights by timm name, or a local checkpoint file.

A local file (``model.pretrained_file``) may come from any of the codebases FER researchers
start from, so its keys are sorted before anything loads (fer_pitfalls #5: mismatches fail loudly):

- wrappers and prefixes: ``state_dict`` / ``model_state_dict`` (MFER's ``train.py``) / ``model`` /
  ``model_state`` / ``module`` dicts; ``module.`` / ``model.`` on every key (DataParallel);
  ``net.`` / ``backbone.`` on the backbone's keys (FAER, MFTN-FER, this project's checkpoints),
  with the other keys sorted as below;
- the backbone: timm keys of any ``model.backbone``, or Meta ConvNeXt keys, passed through the
  model family's own timm ``checkpoint_filter_fn`` where it has one (ConvNeXt's remaps Meta keys);
- DS attention, mapped onto ``attn.<stage>``: MFER's ``stages.<i>.<depth>.{key,value,attn,norm}``
  (XuJ1E/MFER ``model.py`` appends ``Attention`` to stages 3 and 4), FAER's
  ``attention.{mlp,value,depthwise,norm}`` after stage 4 (XUJ1Er/FAER ``models/convnext.py``),
  and this project's ``attn.<stage>.*``;
- heads: the feature layers of Msc heads (MFER's ``msc.<i>.fc1``, ours ``head.heads.<i>.fc1``)
  are mapped; class layers (``fc2``, ``head``, ``head.fc``, ``fc``, ``classifier``) are dropped,
  since the file's class order is not ours to know.

A known block that finds no counterpart of the same shape (say the model has no attention after
stage 3) is dropped whole and listed in the log; keys of no known layout are refused in one error
naming the file and every such key. Nothing is read by pickle: ``torch.load(weights_only=True)``.
"""
from __future__ import annotations

import logging
import re
from dataclasses import dataclass, field
from pathlib import Path
from typing import Optional

import torch
from torch import nn
from timm.models.convnext import ConvNeXt

from mfer.config import ModelConfig
from mfer.model.backbone import WeightsError, checkpoint_filter, file_sha256, load_named_weights
from mfer.model.hub import weights_file

log = logging.getLogger(__name__)
WRAPPERS = ("state_dict", "model_state_dict", "model", "model_state", "module")
COMMON_PREFIXES = ("module.", "model.")
BACKBONE_PREFIXES = ("net.", "backbone.")
_MFER_ATTN = {"key": "k", "value": "v", "attn": "q_conv", "norm": "q_norm"}
_FAER_ATTN = {"mlp": "k", "value": "v", "depthwise": "q_conv", "norm": "q_norm"}
_CLASS_LAYER = re.compile(r"^(head|head\.fc|fc|classifier)\.(weight|bias)$")
_META_BACKBONE = re.compile(r"^(downsample_layers|stages|norm)\.")


@dataclass
class SortedKeys:
    backbone: dict[str, torch.Tensor] = field(default_factory=dict)
    blocks: dict[str, dict[str, tuple[str, torch.Tensor]]] = field(default_factory=dict)  # module -> target -> (src, t)
    dropped: dict[str, str] = field(default_factory=dict)  # file key -> why
    unknown: list[str] = field(default_factory=list)


def read_state_dict(path: Path) -> dict:
    """The innermost state dict of a .safetensors file or a torch checkpoint (no pickles)."""
    if path.suffix == ".safetensors":
        from safetensors.torch import load_file

        return load_file(str(path))
    try:
        obj = torch.load(path, map_location="cpu", weights_only=True)
    except Exception as e:  # pickled objects beyond tensors and plain containers, or not a torch file at all
        raise WeightsError(f"{path}: not a weights-only torch checkpoint ({type(e).__name__}: {e})") from None
    while isinstance(obj, dict) and any(isinstance(obj.get(k), dict) for k in WRAPPERS):
        obj = obj[next(k for k in WRAPPERS if isinstance(obj.get(k), dict))]
    if not isinstance(obj, dict):
        raise WeightsError(f"{path}: expected a state dict, found {type(obj).__name__}")
    return obj


def _strip_common(sd: dict) -> dict:
    for p in COMMON_PREFIXES:
        if sd and all(k.startswith(p) for k in sd):
            sd = {k[len(p):]: v for k, v in sd.items()}
    return sd


def _known_block(key: str, depths: list[int]) -> Optional[tuple[str, str]]:
    """(module, target key) for an attention or Msc feature-layer key of a known layout, else None."""
    m = re.match(r"^attn\.(\d)\.((?:v|k|q_conv|q_norm)\..+)$", key)
    if m:
        return f"attn.{m[1]}", f"attn.{m[1]}.{m[2]}"
    m = re.match(r"^stages\.(\d)\.(\d+)\.(key|value|attn|norm)\.(.+)$", key)
    if m and int(m[1]) < len(depths) and int(m[2]) == depths[int(m[1])]:  # the block after the stage's last
        stage = int(m[1]) + 1
        return f"attn.{stage}", f"attn.{stage}.{_MFER_ATTN[m[3]]}.{m[4]}"
    m = re.match(r"^attention\.(mlp|value|depthwise|norm)\.(.+)$", key)
    if m:
        return "attn.4", f"attn.4.{_FAER_ATTN[m[1]]}.{m[2]}"
    m = re.match(r"^(?:msc|head\.heads)\.(\d+)\.fc1\.(weight|bias)$", key)
    if m:
        return f"head.heads.{m[1]}.fc1", f"head.heads.{m[1]}.fc1.{m[2]}"
    return None


def sort_keys(sd: dict, depths: list[int], meta_layout: bool = True) -> SortedKeys:
    """Sort a checkpoint's keys into backbone, known blocks, dropped and unknown (module docstring).
    ``depths``: blocks per ConvNeXt stage (MFER's attention keys); ``meta_layout``: the backbone is a
    ConvNeXt, so keys not in timm's layout are read as Meta's."""
    out, sd = SortedKeys(), _strip_common(sd)
    prefixed = any(k.startswith(BACKBONE_PREFIXES) for k in sd)
    for key, value in sd.items():
        prefix = next((p for p in BACKBONE_PREFIXES if key.startswith(p)), "")
        bare = key[len(prefix):]
        block = None if prefix else _known_block(key, depths)
        if not isinstance(value, torch.Tensor):
            out.dropped[key] = f"not a tensor ({type(value).__name__})"
        elif _CLASS_LAYER.match(bare) or re.match(r"^(?:msc|head\.heads)\.\d+\.fc2\.(weight|bias)$", bare):
            out.dropped[key] = "class layer (the file's class order is not this dataset's)"
        elif prefix:
            out.backbone[bare] = value
        elif block:
            out.blocks.setdefault(block[0], {})[block[1]] = (key, value)
        elif prefixed:
            out.unknown.append(key)
        else:
            out.backbone[key] = value
    timm_format = "head.norm.weight" in out.backbone or "norm_pre.weight" in out.backbone
    if meta_layout and not timm_format:  # Meta's layout: anything beside its stems, stages and final norm is unknown
        out.unknown += [k for k in out.backbone if not _META_BACKBONE.match(k)]
        out.backbone = {k: v for k, v in out.backbone.items() if _META_BACKBONE.match(k)}
    return out


def _load_backbone(backbone: nn.Module, sd: dict[str, torch.Tensor], path: Path, name: str) -> None:
    filter_fn = checkpoint_filter(backbone)
    try:
        sd = filter_fn(sd, backbone) if filter_fn else sd
        missing, unexpected = backbone.load_state_dict(sd, strict=False)
    except (KeyError, RuntimeError) as e:  # a key or shape of another model size
        raise WeightsError(f"{path}: does not match model.backbone={name} ({type(e).__name__}: {e}). "
                           "Check model.backbone matches the file") from None
    if missing or unexpected:
        raise WeightsError(
            f"{path}: does not match model.backbone={name}: {len(missing)} missing keys (e.g. {missing[:3]}), "
            f"{len(unexpected)} unknown: {unexpected[:20]}. Check model.backbone matches the file")


def _misfit(tensors: dict[str, tuple[str, torch.Tensor]], state: dict[str, torch.Tensor]) -> Optional[str]:
    for target, (_, value) in tensors.items():
        if target not in state:
            return f"{target}: the model has none"
        if state[target].shape != value.shape:
            return f"{target}: {tuple(value.shape)} in the file, {tuple(state[target].shape)} in the model"
    return None


def _load_blocks(model: nn.Module, keys: SortedKeys) -> int:
    """Copy every known block whose tensors all fit the model; drop (and list) the others whole."""
    state, loaded = model.state_dict(), 0  # state_dict tensors share storage with the parameters
    for module, tensors in keys.blocks.items():
        misfit = _misfit(tensors, state)
        if misfit:
            keys.dropped.update({src: f"{module} not loaded ({misfit})" for src, _ in tensors.values()})
            continue
        with torch.no_grad():
            for target, (_, value) in tensors.items():
                state[target].copy_(value)
        loaded += len(tensors)
    return loaded


def load_file_weights(model: nn.Module, path: str | Path, backbone_name: str) -> str:
    """Load a local checkpoint into an MFER ``model`` (module docstring); returns the file's SHA-256."""
    path = Path(path)
    if not path.is_file():
        raise WeightsError(f"model.pretrained_file={str(path)!r} does not exist; give a local weights file")
    convnext = isinstance(model.backbone, ConvNeXt)  # MFER's and Meta's layouts exist for ConvNeXt only
    depths = [len(stage.blocks) for stage in model.backbone.stages] if convnext else []
    keys = sort_keys(read_state_dict(path), depths, meta_layout=convnext)
    if keys.unknown:
        raise WeightsError(
            f"{path}: {len(keys.unknown)} key(s) of no known layout: {', '.join(sorted(keys.unknown)[:20])}"
            f"{' …' if len(keys.unknown) > 20 else ''}. Known: timm keys of model.backbone or Meta ConvNeXt keys "
            "(optionally under net./backbone./module./model.), DS attention (MFER, FAER, mfer attn.N), Msc and "
            f"classifier heads. Is this a checkpoint for model.backbone={backbone_name}?")
    _load_backbone(model.backbone, keys.backbone, path, backbone_name)
    loaded = _load_blocks(model, keys)
    log.info(f"{path}: {len(keys.backbone)} backbone and {loaded} attention/head tensors loaded")
    if keys.dropped:
        log.warning(f"{path}: {len(keys.dropped)} tensor(s) not loaded: "
                    + "; ".join(f"{k} ({why})" for k, why in keys.dropped.items()))
    return file_sha256(path)


def load_initial_weights(model: nn.Module, cfg: ModelConfig) -> Optional[str]:
    """Load ``cfg``'s pretrained weights into ``model``; the SHA-256 of the file read, or None."""
    if cfg.pretrained:
        return load_named_weights(model.backbone, cfg.pretrained, weights_file(cfg.pretrained))
    if cfg.pretrained_file:
        return load_file_weights(model, cfg.pretrained_file, cfg.backbone)
    return None
