"""The Hydra config tree of ``mfer-train``: ``train.yaml`` and one folder per config group.

Importing this package registers ``TrainConfig`` in Hydra's ConfigStore as ``train_schema``, the
structured schema ``train.yaml``'s defaults list starts from: every TrainConfig field then takes
a plain ``key=value`` override, and the YAML groups list only what differs from the dataclass
defaults. Hydra imports this package whenever it reads configs from it — the CLI names it as
``pkg://mfer.conf``, and ``initialize_config_module("mfer.conf")`` (the compose API that tests and
the sweep platform use) opens it the same way — so no caller registers anything itself.
"""
from hydra.core.config_store import ConfigStore

from mfer.config import TrainConfig

ConfigStore.instance().store(name="train_schema", node=TrainConfig)
