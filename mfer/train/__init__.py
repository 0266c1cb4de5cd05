"""Training: build a run (``build``), train it an epoch at a time (``engine``), evaluate
(``evaluate``), checkpoint and resume (``checkpoint``), and ``fit``, which composes them (``loop``)."""
from mfer.train.engine import NonFiniteLossError
from mfer.train.loop import EpochEnd, fit

__all__ = ["fit", "EpochEnd", "NonFiniteLossError"]
