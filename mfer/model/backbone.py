"""timm ConvNeXt backbones, and ImageNet weights loaded into them by timm name.

Weights named ``arch.tag`` go through timm's own loader (``load_pretrained`` with the family's
``checkpoint_filter_fn``, the classifier dropped), from a file the Hugging Face hub cache already
holds (``mfer.model.hub``). Local checkpoint files of other layouts are ``mfer.model.weights``'.
"""
from __future__ import annotations

import hashlib
from functools import lru_cache
from pathlib import Path

import timm
from timm.models import get_pretrained_cfg, load_pretrained, split_model_name_tag
from timm.models.convnext import ConvNeXt, checkpoint_filter_fn


class WeightsError(RuntimeError):
    """Pretrained weights that cannot be used as configured; the message names the file and the fix."""


@lru_cache(maxsize=1)
def known_backbones() -> tuple[str, ...]:
    return tuple(timm.list_models("convnext*"))


def is_known_backbone(name: str) -> bool:
    return name in known_backbones()


@lru_cache(maxsize=1)
def _pretrained_names() -> frozenset[str]:
    return frozenset(timm.list_pretrained("convnext*"))


def pretrained_architecture(name: str) -> str | None:
    """The architecture ``name`` (``arch`` or ``arch.tag``) holds weights for, or None if timm lists
    no such pretrained ConvNeXt weights."""
    arch, tag = split_model_name_tag(name)
    if tag:
        return arch if name in _pretrained_names() else None
    return arch if any(n.split(".")[0] == arch for n in _pretrained_names()) else None


def pretrained_tags(arch: str) -> list[str]:
    return sorted(n for n in _pretrained_names() if n.split(".")[0] == arch)


def create_backbone(name: str, drop_path_rate: float) -> ConvNeXt:
    """A ConvNeXt without classifier: ``forward_head(x, pre_logits=True)`` gives LN(GAP(x))."""
    return timm.create_model(name, pretrained=False, num_classes=0, drop_path_rate=drop_path_rate)


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


def load_named_weights(backbone: ConvNeXt, name: str, path: Path) -> str:
    """Load timm's weights ``name`` from ``path`` into ``backbone`` exactly as
    ``timm.create_model(name, pretrained=True, num_classes=0)`` would; returns the file's SHA-256."""
    cfg = get_pretrained_cfg(name).to_dict()
    cfg["file"] = str(path)  # timm reads the file first when one is given, before any hub or URL source
    try:
        load_pretrained(backbone, pretrained_cfg=cfg, num_classes=0, filter_fn=checkpoint_filter_fn, strict=True)
    except (RuntimeError, KeyError) as e:
        raise WeightsError(f"{path} (model.pretrained={name}) does not fit the backbone: {e}") from None
    return file_sha256(path)
