"""The model-output contract the trainer relies on, so methods other than MFER plug in unchanged.

``forward_train(x, targets=None)`` of any model the trainer trains returns a ``ModelOutput``. The
training step computes the criterion on ``(logits, feature, targets)`` and adds every entry of
``aux_losses``: a method with losses of its own (DAN's affinity loss, FDRL's decomposition losses)
computes them inside ``forward_train`` and returns them there, and the loop needs no change. What
changes how a model is trained rather than what it computes (Ada-DF's distribution fusion, DNFER's
sample selection) is a training scheme instead (``mfer.schemes``), which reads this same output. The training step passes the batch's labels as ``targets``,
since some of those losses pull features to class centres (DAN's affinity loss); a model without
such losses ignores them. ``feature_maps`` holds the intermediate maps a component asked for
by name (``forward_train(x, maps=...)``), so a loss or a probe reads them without hooks.
"""
from __future__ import annotations

from dataclasses import dataclass, field

import torch


@dataclass
class ModelOutput:
    logits: list[torch.Tensor]  # one (B, K) tensor per head; prediction sums them
    feature: torch.Tensor  # (B, D) pooled feature the feature losses act on
    feature_maps: dict[str, torch.Tensor] = field(default_factory=dict)  # the maps a component asked for
    aux_losses: dict[str, torch.Tensor] = field(default_factory=dict)  # scalars the training step adds
