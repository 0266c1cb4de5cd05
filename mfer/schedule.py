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


def _unscaled(epoch: int) -> float:
    return 1.0


def lr_factor(cfg: OptimConfig, epochs: int, epoch: int, multiplier: Callable[[int], float] = _unscaled) -> float:
    """The schedule's LR multiplier after ``epoch`` completed epochs, times ``multiplier(epoch)``:
    a training scheme's factor for the epoch (MAFER's fine-tune phase), 1 for most."""
    return LR_SCHEDULES[cfg.scheduler](cfg, epochs)(epoch) * multiplier(epoch)


def build_lr_schedule(opt: torch.optim.Optimizer, cfg: OptimConfig, epochs: int,
                      multiplier: Callable[[int], float] = _unscaled) -> torch.optim.lr_scheduler.LambdaLR:
    """The per-epoch schedule ``lr_factor`` describes. The factor is a function of the epoch number
    alone, so a resumed run (``apply_optim_config`` sets the LR with the same function) and an
    uninterrupted one train every epoch at the same LR."""
    factor = LR_SCHEDULES[cfg.scheduler](cfg, epochs)
    return torch.optim.lr_scheduler.LambdaLR(opt, lambda e: factor(e) * multiplier(e))
