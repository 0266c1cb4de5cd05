"""A concise live view of a sweep, instead of Ray's per-trial log spam.

One line every few seconds (and on every trial end): trials running / done / early-stopped /
errored, the best result so far with its config, and an ETA from the measured epoch time.
An errored trial prints its own first error line and the path of its full traceback.
"""
from __future__ import annotations

import time
from typing import Optional

from ray.tune import Callback

from mfer_platform.overrides import decode_choice


def _fmt_config(config: dict) -> str:
    parts = []
    for k, v in config.items():
        if k.startswith("__"):
            continue
        v = decode_choice(v)
        parts.append(f"{k.split('.')[-1]}={v:.3g}" if isinstance(v, float) else f"{k.split('.')[-1]}={v}")
    return " ".join(parts)


class LiveTable(Callback):
    def __init__(self, metric: str, mode: str, epochs: int, total_trials: int, slots: int,
                 every_s: float = 10.0) -> None:
        self.metric, self.mode, self.epochs = metric, mode, epochs
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
            self.best = (v, trial.trial_id, _fmt_config(trial.config))
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
        print(f"  ! trial {trial.trial_id} errored: {msg[-1] if msg else 'see error.txt'}\n"
              f"    traceback: {path}/error.txt", flush=True)
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
        best = f"best {self.metric} {self.best[0]:.4f} ({self.best[2]})" if self.best else "best -"
        print(
            f"[{now - self.t0:6.0f}s] trials {len(self.running)} running | {self.done} done | "
            f"{self.stopped} stopped early | {self.errored} errored | of {self.total} | {best} | ETA {self._eta()}",
            flush=True,
        )
