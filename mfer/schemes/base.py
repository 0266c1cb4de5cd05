"""What every training scheme is: how one batch becomes a loss, and what changes from epoch to epoch.

Half of the FER literature changes not the network but how it is trained (Ada-DF's label
distributions, DNFER's clean-sample selection, MAFER's two steps). A scheme owns exactly that part
of the training step: the engine (``mfer.train.engine``) hands it the uint8 batch already on the
device and takes back the loss to step on; the loop tells it when an epoch starts and ends and
asks it for extra evaluation figures. Everything else — the optimiser step, AMP, clipping,
selection, checkpoints — stays the trainer's, so a scheme composes with any backbone, attention
variant, Msc head or method plug-in.

A scheme is an ``nn.Module``: its parameters (an auxiliary branch) are optimised with the model
and its parameters and buffers (class distributions, thresholds) travel in the resumable
checkpoint, so a resumed run continues exactly where it stopped. Anything a scheme switches by
epoch is a function of the epoch number, never of how many epochs this process has run.
"""
from __future__ import annotations

from typing import TYPE_CHECKING, Any, ClassVar, Optional

import torch
from torch import nn

from mfer.config import TrainConfig
from mfer.data.augment import to_model_input
from mfer.model.output import ModelOutput

if TYPE_CHECKING:  # the run is built from a scheme, not the other way round
    from mfer.data.arrays import ArraySplit
    from mfer.train.build import TrainingRun

# (dotted key, ok, requirement, value): one check of a scheme's own config section.
Requirement = tuple[str, bool, str, Any]


def training_loss(criterion: nn.Module, out: ModelOutput, y: torch.Tensor, *soft: torch.Tensor) -> torch.Tensor:
    """The criterion on the heads' logits and the pooled feature, plus the model's auxiliary losses."""
    loss = criterion(out.logits, out.feature, y, *soft)
    for aux in out.aux_losses.values():
        loss = loss + aux.float()
    return loss


class TrainingScheme(nn.Module):
    """The standard scheme, and the base of the others: augment, forward, criterion + the model's
    own losses. ``config_key`` names the scheme's section of ``SchemeConfig`` (``scheme.ada_df``…),
    None for one without settings."""

    config_key: ClassVar[Optional[str]] = None

    def __init__(self, cfg: TrainConfig, num_classes: int, feat_dim: int) -> None:
        super().__init__()
        self.num_classes, self.feat_dim = num_classes, feat_dim
        self.settings = getattr(cfg.scheme, self.config_key) if self.config_key else None
        self.epoch = 0  # the epoch being trained, 0-based (start_epoch sets it)

    @classmethod
    def requirements(cls, cfg: TrainConfig) -> list[Requirement]:
        """The checks of the scheme's settings ``mfer.validation`` runs before anything is built."""
        return []

    def model_input(self, run: "TrainingRun", x_u8: torch.Tensor) -> torch.Tensor:
        """uint8 NHWC batch -> the augmented, normalised model input (the configured chain)."""
        return run.augment(to_model_input(x_u8, run.cfg.data.image_size, run.channels_last))

    def batch_loss(self, run: "TrainingRun", x_u8: torch.Tensor, y: torch.Tensor, *soft: torch.Tensor) -> torch.Tensor:
        """The loss of one uint8 NHWC batch on the device (``soft``: FERPlus vote targets, if any)."""
        x = self.model_input(run, x_u8)
        with run.autocast():
            out = run.forward_train(x, y)
        return training_loss(run.criterion, out, y, *soft)

    def start_epoch(self, epoch: int) -> None:
        """Before epoch ``epoch`` (0-based) trains, fresh or resumed: phase switches happen here."""
        self.epoch = epoch

    def lr_multiplier(self, epoch: int) -> float:
        """The scheme's factor on the LR schedule during epoch ``epoch`` (0-based), 1 unless a phase
        trains at another LR (MAFER's fine-tune). The schedule and a resume both read it
        (``mfer.schedule.lr_factor``), so it must depend on the epoch number alone."""
        return 1.0

    def end_epoch(self) -> dict[str, float]:
        """After the epoch's last step: update per-epoch state; scalars for the epoch's metrics row
        (prefixed ``scheme_`` there)."""
        return {}

    def evaluate_extra(self, run: "TrainingRun", split: "ArraySplit") -> dict[str, float]:
        """Scalars beyond the standard evaluation of ``split`` with the current weights (MAFER's
        low-resolution accuracies): reported with the split's prefix (``val_``, ``test_``)."""
        return {}
