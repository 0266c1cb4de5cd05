"""timm ConvNeXt backbones and local pretrained-weight loading.

Weights are read from a named local file, never downloaded: timm format, Meta's original
ConvNeXt format (remapped by timm's own ``checkpoint_filter_fn``), or FAER/MFTN-style
checkpoints that wrap a timm ConvNeXt as ``net.`` under ``state_dict``. Key mismatches fail
loudly (fer_pitfalls #5) and the file's SHA-256 is returned for provenance.
"""
from __future__ import annotations

import hashlib
from functools import lru_cache
from pathlib import Path

import timm
import torch
from timm.models.convnext import ConvNeXt, checkpoint_filter_fn

_WRAPPER_KEYS = ("state_dict", "model", "model_state", "module")
_PREFIXES = ("module.", "net.", "backbone.", "model.")


class WeightsError(RuntimeError):
    """A pretrained-weights file that cannot be used as the configured backbone."""


@lru_cache(maxsize=1)
def known_backbones() -> tuple[str, ...]:
    return tuple(timm.list_models("convnext*"))


def is_known_backbone(name: str) -> bool:
    return name in known_backbones()


def create_backbone(name: str, drop_path_rate: float) -> ConvNeXt:
    """A ConvNeXt without classifier: ``forward_head(x, pre_logits=True)`` gives LN(GAP(x))."""
    return timm.create_model(name, pretrained=False, num_classes=0, drop_path_rate=drop_path_rate)


def file_sha256(path: Path) -> str:
    h = hashlib.sha256()
    with open(path, "rb") as f:
        for chunk in iter(lambda: f.read(1 << 20), b""):
            h.update(chunk)
    return h.hexdigest()


def read_state_dict(path: Path) -> dict[str, torch.Tensor]:
    """Tensors from a .safetensors file or a torch checkpoint (``weights_only=True``: no pickles)."""
    if path.suffix == ".safetensors":
        from safetensors.torch import load_file

        return load_file(str(path))
    obj = torch.load(path, map_location="cpu", weights_only=True)
    while isinstance(obj, dict) and len(obj) and any(k in obj for k in _WRAPPER_KEYS):
        obj = obj[next(k for k in _WRAPPER_KEYS if k in obj)]
    if not isinstance(obj, dict):
        raise WeightsError(f"{path}: expected a state dict, found {type(obj).__name__}")
    return obj


def _strip_prefixes(sd: dict[str, torch.Tensor]) -> dict[str, torch.Tensor]:
    for p in _PREFIXES:
        if sd and all(k.startswith(p) for k in sd):
            sd = {k[len(p):]: v for k, v in sd.items()}
    return sd


def load_pretrained(backbone: ConvNeXt, path: str | Path) -> str:
    """Load local weights into ``backbone``; a classifier in the file is dropped. Returns SHA-256."""
    path = Path(path)
    if not path.is_file():
        raise WeightsError(f"model.pretrained_file={str(path)!r} does not exist; give a local weights file")
    sd = checkpoint_filter_fn(_strip_prefixes(read_state_dict(path)), backbone)
    sd = {k: v for k, v in sd.items() if not k.startswith("head.fc.")}
    missing, unexpected = backbone.load_state_dict(sd, strict=False)
    if missing or unexpected:
        raise WeightsError(
            f"{path}: does not match the backbone: {len(missing)} missing keys (e.g. {missing[:3]}), "
            f"{len(unexpected)} unexpected (e.g. {unexpected[:3]}). Check model.backbone matches the file."
        )
    return file_sha256(path)
