"""Full-state checkpoints that resume a run exactly where it stopped, and load without pickles.

A checkpoint is a folder:
- ``state.pt``: model, feature-loss centres, optimizer, scheduler, grad scaler, completed
  epochs, history and best-so-far bookkeeping — plain tensors and Python scalars, so it loads
  with ``torch.load(weights_only=True)``. Randomness needs no saved state: the trainer derives
  every epoch's seed from (seed, epoch), so epoch e after a resume draws what it would have.
- ``best_model.safetensors``: the selected epoch's model + centres (what export ships).
- ``meta.json``: the config and the metrics so far (readable without torch).
Folders are written beside the target and renamed into place, so a crash never leaves half a
checkpoint.

``Progress`` is the loop's bookkeeping between epochs; ``save_progress`` writes it with the run's
components, and ``resume`` restores both into a freshly built ``TrainingRun``.
"""
from __future__ import annotations

import json
import math
import os
import shutil
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

import torch
from safetensors.torch import load_file, save_file

from mfer.schedule import lr_factor
from mfer.train.build import TrainingRun

STATE = "state.pt"
BEST = "best_model.safetensors"
META = "meta.json"


def save_checkpoint(folder: Path, state: dict[str, Any], best_weights: dict[str, torch.Tensor], meta: dict) -> Path:
    folder = Path(folder)
    tmp = folder.with_name(folder.name + ".tmp")
    shutil.rmtree(tmp, ignore_errors=True)
    tmp.mkdir(parents=True)
    torch.save(state, tmp / STATE)
    save_file({k: v.contiguous() for k, v in best_weights.items()}, str(tmp / BEST))
    (tmp / META).write_text(json.dumps(meta, indent=1, default=str))
    old = folder.with_name(folder.name + ".old")
    if folder.exists():
        os.replace(folder, old)
    os.replace(tmp, folder)
    shutil.rmtree(old, ignore_errors=True)
    return folder


def add_to_meta(folder: Path, extra: dict) -> None:
    """Merge ``extra`` into a saved checkpoint's ``meta.json`` (atomically: a reader sees the old
    file or the new one), for what is known only after saving, such as the final test evaluation."""
    path = Path(folder) / META
    meta = {**json.loads(path.read_text()), **extra}
    tmp = path.with_name(META + ".tmp")
    tmp.write_text(json.dumps(meta, indent=1, default=str))
    os.replace(tmp, path)


def load_state(folder: Path) -> dict[str, Any]:
    return torch.load(Path(folder) / STATE, map_location="cpu", weights_only=True)


@dataclass
class Progress:
    """What the loop carries from epoch to epoch; ``state.pt`` holds it beside the components."""

    best_weights: dict[str, torch.Tensor]  # the selected epoch's model + centres, on the CPU
    epoch: int = 0  # completed epochs
    history: list[dict] = field(default_factory=list)  # one metrics row per completed epoch
    best: dict = field(default_factory=lambda: {"score": -math.inf, "epoch": 0, "val": None})
    train_images: int = 0
    train_seconds: float = 0.0


def snapshot_weights(model: torch.nn.Module, criterion: torch.nn.Module) -> dict[str, torch.Tensor]:
    """CPU copies of the model's and the criterion's tensors, as ``best_model.safetensors`` names them."""
    out = {f"model.{k}": v.detach().to("cpu", copy=True) for k, v in model.state_dict().items()}
    out.update({f"loss.{k}": v.detach().to("cpu", copy=True) for k, v in criterion.state_dict().items()})
    return out


def load_weights(model: torch.nn.Module, criterion: torch.nn.Module, weights: dict[str, torch.Tensor]) -> None:
    model.load_state_dict({k[6:]: v for k, v in weights.items() if k.startswith("model.")})
    criterion.load_state_dict({k[5:]: v for k, v in weights.items() if k.startswith("loss.")})


def fresh_progress(run: TrainingRun) -> Progress:
    return Progress(snapshot_weights(run.model, run.criterion))


def save_progress(run: TrainingRun, progress: Progress, folder: Path, last: dict) -> Path:
    """The full-state checkpoint after ``progress.epoch`` epochs; ``last`` is that epoch's metrics."""
    state = {
        "model": run.model.state_dict(), "loss": run.criterion.state_dict(), "optimizer": run.optimizer.state_dict(),
        "scheduler": run.scheduler.state_dict(), "scaler": run.scaler.state_dict(), "epoch": progress.epoch,
        "history": progress.history, "best": progress.best, "train_images": progress.train_images,
        "train_seconds": progress.train_seconds,
    }
    return save_checkpoint(folder, state, progress.best_weights, {**run.static, "history": progress.history, "last": last})


def apply_optim_config(run: TrainingRun) -> None:
    """After loading optimizer state, the config's lr and weight decay win over the saved ones.

    For a plain resume they are equal; for PBT's exploit step (another trial's checkpoint with a
    mutated config) this is what makes the mutation take effect.
    """
    o, opt, sched = run.cfg.optim, run.optimizer, run.scheduler
    sched.base_lrs = [o.lr] * len(opt.param_groups)
    factor = lr_factor(o, run.cfg.trainer.epochs, sched.last_epoch)
    for group in opt.param_groups:
        group["initial_lr"] = o.lr
        group["lr"] = o.lr * factor
    opt.param_groups[0]["weight_decay"] = o.weight_decay  # group 0 is the decayed one


def resume(run: TrainingRun, folder: Path) -> Progress:
    """Restore a checkpoint into a freshly built run (the config's optimiser settings win); its progress."""
    st = load_state(folder)
    run.model.load_state_dict(st["model"])
    run.criterion.load_state_dict(st["loss"])
    run.optimizer.load_state_dict(st["optimizer"])
    run.scheduler.load_state_dict(st["scheduler"])
    run.scaler.load_state_dict(st["scaler"])
    apply_optim_config(run)
    return Progress(load_file(str(Path(folder) / BEST)), st["epoch"], st["history"], st["best"],
                    st["train_images"], st["train_seconds"])
