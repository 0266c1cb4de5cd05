"""Device names as every CLI takes them: ``auto`` (CUDA when present, else CPU), ``cpu``, ``cuda:N``."""
from __future__ import annotations

import torch

from mfer.config import ConfigError


def resolve_device(name: str, key: str = "trainer.device") -> torch.device:
    """The torch device ``name`` asks for; a CUDA device this machine does not have is a ConfigError
    naming ``key``, raised before any data is loaded (torch's own error comes later, as a traceback)."""
    if name == "auto":
        return torch.device("cuda" if torch.cuda.is_available() else "cpu")
    device = torch.device(name)
    if device.type == "cuda":
        count = torch.cuda.device_count() if torch.cuda.is_available() else 0
        if (device.index or 0) >= count:
            raise ConfigError(f"{key}={name!r}: this machine has {count} CUDA GPU(s) visible; "
                              f"use {key}=auto or {key}=cpu")
    return device
