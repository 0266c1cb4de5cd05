"""TrainConfig is Hydra's structured schema: every field takes a plain key=value under every
trainer preset, the YAML groups list only what differs from the dataclass defaults, and the
mfer-train CLI accepts fields no YAML group mentions."""
import dataclasses
import json
import subprocess
import sys
from pathlib import Path

import pytest
from hydra import compose, initialize_config_module
from omegaconf import OmegaConf

from mfer.config import TrainConfig

CONF = Path(__file__).resolve().parents[1] / "mfer" / "conf"
GROUPS = ("model", "loss", "optim", "data", "trainer")


def leaf_defaults(node=None, prefix: str = "") -> dict:
    """{"data.eval_batch_size": 256, "model.dan.num_heads": 4, ...}: every TrainConfig leaf field
    (nested sections such as a method's own settings included) and its default."""
    node = TrainConfig() if node is None else node
    out = {}
    for f in dataclasses.fields(node):
        value = getattr(node, f.name)
        if dataclasses.is_dataclass(value):
            out.update(leaf_defaults(value, f"{prefix}{f.name}."))
        else:
            out[f"{prefix}{f.name}"] = value
    return out


def as_override(value) -> str:
    """A value as Hydra's override grammar writes it."""
    if value is None:
        return "null"
    if isinstance(value, bool):
        return str(value).lower()
    if isinstance(value, list):
        return "[" + ",".join(map(as_override, value)) + "]"
    return str(value)


@pytest.mark.parametrize("trainer", ["default", "paper", "smoke"])
def test_every_field_takes_a_plain_override(trainer):
    fields = leaf_defaults()
    assert len(fields) > 50  # the walk found the schema
    # One composition takes them all: Hydra refuses the whole list at the first key it cannot set, naming
    # it, and each value is then read back (one composition per field proved the same, 20x slower).
    with initialize_config_module("mfer.conf", version_base="1.3"):
        cfg = compose("train", overrides=[f"trainer={trainer}",
                                          *(f"{key}={as_override(default)}" for key, default in fields.items())])
    for key, default in fields.items():
        assert OmegaConf.select(cfg, key) == default, key


@pytest.mark.parametrize("group", GROUPS)
def test_yaml_groups_list_only_what_differs_from_the_defaults(group):
    defaults = getattr(TrainConfig(), group)
    for path in sorted((CONF / group).glob("*.yaml")):
        entries = OmegaConf.to_container(OmegaConf.load(path)) or {}
        for key, value in entries.items():
            assert value != getattr(defaults, key), f"{path.name}: {key}: {value!r} is the dataclass default"


def test_fields_missing_from_every_group_compose():
    with initialize_config_module("mfer.conf", version_base="1.3"):
        cfg = compose("train", overrides=["data.eval_batch_size=64", "trainer=smoke", "optim.min_lr_ratio=0.1",
                                          "trainer.checkpoint_every=2"])
    assert (cfg.data.eval_batch_size, cfg.optim.min_lr_ratio, cfg.trainer.checkpoint_every) == (64, 0.1, 2)
    assert cfg.trainer.max_steps_per_epoch == 3  # the smoke preset still applies


def test_cli_takes_a_field_no_group_lists(tmp_path):
    out = subprocess.run([sys.executable, "-m", "mfer.cli.train", "data.eval_batch_size=64", "trainer=smoke",
                          "data.synthetic_train=140", "data.synthetic_test=70", "data.image_size=32",
                          "trainer.device=cpu", f"hydra.run.dir={tmp_path}"],
                         capture_output=True, text=True, timeout=300)
    assert out.returncode == 0, out.stderr
    config = json.loads((tmp_path / "metrics.json").read_text())["config"]
    assert config["data"]["eval_batch_size"] == 64 and config["trainer"]["epochs"] == 2
