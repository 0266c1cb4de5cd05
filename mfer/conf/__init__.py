"""The Hydra config tree of ``mfer-train``: ``train.yaml`` and one folder per config group.

Importing this package registers ``TrainConfig`` in Hydra's ConfigStore as ``train_schema``, the
structured schema ``train.yaml``'s defaults list starts from: every TrainConfig field then takes
a plain ``key=value`` override, and the YAML groups list only what differs from the dataclass
defaults. Hydra imports this package whenever it reads configs from it — the CLI names it as
``pkg://mfer.conf``, and ``initialize_config_module("mfer.conf")`` (the compose API that tests and
the sweep platform use) opens it the same way — so no caller registers anything itself.
"""
from __future__ import annotations

from importlib import resources

from hydra.core.config_store import ConfigStore
from omegaconf import OmegaConf

from mfer.config import TrainConfig

ConfigStore.instance().store(name="train_schema", node=TrainConfig)


def experiment_dataset(name: str) -> str | None:
    """The ``data`` preset a recipe in ``experiment/`` selects (``paper_rafdb`` -> ``rafdb``), or None:
    what a study built on ``experiment=NAME`` targets, e.g. to look up its published figures."""
    path = resources.files(__name__) / "experiment" / f"{name}.yaml"
    if not path.is_file():
        return None
    defaults = OmegaConf.to_container(OmegaConf.load(str(path))).get("defaults", [])
    return next((d["override /data"] for d in defaults if isinstance(d, dict) and "override /data" in d), None)
