"""MFER model parts: timm ConvNeXt backbone, DS attention, Msc heads, and the assembled model."""
from mfer.model.mfer import MFER, build_model, parameter_breakdown

__all__ = ["MFER", "build_model", "parameter_breakdown"]
