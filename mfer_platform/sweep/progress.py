"""A concise live view of a sweep, instead of Ray's per-trial log spam.

One line every few seconds (and on every trial end): trials running / done / early-stopped /
errored, the best result so far with its config, and an ETA from the measured epoch time.
An errored trial prints its own first error line and the path of its full traceback. Every line
fits ``terminal.WIDTH`` columns (the best config is last, so a long one is what gets cut), unless the
command ran with ``wide=true``.
"""
from __future__ import annotations

import time
from typing import Optional

from ray.tune import Callback

from mfer_platform.terminal import WIDTH, clip, short_config


class LiveTable(Callback):
    def __init__(self, metric: str, mode: str, epochs: int, total_trials: int, slots: int,
                 every_s: float = 10.0, width: Optional[int] = WIDTH) -> None:
        self.metric, self.mode, self.epochs, self.width = metric, mode, epochs, width
        self.total, self.slots, self.every_s = total_trials, max(1, slots), every_s
        self.setup()

    def setup(self, **info) -> None:
        """Called by Tune at every (re)start: a resumed sweep counts from a clean slate."""
        self.t0 = time.monotonic()
        self.last_print = 0.0
        self.epoch_times: list[float] = []
        self.best: Optional[tuple[float, str, str]] = None
        self.done = self.stopped = self.errored = 0
        self.running: set[str] = set()

    def _better(self, v: float) -> bool:
        return self.best is None or (v > self.best[0] if self.mode == "max" else v < self.best[0])

    def on_trial_start(self, iteration, trials, trial, **info) -> None:
        self.running.add(trial.trial_id)

    def on_trial_result(self, iteration, trials, trial, result, **info) -> None:
        self.running.add(trial.trial_id)
        if "epoch_s" in result:
            self.epoch_times.append(float(result["epoch_s"]))
        v = result.get(self.metric)
        if v is not None and self._better(v):
            self.best = (v, trial.trial_id, short_config(trial.config))
        self._maybe_print()

    def on_trial_complete(self, iteration, trials, trial, **info) -> None:
        self.running.discard(trial.trial_id)
        epochs_run = (trial.last_result or {}).get("epoch", self.epochs)
        if epochs_run < self.epochs:
            self.stopped += 1
        else:
            self.done += 1
        self._maybe_print(force=True)

    def on_trial_error(self, iteration, trials, trial, **info) -> None:
        self.running.discard(trial.trial_id)
        self.errored += 1
        path = getattr(trial, "path", None) or ""
        msg = str(getattr(trial, "error_msg", "") or "").strip().splitlines()
        print(clip(f"  ! trial {trial.trial_id} errored: {msg[-1] if msg else 'see error.txt'}", self.width), flush=True)
        print(clip(f"    traceback: {path}/error.txt", self.width), flush=True)
        self._maybe_print(force=True)

    def _eta(self) -> str:
        if not self.epoch_times:
            return "?"
        remaining_trials = max(0, self.total - self.done - self.stopped - self.errored)
        per_epoch = sum(self.epoch_times[-20:]) / len(self.epoch_times[-20:])
        secs = remaining_trials * self.epochs * per_epoch / self.slots
        return f"<={secs / 60:.1f} min" if secs >= 60 else f"<={secs:.0f} s"

    def _maybe_print(self, force: bool = False) -> None:
        now = time.monotonic()
        if not force and now - self.last_print < self.every_s:
            return
        self.last_print = now
        best = f"best {self.metric} {self.best[0]:.4f} {self.best[2]}" if self.best else "best -"
        print(clip(f"[{now - self.t0:5.0f}s] of {self.total}: {len(self.running)} running, {self.done} done, "
                   f"{self.stopped} stopped, {self.errored} errored | ETA {self._eta()} | {best}", self.width),
              flush=True)
