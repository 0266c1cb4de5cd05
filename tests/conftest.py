"""Shared fixtures: a private packed-data cache and tiny configs composed from the real Hydra tree."""
from __future__ import annotations

import os
import uuid
from pathlib import Path

import pytest
import torch

SHARED = Path(__file__).resolve().parents[1].parent / "shared"


@pytest.fixture(autouse=True, scope="session")
def _private_cache(tmp_path_factory):
    """Keep the packed-array cache of the test session away from the user's ~/.cache/mfer."""
    os.environ["MFER_CACHE"] = str(tmp_path_factory.mktemp("mfer-cache"))
    torch.set_num_threads(max(1, min(2, os.cpu_count() or 1)))


def compose_train(*overrides: str):
    """A TrainConfig composed from mfer/conf exactly as ``mfer-train`` would, plus overrides."""
    from hydra import compose, initialize_config_module
    from omegaconf import OmegaConf

    from mfer.validation import to_train_config

    with initialize_config_module("mfer.conf", version_base="1.3"):
        cfg = compose("train", overrides=list(overrides))
    return to_train_config(OmegaConf.to_container(cfg, resolve=True))


TINY = (
    "data.image_size=32", "data.synthetic_train=140", "data.synthetic_test=70", "data.batch_size=16",
    "data.val_fraction=0.2", "trainer.epochs=2", "trainer.device=cpu",
)


@pytest.fixture
def tiny_cfg():
    return compose_train(*TINY)


@pytest.fixture(scope="session")
def fake_sweep(tmp_path_factory, _private_cache):
    """A storage folder holding one really-trained sweep experiment (tests/fake_sweep.py), built once.
    Tests that write into it work on ``fake_sweep.clone(...)``."""
    from .fake_sweep import build

    return build(tmp_path_factory.mktemp("sweeps"))


@pytest.fixture
def ray_env(tmp_path):
    """A private Ray temp dir (short: it holds unix sockets) and the cleanup of its processes."""
    from .sweeps import kill_processes_mentioning

    token = f"/tmp/rt{uuid.uuid4().hex[:8]}"
    env = {**os.environ, "RAY_TMPDIR": token, "PYTHONUNBUFFERED": "1"}
    yield env
    kill_processes_mentioning(token)
