"""The driver's trial ledger: a Tune callback appending one JSON line per trial event to the experiment
folder (``layout.LEDGER_FILE``).

Ray's own record of trial states is its experiment state, a cloudpickle that anyone who can write the
shared storage could replace with code; readers (the store, extending a sweep) take this JSON file
instead. It also lists trials that died before Ray wrote any file of theirs, with the reason.
"""
from __future__ import annotations

import json
import posixpath
import time
from typing import Any

from ray.tune import Callback

from mfer_platform.layout import LEDGER_FILE, exists, open_storage, read_bytes, write_bytes


def _scalars(result: dict) -> dict[str, Any]:
    """A result's flat scalars (metrics, Ray's counters): what a warm start and a status line need."""
    return {k: v for k, v in (result or {}).items() if isinstance(v, (int, float, str, bool)) or v is None}


def _reason(trial) -> str:
    try:
        lines = [ln for ln in str(trial.get_error() or "").splitlines() if ln.strip()]
    except Exception as e:  # the error file could not be read back: say so rather than lose the event
        return f"error (its error file could not be read: {e})"
    return lines[-1][:500] if lines else "error"


class TrialLedger(Callback):
    """Appends to ``{storage_path}/{name}/mfer_trials.jsonl``. The file is rewritten whole on each event
    (object stores have no append); ``setup`` reloads it, so a resumed driver continues the same ledger."""

    def __init__(self, storage_path: str, name: str):
        self.storage_path, self.name = storage_path, name
        self.lines: list[str] = []

    def setup(self, **info) -> None:
        fs, root = open_storage(self.storage_path)
        path = f"{root}/{self.name}/{LEDGER_FILE}"
        self.lines = read_bytes(fs, path).decode(errors="replace").splitlines() if exists(fs, path) else []

    def _append(self, trial, event: str, **fields) -> None:
        entry = {"trial_id": trial.trial_id if trial is not None else None, "time": time.time(), "event": event,
                 **fields}
        self.lines.append(json.dumps(entry, default=str))
        write_bytes(self.storage_path, f"{self.name}/{LEDGER_FILE}", ("\n".join(self.lines) + "\n").encode())

    def on_trial_start(self, iteration, trials, trial, **info) -> None:
        self._append(trial, "start", status="RUNNING", dir=posixpath.basename(trial.path or ""),
                     config=trial.config, failures=trial.run_metadata.num_failures, error=None)

    def on_trial_complete(self, iteration, trials, trial, **info) -> None:
        self._append(trial, "complete", status="TERMINATED", failures=trial.run_metadata.num_failures,
                     error=None, result=_scalars(trial.last_result))

    def on_trial_error(self, iteration, trials, trial, **info) -> None:
        self._append(trial, "error", status="ERROR", failures=trial.run_metadata.num_failures,
                     error=_reason(trial), result=_scalars(trial.last_result))

    def on_trial_recover(self, iteration, trials, trial, **info) -> None:
        self._append(trial, "recover", status="PENDING", failures=trial.run_metadata.num_failures,
                     error=_reason(trial))

    def on_experiment_end(self, trials, **info) -> None:
        """Tune's run returned — finished, or interrupted (SIGINT) with the trials it had not finished
        listed. A killed driver writes no end: either way the experiment reads as unfinished and is
        resumed, not extended."""
        self._append(None, "end", unfinished=[t.trial_id for t in trials if t.status not in ("TERMINATED", "ERROR")])
