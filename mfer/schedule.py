"""Learning-rate schedules, stepped once per epoch (as MFER's ExponentialLR(0.95)).

``LR_SCHEDULES`` is the registry ``optim.scheduler`` names a key of. It is called "LR schedule"
throughout, because the sweep platform's "schedulers" are Ray Tune's trial schedulers (ASHA,
PBT). It lives beside the other registries rather than in ``mfer.train``, so ``mfer.validation``
can check names against it while the trainer, above both, validates its config.
"""
from __future__ import annotations

import math
from typing import Callable

import torch

from mfer.config import OptimConfig


def _exponential(cfg: OptimConfig, epochs: int) -> Callable[[int], float]:
    return lambda e: cfg.gamma**e


def _cosine(cfg: OptimConfig, epochs: int) -> Callable[[int], float]:
    """Linear warm-up over ``warmup_epochs``, then cosine down to ``min_lr_ratio``."""
    warm = max(0, cfg.warmup_epochs)

    def factor(e: int) -> float:
        if e < warm:
            return (e + 1) / (warm + 1)
        t = (e - warm) / max(1, epochs - warm)
        return cfg.min_lr_ratio + (1 - cfg.min_lr_ratio) * 0.5 * (1 + math.cos(math.pi * min(1.0, t)))

    return factor


# optim.scheduler -> factory(cfg, epochs) of the LR factor per completed epoch.
LR_SCHEDULES: dict[str, Callable[[OptimConfig, int], Callable[[int], float]]] = {
    "exponential": _exponential,
    "cosine": _cosine,
}


def lr_factor(cfg: OptimConfig, epochs: int, epoch: int) -> float:
    """The schedule's LR multiplier after ``epoch`` completed epochs."""
    return LR_SCHEDULES[cfg.scheduler](cfg, epochs)(epoch)


def build_lr_schedule(opt: torch.optim.Optimizer, cfg: OptimConfig, epochs: int) -> torch.optim.lr_scheduler.LambdaLR:
    return torch.optim.lr_scheduler.LambdaLR(opt, LR_SCHEDULES[cfg.scheduler](cfg, epochs))
