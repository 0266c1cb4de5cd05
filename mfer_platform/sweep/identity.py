"""A sweep's identity: what of its stored record (``mfer_sweep.json``) a re-run under the same ``name``
must match to resume or extend it.

A re-run resumes or extends the stored experiments, and the results store lists their trials in one
table: trials of another study (other parameters, epochs, data, metric, seeds, scheduler) merged in
would be compared as if they were the same experiment. So anything that changes what a trial computes,
or which trials the search asks for, must be equal; what only says how many trials, where and how fast
may change. The stored record is JSON (lists, not tuples); the new one is compared after the same
round trip, so ``[1, 2]`` and ``(1, 2)``, ``1`` and ``1.0`` are equal.
"""
from __future__ import annotations

import json
import math
from dataclasses import dataclass
from typing import Any

from mfer.config import flatten

# May change under the same name: more (or fewer) samples — a finished sweep grows by an extension
# experiment — and how trials are placed and paced: resources, concurrency, the time budget, the
# checkpoint cadence (a resumed run continues exactly either way), the trainer's thread count (set
# from resources.cpu) and the node-local data cache folder.
ALLOWED = frozenset({
    "search.num_samples", "search.max_concurrent", "search.time_budget_s",
    "base data.cache_dir", "base trainer.threads", "base trainer.checkpoint_every", "base trainer.checkpoint_every_s",
})
# Record sections compared leaf by leaf, each leaf under a prefix. Their keys are dataclass fields: a leaf
# only one side has is a field added to (or dropped from) the code between the two runs, not a change by
# the user, so it is not compared (and said so).
_SCHEMA_SECTIONS = {"base_config": "base ", "searcher": "search.", "scheduler": "scheduler."}
# Record sections the user names the keys of (parameters, rows): a key only one side has is a change.
_USER_SECTIONS = {"params": "params.", "rows": "rows."}
# Compared whole. ``factors`` (the varied keys) only stands in for ``params`` in records written before
# ``params`` was stored. Not compared at all: labels and where the file lives (name, source, description,
# created), values derived from compared ones (seeds, trial_count, dataset, metric/mode/objectives: the
# searcher's), ``base`` (its text: ``base_config`` is what it composes to) and ``resources`` (allowed).
_WHOLE = ("baseline", "factors")

_ABSENT = "(absent)"


@dataclass(frozen=True)
class Difference:
    key: str
    old: Any
    new: Any

    def __str__(self) -> str:
        return f"{self.key}: {_show(self.old)} → {_show(self.new)}"


def _show(value: Any) -> str:
    return value if value is _ABSENT else json.dumps(value, default=str)


def _same(a: Any, b: Any) -> bool:
    return a == b or (isinstance(a, float) and isinstance(b, float) and math.isnan(a) and math.isnan(b))


def _leaves(record: dict, section: str) -> dict[str, Any]:
    value = record[section] or {}  # params: {key: {kind: values}}; rows: {row: {key: value}}
    return flatten(value) if section == "base_config" else dict(value)


def compare(stored: dict, new: dict) -> tuple[list[Difference], list[str]]:
    """(differences that change what the sweep computes, keys that could not be compared).

    Sections only one record has (a record written before the section was stored) are not compared,
    nor leaves of a dataclass section that only one side has; both are returned as unchecked."""
    new = json.loads(json.dumps(new, default=str))  # the stored record's JSON types
    diffs: list[Difference] = []
    unchecked = [s for s in (*_SCHEMA_SECTIONS, *_USER_SECTIONS, *_WHOLE) if (s in stored) != (s in new)]
    for section, prefix in {**_SCHEMA_SECTIONS, **_USER_SECTIONS}.items():
        if section not in stored or section not in new:
            continue
        old_leaves, new_leaves = _leaves(stored, section), _leaves(new, section)
        for key in sorted(old_leaves.keys() | new_leaves.keys()):
            full = f"{prefix}{key}"
            if key not in old_leaves or key not in new_leaves:
                if section in _SCHEMA_SECTIONS:
                    unchecked.append(full)
                    continue
            old, now = old_leaves.get(key, _ABSENT), new_leaves.get(key, _ABSENT)
            if full not in ALLOWED and not _same(old, now):
                diffs.append(Difference(full, old, now))
    for section in _WHOLE:
        if section == "factors" and "params" in stored and "params" in new:
            continue  # the params' differences say it, with their ranges
        if section in stored and section in new and not _same(stored[section], new[section]):
            diffs.append(Difference(section, stored[section], new[section]))
    return diffs, unchecked


def refusal(name: str, where: str, diffs: list[Difference]) -> str:
    """The one-paragraph error: what differs, old → new, and the way out."""
    return (f"sweep {name!r} in {where} was run with a different search space, so its trials would not "
            f"compare with the new ones: {'; '.join(map(str, diffs))}. Pick a new name= for the new space "
            f"(or run the stored one unchanged); under the same name only these may change: resources.*, "
            f"{', '.join(k.removeprefix('base ') for k in sorted(ALLOWED))}")
