"""Training: the loop (``fit``), evaluation, schedules and full-state checkpoints."""
from mfer.train.loop import EpochEnd, NonFiniteLossError, fit

__all__ = ["fit", "EpochEnd", "NonFiniteLossError"]
