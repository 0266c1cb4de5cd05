"""Fault injection for resilience tests and chaos drills; inert unless ``MFER_FAULTS`` is set.

``MFER_FAULTS=raise@2`` makes every trial raise once, right after reporting epoch 2 (its
checkpoint is already persisted); ``kill@2`` makes the trial's worker process die (SIGKILL) at
the same point, as an OOM kill or a lost machine would. A marker file per trial under
``MFER_FAULTS_DIR`` records that the fault fired, so the retry runs clean: the sweep must then
finish every trial exactly once. The variables reach Ray workers through the environment of
the processes that start Ray (``ray.init`` or ``ray start``).
"""
from __future__ import annotations

import os
import signal
from pathlib import Path


class InjectedFault(RuntimeError):
    """Raised by ``MFER_FAULTS=raise@N`` (never in normal operation)."""


def maybe_fail(trial_id: str, epoch: int) -> None:
    spec = os.environ.get("MFER_FAULTS", "")
    if not spec:
        return
    kind, _, at = spec.partition("@")
    if int(at or 0) != epoch:
        return
    marker = Path(os.environ.get("MFER_FAULTS_DIR", "/tmp/mfer-faults")) / f"{trial_id}.{kind}"
    if marker.exists():
        return
    marker.parent.mkdir(parents=True, exist_ok=True)
    marker.touch()
    if kind == "kill":
        os.kill(os.getpid(), signal.SIGKILL)
    raise InjectedFault(f"injected fault ({spec}) in trial {trial_id} after epoch {epoch}")
