"""A trial's configuration from its parameters: the rule the trainable applies when a trial starts
and the results store applies again to a trial that died before its first checkpoint — one rule,
below both, so the two can never build different configs."""
from __future__ import annotations

import copy
import json
from typing import Any

from omegaconf import OmegaConf

from mfer.config import TrainConfig
from mfer.validation import to_train_config
from mfer_platform.keys import ROW_KEY, SEED_KEY, TRIAL_INDEX


def encode_choice(value: Any) -> Any:
    """Optuna's categorical takes only scalars: lists (e.g. Msc fractions) travel as JSON strings."""
    return value if value is None or isinstance(value, (bool, int, float, str)) else "json:" + json.dumps(value)


def decode_choice(value: Any) -> Any:
    return json.loads(value[5:]) if isinstance(value, str) and value.startswith("json:") else value


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
    cfg = OmegaConf.create(copy.deepcopy(base))
    for key, value in values.items():
        OmegaConf.update(cfg, key, value, merge=False)
    return to_train_config(OmegaConf.to_container(cfg))
