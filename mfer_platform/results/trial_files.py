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

from mfer_platform.layout import read_bytes, read_json


@dataclass
class TrialFiles:
    """What one trial folder holds, read once."""

    dir_name: str
    params: dict
    results: list[dict]  # result.json rows, one per reported epoch, deduplicated by epoch
    checkpoint: Optional[str]  # latest checkpoint_* folder name
    meta: Optional[dict]  # its meta.json
    selected_val: Optional[dict]  # the selected epoch's full validation result (per-class, confusion)
    error: Optional[str]  # last line of error.txt


def _selected_validation(fs: pafs.FileSystem, state_path: str) -> Optional[dict]:
    """The selected epoch's validation result (per-class accuracy, confusion) from ``state.pt``.

    Only ``state.pt`` keeps it; it loads with ``weights_only=True`` (no arbitrary pickles) and,
    on a local disk, memory-mapped so the optimizer tensors in it are never read.
    """
    import torch

    if isinstance(fs, pafs.LocalFileSystem):
        state = torch.load(state_path, map_location="cpu", weights_only=True, mmap=True)
    else:
        with fs.open_input_file(state_path) as f:
            state = torch.load(f, map_location="cpu", weights_only=True)
    return (state.get("best") or {}).get("val")


def _read_results(fs: pafs.FileSystem, path: str) -> list[dict]:
    by_epoch: dict[int, dict] = {}
    for line in read_bytes(fs, path).decode().splitlines():
        if line.strip():
            row = json.loads(line)
            if "epoch" in row:  # a retried or PBT-restored trial may report an epoch again: keep the last
                by_epoch[int(row["epoch"])] = row
    return [by_epoch[e] for e in sorted(by_epoch)]


def read_trial(fs: pafs.FileSystem, trial_path: str, known: dict[str, dict]) -> Optional[TrialFiles]:
    """The files of one trial folder, or None when the folder is not a trial (no params.json).
    ``known``: selected validation results the store already holds, by checkpoint (re-reading a
    state.pt costs ~0.2 s, so an unchanged checkpoint is not opened again)."""
    entries = {posixpath.basename(i.path): i for i in fs.get_file_info(pafs.FileSelector(trial_path))}
    if "params.json" not in entries:
        return None
    checkpoints = sorted(n for n, i in entries.items() if n.startswith("checkpoint_") and i.type == pafs.FileType.Directory)
    ckpt = checkpoints[-1] if checkpoints else None
    dir_name = posixpath.basename(trial_path)
    meta = selected = None
    if ckpt is not None:
        meta = read_json(fs, f"{trial_path}/{ckpt}/meta.json")
        selected = known.get(f"{dir_name}/{ckpt}") or _selected_validation(fs, f"{trial_path}/{ckpt}/state.pt")
    error = None
    if "error.txt" in entries:
        lines = [ln for ln in read_bytes(fs, f"{trial_path}/error.txt").decode(errors="replace").splitlines() if ln.strip()]
        error = lines[-1][:500] if lines else "error"
    results = _read_results(fs, f"{trial_path}/result.json") if "result.json" in entries else []
    return TrialFiles(dir_name, read_json(fs, f"{trial_path}/params.json"), results, ckpt, meta, selected, error)


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
