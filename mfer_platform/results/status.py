"""What ``mfer-status`` shows: the sweeps under a storage path, and one sweep's trials, while it runs.

JSON only, like every reader of a storage path: each experiment's sweep record (``mfer_sweep.json``),
the driver's trial ledger (state and config of every trial Tune started, rewritten whole on every trial
event) and each trial's ``result.json`` (one line per epoch). Ray's experiment state, a cloudpickle,
is never opened. Any machine that sees the storage can ask; on remote storage what it sees lags the
run: the ledger by one upload per trial event, ``result.json`` by Ray's sync of the driver's files
(with each experiment snapshot, every 10 s or more; ``SyncConfig.sync_period``, 300 s by default).
"""
from __future__ import annotations

import json
import posixpath
from dataclasses import dataclass, field
from typing import Optional

import pyarrow.fs as pafs

from mfer_platform.keys import SEED_KEY, TRIAL_INDEX
from mfer_platform.layout import (SWEEP_FILE, StoreError, exists, experiment_chain, open_storage, read_json,
                                  read_json_lines)
from mfer_platform.results.trial_files import TrialState, trial_states
from mfer_platform.terminal import WIDTH, clip, short_config

# Ray's state -> ours (the results store's words); TERMINATED splits into completed and stopped by epochs.
STATES = {"RUNNING": "running", "PENDING": "pending", "PAUSED": "paused", "ERROR": "error"}
ORDER = ("running", "pending", "paused", "completed", "stopped", "error")


@dataclass
class TrialStatus:
    number: int  # 1, 2, … in the order the driver started them, across the sweep's experiments
    trial_id: str
    state: str  # one of ORDER
    epochs: int  # epochs reported so far (result.json)
    planned: Optional[int]  # trainer.epochs of this trial
    value: Optional[float]  # the sweep's metric, best over the epochs so far
    config: dict  # the searched values (Tune's config)
    error: Optional[str]
    dir_name: str


@dataclass
class SweepStatus:
    name: str
    search_space: str
    created: str
    metric: str
    mode: str
    experiments: list[str]
    trials: list[TrialStatus] = field(default_factory=list)

    def counts(self) -> dict[str, int]:
        return {s: n for s in ORDER if (n := sum(t.state == s for t in self.trials))}

    def best(self) -> Optional[tuple[float, int, dict]]:
        """(mean metric, n, config) of the best configuration so far: its seeds' values averaged, so a
        configuration that won on one lucky seed shows its n."""
        groups: dict[str, list[TrialStatus]] = {}
        for t in self.trials:
            if t.value is not None:
                key = json.dumps({k: v for k, v in t.config.items() if k not in (SEED_KEY, TRIAL_INDEX)},
                                 sort_keys=True, default=str)
                groups.setdefault(key, []).append(t)
        if not groups:
            return None
        means = [(sum(t.value for t in ts) / len(ts), len(ts), ts[0].config) for ts in groups.values()]
        return (max if self.mode == "max" else min)(means, key=lambda m: m[0])


def _results(fs: pafs.FileSystem, exp_path: str, dir_name: str) -> list[dict]:
    """A trial's result.json rows (a partial last line, as Ray is writing it, is skipped)."""
    if not dir_name:
        return []
    return [row for row in read_json_lines(fs, f"{exp_path}/{dir_name}/result.json") if "epoch" in row]


def _planned(record: dict, config: dict) -> Optional[int]:
    epochs = config.get("trainer.epochs", ((record.get("base_config") or {}).get("trainer") or {}).get("epochs"))
    return int(epochs) if isinstance(epochs, (int, float)) else None


def _trial(number: int, state: TrialState, rows: list[dict], record: dict) -> TrialStatus:
    metric, mode = str(record.get("metric", "val_acc")), record.get("mode", "max")
    values = [r[metric] for r in rows if isinstance(r.get(metric), (int, float))]
    value = (max if mode == "max" else min)(values) if values else None
    epochs = len({r["epoch"] for r in rows})
    planned = _planned(record, state.config)
    ours = STATES.get(state.status, state.status.lower())
    if state.status == "TERMINATED":
        ours = "completed" if planned is None or epochs >= planned else "stopped"
    return TrialStatus(number, state.trial_id, ours, epochs, planned, value, state.config, state.error,
                       state.dir_name)


def sweep_status(storage_path: str, name: str) -> SweepStatus:
    """Sweep ``name`` (with the experiments that extended it) and its trials, as the storage holds them now."""
    fs, root = open_storage(storage_path)
    chain = experiment_chain(storage_path, name)
    if not chain:
        known = ", ".join(s.name for s in list_sweeps(storage_path)) or "none"
        raise StoreError(f"name={name!r}: no sweep of that name under storage_path={storage_path} "
                         f"(sweeps there: {known})")
    record = read_json(fs, f"{root}/{name}/{SWEEP_FILE}")
    status = SweepStatus(name, str(record.get("search_space", "?")), str(record.get("created", "?")),
                         str(record.get("metric", "val_acc")), str(record.get("mode", "max")), chain)
    for experiment in chain:
        exp_path = f"{root}/{experiment}"
        for state in trial_states(fs, exp_path):
            rows = _results(fs, exp_path, state.dir_name)
            status.trials.append(_trial(len(status.trials) + 1, state, rows, record))
    return status


def _check_storage(storage_path: str) -> tuple[pafs.FileSystem, str]:
    fs, root = open_storage(storage_path)
    if fs.get_file_info(root).type != pafs.FileType.Directory:
        raise StoreError(f"storage_path={storage_path!r} not found: give the folder or URI mfer-sweep wrote to "
                         f"(its storage_path=)")
    return fs, root


def list_sweeps(storage_path: str) -> list[SweepStatus]:
    """Every sweep under ``storage_path`` (its extensions counted with it), oldest first."""
    fs, root = _check_storage(storage_path)
    names = sorted(posixpath.basename(i.path) for i in fs.get_file_info(pafs.FileSelector(root))
                   if i.type == pafs.FileType.Directory and exists(fs, f"{i.path}/{SWEEP_FILE}"))
    sweeps = [sweep_status(storage_path, n) for n in names
              if not (read_json(fs, f"{root}/{n}/{SWEEP_FILE}") or {}).get("extends")]
    return sorted(sweeps, key=lambda s: s.created)


def _metric_text(value: Optional[float]) -> str:
    return "-" if value is None else f"{value:.4f}"


def format_sweeps(sweeps: list[SweepStatus], width: Optional[int] = WIDTH) -> str:
    if not sweeps:
        return "no sweeps here yet"
    lines = []
    for s in sweeps:
        counts = ", ".join(f"{n} {state}" for state, n in s.counts().items()) or "no trials yet"
        best = s.best()
        lines.append(clip(f"{s.name}  (space {s.search_space}, created {s.created})", width))
        lines.append(clip(f"  {len(s.trials)} trials: {counts}", width))
        lines.append(clip(f"  best {s.metric} {_metric_text(best[0])} (n={best[1]}) {short_config(best[2])}"
                          if best else f"  best {s.metric} -", width))
    return "\n".join(lines)


def format_trials(s: SweepStatus, width: Optional[int] = WIDTH) -> str:
    counts = ", ".join(f"{n} {state}" for state, n in s.counts().items()) or "no trials yet"
    lines = [clip(f"{s.name}  (space {s.search_space}, created {s.created})", width),
             clip(f"  {len(s.trials)} trials: {counts}", width),
             clip(f"{'#':>3}  {'trial':<11} {'state':<9} {'epochs':>6}  {s.metric:>10}  config", width)]
    for t in s.trials:
        epochs = f"{t.epochs}/{t.planned}" if t.planned is not None else str(t.epochs)
        lines.append(clip(f"{t.number:>3}  {t.trial_id:<11} {t.state:<9} {epochs:>6}  {_metric_text(t.value):>10}  "
                          f"{short_config(t.config)}", width))
        if t.error and t.state in ("error", "pending"):
            lines.append(clip(f"     ! {t.error}", width))
    return "\n".join(lines)
