"""Training-scheme plug-ins: how a run trains, selected by ``scheme.name`` (a sweep axis), as
``mfer.model.methods`` registers heads by name.

``SCHEMES`` maps a name to its class; each is built from (the run's TrainConfig, the number of
classes, the model's pooled-feature width) and reads its own section of ``SchemeConfig``
(``scheme.ada_df`` …). ``standard`` is plain supervised training, what every run did before.
"""
from __future__ import annotations

from mfer.config import TrainConfig
from mfer.schemes.ada_df import AdaDF
from mfer.schemes.base import TrainingScheme, training_loss
from mfer.schemes.dnfer import DNFER
from mfer.schemes.mafer import MAFER

SCHEMES: dict[str, type[TrainingScheme]] = {
    "standard": TrainingScheme,
    "mafer": MAFER,
    "ada_df": AdaDF,
    "dnfer": DNFER,
}


def build_scheme(cfg: TrainConfig, num_classes: int, feat_dim: int) -> TrainingScheme:
    """The scheme ``cfg.scheme.name`` names."""
    return SCHEMES[cfg.scheme.name](cfg, num_classes, feat_dim)


__all__ = ["SCHEMES", "TrainingScheme", "build_scheme", "training_loss"]
