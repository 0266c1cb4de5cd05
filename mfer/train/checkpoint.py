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
"""
from __future__ import annotations

import json
import os
import shutil
from pathlib import Path
from typing import Any

import torch
from safetensors.torch import save_file

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
