"""An offline Hugging Face hub cache, built the way huggingface_hub lays it out, from a randomly
initialised timm model: ``HF_HOME/hub/models--timm--<name.tag>/snapshots/<rev>/model.safetensors``
and ``refs/main`` holding ``<rev>``. Tests point ``HF_HOME`` at it with ``HF_HUB_OFFLINE=1``."""
from __future__ import annotations

from pathlib import Path

import timm
import torch
from safetensors.torch import save_file

REVISION = "0" * 40


def build_hub_cache(hf_home: Path, name: str, seed: int = 0) -> Path:
    """The cached weights file of timm's ``name`` (``arch.tag``), 1000-class head included, as the hub has it."""
    repo = hf_home / "hub" / f"models--timm--{name}"
    snapshot = repo / "snapshots" / REVISION
    snapshot.mkdir(parents=True)
    (repo / "refs").mkdir()
    (repo / "refs" / "main").write_text(REVISION)
    torch.manual_seed(seed)
    model = timm.create_model(name.split(".")[0], num_classes=1000)
    path = snapshot / "model.safetensors"
    save_file({k: v.contiguous() for k, v in model.state_dict().items()}, str(path))
    return path


def hub_env(base: dict, hf_home: Path) -> dict:
    return {**base, "HF_HOME": str(hf_home), "HF_HUB_OFFLINE": "1"}
