"""A trial's configuration from its parameters: the rule the trainable applies when a trial starts
and the results store applies again to a trial that died before its first checkpoint — one rule,
below both, so the two can never build different configs."""
from __future__ import annotations

import copy
import json
from typing import Any

from omegaconf import OmegaConf

from mfer.config import TrainConfig
from mfer_platform.keys import ROW_KEY, SEED_KEY, TRIAL_INDEX


def choice_text(value: Any) -> str:
    """The one spelling of a value in tables, legends and labels: lists as compact JSON
    (``[0.5,0.75,1.0]``, every number at full precision), anything else as ``str``."""
    return json.dumps(value, separators=(",", ":")) if isinstance(value, (list, tuple)) else str(value)


def encode_choice(value: Any) -> Any:
    """Optuna's categorical takes only scalars: lists (e.g. Msc fractions) travel as their ``choice_text``,
    so params.json, the Optuna study and the tables spell them alike (Ray's trial folder names then read
    ``0_5_0_75_1_0``: Ray replaces every character but letters, digits, ``-`` and ``_``)."""
    return value if value is None or isinstance(value, (bool, int, float, str)) else choice_text(value)


def decode_choice(value: Any) -> Any:
    """``encode_choice`` undone; also reads the ``json:[0.5, 0.75, 1.0]`` spelling of stores written before.
    A string parameter that is itself a JSON list would be read as the list: no TrainConfig string is."""
    if isinstance(value, str) and value.startswith("json:"):
        return json.loads(value[5:])
    if isinstance(value, str) and value.startswith("[") and value.endswith("]"):
        try:
            return json.loads(value)
        except json.JSONDecodeError:
            return value
    return value


def trial_values(config: dict[str, Any], first_seed: int, rows: dict[str, dict] | None = None) -> dict[str, Any]:
    """Dotted-key overrides of one trial: its named row's overrides (``config["row"]`` names it, and
    stays in Ray's params for grouping), the sampled values, decoded, plus its seed."""
    values = dict((rows or {})[config[ROW_KEY]]) if ROW_KEY in config else {}
    values.update({k: decode_choice(v) for k, v in config.items() if not k.startswith("__") and k != ROW_KEY})
    if TRIAL_INDEX in config:
        values[SEED_KEY] = first_seed + int(config[TRIAL_INDEX])
    values.setdefault(SEED_KEY, first_seed)
    return values


def apply_overrides(base: dict, values: dict[str, Any]) -> TrainConfig:
    """``base`` (nested dict) with dotted-key values set, validated into a TrainConfig."""
    # imported here: the validation imports the registries (torch, timm: ~10 s), which readers that only
    # spell a trial's values (mfer-status, the progress lines) have no use for
    from mfer.validation import to_train_config

    cfg = OmegaConf.create(copy.deepcopy(base))
    for key, value in values.items():
        OmegaConf.update(cfg, key, value, merge=False)
    return to_train_config(OmegaConf.to_container(cfg))
