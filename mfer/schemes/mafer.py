"""MAFER's two-step procedure as the two phases of one run (Massoli et al., "MAFER: a Multi-resolution
Approach to Facial Expression Recognition", arXiv 2105.02481; released code
fvmassoli/mafer-multires-facial-expression-recognition).

The paper trains in two steps: a multi-resolution step (each training image bilinearly down to a random
resolution and back up, ``datasets/affwild2.py::__lower_resolution``), then a fixed-resolution fine-tune on
the FER set (``main_fer_rafdb.py``, ``trainer.py``). Here both are phases of one run with continuous
epochs, so ASHA rungs, checkpoints and the LR schedule count one run's epochs:

- phase 1, epochs ``< scheme.mafer.multires_epochs``: the configured augmentation chain plus ``multires``
  (read from the released code, datasets/affwild2.py: res = 2^⌊3 + 5U⌋, down and back up, images at or
  below res unchanged). It runs on the normalised model-size tensor: the packed cache holds every image at
  ``data.image_size`` already (the native resolution is gone before training), and bilinear resampling
  commutes with the per-channel normalisation (``mfer.data.augment.down_up``), so nothing is gained by
  resampling the uint8 image;
- phase 2, the rest: the same chain without it, at ``finetune_lr_factor`` times the LR schedule (our
  reading: the released fine-tune restarts Adam at lr 1e-4 for the backbone; one factor on our schedule is
  the part of that which fits one continuous run). The factor is a function of the epoch number
  (``lr_multiplier``), which the LR schedule and a resume both read, so a run resumed across the switch
  trains at the LR the uninterrupted one did.

Low-resolution evaluation (read from the released code, datasets/affwild2.py: at evaluation
``valid_resolution`` replaces the random draw): the accuracy with every image bilinearly down to r x r and
back up, for each r of ``scheme.mafer.eval_resolutions``, on val every epoch and on test at the end
(``val_acc_r16``, ``test_acc_r16`` …).

Not carried over from the released fine-tune: its separate classifier LR (1e-2), class-weighted CE,
ReduceLROnPlateau, batch accumulation and albumentations chain; the run's own optimiser, criterion and
augmentation settings apply in both phases.
"""
from __future__ import annotations

from functools import partial
from typing import TYPE_CHECKING

import torch

from mfer.config import TrainConfig
from mfer.data.augment import down_up, multires, to_model_input
from mfer.schemes.base import Requirement, TrainingScheme

if TYPE_CHECKING:
    from mfer.data.arrays import ArraySplit
    from mfer.train.build import TrainingRun

MIN_RESOLUTION = 8  # the smallest resolution MAFER's draw reaches (2^3)


def multires_epochs(cfg: TrainConfig) -> int:
    """Epochs of phase 1: ``scheme.mafer.multires_epochs``, or half the run when it is None."""
    n = cfg.scheme.mafer.multires_epochs
    return cfg.trainer.epochs // 2 if n is None else n


class MAFER(TrainingScheme):
    """Multi-resolution phase, then fixed-resolution fine-tune, in one run; low-resolution accuracies."""

    config_key = "mafer"

    def __init__(self, cfg: TrainConfig, num_classes: int, feat_dim: int) -> None:
        super().__init__(cfg, num_classes, feat_dim)
        self.switch_epoch = multires_epochs(cfg)  # the first epoch of phase 2

    @classmethod
    def requirements(cls, cfg: TrainConfig) -> list[Requirement]:
        m, epochs, size = cfg.scheme.mafer, cfg.trainer.epochs, cfg.data.image_size
        n = m.multires_epochs
        res = list(m.eval_resolutions)
        return [
            ("scheme.mafer.multires_epochs", n is None or 0 <= n <= epochs,
             f"must lie in [0, trainer.epochs={epochs}] (null: half the run)", n),
            ("scheme.mafer.finetune_lr_factor", m.finetune_lr_factor > 0, "must be > 0 (1 keeps the schedule's LR)",
             m.finetune_lr_factor),
            ("scheme.mafer.eval_resolutions", all(MIN_RESOLUTION <= r < size for r in res),
             f"each resolution must lie in [{MIN_RESOLUTION}, data.image_size={size}) pixels", res),
            ("scheme.mafer.eval_resolutions", len(set(res)) == len(res), "resolutions must not repeat", res),
            ("data.multires", not cfg.data.multires, "is switched by scheme.name=mafer per phase (phase 1 only): "
             "set data.multires=false", cfg.data.multires),
        ]

    def phase(self, epoch: int) -> int:
        """1 (multi-resolution) before ``switch_epoch``, 2 (fine-tune) from it on."""
        return 1 if epoch < self.switch_epoch else 2

    def lr_multiplier(self, epoch: int) -> float:
        return 1.0 if self.phase(epoch) == 1 else self.settings.finetune_lr_factor

    def model_input(self, run: "TrainingRun", x_u8: torch.Tensor) -> torch.Tensor:
        """Phase 1: ``multires`` ahead of the configured chain (where ``data.multires`` puts it); phase 2:
        the configured chain alone."""
        x = to_model_input(x_u8, run.cfg.data.image_size, run.channels_last)
        return run.augment(multires(x) if self.phase(self.epoch) == 1 else x)

    def end_epoch(self) -> dict[str, float]:
        return {"phase": float(self.phase(self.epoch))}

    def evaluate_extra(self, run: "TrainingRun", split: "ArraySplit") -> dict[str, float]:
        """Accuracy on ``split`` with every image down to r x r and back up, per evaluation resolution."""
        return {f"acc_r{r}": run.evaluate(split, partial(down_up, res=r))["acc"]
                for r in self.settings.eval_resolutions}
