"""Fault injection for resilience tests and chaos drills; inert unless ``MFER_FAULTS`` is set.

Each mode fires right after a trial reports epoch N (its checkpoint is already persisted):

- ``raise@N``: the trial raises once;
- ``kill@N``: the trial's worker process dies (SIGKILL), as an OOM kill or a lost machine would;
- ``hang@N``: the trial stalls until something outside kills it, as a wedged node does. Set on
  one node's ``ray start`` only, it stalls just that node's trials, so a test that kills the
  node always lands mid-trial.

A marker file per trial under ``MFER_FAULTS_DIR`` records that the fault fired, so the retry
runs clean: the sweep must then finish every trial exactly once. The variables reach Ray
workers through the environment of the processes that start Ray (``ray.init`` or ``ray start``).
"""
from __future__ import annotations

import os
import signal
import time
from pathlib import Path

MODES = ("raise", "kill", "hang")


class InjectedFault(RuntimeError):
    """Raised by ``MFER_FAULTS=raise@N`` (never in normal operation)."""


def maybe_fail(trial_id: str, epoch: int) -> None:
    spec = os.environ.get("MFER_FAULTS", "")
    if not spec:
        return
    kind, _, at = spec.partition("@")
    if kind not in MODES:
        raise ValueError(f"MFER_FAULTS={spec!r}: the mode must be one of {', '.join(MODES)} (e.g. raise@2)")
    if int(at or 0) != epoch:
        return
    marker = Path(os.environ.get("MFER_FAULTS_DIR", "/tmp/mfer-faults")) / f"{trial_id}.{kind}"
    if marker.exists():
        return
    marker.parent.mkdir(parents=True, exist_ok=True)
    marker.touch()
    if kind == "kill":
        os.kill(os.getpid(), signal.SIGKILL)
    while kind == "hang":
        time.sleep(60)
    raise InjectedFault(f"injected fault ({spec}) in trial {trial_id} after epoch {epoch}")
