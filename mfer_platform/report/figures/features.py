"""A trained model for figures — from a sweep trial's checkpoint or an export folder — and the
pooled features of its evaluation images.

Figures look at the *validation* split carved from train: that is the split model selection
used, and the test split stays untouched until the one final evaluation (fer_pitfalls #2).
Features come from ``mfer.train.evaluate.predict``, the same pass evaluation makes, so the
pictures show exactly the features ``val_compactness`` was computed from.
"""
from __future__ import annotations

import contextlib
from dataclasses import dataclass
from pathlib import Path

import pandas as pd
import torch

from mfer.config import TrainConfig
from mfer.validation import to_train_config
from mfer.data.arrays import ArraySplit
from mfer.data.formats.base import DatasetError
from mfer.data.registry import load_dataset
from mfer.data.splits import stratified_split
from mfer.device import resolve_device
from mfer.train.evaluate import Predictions, predict
from mfer_platform.results.checkpoints import read_checkpoint
from mfer_platform.serving.export import load_exported


@dataclass
class TrialModel:
    """A model in eval mode with the config it was trained with and its class names."""

    model: torch.nn.Module
    cfg: TrainConfig
    classes: list[str]
    source: str  # where it came from, for captions: "trial 00000002 (seed 0)" or the export folder

    @property
    def image_size(self) -> int:
        return self.cfg.data.image_size

    @property
    def device(self) -> torch.device:
        return next(self.model.parameters()).device


def from_export(model_dir: str | Path, device: str = "auto") -> TrialModel:
    """An ``mfer-export`` folder (safetensors + JSON, verified; never a pickle)."""
    exported = load_exported(model_dir, device)
    return TrialModel(exported.model, to_train_config(exported.config["train_config"]), exported.classes,
                      f"export {model_dir}")


def from_trial(storage_path: str, trial: pd.Series, device: str = "auto") -> TrialModel:
    """The validation-selected weights of one trial (a trials-table row)."""
    ckpt = read_checkpoint(storage_path, trial)
    return TrialModel(ckpt.model.to(resolve_device(device, "device")), ckpt.cfg, list(ckpt.meta["classes"]),
                      f"trial {trial['trial_id']} (seed {int(trial['seed'])})")


def evaluation_sample(cfg: TrainConfig, max_points: int, seed: int) -> ArraySplit:
    """The validation split of the trial's dataset, or a stratified ``max_points`` subset of it.

    The subset depends only on (labels, max_points, seed), so every group of a sweep on the same
    data shows the same images. Real datasets must be readable at ``data.root`` on this machine."""
    try:
        val = load_dataset(cfg.data).val
    except DatasetError as e:
        raise DatasetError(f"the figures embed the trial's validation images, but its dataset cannot be read here: "
                           f"{e}") from None
    if max_points <= 0 or len(val) <= max_points:
        return val
    _, keep = stratified_split(val.labels, max_points / len(val), seed)
    return val.subset(keep)


def extract(tm: TrialModel, split: ArraySplit, batch_size: int) -> Predictions:
    """Summed logits and pooled features of ``split``, in float32 (no autocast: figures are not timed)."""
    return predict(tm.model, split, batch_size, tm.device, tm.image_size, channels_last=False,
                   autocast=contextlib.nullcontext)
