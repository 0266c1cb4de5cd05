"""A trial's selected-epoch model, read back from its latest checkpoint folder under ``storage_path``.

What exports and figures start from. Only ``meta.json`` and ``best_model.safetensors`` are read:
JSON and safetensors, never a pickle, since everything under a ``storage_path`` is untrusted.
"""
from __future__ import annotations

from dataclasses import dataclass
from typing import Optional

import pandas as pd
import torch
from safetensors.torch import load as load_safetensors

from mfer.config import TrainConfig
from mfer.model import build_model
from mfer.validation import to_train_config
from mfer_platform.layout import (POINTER_FILE, UPLOAD_COMPLETE, StoreError, exists, open_storage, read_bytes,
                                  read_json)


class CheckpointError(StoreError):
    """A checkpoint that cannot serve as the model its config describes; the message says why."""


def check_state_dict(model: torch.nn.Module, state: dict[str, torch.Tensor], source: str) -> None:
    """Load ``state`` strictly into ``model``, or say which keys are missing, extra or mis-shaped."""
    expected = model.state_dict()
    missing = sorted(set(expected) - set(state))
    extra = sorted(set(state) - set(expected))
    shapes = [f"{k}: file {tuple(state[k].shape)} vs model {tuple(v.shape)}"
              for k, v in expected.items() if k in state and state[k].shape != v.shape]
    if missing or extra or shapes:
        raise CheckpointError(f"{source} does not fit the model described by its config: {len(missing)} missing keys "
                              f"{missing[:3]}, {len(extra)} unexpected {extra[:3]}, {len(shapes)} wrong shapes {shapes[:3]}")
    model.load_state_dict(state, strict=True)


@dataclass
class TrialCheckpoint:
    """A trial's selected-epoch model, read from its latest checkpoint folder."""

    meta: dict  # the checkpoint's meta.json
    # pretrained_file and pretrained cleared: ``state`` holds every weight, the path was the training
    # machine's, and an exported model or a prediction must never reach for the hub
    cfg: TrainConfig
    pretrained_file: Optional[str]  # the initial weights during training: cfg.model.pretrained_file or .pretrained
    state: dict[str, torch.Tensor]  # model weights under their plain state-dict names
    model: torch.nn.Module  # built from cfg with ``state`` loaded, in eval mode, on the CPU


def weights_folder(fs, experiment: str, ckpt: str, trial_id: str) -> str:
    """Where a trial checkpoint's files are: ``ckpt`` itself, or the upload its pointer names (the
    trainable uploads interval and final checkpoints itself, ``layout.POINTER_FILE``). A pending final
    upload counts once it is whole; the pointer is untrusted, so it may only name a folder of its trial."""
    if not exists(fs, f"{ckpt}/{POINTER_FILE}"):
        return ckpt
    pointer = read_json(fs, f"{ckpt}/{POINTER_FILE}")
    rel = pointer.get("path") if isinstance(pointer, dict) else None
    trial_dir = ckpt.removeprefix(f"{experiment}/").split("/")[0]
    if not isinstance(rel, str) or not rel.startswith(f"{trial_dir}/") or ".." in rel.split("/"):
        raise CheckpointError(f"{ckpt}/{POINTER_FILE} does not name an upload of its trial: {rel!r}")
    target = f"{experiment}/{rel}"
    if pointer.get("pending") and not exists(fs, f"{target}/{UPLOAD_COMPLETE}"):
        raise CheckpointError(f"trial {trial_id}: its final checkpoint {target} is still uploading or its upload "
                              f"never completed (its node or the driver died first); its metrics stand. Wait "
                              f"for mfer-sweep to finish, or re-run the trial to export it")
    return target


def read_checkpoint(storage_path: str, trial: pd.Series) -> TrialCheckpoint:
    """The validation-selected weights of ``trial`` (a trials-table row, which names its experiment),
    checked against its config."""
    name = trial["experiment"]
    if not trial.get("checkpoint"):
        raise CheckpointError(f"trial {trial['trial_id']} of {name!r} has no checkpoint (it failed before its first epoch)")
    fs, root = open_storage(storage_path)
    ckpt = weights_folder(fs, f"{root}/{name}", f"{root}/{name}/{trial['checkpoint']}", trial["trial_id"])
    try:
        meta = read_json(fs, f"{ckpt}/meta.json")
        weights = load_safetensors(read_bytes(fs, f"{ckpt}/best_model.safetensors"))
    except Exception as e:  # JSON and safetensors each raise their own type for a truncated or edited file
        raise CheckpointError(f"{ckpt}: meta.json or best_model.safetensors is corrupt or truncated ({e})") from None
    state = {k.removeprefix("model."): v.contiguous() for k, v in weights.items() if k.startswith("model.")}
    cfg = to_train_config(meta["config"])
    pretrained = cfg.model.pretrained_file or cfg.model.pretrained
    cfg.model.pretrained_file = cfg.model.pretrained = None
    model = build_model(cfg.model, len(meta["classes"]), cfg.data.image_size)
    check_state_dict(model, state, f"{ckpt}/best_model.safetensors")
    return TrialCheckpoint(meta, cfg, pretrained, state, model.eval())
