"""Reading what Ray Tune leaves in one experiment folder: a trial folder's files, Ray's view of each
trial's state, and a stamp of the folder's content that tells whether the results store is current.

Ray Tune leaves one folder per trial (``params.json``, ``result.json`` lines, ``checkpoint_*/``
with our ``meta.json``); nothing here writes.
"""
from __future__ import annotations

import hashlib
import json
import posixpath
from dataclasses import dataclass
from typing import Optional

import pyarrow.fs as pafs

from mfer_platform.keys import VAL_CONFUSION, VAL_PER_CLASS
from mfer_platform.layout import read_bytes, read_json


@dataclass
class TrialFiles:
    """What one trial folder holds, read once."""

    dir_name: str
    params: dict
    results: list[dict]  # result.json rows, one per reported epoch, deduplicated by epoch
    checkpoint: Optional[str]  # latest checkpoint_* folder name
    meta: Optional[dict]  # its meta.json
    selected_val: Optional[dict]  # the selected epoch's per-class validation result and confusion
    selected_val_source: Optional[str]  # "result" | "checkpoint" | None (not recorded: a trial from before)
    error: Optional[str]  # last line of error.txt


def selected_validation(results: list[dict], meta: Optional[dict]) -> tuple[Optional[dict], Optional[str]]:
    """(the selected epoch's per-class validation result, where it was found), or (None, None).

    The trainer reports it with every epoch that improves the selection, so the result row of the
    selected epoch has it — early-stopped trials included, which get no final checkpoint — and each
    checkpoint's ``meta.json`` repeats it. Trials written before that have it only inside
    ``state.pt``, which is never opened (a pickle container of ~2 GB at paper scale): for them it
    stays missing, and the tables say so.
    """
    epoch = results[-1].get("selected_epoch") if results else None
    row = next((r for r in results if r["epoch"] == epoch and r.get(VAL_CONFUSION) is not None), None)
    if row is not None:
        return {"per_class_acc": row[VAL_PER_CLASS], "confusion": row[VAL_CONFUSION]}, "result"
    saved = (meta or {}).get("selected_val")
    if saved and saved.get("epoch") == epoch:
        return saved, "checkpoint"
    return None, None


def _read_results(fs: pafs.FileSystem, path: str) -> list[dict]:
    by_epoch: dict[int, dict] = {}
    for line in read_bytes(fs, path).decode().splitlines():
        if line.strip():
            row = json.loads(line)
            if "epoch" in row:  # a retried or PBT-restored trial may report an epoch again: keep the last
                by_epoch[int(row["epoch"])] = row
    return [by_epoch[e] for e in sorted(by_epoch)]


def read_trial(fs: pafs.FileSystem, trial_path: str) -> Optional[TrialFiles]:
    """The files of one trial folder, or None when the folder is not a trial (no params.json).
    Reads JSON only: params.json, result.json, the latest checkpoint's meta.json and error.txt."""
    entries = {posixpath.basename(i.path): i for i in fs.get_file_info(pafs.FileSelector(trial_path))}
    if "params.json" not in entries:
        return None
    checkpoints = sorted(n for n, i in entries.items() if n.startswith("checkpoint_") and i.type == pafs.FileType.Directory)
    ckpt = checkpoints[-1] if checkpoints else None
    dir_name = posixpath.basename(trial_path)
    meta = read_json(fs, f"{trial_path}/{ckpt}/meta.json") if ckpt is not None else None
    error = None
    if "error.txt" in entries:
        lines = [ln for ln in read_bytes(fs, f"{trial_path}/error.txt").decode(errors="replace").splitlines() if ln.strip()]
        error = lines[-1][:500] if lines else "error"
    results = _read_results(fs, f"{trial_path}/result.json") if "result.json" in entries else []
    selected, source = selected_validation(results, meta)
    return TrialFiles(dir_name, read_json(fs, f"{trial_path}/params.json"), results, ckpt, meta, selected, source,
                      error)


@dataclass
class RayTrialState:
    trial_id: str
    status: str  # TERMINATED | ERROR | RUNNING | PENDING | PAUSED
    failures: int


def ray_trial_states(fs: pafs.FileSystem, exp_path: str) -> dict[str, RayTrialState]:
    """{trial folder name: its state} from Ray's saved experiment state, when there is one.

    Files alone cannot tell an early-stopped trial from one an interrupted sweep left running,
    nor a retried-then-finished trial from a failed one; Ray's state can.
    """
    names = [posixpath.basename(i.path) for i in fs.get_file_info(pafs.FileSelector(exp_path))]
    if not any(n.startswith("experiment_state") and n.endswith(".json") for n in names):
        return {}
    from ray.tune import ExperimentAnalysis

    analysis = ExperimentAnalysis(exp_path, storage_filesystem=fs)
    return {posixpath.basename(t.path): RayTrialState(t.trial_id, t.status, t.run_metadata.num_failures)
            for t in analysis.trials}


def content_stamp(fs: pafs.FileSystem, exp_path: str) -> str:
    """A hash of every file's path, size and modification time under the experiment folder (one
    recursive listing, no reads): it changes whenever a trial reports, checkpoints, fails or Ray
    saves its state, so a store row carrying the stamp it was ingested from is current iff equal."""
    infos = fs.get_file_info(pafs.FileSelector(exp_path, recursive=True))
    listing = sorted((i.path[len(exp_path):], i.size, i.mtime_ns) for i in infos if i.type == pafs.FileType.File)
    return hashlib.sha256(json.dumps(listing, default=str).encode()).hexdigest()[:16]
