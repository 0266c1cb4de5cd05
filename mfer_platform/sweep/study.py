"""The sweep's Optuna study, kept in persistent storage so ``optuna-dashboard`` watches it live and
an extension (``NAME-extK``) continues it.

Where it lives: ``search.storage`` (an RDB URL such as ``postgresql://host/db``) when given; else a
JournalStorage file, ``{storage_path}/{name}/optuna.journal`` beside the experiment when the storage
path is local, or a driver-local file (``$MFER_CACHE/optuna/``, path logged) when it is a bucket: the
searcher runs in the driver, and a journal needs a file system with locks. The study name is the sweep
name, so every experiment of the chain adds to one study.

What it records: Ray's ``OptunaSearch.on_trial_complete`` tells Optuna COMPLETE whenever the last
result holds the metric — a trial ASHA stopped after one epoch included — so TPE would model its
low-fidelity value as a finished run's. ``StudySearch`` tells such trials PRUNED, Optuna's state for
stopped trials, which TPE ranks below every complete trial by their last intermediate value
(``optuna/samplers/_tpe/sampler.py``, ``_split_trials``); errored trials are FAIL. Under ``search.seeds``
> 1, ``StudyRepeater`` hands it every repeat of a suggestion, so one Optuna trial stands for its seeds:
COMPLETE with their mean only when all ran to the end, list-valued user attributes naming each repeat.
"""
from __future__ import annotations

import hashlib
import logging
import math
import os
from dataclasses import dataclass
from pathlib import Path
from typing import Any, Optional

import optuna
import pyarrow.fs as pafs
from optuna.storages import BaseStorage, JournalStorage, RDBStorage
from optuna.storages.journal import JournalFileBackend
from optuna.trial import TrialState
from ray.tune import Callback
from ray.tune.search import Repeater
from ray.tune.search.optuna import OptunaSearch

from mfer_platform.layout import open_storage
from mfer_platform.sweep.spaces import SearchSpace, SpaceError

log = logging.getLogger("mfer_platform")

JOURNAL_FILE = "optuna.journal"

# Tune trial id -> its latest checkpoint's path, as this driver saw it (``TrialCheckpoints``). A module
# table rather than a field: Tune pickles the searcher and the callbacks separately (resume restores
# both), so a reference between them would not survive a restore; this process's table does.
_LATEST_CHECKPOINT: dict[str, str] = {}


class TrialCheckpoints(Callback):
    """Notes each trial's newest checkpoint for the study's ``checkpoints`` user attribute (a searcher
    is told results, never the trial's folder)."""

    def __init__(self, storage_path: str):
        self.scheme = storage_path.split("://")[0] + "://" if "://" in storage_path else ""

    def on_checkpoint(self, iteration, trials, trial, checkpoint, **info) -> None:
        _LATEST_CHECKPOINT[trial.trial_id] = self.scheme + checkpoint.path


def journal_path(storage_path: str, name: str) -> Path:
    """The sweep's journal file: beside the experiment on local storage, driver-local otherwise."""
    fs, root = open_storage(storage_path)
    if isinstance(fs, pafs.LocalFileSystem):
        return Path(root) / name / JOURNAL_FILE
    cache = Path(os.environ.get("MFER_CACHE") or Path.home() / ".cache" / "mfer")
    return cache / "optuna" / f"{name}-{hashlib.sha256(storage_path.encode()).hexdigest()[:10]}.journal"


def study_storage(space: SearchSpace, storage_path: str, name: str) -> tuple[BaseStorage, str]:
    """(the sweep's Optuna storage, what to hand ``optuna-dashboard``)."""
    url = space.search.storage
    if url:
        try:
            return RDBStorage(url), url
        except Exception as e:  # SQLAlchemy's: a missing driver package, a server unreachable or refusing
            first = str(e).strip().splitlines()[0] if str(e).strip() else type(e).__name__
            raise SpaceError(f"search.storage={url}: Optuna cannot open it: {first}") from None
    path = journal_path(storage_path, name)
    path.parent.mkdir(parents=True, exist_ok=True)
    return JournalStorage(JournalFileBackend(str(path))), str(path)


def study_exists(space: SearchSpace, storage_path: str, name: str) -> bool:
    """Whether the sweep already has a study (one from before persistent studies has none)."""
    if not space.search.storage and not journal_path(storage_path, name).is_file():
        return False
    return name in optuna.get_all_study_names(study_storage(space, storage_path, name)[0])


def close_orphans(storage: BaseStorage, name: str) -> int:
    """Mark FAIL the trials a previous driver asked for but never told (killed before Tune saved its
    state): no Tune trial will report them, and TPE and the dashboard would count them as running.
    Only for a searcher built afresh — a restored one still holds its running trials."""
    if name not in optuna.get_all_study_names(storage):
        return 0
    study = optuna.load_study(study_name=name, storage=storage)
    orphans = study.get_trials(deepcopy=False, states=(TrialState.RUNNING,))
    for t in orphans:  # the storage's own trial id: FrozenTrial keeps it private (Optuna's code reads it too)
        storage.set_trial_state_values(t._trial_id, TrialState.FAIL)
    return len(orphans)


@dataclass
class Repeat:
    """How one Tune trial ended, as Tune told its searcher."""
    trial_id: str
    result: Optional[dict]
    error: bool

    def outcome(self, epochs: int) -> str:
        if self.error:
            return "error"
        ran = (self.result or {}).get("epoch", 0)
        return "completed" if ran >= epochs else "early_stopped"


class StudySearch(OptunaSearch):
    """Ray's OptunaSearch with the trial states mapped as the module says. ``epochs``: the planned
    epochs per trial; a trial that ended before them was stopped (scheduler or time budget)."""

    def __init__(self, *, epochs: int, **kwargs):
        super().__init__(**kwargs)
        self._epochs = epochs

    def on_trial_complete(self, trial_id: str, result: Optional[dict] = None, error: bool = False) -> None:
        self.finish(trial_id, [Repeat(trial_id, result, error)])

    def finish(self, trial_id: str, repeats: list[Repeat]) -> None:
        """Tell the study how the suggestion made for ``trial_id`` ended, over all its repeats."""
        if trial_id in self._completed_trials:
            return
        ot_trial = self._ot_trials[trial_id]
        outcomes = [r.outcome(self._epochs) for r in repeats]
        ot_trial.set_user_attr("tune_trial_ids", [r.trial_id for r in repeats])
        ot_trial.set_user_attr("outcomes", outcomes)
        ot_trial.set_user_attr("epochs", [(r.result or {}).get("epoch", 0) for r in repeats])
        ot_trial.set_user_attr("checkpoints", [_LATEST_CHECKPOINT.get(r.trial_id) for r in repeats])
        values = self._values(repeats) if set(outcomes) == {"completed"} else None
        if "error" in outcomes or (values is None and "early_stopped" not in outcomes):
            state = TrialState.FAIL
        else:
            state = TrialState.PRUNED if values is None else TrialState.COMPLETE
            self._report_last(ot_trial, repeats)
        try:
            self._ot_study.tell(ot_trial, values, state=state)
        except (ValueError, RuntimeError) as e:  # e.g. already told: the driver must go on either way
            log.warning(f"Optuna study: trial {ot_trial.number} not recorded: {e}")
        self._completed_trials.add(trial_id)

    def _values(self, repeats: list[Repeat]) -> Any:
        """The mean over repeats of each objective, or None when one is missing or not finite (NaN)."""
        metrics = self.metric if isinstance(self.metric, list) else [self.metric]
        means = []
        for m in metrics:
            vals = [(r.result or {}).get(m) for r in repeats]
            if not all(isinstance(v, (int, float)) and math.isfinite(v) for v in vals):
                return None
            means.append(sum(vals) / len(vals))
        return means if isinstance(self.metric, list) else means[0]

    def _report_last(self, ot_trial, repeats: list[Repeat]) -> None:
        """Tune withholds the result on which the scheduler stops a trial (ASHA stops every trial at
        its last epoch too) from ``on_trial_result``: report it, so the intermediate values end at the
        last epoch and a PRUNED trial's value is that epoch's."""
        result = repeats[0].result or {}
        value, step = result.get(self.metric), result.get("training_iteration")
        if len(repeats) == 1 and not isinstance(self.metric, list) and isinstance(value, (int, float)) \
                and math.isfinite(value) and step is not None:
            ot_trial.report(value, step)


class StudyRepeater(Repeater):
    """Ray's Repeater tells its searcher only the mean score once all repeats reported, NaN standing in
    for a failed one; this one hands ``StudySearch.finish`` every repeat's end."""

    def __init__(self, searcher: StudySearch, repeat: int):
        super().__init__(searcher, repeat=repeat, set_index=True)
        self._ends: dict[str, dict[str, Repeat]] = {}

    def on_trial_complete(self, trial_id: str, result: Optional[dict] = None, error: bool = False, **kwargs) -> None:
        group = self._trial_id_to_group[trial_id]
        ends = self._ends.setdefault(group.primary_trial_id, {})
        ends[trial_id] = Repeat(trial_id, result, error)
        if len(ends) == group.max_trials:
            self.searcher.finish(group.primary_trial_id, [ends[t] for t in group._trials if t in ends])
