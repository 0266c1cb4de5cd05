"""Device names as every CLI takes them: ``auto`` (CUDA when present, else CPU), ``cpu``, ``cuda:N``."""
from __future__ import annotations

import torch


def resolve_device(name: str) -> torch.device:
    if name == "auto":
        return torch.device("cuda" if torch.cuda.is_available() else "cpu")
    return torch.device(name)
