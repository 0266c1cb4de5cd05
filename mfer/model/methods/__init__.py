"""Method plug-ins: heads from the FER literature on any backbone's final feature map, selected by
``model.method`` (a sweep axis), as timm registers models by name.

``METHODS`` maps a name to its class; each class is built from (in_channels, num_classes, its own
section of ``ModelConfig``: ``model.se``, ``model.dan`` …). ``mfer`` is not listed: it is the
assembled model's own Msc head (``mfer.model.mfer``).
"""
from __future__ import annotations

from mfer.config import ModelConfig
from mfer.model.methods.base import MethodHead
from mfer.model.methods.baseline import Baseline
from mfer.model.methods.dan import DAN
from mfer.model.methods.fdrl import FDRL
from mfer.model.methods.scan_cci import SCANCCI
from mfer.model.methods.se import SqueezeExcitation

METHODS: dict[str, type[MethodHead]] = {
    "baseline": Baseline,
    "se": SqueezeExcitation,
    "dan": DAN,
    "scan_cci": SCANCCI,
    "fdrl": FDRL,
}


def build_method(cfg: ModelConfig, in_channels: int, num_classes: int) -> MethodHead:
    """The plug-in ``cfg.method`` names, with its own config section."""
    cls = METHODS[cfg.method]
    return cls(in_channels, num_classes, getattr(cfg, cls.config_key) if cls.config_key else None)


__all__ = ["METHODS", "MethodHead", "build_method"]
